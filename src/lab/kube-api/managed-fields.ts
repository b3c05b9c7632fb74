/**
 * `metadata.managedFields` as the API server keeps it (k8s.io/apiserver pkg/endpoints/handlers/
 * fieldmanager, over sigs.k8s.io/structured-merge-diff merge/update.go): Update entries take the
 * fields a write added or changed from every other manager, Apply entries own exactly what their
 * manager last applied, and server-side apply refuses to take fields from another manager
 * without `force`.
 *
 * Simplified: no cap on the number of Update entries (the real server folds the oldest into
 * "ancient-changes" past 10), and managedFields sent by a client are ignored rather than adopted.
 */
import { compare, fieldSetOf, FieldSet, itemElement, pathString, type FieldPath } from "./field-set.js";
import { failure, KubeApiError, type StatusCause } from "./status.js";
import { isAtomicMap, listTypeOf, memberSchema, type StructuralSchema } from "./structural-schema.js";
import { isRecord, type KubeObject } from "./types.js";

export interface ManagedFieldsEntry {
  manager: string;
  operation: "Update" | "Apply";
  apiVersion: string;
  time?: string;
  fieldsType: "FieldsV1";
  fieldsV1: Record<string, unknown>;
  subresource?: string;
}

export interface FieldOwner {
  manager: string;
  operation: "Update" | "Apply";
  subresource?: "status";
}

