/**
 * The object store of one region: one global resourceVersion counter, generation/uid/timestamps
 * kept by the server, optimistic concurrency, status subresource semantics, admission, a bounded
 * event history for watch resumption, and in-process subscribers.
 *
 * Everything is synchronous; events are delivered in commit order, also when a subscriber writes
 * while being notified (its write is queued behind the event being delivered).
 */
import { randomUUID } from "node:crypto";
import type { Logger } from "../../log.js";
import { applyMergePatch } from "../../cnpg/index.js";
import { applyJsonPatch, deepEqual, parseJsonPatch, PatchError } from "./json-patch.js";
import { applyConfiguration, recordUpdate, type FieldOwner, type ManagedFieldsEntry } from "./managed-fields.js";
import { decodeObject, kindProblems, nameProblem, normalizeSecret, throwIfInvalid, type KubeObjectInput } from "./objects.js";
import { apiVersionOf, groupResource, RESOURCES, type ResourceDef } from "./resources.js";
import { applyDefaults, prune, pruneMetadata, validate, type StructuralSchema } from "./structural-schema.js";
import { matchesFilter, parseFieldSelector, parseLabelSelector, type ObjectFilter } from "./selectors.js";
import { alreadyExists, badRequest, conflict, failure, invalid, KubeApiError, notFound } from "./status.js";
import { isRecord, type AdmissionHook, type KubeObject, type ResourceName, type StoreEvent, type WatchEventType } from "./types.js";

export interface ObjectRef {
  /** Required for namespaced resources, absent for cluster-scoped ones. */
  namespace?: string;
  name: string;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  limit?: number;
  continue?: string;
}

export interface ListResult {
  resourceVersion: string;
  items: KubeObject[];
  continue?: string;
  remainingItemCount?: number;
}

export interface WriteOptions {
  /** Check and admit, return what would be stored, store nothing. */
  dryRun?: boolean;
  /** Skip the admission hook (the lab's own writes of objects it owns). */
  skipAdmission?: boolean;
  /** The manager recorded in metadata.managedFields (default `IN_PROCESS_MANAGER`). */
  fieldManager?: string;
  /**
   * Unknown fields: pruned with a warning (Warn), pruned silently (Ignore) or refused with 400
   * (Strict); the schema (types, required, …) is checked and defaults set. Absent: none of this,
   * the object is kept as given (the lab's in-process writes); the HTTP layer always sets it.
   */
  fieldValidation?: FieldValidation;
  /** Receives the warnings of the write (`unknown field "spec.foo"`), for the Warning header. */
  warnings?: string[];
}

export type FieldValidation = "Strict" | "Warn" | "Ignore";

export interface ApplyOptions extends WriteOptions {
  fieldManager: string;
  /** Take the fields other managers own instead of answering 409. */
  force?: boolean;
  subresource?: "status";
}

/** The manager of writes through the store's API that name none. */
export const IN_PROCESS_MANAGER = "pgfed-lab";

/** Internal: managedFields already computed (by an apply). */
interface InternalWrite extends WriteOptions {
  managed?: ManagedFieldsEntry[];
}

export type PatchType = "merge" | "json";

