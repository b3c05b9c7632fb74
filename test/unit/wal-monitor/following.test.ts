/**
 * The evaluator's timeline rule of "following" (src/wal/monitor.ts): a replica sampled on another
 * timeline than the primary's stops counting its own positions at once, is "not following" after
 * FOLLOW_GRACE_MS, and its lag and loss grow with the primary's WAL instead of freezing.
 */
import { describe, expect, it } from "vitest";
import { FOLLOW_GRACE_MS, FederationEvaluator, type Evaluation } from "../../../src/wal/monitor.js";
import type { Lsn } from "../../../src/wal/lsn.js";
import type { MemberState, PrimarySample } from "../../../src/wal/sampler.js";
import { walFileName } from "../../../src/wal/walfile.js";
import { SEG, T0, archiver, primary, replica, up } from "./fixtures.js";

/** pg-ap, promoted at T0 on timeline 2: writes one segment a second, its archive one segment behind. */
function apAt(i: number, over: Partial<PrimarySample> = {}): PrimarySample {
  const lsn = (10n + BigInt(i)) * SEG + SEG / 2n;
  const archived = walFileName(2, (10n + BigInt(i)) * SEG - 1n);
  return primary(T0 + i * 1_000, lsn, { member: "pg-ap", region: "ap-south", timeline: 2, archiver: archiver({ lastArchivedWal: archived, lastArchivedAtMs: T0 + i * 1_000 - 500 }), ...over });
}

function stuck(name: string, atMs: number, timeline: number, pos: Lsn): MemberState {
  return up(replica(atMs, { member: name, timeline, receiveLsn: pos, replayLsn: pos }));
}

function round(ev: FederationEvaluator, nowMs: number, members: Record<string, MemberState>): Evaluation {
  return ev.evaluate({ nowMs, members: Object.entries(members).map(([name, state]) => ({ spec: { name, applicationName: name }, state })) });
}

const member = (e: Evaluation, name: string) => e.members.find((m) => m.name === name);

