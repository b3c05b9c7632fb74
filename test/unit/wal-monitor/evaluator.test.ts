import { describe, expect, it } from "vitest";
import { FederationEvaluator, type EvaluatorConfig } from "../../../src/wal/monitor.js";
import type { MemberState } from "../../../src/wal/sampler.js";
import { FakePrimary, SEG, T0, archivedBefore, archiver, down, primary, replica, up } from "./fixtures.js";

function evaluator(over: Partial<EvaluatorConfig> = {}): FederationEvaluator {
  return new FederationEvaluator({ federation: "orders", budgetMs: 30_000, ...over });
}

function round(ev: FederationEvaluator, nowMs: number, p: FakePrimary, r: MemberState | undefined, rOver: { readsArchive?: boolean } = {}) {
  const members = [{ spec: { name: "pg-eu", region: "eu-west" }, state: p.state }];
  if (r) members.push({ spec: { name: "pg-us", region: "us-east", ...rOver }, state: r });
  return ev.evaluate({ nowMs, members });
}

describe("exposure", () => {
  it("counts WAL past the archive's end, from the first sample that wrote past it", () => {
    const ev = evaluator();
    const p = new FakePrimary();
    const archived = { lastArchivedWal: archivedBefore(2n * SEG), lastArchivedAtMs: T0 };
    p.push(primary(T0, 2n * SEG, { archiver: archiver(archived) }));
    let e = round(ev, T0 + 10, p, undefined);
    expect(e.estimate?.exposureBytes).toBe(0n);
    expect(e.estimate?.exposureMs).toBe(0);
    p.push(primary(T0 + 1_000, 2n * SEG + 5_000n, { archiver: archiver(archived) }));
    round(ev, T0 + 1_000, p, undefined);
    p.push(primary(T0 + 2_000, 2n * SEG + 9_000n, { archiver: archiver(archived) }));
    e = round(ev, T0 + 2_010, p, undefined);
    expect(e.estimate?.exposureBytes).toBe(9_000n);
    // Conservative: the last sample still at the safe LSN was at T0.
    expect(e.estimate?.exposureMs).toBe(2_000);
    // The estimate is as of the reading; the worst case adds the 10 ms since.
    expect(e.worstCase?.exposureMs).toBe(2_010);
    expect(e.sentence).toContain("orders (primary pg-eu)");
  });

  it("picks the replica that loses least and reports its lag", () => {
    const ev = evaluator();
    const p = new FakePrimary();
    p.push(primary(T0, 2n * SEG));
    round(ev, T0, p, undefined);
    p.push(primary(T0 + 1_000, 2n * SEG + 8_000n));
    const r = up(replica(T0 + 1_000, { receiveLsn: 2n * SEG + 8_000n, replayLsn: 2n * SEG + 7_000n, walReceiver: { status: "streaming", flushedLsn: undefined, latestEndLsn: undefined, receivedTimeline: 1, senderHost: "x", senderPort: 1, lastMsgReceiptAtMs: undefined } }));
    const e = round(ev, T0 + 1_005, p, r);
    expect(e.estimate?.exposureBytes).toBe(0n);
    expect(e.bestTarget).toMatchObject({ name: "pg-us", lossBytes: 0n, recoverableVia: "received" });
    expect(e.members.find((m) => m.name === "pg-us")?.lag).toEqual({ bytes: 0n, ms: 0, via: "received" });
  });

  it("worst case grows with the silence once the primary is unreachable, and the budget is exceeded", () => {
    const ev = evaluator({ budgetMs: 5_000 });
    const p = new FakePrimary();
    p.push(primary(T0, 2n * SEG, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG) }) }));
    round(ev, T0, p, undefined);
    p.push(primary(T0 + 1_000, 2n * SEG + 100n, { archiver: archiver({ lastArchivedWal: archivedBefore(2n * SEG) }) }));
    const first = round(ev, T0 + 1_000, p, undefined);
    expect(first.worstCase?.exposureMs).toBe(1_000);
    const last = p.state.status === "up" ? p.state.sample : undefined;
    p.state = down(T0 + 2_000, last);
    const later = round(ev, T0 + 7_000, p, undefined);
    expect(later.estimate).toBeUndefined();
    expect(later.worstCase?.exposureMs).toBe(1_000 + 6_000);
    expect(later.budget.level).toBe("exceeded");
    expect(later.signals.map((s) => s.kind)).toEqual(expect.arrayContaining(["member_unreachable", "no_primary", "budget_exceeded"]));
    expect(ev.worstCaseAt(T0 + 10_000)?.exposureMs).toBe(10_000);
  });

  it("reports an idle primary whose last segment is archived as zero exposure, with no signal", () => {
    const ev = evaluator({ budgetMs: 3_000 });
    const p = new FakePrimary();
    const a = archiver({ lastArchivedWal: archivedBefore(3n * SEG), lastArchivedAtMs: T0 - 600_000 });
    for (let i = 0; i < 60; i++) {
      p.push(primary(T0 + i * 1_000, 3n * SEG, { archiver: a }));
      const e = round(ev, T0 + i * 1_000 + 5, p, undefined);
      expect(e.worstCase?.exposureMs).toBeLessThan(10);
      expect(e.estimate?.exposureBytes).toBe(0n);
      expect(e.signals).toEqual([]);
      expect(e.nudge).toBeUndefined();
    }
  });

  it("does not count WAL that holds no commit (the running-xacts record an idle primary writes after a switch)", () => {
    const ev = evaluator({ budgetMs: 3_000 });
    const p = new FakePrimary();
    const a = archiver({ lastArchivedWal: archivedBefore(3n * SEG) });
    p.push(primary(T0, 3n * SEG, { archiver: a, nextXid: 750n }));
    round(ev, T0, p, undefined);
    for (let i = 1; i <= 20; i++) {
      // 0x60 bytes written by the bgwriter, no xid assigned or held.
      p.push(primary(T0 + i * 1_000, 3n * SEG + 0x60n, { archiver: a, nextXid: 750n }));
      const e = round(ev, T0 + i * 1_000, p, undefined);
      expect(e.estimate?.exposureBytes).toBe(0n);
      expect(e.signals).toEqual([]);
      expect(e.nudge).toBeUndefined();
    }
    // A real commit after that counts from the last quiet sample on, bytes up to the new position.
    p.push(primary(T0 + 21_000, 3n * SEG + 0x200n, { archiver: a, nextXid: 751n }));
    const e = round(ev, T0 + 21_000, p, undefined);
    expect(e.estimate?.exposureBytes).toBe(0x200n);
    expect(e.estimate?.exposureMs).toBe(1_000);
  });

  it("keeps counting while a transaction that holds an xid is open (its commit may come any time)", () => {
    const ev = evaluator();
    const p = new FakePrimary();
    const a = archiver({ lastArchivedWal: archivedBefore(3n * SEG) });
    p.push(primary(T0, 3n * SEG, { archiver: a, nextXid: 750n, runningXids: 1 }));
    round(ev, T0, p, undefined);
    p.push(primary(T0 + 1_000, 3n * SEG + 0x60n, { archiver: a, nextXid: 750n, runningXids: 1 }));
    expect(round(ev, T0 + 1_000, p, undefined).estimate?.exposureBytes).toBe(0x60n);
  });
});

