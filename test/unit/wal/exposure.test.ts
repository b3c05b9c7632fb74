import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { formatBytes } from "../../../machines/index.js";
import { PgfedError } from "../../../src/errors.js";
import type { ExposureEstimate, ReplicaPosition } from "../../../src/wal/exposure.js";
import {
  bestFailoverTarget,
  describeExposure,
  estimateExposure,
  evaluateBudget,
  worstCaseExposure,
  worstCaseLoss,
} from "../../../src/wal/exposure.js";
import type { LsnSample } from "../../../src/wal/history.js";
import { LsnHistory } from "../../../src/wal/history.js";
import { parseLsn } from "../../../src/wal/lsn.js";
import { walFileName } from "../../../src/wal/walfile.js";

const MiB = 1024n * 1024n;
const s = (atMs: number, lsn: bigint, timeline = 1): LsnSample => ({ atMs, lsn, timeline });

function historyOf(...samples: LsnSample[]): LsnHistory {
  const h = new LsnHistory();
  for (const x of samples) h.push(x);
  return h;
}

// ---------------------------------------------------------------------------------------------
// A primary's true write timeline, sampled at a fixed interval: the model the property tests use.

interface Write {
  readonly atMs: number;
  readonly bytes: bigint;
}

const BASE_LSN = 0x5000000n;

/** Writes at strictly increasing times after 0; the primary is at BASE_LSN at time 0. */
const writeTimelines = fc
  .array(fc.record({ dtMs: fc.integer({ min: 1, max: 5_000 }), bytes: fc.bigInt({ min: 1n, max: 3n * MiB }) }), {
    minLength: 0,
    maxLength: 40,
  })
  .map((steps) => {
    let atMs = 0;
    return steps.map(({ dtMs, bytes }): Write => {
      atMs += dtMs;
      return { atMs, bytes };
    });
  });

/** The primary's true position at `timeMs` (a reading at t includes every write at or before t). */
function trueLsnAt(writes: readonly Write[], timeMs: number): bigint {
  let lsn = BASE_LSN;
  for (const w of writes) if (w.atMs <= timeMs) lsn += w.bytes;
  return lsn;
}

/** The true time of the first write that took the primary past `lsn`. */
function trueFirstWritePast(writes: readonly Write[], lsn: bigint): number | undefined {
  let pos = BASE_LSN;
  for (const w of writes) {
    pos += w.bytes;
    if (pos > lsn) return w.atMs;
  }
  return undefined;
}

function sampleTimeline(writes: readonly Write[], intervalMs: number, nowMs: number): LsnHistory {
  const h = new LsnHistory({ capacity: 10_000 });
  for (let t = 0; t <= nowMs; t += intervalMs) h.push(s(t, trueLsnAt(writes, t)));
  return h;
}

const replicaArb = (i: number): fc.Arbitrary<ReplicaPosition> =>
  fc.record({
    name: fc.constant(`pg-${i}`),
    receivedLsn: fc.option(fc.bigInt({ min: 0n, max: BASE_LSN + 200n * MiB }), { nil: undefined }),
    replayedLsn: fc.option(fc.bigInt({ min: 0n, max: BASE_LSN + 200n * MiB }), { nil: undefined }),
    sampledAtMs: fc.integer({ min: 0, max: 300_000 }),
    readsArchive: fc.boolean(),
  });

const replicasArb = fc.integer({ min: 0, max: 4 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => replicaArb(i))));

const archiveArb = fc.option(
  fc.oneof(
    fc.bigInt({ min: 0n, max: BASE_LSN + 200n * MiB }).map((endLsn) => ({ endLsn })),
    fc.bigInt({ min: 0n, max: BASE_LSN + 200n * MiB }).map((lsn) => ({ lastArchivedWal: walFileName(1, lsn) })),
  ),
  { nil: undefined },
);