describe("a replica that does not follow the primary's timeline", () => {
  it("has a lag that grows with the primary's WAL, not the archive's frozen 1.0 s", () => {
    // The lab after switchover pg-eu → pg-ap with pg-eu and pg-us following each other on timeline 1.
    const ev = new FederationEvaluator({ federation: "demo", budgetMs: 30_000, designatedPrimary: "pg-ap" });
    const frozen = 9n * SEG + 100n;
    const seen: Evaluation[] = [];
    for (let i = 0; i <= 30; i++) {
      const at = T0 + i * 1_000;
      seen.push(
        round(ev, at + 5, {
          "pg-ap": up(apAt(i)),
          "pg-eu": stuck("pg-eu", at, 1, frozen),
          "pg-us": stuck("pg-us", at, 1, frozen),
          // A replica that does follow, restoring from pg-ap's archive only: the 1.0 s both showed before.
          "pg-ok": up(replica(at, { member: "pg-ok", timeline: 2 })),
        }),
      );
    }
    const at = (s: number) => seen[s] as Evaluation;
    expect(member(at(30), "pg-ok")?.lag).toEqual({ bytes: SEG / 2n, ms: 1_000, via: "archive" });
    for (const name of ["pg-eu", "pg-us"]) {
      const lagAt = (s: number) => member(at(s), name)?.lag;
      // Positions on timeline 1 are not on pg-ap's history and it reads no archive of pg-ap's: nothing is recoverable.
      expect(lagAt(5)).toMatchObject({ via: "none", bytes: 15n * SEG + SEG / 2n, ms: 5_000 });
      expect(lagAt(30)).toMatchObject({ via: "none", bytes: 40n * SEG + SEG / 2n, ms: 30_000 });
      for (let s = 1; s <= 30; s++) {
        expect(lagAt(s)?.ms, `${name} at ${s} s`).toBeGreaterThan(lagAt(s - 1)?.ms ?? Infinity);
        expect(lagAt(s)?.bytes).toBeGreaterThan(lagAt(s - 1)?.bytes ?? 0n);
      }
      expect(member(at(9), name)).toMatchObject({ following: true, timeline: 1, offTimelineSinceMs: T0 });
      expect(member(at(10), name)).toMatchObject({ following: false, notFollowing: "on timeline 1, primary pg-ap on timeline 2", lastOnTimelineAtMs: undefined });
    }
    expect(at(10).primaryTimeline).toBe(2);
    expect(at(9).signals.filter((s) => s.kind === "replica_not_following")).toEqual([]);
    expect(at(10).signals.filter((s) => s.kind === "replica_not_following").map((s) => s.reason)).toEqual([
      "pg-eu is not following: on timeline 1, primary pg-ap on timeline 2",
      "pg-us is not following: on timeline 1, primary pg-ap on timeline 2",
    ]);
    expect(at(10).sentence).toContain("pg-eu is not following: on timeline 1, primary pg-ap on timeline 2");
    // The safe LSN is the archive's: no position on timeline 1 was credited.
    expect(at(30).estimate?.safeSource).toEqual({ kind: "archive" });
    expect(at(30).bestTarget?.name).toBe("pg-ok");
  });

  it("keeps what it held on the primary's timeline as its recoverable position, and loses more every second", () => {
    const ev = new FederationEvaluator({ federation: "demo", budgetMs: 30_000, designatedPrimary: "pg-ap" });
    const held = 12n * SEG;
    let last: Evaluation | undefined;
    const lags: { bytes: bigint; ms: number }[] = [];
    for (let i = 0; i <= 25; i++) {
      const at = T0 + i * 1_000;
      // On pg-ap's timeline until 3 s (streaming, caught up to 12/0), then found on a timeline 3 of its own.
      const us = i <= 3 ? stuck("pg-us", at, 2, held) : stuck("pg-us", at, 3, 40n * SEG);
      last = round(ev, at + 5, { "pg-ap": up(apAt(i)), "pg-us": us });
      if (i >= 4) lags.push(member(last, "pg-us")?.lag ?? { bytes: -1n, ms: -1 });
    }
    const us = last ? member(last, "pg-us") : undefined;
    expect(us).toMatchObject({ following: false, notFollowing: "on timeline 3, primary pg-ap on timeline 2", lastOnTimelineAtMs: T0 + 3_000, offTimelineSinceMs: T0 + 4_000 });
    // Conservatively from the last sample still below 12/0 (at 1 s), as for any position.
    expect(us?.lag).toEqual({ bytes: 35n * SEG + SEG / 2n - held, ms: 24_000, via: "replayed" });
    for (let k = 1; k < lags.length; k++) expect(lags[k]?.ms).toBe((lags[k - 1]?.ms ?? 0) + 1_000);
    // Its 40/0 on timeline 3 was never taken for pg-ap's WAL.
    expect(last?.estimate?.replicas.find((r) => r.name === "pg-us")?.recoverableLsn).toBe(held);
  });

  it("is still following while it switches timelines within the grace, with no signal", () => {
    const ev = new FederationEvaluator({ federation: "demo", budgetMs: 30_000, designatedPrimary: "pg-ap" });
    const switchedAt = Math.floor(FOLLOW_GRACE_MS / 1_000) - 2;
    for (let i = 0; i <= 20; i++) {
      const at = T0 + i * 1_000;
      const pos = (10n + BigInt(i)) * SEG;
      const e = round(ev, at + 5, { "pg-ap": up(apAt(i)), "pg-us": stuck("pg-us", at, i < switchedAt ? 1 : 2, pos) });
      const us = member(e, "pg-us");
      expect(us?.following, `at ${i} s`).toBe(true);
      expect(e.signals.filter((s) => s.kind === "replica_not_following")).toEqual([]);
      if (i < switchedAt) expect(us?.lag?.via).toBe("none");
      else expect(us).toMatchObject({ offTimelineSinceMs: undefined, lastOnTimelineAtMs: at, lag: { bytes: SEG / 2n, ms: 1_000, via: "received" } });
    }
  });

  it("counts as following when the primary lists it as a streaming standby, whatever its own sample says", () => {
    const ev = new FederationEvaluator({ federation: "demo", budgetMs: 30_000, designatedPrimary: "pg-ap" });
    let e: Evaluation | undefined;
    for (let i = 0; i <= 15; i++) {
      const at = T0 + i * 1_000;
      const flush = (10n + BigInt(i)) * SEG;
      const standby = { applicationName: "pg-us", state: "streaming", clientAddr: undefined, sentLsn: flush, writeLsn: flush, flushLsn: flush, replayLsn: flush, replyAtMs: at };
      e = round(ev, at + 5, { "pg-ap": up(apAt(i, { standbys: [standby] })), "pg-us": stuck("pg-us", at, 1, 9n * SEG) });
    }
    expect(e ? member(e, "pg-us") : undefined).toMatchObject({ following: true, notFollowing: undefined, lag: { bytes: SEG / 2n, ms: 1_000, via: "received" } });
  });

  it("goes last as the best failover target only when no replica follows", () => {
    const ev = new FederationEvaluator({ federation: "demo", budgetMs: 30_000, designatedPrimary: "pg-ap" });
    let e: Evaluation | undefined;
    for (let i = 0; i <= 12; i++) {
      const at = T0 + i * 1_000;
      e = round(ev, at + 5, { "pg-ap": up(apAt(i)), "pg-eu": stuck("pg-eu", at, 1, 9n * SEG) });
    }
    expect(e ? member(e, "pg-eu")?.following : undefined).toBe(false);
    expect(e?.bestTarget?.name).toBe("pg-eu");
    expect(e?.bestTarget?.recoverableVia).toBe("none");
  });
});