export interface DeleteOptions extends WriteOptions {
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface SubscribeFilter {
  resource?: ResourceName;
  namespace?: string;
  name?: string;
}

export type StoreListener = (event: StoreEvent) => void;

/** A whole new status (null removes it), or a function of the current object returning one. */
export type StatusInput = Record<string, unknown> | null | ((current: KubeObject) => Record<string, unknown> | null);

export interface StoreOptions {
  /** Events kept for watch resumption; older resourceVersions get 410 Expired. */
  watchHistory: number;
  admission: AdmissionHook | undefined;
  logger: Logger | undefined;
}

interface Subscription {
  listener: StoreListener;
  filter: SubscribeFilter | undefined;
  /** Internal listeners (watch streams) get the shared event; external ones a private copy. */
  shared: boolean;
}

function keyOf(ns: string | undefined, name: string): string {
  return `${ns ?? ""}/${name}`;
}

function randomSuffix(): string {
  const chars = "bcdfghjklmnpqrstvwxz2456789";
  let s = "";
  for (let i = 0; i < 5; i++) s += chars[Math.floor(Math.random() * chars.length)];
  return s;
}

/** Everything but metadata and status: what bumps `generation` when it changes. */
function specPart(obj: KubeObject): Record<string, unknown> {
  const { metadata: _m, status: _s, ...rest } = obj;
  return rest;
}

/** The object without resourceVersion: two writes producing the same are a no-op. */
function contentOf(obj: KubeObject): unknown {
  const { resourceVersion: _rv, ...meta } = obj.metadata;
  return { ...obj, metadata: meta };
}

export class KubeStore {
  private rv = 0;
  private readonly objects = new Map<ResourceName, Map<string, KubeObject>>();
  private readonly history: StoreEvent[] = [];
  /** Every event with a resourceVersion above this is still in `history`. */
  private historyFloor = 0;
  private readonly subscriptions = new Set<Subscription>();
  private readonly queue: StoreEvent[] = [];
  private draining = false;

  constructor(private readonly opts: StoreOptions) {
    for (const name of Object.keys(RESOURCES) as ResourceName[]) this.objects.set(name, new Map());
  }

  /** The newest resourceVersion handed out. */
  get resourceVersion(): number {
    return this.rv;
  }

  /** The oldest resourceVersion a watch can still resume from. */
  get oldestResumableVersion(): number {
    return this.historyFloor;
  }

  private table(resource: ResourceName): Map<string, KubeObject> {
    const t = this.objects.get(resource);
    if (!t) throw new KubeApiError(failure(404, "NotFound", `the server does not serve resource "${String(resource)}"`));
    return t;
  }

  private def(resource: ResourceName): ResourceDef {
    const def = RESOURCES[resource];
    if (!def) throw new KubeApiError(failure(404, "NotFound", `the server does not serve resource "${String(resource)}"`));
    return def;
  }

  private checkScope(def: ResourceDef, ns: string | undefined): string | undefined {
    if (def.namespaced && !ns) throw badRequest(`${def.name} are namespaced: a namespace is required`);
    return def.namespaced ? ns : undefined;
  }

  private raw(resource: ResourceName, ref: ObjectRef): KubeObject | undefined {
    const def = this.def(resource);
    return this.table(resource).get(keyOf(this.checkScope(def, ref.namespace), ref.name));
  }

  private mustGet(resource: ResourceName, ref: ObjectRef): KubeObject {
    const obj = this.raw(resource, ref);
    if (!obj) throw notFound(groupResource(this.def(resource)), ref.name);
    return obj;
  }

  /** A copy of the object, or undefined. */
  get(resource: ResourceName, ref: ObjectRef): KubeObject | undefined {
    const obj = this.raw(resource, ref);
    return obj ? structuredClone(obj) : undefined;
  }

  /** Like `get`, but a missing object is a 404 KubeApiError. */
  read(resource: ResourceName, ref: ObjectRef): KubeObject {
    return structuredClone(this.mustGet(resource, ref));
  }

  filterFor(resource: ResourceName, o: { namespace?: string; labelSelector?: string; fieldSelector?: string }): ObjectFilter {
    const def = this.def(resource);
    const f: ObjectFilter = {
      labels: parseLabelSelector(o.labelSelector ?? ""),
      fields: parseFieldSelector(o.fieldSelector ?? "", def.extraFieldSelectors),
    };
    if (def.namespaced && o.namespace) f.namespace = o.namespace;
    return f;
  }

  /** Objects sorted by namespace/name (etcd key order), filtered, optionally paged. */
  list(resource: ResourceName, o: ListOptions = {}): ListResult {
    const filter = this.filterFor(resource, o);
    return this.listFiltered(resource, filter, o.limit, o.continue);
  }