/** ObjectMeta as structured-merge-diff types it: maps of labels/annotations, finalizers a set. */
export const META_SCHEMA: StructuralSchema = {
  type: "object",
  properties: {
    labels: { type: "object", additionalProperties: { type: "string" } },
    annotations: { type: "object", additionalProperties: { type: "string" } },
    finalizers: { type: "array", items: { type: "string" }, "x-kubernetes-list-type": "set" },
    ownerReferences: { type: "array", items: { type: "object", "x-kubernetes-map-type": "atomic" }, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"] },
    name: { type: "string" },
    namespace: { type: "string" },
    generateName: { type: "string" },
  },
};

/** Core types have no schema here: their top-level fields are declared, what lies below is deduced. */
const CORE_SCHEMA: StructuralSchema = {
  type: "object",
  properties: Object.fromEntries(
    ["apiVersion", "kind", "spec", "status", "data", "type", "immutable", "involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count", "eventTime", "reportingComponent", "reportingInstance", "action", "related", "series"].map((k) => [
      k,
      { "x-kubernetes-preserve-unknown-fields": true },
    ]),
  ),
};

/** The schema field ownership is computed with: the object's own, with ObjectMeta typed. */
export function trackingSchema(schema: StructuralSchema | undefined): StructuralSchema {
  const base = schema ?? CORE_SCHEMA;
  return { ...base, properties: { ...(base.properties ?? {}), metadata: META_SCHEMA } };
}

/** Paths the field manager never records (fieldmanager's stripMeta). */
const STRIPPED: FieldPath[] = [
  ["f:apiVersion"],
  ["f:kind"],
  ["f:metadata"],
  ...["name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName", "generation", "managedFields", "resourceVersion"].map((f) => ["f:metadata", `f:${f}`]),
];

function strip(set: FieldSet): FieldSet {
  return set.difference(FieldSet.of(STRIPPED));
}

/** What a write through the main resource or `/status` may own (the strategy's reset fields). */
function scoped(set: FieldSet, subresource: "status" | undefined): FieldSet {
  const s = strip(set);
  return subresource === "status" ? s.within(["f:status"]) : s.without([["f:status"]]);
}

/**
 * The manager of a request: `fieldManager`, else the User-Agent up to its first '/', printable
 * characters only, at most 128 (apiserver handlers/rest.go prefixFromUserAgent).
 */
export function managerName(fieldManager: string | null | undefined, userAgent: string | undefined): string {
  if (fieldManager) return fieldManager;
  const prefix = (userAgent ?? "").split("/")[0] ?? "";
  let out = "";
  for (const ch of prefix) {
    if (!/\p{L}|\p{M}|\p{N}|\p{P}|\p{S}| /u.test(ch)) continue;
    if (out.length >= 128) break;
    out += ch;
  }
  return out;
}

interface Owned {
  entry: ManagedFieldsEntry;
  set: FieldSet;
}

function keyOf(e: { manager: string; operation: string; apiVersion: string; subresource?: string | undefined }): string {
  // BuildManagerIdentifier: an applier is the same manager whatever apiVersion it applied with.
  return JSON.stringify([e.manager, e.operation, e.operation === "Apply" ? "" : e.apiVersion, e.subresource ?? ""]);
}

function decode(obj: KubeObject | undefined): Map<string, Owned> {
  const out = new Map<string, Owned>();
  const raw = obj?.metadata.managedFields;
  if (!Array.isArray(raw)) return out;
  for (const e of raw) {
    if (!isRecord(e) || typeof e.manager !== "string" || (e.operation !== "Update" && e.operation !== "Apply")) continue;
    const entry: ManagedFieldsEntry = {
      manager: e.manager,
      operation: e.operation,
      apiVersion: typeof e.apiVersion === "string" ? e.apiVersion : "",
      fieldsType: "FieldsV1",
      fieldsV1: isRecord(e.fieldsV1) ? e.fieldsV1 : {},
    };
    if (typeof e.time === "string") entry.time = e.time;
    if (typeof e.subresource === "string" && e.subresource) entry.subresource = e.subresource;
    out.set(keyOf(entry), { entry, set: FieldSet.fromFieldsV1(entry.fieldsV1) });
  }
  return out;
}

/** Entries in the API server's order: Apply before Update, then by time, manager, apiVersion. */
function encode(owned: Map<string, Owned>): ManagedFieldsEntry[] {
  const entries: ManagedFieldsEntry[] = [];
  for (const { entry, set } of owned.values()) {
    if (set.empty) continue;
    // Key order of the Go struct: manager, operation, apiVersion, time, fieldsType, fieldsV1, subresource.
    const e: ManagedFieldsEntry = {
      manager: entry.manager,
      operation: entry.operation,
      apiVersion: entry.apiVersion,
      ...(entry.time ? { time: entry.time } : {}),
      fieldsType: "FieldsV1",
      fieldsV1: set.toFieldsV1(),
      ...(entry.subresource ? { subresource: entry.subresource } : {}),
    };
    entries.push(e);
  }
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return entries.sort((a, b) => cmp(a.operation, b.operation) || cmp(a.time ?? "", b.time ?? "") || cmp(a.manager, b.manager) || cmp(a.apiVersion, b.apiVersion) || cmp(a.subresource ?? "", b.subresource ?? ""));
}

function nowTime(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface TrackOptions {
  owner: FieldOwner;
  apiVersion: string;
  /** The object's schema (undefined for core types); ObjectMeta is typed on top of it. */
  schema: StructuralSchema | undefined;
}

/**
 * managedFields after an Update (create, update, or any non-apply patch) from `old` to `next`:
 * the writer owns what it added or changed, and takes it from every other manager.
 */
export function recordUpdate(old: KubeObject | undefined, next: KubeObject, o: TrackOptions): ManagedFieldsEntry[] {
  const schema = trackingSchema(o.schema);
  const owned = decode(old);
  const cmp = compare(old ?? {}, next, schema);
  const changed = scoped(cmp.added.union(cmp.modified), o.owner.subresource);
  const removed = strip(cmp.removed);
  const self: ManagedFieldsEntry = { manager: o.owner.manager, operation: "Update", apiVersion: o.apiVersion, fieldsType: "FieldsV1", fieldsV1: {} };
  if (o.owner.subresource) self.subresource = o.owner.subresource;
  const selfKey = keyOf(self);
  for (const [k, v] of owned) if (k !== selfKey) v.set = v.set.difference(changed).difference(removed);
  const prev = owned.get(selfKey);
  if (!changed.empty) {
    owned.set(selfKey, { entry: { ...self, time: nowTime() }, set: (prev?.set ?? new FieldSet()).difference(removed).union(changed) });
  } else if (prev) prev.set = prev.set.difference(removed);
  return encode(owned);
}

/** One field another manager owns that an apply would change. */
export interface ApplyConflict {
  manager: ManagedFieldsEntry;
  path: FieldPath;
}

/** internal/conflict.go printManager: `"kubectl-edit" using postgresql.cnpg.io/v1 at <time>`. */
function printManager(e: ManagedFieldsEntry): string {
  let s = JSON.stringify(e.manager);
  if (e.subresource) s += ` with subresource ${JSON.stringify(e.subresource)}`;
  if (e.operation === "Update") s += e.time ? ` using ${e.apiVersion} at ${e.time}` : ` using ${e.apiVersion}`;
  return s;
}

/** 409 Conflict with one FieldManagerConflict cause per field (internal/conflict.go NewConflictError). */
export function conflictError(conflicts: ApplyConflict[]): KubeApiError {
  const causes: StatusCause[] = conflicts.map((c) => ({ reason: "FieldManagerConflict", message: `conflict with ${printManager(c.manager)}`, field: pathString(c.path) }));
  let message: string;
  const first = conflicts[0];
  if (conflicts.length === 1 && first) message = `Apply failed with 1 conflict: conflict with ${printManager(first.manager)}: ${pathString(first.path)}`;
  else {
    const byManager = new Map<string, ApplyConflict[]>();
    for (const c of conflicts) byManager.set(printManager(c.manager), [...(byManager.get(printManager(c.manager)) ?? []), c]);
    const lines: string[] = [];
    for (const m of [...byManager.keys()].sort()) {
      lines.push(`conflicts with ${m}`);
      for (const c of byManager.get(m) ?? []) lines.push(`- ${pathString(c.path)}`);
    }
    message = `Apply failed with ${conflicts.length} conflicts: ${lines.join("\n")}`;
  }
  return new KubeApiError(failure(409, "Conflict", message, { causes }));
}

/** Merges an applied configuration into the live object (structured-merge-diff typed.Merge). */
export function mergeApplied(live: unknown, config: unknown, schema: StructuralSchema | undefined): unknown {
  if (Array.isArray(config)) {
    const type = listTypeOf(schema);
    if (type === "atomic" || !Array.isArray(live)) return structuredClone(config);
    const out = structuredClone(live);
    const keyOfItem = (item: unknown, i: number) => itemElement(item, i, schema);
    for (const [i, item] of config.entries()) {
      const k = keyOfItem(item, i);
      const at = out.findIndex((x, j) => keyOfItem(x, j) === k);
      if (at < 0) out.push(structuredClone(item));
      else out[at] = type === "set" ? (item as unknown) : mergeApplied(out[at], item, schema?.items);
    }
    return out;
  }
  if (isRecord(config)) {
    if (!isRecord(live) || isAtomicMap(schema)) return structuredClone(config);
    const out: Record<string, unknown> = structuredClone(live);
    for (const [k, v] of Object.entries(config)) out[k] = out[k] === undefined ? structuredClone(v) : mergeApplied(out[k], v, memberSchema(schema, k));
    return out;
  }
  return structuredClone(config);
}

/** Removes the value at a field path, in place. */
function removeAt(obj: unknown, path: FieldPath, schema: StructuralSchema | undefined): void {
  let cur: unknown = obj;
  let s = schema;
  for (const [i, el] of path.entries()) {
    const last = i === path.length - 1;
    if (el.startsWith("f:")) {
      if (!isRecord(cur)) return;
      const key = el.slice(2);
      if (last) {
        delete cur[key];
        return;
      }
      cur = cur[key];
      s = memberSchema(s, key);
    } else {
      if (!Array.isArray(cur)) return;
      const list: unknown[] = cur;
      const listSchema = s;
      const at = list.findIndex((item, j) => itemElement(item, j, listSchema) === el);
      if (at < 0) return;
      if (last) {
        list.splice(at, 1);
        return;
      }
      cur = list[at];
      s = s?.items;
    }
  }
}

export interface ApplyResult {
  /** The live object merged with the configuration, fields no longer applied removed. */
  object: KubeObject;
  managedFields: ManagedFieldsEntry[];
}

/**
 * Server-side apply of `config` by `o.owner` (operation Apply) onto `live` (undefined: the
 * object does not exist yet). Throws 409 on conflicts unless `force`.
 */
export function applyConfiguration(live: KubeObject | undefined, base: KubeObject, config: Record<string, unknown>, o: TrackOptions & { force: boolean }): ApplyResult {
  const schema = trackingSchema(o.schema);
  const owned = decode(live);
  const sub = o.owner.subresource;
  const applied = scoped(fieldSetOf(config, schema), sub);
  const self: ManagedFieldsEntry = { manager: o.owner.manager, operation: "Apply", apiVersion: o.apiVersion, fieldsType: "FieldsV1", fieldsV1: {} };
  if (sub) self.subresource = sub;
  const selfKey = keyOf(self);
  const last = owned.get(selfKey);

  const merged = mergeApplied(base, config, schema) as KubeObject;
  owned.set(selfKey, { entry: { ...self, ...(last?.entry.time ? { time: last.entry.time } : {}) }, set: applied });
  // Fields this manager applied before and no longer applies go, unless someone else owns them.
  if (last) {
    let all = new FieldSet();
    for (const v of owned.values()) all = all.union(v.set);
    for (const p of last.set.difference(all).paths()) if (!all.hasAtOrBelow(p)) removeAt(merged, p, schema);
  }

  const cmp = compare(live ?? {}, merged, schema);
  const changed = scoped(cmp.added.union(cmp.modified), sub);
  const removed = strip(cmp.removed);
  const conflicts: ApplyConflict[] = [];
  for (const [k, v] of owned) {
    if (k === selfKey) continue;
    for (const p of v.set.intersection(changed).paths()) conflicts.push({ manager: v.entry, path: p });
  }
  if (conflicts.length > 0 && !o.force) throw conflictError(conflicts);
  for (const [k, v] of owned) if (k !== selfKey) v.set = v.set.difference(changed).difference(removed);
  const mine = owned.get(selfKey);
  const sameSet = last !== undefined && last.set.size === applied.size && last.set.difference(applied).empty;
  if (mine && (!changed.empty || !removed.empty || !sameSet || !mine.entry.time)) mine.entry.time = nowTime();
  return { object: merged, managedFields: encode(owned) };
}
