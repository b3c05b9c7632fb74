/**
 * The demotion, as CNPG's pkg/reconciler/replicaclusterswitch/reconciler.go drives it, one step
 * per pass, its progress kept in status conditions: fence and ask for the transition
 * (DesignatedPrimaryTransition=False); the instance manager stops Postgres and writes the standby
 * configuration (=True); the operator reads the token from pg_controldata of the cleanly shut
 * down data directory, archives the shutdown segment as .partial, publishes the token, unfences
 * and marks the switch completed. Without a clean shutdown there is no token, ever.
 */
import {
  CONDITIONS,
  type Cluster,
  type MergePatch,
  conditionIs,
  databaseClusterState,
  encodeToken,
  getCondition,
  tokenFromControlData,
  unfencePatch,
} from "../../cnpg/index.js";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import { FENCE_ALL, fenceAllPatch, isInstanceFenced } from "./fencing.js";
import type { InstanceRole, PgInstance } from "./instance.js";
import { type ClusterRef, type StatusWriter, withCondition, withoutCondition } from "./status.js";
import { type StepOutcome, withStep } from "./step.js";

/** State of an injected tokenLoss fault: armed, then (after the failed cleanup) about to wipe the token. */
export type TokenLossState = "armed" | "wipeNext";

/** What the demotion needs of the operator running it. */
export interface SwitchOperator extends StatusWriter {
  readonly log: Logger;
  /** Retry interval while a demotion waits for a clean shutdown. */
  readonly demotionRetryMs: number;
  /** `operatorVersion` written into demotion tokens. */
  readonly operatorVersion: string;
  /** Armed tokenLoss faults by Cluster key; the demotion fires and clears them. */
  readonly faults: Map<string, TokenLossState>;
  /** A merge patch of the Cluster object itself (the fencing annotation). */
  patchObject(m: ClusterRef, body: MergePatch): Promise<void>;
  /** The instance settings of a replica following spec.replica.source. */
  replicaRole(c: Cluster): InstanceRole;
}

/** The part of a Cluster's reconcile state the demotion reads and writes. */
export interface SwitchState extends ClusterRef {
  readonly key: string;
  readonly held: boolean;
  startedWith: string | undefined;
  nextDemotionCheckAt: number;
  lastWarning: string | undefined;
}

// Condition reasons and messages of the demotion (pkg/reconciler/replicaclusterswitch/reconciler.go, conditions/conditions.go).
const TRANSITION_REQUESTED = { reason: "ReplicaClusterAfterCreation", message: "Enabled external cluster after a node was generated" } as const;
const TRANSITION_COMPLETED = { reason: "TransitionCompleted", message: "Instance Manager has completed the DesignatedPrimary transition" } as const;
const SWITCH_STARTING = { reason: "ReplicaEnabledSetTrue", message: "Starting the Replica cluster transition" } as const;
const SWITCH_COMPLETED = { reason: "ReplicaEnabledSetTrue", message: "Completed the Replica cluster transition" } as const;

/** The operator's part on a replica Cluster; `acted`: it took this pass's step (the instance manager's part waits). */
export async function reconcileReplicaSwitch(op: SwitchOperator, m: SwitchState, c: Cluster, inst: PgInstance, fenced: boolean, disk: "primary" | "replica"): Promise<{ acted: boolean; outcome: StepOutcome } | undefined> {
  const transition = getCondition(c, CONDITIONS.designatedPrimaryTransition)?.status;
  if (transition === "True") return reconcileDemotionToken(op, m, c, inst);
  // Requested: waiting for the instance manager.
  if (transition === "False") return undefined;
  if (!reportsAsPrimary(m, inst, fenced, disk)) return undefined;
  return { acted: true, outcome: await startTransition(op, m, c) };
}

