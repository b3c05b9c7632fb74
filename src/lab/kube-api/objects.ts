/**
 * Decoding request bodies into objects the store accepts, with the real API server's answers to
 * bad input: undecodable → 400 BadRequest, decodable but wrong → 422 Invalid naming the field.
 */
import { apiVersionOf, type ResourceDef } from "./resources.js";
import { badRequest, invalid, type InvalidField } from "./status.js";
import { isRecord, type KubeObject, type ObjectMeta } from "./types.js";

/** What callers hand to create/update: apiVersion and kind may be left out, name may be generated. */
export interface KubeObjectInput {
  apiVersion?: string;
  kind?: string;
  metadata: Partial<ObjectMeta>;
  [key: string]: unknown;
}

function stringMap(v: unknown, field: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) throw badRequest(`json: cannot unmarshal ${typeof v} into Go struct field ObjectMeta.${field} of type map[string]string`);
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== "string") throw badRequest(`json: cannot unmarshal ${typeof val} into Go struct field ObjectMeta.${field}.${k} of type string`);
  }
  return v as Record<string, string>;
}

/** Checks the shape of a request body; apiVersion/kind, when present, must be the endpoint's. */
export function decodeObject(body: unknown, def: ResourceDef): KubeObjectInput {
  if (!isRecord(body)) throw badRequest(`the request body must be a JSON object (a ${def.kind})`);
  const apiVersion = body.apiVersion;
  const kind = body.kind;
  if (apiVersion !== undefined && apiVersion !== apiVersionOf(def)) {
    throw badRequest(`the API version in the data (${JSON.stringify(apiVersion)}) does not match the expected API version (${apiVersionOf(def)})`);
  }
  if (kind !== undefined && kind !== def.kind) throw badRequest(`the kind in the data (${JSON.stringify(kind)}) does not match the expected kind (${def.kind})`);
  const metadata = body.metadata ?? {};
  if (!isRecord(metadata)) throw badRequest("json: cannot unmarshal metadata: it must be an object");
  for (const f of ["name", "generateName", "namespace", "resourceVersion", "uid"] as const) {
    if (metadata[f] !== undefined && metadata[f] !== null && typeof metadata[f] !== "string") {
      throw badRequest(`json: cannot unmarshal ${typeof metadata[f]} into Go struct field ObjectMeta.metadata.${f} of type string`);
    }
  }
  stringMap(metadata.labels, "metadata.labels");
  stringMap(metadata.annotations, "metadata.annotations");
  if (metadata.finalizers !== undefined && (!Array.isArray(metadata.finalizers) || !metadata.finalizers.every((f) => typeof f === "string"))) {
    throw badRequest("json: cannot unmarshal metadata.finalizers: it must be an array of strings");
  }
  return { ...body, metadata };
}

const SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Object names: RFC 1123 subdomains, namespaces RFC 1123 labels (what the real server checks). */
export function nameProblem(def: ResourceDef, name: string): string | undefined {
  if (def.name === "namespaces") {
    if (name.length > 63 || !LABEL.test(name)) {
      return `Invalid value: "${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (at most 63 characters)`;
    }
    return undefined;
  }
  if (name.length > 253 || !SUBDOMAIN.test(name)) {
    return `Invalid value: "${name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (at most 253 characters)`;
  }
  return undefined;
}

/** Per-kind checks the real API server makes on every write (beyond names). */
export function kindProblems(def: ResourceDef, obj: KubeObject): InvalidField[] {
  const out: InvalidField[] = [];
  if (def.name === "secrets" && obj.data !== undefined) {
    if (!isRecord(obj.data)) out.push({ field: "data", message: "Invalid value: must be a map of base64 strings" });
    else {
      for (const [k, v] of Object.entries(obj.data)) {
        if (typeof v !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) out.push({ field: `data[${k}]`, message: "Invalid value: must be a base64-encoded string" });
      }
    }
  }
  if (def.name === "leases" && isRecord(obj.spec)) {
    const d = obj.spec.leaseDurationSeconds;
    if (d !== undefined && d !== null && (typeof d !== "number" || !Number.isInteger(d) || d <= 0)) {
      out.push({ field: "spec.leaseDurationSeconds", message: `Invalid value: ${JSON.stringify(d)}: must be greater than 0` });
    }
  }
  if (def.subresources.includes("status") && obj.spec !== undefined && !isRecord(obj.spec)) {
    out.push({ field: "spec", message: "Invalid value: must be an object" });
  }
  return out;
}

/** Secrets: `stringData` is folded into `data` (base64) on write, as the real server does. */
export function normalizeSecret(obj: KubeObject): void {
  const stringData = obj.stringData;
  if (isRecord(stringData)) {
    const data: Record<string, unknown> = isRecord(obj.data) ? { ...obj.data } : {};
    for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64");
    obj.data = data;
  }
  delete obj.stringData;
  if (obj.type === undefined || obj.type === "") obj.type = "Opaque";
}

export function throwIfInvalid(def: ResourceDef, name: string, problems: InvalidField[]): void {
  if (problems.length > 0) throw invalid(def.kind, def.group, name, problems);
}
