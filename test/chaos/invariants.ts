/**
 * The chaos suite's invariants, as pure functions over what the run recorded (README "Reliability"):
 * 1. a planned switchover loses no acknowledged row (nor does anything but a failover);
 * 2. a failover loses only rows acknowledged within the exposure pgfed reported before the fault
 *    (plus one sample interval), or taken by the cut-off primary before its self-fence, and never
 *    rows older than the budget unless an operator approved the loss;
 * 3. never two members accept a write at the same moment (in the servers' own clock);
 * 5. every finished operation's audit trail explains its steps, with numbers.
 * (4, one writable primary or a wait for a person, and 6, nothing left running, are checked by
 * the run itself: they need the live world.)
 */
import type { AuditEntry, OperationView } from "../../src/coordinator/index.js";
import type { AckedRow, ProbeWrite } from "./workload.js";

export interface Violation {
  invariant: number;
  step: string;
  detail: string;
  lastAudit: string[];
}

/** Slack for the exposure pgfed reported: one lag sample interval and the archiver's poll. */
export const EXPOSURE_SLACK_MS = 2_000;

export interface LossFacts {
  missing: readonly AckedRow[];
  /** Did a failover happen (or start) in this episode? */
  failover: boolean;
  /** When the primary was lost or cut off (or the failover began). */
  faultAtMs: number | undefined;
  /** The exposure pgfed reported last before the fault. */
  exposureSeconds: number | undefined;
  budgetSeconds: number;
  /** An operator accepted a loss (approve, acceptDataLoss) or resolved by hand. */
  approved: boolean;
  /** Port of the primary that was deposed, and how long after the cut it must have fenced itself. */
  deposedPort: number;
  fenceBoundMs: number;
  portOf: ReadonlyMap<number, string>;
}

const describeRow = (r: AckedRow, portOf: ReadonlyMap<number, string>, faultAtMs: number | undefined) =>
  `${r.writer}:${r.seq} acknowledged by ${portOf.get(r.port) ?? `port ${r.port}`}${faultAtMs !== undefined ? ` ${((r.atMs - faultAtMs) / 1000).toFixed(2)} s from the fault` : ""}`;

export function checkLoss(f: LossFacts): { invariant: number; detail: string }[] {
  if (f.missing.length === 0) return [];
  const sample = f.missing.slice(0, 3).map((r) => describeRow(r, f.portOf, f.faultAtMs)).join("; ");
  if (!f.failover) return [{ invariant: 1, detail: `${f.missing.length} acknowledged row(s) lost without a failover: ${sample}` }];
  if (f.faultAtMs === undefined) return [{ invariant: 2, detail: `${f.missing.length} row(s) lost in a failover with no known fault time: ${sample}` }];
  const faultAt = f.faultAtMs;
  const out: { invariant: number; detail: string }[] = [];
  const windowMs = ((f.exposureSeconds ?? 0) * 1000) + EXPOSURE_SLACK_MS;
  const afterCut = (r: AckedRow) => r.port === f.deposedPort && r.atMs >= faultAt && r.atMs <= faultAt + f.fenceBoundMs;
  const beyond = f.missing.filter((r) => !afterCut(r) && r.atMs < faultAt - windowMs);
  if (beyond.length > 0)
    out.push({
      invariant: 2,
      detail: `${beyond.length} lost row(s) older than the exposure pgfed reported before the fault (${f.exposureSeconds === undefined ? "none reported" : `${f.exposureSeconds.toFixed(2)} s`} + ${EXPOSURE_SLACK_MS / 1000} s): ${beyond.slice(0, 3).map((r) => describeRow(r, f.portOf, faultAt)).join("; ")}`,
    });
  const late = f.missing.filter((r) => r.atMs > faultAt + f.fenceBoundMs);
  if (late.length > 0) out.push({ invariant: 2, detail: `${late.length} lost row(s) acknowledged after the deposed primary should have fenced itself (${f.fenceBoundMs / 1000} s after the cut): ${late.slice(0, 3).map((r) => describeRow(r, f.portOf, faultAt)).join("; ")}` });
  if (!f.approved) {
    const oldest = Math.min(...f.missing.filter((r) => r.atMs < faultAt).map((r) => r.atMs));
    if (Number.isFinite(oldest) && faultAt - oldest > f.budgetSeconds * 1000 + EXPOSURE_SLACK_MS)
      out.push({ invariant: 2, detail: `an automatic failover lost ${((faultAt - oldest) / 1000).toFixed(2)} s of acknowledged writes, over the budget of ${f.budgetSeconds} s, and nobody approved it` });
  }
  return out;
}

/** Each moment two members accepted writes at once: overlapping runs of accepted probe writes (server time). */
export function splitBrainMoments(writes: readonly ProbeWrite[]): string[] {
  const runs: { member: string; from: number; to: number }[] = [];
  const open = new Map<string, { member: string; from: number; to: number }>();
  for (const w of writes) {
    const cur = open.get(w.member);
    if (!w.ok) {
      if (cur) runs.push(cur);
      open.delete(w.member);
    } else if (cur) cur.to = w.atMs;
    else open.set(w.member, { member: w.member, from: w.atMs, to: w.atMs });
  }
  runs.push(...open.values());
  runs.sort((a, b) => a.from - b.from);
  const out: string[] = [];
  for (let i = 0; i < runs.length; i++)
    for (let j = i + 1; j < runs.length; j++) {
      const a = runs[i] as (typeof runs)[number];
      const b = runs[j] as (typeof runs)[number];
      if (b.from > a.to) break;
      if (a.member !== b.member) out.push(`${a.member} accepted writes ${new Date(a.from).toISOString()}..${new Date(a.to).toISOString()} while ${b.member} did from ${new Date(b.from).toISOString()}`);
    }
  return out;
}

/** Invariant 5: the operation's own audit entries explain each step, and some carry the numbers. */
export function checkAudit(op: OperationView, audit: readonly AuditEntry[]): string | undefined {
  const mine = audit.filter((a) => a.operationId === op.id);
  if (mine.length === 0) return `operation ${op.id} (${op.kind}, ${op.state}) has no audit entries`;
  const mute = mine.filter((a) => a.action === "transition" && a.description.trim() === "");
  if (mute.length > 0) return `operation ${op.id}: ${mute.length} transition(s) without a description`;
  if (!mine.some((a) => Object.keys(a.numbers).length > 0)) return `operation ${op.id}: no audit entry carries numbers (${mine.map((a) => a.action).join(", ")})`;
  return undefined;
}