describe("archive failing", () => {
  it("flags archiving as failing when the last failure is newer than the last success, with the numbers", () => {
    const ev = evaluator();
    const p = new FakePrimary();
    p.push(primary(T0, 2n * SEG, { archiver: archiver({ failedCount: 0, lastArchivedWal: archivedBefore(2n * SEG), lastArchivedAtMs: T0 - 1_000 }) }));
    expect(round(ev, T0, p, undefined).signals).toEqual([]);
    p.push(
      primary(T0 + 1_000, 3n * SEG, {
        archiver: archiver({ failedCount: 3, lastFailedWal: archivedBefore(3n * SEG), lastFailedAtMs: T0 + 900, lastArchivedWal: archivedBefore(2n * SEG), lastArchivedAtMs: T0 - 1_000, readySegments: 1 }),
      }),
    );
    const e = round(ev, T0 + 1_000, p, undefined);
    const sig = e.signals.find((s) => s.kind === "archive_failing");
    expect(sig?.reason).toMatch(/archive_command failing on pg-eu: 3 failures \(3 new\), last failed 000000010000000000000002 0\.1 s ago, last success 000000010000000000000001 2\.0 s ago, 1 segments waiting/);
    expect(e.members[0]?.archive?.newFailures).toBe(3);
  });

  it("clears when a success is newer than the last failure, and counts no failures for a repeated sample", () => {
    const ev = evaluator();
    const p = new FakePrimary();
    const failing = archiver({ failedCount: 2, lastFailedAtMs: T0, lastArchivedAtMs: T0 - 5_000, lastArchivedWal: archivedBefore(2n * SEG) });
    p.push(primary(T0, 3n * SEG, { archiver: failing }));
    expect(round(ev, T0, p, undefined).members[0]?.archive?.failing).toBe(true);
    // Same sample again (no fresh reading): no new failures counted twice.
    expect(round(ev, T0 + 500, p, undefined).members[0]?.archive?.newFailures).toBe(0);
    p.push(primary(T0 + 1_000, 3n * SEG, { archiver: { ...failing, lastArchivedAtMs: T0 + 800, lastArchivedWal: archivedBefore(3n * SEG) } }));
    const e = round(ev, T0 + 1_000, p, undefined);
    expect(e.members[0]?.archive?.failing).toBe(false);
    expect(e.signals).toEqual([]);
  });

  it("treats a lower failed_count as a statistics reset, not as new failures", () => {
    const ev = evaluator();
    const p = new FakePrimary();
    p.push(primary(T0, 2n * SEG, { archiver: archiver({ failedCount: 10, lastFailedAtMs: T0 - 10_000, lastArchivedAtMs: T0 - 1_000 }) }));
    round(ev, T0, p, undefined);
    p.push(primary(T0 + 1_000, 2n * SEG, { archiver: archiver({ failedCount: 0 }) }));
    expect(round(ev, T0 + 1_000, p, undefined).members[0]?.archive?.newFailures).toBe(0);
  });
});

