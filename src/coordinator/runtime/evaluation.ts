/**
 * The RPO side of one federation: an evaluation pass over the latest samples (exposure, lag,
 * the writable-primaries gauge, alerting), skipped while nothing changed in a healthy federation,
 * and the figures the steps and the gate read from its last result (lag of a switchover target,
 * worst-case loss of each failover candidate).
 */
import type { FederationContext, LossEstimate } from "../../../machines/index.js";
import type { FederationConfig } from "../../config.js";
import type { ExposureEstimate } from "../../wal/exposure.js";
import { FederationEvaluator, type Evaluation, type MemberStatus } from "../../wal/monitor.js";
import type { FederationTick } from "../alerting.js";
import { followingOf, lossOf, type FollowingVerdict } from "../following.js";
import { FederationHistory } from "../history.js";
import type { CoordinatorMetrics } from "../metrics.js";
import type { FederationSignals, MemberSamples } from "../signals.js";

/**
 * A healthy federation with no new input and no machine change is re-evaluated (exposure,
 * alerting) at this pace instead of every tick; anything new, or anything not healthy, is
 * evaluated at the next tick. Failure detection still runs every tick.
 */
const QUIET_EVALUATION_MS = 1_000;

/** A pass's exposure now and its worst case, in seconds, as the federation view and its history show them; undefined before any estimate. */
export function exposureSeconds(ev: Evaluation | undefined): { seconds: number; worstCaseSeconds: number } | undefined {
  const wc = ev?.worstCase;
  if (!wc) return undefined;
  return { seconds: (ev.estimate?.exposureMs ?? wc.basedOn.exposureMs) / 1000, worstCaseSeconds: wc.exposureMs / 1000 };
}

export class FederationEvaluation {
  /** The last pass's result, undefined before the first. */
  last: Evaluation | undefined;
  /** The last exposure estimate (kept while the primary is unreachable). */
  lastEstimate: ExposureEstimate | undefined;
  /** Bumped by every message taken in; a pass compares it with the one it last saw. */
  private inputSeq = 0;
  private evaluated: { inputSeq: number; ctx: FederationContext; atMs: number; healthy: boolean } | undefined;
  private readonly evaluator: FederationEvaluator;
  /** The last hour of exposure and lag, one point per HISTORY_RESOLUTION_MS (history.ts). */
  readonly history: FederationHistory;

  constructor(
    private readonly p: {
      cfg: FederationConfig;
      signals: FederationSignals;
      metrics: CoordinatorMetrics;
      now: () => number;
      onEvaluation?: ((tick: FederationTick) => void) | undefined;
    },
  ) {
    this.evaluator = new FederationEvaluator({ federation: p.cfg.name, budgetMs: p.cfg.rpo.budget, warnAt: p.cfg.rpo.warnAt, walSwitchAfterMs: p.cfg.rpo.walSwitchAfter });
    this.history = new FederationHistory(p.cfg.name, p.cfg.members.map((m) => m.name));
  }

  noteInput(): void {
    this.inputSeq++;
  }

  /** Nothing new since a healthy pass less than QUIET_EVALUATION_MS ago: that pass still stands. */
  quiet(ctx: FederationContext, nowMs: number): boolean {
    const e = this.evaluated;
    return e !== undefined && e.healthy && e.inputSeq === this.inputSeq && e.ctx === ctx && nowMs - e.atMs < QUIET_EVALUATION_MS;
  }

