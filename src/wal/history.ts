/**
 * A bounded, time-ordered history of the primary's `(atMs, lsn)` readings (DESIGN.md, "Measuring
 * exposure"): it answers "since when has the primary been writing past this LSN?".
 *
 * Sampling model: a sample `{atMs, lsn}` says the primary's WAL position was exactly `lsn` at
 * `atMs`. Between two samples the primary's position is unknown except that it only grows, so for
 * samples s_{i-1}, s_i with lsn(s_{i-1}) <= x < lsn(s_i) the first write past x happened in
 * (t_{i-1}, t_i]. Stamp `atMs` when the query is *sent* (before the reading is taken) so the
 * "still at or below at t_{i-1}" half of that claim holds even with a slow round trip.
 *
 * Pure, no I/O, no clock: time comes in with the samples.
 */
import { PgfedError } from "../errors.js";
import type { Lsn } from "./lsn.js";
import { isValidLsn } from "./lsn.js";

export interface LsnSample {
  /** Wall-clock milliseconds (integer, e.g. `Date.now()` taken just before the query). */
  readonly atMs: number;
  /** `pg_current_wal_lsn()` (or the flush LSN) on the primary. */
  readonly lsn: Lsn;
  /** The primary's current timeline (e.g. the first 8 hex digits of `pg_walfile_name(pg_current_wal_lsn())`). */
  readonly timeline: number;
}

/**
 * What `push` did:
 * - `appended`: stored as the newest sample;
 * - `extended`: same LSN as the last two samples; the newest one's time was moved forward
 *   instead (an idle run keeps only its first and last reading, which loses nothing for lookups);
 * - `timeline_reset`: a newer timeline: the history was cleared and restarted with this sample;
 * - `refused_out_of_order`: older than the newest sample; nothing changed;
 * - `refused_lsn_backwards`: same timeline but a lower LSN than the newest sample (a primary never
 *   goes back on a timeline: the reading came from another server); nothing changed;
 * - `refused_old_timeline`: an older timeline than the history's (a former primary); nothing changed.
 */
export type PushOutcome =
  | "appended"
  | "extended"
  | "timeline_reset"
  | "refused_out_of_order"
  | "refused_lsn_backwards"
  | "refused_old_timeline";

/** When the primary first wrote past an LSN, as far as the samples can tell. */
export interface WritePastLsn {
  /**
   * Conservative (earliest possible) time of the first write past the LSN: the time of the last
   * sample still at or below it. Exposure measured from here never under-estimates the true age.
   * When `beforeHistory`, it is the oldest sample's time and the write may be older still.
   */
  readonly atMs: number;
  /** The first sample seen past the LSN: the write had happened by then (latest possible time). */
  readonly seenAtMs: number;
  /** Even the oldest sample is past the LSN: ages computed from `atMs` are lower bounds only. */
  readonly beforeHistory: boolean;
}

/** The LSN the primary had reached at some time, with what the samples guarantee about it. */
export interface LsnAtTime {
  /** Linear interpolation between the bracketing samples, rounded down. */
  readonly lsn: Lsn;
  /** The position was at least this (the sample at or before the time). */
  readonly atLeastLsn: Lsn;
  /** The position was at most this (the next sample); undefined after the newest sample. */
  readonly atMostLsn: Lsn | undefined;
}

/** The read side the exposure estimator needs; `LsnHistory` implements it. */
export interface PrimaryLsnHistory {
  latest(): LsnSample | undefined;
  firstTimeAtOrAfter(lsn: Lsn): WritePastLsn | undefined;
}

/** One hour of 1-second samples (idle runs take two slots, so it usually reaches back further). */
export const DEFAULT_HISTORY_CAPACITY = 3600;

export class LsnHistory implements PrimaryLsnHistory {
  readonly capacity: number;
  readonly #buf: (LsnSample | undefined)[];
  #start = 0;
  #size = 0;

  constructor(options: { capacity?: number } = {}) {
    const capacity = options.capacity ?? DEFAULT_HISTORY_CAPACITY;
    // Two slots are the least that can bracket a write between samples.
    if (!Number.isSafeInteger(capacity) || capacity < 2) {
      throw new PgfedError("wal.invalid_history_capacity", `invalid LSN history capacity ${capacity} (expected an integer >= 2)`, {
        capacity,
      });
    }
    this.capacity = capacity;
    this.#buf = new Array<LsnSample | undefined>(capacity).fill(undefined);
  }

  get size(): number {
    return this.#size;
  }

