/**
 * The API's error answers: a Kubernetes-Status-like JSON body `{kind:"Status", code, reason,
 * message, field?}`; ServiceError kinds and zod issues map onto it here and nowhere else.
 */
import type { z } from "zod";
import { ServiceError, type ServiceErrorKind } from "./contract.js";
import type { StatusBody } from "./schemas.js";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly field?: string,
    readonly extra: { leader?: string; details?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(message);
  }

  body(): StatusBody {
    return {
      kind: "Status",
      code: this.status,
      reason: this.reason,
      message: this.message,
      ...(this.field !== undefined ? { field: this.field } : {}),
      ...(this.extra.leader !== undefined ? { leader: this.extra.leader } : {}),
      ...(this.extra.details !== undefined ? { details: this.extra.details } : {}),
    };
  }
}

const KIND_STATUS: Record<ServiceErrorKind, [number, string]> = {
  invalid: [400, "BadRequest"],
  not_found: [404, "NotFound"],
  conflict: [409, "Conflict"],
  refused: [422, "Refused"],
  not_leader: [503, "NotLeader"],
  unavailable: [503, "Unavailable"],
};

export function fromServiceError(e: ServiceError): ApiError {
  const [status, reason] = KIND_STATUS[e.kind] ?? [400, "BadRequest"];
  return new ApiError(status, reason, e.message, e.field);
}

/** `["members", 0, "name"]` in `body` → `body.members[0].name`. */
function fieldPath(where: string, path: readonly PropertyKey[]): string {
  let out = where;
  for (const p of path) out += typeof p === "number" ? `[${p}]` : `.${String(p)}`;
  return out;
}

/** The first zod issue as a 400 naming the field: `body.target: expected string, received number`. */
export function fromZodError(where: "body" | "query" | "path", error: z.ZodError): ApiError {
  const issue = error.issues[0];
  if (!issue) return new ApiError(400, "BadRequest", `invalid ${where}`, where);
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0] ?? "?";
    const field = fieldPath(where, [...issue.path, key]);
    const known = where === "path" ? "" : " (see /openapi.json for the accepted fields)";
    return new ApiError(400, "BadRequest", `${field}: unknown field "${key}"${known}`, field);
  }
  const field = where === "path" && issue.path.length > 0 ? String(issue.path[issue.path.length - 1]) : fieldPath(where, issue.path);
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem${error.issues.length > 2 ? "s" : ""})` : "";
  const message = issue.message.replace(/^Invalid input: /, "");
  return new ApiError(400, "BadRequest", `${field}: ${message}${more}`, field);
}