  /** One evaluation pass: exposure and lag figures, the writable-primaries gauge, alerting. */
  pass(ctx: FederationContext, nowMs: number, agentsDown: FederationTick["agentsDown"] & object): void {
    const { cfg, signals } = this.p;
    const inputSeq = this.inputSeq;
    this.evaluator.setDesignatedPrimary(ctx.designatedPrimary ?? undefined);
    const staleMs = Math.max(3 * cfg.sampleInterval, 3_000);
    const ev = this.evaluator.evaluate({
      nowMs,
      members: cfg.members.map((m) => ({ spec: { name: m.name, region: m.region, applicationName: m.cluster }, state: (signals.samples.get(m.name) as MemberSamples).current(nowMs, staleMs) })),
    });
    this.last = ev;
    if (ev.estimate) this.lastEstimate = ev.estimate;
    if (this.history.due(nowMs)) {
      const exp = exposureSeconds(ev);
      this.history.record({
        atMs: nowMs,
        exposureSeconds: exp?.seconds ?? null,
        worstCaseSeconds: exp?.worstCaseSeconds ?? null,
        lagSeconds: new Map(cfg.members.map((m) => [m.name, m.name === ctx.designatedPrimary ? null : (this.targetLag(m.name, ctx.designatedPrimary)?.ms ?? Number.NaN) / 1000])),
      });
    }
    const writable = signals.writable();
    this.p.metrics.primariesWritable.set({ federation: cfg.name }, writable.length);
    this.p.onEvaluation?.({
      cfg,
      ctx,
      evaluation: ev,
      writable: writable.map((m) => m.name),
      kubeUnreachable: cfg.members.filter((m) => signals.obs(m.name)?.reachable === false).map((m) => m.name),
      sampleFailures: new Map(cfg.members.map((m) => [m.name, signals.samples.get(m.name)?.failures ?? 0])),
      agentsDown,
      rejectedCommands: signals.rejectedCommands,
      nowMs,
    });
    const healthy =
      writable.length === 1 &&
      writable[0]?.name === ctx.designatedPrimary &&
      ctx.operation === null &&
      ctx.alerts.length === 0 &&
      agentsDown.length === 0 &&
      ev.budget.level === "ok" &&
      ev.nudge === undefined &&
      ev.members.every((m) => m.status === "up" && m.archive?.failing !== true && m.replica?.stalled !== true);
    this.evaluated = { inputSeq, ctx, atMs: nowMs, healthy };
  }

  /**
   * A loss estimate as of `atMs` from samples this coordinator did not hear live (the stream's
   * last one per member, read at start): a new leader that never heard a primary which died just
   * before still has what the previous leader had, the primary's last sample, with the silence
   * since then added by lossCandidates. No metrics, no alerting: those follow live passes.
   */
  seedEstimate(atMs: number, designated: string | null): void {
    const { cfg, signals } = this.p;
    this.evaluator.setDesignatedPrimary(designated ?? undefined);
    const staleMs = Math.max(3 * cfg.sampleInterval, 3_000);
    const ev = this.evaluator.evaluate({
      nowMs: atMs,
      members: cfg.members.map((m) => ({ spec: { name: m.name, region: m.region, applicationName: m.cluster }, state: (signals.samples.get(m.name) as MemberSamples).current(atMs, staleMs) })),
    });
    if (ev.estimate && (!this.lastEstimate || ev.estimate.primarySampledAtMs > this.lastEstimate.primarySampledAtMs)) this.lastEstimate = ev.estimate;
  }

  /** The evaluator's status of a member in the last pass. */
  status(member: string): MemberStatus | undefined {
    return this.last?.members.find((m) => m.name === member);
  }

  /** Whether the member follows `primary` (following.ts), by the last pass and its latest observation. */
  following(member: string, primary: string | null): FollowingVerdict {
    const { cfg, signals } = this.p;
    return followingOf({ member, members: cfg.members, observation: (m) => signals.obs(m), primary, status: this.status(member) });
  }

  /** What promoting the member would lose now, if the last pass can tell. */
  targetLag(member: string, primary: string | null): { bytes: number; ms: number } | undefined {
    const lag = lossOf(this.status(member), this.following(member, primary));
    return lag ? { bytes: Number(lag.bytes), ms: lag.ms } : undefined;
  }

  /**
   * Worst-case loss per eligible candidate: last known loss of each replica + time since the
   * primary's last sample. Members not following the primary (following.ts) are left out while any
   * replica follows it; when none does, all are offered with their grown loss for the RPO gate.
   */
  lossCandidates(from: string | null, designated: string | null): LossEstimate[] {
    const est = this.lastEstimate;
    if (!est) return [];
    const silence = Math.max(0, this.p.now() - est.primarySampledAtMs);
    const primary = designated ?? from;
    const rows = est.replicas
      .filter((r) => r.name !== from)
      .map((r) => {
        const v = this.following(r.name, primary);
        const loss = !v.following && v.rule === "topology" ? r.lossWithoutArchive : r.lossIfPromoted;
        return { following: v.following, estimate: { target: r.name, worstCaseLossMs: Math.round(loss.ms + silence), lossBytes: Number(loss.bytes) } };
      });
    const following = rows.filter((x) => x.following);
    return (following.length > 0 ? following : rows).map((x) => x.estimate);
  }
}
