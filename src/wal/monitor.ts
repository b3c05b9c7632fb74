/**
 * The per-federation evaluation and its enforcement rules (README, "Exposure (the RPO), measured"): from
 * each round of samples it feeds the exposure estimator, derives the archive health signals
 * (archiving failing, replica stalled) and decides when to nudge the primary with pg_switch_wal()
 * because un-archived WAL gets old; and it turns an evaluation into the metrics.
 *
 * `FederationEvaluator` is pure state over samples (no I/O, time comes in as `nowMs`); the I/O
 * loop around it is `FederationMonitor` (federation-monitor.ts), or the agent's and the
 * coordinator's own loops.
 */
import { formatBytes } from "../../machines/index.js";
import { PgfedError } from "../errors.js";
import type { MemberLabels, PgfedMetrics } from "../metrics.js";
import {
  bestFailoverTarget,
  describeExposure,
  estimateExposure,
  evaluateBudget,
  worstCaseExposure,
  type BudgetVerdict,
  type ExposureEstimate,
  type FailoverTarget,
  type ReplicaPosition,
  type WorstCaseExposure,
} from "./exposure.js";
import { LsnHistory, type PrimaryLsnHistory } from "./history.js";
import { formatLsn, maxLsn, type Lsn } from "./lsn.js";
import type { MemberSample, MemberState, PrimarySample, ReplicaSample } from "./sampler.js";
import { DEFAULT_WAL_SEGMENT_SIZE_BYTES, archiveSafeLsn } from "./walfile.js";

// ---------------------------------------------------------------------------------------------
// Configuration

export interface EvaluatorConfig {
  federation: string;
  budgetMs: number;
  /** Fraction of the budget at which to warn (default 0.5). */
  warnAt?: number | undefined;
  /** Un-archived WAL older than this triggers pg_switch_wal() (default budget / 3). */
  walSwitchAfterMs?: number | undefined;
  /** false turns the nudge off (it is on by default). */
  nudge?: boolean | undefined;
  /** A replica whose position does not move for this many fresh samples while WAL is available to it is stalled (default 10). */
  stallAfterSamples?: number | undefined;
  /** The member that should be the primary; by default the reachable primary on the newest timeline. */
  designatedPrimary?: string | undefined;
  segmentSizeBytes?: number | undefined;
}

export interface EvaluatorMember {
  name: string;
  region?: string | undefined;
  /** Restores from the primary's archive (CNPG replica clusters do). Default true. */
  readsArchive?: boolean | undefined;
  /** The standby's application_name in the primary's pg_stat_replication (CNPG: the cluster name). */
  applicationName?: string | undefined;
}

// ---------------------------------------------------------------------------------------------
// What an evaluation says

export type Signal =
  | { kind: "archive_failing"; member: string; reason: string }
  | { kind: "replica_stalled"; member: string; reason: string }
  | { kind: "replica_not_following"; member: string; reason: string }
  | { kind: "member_unreachable"; member: string; reason: string }
  | { kind: "no_primary"; reason: string }
  | { kind: "several_primaries"; reason: string }
  | { kind: "budget_warn"; reason: string }
  | { kind: "budget_exceeded"; reason: string };

export interface ArchiveHealth {
  failing: boolean;
  reason: string | undefined;
  /** failed_count increase since the previous sample (0 after a stats reset). */
  newFailures: number;
  failedCount: number;
  lastArchivedAtMs: number | undefined;
  readySegments: number;
}

export interface ReplicaHealth {
  stalled: boolean;
  reason: string | undefined;
  /** Fresh samples in a row with no progress while WAL was available to it. */
  samplesWithoutProgress: number;
}

