import { describe, expect, it } from "vitest";
import { PgfedError } from "../../../src/errors.js";
import { createMetrics } from "../../../src/metrics.js";
import type { Lsn } from "../../../src/wal/lsn.js";
import { FederationMonitor, type Sampler } from "../../../src/wal/federation-monitor.js";
import { FederationEvaluator } from "../../../src/wal/monitor.js";
import type { MemberState, PrimarySample, SampleOutcome } from "../../../src/wal/sampler.js";
import { FakePrimary, SEG, T0, archivedBefore, archiver, primary } from "./fixtures.js";

function evalAt(ev: FederationEvaluator, p: FakePrimary, nowMs: number) {
  return ev.evaluate({ nowMs, members: [{ spec: { name: "pg-eu" }, state: p.state }] });
}

/** A primary writing 1 kB per second into a segment whose predecessor is archived. */
function writingPrimary(p: FakePrimary, second: number, over: Partial<PrimarySample> = {}): void {
  p.push(primary(T0 + second * 1_000, 2n * SEG + BigInt(second) * 1_000n, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG) }), ...over }));
}

describe("WAL switch nudge", () => {
  it("asks for a switch once un-archived WAL is older than the threshold, then not again before the threshold has passed", () => {
    const ev = new FederationEvaluator({ federation: "orders", budgetMs: 9_000 });
    expect(ev.config.walSwitchAfterMs).toBe(3_000);
    const p = new FakePrimary();
    const decisions: (number | undefined)[] = [];
    for (let s = 0; s <= 8; s++) {
      writingPrimary(p, s);
      const d = evalAt(ev, p, T0 + s * 1_000).nudge;
      decisions.push(d?.unarchivedMs);
      // The monitor records every nudge it sends.
      if (d) ev.recordNudge(T0 + s * 1_000);
    }
    // Written past the archive since second 0: age 3 s at second 3 → nudge; rate limit until second 6.
    expect(decisions).toEqual([undefined, undefined, undefined, 3_000, undefined, undefined, 6_000, undefined, undefined]);
  });

  it("says what it does and why, with the numbers", () => {
    const ev = new FederationEvaluator({ federation: "orders", budgetMs: 9_000 });
    const p = new FakePrimary();
    for (let s = 0; s <= 2; s++) {
      writingPrimary(p, s);
      evalAt(ev, p, T0 + s * 1_000);
    }
    writingPrimary(p, 3);
    expect(evalAt(ev, p, T0 + 3_000).nudge?.reason).toBe("switching WAL on pg-eu: 2.9 KiB un-archived for 3.0 s, over the 3.0 s threshold (RPO budget 9.0 s)");
  });

  it("does not nudge while archiving fails, while segments wait, on an idle primary, or when turned off", () => {
    const failing = new FederationEvaluator({ federation: "orders", budgetMs: 3_000 });
    const waiting = new FederationEvaluator({ federation: "orders", budgetMs: 3_000 });
    const off = new FederationEvaluator({ federation: "orders", budgetMs: 3_000, nudge: false });
    const idle = new FederationEvaluator({ federation: "orders", budgetMs: 3_000 });
    const pf = new FakePrimary();
    const pw = new FakePrimary();
    const po = new FakePrimary();
    const pi = new FakePrimary();
    for (let s = 0; s <= 10; s++) {
      writingPrimary(pf, s, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG), lastArchivedAtMs: T0 - 1, failedCount: s + 1, lastFailedAtMs: T0 + s * 1_000 }) });
      writingPrimary(pw, s, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG), readySegments: 2 }) });
      writingPrimary(po, s);
      pi.push(primary(T0 + s * 1_000, 2n * SEG, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG) }) }));
      expect(evalAt(failing, pf, T0 + s * 1_000).nudge).toBeUndefined();
      expect(evalAt(waiting, pw, T0 + s * 1_000).nudge).toBeUndefined();
      expect(evalAt(off, po, T0 + s * 1_000).nudge).toBeUndefined();
      expect(evalAt(idle, pi, T0 + s * 1_000).nudge).toBeUndefined();
    }
  });
});

