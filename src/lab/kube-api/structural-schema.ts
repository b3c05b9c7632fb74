/**
 * Structural OpenAPI v3 schemas as the API server uses a CRD's `openAPIV3Schema`: pruning of
 * unknown fields, defaulting, and the validations the stand-in checks (type, required, enum,
 * minimum/maximum, minLength/maxLength). Subtrees with `x-kubernetes-preserve-unknown-fields`
 * and no `properties` are kept as sent (apiextensions-apiserver's pruning and validation rules).
 */
import { isRecord } from "./types.js";

export interface StructuralSchema {
  type?: "object" | "array" | "string" | "integer" | "number" | "boolean";
  description?: string;
  format?: string;
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema;
  items?: StructuralSchema;
  required?: string[];
  enum?: Array<string | number | boolean>;
  default?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  "x-kubernetes-preserve-unknown-fields"?: boolean;
  "x-kubernetes-list-type"?: "atomic" | "set" | "map";
  "x-kubernetes-list-map-keys"?: string[];
  "x-kubernetes-map-type"?: "atomic" | "granular";
  "x-kubernetes-embedded-resource"?: boolean;
}

/** One refused value, as a field.Error of the API server: `spec.replica.source: Required value`. */
export interface SchemaProblem {
  field: string;
  message: string;
  reason: "FieldValueRequired" | "FieldValueInvalid" | "FieldValueNotSupported" | "FieldValueTypeInvalid";
}

/** A subtree kept as sent: preserve-unknown-fields without declared properties. */
export function isOpen(s: StructuralSchema | undefined): boolean {
  return s === undefined || (s["x-kubernetes-preserve-unknown-fields"] === true && s.properties === undefined && s.additionalProperties === undefined && s.items === undefined);
}

function childPath(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/**
 * The fields of ObjectMeta: what the API server keeps under `metadata` of any object (other
 * members are dropped, and reported as unknown fields like those of the schema).
 */
export const OBJECT_META_FIELDS = [
  "name",
  "generateName",
  "namespace",
  "selfLink",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "labels",
  "annotations",
  "ownerReferences",
  "finalizers",
  "managedFields",
] as const;

/**
 * Removes what the schema does not declare, in place; returns the removed paths
 * (`spec.foo`, `spec.externalClusters[0].bar`). apiextensions-apiserver pkg/apiserver/schema/pruning.
 */
export function prune(value: unknown, schema: StructuralSchema, path = ""): string[] {
  const removed: string[] = [];
  pruneInto(value, schema, path, removed);
  return removed;
}

function pruneInto(value: unknown, s: StructuralSchema, path: string, removed: string[]): void {
  if (isOpen(s)) return;
  if (Array.isArray(value)) {
    if (s.items) value.forEach((v, i) => pruneInto(v, s.items as StructuralSchema, `${path}[${i}]`, removed));
    return;
  }
  if (!isRecord(value)) return;
  const preserve = s["x-kubernetes-preserve-unknown-fields"] === true;
  for (const key of Object.keys(value)) {
    // Root type and object metadata are the server's own (pruneMetadata handles metadata).
    if (path === "" && (key === "apiVersion" || key === "kind" || key === "metadata")) continue;
    const child = s.properties?.[key] ?? s.additionalProperties;
    if (child) {
      pruneInto(value[key], child, childPath(path, key), removed);
      continue;
    }
    if (!preserve) {
      removed.push(childPath(path, key));
      delete value[key];
    }
  }
}

/** Unknown members of `metadata`, removed in place (the server keeps only ObjectMeta). */
export function pruneMetadata(meta: Record<string, unknown>): string[] {
  const known = new Set<string>(OBJECT_META_FIELDS);
  const removed: string[] = [];
  for (const key of Object.keys(meta)) {
    if (!known.has(key)) {
      removed.push(`metadata.${key}`);
      delete meta[key];
    }
  }
  return removed;
}

/** Fills in `default`s of absent fields whose parent object is present, in place. */
export function applyDefaults(value: unknown, s: StructuralSchema): void {
  if (isOpen(s)) return;
  if (Array.isArray(value)) {
    if (s.items) for (const v of value) applyDefaults(v, s.items);
    return;
  }
  if (!isRecord(value)) return;
  for (const [key, child] of Object.entries(s.properties ?? {})) {
    if (value[key] === undefined && child.default !== undefined) value[key] = structuredClone(child.default);
    if (value[key] !== undefined) applyDefaults(value[key], child);
  }
  if (s.additionalProperties) for (const v of Object.values(value)) applyDefaults(v, s.additionalProperties);
}

function typeOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function matchesType(v: unknown, type: StructuralSchema["type"]): boolean {
  const t = typeOf(v);
  if (type === undefined) return true;
  if (type === "number") return t === "number" || t === "integer";
  return t === type;
}

/** Go's %q-ish rendering of a bad value in a field.Error. */
function shown(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v);
}