describe("stalled replica", () => {
  const streaming = { status: "streaming", flushedLsn: undefined, latestEndLsn: undefined, receivedTimeline: 1, senderHost: "pg-eu", senderPort: 5432, lastMsgReceiptAtMs: undefined };

  it("flags a streaming replica that has not moved for N samples while the primary moved", () => {
    const ev = evaluator({ stallAfterSamples: 3 });
    const p = new FakePrimary();
    const stuck = 2n * SEG + 100n;
    const stalled: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      p.push(primary(T0 + i * 1_000, 2n * SEG + 100n + BigInt(i) * 1_000n));
      const e = round(ev, T0 + i * 1_000, p, up(replica(T0 + i * 1_000, { receiveLsn: stuck, replayLsn: stuck, walReceiver: streaming })));
      stalled.push(e.members[1]?.replica?.stalled ?? false);
      if (i === 4) expect(e.signals.find((s) => s.kind === "replica_stalled")?.reason).toMatch(/pg-us has not moved from 0\/2000064 for 4 samples while WAL up to 0\/2001004 is available to it \(streaming\)/);
    }
    // Sample 0 sets the position; samples 1..3 without progress reach N = 3 at i = 3.
    expect(stalled).toEqual([false, false, false, true, true]);
    // It moves again: cleared at once.
    p.push(primary(T0 + 5_000, 2n * SEG + 9_000n));
    const e = round(ev, T0 + 5_000, p, up(replica(T0 + 5_000, { receiveLsn: 2n * SEG + 9_000n, walReceiver: streaming })));
    expect(e.members[1]?.replica?.stalled).toBe(false);
  });

  it("never flags a replica that is level with an idle primary", () => {
    const ev = evaluator({ stallAfterSamples: 2 });
    const p = new FakePrimary();
    for (let i = 0; i < 10; i++) {
      p.push(primary(T0 + i * 1_000, 2n * SEG));
      const e = round(ev, T0 + i * 1_000, p, up(replica(T0 + i * 1_000, { receiveLsn: 2n * SEG, replayLsn: 2n * SEG, walReceiver: streaming })));
      expect(e.members[1]?.replica?.stalled).toBe(false);
    }
  });

  it("judges an archive-only replica against the archive's end, not the primary's position", () => {
    const ev = evaluator({ stallAfterSamples: 3 });
    const p = new FakePrimary();
    const a = archiver({ lastArchivedWal: archivedBefore(2n * SEG) });
    // The primary writes into a segment not yet archived: nothing is available to the replica yet.
    for (let i = 0; i < 6; i++) {
      p.push(primary(T0 + i * 1_000, 2n * SEG + BigInt(i) * 1_000n, { archiver: a }));
      const e = round(ev, T0 + i * 1_000, p, up(replica(T0 + i * 1_000, { replayLsn: 2n * SEG })));
      expect(e.members[1]?.replica?.stalled).toBe(false);
    }
    // The next segment is archived but the replica does not replay it.
    const b = archiver({ lastArchivedWal: archivedBefore(3n * SEG) });
    const flags: boolean[] = [];
    for (let i = 6; i < 10; i++) {
      p.push(primary(T0 + i * 1_000, 3n * SEG + BigInt(i), { archiver: b }));
      flags.push(round(ev, T0 + i * 1_000, p, up(replica(T0 + i * 1_000, { replayLsn: 2n * SEG }))).members[1]?.replica?.stalled ?? false);
    }
    expect(flags).toEqual([false, false, true, true]);
  });
});

describe("primary choice", () => {
  it("prefers the newest timeline and reports several primaries", () => {
    const ev = evaluator();
    const old = new FakePrimary();
    old.push(primary(T0, 5n * SEG));
    const promoted = new FakePrimary();
    promoted.push(primary(T0, 4n * SEG, { member: "pg-us", timeline: 2 }));
    const e = ev.evaluate({
      nowMs: T0,
      members: [
        { spec: { name: "pg-eu" }, state: old.state },
        { spec: { name: "pg-us" }, state: promoted.state },
      ],
    });
    expect(e.primary).toBe("pg-us");
    expect(e.signals.find((s) => s.kind === "several_primaries")?.reason).toBe("pg-eu, pg-us all accept writes");
  });
});
