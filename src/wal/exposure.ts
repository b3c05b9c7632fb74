/**
 * The exposure estimator (DESIGN.md, "Measuring exposure (the RPO)"): how much committed WAL on
 * the primary no replica could recover if the primary vanished now, in bytes and milliseconds,
 * plus each replica's lag and the loss a failover to it would cause.
 *
 * Pure, no I/O, no clock: the sampler (src/wal/sampler.ts) supplies readings, the coordinator
 * supplies `nowMs` and gates failovers on the result.
 *
 * Conventions: LSNs and byte counts are `bigint`; times and durations are `number` milliseconds.
 * Every position a caller passes may be stale: positions only grow, so an old reading is a lower
 * bound of the current one and using it can only over-estimate exposure, never under-estimate it.
 * All positions are assumed to lie on the primary's WAL history (a replica that diverged on another
 * timeline must not be passed in: the evaluator, src/wal/monitor.ts, passes such a replica with only
 * the position it last held on the primary's timeline, or none, so its loss grows with the primary).
 */
import { formatBytes } from "../../machines/index.js";
import { PgfedError } from "../errors.js";
import type { LsnSample, PrimaryLsnHistory, WritePastLsn } from "./history.js";
import type { Lsn } from "./lsn.js";
import { INVALID_LSN, formatLsn, lsnAhead } from "./lsn.js";
import { DEFAULT_WAL_SEGMENT_SIZE_BYTES, archiveSafeLsn } from "./walfile.js";


// ---------------------------------------------------------------------------------------------
// Inputs

/**
 * How far the WAL archive reaches: either a position already resolved by the caller, or the last
 * archived file name (`pg_stat_archiver.last_archived_wal`), resolved with `archiveSafeLsn`
 * (segment → its end; `.partial`/`.backup` → conservative start; `.history` → no position).
 */
export type ArchivePosition =
  | { readonly endLsn: Lsn }
  | { readonly lastArchivedWal: string; readonly segmentSizeBytes?: number };

/** One replica's reading. Both positions are WAL the replica holds on disk, so both are recoverable. */
export interface ReplicaPosition {
  readonly name: string;
  /** `pg_last_wal_receive_lsn()`: streamed and flushed on the replica ("can recover"); absent when not streaming. */
  readonly receivedLsn?: Lsn | undefined;
  /** `pg_last_wal_replay_lsn()`: applied ("replayed"); may exceed received when WAL comes from the archive. */
  readonly replayedLsn?: Lsn | undefined;
  readonly sampledAtMs: number;
  /** Restores from the primary's archive (restore_command / replica cluster fed from the object store), so it can reach the archive's position too. Default false. */
  readonly readsArchive?: boolean;
}

export interface ExposureInput {
  readonly nowMs: number;
  /** The primary's sample history (an `LsnHistory`). */
  readonly history: PrimaryLsnHistory;
  /** A primary reading newer than the history's newest, not pushed into it; ignored when not newer. */
  readonly primaryCurrent?: LsnSample | undefined;
  /** Absent: nothing known to be archived. */
  readonly archive?: ArchivePosition | undefined;
  readonly replicas?: readonly ReplicaPosition[];
}

// ---------------------------------------------------------------------------------------------
// Outputs

/** Where the safe LSN comes from (the archive wins ties: it survives any one region). */
export type SafeSource = { readonly kind: "archive" } | { readonly kind: "replica"; readonly name: string } | { readonly kind: "none" };

/** Which of a replica's positions is the furthest it can recover to. */
export type RecoverableVia = "received" | "replayed" | "archive" | "none";

/** How far one position trails the primary. */
export interface PositionLag {
  readonly lsn: Lsn;
  /** Primary current LSN − lsn, never negative. */
  readonly bytes: bigint;
  /** now − the (conservative) time the primary first wrote past lsn; 0 when nothing is beyond it. */
  readonly ms: number;
  /** The primary's history does not reach back to that write: `ms` is a lower bound. */
  readonly msIsLowerBound: boolean;
}

export interface ReplicaExposure {
  readonly name: string;
  readonly sampledAtMs: number;
  /** Lag of the received position (undefined if not known). */
  readonly receive: PositionLag | undefined;
  /** Lag of the replayed position, i.e. how far behind what this replica has applied (undefined if not known). */
  readonly replay: PositionLag | undefined;
  /** max(received, replayed, archive end if `readsArchive`); INVALID_LSN (0/0) when nothing is known. */
  readonly recoverableLsn: Lsn;
  readonly recoverableVia: RecoverableVia;
  /** What promoting this replica now would lose: WAL past `recoverableLsn`. */
  readonly lossIfPromoted: PositionLag;
  /** The same from its own received/replayed WAL alone (no archive credit): for a replica that does not read the primary's archive. */
  readonly lossWithoutArchive: PositionLag;
}