export interface MemberStatus {
  name: string;
  region: string | undefined;
  status: MemberState["status"];
  role: MemberSample["role"] | undefined;
  error: string | undefined;
  archive: ArchiveHealth | undefined;
  replica: ReplicaHealth | undefined;
  /** What promoting this member would lose now (replicas only). */
  lag: { bytes: bigint; ms: number; via: string } | undefined;
  /** The same from its own WAL alone, without the primary's archive (a replica whose source is not the primary does not read it). */
  ownLag?: { bytes: bigint; ms: number; via: string } | undefined;
  /** Its last sampled timeline (Postgres's, sampler.ts), undefined when never sampled. */
  timeline?: number | undefined;
  /**
   * false: a replica whose sampled timeline has differed from the primary's for FOLLOW_GRACE_MS or
   * longer (its lag then grows from what it last held on the primary's timeline). true otherwise:
   * the primary, a member with no sample, one within the grace. Topology (spec.replica.source) is
   * judged by the coordinator (src/coordinator/following.ts). Absent (hand-made statuses): true.
   */
  following?: boolean;
  /** Why it is not following, in words: "on timeline 1, primary pg-ap on timeline 2". */
  notFollowing?: string | undefined;
  /** Since when its sampled timeline differs from the primary's (also within the grace); undefined when it matches. */
  offTimelineSinceMs?: number | undefined;
  /** When it was last sampled holding WAL on the primary's current timeline; undefined: never. */
  lastOnTimelineAtMs?: number | undefined;
}

export interface NudgeDecision {
  member: string;
  /** Age of the oldest un-archived WAL. */
  unarchivedMs: number;
  unarchivedBytes: bigint;
  reason: string;
}

export interface Evaluation {
  federation: string;
  atMs: number;
  primary: string | undefined;
  /** The primary's timeline, from its newest sample (last known while it is silent). */
  primaryTimeline?: number | undefined;
  estimate: ExposureEstimate | undefined;
  worstCase: WorstCaseExposure | undefined;
  budget: BudgetVerdict & { budgetMs: number };
  bestTarget: FailoverTarget | undefined;
  members: MemberStatus[];
  signals: Signal[];
  nudge: NudgeDecision | undefined;
  /** One sentence with the numbers, for logs and the CLI. */
  sentence: string;
}

export interface EvaluationInput {
  nowMs: number;
  members: readonly { spec: EvaluatorMember; state: MemberState }[];
}

// ---------------------------------------------------------------------------------------------
// The rules

interface MemberTrack {
  lastSampleAtMs: number | undefined;
  prevFailedCount: number | undefined;
  archive: ArchiveHealth | undefined;
  lastPos: Lsn | undefined;
  samplesWithoutProgress: number;
  stalled: boolean;
  /** Since when its sampled timeline differs from the primary's (reset when the primary's timeline changes). */
  offTimelineSinceMs: number | undefined;
  /** Its furthest own position last sampled on the primary's timeline: what it held when it stopped following. */
  held: { lsn: Lsn; timeline: number; atMs: number } | undefined;
}

const DEFAULT_STALL_AFTER_SAMPLES = 10;

/**
 * How long a replica may be sampled on another timeline than the primary's before it counts as not
 * following: right after a promotion every replica is still on the old timeline until its WAL
 * receiver reconnects (or its restore_command, retried every wal_retrieve_retry_interval, 5 s by
 * default, fetches the new .history file) and replays the switch, and its next sample shows it.
 */
export const FOLLOW_GRACE_MS = 10_000;

/** "on timeline 1, primary pg-ap on timeline 2" (the view's notFollowing, the preflight's refusal). */
function timelineWords(timeline: number, primary: string, primaryTimeline: number): string {
  return `on timeline ${timeline}, primary ${primary} on timeline ${primaryTimeline}`;
}

