/**
 * The promotion-token check a CNPG replica's instance manager runs before promoting (CNPG.md,
 * "Planned switchover", step 4), against pg_controldata read right after a restartpoint.
 */
import { type DemotionToken, parseControlData } from "../../cnpg/index.js";
import { formatLsn, parseLsn } from "../../wal/lsn.js";

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