export interface ExposureEstimate {
  readonly kind: "estimate";
  /** The `nowMs` the estimate was made for. */
  readonly atMs: number;
  /** The primary's newest known position and when it was read. */
  readonly primaryLsn: Lsn;
  readonly primarySampledAtMs: number;
  readonly primaryTimeline: number;
  /** The archive's safe position, if known. */
  readonly archiveEndLsn: Lsn | undefined;
  /** The furthest position any replica (or the archive) can recover; INVALID_LSN when none. */
  readonly safeLsn: Lsn;
  readonly safeSource: SafeSource;
  /** primaryLsn − safeLsn, never negative. */
  readonly exposureBytes: bigint;
  /** now − the (conservative) time the primary first wrote past safeLsn; 0 when nothing is beyond it. */
  readonly exposureMs: number;
  /** The history does not reach back to the first unsafe write: `exposureMs` is a lower bound. */
  readonly exposureMsIsLowerBound: boolean;
  readonly replicas: readonly ReplicaExposure[];
}

/** Exposure while the primary cannot be sampled: what gates an automatic failover. */
export interface WorstCaseExposure {
  readonly kind: "worst_case";
  readonly atMs: number;
  /** The estimate this is extrapolated from. */
  readonly basedOn: ExposureEstimate;
  /** now − the last successful primary sample (never negative). */
  readonly silentForMs: number;
  /** Last known exposure + silentForMs (the primary may have written just after the last sample). */
  readonly exposureMs: number;
  /** Last known bytes: the primary may have written more since, so a lower bound. */
  readonly exposureBytes: bigint;
  readonly exposureBytesIsLowerBound: true;
  readonly exposureMsIsLowerBound: boolean;
  readonly safeLsn: Lsn;
  readonly safeSource: SafeSource;
}

export interface FailoverTarget {
  readonly name: string;
  readonly recoverableLsn: Lsn;
  readonly recoverableVia: RecoverableVia;
  readonly lossBytes: bigint;
  readonly lossMs: number;
  readonly lossMsIsLowerBound: boolean;
  /** Set by `worstCaseLoss`: loss bytes may be higher, the primary having gone silent. */
  readonly lossBytesIsLowerBound: boolean;
}

export type BudgetLevel = "ok" | "warn" | "exceeded";

export interface BudgetVerdict {
  readonly level: BudgetLevel;
  /** exposureMs / budgetMs (Infinity for any exposure against a zero budget). */
  readonly fraction: number;
}

// ---------------------------------------------------------------------------------------------
// Estimation

/** Resolves an ArchivePosition to the archive's safe LSN (undefined when it carries none). */
export function archiveEndLsn(archive: ArchivePosition | undefined): Lsn | undefined {
  if (archive === undefined) return undefined;
  if ("endLsn" in archive) return archive.endLsn;
  return archiveSafeLsn(archive.lastArchivedWal, archive.segmentSizeBytes ?? DEFAULT_WAL_SEGMENT_SIZE_BYTES);
}

/** The primary's newest reading: the history's, or `current` when it is newer. */
function newestPrimaryReading(history: PrimaryLsnHistory, current: LsnSample | undefined): LsnSample | undefined {
  const last = history.latest();
  if (current === undefined) return last;
  if (last === undefined || (current.atMs >= last.atMs && current.lsn >= last.lsn)) return current;
  return last;
}

/** The furthest known position among candidates (earlier ones win ties); [0/0, "none"] when none is known. */
function furthest(candidates: readonly (readonly [Lsn | undefined, RecoverableVia])[]): [Lsn, RecoverableVia] {
  let best: [Lsn, RecoverableVia] = [INVALID_LSN, "none"];
  for (const [lsn, via] of candidates) {
    if (lsn !== undefined && via !== "none" && (best[1] === "none" || lsn > best[0])) best = [lsn, via];
  }
  return best;
}

/** firstTimeAtOrAfter over the history followed by the optional newer reading. */
function writePast(history: PrimaryLsnHistory, extra: LsnSample | undefined, lsn: Lsn): WritePastLsn | undefined {
  const found = history.firstTimeAtOrAfter(lsn);
  if (found !== undefined || extra === undefined || extra.lsn <= lsn) return found;
  const last = history.latest();
  // The history's newest sample was still at or below lsn, so the write came after it.
  if (last !== undefined) return { atMs: last.atMs, seenAtMs: extra.atMs, beforeHistory: false };
  return { atMs: extra.atMs, seenAtMs: extra.atMs, beforeHistory: true };
}

/**
 * Estimates exposure now. Throws `wal.no_primary_sample` when the primary has never been read
 * (nothing to estimate from: use `worstCaseExposure` on the last estimate instead) and
 * `wal.invalid_time` for a non-finite `nowMs`.
 */
