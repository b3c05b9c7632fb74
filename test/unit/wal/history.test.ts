import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { PgfedError } from "../../../src/errors.js";
import type { LsnSample, WritePastLsn } from "../../../src/wal/history.js";
import { DEFAULT_HISTORY_CAPACITY, LsnHistory } from "../../../src/wal/history.js";

const s = (atMs: number, lsn: bigint, timeline = 1): LsnSample => ({ atMs, lsn, timeline });

/** A monotone reading sequence on one timeline; many steps write nothing, to exercise idle runs. */
const monotoneSamples = fc
  .array(
    fc.record({
      dtMs: fc.integer({ min: 0, max: 2_000 }),
      dLsn: fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 1_000_000n })),
    }),
    { minLength: 1, maxLength: 80 },
  )
  .map((steps) => {
    let atMs = 1_000;
    let lsn = 0x3000000n;
    return steps.map(({ dtMs, dLsn }) => {
      atMs += dtMs;
      lsn += dLsn;
      return s(atMs, lsn);
    });
  });

/** The obvious answer over every sample, for comparison. */
function referenceWritePast(samples: readonly LsnSample[], lsn: bigint): WritePastLsn | undefined {
  const i = samples.findIndex((x) => x.lsn > lsn);
  if (i < 0) return undefined;
  const seen = samples[i] as LsnSample;
  const before = samples[i - 1];
  return before === undefined
    ? { atMs: seen.atMs, seenAtMs: seen.atMs, beforeHistory: true }
    : { atMs: before.atMs, seenAtMs: seen.atMs, beforeHistory: false };
}

describe("LsnHistory.push", () => {
  it("keeps readings oldest first", () => {
    const h = new LsnHistory();
    expect(h.capacity).toBe(DEFAULT_HISTORY_CAPACITY);
    expect(h.push(s(1_000, 100n))).toBe("appended");
    expect(h.push(s(2_000, 200n))).toBe("appended");
    expect(h.toArray()).toEqual([s(1_000, 100n), s(2_000, 200n)]);
    expect(h.oldest()).toEqual(s(1_000, 100n));
    expect(h.latest()).toEqual(s(2_000, 200n));
  });

  it("refuses a reading older than the newest and changes nothing", () => {
    const h = new LsnHistory();
    h.push(s(2_000, 200n));
    expect(h.push(s(1_999, 250n))).toBe("refused_out_of_order");
    expect(h.toArray()).toEqual([s(2_000, 200n)]);
  });

  it("refuses an LSN going backwards on the same timeline", () => {
    const h = new LsnHistory();
    h.push(s(2_000, 200n));
    expect(h.push(s(3_000, 199n))).toBe("refused_lsn_backwards");
    expect(h.size).toBe(1);
  });

  it("restarts on a newer timeline and refuses readings from an older one", () => {
    const h = new LsnHistory();
    h.push(s(1_000, 100n, 1));
    h.push(s(2_000, 200n, 1));
    expect(h.push(s(3_000, 150n, 2))).toBe("timeline_reset");
    expect(h.toArray()).toEqual([s(3_000, 150n, 2)]);
    expect(h.push(s(4_000, 300n, 1))).toBe("refused_old_timeline");
    expect(h.size).toBe(1);
  });

  it("keeps only the first and last reading of an idle run", () => {
    const h = new LsnHistory({ capacity: 4 });
    h.push(s(1_000, 100n));
    h.push(s(2_000, 500n));
    for (let t = 3_000; t <= 100_000; t += 1_000) h.push(s(t, 500n));
    expect(h.toArray()).toEqual([s(1_000, 100n), s(2_000, 500n), s(100_000, 500n)]);
  });

  it("forgets the oldest reading when full", () => {
    const h = new LsnHistory({ capacity: 3 });
    for (let i = 1; i <= 5; i++) h.push(s(i * 1_000, BigInt(i * 100)));
    expect(h.toArray().map((x) => x.atMs)).toEqual([3_000, 4_000, 5_000]);
    expect(h.firstTimeAtOrAfter(150n)).toEqual({ atMs: 3_000, seenAtMs: 3_000, beforeHistory: true });
  });

  it("throws wal.invalid_sample for malformed readings and a bad capacity", () => {
    const h = new LsnHistory();
    for (const bad of [s(Number.NaN, 1n), s(1.5, 1n), s(1, -1n), s(1, 1n, 0)]) {
      expect(() => h.push(bad)).toThrow(PgfedError);
    }
    expect(() => new LsnHistory({ capacity: 1 })).toThrow(/capacity/);
  });
});

