/**
 * Pure readers over a parsed Cluster, each answering one question the way CNPG itself answers it
 * (CNPG.md). Callers never dig through spec/status by hand, so a contract change lands here only.
 */
import { PgfedError } from "../errors.js";
import { CONDITIONS, FENCED_INSTANCES_ANNOTATION, PHASES, PROMOTION_TOKEN_MISMATCH_REASON } from "./cluster.js";
import type { Cluster, Condition, ConditionStatus } from "./cluster.js";

export type ClusterRole = "primary" | "replica";
export type ArchivingStatus = "ok" | "failing" | "unknown";
export type ReplicaSwitchStatus = "in-progress" | "completed" | "unknown";

/** This cluster's name in the topology: `spec.replica.self`, defaulting to `metadata.name` (CNPG treats "" as unset). */
export function selfName(c: Cluster): string {
  const self = c.spec.replica?.self;
  return self === undefined || self === "" ? c.metadata.name : self;
}

/** The topology's designated primary per this object's spec, or undefined when it names none. */
export function designatedPrimary(c: Cluster): string | undefined {
  const primary = c.spec.replica?.primary;
  return primary === undefined || primary === "" ? undefined : primary;
}

/**
 * The role CNPG gives this object, mirroring CNPG's `Cluster.IsReplica()`: no replica stanza →
 * primary; an explicit legacy `enabled` wins (admission refuses it next to `primary`, but if both
 * appear we must agree with the operator about who accepts writes); otherwise replica unless
 * `primary == self` (so a stanza naming no primary is a replica, as in CNPG).
 */
export function clusterRole(c: Cluster): ClusterRole {
  const replica = c.spec.replica;
  if (replica === undefined) return "primary";
  if (replica.enabled !== undefined) return replica.enabled ? "replica" : "primary";
  return designatedPrimary(c) === selfName(c) ? "primary" : "replica";
}

export function clusterPhase(c: Cluster): string | undefined {
  return c.status?.phase;
}

export function getCondition(c: Cluster, type: string): Condition | undefined {
  return c.status?.conditions?.find((cond) => cond.type === type);
}

export function conditionIs(c: Cluster, type: string, status: ConditionStatus): boolean {
  return getCondition(c, type)?.status === status;
}

/** The `Ready` condition; without one (not reconciled yet, older status) fall back to the healthy phase it mirrors. */
export function isReady(c: Cluster): boolean {
  const ready = getCondition(c, CONDITIONS.ready);
  if (ready !== undefined) return ready.status === "True";
  return clusterPhase(c) === PHASES.healthy;
}

/** The `ContinuousArchiving` condition, which CNPG updates after every archive attempt. */
export function archivingStatus(c: Cluster): ArchivingStatus {
  const status = getCondition(c, CONDITIONS.continuousArchiving)?.status;
  if (status === "True") return "ok";
  if (status === "False") return "failing";
  return "unknown";
}

/** The `ReplicaClusterSwitch` condition: False while a demotion runs ("Starting…"), True once it completed. */
export function replicaSwitchStatus(c: Cluster): ReplicaSwitchStatus {
  const status = getCondition(c, CONDITIONS.replicaClusterSwitch)?.status;
  if (status === "True") return "completed";
  if (status === "False") return "in-progress";
  return "unknown";
}

/** CNPG refuses role changes while this is true. */
export function switchInProgress(c: Cluster): boolean {
  return c.status?.switchReplicaClusterStatus?.inProgress === true;
}

/**
 * The instances named by the `cnpg.io/fencedInstances` annotation (`"*"` = all, kept as is),
 * deduplicated; [] when the annotation is absent. A value CNPG could not parse either is an error,
 * not "unfenced": guessing wrong here could let a fenced primary look writable.
 */