export function estimateExposure(input: ExposureInput): ExposureEstimate {
  const { nowMs, history } = input;
  if (!Number.isFinite(nowMs)) throw new PgfedError("wal.invalid_time", `invalid nowMs ${nowMs}`, { nowMs });
  const primary = newestPrimaryReading(history, input.primaryCurrent);
  if (primary === undefined) {
    throw new PgfedError("wal.no_primary_sample", "cannot estimate exposure: the primary's WAL position has never been sampled");
  }
  const extra = primary === input.primaryCurrent ? primary : undefined;

  const lagOf = (lsn: Lsn): PositionLag => {
    const bytes = lsnAhead(primary.lsn, lsn);
    const w = bytes === 0n ? undefined : writePast(history, extra, lsn);
    if (w === undefined) return { lsn, bytes, ms: 0, msIsLowerBound: false };
    return { lsn, bytes, ms: Math.max(0, nowMs - w.atMs), msIsLowerBound: w.beforeHistory };
  };

  const archiveLsn = archiveEndLsn(input.archive);
  let safeLsn: Lsn = INVALID_LSN;
  let safeSource: SafeSource = { kind: "none" };
  if (archiveLsn !== undefined) {
    safeLsn = archiveLsn;
    safeSource = { kind: "archive" };
  }

  const replicas: ReplicaExposure[] = [];
  for (const r of input.replicas ?? []) {
    // Only the replica's own WAL counts toward the federation's safe LSN; the archive is counted once.
    const own = furthest([
      [r.receivedLsn, "received"],
      [r.replayedLsn, "replayed"],
    ]);
    const recoverable = r.readsArchive === true ? furthest([own, [archiveLsn, "archive"]]) : own;
    if (own[1] !== "none" && (safeSource.kind === "none" || own[0] > safeLsn)) {
      safeLsn = own[0];
      safeSource = { kind: "replica", name: r.name };
    }
    const [recoverableLsn, recoverableVia] = recoverable;
    replicas.push({
      name: r.name,
      sampledAtMs: r.sampledAtMs,
      receive: r.receivedLsn === undefined ? undefined : lagOf(r.receivedLsn),
      replay: r.replayedLsn === undefined ? undefined : lagOf(r.replayedLsn),
      recoverableLsn,
      recoverableVia,
      lossIfPromoted: lagOf(recoverableLsn),
      lossWithoutArchive: lagOf(own[0]),
    });
  }

  const exposure = lagOf(safeLsn);
  return {
    kind: "estimate",
    atMs: nowMs,
    primaryLsn: primary.lsn,
    primarySampledAtMs: primary.atMs,
    primaryTimeline: primary.timeline,
    archiveEndLsn: archiveLsn,
    safeLsn,
    safeSource,
    exposureBytes: exposure.bytes,
    exposureMs: exposure.ms,
    exposureMsIsLowerBound: exposure.msIsLowerBound,
    replicas,
  };
}

/**
 * Exposure when the primary has not answered since `lastSampleAtMs`: the last known exposure plus
 * the silence (the primary may have committed right after its last sample and nothing since became
 * safe). Deliberately over-counts by `last.atMs − lastSampleAtMs` when the estimate was made after
 * the sample, which errs on the safe side. Bytes stay the last known figure, flagged as a lower
 * bound. Non-decreasing in `nowMs` and never below `last.exposureMs`.
 */
export function worstCaseExposure(last: ExposureEstimate, lastSampleAtMs: number, nowMs: number): WorstCaseExposure {
  const silentForMs = silenceMs(lastSampleAtMs, nowMs);
  return {
    kind: "worst_case",
    atMs: nowMs,
    basedOn: last,
    silentForMs,
    exposureMs: last.exposureMs + silentForMs,
    exposureBytes: last.exposureBytes,
    exposureBytesIsLowerBound: true,
    exposureMsIsLowerBound: last.exposureMsIsLowerBound,
    safeLsn: last.safeLsn,
    safeSource: last.safeSource,
  };
}

function silenceMs(lastSampleAtMs: number, nowMs: number): number {
  if (!Number.isFinite(lastSampleAtMs) || !Number.isFinite(nowMs)) {
    throw new PgfedError("wal.invalid_time", `invalid times: lastSampleAtMs ${lastSampleAtMs}, nowMs ${nowMs}`, { lastSampleAtMs, nowMs });
  }
  return Math.max(0, nowMs - lastSampleAtMs);
}