/** Any estimate the estimator can produce from a sampled write timeline. */
const estimates = fc
  .record({
    writes: writeTimelines,
    intervalMs: fc.integer({ min: 100, max: 5_000 }),
    extraMs: fc.integer({ min: 0, max: 100_000 }),
    archive: archiveArb,
    replicas: replicasArb,
  })
  .map(({ writes, intervalMs, extraMs, archive, replicas }): ExposureEstimate => {
    const nowMs = (writes.at(-1)?.atMs ?? 0) + extraMs;
    return estimateExposure({ nowMs, history: sampleTimeline(writes, intervalMs, nowMs), archive, replicas });
  });

// ---------------------------------------------------------------------------------------------

describe("estimateExposure", () => {
  const history = historyOf(s(10_000, parseLsn("0/5000000")), s(11_000, parseLsn("0/5100000")), s(12_000, parseLsn("0/5200000")));

  it("measures from the end of the last archived segment when no replica is further", () => {
    const e = estimateExposure({ nowMs: 12_500, history, archive: { lastArchivedWal: "000000010000000000000004" } });
    expect(e.safeLsn).toBe(parseLsn("0/5000000"));
    expect(e.safeSource).toEqual({ kind: "archive" });
    expect(e.exposureBytes).toBe(2n * MiB);
    // The primary was still at the safe LSN at 10 s: the first unsafe write may be just after it.
    expect(e.exposureMs).toBe(2_500);
    expect(e.exposureMsIsLowerBound).toBe(false);
    expect(describeExposure(e)).toBe("exposure 2.0 MiB / 2.5 s (safe LSN 0/5000000 from archive)");
  });

  it("takes the furthest replica position as the safe LSN", () => {
    const e = estimateExposure({
      nowMs: 12_500,
      history,
      archive: { endLsn: parseLsn("0/5000000") },
      replicas: [
        { name: "pg-us", receivedLsn: parseLsn("0/5100000"), replayedLsn: parseLsn("0/50F0000"), sampledAtMs: 12_000 },
        { name: "pg-ap", replayedLsn: parseLsn("0/5080000"), sampledAtMs: 12_000 },
      ],
    });
    expect(e.safeSource).toEqual({ kind: "replica", name: "pg-us" });
    expect(e.exposureBytes).toBe(MiB);
    expect(e.exposureMs).toBe(1_500);
    expect(describeExposure(e)).toBe("exposure 1.0 MiB / 1.5 s (safe LSN 0/5100000 from replica pg-us)");
    const us = e.replicas.find((r) => r.name === "pg-us");
    expect(us?.receive).toEqual({ lsn: parseLsn("0/5100000"), bytes: MiB, ms: 1_500, msIsLowerBound: false });
    expect(us?.replay).toMatchObject({ bytes: MiB + 0x10000n, ms: 2_500 });
    expect(us?.recoverableVia).toBe("received");
  });

  it("has zero exposure for an idle primary however old its last archived segment", () => {
    const idle = historyOf(s(0, parseLsn("0/4800000")), s(1_000, parseLsn("0/5000000")), s(86_400_000, parseLsn("0/5000000")));
    const e = estimateExposure({ nowMs: 86_400_000 + 3_600_000, history: idle, archive: { lastArchivedWal: "000000010000000000000004" } });
    expect(e.exposureBytes).toBe(0n);
    expect(e.exposureMs).toBe(0);
    expect(describeExposure(e)).toBe("exposure 0 B / 0.0 s (safe LSN 0/5000000 from archive)");
  });

  it("counts everything as exposed and flags a lower bound when nothing is recoverable", () => {
    const e = estimateExposure({ nowMs: 20_000, history });
    expect(e.safeSource).toEqual({ kind: "none" });
    expect(e.exposureBytes).toBe(parseLsn("0/5200000"));
    expect(e.exposureMs).toBe(10_000);
    expect(e.exposureMsIsLowerBound).toBe(true);
    expect(describeExposure(e)).toBe("exposure 82.0 MiB / ≥10.0 s (no archive or replica position known)");
  });

  it("uses a newer primary reading that is not in the history yet", () => {
    const e = estimateExposure({
      nowMs: 13_000,
      history,
      primaryCurrent: s(12_900, parseLsn("0/5300000")),
      archive: { endLsn: parseLsn("0/5200000") },
    });
    expect(e.primaryLsn).toBe(parseLsn("0/5300000"));
    expect(e.primarySampledAtMs).toBe(12_900);
    expect(e.exposureBytes).toBe(MiB);
    // At 12 s the primary was still at the safe LSN.
    expect(e.exposureMs).toBe(1_000);
  });

  it("lets a replica that restores from the archive recover up to the archive", () => {
    const e = estimateExposure({
      nowMs: 12_500,
      history,
      archive: { endLsn: parseLsn("0/5100000") },
      replicas: [
        { name: "archive-fed", replayedLsn: parseLsn("0/5000000"), sampledAtMs: 12_000, readsArchive: true },
        { name: "stream-only", receivedLsn: parseLsn("0/5000000"), sampledAtMs: 12_000 },
      ],
    });
    const [fed, only] = e.replicas;
    expect(fed).toMatchObject({ recoverableLsn: parseLsn("0/5100000"), recoverableVia: "archive" });
    expect(fed?.lossIfPromoted).toMatchObject({ bytes: MiB, ms: 1_500 });
    expect(only).toMatchObject({ recoverableLsn: parseLsn("0/5000000"), recoverableVia: "received" });
    expect(only?.lossIfPromoted).toMatchObject({ bytes: 2n * MiB, ms: 2_500 });
    expect(e.safeSource).toEqual({ kind: "archive" });
    expect(bestFailoverTarget(e)).toMatchObject({ name: "archive-fed", lossBytes: MiB, lossMs: 1_500 });
    expect(bestFailoverTarget(e, { candidates: ["stream-only"] })).toMatchObject({ name: "stream-only" });
    expect(bestFailoverTarget(e, { candidates: [] })).toBeUndefined();
    // Without the archive's credit (its source is not the primary): only the WAL it holds itself.
    expect(fed?.lossWithoutArchive).toMatchObject({ lsn: parseLsn("0/5000000"), bytes: 2n * MiB, ms: 2_500 });
    expect(only?.lossWithoutArchive).toEqual(only?.lossIfPromoted);
  });

  it("never reports negative lag for a replica sampled after the primary", () => {
    const e = estimateExposure({
      nowMs: 12_500,
      history,
      replicas: [{ name: "ahead", receivedLsn: parseLsn("0/5300000"), sampledAtMs: 12_400 }],
    });
    expect(e.exposureBytes).toBe(0n);
    expect(e.replicas[0]?.receive).toMatchObject({ bytes: 0n, ms: 0 });
  });

  it("refuses to estimate without any primary reading", () => {
    let caught: unknown;
    try {
      estimateExposure({ nowMs: 1, history: new LsnHistory() });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(PgfedError);
    expect((caught as PgfedError).code).toBe("wal.no_primary_sample");
  });

  test.prop([writeTimelines, fc.integer({ min: 0, max: 10 }), fc.integer({ min: 1, max: 7 * 86_400_000 })])(
    "an idle primary has zero exposure however old the last archived segment",
    (writes, segmentsBack, idleMs) => {
      const lastWriteMs = writes.at(-1)?.atMs ?? 0;
      const lsn = trueLsnAt(writes, lastWriteMs);
      const nowMs = lastWriteMs + idleMs;
      const history = sampleTimeline(writes, 1_000, lastWriteMs + 1_000);
      history.push(s(nowMs, lsn));
      // Archived up to (and past, after a WAL switch) the last write, possibly long ago.
      const archived = walFileName(1, lsn - 1n + BigInt(segmentsBack) * 16n * MiB);
      const e = estimateExposure({ nowMs, history, archive: { lastArchivedWal: archived } });
      expect(e.exposureBytes).toBe(0n);
      expect(e.exposureMs).toBe(0);
    },
  );

  test.prop([
    writeTimelines,
    fc.integer({ min: 1, max: 5_000 }),
    fc.integer({ min: 0, max: 60_000 }),
    fc.bigInt({ min: BASE_LSN, max: BASE_LSN + 120n * MiB }),
    fc.constantFrom("archive", "replica"),
    fc.boolean(),
  ])(
    "exposure seconds never under-estimate the age of the oldest unsafe write",
    (writes, intervalMs, extraMs, safe, via, lastReadingUnpushed) => {
      const nowMs = (writes.at(-1)?.atMs ?? 0) + extraMs;
      const history = new LsnHistory({ capacity: 10_000 });
      let lastSampleMs = 0;
      for (let t = 0; t <= nowMs; t += intervalMs) {
        history.push(s(t, trueLsnAt(writes, t)));
        lastSampleMs = t;
      }
      // Sometimes the newest reading arrives as primaryCurrent instead of through the history.
      const currentAtMs = Math.min(nowMs, lastSampleMs + intervalMs);
      const primaryCurrent = lastReadingUnpushed ? s(currentAtMs, trueLsnAt(writes, currentAtMs)) : undefined;
      const e = estimateExposure({
        nowMs,
        history,
        primaryCurrent,
        archive: via === "archive" ? { endLsn: safe } : undefined,
        replicas: via === "replica" ? [{ name: "r", receivedLsn: safe, sampledAtMs: nowMs }] : [],
      });

      const seenLsn = trueLsnAt(writes, primaryCurrent?.atMs ?? lastSampleMs);
      expect(e.exposureBytes).toBe(seenLsn > safe ? seenLsn - safe : 0n);
      const firstUnsafeMs = trueFirstWritePast(writes, safe);
      if (e.exposureBytes > 0n && firstUnsafeMs !== undefined) {
        expect(e.exposureMsIsLowerBound).toBe(false);
        expect(e.exposureMs).toBeGreaterThanOrEqual(nowMs - firstUnsafeMs);
        // ...and by no more than one sample interval (the sampling granularity).
        expect(e.exposureMs).toBeLessThanOrEqual(nowMs - firstUnsafeMs + intervalMs);
      } else {
        expect(e.exposureMs).toBe(0);
      }
    },
  );

  test.prop([estimates])("exposure and every lag are never negative", (e) => {
    expect(e.exposureBytes >= 0n).toBe(true);
    expect(e.exposureMs).toBeGreaterThanOrEqual(0);
    for (const r of e.replicas) {
      for (const lag of [r.receive, r.replay, r.lossIfPromoted]) {
        if (lag === undefined) continue;
        expect(lag.bytes >= 0n).toBe(true);
        expect(lag.ms).toBeGreaterThanOrEqual(0);
      }
    }
  });

  test.prop([estimates])("no replica can lose less than the federation's exposure", (e) => {
    for (const r of e.replicas) {
      expect(r.lossIfPromoted.bytes >= e.exposureBytes).toBe(true);
      expect(r.lossIfPromoted.ms).toBeGreaterThanOrEqual(e.exposureMs);
    }
  });
});

describe("bestFailoverTarget", () => {
  test.prop([estimates])("picks the replica with the least loss, in bytes and in seconds", (e) => {
    const best = bestFailoverTarget(e);
    if (e.replicas.length === 0) {
      expect(best).toBeUndefined();
      return;
    }
    expect(best).toBeDefined();
    for (const r of e.replicas) {
      expect(best !== undefined && best.lossBytes <= r.lossIfPromoted.bytes).toBe(true);
      expect(best?.lossMs).toBeLessThanOrEqual(r.lossIfPromoted.ms);
    }
  });

  it("breaks ties by the fresher reading, then by name", () => {
    const history = historyOf(s(0, 0x100n), s(1_000, 0x200n));
    const at = (name: string, sampledAtMs: number): ReplicaPosition => ({ name, receivedLsn: 0x180n, sampledAtMs });
    const e = estimateExposure({ nowMs: 2_000, history, replicas: [at("b", 900), at("a", 900), at("c", 500)] });
    expect(bestFailoverTarget(e)?.name).toBe("a");
  });
});

describe("worstCaseExposure", () => {
  const history = historyOf(s(10_000, parseLsn("0/5000000")), s(12_000, parseLsn("0/5200000")));
  const last = estimateExposure({ nowMs: 12_000, history, archive: { endLsn: parseLsn("0/5100000") } });

  it("adds the primary's silence to the last known exposure and keeps bytes as a lower bound", () => {
    const w = worstCaseExposure(last, 12_000, 50_000);
    expect(last.exposureMs).toBe(2_000);
    expect(w).toMatchObject({ exposureMs: 40_000, silentForMs: 38_000, exposureBytes: MiB, exposureBytesIsLowerBound: true });
    expect(describeExposure(w)).toBe(
      "worst-case exposure ≥1.0 MiB / 40.0 s (primary silent 38.0 s; safe LSN 0/5100000 from archive)",
    );
  });

  it("starts from the silence alone when the primary was idle and fully safe", () => {
    const idle = estimateExposure({ nowMs: 12_000, history, archive: { endLsn: parseLsn("0/5200000") } });
    expect(worstCaseExposure(idle, 12_000, 15_000).exposureMs).toBe(3_000);
  });

  it("extrapolates a failover target's loss the same way", () => {
    const e = estimateExposure({
      nowMs: 12_000,
      history,
      replicas: [{ name: "pg-us", receivedLsn: parseLsn("0/5100000"), sampledAtMs: 12_000 }],
    });
    const target = bestFailoverTarget(e);
    if (target === undefined) throw new Error("expected a target");
    expect(worstCaseLoss(target, 12_000, 42_000)).toMatchObject({ lossMs: 32_000, lossBytes: MiB, lossBytesIsLowerBound: true });
  });

  test.prop([estimates, fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 0, max: 1_000_000 })])(
    "is never below the last known exposure and never decreases with time",
    (e, lastSampleAtMs, t1, dt) => {
      const a = worstCaseExposure(e, lastSampleAtMs, t1);
      const b = worstCaseExposure(e, lastSampleAtMs, t1 + dt);
      expect(a.exposureMs).toBeGreaterThanOrEqual(e.exposureMs);
      expect(b.exposureMs).toBeGreaterThanOrEqual(a.exposureMs);
      expect(b.exposureBytes).toBe(e.exposureBytes);
    },
  );
});