/** Pure enforcement state for one federation: feed it every round of samples with `evaluate`. */
export class FederationEvaluator {
  readonly config: Required<Omit<EvaluatorConfig, "designatedPrimary">> & { designatedPrimary: string | undefined };
  #tracks = new Map<string, MemberTrack>();
  #primary: string | undefined;
  #primaryTimeline: number | undefined;
  /** When the primary was first sampled on its current timeline: no replica can have missed it for longer. */
  #primaryTimelineSinceMs: number | undefined;
  /**
   * The primary's commit-bearing position over time: its current LSN, except while no transaction
   * holds or gets an xid, when it stays where that quiet run began. Exposure is measured on this,
   * so WAL that holds no commit (the bgwriter's running-xacts record an idle primary writes after
   * archive_timeout switched, never archived until the next real write) is not data at risk.
   */
  readonly committed: LsnHistory;
  #quiet: { nextXid: bigint; lsn: Lsn } | undefined;
  #archiveEnd: Lsn | undefined;
  #lastEstimate: ExposureEstimate | undefined;
  #lastPrimarySampleAtMs: number | undefined;
  #lastNudgeAtMs: number | undefined;

  constructor(config: EvaluatorConfig & { historyCapacity?: number | undefined }) {
    this.committed = new LsnHistory({ capacity: config.historyCapacity });
    if (!Number.isFinite(config.budgetMs) || config.budgetMs < 0) {
      throw new PgfedError("wal.invalid_budget", `invalid RPO budget ${config.budgetMs} ms for ${config.federation}`);
    }
    this.config = {
      federation: config.federation,
      budgetMs: config.budgetMs,
      warnAt: config.warnAt ?? 0.5,
      walSwitchAfterMs: config.walSwitchAfterMs ?? Math.round(config.budgetMs / 3),
      nudge: config.nudge ?? true,
      stallAfterSamples: config.stallAfterSamples ?? DEFAULT_STALL_AFTER_SAMPLES,
      designatedPrimary: config.designatedPrimary,
      segmentSizeBytes: config.segmentSizeBytes ?? DEFAULT_WAL_SEGMENT_SIZE_BYTES,
    };
  }

  /** Tells the evaluator that a nudge was sent at `atMs` (rate limit). */
  recordNudge(atMs: number): void {
    this.#lastNudgeAtMs = atMs;
  }

  get lastNudgeAtMs(): number | undefined {
    return this.#lastNudgeAtMs;
  }

  /** Turns the WAL switch nudge on or off at run time (e.g. during maintenance of the archive). */
  setNudging(on: boolean): void {
    this.config.nudge = on;
  }

  setDesignatedPrimary(name: string | undefined): void {
    this.config.designatedPrimary = name;
  }