function targetOf(r: ReplicaExposure): FailoverTarget {
  return {
    name: r.name,
    recoverableLsn: r.recoverableLsn,
    recoverableVia: r.recoverableVia,
    lossBytes: r.lossIfPromoted.bytes,
    lossMs: r.lossIfPromoted.ms,
    lossMsIsLowerBound: r.lossIfPromoted.msIsLowerBound,
    lossBytesIsLowerBound: false,
  };
}

/**
 * The replica whose promotion loses the least, or undefined when there is none (or none among
 * `candidates`). Loss in bytes and in ms both shrink as the recoverable LSN grows, so the furthest
 * recoverable LSN wins both; ties go to the fresher reading, then to the name (stable choice).
 */
export function bestFailoverTarget(
  estimate: ExposureEstimate,
  options: { readonly candidates?: readonly string[] } = {},
): FailoverTarget | undefined {
  const allowed = options.candidates === undefined ? undefined : new Set(options.candidates);
  let best: ReplicaExposure | undefined;
  for (const r of estimate.replicas) {
    if (allowed !== undefined && !allowed.has(r.name)) continue;
    if (best === undefined || betterTarget(r, best)) best = r;
  }
  return best === undefined ? undefined : targetOf(best);
}

function betterTarget(a: ReplicaExposure, b: ReplicaExposure): boolean {
  if (a.recoverableLsn !== b.recoverableLsn) return a.recoverableLsn > b.recoverableLsn;
  if (a.sampledAtMs !== b.sampledAtMs) return a.sampledAtMs > b.sampledAtMs;
  return a.name < b.name;
}

/** A target's loss while the primary is silent: its last known loss plus the silence (as worstCaseExposure). */
export function worstCaseLoss(target: FailoverTarget, lastSampleAtMs: number, nowMs: number): FailoverTarget {
  return { ...target, lossMs: target.lossMs + silenceMs(lastSampleAtMs, nowMs), lossBytesIsLowerBound: true };
}

// ---------------------------------------------------------------------------------------------
// Budget and words

/**
 * Compares exposure with the RPO budget: "exceeded" when exposure is beyond the budget (a loss equal
 * to the budget is within it), "warn" from `warnAt × budget` on, else "ok". Throws
 * `wal.invalid_budget` for a negative/non-finite budget or warnAt outside (0, 1], and for a
 * negative or NaN exposure.
 */
export function evaluateBudget(exposureMs: number, budgetMs: number, warnAt: number): BudgetVerdict {
  if (!Number.isFinite(budgetMs) || budgetMs < 0) {
    throw new PgfedError("wal.invalid_budget", `invalid RPO budget ${budgetMs} ms (expected a finite number >= 0)`, { budgetMs });
  }
  if (!Number.isFinite(warnAt) || warnAt <= 0 || warnAt > 1) {
    throw new PgfedError("wal.invalid_budget", `invalid RPO warnAt ${warnAt} (expected a fraction in (0, 1])`, { warnAt });
  }
  if (Number.isNaN(exposureMs) || exposureMs < 0) {
    throw new PgfedError("wal.invalid_budget", `invalid exposure ${exposureMs} ms (expected >= 0)`, { exposureMs });
  }
  const fraction = budgetMs === 0 ? (exposureMs === 0 ? 0 : Number.POSITIVE_INFINITY) : exposureMs / budgetMs;
  const level: BudgetLevel = exposureMs > budgetMs ? "exceeded" : exposureMs >= warnAt * budgetMs && exposureMs > 0 ? "warn" : "ok";
  return { level, fraction };
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function describeSafe(safeLsn: Lsn, source: SafeSource): string {
  switch (source.kind) {
    case "archive":
      return `safe LSN ${formatLsn(safeLsn)} from archive`;
    case "replica":
      return `safe LSN ${formatLsn(safeLsn)} from replica ${source.name}`;
    case "none":
      return "no archive or replica position known";
  }
}

/**
 * One line for logs, audit and the CLI, e.g.
 * `exposure 1.2 MiB / 3.4 s (safe LSN 0/5000000 from archive)` or
 * `worst-case exposure ≥1.2 MiB / 41.0 s (primary silent 38.0 s; safe LSN 0/5000000 from replica pg-us)`.
 * "≥" marks a figure that is a lower bound.
 */
export function describeExposure(e: ExposureEstimate | WorstCaseExposure): string {
  const ms = `${e.exposureMsIsLowerBound ? "≥" : ""}${formatSeconds(e.exposureMs)}`;
  if (e.kind === "estimate") {
    return `exposure ${formatBytes(e.exposureBytes)} / ${ms} (${describeSafe(e.safeLsn, e.safeSource)})`;
  }
  return (
    `worst-case exposure ≥${formatBytes(e.exposureBytes)} / ${ms} ` +
    `(primary silent ${formatSeconds(e.silentForMs)}; ${describeSafe(e.safeLsn, e.safeSource)})`
  );
}