async function startTransition(op: SwitchOperator, m: SwitchState, c: Cluster): Promise<StepOutcome> {
  const doing = `while fencing primary cluster ${m.key} to demote it`;
  let patch: MergePatch | undefined;
  try {
    patch = fenceAllPatch(c);
  } catch (e) {
    // CNPG's reconcile fails here and retries; nothing is fenced, nothing changes in status.
    warnOnce(op, m, `${doing}: ${errorMessage(e)}`);
    return { keepPhase: true };
  }
  const fence = patch;
  if (fence) await withStep(doing, () => op.patchObject(m, fence));
  op.log.info({ cluster: m.key }, `demoting ${m.key}: spec.replica.primary is now ${c.spec.replica?.primary}; ${fence ? "fenced" : "already fenced"}, starting the replica cluster transition`);
  let conditions = c.status?.conditions ?? [];
  conditions = withCondition(conditions, { type: CONDITIONS.designatedPrimaryTransition, status: "False", ...TRANSITION_REQUESTED });
  // Recorded even when the Cluster was fenced already: cleanup lifts any "*" fencing (reconciler.go).
  conditions = withCondition(conditions, { type: CONDITIONS.replicaClusterFencing, status: "True", ...TRANSITION_REQUESTED });
  conditions = withCondition(conditions, { type: CONDITIONS.replicaClusterSwitch, status: "False", ...SWITCH_STARTING });
  return { keepPhase: true, requeue: true, status: { conditions, switchReplicaClusterStatus: { ...c.status?.switchReplicaClusterStatus, inProgress: true } } };
}

/**
 * The instance manager's half (instance_controller.go reconcileDesignatedPrimary): the fenced
 * former primary's data directory gets the standby configuration, whether or not it was shut
 * down cleanly, and the transition is reported done.
 */
export async function designatedPrimaryTransition(op: SwitchOperator, m: SwitchState, c: Cluster, inst: PgInstance, params: Readonly<Record<string, string>>): Promise<StepOutcome> {
  await withStep(`while demoting ${m.key}: writing the designated primary's standby configuration`, () => inst.configure(op.replicaRole(c), params));
  m.startedWith = undefined;
  op.log.info({ cluster: m.key }, `demoting ${m.key}: data directory configured as a standby of ${c.spec.replica?.source}`);
  return { requeue: true, status: { conditions: withCondition(c.status?.conditions ?? [], { type: CONDITIONS.designatedPrimaryTransition, status: "True", ...TRANSITION_COMPLETED }) } };
}

/** reconciler.go reconcileDemotionToken: token (or a retry every demotionRetryMs), then cleanup. */
async function reconcileDemotionToken(op: SwitchOperator, m: SwitchState, c: Cluster, inst: PgInstance): Promise<{ acted: boolean; outcome: StepOutcome }> {
  const doing = `while demoting ${m.key}`;
  if (Date.now() < m.nextDemotionCheckAt) return { acted: false, outcome: { keepPhase: true } };
  const generated = await generateDemotionToken(op, m, c, inst);
  if (generated === undefined) {
    m.nextDemotionCheckAt = Date.now() + op.demotionRetryMs;
    return { acted: false, outcome: { keepPhase: true } };
  }
  m.nextDemotionCheckAt = 0;
  const stored = c.status?.demotionToken ?? "";
  const fault = op.faults.get(m.key);
  // "" means "stored token is current": the #11074 fix skips it; the injected fault writes it back.
  const write = fault === "wipeNext" ? generated !== stored : generated !== "" && generated !== stored;
  if (write) {
    await withStep(`${doing}: setting the demotion token`, () => op.patchStatus(m, { demotionToken: generated === "" ? null : generated }));
    if (generated === "") op.log.warn({ cluster: m.key }, `demoting ${m.key}: wrote the empty demotion token back (injected fault tokenLoss, CNPG #11074)`);
    else op.log.info({ cluster: m.key }, `demoting ${m.key}: shutdown segment archived as .partial; demotion token published`);
  }
  if (fault === "wipeNext") op.faults.delete(m.key);
  if (fault === "armed") {
    op.faults.set(m.key, "wipeNext");
    op.log.error({ cluster: m.key }, `${doing}: while cleaning up demotion transition metadata: the patch failed (injected fault tokenLoss); retrying`);
    return { acted: true, outcome: { keepPhase: true, requeue: true } };
  }
  return { acted: true, outcome: await cleanupTransitionMetadata(op, m, c) };
}