  /** Worst-case exposure at `nowMs` from the last estimate (what gates an automatic failover). */
  worstCaseAt(nowMs: number): WorstCaseExposure | undefined {
    if (!this.#lastEstimate || this.#lastPrimarySampleAtMs === undefined) return undefined;
    return worstCaseExposure(this.#lastEstimate, this.#lastPrimarySampleAtMs, nowMs);
  }

  evaluate(input: EvaluationInput): Evaluation {
    const { nowMs } = input;
    const cfg = this.config;
    const signals: Signal[] = [];

    // 1. Which member is the primary.
    const primaries = input.members.filter((m) => m.state.status === "up" && m.state.sample.role === "primary");
    if (primaries.length > 1) {
      signals.push({ kind: "several_primaries", reason: `${primaries.map((m) => m.spec.name).join(", ")} all accept writes` });
    }
    const chosen =
      primaries.find((m) => m.spec.name === cfg.designatedPrimary) ??
      [...primaries].sort((a, b) => timelineOf(b.state) - timelineOf(a.state))[0] ??
      input.members.find((m) => m.spec.name === (cfg.designatedPrimary ?? this.#primary));
    if (chosen && chosen.spec.name !== this.#primary) {
      // Positions are read from the primary itself: start over with the new one.
      this.#archiveEnd = undefined;
      this.#quiet = undefined;
      this.committed.clear();
      this.#primary = chosen.spec.name;
    }
    const primary = chosen;
    const primarySample = primary && primary.state.status === "up" && primary.state.sample.role === "primary" ? primary.state.sample : undefined;
    if (primarySample && primarySample.timeline !== this.#primaryTimeline) {
      this.#archiveEnd = undefined;
      this.#quiet = undefined;
      this.#primaryTimeline = primarySample.timeline;
      this.#primaryTimelineSinceMs = primarySample.atMs;
      for (const t of this.#tracks.values()) t.offTimelineSinceMs = undefined;
    }
    if (primarySample && primarySample.atMs > (this.committed.latest()?.atMs ?? -1)) this.#pushCommitted(primarySample);

    // 2. Per member: reachability and archive health.
    const statuses = new Map<string, MemberStatus>();
    for (const m of input.members) {
      const track = this.#track(m.spec.name);
      const sample = m.state.status === "up" ? m.state.sample : undefined;
      const fresh = sample !== undefined && sample.atMs !== track.lastSampleAtMs;
      if (fresh) {
        track.lastSampleAtMs = sample.atMs;
        track.archive = this.#archiveHealth(m.spec.name, sample, track);
      } else if (track.archive) {
        // No new reading: no new failures to count.
        track.archive = { ...track.archive, newFailures: 0 };
      }
      if (m.state.status === "unreachable") {
        signals.push({ kind: "member_unreachable", member: m.spec.name, reason: m.state.error.message });
      }
      if (track.archive?.failing && m.state.status === "up") {
        signals.push({ kind: "archive_failing", member: m.spec.name, reason: track.archive.reason ?? "archive_command failing" });
      }
      statuses.set(m.spec.name, {
        name: m.spec.name,
        region: m.spec.region,
        status: m.state.status,
        role: lastSampleOf(m.state)?.role,
        error: m.state.status === "unreachable" ? m.state.error.message : undefined,
        archive: track.archive,
        replica: undefined,
        lag: undefined,
        ownLag: undefined,
        timeline: lastSampleOf(m.state)?.timeline,
        following: true,
        notFollowing: undefined,
        offTimelineSinceMs: undefined,
        lastOnTimelineAtMs: undefined,
      });
    }

    // 2b. Which replicas follow the primary's timeline (positions on another one are not comparable).
    if (primary) {
      for (const m of input.members) {
        if (m.spec.name === primary.spec.name) continue;
        const st = statuses.get(m.spec.name);
        if (!st) continue;
        this.#judgeTimeline(m.spec, lastSampleOf(m.state), primary.spec.name, primarySample, nowMs, st);
        if (st.following === false) signals.push({ kind: "replica_not_following", member: m.spec.name, reason: `${m.spec.name} is not following: ${st.notFollowing ?? "?"}` });
      }
    }

    // 3. The archive's reach, from the primary's archiver.
    if (primarySample?.archiver.lastArchivedWal) {
      try {
        const end = archiveSafeLsn(primarySample.archiver.lastArchivedWal, cfg.segmentSizeBytes);
        // A .history file carries no position: keep the segment-derived one.
        if (end !== undefined) this.#archiveEnd = maxLsn(this.#archiveEnd, end);
      } catch {
        // An unparsable file name moves nothing; the sample is otherwise fine.
      }
    }

    // 4. Exposure.
    let estimate: ExposureEstimate | undefined;
    if (!primary) {
      signals.push({ kind: "no_primary", reason: "no member has ever answered as a primary" });
    } else if (primarySample) {
      const replicas = this.#replicaPositions(input, primary.spec.name, primarySample);
      if (this.committed.latest() !== undefined) {
        estimate = estimateExposure({
          // As of the reading: the worst case adds the time since then, so nothing is counted twice.
          nowMs: primarySample.atMs,
          history: this.committed,
          archive: this.#archiveEnd === undefined ? undefined : { endLsn: this.#archiveEnd },
          replicas,
        });
        this.#lastEstimate = estimate;
        this.#lastPrimarySampleAtMs = primarySample.atMs;
      }
    } else if (primary.state.status === "unreachable") {
      signals.push({ kind: "no_primary", reason: `primary ${primary.spec.name} is unreachable: ${primary.state.error.message}` });
    }
    const worstCase = this.worstCaseAt(nowMs);
    const shown = estimate ?? this.#lastEstimate;

    // 5. Replica lag and stall detection.
    for (const r of shown?.replicas ?? []) {
      const st = statuses.get(r.name);
      if (!st) continue;
      st.lag = { bytes: r.lossIfPromoted.bytes, ms: r.lossIfPromoted.ms, via: r.recoverableVia };
      st.ownLag = { bytes: r.lossWithoutArchive.bytes, ms: r.lossWithoutArchive.ms, via: r.recoverableVia === "archive" ? "none" : r.recoverableVia };
    }
    for (const m of input.members) {
      if (m.spec.name === primary?.spec.name) continue;
      const sample = m.state.status === "up" && m.state.sample.role === "replica" ? m.state.sample : undefined;
      const st = statuses.get(m.spec.name);
      if (!sample || !st) continue;
      st.replica = this.#stall(m.spec, sample, primarySample);
      if (st.replica.stalled) signals.push({ kind: "replica_stalled", member: m.spec.name, reason: st.replica.reason ?? "not moving" });
    }

    // 6. Budget, against the worst case (which equals the estimate while the primary answers).
    const exposureMs = worstCase?.exposureMs ?? 0;
    const budget = { ...evaluateBudget(exposureMs, cfg.budgetMs, cfg.warnAt), budgetMs: cfg.budgetMs };
    if (budget.level !== "ok" && worstCase) {
      const words = `${describeExposure(worstCase)} is ${(budget.fraction * 100).toFixed(0)}% of the RPO budget ${(cfg.budgetMs / 1000).toFixed(1)} s`;
      signals.push(budget.level === "exceeded" ? { kind: "budget_exceeded", reason: words } : { kind: "budget_warn", reason: words });
    }

    // Members not following come last: only when no replica follows is one of them the best target.
    const followers = [...statuses.values()].filter((st) => st.following !== false).map((st) => st.name);
    const anyFollower = shown?.replicas.some((r) => followers.includes(r.name)) ?? false;
    const bestTarget = shown ? bestFailoverTarget(shown, anyFollower ? { candidates: followers } : {}) : undefined;
    const nudge = primarySample && primary ? this.#nudgeDecision(nowMs, primary.spec.name, this.committed, primarySample, statuses.get(primary.spec.name)?.archive) : undefined;

    return {
      federation: cfg.federation,
      atMs: nowMs,
      primary: primary?.spec.name,
      primaryTimeline: this.#primaryTimeline,
      estimate,
      worstCase,
      budget,
      bestTarget,
      members: [...statuses.values()],
      signals,
      nudge,
      sentence: sentenceOf(cfg.federation, primary?.spec.name, primarySample !== undefined, worstCase, budget, bestTarget, signals),
    };
  }

  #pushCommitted(s: PrimarySample): void {
    let lsn = s.currentLsn;
    if (s.runningXids === 0 && this.#quiet !== undefined && this.#quiet.nextXid === s.nextXid && this.#quiet.lsn <= s.currentLsn) {
      // No xid was held at the run's start nor assigned since: nothing committed after its LSN.
      lsn = this.#quiet.lsn;
    } else {
      this.#quiet = s.runningXids === 0 ? { nextXid: s.nextXid, lsn: s.currentLsn } : undefined;
    }
    this.committed.push({ atMs: s.atMs, lsn, timeline: s.timeline });
  }

  #track(name: string): MemberTrack {
    let t = this.#tracks.get(name);
    if (!t) {
      t = {
        lastSampleAtMs: undefined,
        prevFailedCount: undefined,
        archive: undefined,
        lastPos: undefined,
        samplesWithoutProgress: 0,
        stalled: false,
        offTimelineSinceMs: undefined,
        held: undefined,
      };
      this.#tracks.set(name, t);
    }
    return t;
  }

  /** Failing = the last failure is newer than the last success (failed_count rising shows how often). */
  #archiveHealth(name: string, sample: MemberSample, track: MemberTrack): ArchiveHealth {
    const a = sample.archiver;
    const prev = track.prevFailedCount;
    // A lower count means pg_stat_archiver was reset (or another server answered): no new failures known.
    const newFailures = prev !== undefined && a.failedCount > prev ? a.failedCount - prev : 0;
    track.prevFailedCount = a.failedCount;
    const failing = a.failedCount > 0 && a.lastFailedAtMs !== undefined && (a.lastArchivedAtMs === undefined || a.lastFailedAtMs > a.lastArchivedAtMs);
    const since = (ms: number | undefined) => (ms === undefined ? "never" : `${((sample.atMs - ms) / 1000).toFixed(1)} s ago`);
    const reason = failing
      ? `archive_command failing on ${name}: ${a.failedCount} failures (${newFailures} new), last failed ${a.lastFailedWal ?? "?"} ${since(a.lastFailedAtMs)}, ` +
        `last success ${a.lastArchivedWal ?? "none"} ${since(a.lastArchivedAtMs)}, ${a.readySegments} segments waiting`
      : undefined;
    return { failing, reason, newFailures, failedCount: a.failedCount, lastArchivedAtMs: a.lastArchivedAtMs, readySegments: a.readySegments };
  }

  #replicaPositions(input: EvaluationInput, primaryName: string, primarySample: PrimarySample): ReplicaPosition[] {
    const out: ReplicaPosition[] = [];
    for (const m of input.members) {
      if (m.spec.name === primaryName) continue;
      const last = lastSampleOf(m.state);
      // A member last seen as a primary is a former primary, not a replica of this one.
      const own = last?.role === "replica" ? last : undefined;
      // The primary's view of a streaming standby is read in the same round trip as its LSN.
      const seen = m.spec.applicationName ? primarySample.standbys.find((s) => s.applicationName === m.spec.applicationName) : undefined;
      // Never seen: pgfed cannot vouch for a replica it has not read once.
      if (!own && !seen) continue;
      if (!seen && own && own.timeline !== primarySample.timeline) {
        // On another timeline its positions say nothing about the primary's WAL: only what it held
        // on the primary's timeline counts (or nothing), and it reads no archive of the primary's.
        const held = this.#track(m.spec.name).held;
        const onHistory = held !== undefined && held.timeline === primarySample.timeline ? held : undefined;
        out.push({ name: m.spec.name, receivedLsn: undefined, replayedLsn: onHistory?.lsn, sampledAtMs: onHistory?.atMs ?? own.atMs, readsArchive: false });
        continue;
      }
      const receivedLsn = maxLsn(own?.receiveLsn, seen?.flushLsn);
      const replayedLsn = maxLsn(own?.replayLsn, seen?.replayLsn);
      out.push({
        name: m.spec.name,
        receivedLsn,
        replayedLsn,
        sampledAtMs: seen ? primarySample.atMs : (own?.atMs ?? primarySample.atMs),
        readsArchive: m.spec.readsArchive ?? true,
      });
    }
    return out;
  }

  /**
   * Timeline rule of "following": a replica sampled on another timeline than the primary's for
   * FOLLOW_GRACE_MS or longer is not following it. Also records what it held while on the
   * primary's timeline, the most its loss may count on once it stops following.
   */
  #judgeTimeline(spec: EvaluatorMember, sample: MemberSample | undefined, primaryName: string, primarySample: PrimarySample | undefined, nowMs: number, st: MemberStatus): void {
    const track = this.#track(spec.name);
    const primaryTimeline = this.#primaryTimeline;
    if (sample?.role !== "replica" || primaryTimeline === undefined) return;
    // The primary itself lists it streaming: whatever its restartpoint says, it receives the primary's WAL.
    const streamsFromPrimary = spec.applicationName !== undefined && primarySample?.standbys.some((s) => s.applicationName === spec.applicationName) === true;
    if (sample.timeline === primaryTimeline || streamsFromPrimary) {
      track.offTimelineSinceMs = undefined;
      const pos = maxLsn(sample.receiveLsn, sample.replayLsn);
      if (pos !== undefined) track.held = { lsn: pos, timeline: primaryTimeline, atMs: sample.atMs };
    } else {
      track.offTimelineSinceMs ??= Math.max(sample.atMs, this.#primaryTimelineSinceMs ?? sample.atMs);
    }
    st.offTimelineSinceMs = track.offTimelineSinceMs;
    st.lastOnTimelineAtMs = track.held?.timeline === primaryTimeline ? track.held.atMs : undefined;
    if (track.offTimelineSinceMs !== undefined && nowMs - track.offTimelineSinceMs >= FOLLOW_GRACE_MS) {
      st.following = false;
      st.notFollowing = timelineWords(sample.timeline, primaryName, primaryTimeline);
    }
  }

  /**
   * Stalled: the replica's position has not moved for N fresh samples while WAL beyond it was
   * available to it (the primary's position when it streams, the archive's end when it restores).
   * Measured against what it could fetch, so an idle primary or a slow archive never counts.
   */
  #stall(spec: EvaluatorMember, sample: ReplicaSample, primarySample: PrimarySample | undefined): ReplicaHealth {
    const track = this.#track(spec.name);
    const pos = maxLsn(sample.receiveLsn, sample.replayLsn);
    const streaming = sample.walReceiver?.status === "streaming";
    const available = maxLsn(streaming ? primarySample?.currentLsn : undefined, spec.readsArchive === false ? undefined : this.#archiveEnd);
    if (pos !== undefined && (track.lastPos === undefined || pos > track.lastPos)) {
      track.lastPos = pos;
      track.samplesWithoutProgress = 0;
    } else if (pos !== undefined && available !== undefined && available > pos) {
      track.samplesWithoutProgress++;
    } else {
      track.samplesWithoutProgress = 0;
    }
    track.stalled = track.samplesWithoutProgress >= this.config.stallAfterSamples;
    const reason = track.stalled
      ? `${spec.name} has not moved from ${pos === undefined ? "?" : formatLsn(pos)} for ${track.samplesWithoutProgress} samples while WAL up to ` +
        `${available === undefined ? "?" : formatLsn(available)} is available to it (${streaming ? "streaming" : "archive"})`
      : undefined;
    return { stalled: track.stalled, reason, samplesWithoutProgress: track.samplesWithoutProgress };
  }

  #nudgeDecision(nowMs: number, primaryName: string, history: PrimaryLsnHistory, sample: PrimarySample, archive: ArchiveHealth | undefined): NudgeDecision | undefined {
    const cfg = this.config;
    if (!cfg.nudge) return undefined;
    // A switch ships nothing while the archiver fails or is still busy with completed segments.
    if (archive?.failing || sample.archiver.readySegments > 0) return undefined;
    if (this.#lastNudgeAtMs !== undefined && nowMs - this.#lastNudgeAtMs < cfg.walSwitchAfterMs) return undefined;
    if (history.latest() === undefined) return undefined;
    const unarchived = estimateExposure({ nowMs, history, archive: this.#archiveEnd === undefined ? undefined : { endLsn: this.#archiveEnd } });
    if (unarchived.exposureBytes === 0n || unarchived.exposureMs < cfg.walSwitchAfterMs) return undefined;
    return {
      member: primaryName,
      unarchivedMs: unarchived.exposureMs,
      unarchivedBytes: unarchived.exposureBytes,
      reason:
        `switching WAL on ${primaryName}: ${formatBytes(unarchived.exposureBytes)} un-archived for ${(unarchived.exposureMs / 1000).toFixed(1)} s, ` +
        `over the ${(cfg.walSwitchAfterMs / 1000).toFixed(1)} s threshold (RPO budget ${(cfg.budgetMs / 1000).toFixed(1)} s)`,
    };
  }
}

function lastSampleOf(state: MemberState): MemberSample | undefined {
  return state.status === "up" ? state.sample : state.status === "unreachable" ? state.lastSample : undefined;
}

function timelineOf(state: MemberState): number {
  return lastSampleOf(state)?.timeline ?? 0;
}

function sentenceOf(
  federation: string,
  primary: string | undefined,
  primaryUp: boolean,
  worstCase: WorstCaseExposure | undefined,
  budget: BudgetVerdict & { budgetMs: number },
  best: FailoverTarget | undefined,
  signals: readonly Signal[],
): string {
  if (!primary || !worstCase) return `${federation}: no exposure figure yet (${signals.map((s) => s.reason).join("; ") || "waiting for a primary sample"})`;
  const exposure = primaryUp ? describeExposure(worstCase.basedOn) : describeExposure(worstCase);
  const target = best ? `; best failover target ${best.name} would lose ${formatBytes(best.lossBytes)} / ${(best.lossMs / 1000).toFixed(1)} s` : "; no replica known";
  const problems = signals.filter((s) => s.kind !== "budget_warn" && s.kind !== "budget_exceeded").map((s) => s.reason);
  return (
    `${federation} (primary ${primary}): ${exposure}, ${budget.level} against budget ${(budget.budgetMs / 1000).toFixed(1)} s${target}` +
    (problems.length > 0 ? `; ${problems.join("; ")}` : "")
  );
}

// ---------------------------------------------------------------------------------------------
// Metrics

/** Sets the federation's exposure gauges from one evaluation (the estimate, else the worst case's basis). */
export function recordExposureMetrics(m: PgfedMetrics, e: Evaluation): void {
  const fed = { federation: e.federation };
  const shown = e.estimate ?? e.worstCase?.basedOn;
  if (shown) {
    m.exposureSeconds.set(fed, shown.exposureMs / 1000);
    m.exposureBytes.set(fed, Number(shown.exposureBytes));
  }
  if (e.worstCase) {
    m.worstCaseExposureSeconds.set(fed, e.worstCase.exposureMs / 1000);
    m.worstCaseExposureBytes.set(fed, Number(e.worstCase.exposureBytes));
  }
}

/**
 * Sets one member's archive and replica series from its evaluated status. A member that is not a
 * replica (the primary, or one whose role is unknown) loses its replica series, so a promoted
 * replica does not keep showing the lag it had before.
 */
export function recordMemberMetrics(m: PgfedMetrics, labels: MemberLabels, s: MemberStatus, primary: string | undefined): void {
  if (s.archive) {
    m.archiveFailing.set(labels, s.archive.failing ? 1 : 0);
    m.archiveReadySegments.set(labels, s.archive.readySegments);
    if (s.archive.newFailures > 0) m.archiveFailuresTotal.inc(labels, s.archive.newFailures);
    if (s.archive.lastArchivedAtMs !== undefined) m.archiveLastSuccessTimestampSeconds.set(labels, s.archive.lastArchivedAtMs / 1000);
  }
  if (s.name !== primary && s.role === "replica") {
    m.replicaStalled.set(labels, s.replica?.stalled ? 1 : 0);
    if (s.lag) {
      m.replicaLagBytes.set(labels, Number(s.lag.bytes));
      m.replicaLagSeconds.set(labels, s.lag.ms / 1000);
    }
  } else {
    m.replicaStalled.remove(labels);
    m.replicaLagBytes.remove(labels);
    m.replicaLagSeconds.remove(labels);
  }
}