export function fencedInstances(c: Cluster): string[] {
  const raw = c.metadata.annotations?.[FENCED_INSTANCES_ANNOTATION];
  if (raw === undefined) return [];
  const who = clusterRef(c);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new PgfedError(
      "cnpg.invalid_fencing",
      `annotation ${FENCED_INSTANCES_ANNOTATION} on ${who} is not JSON: ${JSON.stringify(raw)}`,
      { cluster: who, annotation: FENCED_INSTANCES_ANNOTATION, value: raw },
      { cause: err },
    );
  }
  // JSON null unmarshals into an empty Go slice: the empty set (CNPG's pkg/utils/fencing.go, GetFencedInstances).
  if (parsed === null) return [];
  if (!Array.isArray(parsed) || !parsed.every((item): item is string => typeof item === "string")) {
    throw new PgfedError(
      "cnpg.invalid_fencing",
      `annotation ${FENCED_INSTANCES_ANNOTATION} on ${who} is not a JSON array of instance names: ${JSON.stringify(raw)}`,
      { cluster: who, annotation: FENCED_INSTANCES_ANNOTATION, value: raw },
    );
  }
  return [...new Set(parsed)];
}

/** Every instance is fenced (Postgres stopped on all pods). */
export function isFullyFenced(c: Cluster): boolean {
  return fencedInstances(c).includes("*");
}

/**
 * All instances fenced by a readable annotation, for deciding whether to fence: one that cannot be parsed
 * counts as not fenced (fencing again replaces it with one CNPG understands).
 */
export function isFencedForSure(c: Cluster): boolean {
  try {
    return isFullyFenced(c);
  } catch {
    return false;
  }
}

/** At least one instance is fenced. */
export function isFenced(c: Cluster): boolean {
  return fencedInstances(c).length > 0;
}

export function isUnrecoverable(c: Cluster): boolean {
  return clusterPhase(c) === PHASES.unrecoverable;
}

/** Waiting to replay up to a promotion token (CNPG retries every 10 s with no timeout of its own). */
export function isPromoting(c: Cluster): boolean {
  return clusterPhase(c) === PHASES.promoting;
}

/** The replica refused its promotion token for good: wrong system, older timeline, or already past the REDO point. */
export function promotionTokenRejected(c: Cluster): boolean {
  return isUnrecoverable(c) && c.status?.phaseReason === PROMOTION_TOKEN_MISMATCH_REASON;
}

/** `status.demotionToken`, written after a clean demotion; raw, to be copied verbatim into the target's spec. */
export function demotionToken(c: Cluster): string | undefined {
  return nonEmpty(c.status?.demotionToken);
}

/** `status.lastPromotionToken`: equals the token in spec once the promotion it carried succeeded. */
export function lastPromotionToken(c: Cluster): string | undefined {
  return nonEmpty(c.status?.lastPromotionToken);
}

/** `spec.replica.promotionToken`: must be cleared before this cluster is demoted again (CNPG issue #9273). */
export function specPromotionToken(c: Cluster): string | undefined {
  return nonEmpty(c.spec.replica?.promotionToken);
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s === "" ? undefined : s;
}

function clusterRef(c: Cluster): string {
  return c.metadata.namespace === undefined ? `Cluster ${c.metadata.name}` : `Cluster ${c.metadata.namespace}/${c.metadata.name}`;
}

/** The field manager pgfed writes Clusters with (the API server's `fieldManager`, kept in metadata.managedFields). */
export const PGFED_FIELD_MANAGER = "pgfed";

/**
 * Who last set a field, from `metadata.managedFields` (Kubernetes' server-side field tracking:
 * each entry lists the fields its manager owns as nested `f:<name>` keys in `fieldsV1`). The
 * newest entry owning `path` wins; undefined when no entry owns it or managedFields is absent
 * (an API server without field tracking). Anything malformed is skipped, never trusted.
 */
export function fieldOwner(c: Cluster, path: readonly string[]): { manager: string; operation: string; time: string | undefined } | undefined {
  const entries: unknown = (c.metadata as Record<string, unknown>).managedFields;
  if (!Array.isArray(entries)) return undefined;
  let best: { manager: string; operation: string; time: string | undefined } | undefined;
  for (const e of entries as unknown[]) {
    if (typeof e !== "object" || e === null) continue;
    const entry = e as Record<string, unknown>;
    if (typeof entry.manager !== "string" || entry.subresource === "status") continue;
    let node: unknown = entry.fieldsV1;
    for (const key of path) node = typeof node === "object" && node !== null ? (node as Record<string, unknown>)[`f:${key}`] : undefined;
    if (node === undefined) continue;
    const time = typeof entry.time === "string" ? entry.time : undefined;
    if (!best || (time !== undefined && (best.time === undefined || time >= best.time))) best = { manager: entry.manager, operation: typeof entry.operation === "string" ? entry.operation : "", time };
  }
  return best;
}
