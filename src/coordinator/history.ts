/**
 * The last hour of one federation's exposure and its replicas' lag, for the status page's chart
 * (GET /v1/federations/{name}/history): one point per HISTORY_RESOLUTION_MS from the evaluation
 * passes, in fixed-size rings, so memory is bounded whatever the uptime: 240 points × (2 + one per
 * member) Float32 series + their times, about 6 KiB for a two-member federation, 60 MiB for
 * 10,000. A follower keeps none (it makes no passes); a new leader starts an empty hour.
 */
import type { FederationHistoryView } from "../api/contract.js";

export const HISTORY_RESOLUTION_MS = 15_000;
export const HISTORY_POINTS = 240;

export interface HistoryPoint {
  atMs: number;
  /** Exposure now and its worst case (primary silent since its last sample), seconds; null when unknown. */
  exposureSeconds: number | null;
  worstCaseSeconds: number | null;
  /** Each member's lag behind the primary (what promoting it would lose), seconds; null for the primary or when unknown. */
  lagSeconds: ReadonlyMap<string, number | null>;
}

const toF32 = (v: number | null): number => (v === null || !Number.isFinite(v) ? Number.NaN : v);
const fromF32 = (v: number | undefined): number | null => (v === undefined || Number.isNaN(v) ? null : Math.round(v * 1000) / 1000);

export class FederationHistory {
  private readonly at = new Float64Array(HISTORY_POINTS);
  private readonly exposure = new Float32Array(HISTORY_POINTS);
  private readonly worstCase = new Float32Array(HISTORY_POINTS);
  private readonly lag: Map<string, Float32Array>;
  /** Points written so far (the ring's next slot is count % HISTORY_POINTS). */
  private count = 0;

  constructor(
    private readonly federation: string,
    private readonly members: readonly string[],
  ) {
    this.lag = new Map(members.map((m) => [m, new Float32Array(HISTORY_POINTS)]));
  }

  /** Whether a pass at `nowMs` is due to record a point (one per resolution step, the first at once). */
  due(nowMs: number): boolean {
    if (this.count === 0) return true;
    const last = this.at[(this.count - 1) % HISTORY_POINTS] ?? 0;
    return nowMs - last >= HISTORY_RESOLUTION_MS || nowMs < last;
  }

  record(p: HistoryPoint): void {
    const i = this.count % HISTORY_POINTS;
    this.at[i] = p.atMs;
    this.exposure[i] = toF32(p.exposureSeconds);
    this.worstCase[i] = toF32(p.worstCaseSeconds);
    for (const [m, series] of this.lag) series[i] = toF32(p.lagSeconds.get(m) ?? null);
    this.count++;
  }

  /** Oldest first, columnar (as charts take it): times in epoch seconds. */
  view(): FederationHistoryView {
    const n = Math.min(this.count, HISTORY_POINTS);
    const start = this.count - n;
    const idx = Array.from({ length: n }, (_, k) => (start + k) % HISTORY_POINTS);
    return {
      federation: this.federation,
      resolutionSeconds: HISTORY_RESOLUTION_MS / 1000,
      at: idx.map((i) => Math.round(this.at[i] ?? 0) / 1000),
      exposureSeconds: idx.map((i) => fromF32(this.exposure[i])),
      worstCaseSeconds: idx.map((i) => fromF32(this.worstCase[i])),
      members: this.members.map((m) => ({ name: m, lagSeconds: idx.map((i) => fromF32(this.lag.get(m)?.[i])) })),
    };
  }
}
