/**
 * `Status` objects with the reasons, codes and message wording of the real API server, and the
 * error that carries one through the stand-in (and out of its in-process store API).
 */
import { PgfedError } from "../../errors.js";

export type StatusReason =
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Invalid"
  | "Unauthorized"
  | "Forbidden"
  | "MethodNotAllowed"
  | "UnsupportedMediaType"
  | "NotAcceptable"
  | "RequestEntityTooLarge"
  | "Expired"
  | "Gone"
  | "BadRequest"
  | "InternalError"
  | "ServiceUnavailable"
  | "TooManyRequests";

export interface StatusCause {
  reason?: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

export interface KubeStatus {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, unknown>;
  status: "Failure" | "Success";
  message: string;
  reason?: StatusReason;
  details?: StatusDetails;
  code: number;
}

/** A refused request; `status` is what the HTTP client receives. */
export class KubeApiError extends PgfedError {
  readonly status: KubeStatus;

  constructor(status: KubeStatus) {
    super(`kube_api.${(status.reason ?? "Unknown").toLowerCase()}`, status.message, { httpStatus: status.code, reason: status.reason });
    this.name = "KubeApiError";
    this.status = status;
  }

  get httpStatus(): number {
    return this.status.code;
  }

  get reason(): StatusReason | undefined {
    return this.status.reason;
  }
}

/** A resource as named in messages: `clusters.postgresql.cnpg.io`, or `secrets` for the core group. */
export interface GroupResource {
  group: string;
  resource: string;
}

export function groupResourceString(gr: GroupResource): string {
  return gr.group ? `${gr.resource}.${gr.group}` : gr.resource;
}

export function failure(code: number, reason: StatusReason | undefined, message: string, details?: StatusDetails): KubeStatus {
  const s: KubeStatus = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, code };
  if (reason) s.reason = reason;
  if (details) s.details = details;
  return s;
}

function err(code: number, reason: StatusReason, message: string, details?: StatusDetails): KubeApiError {
  return new KubeApiError(failure(code, reason, message, details));
}

function resourceDetails(gr: GroupResource, name: string): StatusDetails {
  const d: StatusDetails = { name, kind: gr.resource };
  if (gr.group) d.group = gr.group;
  return d;
}

export function notFound(gr: GroupResource, name: string): KubeApiError {
  return err(404, "NotFound", `${groupResourceString(gr)} "${name}" not found`, resourceDetails(gr, name));
}

export function alreadyExists(gr: GroupResource, name: string): KubeApiError {
  return err(409, "AlreadyExists", `${groupResourceString(gr)} "${name}" already exists`, resourceDetails(gr, name));
}

export const STALE_OBJECT_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again";

export function conflict(gr: GroupResource, name: string, why: string = STALE_OBJECT_MESSAGE): KubeApiError {
  return err(409, "Conflict", `Operation cannot be fulfilled on ${groupResourceString(gr)} "${name}": ${why}`, resourceDetails(gr, name));
}

export interface InvalidField {
  field: string;
  message: string;
  /** Status cause reason; FieldValueInvalid unless said otherwise (FieldValueRequired, …). */
  reason?: string;
}

/** 422 Invalid: `Cluster.postgresql.cnpg.io "pg-eu" is invalid: spec.replica.primary: …`. */
export function invalid(kind: string, group: string, name: string, fields: InvalidField[]): KubeApiError {
  const parts = fields.map((f) => `${f.field}: ${f.message}`);
  const list = parts.length === 1 ? (parts[0] ?? "") : `[${parts.join(", ")}]`;
  const qualified = group ? `${kind}.${group}` : kind;
  const details: StatusDetails = {
    name,
    kind,
    causes: fields.map((f) => ({ reason: f.reason ?? "FieldValueInvalid", message: f.message, field: f.field })),
  };
  if (group) details.group = group;
  return err(422, "Invalid", `${qualified} "${name}" is invalid: ${list}`, details);
}

export function badRequest(message: string): KubeApiError {
  return err(400, "BadRequest", message);
}

export function unauthorized(): KubeApiError {
  return err(401, "Unauthorized", "Unauthorized");
}

// The message of staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go (forbiddenMessage) inside apierrors.NewForbidden.
export function forbidden(user: string, verb: string, gr: GroupResource, subresource: string | undefined, namespace: string | undefined, name: string | undefined): KubeApiError {
  const what = name ? `${groupResourceString(gr)} "${name}"` : groupResourceString(gr);
  const resource = subresource ? `${gr.resource}/${subresource}` : gr.resource;
  const scope = namespace ? ` in the namespace "${namespace}"` : " at the cluster scope";
  const details: StatusDetails = { kind: gr.resource };
  if (name) details.name = name;
  if (gr.group) details.group = gr.group;
  return err(403, "Forbidden", `${what} is forbidden: User "${user}" cannot ${verb} resource "${resource}" in API group "${gr.group}"${scope}`, details);
}

export function methodNotAllowed(): KubeApiError {
  return err(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
}

export function unsupportedMediaType(got: string, accepted: string[]): KubeApiError {
  return err(415, "UnsupportedMediaType", `the body of the request was in an unknown format (${got || "none"}) - accepted media types include: ${accepted.join(", ")}`);
}

export function pathNotFound(): KubeApiError {
  return err(404, "NotFound", "the server could not find the requested resource");
}

export function tooLarge(limitBytes: number): KubeApiError {
  return err(413, "RequestEntityTooLarge", `the request body is larger than ${limitBytes} bytes`);
}

/** The Status a watch sends as an ERROR event when asked to resume from a compacted version. */
export function expired(asked: number, oldest: number): KubeStatus {
  return failure(410, "Expired", `too old resource version: ${asked} (${oldest})`);
}

export function internalError(message: string): KubeApiError {
  return err(500, "InternalError", `Internal error occurred: ${message}`);
}

/** The Status of an injected fault (500, 503 or 429). */
export function injectedFault(code: 500 | 503 | 429): KubeStatus {
  switch (code) {
    case 429:
      return failure(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later (injected fault)", { retryAfterSeconds: 1 });
    case 503:
      return failure(503, "ServiceUnavailable", "the server is currently unable to handle the request (injected fault)");
    case 500:
      return failure(500, "InternalError", "an error on the server has prevented the request from succeeding (injected fault)");
  }
}
