/**
 * The promotion of a replica Cluster by CNPG's instance manager (internal/management/controller):
 * the promotion-token check it runs before promoting (CNPG.md, "Planned switchover", step 4),
 * against pg_controldata read right after a restartpoint, and the promote step itself.
 */
import {
  type Cluster,
  type DemotionToken,
  PHASES,
  PROMOTION_TOKEN_MISMATCH_REASON,
  REPLICA_PROMOTION_IN_PROGRESS_REASON,
  decodeToken,
  parseControlData,
  specPromotionToken,
} from "../../cnpg/index.js";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import { formatLsn, parseLsn } from "../../wal/lsn.js";
import type { PgInstance } from "./instance.js";
import { type StepOutcome, withStep } from "./step.js";

export type TokenVerdict =
  | { verdict: "promote"; reason: string }
  | { verdict: "wait"; reason: string }
  | { verdict: "fatal"; reason: string };

/** What the replica's own pg_controldata says after its restartpoint. */
export interface ReplicaControlPoint {
  systemId: string;
  timeline: number;
  redoLsn: bigint;
}

export function replicaControlPoint(pgControldataOutput: string): ReplicaControlPoint {
  const f = parseControlData(pgControldataOutput);
  const need = (label: string): string => {
    const v = f.get(label);
    if (v === undefined || v === "") throw new Error(`pg_controldata output has no "${label}" line`);
    return v;
  };
  return {
    systemId: need("Database system identifier"),
    timeline: Number(need("Latest checkpoint's TimeLineID")),
    redoLsn: parseLsn(need("Latest checkpoint's REDO location")),
  };
}

/**
 * Compares in CNPG's order: system identifier (mismatch: fatal), timeline (token newer: wait,
 * older: fatal), REDO location (token ahead: wait, behind: fatal, equal: promote).
 */
export function checkPromotionToken(token: DemotionToken, replica: ReplicaControlPoint): TokenVerdict {
  if (token.systemId !== replica.systemId) {
    return { verdict: "fatal", reason: `token system identifier ${token.systemId} differs from this instance's ${replica.systemId}` };
  }
  if (token.timeline > replica.timeline) {
    return { verdict: "wait", reason: `token timeline ${token.timeline} is newer than this instance's ${replica.timeline}` };
  }
  if (token.timeline < replica.timeline) {
    return { verdict: "fatal", reason: `token timeline ${token.timeline} is older than this instance's ${replica.timeline}` };
  }
  if (token.redoLsn > replica.redoLsn) {
    return {
      verdict: "wait",
      reason: `token REDO location ${formatLsn(token.redoLsn)} is ahead of this instance's restartpoint REDO ${formatLsn(replica.redoLsn)}`,
    };
  }
  if (token.redoLsn < replica.redoLsn) {
    return {
      verdict: "fatal",
      reason: `token REDO location ${formatLsn(token.redoLsn)} is behind this instance's restartpoint REDO ${formatLsn(replica.redoLsn)}`,
    };
  }
  return { verdict: "promote", reason: `replayed up to the token's REDO location ${formatLsn(token.redoLsn)} on timeline ${token.timeline}` };
}

/** What the promotion needs of the operator running it. */
export interface PromotionOperator {
  readonly log: Logger;
  /** Re-check interval while a promotion token is not reached yet. */
  readonly promotionRetryMs: number;
}

/** The part of a Cluster's reconcile state the promotion reads and writes. */
export interface PromotionState {
  readonly key: string;
  /** Fingerprint of the configuration the running instance was started with. */
  startedWith: string | undefined;
  /** A promotion token this replica refused for good (fatal); a different token is checked again. */
  refusedToken: string | undefined;
  /** The promotion token checked last, and when it is checked again (a new token is checked at once). */
  checkedToken: string | undefined;
  nextTokenCheckAt: number;
}

/**
 * CNPG.md step 4 (with a token) or the failover path (without one). A token is checked only while
 * it differs from status.lastPromotionToken (api/v1/cluster_funcs.go ShouldPromoteFromReplicaCluster);
 * a new token at once, an unmet one again every promotionRetryMs (instance_controller.go).
 */
export async function promote(op: PromotionOperator, m: PromotionState, c: Cluster, inst: PgInstance, params: Readonly<Record<string, string>>): Promise<StepOutcome> {
  const doing = `while promoting ${m.key}`;
  const token = specPromotionToken(c);
  const check = token !== undefined && token !== c.status?.lastPromotionToken;
  if (check) {
    if (m.refusedToken === token) return { phase: PHASES.unrecoverable, phaseReason: PROMOTION_TOKEN_MISMATCH_REASON, ready: false };
    if (m.checkedToken === token && Date.now() < m.nextTokenCheckAt) return promotionWait(c);
    const verdict = await withStep(`${doing}: checking the promotion token`, () => checkTokenNow(inst, token));
    m.checkedToken = token;
    if (verdict.verdict === "fatal") {
      m.refusedToken = token;
      op.log.error({ cluster: m.key, why: verdict.reason }, `refusing to promote ${m.key}: ${verdict.reason}`);
      return { phase: PHASES.unrecoverable, phaseReason: PROMOTION_TOKEN_MISMATCH_REASON, ready: false };
    }
    if (verdict.verdict === "wait") {
      m.nextTokenCheckAt = Date.now() + op.promotionRetryMs;
      op.log.info({ cluster: m.key }, `not promoting ${m.key} yet: ${verdict.reason}; checking again in ${op.promotionRetryMs} ms`);
      return promotionWait(c);
    }
  }
  const t0 = Date.now();
  await withStep(doing, () => inst.promote());
  // Now a primary on disk; the running settings stay until the next restart (archive_mode=always
  // archives like "on" on a primary), so no restart is needed.
  await withStep(`${doing}: rewriting its settings as a primary`, () => inst.configure({ kind: "primary" }, params));
  m.startedWith = JSON.stringify({ role: { kind: "primary" }, params });
  m.checkedToken = undefined;
  m.nextTokenCheckAt = 0;
  op.log.info({ cluster: m.key, ms: Date.now() - t0 }, `promoted ${m.key} ${check ? "after checking its promotion token" : "without checking a token (failover)"} in ${Date.now() - t0} ms`);
  return check ? { status: { lastPromotionToken: token } } : {};
}

/**
 * Waiting for a promotion token: the operator registers `Promoting to primary cluster` with its
 * reason unless the phase is already that or unrecoverable (internal/controller/cluster_controller.go);
 * the instance manager sets the phase only, so a reason already there stays.
 */
function promotionWait(c: Cluster): StepOutcome {
  const phase = c.status?.phase;
  const keepReason = phase === PHASES.promoting || phase === PHASES.unrecoverable;
  return { phase: PHASES.promoting, phaseReason: keepReason ? (c.status?.phaseReason ?? "") : REPLICA_PROMOTION_IN_PROGRESS_REASON, ready: false };
}

/**
 * internal/management/controller/instance_token.go: restartpoint, then compare with pg_controldata.
 * A token that does not decode is not a verification error there: it is retried, never fatal.
 */
async function checkTokenNow(inst: PgInstance, token: string): Promise<TokenVerdict> {
  let decoded: DemotionToken;
  try {
    decoded = decodeToken(token);
  } catch (e) {
    return { verdict: "wait", reason: `while decoding the promotion token: ${errorMessage(e)}` };
  }
  await inst.checkpoint();
  return checkPromotionToken(decoded, replicaControlPoint(await inst.controlData()));
}
