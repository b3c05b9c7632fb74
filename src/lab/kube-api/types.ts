/**
 * Shapes shared by the lab's Kubernetes API stand-in: stored objects, resource names, admission
 * hooks and store events. Objects stay loosely typed (`unknown` beyond metadata) because the
 * stand-in stores whatever a client sends, like the real API server does for custom resources.
 */

/** The resources this stand-in serves, by plural name (unique across the groups it serves). */
export type ResourceName = "clusters" | "namespaces" | "secrets" | "events" | "leases";

export const RESOURCE_NAMES: readonly ResourceName[] = ["clusters", "namespaces", "secrets", "events", "leases"];

export interface ObjectMeta {
  name: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  [key: string]: unknown;
}

/** One stored object: `apiVersion`, `kind` and `metadata` are checked, the rest is kept as sent. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export type WatchEventType = "ADDED" | "MODIFIED" | "DELETED";

/** A committed change, as in-process subscribers and watch streams see it. */
export interface StoreEvent {
  type: WatchEventType;
  resource: ResourceName;
  /** The object after the change (for DELETED: its last state, with the deletion's resourceVersion). */
  object: KubeObject;
  /** The object before the change (MODIFIED and DELETED). */
  oldObject?: KubeObject;
  /** The global resourceVersion this change was committed at. */
  resourceVersion: number;
}

export type AdmissionOperation = "CREATE" | "UPDATE";

/** One refused field: `field` is a dotted path (`spec.replica.primary`), as in Status causes. */
export interface AdmissionCause {
  field: string;
  message: string;
  /** The Status cause type: FieldValueInvalid (default), FieldValueRequired, FieldValueForbidden, … */
  reason?: string;
}

/**
 * A refusal by a validating admission webhook: the API server answers with the webhook's
 * Status, its message prefixed `admission webhook "<webhook>" denied the request: `.
 */
export interface AdmissionDenial {
  webhook: string;
  /** The group the webhook names the kind with in its message (`Cluster.<group> "x" is invalid`). */
  group: string;
  causes: AdmissionCause[];
}

/**
 * Validating admission: returns the refused fields (empty = allowed), or a webhook's denial
 * (empty causes = allowed). Runs on CREATE and on UPDATE of the main resource (not of
 * `/status`), before anything is stored.
 */
export type AdmissionHook = (op: AdmissionOperation, resource: ResourceName, newObj: KubeObject, oldObj?: KubeObject) => AdmissionCause[] | AdmissionDenial;

/** Permission rule of one token: `"*"` means every verb / every resource. */
export interface TokenRule {
  verbs: string[] | "*";
  /** Plural names, `plural/subresource` (`clusters/status`), `*` or `*\/status`. */
  resources: string[] | "*";
}

export interface TokenIdentity {
  /** The user name that appears in Forbidden messages and logs (a ServiceAccount's: `system:serviceaccount:<ns>:<name>`). */
  name: string;
  /** Groups for RBAC Group subjects. */
  groups?: string[];
  /** This token's own permission table; absent: the server's RBAC objects decide (KubeApiOptions.rbac). */
  allow?: TokenRule[];
}

/** Fault injection, switchable at run time. */
export interface Faults {
  /** Delay before every request is handled. */
  latencyMs?: number;
  /** Fraction (0..1) of requests answered with `errorStatus` instead of being handled. */
  errorRate?: number;
  /** The status of injected errors (default 503). */
  errorStatus?: 500 | 503 | 429;
  /** One-shot: ends every open watch stream now (clients see a clean end of stream). */
  dropWatches?: boolean;
  /** While set, every watch stream is ended this many ms after it started (keeps dropping). */
  watchLifetimeMs?: number;
  /** Refuse connections: the listener is closed and every open socket destroyed until cleared. */
  partitioned?: boolean;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