/** The validations of apiextensions-apiserver's schema validator that the stand-in checks. */
export function validate(value: unknown, s: StructuralSchema, path = ""): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  validateInto(value, s, path, out);
  return out;
}

function validateInto(value: unknown, s: StructuralSchema, path: string, out: SchemaProblem[]): void {
  if (value === undefined) return;
  const where = path === "" ? "<root>" : path;
  if (value === null) {
    if (s.type !== undefined) out.push({ field: where, reason: "FieldValueTypeInvalid", message: `Invalid value: "null": ${where} in body must be of type ${s.type}: "null"` });
    return;
  }
  if (!matchesType(value, s.type)) {
    out.push({ field: where, reason: "FieldValueTypeInvalid", message: `Invalid value: "${typeOf(value)}": ${where} in body must be of type ${s.type ?? "unknown"}: "${typeOf(value)}"` });
    return;
  }
  if (s.enum && !s.enum.includes(value as string | number | boolean)) {
    out.push({ field: where, reason: "FieldValueNotSupported", message: `Unsupported value: ${shown(value)}: supported values: ${s.enum.map((e) => shown(e)).join(", ")}` });
  }
  if (typeof value === "number") {
    if (s.minimum !== undefined && value < s.minimum) out.push({ field: where, reason: "FieldValueInvalid", message: `Invalid value: ${value}: ${where} in body should be greater than or equal to ${s.minimum}` });
    if (s.maximum !== undefined && value > s.maximum) out.push({ field: where, reason: "FieldValueInvalid", message: `Invalid value: ${value}: ${where} in body should be less than or equal to ${s.maximum}` });
  }
  if (typeof value === "string") {
    if (s.minLength !== undefined && value.length < s.minLength) out.push({ field: where, reason: "FieldValueInvalid", message: `Invalid value: ${shown(value)}: ${where} in body should be at least ${s.minLength} chars long` });
    if (s.maxLength !== undefined && value.length > s.maxLength) out.push({ field: where, reason: "FieldValueInvalid", message: `Invalid value: ${shown(value)}: ${where} in body may not be longer than ${s.maxLength}` });
  }
  if (Array.isArray(value)) {
    if (s.items) value.forEach((v, i) => validateInto(v, s.items as StructuralSchema, `${path}[${i}]`, out));
    return;
  }
  if (isRecord(value)) {
    for (const r of s.required ?? []) {
      if (value[r] === undefined) out.push({ field: childPath(path, r), reason: "FieldValueRequired", message: "Required value" });
    }
    for (const [key, v] of Object.entries(value)) {
      const child = s.properties?.[key] ?? s.additionalProperties;
      if (child && !(path === "" && key === "metadata")) validateInto(v, child, childPath(path, key), out);
    }
  }
}

/** The schema of the member `key` of an object described by `s` (undefined: untyped/open). */
export function memberSchema(s: StructuralSchema | undefined, key: string): StructuralSchema | undefined {
  if (!s || isOpen(s)) return undefined;
  return s.properties?.[key] ?? s.additionalProperties;
}

/** A member declared by name (`properties`), as opposed to a key of a map. */
export function isDeclared(s: StructuralSchema | undefined, key: string): boolean {
  return s?.properties?.[key] !== undefined;
}

/** Lists are atomic unless the schema says set or map; untyped lists are atomic too. */
export function listTypeOf(s: StructuralSchema | undefined): "atomic" | "set" | "map" {
  return s?.["x-kubernetes-list-type"] ?? "atomic";
}

export function isAtomicMap(s: StructuralSchema | undefined): boolean {
  return s?.["x-kubernetes-map-type"] === "atomic";
}