/**
 * pkg/reconciler/replicaclusterswitch/shutdown_wal.go: undefined while pg_controldata does not say
 * "shut down" (or "shut down in recovery"); "" when the stored token is already this one;
 * otherwise the new token, once the segment holding the shutdown checkpoint is archived as .partial.
 */
async function generateDemotionToken(op: SwitchOperator, m: SwitchState, c: Cluster, inst: PgInstance): Promise<string | undefined> {
  const doing = `while demoting ${m.key}`;
  const cd = await withStep(`${doing}: reading pg_controldata`, () => inst.controlData());
  const state = databaseClusterState(cd);
  if (!isShutDown(state)) {
    warnOnce(op, m, `demoting ${m.key}: no demotion token while pg_controldata says "${state}" (not shut down cleanly); retrying every ${op.demotionRetryMs} ms`);
    return undefined;
  }
  const content = await withStep(`${doing}: building the demotion token`, async () => tokenFromControlData(cd, op.operatorVersion));
  const token = encodeToken(content);
  if (token === (c.status?.demotionToken ?? "")) return "";
  await withStep(`${doing}: archiving the shutdown checkpoint's WAL file`, () => inst.archivePartialSegment(content.redoWalFile));
  return token;
}

/** reconciler.go cleanupTransitionMetadata: unfence (only "*" fencing, only if the demotion recorded fencing), mark completed. */
async function cleanupTransitionMetadata(op: SwitchOperator, m: SwitchState, c: Cluster): Promise<StepOutcome> {
  const unfence = conditionIs(c, CONDITIONS.replicaClusterFencing, "True") && isInstanceFenced(c, FENCE_ALL);
  if (unfence) await withStep(`while demoting ${m.key}: unfencing`, () => op.patchObject(m, unfencePatch()));
  op.log.info({ cluster: m.key }, `demoted ${m.key}: ${unfence ? "unfenced, " : ""}completed the replica cluster transition`);
  let conditions = withoutCondition(c.status?.conditions ?? [], CONDITIONS.designatedPrimaryTransition);
  conditions = withoutCondition(conditions, CONDITIONS.replicaClusterFencing);
  conditions = withCondition(conditions, { type: CONDITIONS.replicaClusterSwitch, status: "True", ...SWITCH_COMPLETED });
  return { keepPhase: true, requeue: true, status: { conditions, switchReplicaClusterStatus: { ...c.status?.switchReplicaClusterStatus, inProgress: false } } };
}

/** Logs a condition that holds the Cluster back once per distinct message (it is seen every pass). */
function warnOnce(op: SwitchOperator, m: SwitchState, message: string): void {
  if (m.lastWarning === message) return;
  m.lastWarning = message;
  op.log.warn({ cluster: m.key }, message);
}

/**
 * Whether CNPG would see a primary instance (reconciler.go containsPrimaryInstance): a running one
 * reports `NOT pg_is_in_recovery()`; a fenced one reports the role on disk
 * (pkg/management/postgres/probes.go); a held one (lost node) reports nothing; an unfenced one not
 * running yet is first started by its instance manager.
 */
function reportsAsPrimary(m: SwitchState, inst: PgInstance, fenced: boolean, disk: "primary" | "replica"): boolean {
  return disk === "primary" && !m.held && (inst.running || fenced);
}

/** pkg/utils/parser.go PgDataState.IsShutdown. */
function isShutDown(state: string): boolean {
  return state === "shut down" || state === "shut down in recovery";
}