describe("LsnHistory.firstTimeAtOrAfter", () => {
  const h = new LsnHistory();
  h.push(s(10_000, 1_000n));
  h.push(s(11_000, 1_000n));
  h.push(s(12_000, 5_000n));
  h.push(s(13_000, 9_000n));

  it("brackets the first write past an LSN between two samples and reports the earlier one as the conservative time", () => {
    expect(h.firstTimeAtOrAfter(1_000n)).toEqual({ atMs: 11_000, seenAtMs: 12_000, beforeHistory: false });
    expect(h.firstTimeAtOrAfter(4_999n)).toEqual({ atMs: 11_000, seenAtMs: 12_000, beforeHistory: false });
    expect(h.firstTimeAtOrAfter(5_000n)).toEqual({ atMs: 12_000, seenAtMs: 13_000, beforeHistory: false });
  });

  it("is undefined when the primary never got past the LSN", () => {
    expect(h.firstTimeAtOrAfter(9_000n)).toBeUndefined();
    expect(new LsnHistory().firstTimeAtOrAfter(0n)).toBeUndefined();
  });

  it("says so when the write is older than the history", () => {
    expect(h.firstTimeAtOrAfter(999n)).toEqual({ atMs: 10_000, seenAtMs: 10_000, beforeHistory: true });
  });

  test.prop([monotoneSamples, fc.bigInt({ min: 0x2ff0000n, max: 0x3000000n + 80_000_000n })])(
    "answers as a scan over every reading would, idle runs compressed or not",
    (samples, lsn) => {
      const hist = new LsnHistory({ capacity: 200 });
      for (const x of samples) expect(hist.push(x)).not.toMatch(/^refused/);
      expect(hist.firstTimeAtOrAfter(lsn)).toEqual(referenceWritePast(samples, lsn));
    },
  );

  test.prop([monotoneSamples, fc.integer({ min: 2, max: 10 })])("stays sorted by time and LSN whatever the capacity", (samples, capacity) => {
    const hist = new LsnHistory({ capacity });
    for (const x of samples) hist.push(x);
    const kept = hist.toArray();
    expect(kept.length).toBeLessThanOrEqual(capacity);
    expect(hist.latest()).toEqual(samples.at(-1));
    for (let i = 1; i < kept.length; i++) {
      const [a, b] = [kept[i - 1] as LsnSample, kept[i] as LsnSample];
      expect(a.atMs <= b.atMs && a.lsn <= b.lsn).toBe(true);
    }
  });
});

describe("LsnHistory.lsnAt", () => {
  const h = new LsnHistory();
  h.push(s(10_000, 1_000n));
  h.push(s(12_000, 5_000n));

  it("interpolates between samples within their bounds", () => {
    expect(h.lsnAt(11_000)).toEqual({ lsn: 3_000n, atLeastLsn: 1_000n, atMostLsn: 5_000n });
    expect(h.lsnAt(10_000)).toEqual({ lsn: 1_000n, atLeastLsn: 1_000n, atMostLsn: 5_000n });
  });

  it("gives the newest position, unbounded above, after the last sample", () => {
    expect(h.lsnAt(60_000)).toEqual({ lsn: 5_000n, atLeastLsn: 5_000n, atMostLsn: undefined });
  });

  it("knows nothing before the oldest sample", () => {
    expect(h.lsnAt(9_999)).toBeUndefined();
  });

  test.prop([monotoneSamples, fc.integer({ min: 0, max: 200_000 })])("an interpolated position lies within its bounds", (samples, timeMs) => {
    const hist = new LsnHistory({ capacity: 200 });
    for (const x of samples) hist.push(x);
    const at = hist.lsnAt(timeMs);
    if (at === undefined) {
      expect(timeMs).toBeLessThan((samples[0] as LsnSample).atMs);
      return;
    }
    expect(at.atLeastLsn <= at.lsn).toBe(true);
    if (at.atMostLsn !== undefined) expect(at.lsn <= at.atMostLsn).toBe(true);
  });
});