  /** Sample `index` counting from the oldest (0) to the newest (size − 1). */
  at(index: number): LsnSample | undefined {
    if (!Number.isInteger(index) || index < 0 || index >= this.#size) return undefined;
    return this.#buf[(this.#start + index) % this.capacity];
  }

  oldest(): LsnSample | undefined {
    return this.at(0);
  }

  latest(): LsnSample | undefined {
    return this.at(this.#size - 1);
  }

  /** The samples, oldest first. */
  toArray(): LsnSample[] {
    const out: LsnSample[] = [];
    for (let i = 0; i < this.#size; i++) out.push(this.#sample(i));
    return out;
  }

  clear(): void {
    this.#buf.fill(undefined);
    this.#start = 0;
    this.#size = 0;
  }

  /** Adds a reading; see PushOutcome. Throws `wal.invalid_sample` for malformed values (a bug upstream). */
  push(sample: LsnSample): PushOutcome {
    validateSample(sample);
    const last = this.latest();
    if (last !== undefined) {
      if (sample.timeline < last.timeline) return "refused_old_timeline";
      if (sample.timeline > last.timeline) {
        // Positions on the old timeline describe another WAL history from the fork on.
        this.clear();
        this.#append(sample);
        return "timeline_reset";
      }
      if (sample.atMs < last.atMs) return "refused_out_of_order";
      if (sample.lsn < last.lsn) return "refused_lsn_backwards";
      const beforeLast = this.at(this.#size - 2);
      if (sample.lsn === last.lsn && beforeLast !== undefined && beforeLast.lsn === last.lsn) {
        this.#buf[(this.#start + this.#size - 1) % this.capacity] = sample;
        return "extended";
      }
    }
    this.#append(sample);
    return "appended";
  }

  /**
   * When the primary first wrote past `lsn` (its position became > lsn), or undefined if no
   * sample is past it. `atMs` is the conservative bound (see WritePastLsn).
   */
  firstTimeAtOrAfter(lsn: Lsn): WritePastLsn | undefined {
    const i = this.#firstIndexWhere((s) => s.lsn > lsn);
    if (i === this.#size) return undefined;
    const seen = this.#sample(i);
    if (i === 0) return { atMs: seen.atMs, seenAtMs: seen.atMs, beforeHistory: true };
    return { atMs: this.#sample(i - 1).atMs, seenAtMs: seen.atMs, beforeHistory: false };
  }

  /** The primary's position at `timeMs`; undefined before the oldest sample. */
  lsnAt(timeMs: number): LsnAtTime | undefined {
    const next = this.#firstIndexWhere((s) => s.atMs > timeMs);
    if (next === 0) return undefined;
    const before = this.#sample(next - 1);
    if (next === this.#size) return { lsn: before.lsn, atLeastLsn: before.lsn, atMostLsn: undefined };
    const after = this.#sample(next);
    const spanMs = BigInt(after.atMs - before.atMs);
    const lsn = before.lsn + ((after.lsn - before.lsn) * BigInt(Math.floor(timeMs) - before.atMs)) / spanMs;
    return { lsn, atLeastLsn: before.lsn, atMostLsn: after.lsn };
  }

  #append(sample: LsnSample): void {
    if (this.#size === this.capacity) {
      this.#buf[this.#start] = sample;
      this.#start = (this.#start + 1) % this.capacity;
    } else {
      this.#buf[(this.#start + this.#size) % this.capacity] = sample;
      this.#size++;
    }
  }

  #sample(index: number): LsnSample {
    const s = this.at(index);
    if (s === undefined) throw new Error(`LSN history index ${index} out of range 0..${this.#size - 1}`);
    return s;
  }

  /** Smallest index whose sample satisfies `pred` (which must be monotone false→true), or size. */
  #firstIndexWhere(pred: (s: LsnSample) => boolean): number {
    let lo = 0;
    let hi = this.#size;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pred(this.#sample(mid))) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

function validateSample(sample: LsnSample): void {
  const problems: string[] = [];
  if (!Number.isSafeInteger(sample.atMs) || sample.atMs < 0) problems.push(`atMs ${sample.atMs} is not a non-negative integer`);
  if (typeof sample.lsn !== "bigint" || !isValidLsn(sample.lsn)) problems.push(`lsn ${String(sample.lsn)} is not a valid LSN`);
  if (!Number.isInteger(sample.timeline) || sample.timeline < 1) problems.push(`timeline ${sample.timeline} is not >= 1`);
  if (problems.length > 0) {
    throw new PgfedError("wal.invalid_sample", `invalid primary LSN sample: ${problems.join("; ")}`, {
      atMs: sample.atMs,
      lsn: String(sample.lsn),
      timeline: sample.timeline,
    });
  }
}
