/**
 * Status of a Cluster as the CNPG stand-in writes it after each pass: phase, conditions and the
 * fields pgfed reads, written only when something changed.
 */
import { CONDITIONS, type Cluster, type Condition, PHASES, clusterRole, specPromotionToken } from "../../cnpg/index.js";
import type { InstanceProbe, PgInstance } from "./instance.js";
import type { StepOutcome } from "./step.js";

/** The Cluster object a patch goes to. */
export interface ClusterRef {
  readonly namespace: string;
  readonly name: string;
}

/** What writing a status needs of the operator: a `/status` merge patch of one Cluster (status fields, JSON). */
export interface StatusWriter {
  patchStatus(m: ClusterRef, status: Readonly<Record<string, unknown>>): Promise<void>;
}

/** The part of a Cluster's reconcile state the status reports. */
export interface StatusSubject extends ClusterRef {
  readonly instance: PgInstance | undefined;
}

export interface ConditionInput {
  type: string;
  status: Condition["status"];
  reason: string;
  message: string;
}

export async function writeStatus(writer: StatusWriter, m: StatusSubject, c: Cluster | undefined, outcome: StepOutcome, old: Readonly<Record<string, unknown>>): Promise<void> {
  const inst = m.instance;
  let probe: InstanceProbe | undefined;
  if (inst?.running) {
    try {
      probe = await inst.probe();
    } catch {
      probe = undefined;
    }
  }
  const ready = outcome.ready ?? probe !== undefined;
  const keep = outcome.keepPhase === true && typeof old.phase === "string";
  const next: Record<string, unknown> = {
    phase: keep ? old.phase : (outcome.phase ?? (ready ? PHASES.healthy : PHASES.waitingForInstances)),
    phaseReason: keep ? old.phaseReason : (outcome.phaseReason ?? (ready ? "" : inst?.running ? "Instance is starting" : `Instance ${m.name}-1 is not running`)),
    instances: c?.spec.instances ?? 1,
    readyInstances: ready && probe ? 1 : 0,
    currentPrimary: `${m.name}-1`,
    targetPrimary: `${m.name}-1`,
    writeService: `${m.name}-rw`,
    // Only an instance out of recovery moves timelineID (internal/controller/cluster_status.go): stale on replica clusters.
    ...(probe && !probe.inRecovery && probe.timelineID !== 0 ? { timelineID: probe.timelineID } : {}),
    ...(probe ? { systemID: probe.systemID } : {}),
    ...(c ? clearedTokens(c) : {}),
    ...(outcome.status ?? {}),
  };
  let conditions = (next.conditions as Condition[] | undefined) ?? c?.status?.conditions ?? [];
  conditions = withCondition(conditions, {
    type: CONDITIONS.ready,
    status: ready && probe ? "True" : "False",
    reason: ready && probe ? "ClusterIsReady" : "ClusterIsNotReady",
    message: ready && probe ? "Cluster is Ready" : "Cluster Is Not Ready",
  });
  const archiving = probe && inst ? archivingCondition(probe, await inst.lastArchiveError()) : undefined;
  if (archiving) conditions = withCondition(conditions, archiving);
  next.conditions = conditions;

  const patch: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(next)) {
    if (JSON.stringify(v) !== JSON.stringify(old[k])) patch[k] = v;
  }
  if (Object.keys(patch).length === 0) return;
  await writer.patchStatus(m, patch);
}

/**
 * ContinuousArchiving from pg_stat_archiver: failing when the last failure is newer than the last
 * success. Messages as CNPG's instance manager writes them: a fixed text on success, the archive
 * command's own error on failure (pkg/management/postgres/webserver/local.go).
 */
function archivingCondition(p: InstanceProbe, lastError: string | undefined): ConditionInput | undefined {
  const a = p.archiver;
  const failedAt = a.lastFailedTime?.getTime() ?? 0;
  const okAt = a.lastArchivedTime?.getTime() ?? 0;
  if (a.failedCount > 0 && failedAt > okAt) {
    return { type: CONDITIONS.continuousArchiving, status: "False", reason: "ContinuousArchivingFailing", message: lastError ?? `archiving ${a.lastFailedWal ?? "WAL"} failed` };
  }
  if (a.archivedCount > 0) return { type: CONDITIONS.continuousArchiving, status: "True", reason: "ContinuousArchivingSuccess", message: "Continuous archiving is working" };
  return undefined;
}

/**
 * internal/controller/cluster_status.go: lastPromotionToken is emptied once the spec has no token
 * (only with a replica stanza), demotionToken on a primary; empty + omitempty = the field removed.
 */
function clearedTokens(c: Cluster): Record<string, null> {
  const out: Record<string, null> = {};
  if (c.spec.replica !== undefined && specPromotionToken(c) === undefined && c.status?.lastPromotionToken !== undefined) out.lastPromotionToken = null;
  if (clusterRole(c) === "primary" && c.status?.demotionToken !== undefined) out.demotionToken = null;
  return out;
}

export function withoutCondition(conds: readonly Condition[], type: string): Condition[] {
  return conds.filter((c) => c.type !== type);
}

/** Sets a condition like meta.SetStatusCondition: lastTransitionTime changes only when status does. */
export function withCondition(conds: readonly Condition[], next: ConditionInput): Condition[] {
  const old = conds.find((c) => c.type === next.type);
  const lastTransitionTime = old && old.status === next.status && old.lastTransitionTime ? old.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const cond: Condition = { ...next, lastTransitionTime };
  if (old && old.status === cond.status && old.reason === cond.reason && old.message === cond.message) return [...conds];
  return old ? conds.map((c) => (c.type === next.type ? cond : c)) : [...conds, cond];
}