  listFiltered(resource: ResourceName, filter: ObjectFilter, limit?: number, cont?: string): ListResult {
    const all = [...this.table(resource).entries()]
      .filter(([, obj]) => matchesFilter(filter, obj))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let start = 0;
    if (cont) {
      let after: unknown;
      try {
        after = JSON.parse(Buffer.from(cont, "base64url").toString("utf8"));
      } catch {
        throw badRequest(`continue key is not valid: ${cont}`);
      }
      if (!isRecord(after) || typeof after.after !== "string") throw badRequest(`continue key is not valid: ${cont}`);
      const afterKey = after.after;
      start = all.findIndex(([k]) => k > afterKey);
      if (start < 0) start = all.length;
    }
    const page = limit && limit > 0 ? all.slice(start, start + limit) : all.slice(start);
    const out: ListResult = { resourceVersion: String(this.rv), items: page.map(([, o]) => structuredClone(o)) };
    const last = page.at(-1);
    const remaining = all.length - start - page.length;
    if (remaining > 0 && last) {
      out.continue = Buffer.from(JSON.stringify({ after: last[0], rv: this.rv })).toString("base64url");
      out.remainingItemCount = remaining;
    }
    return out;
  }

  create(resource: ResourceName, input: KubeObjectInput, wo: WriteOptions = {}): KubeObject {
    const def = this.def(resource);
    const decoded = decodeObject(input, def);
    this.conform(def, decoded, "main", wo);
    const meta = decoded.metadata;
    let name = meta.name ?? "";
    if (!name && meta.generateName) name = `${meta.generateName}${randomSuffix()}`;
    if (!name) throw invalid(def.kind, def.group, "", [{ field: "metadata.name", reason: "FieldValueRequired", message: "Required value: name or generateName is required" }]);
    const ns = this.checkScope(def, meta.namespace);
    const problem = nameProblem(def, name);
    if (problem) throw invalid(def.kind, def.group, name, [{ field: "metadata.name", message: problem }]);
    if (ns !== undefined && !this.table("namespaces").has(keyOf(undefined, ns))) throw notFound(groupResource(RESOURCES.namespaces), ns);
    if (this.table(resource).has(keyOf(ns, name))) throw alreadyExists(groupResource(def), name);

    const { resourceVersion: _rv, uid: _uid, generation: _g, creationTimestamp: _c, deletionTimestamp: _d, ...userMeta } = meta;
    const obj: KubeObject = {
      ...structuredClone(decoded),
      apiVersion: apiVersionOf(def),
      kind: def.kind,
      metadata: {
        ...structuredClone(userMeta),
        name,
        uid: randomUUID(),
        creationTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      },
    };
    if (ns !== undefined) obj.metadata.namespace = ns;
    else delete obj.metadata.namespace;
    if (def.tracksGeneration) obj.metadata.generation = 1;
    if (def.name === "clusters") delete obj.status;
    if (def.name === "namespaces") {
      obj.spec = { finalizers: ["kubernetes"] };
      obj.status = { phase: "Active" };
      obj.metadata.labels = { ...(obj.metadata.labels ?? {}), "kubernetes.io/metadata.name": name };
    }
    if (def.name === "secrets") normalizeSecret(obj);
    obj.metadata.managedFields = (wo as InternalWrite).managed ?? recordUpdate(undefined, obj, this.tracking(def, this.owner(wo)));
    throwIfInvalid(def, name, kindProblems(def, obj));
    if (!wo.skipAdmission) this.admit(def, "CREATE", obj, undefined);
    if (wo.dryRun) return structuredClone({ ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rv) } });
    return structuredClone(this.commit(def, "ADDED", obj, undefined));
  }

  /** PUT of the main resource: spec and metadata change, status (when a subresource) is kept. */
  update(resource: ResourceName, input: KubeObjectInput, wo: WriteOptions = {}): KubeObject {
    const def = this.def(resource);
    const decoded = decodeObject(input, def);
    const name = decoded.metadata.name ?? "";
    const old = this.mustGet(resource, { namespace: decoded.metadata.namespace, name });
    this.conform(def, decoded, "main", wo);
    if (decoded.metadata.resourceVersion === undefined || decoded.metadata.resourceVersion === "") {
      if (!def.unconditionalUpdate) {
        throw invalid(def.kind, def.group, name, [{ field: "metadata.resourceVersion", message: "Invalid value: 0x0: must be specified for an update" }]);
      }
    }
    return structuredClone(this.replaceMain(def, old, decoded, wo));
  }

  /** PUT of `/status`: only `status` changes; metadata and spec in the body are ignored. */
  replaceStatus(resource: ResourceName, input: KubeObjectInput, wo: WriteOptions = {}): KubeObject {
    const def = this.def(resource);
    const decoded = decodeObject(input, def);
    const old = this.mustGet(resource, { namespace: decoded.metadata.namespace, name: decoded.metadata.name ?? "" });
    this.conform(def, decoded, "status", wo);
    this.checkPreconditions(def, old, decoded.metadata.resourceVersion, decoded.metadata.uid);
    return structuredClone(this.replaceStatusOf(def, old, decoded.status, wo));
  }

  /**
   * The lab's way to write status: `status` replaces the whole status, or is computed from the
   * current object. `resourceVersion`, when given, must still be current (409 otherwise).
   */
  updateStatus(resource: ResourceName, ref: ObjectRef, status: StatusInput, o: { resourceVersion?: string } = {}): KubeObject {
    const def = this.def(resource);
    const old = this.mustGet(resource, ref);
    this.checkPreconditions(def, old, o.resourceVersion, undefined);
    const next = typeof status === "function" ? status(structuredClone(old)) : status;
    return structuredClone(this.replaceStatusOf(def, old, next, {}));
  }

  /** PATCH of the main resource or of `/status`. */
  patch(resource: ResourceName, ref: ObjectRef, patch: unknown, type: PatchType = "merge", o: WriteOptions & { subresource?: "status" } = {}): KubeObject {
    const def = this.def(resource);
    const old = this.mustGet(resource, ref);
    let patched: unknown;
    try {
      patched = type === "merge" ? applyMergePatch(old, patch) : applyJsonPatch(old, parseJsonPatch(patch));
    } catch (e) {
      if (e instanceof PatchError && e.kind === "failed") {
        throw new KubeApiError(failure(422, "Invalid", `the server rejected our request due to an error in our request: ${e.message}`, { causes: [{ reason: "UnexpectedServerResponse", message: e.message }] }));
      }
      if (e instanceof PatchError) throw badRequest(e.message);
      throw e;
    }
    if (!isRecord(patched)) throw badRequest("the patched object is not a JSON object");
    const decoded = decodeObject(patched, def);
    if (decoded.metadata.name !== old.metadata.name || (def.namespaced && decoded.metadata.namespace !== old.metadata.namespace)) {
      throw invalid(def.kind, def.group, old.metadata.name, [{ field: "metadata.name", message: "Invalid value: field is immutable" }]);
    }
    this.conform(def, decoded, o.subresource === "status" ? "status" : "main", o);
    if (o.subresource === "status") {
      this.checkPreconditions(def, old, decoded.metadata.resourceVersion, decoded.metadata.uid);
      return structuredClone(this.replaceStatusOf(def, old, decoded.status, o));
    }
    return structuredClone(this.replaceMain(def, old, decoded, o));
  }

  /**
   * Server-side apply (PATCH with application/apply-patch+yaml): merges `config` into the live
   * object, or creates it; the manager owns exactly what it applied. 409 on conflicts with
   * other managers unless `force`.
   */
  apply(resource: ResourceName, ref: ObjectRef, config: unknown, o: ApplyOptions): KubeObject {
    const def = this.def(resource);
    const decoded = decodeObject(config, def);
    const name = decoded.metadata.name ?? ref.name;
    if (name !== ref.name) throw badRequest(`the name of the object (${name}) does not match the name on the URL (${ref.name})`);
    const ns = this.checkScope(def, ref.namespace);
    if (def.namespaced && decoded.metadata.namespace && decoded.metadata.namespace !== ns) throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    const cfg: Record<string, unknown> = { ...structuredClone(decoded), apiVersion: apiVersionOf(def), kind: def.kind, metadata: { ...structuredClone(decoded.metadata), name } };
    if (ns !== undefined) (cfg.metadata as Record<string, unknown>).namespace = ns;
    this.refuseUndeclared(def, cfg, ref);
    const live = this.raw(resource, ref);
    const owner: FieldOwner = { manager: o.fieldManager, operation: "Apply", ...(o.subresource ? { subresource: o.subresource } : {}) };
    const track = { ...this.tracking(def, owner), force: o.force === true };
    if (!live) {
      if (o.subresource === "status") throw notFound(groupResource(def), ref.name);
      const base: KubeObject = { apiVersion: apiVersionOf(def), kind: def.kind, metadata: { name, ...(ns !== undefined ? { namespace: ns } : {}) } };
      const r = applyConfiguration(undefined, base, cfg, track);
      const wo: InternalWrite = { ...o, managed: r.managedFields };
      return this.create(resource, r.object, wo);
    }
    const r = applyConfiguration(live, structuredClone(live), cfg, track);
    const wo: InternalWrite = { ...o, managed: r.managedFields };
    const merged = decodeObject(r.object, def);
    if (o.subresource === "status") {
      this.checkPreconditions(def, live, decodeObject(cfg, def).metadata.resourceVersion, undefined);
      return structuredClone(this.replaceStatusOf(def, live, merged.status, wo));
    }
    return structuredClone(this.replaceMain(def, live, merged, wo));
  }

  delete(resource: ResourceName, ref: ObjectRef, o: DeleteOptions = {}): KubeObject {
    const def = this.def(resource);
    const old = this.mustGet(resource, ref);
    this.checkPreconditions(def, old, o.preconditions?.resourceVersion, o.preconditions?.uid);
    if (o.dryRun) return structuredClone(old);
    if ((old.metadata.finalizers?.length ?? 0) > 0) {
      if (old.metadata.deletionTimestamp) return structuredClone(old);
      const marked: KubeObject = structuredClone(old);
      marked.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
      return structuredClone(this.commit(def, "MODIFIED", marked, old));
    }
    if (def.name === "namespaces") {
      // Simplified: the namespace and everything in it go at once (no Terminating phase).
      for (const [resName, table] of this.objects) {
        const inner = RESOURCES[resName];
        if (!inner.namespaced) continue;
        for (const obj of [...table.values()]) if (obj.metadata.namespace === old.metadata.name) this.commit(inner, "DELETED", obj, obj);
      }
    }
    return structuredClone(this.commit(def, "DELETED", old, old));
  }

  /** DELETE on a collection: deletes every object the filter selects, returns them. */
  deleteCollection(resource: ResourceName, filter: ObjectFilter, o: WriteOptions = {}): KubeObject[] {
    const def = this.def(resource);
    const victims = [...this.table(resource).values()].filter((obj) => matchesFilter(filter, obj));
    return victims.map((v) => this.delete(resource, { namespace: def.namespaced ? v.metadata.namespace : undefined, name: v.metadata.name }, o));
  }

  /**
   * Calls `listener` for every committed change (optionally filtered), in commit order. The
   * listener gets its own copy. Returns the unsubscribe function.
   */
  subscribe(listener: StoreListener, filter?: SubscribeFilter): () => void {
    return this.addSubscription({ listener, filter, shared: false });
  }

  /** For watch streams: the event is shared and must not be modified. */
  subscribeShared(listener: StoreListener): () => void {
    return this.addSubscription({ listener, filter: undefined, shared: true });
  }

  private addSubscription(s: Subscription): () => void {
    this.subscriptions.add(s);
    return () => {
      this.subscriptions.delete(s);
    };
  }

  /** Events committed after `rv`, or undefined when some of them are no longer kept. */
  eventsSince(rv: number): StoreEvent[] | undefined {
    if (rv < this.historyFloor) return undefined;
    return this.history.filter((e) => e.resourceVersion > rv);
  }

  private checkPreconditions(def: ResourceDef, old: KubeObject, rv: string | undefined, uid: string | undefined): void {
    if (uid && uid !== old.metadata.uid) {
      throw conflict(groupResource(def), old.metadata.name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${old.metadata.uid ?? ""}`);
    }
    if (rv && rv !== old.metadata.resourceVersion) throw conflict(groupResource(def), old.metadata.name);
  }

  private replaceMain(def: ResourceDef, old: KubeObject, input: KubeObjectInput, wo: InternalWrite): KubeObject {
    this.checkPreconditions(def, old, input.metadata.resourceVersion, input.metadata.uid);
    const { uid: _u, creationTimestamp: _c, generation: _g, resourceVersion: _rv, deletionTimestamp: _d, name: _n, namespace: _ns, ...userMeta } = input.metadata;
    const next: KubeObject = {
      ...structuredClone(input),
      apiVersion: old.apiVersion,
      kind: old.kind,
      metadata: { ...structuredClone(userMeta), name: old.metadata.name },
    };
    const kept = { namespace: old.metadata.namespace, uid: old.metadata.uid, creationTimestamp: old.metadata.creationTimestamp, generation: old.metadata.generation, deletionTimestamp: old.metadata.deletionTimestamp };
    for (const [k, v] of Object.entries(kept)) if (v !== undefined) next.metadata[k] = v;
    if (def.subresources.includes("status")) {
      if (old.status === undefined) delete next.status;
      else next.status = structuredClone(old.status);
    }
    if (def.name === "secrets") normalizeSecret(next);
    if (def.tracksGeneration && !deepEqual(specPart(old), specPart(next))) next.metadata.generation = (old.metadata.generation ?? 0) + 1;
    next.metadata.managedFields = wo.managed ?? recordUpdate(old, next, this.tracking(def, this.owner(wo)));
    throwIfInvalid(def, old.metadata.name, kindProblems(def, next));
    if (!wo.skipAdmission) this.admit(def, "UPDATE", next, old);
    if (wo.dryRun) return next;
    if (old.metadata.deletionTimestamp && (next.metadata.finalizers?.length ?? 0) === 0) return this.commit(def, "DELETED", next, old);
    if (deepEqual(contentOf(old), contentOf(next))) return old;
    return this.commit(def, "MODIFIED", next, old);
  }

  private replaceStatusOf(def: ResourceDef, old: KubeObject, status: unknown, wo: InternalWrite): KubeObject {
    if (status !== undefined && status !== null && !isRecord(status)) {
      throw invalid(def.kind, def.group, old.metadata.name, [{ field: "status", message: "Invalid value: must be an object" }]);
    }
    const next: KubeObject = structuredClone(old);
    if (status === undefined || status === null) delete next.status;
    else next.status = structuredClone(status);
    next.metadata.managedFields = wo.managed ?? recordUpdate(old, next, this.tracking(def, { ...this.owner(wo), subresource: "status" }));
    if (wo.dryRun) return next;
    if (deepEqual(contentOf(old), contentOf(next))) return old;
    return this.commit(def, "MODIFIED", next, old);
  }

  private owner(wo: WriteOptions): FieldOwner {
    return { manager: wo.fieldManager ?? IN_PROCESS_MANAGER, operation: "Update" };
  }

  private tracking(def: ResourceDef, owner: FieldOwner): { owner: FieldOwner; apiVersion: string; schema: StructuralSchema | undefined } {
    return { owner, apiVersion: apiVersionOf(def), schema: def.schema };
  }

  /**
   * What the API server does to a decoded body before admission: drops unknown fields (or
   * refuses them under Strict), sets the schema's defaults, validates against the schema
   * (apiextensions-apiserver's pruning, defaulting and validation of a structural schema).
   */
  private conform(def: ResourceDef, input: KubeObjectInput, part: "main" | "status", wo: WriteOptions): void {
    const mode = wo.fieldValidation;
    if (!mode) return;
    const unknown = [...pruneMetadata(input.metadata), ...(def.schema ? prune(input, def.schema) : [])].sort();
    if (unknown.length > 0 && mode === "Strict") {
      throw badRequest(`${def.kind} in version "${def.version}" cannot be handled as a ${def.kind}: strict decoding error: ${unknown.map((u) => `unknown field "${u}"`).join(", ")}`);
    }
    if (mode === "Warn") wo.warnings?.push(...unknown.map((u) => `unknown field "${u}"`));
    if (!def.schema) return;
    const name = input.metadata.name ?? "";
    if (part === "status") {
      const statusSchema = def.schema.properties?.status;
      const problems = statusSchema && input.status !== undefined ? validate(input.status, statusSchema, "status") : [];
      throwIfInvalid(def, name, problems);
      return;
    }
    applyDefaults(input, def.schema);
    const { status: _s, ...rest } = input;
    throwIfInvalid(def, name, validate(rest, def.schema));
  }

  /** Server-side apply is always strict: an undeclared field is refused (fieldmanager's typed patch). */
  private refuseUndeclared(def: ResourceDef, cfg: Record<string, unknown>, ref: ObjectRef): void {
    const probe = structuredClone(cfg);
    const meta = isRecord(probe.metadata) ? probe.metadata : {};
    const unknown = [...pruneMetadata(meta), ...(def.schema ? prune(probe, def.schema) : [])].sort();
    if (unknown.length === 0) return;
    const errors = unknown.map((u) => `.${u}: field not declared in schema`);
    const where = `${ref.namespace ? `${ref.namespace}/` : ""}${ref.name}; ${apiVersionOf(def)}, Kind=${def.kind}`;
    throw badRequest(`failed to create typed patch object (${where}): ${errors.length === 1 ? errors[0] : `errors:\n  ${errors.join("\n  ")}`}`);
  }

  private admit(def: ResourceDef, op: "CREATE" | "UPDATE", obj: KubeObject, old: KubeObject | undefined): void {
    const hook = this.opts.admission;
    if (!hook) return;
    let causes;
    try {
      causes = hook(op, def.name, structuredClone(obj), old ? structuredClone(old) : undefined);
    } catch (e) {
      this.opts.logger?.error({ err: e, resource: def.name, name: obj.metadata.name }, "admission hook threw; refusing the write");
      throw new KubeApiError(failure(500, "InternalError", `Internal error occurred: admission of ${def.kind} "${obj.metadata.name}" failed: ${e instanceof Error ? e.message : String(e)}`));
    }
    if (Array.isArray(causes)) {
      if (causes.length > 0) throw invalid(def.kind, def.group, obj.metadata.name, causes);
      return;
    }
    if (causes.causes.length === 0) return;
    // apiserver admission/plugin/webhook/errors ToStatusErr: the webhook's Status, message prefixed.
    const status = invalid(def.kind, causes.group, obj.metadata.name, causes.causes).status;
    throw new KubeApiError({ ...status, message: `admission webhook "${causes.webhook}" denied the request: ${status.message}` });
  }

  /** Stores (or removes) the object at a new resourceVersion and queues the event. */
  private commit(def: ResourceDef, type: WatchEventType, obj: KubeObject, old: KubeObject | undefined): KubeObject {
    const rv = ++this.rv;
    const stored: KubeObject = { ...obj, metadata: { ...obj.metadata, resourceVersion: String(rv) } };
    const key = keyOf(def.namespaced ? stored.metadata.namespace : undefined, stored.metadata.name);
    if (type === "DELETED") this.table(def.name).delete(key);
    else this.table(def.name).set(key, stored);
    const event: StoreEvent = { type, resource: def.name, object: stored, resourceVersion: rv };
    if (old && type !== "ADDED") event.oldObject = old;
    this.history.push(event);
    while (this.history.length > Math.max(1, this.opts.watchHistory)) {
      const dropped = this.history.shift();
      if (dropped) this.historyFloor = dropped.resourceVersion;
    }
    this.queue.push(event);
    this.drain();
    return stored;
  }

  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      for (let e = this.queue.shift(); e; e = this.queue.shift()) {
        for (const s of [...this.subscriptions]) {
          if (!this.subscriptions.has(s)) continue;
          const f = s.filter;
          if (f?.resource && f.resource !== e.resource) continue;
          if (f?.namespace !== undefined && f.namespace !== e.object.metadata.namespace) continue;
          if (f?.name !== undefined && f.name !== e.object.metadata.name) continue;
          try {
            s.listener(s.shared ? e : structuredClone(e));
          } catch (err) {
            this.opts.logger?.error({ err, resource: e.resource, name: e.object.metadata.name }, "a store subscriber threw; it keeps its subscription");
          }
        }
      }
    } finally {
      this.draining = false;
    }
  }
}