/** A scripted sampler: each sample() takes the next state from a list. */
class ScriptedSampler implements Sampler {
  readonly target = { member: "pg-eu", region: "eu-west" };
  /** Primary samples taken, as a count of rounds. */
  rounds = 0;
  state: MemberState = { status: "unknown" };
  switches = 0;
  failSwitch = false;
  constructor(private readonly next: (i: number) => MemberState) {}
  #i = 0;
  async sample(): Promise<SampleOutcome> {
    this.state = this.next(this.#i++);
    if (this.state.status === "up") {
      const s = this.state.sample;
      if (s.role === "primary") this.rounds++;
      return { ok: true, sample: s };
    }
    return { ok: false, error: new PgfedError("wal.member_unreachable", "down") };
  }
  async switchWal(): Promise<{ switchLsn: Lsn }> {
    this.switches++;
    if (this.failSwitch) throw new PgfedError("wal.switch_failed", "permission denied for function pg_switch_wal");
    return { switchLsn: 2n * SEG + 1n };
  }
  async close(): Promise<void> {}
}

describe("FederationMonitor", () => {
  it("switches WAL through the sampler, rate-limited, and counts it in the metrics", async () => {
    let clock = T0;
    const sampler = new ScriptedSampler((i) => ({
      status: "up",
      sample: primary(T0 + i * 1_000, 2n * SEG + BigInt(i) * 1_000n, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG) }) }),
    }));
    const metrics = createMetrics();
    const mon = new FederationMonitor({ federation: "orders", budgetMs: 6_000, members: [{ sampler }], metrics, now: () => clock });
    for (let i = 0; i <= 9; i++) {
      clock = T0 + i * 1_000;
      await mon.tick();
    }
    // Threshold 2 s: nudges at 2 s, 4 s, 6 s, 8 s.
    expect(mon.nudges.map((n) => n.atMs - T0)).toEqual([2_000, 4_000, 6_000, 8_000]);
    expect(sampler.switches).toBe(4);
    const text = await metrics.registry.metrics();
    expect(text).toContain('pgfed_wal_switch_nudges_total{federation="orders",member="pg-eu",region="eu-west"} 4');
    expect(text).toContain('pgfed_rpo_budget_seconds{federation="orders"} 6');
    expect(text).toContain('pgfed_member_up{federation="orders",member="pg-eu",region="eu-west"} 1');
  });

  it("rate-limits a failing switch too, and never throws from a round", async () => {
    let clock = T0;
    const sampler = new ScriptedSampler((i) => ({
      status: "up",
      sample: primary(T0 + i * 1_000, 2n * SEG + BigInt(i) * 1_000n, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG) }) }),
    }));
    sampler.failSwitch = true;
    const mon = new FederationMonitor({
      federation: "orders",
      budgetMs: 6_000,
      members: [{ sampler }],
      now: () => clock,
      onEvaluation: () => {
        throw new Error("subscriber bug");
      },
    });
    for (let i = 0; i <= 5; i++) {
      clock = T0 + i * 1_000;
      await mon.tick();
    }
    expect(sampler.switches).toBe(2);
    expect(mon.nudges[0]?.error).toContain("permission denied");
  });

  it("marks an unreachable member down and counts the failed samples", async () => {
    const clock = T0;
    const sampler = new ScriptedSampler(() => ({ status: "unreachable", error: new PgfedError("wal.member_unreachable", "connect ECONNREFUSED"), sinceMs: T0, consecutiveFailures: 1, lastSample: undefined }));
    const metrics = createMetrics();
    const mon = new FederationMonitor({ federation: "orders", budgetMs: 6_000, members: [{ sampler }], metrics, now: () => clock });
    await mon.tick();
    const e = await mon.tick();
    expect(e.sentence).toMatch(/^orders: no exposure figure yet/);
    const text = await metrics.registry.metrics();
    expect(text).toContain('pgfed_member_up{federation="orders",member="pg-eu",region="eu-west"} 0');
    expect(text).toContain('pgfed_sample_errors_total{federation="orders",member="pg-eu",region="eu-west"} 2');
  });

  it("runs its loop on the interval and stops cleanly", async () => {
    const sampler = new ScriptedSampler((i) => ({ status: "up", sample: primary(Date.now() + i, 2n * SEG) }));
    const mon = new FederationMonitor({ federation: "orders", budgetMs: 6_000, members: [{ sampler }], sampleIntervalMs: 20 });
    mon.start();
    await new Promise((r) => setTimeout(r, 130));
    await mon.stop();
    expect(mon.last?.primary).toBe("pg-eu");
    const rounds = sampler.rounds;
    expect(rounds).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 60));
    expect(sampler.rounds).toBe(rounds);
  });
});