describe("evaluateBudget", () => {
  it("is ok below the warning fraction, warns from it, and is exceeded only beyond the budget", () => {
    expect(evaluateBudget(10_000, 30_000, 0.5)).toEqual({ level: "ok", fraction: 1 / 3 });
    expect(evaluateBudget(15_000, 30_000, 0.5)).toEqual({ level: "warn", fraction: 0.5 });
    expect(evaluateBudget(30_000, 30_000, 0.5)).toEqual({ level: "warn", fraction: 1 });
    expect(evaluateBudget(30_001, 30_000, 0.5).level).toBe("exceeded");
  });

  it("treats a zero budget as accepting no loss at all", () => {
    expect(evaluateBudget(0, 0, 0.5)).toEqual({ level: "ok", fraction: 0 });
    expect(evaluateBudget(1, 0, 0.5)).toEqual({ level: "exceeded", fraction: Number.POSITIVE_INFINITY });
  });

  it("refuses a nonsensical budget or exposure with wal.invalid_budget", () => {
    for (const [exposureMs, budgetMs, warnAt] of [
      [0, -1, 0.5],
      [0, Number.NaN, 0.5],
      [0, 1_000, 0],
      [0, 1_000, 1.5],
      [-1, 1_000, 0.5],
    ] as const) {
      expect(() => evaluateBudget(exposureMs, budgetMs, warnAt)).toThrow(/invalid/);
    }
  });

  test.prop([fc.integer({ min: 0, max: 1e9 }), fc.integer({ min: 1, max: 1e9 }), fc.double({ min: 0.01, max: 1, noNaN: true })])(
    "the level follows the fraction",
    (exposureMs, budgetMs, warnAt) => {
      const v = evaluateBudget(exposureMs, budgetMs, warnAt);
      expect(v.fraction).toBeCloseTo(exposureMs / budgetMs);
      expect(v.level === "exceeded").toBe(exposureMs > budgetMs);
    },
  );
});

describe("formatBytes", () => {
  it("uses binary units with one decimal", () => {
    expect(formatBytes(0n)).toBe("0 B");
    expect(formatBytes(1023n)).toBe("1023 B");
    expect(formatBytes(1024n)).toBe("1.0 KiB");
    expect(formatBytes((12n * MiB) / 10n)).toBe("1.2 MiB");
    expect(formatBytes(3n * 1024n * MiB)).toBe("3.0 GiB");
  });
});
