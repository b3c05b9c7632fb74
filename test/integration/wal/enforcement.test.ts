/**
 * Enforcement on real Postgres: an idle primary is no alarm, a broken archive is seen within two
 * samples and recovers when fixed, and the WAL switch nudge keeps an archive-only replica's
 * exposure under the budget even with archive_timeout at 5 minutes.
 */
import { chmod } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../src/lab/proc.js";
import { createMetrics } from "../../../src/metrics.js";
import { FederationMonitor, type FederationMonitorOptions } from "../../../src/wal/federation-monitor.js";
import type { Evaluation } from "../../../src/wal/monitor.js";
import { monitorSampler, startPair, startWriter, stopAll, type Pair } from "./fixtures.js";

const INTERVAL_MS = 1_000;

afterAll(stopAll);

function monitorFor(pair: Pair, over: Partial<FederationMonitorOptions> = {}): { monitor: FederationMonitor; evaluations: Evaluation[] } {
  const evaluations: Evaluation[] = [];
  const monitor = new FederationMonitor({
    federation: "orders",
    budgetMs: 30_000,
    sampleIntervalMs: INTERVAL_MS,
    members: [{ sampler: monitorSampler(pair.primary, "pg-eu", "eu-west") }, { sampler: monitorSampler(pair.replica, "pg-us", "us-east"), readsArchive: true }],
    onEvaluation: (e) => evaluations.push(e),
    ...over,
  });
  return { monitor, evaluations };
}

const seconds = (ms: number | undefined) => (ms === undefined ? "?" : (ms / 1000).toFixed(1));

describe("idle primary", () => {
  it("reports zero exposure and raises nothing while idle for longer than archive_timeout", async () => {
    // Autovacuum off: its ANALYZE of the fresh table would be a real (if harmless) write in the window.
    const pair = await startPair({ archiveTimeout: "2s", streaming: false, parameters: { autovacuum: "off" } });
    const { monitor, evaluations } = monitorFor(pair, { budgetMs: 6_000 });
    try {
      const w = startWriter(pair.primary, 10);
      await sleep(1_000);
      await w.stop();
      monitor.start();
      // Settle: the last writes are shipped by archive_timeout.
      await waitFor("the last writes to be archived", () => evaluations.slice(-2).length === 2 && evaluations.slice(-2).every((e) => e.worstCase?.basedOn.exposureBytes === 0n), 15_000, 100);
      const from = evaluations.length;
      await sleep(6_000);
      const idle = evaluations.slice(from);
      const lsns = new Set(idle.map((e) => e.estimate?.primaryLsn));
      console.log(
        `idle: ${idle.length} samples over 6 s (archive_timeout 2 s): exposure ${idle.map((e) => `${e.estimate?.exposureBytes}B/${e.estimate?.exposureMs}ms`).join(" ")}; ` +
          `primary positions seen ${[...lsns].length}; signals ${idle.flatMap((e) => e.signals).length}; nudges ${monitor.nudges.length}`,
      );
      expect(idle.length).toBeGreaterThanOrEqual(5);
      for (const e of idle) {
        expect(e.estimate?.exposureBytes).toBe(0n);
        expect(e.estimate?.exposureMs).toBe(0);
        expect(e.worstCase?.exposureMs).toBeLessThan(100);
        expect(e.signals).toEqual([]);
        expect(e.budget.level).toBe("ok");
        expect(e.members.every((m) => !m.archive?.failing && !m.replica?.stalled)).toBe(true);
      }
      expect(monitor.nudges).toEqual([]);
    } finally {
      await monitor.close();
      await pair.destroy();
    }
  });
});

describe("archiving broken", () => {
  it("signals failing within two samples, shows exposure growing, and recovers when fixed", async () => {
    const pair = await startPair({ archiveTimeout: "2s", streaming: false });
    const metrics = createMetrics();
    const { monitor, evaluations } = monitorFor(pair, { metrics, nudge: false });
    const writer = startWriter(pair.primary, 20);
    try {
      monitor.start();
      await waitFor("a first healthy estimate", () => evaluations.some((e) => e.estimate !== undefined && e.estimate.archiveEndLsn !== undefined), 15_000, 100);

      await chmod(pair.primary.archiveDir, 0o555);
      const brokeAt = Date.now();
      // The first failure as Postgres records it, watched closely so the delay is measured precisely.
      const firstFailureMs = await waitFor(
        "the first archive_command failure",
        async () => {
          const rows = await pair.primary.query<{ failed_count: string; t: number | null }>("SELECT failed_count, extract(epoch FROM last_failed_time) * 1000 AS t FROM pg_stat_archiver");
          const r = rows[0];
          return r && Number(r.failed_count) > 0 && r.t !== null ? Number(r.t) : undefined;
        },
        15_000,
        25,
      );
      const signalled = await waitFor("the archive_failing signal", () => evaluations.find((e) => e.atMs > brokeAt && e.signals.some((s) => s.kind === "archive_failing")), 10_000, 50);
      const samplesAfterFailure = evaluations.filter((e) => e.atMs > firstFailureMs && e.atMs <= signalled.atMs).length;
      const reason = signalled.signals.find((s) => s.kind === "archive_failing")?.reason;
      console.log(`broken: first failure ${seconds(firstFailureMs - brokeAt)} s after chmod; signalled at sample ${samplesAfterFailure} after it (${seconds(signalled.atMs - firstFailureMs)} s): ${reason}`);
      expect(samplesAfterFailure).toBeLessThanOrEqual(2);

      await sleep(5_000);
      const during = evaluations.filter((e) => e.atMs >= signalled.atMs);
      const exposures = during.map((e) => e.estimate?.exposureMs ?? 0);
      console.log(`broken: exposure while failing ${exposures.map((ms) => seconds(ms)).join(" → ")} s`);
      expect(exposures.at(-1)).toBeGreaterThan((exposures[0] ?? 0) + 3_000);
      expect(during.every((e) => e.signals.some((s) => s.kind === "archive_failing"))).toBe(true);
      const text = await metrics.registry.metrics();
      expect(text).toMatch(/pgfed_archive_failing\{federation="orders",member="pg-eu",region="eu-west"\} 1/);
      expect(text).toMatch(/pgfed_archive_failures_total\{federation="orders",member="pg-eu",region="eu-west"\} [1-9]/);

      await chmod(pair.primary.archiveDir, 0o755);
      const fixedAt = Date.now();
      const recovered = await waitFor(
        "archiving to recover",
        () => evaluations.find((e) => e.atMs > fixedAt && !e.signals.some((s) => s.kind === "archive_failing") && (e.estimate?.exposureMs ?? Infinity) < 2_000 + 2 * INTERVAL_MS),
        30_000,
        100,
      );
      console.log(`fixed: recovered ${seconds(recovered.atMs - fixedAt)} s after the fix: ${recovered.sentence}`);
      expect(await metrics.registry.metrics()).toMatch(/pgfed_archive_failing\{federation="orders",member="pg-eu",region="eu-west"\} 0/);
    } finally {
      await chmod(pair.primary.archiveDir, 0o755).catch(() => undefined);
      await writer.stop();
      await monitor.close();
      await pair.destroy();
    }
  });
});

describe("WAL switch nudge", () => {
  it("keeps an archive-only replica's exposure under the budget with archive_timeout at 5 minutes", async () => {
    const budgetMs = 6_000;
    const pair = await startPair({ archiveTimeout: "5min", streaming: false });
    const writer = startWriter(pair.primary, 20);
    const metrics = createMetrics();
    const samplers = [monitorSampler(pair.primary, "pg-eu", "eu-west"), monitorSampler(pair.replica, "pg-us", "us-east")];
    const members = [{ sampler: samplers[0] as (typeof samplers)[number] }, { sampler: samplers[1] as (typeof samplers)[number], readsArchive: true }];
    const before: Evaluation[] = [];
    const after: Evaluation[] = [];
    let phase = before;
    const monitor = new FederationMonitor({ federation: "orders", budgetMs, sampleIntervalMs: INTERVAL_MS, members, metrics, nudge: false, onEvaluation: (e) => phase.push(e) });
    try {
      // A clean start: whatever initdb/basebackup left un-archived is shipped first.
      await samplers[0]?.switchWal();
      monitor.start();
      await sleep(9_000);
      phase = after;
      monitor.evaluator.setNudging(true);
      await sleep(14_000);
      await monitor.stop();

      const maxOf = (es: Evaluation[]) => Math.max(...es.map((e) => e.estimate?.exposureMs ?? 0));
      const firstNudge = monitor.nudges[0];
      if (!firstNudge) throw new Error("no nudge was sent");
      // Once the backlog from the first phase is shipped, the nudge holds exposure under the budget.
      const steady = after.filter((e) => e.atMs > firstNudge.atMs + INTERVAL_MS);
      const gaps = monitor.nudges.slice(1).map((n, i) => n.atMs - (monitor.nudges[i]?.atMs ?? 0));
      console.log(
        `nudge: budget ${seconds(budgetMs)} s, threshold ${seconds(monitor.evaluator.config.walSwitchAfterMs)} s, archive_timeout 5 min\n` +
          `  without nudge: exposure max ${seconds(maxOf(before))} s (${before.map((e) => seconds(e.estimate?.exposureMs)).join(" ")})\n` +
          `  with nudge:    exposure max ${seconds(maxOf(steady))} s after the first nudge (${after.map((e) => seconds(e.estimate?.exposureMs)).join(" ")}); ` +
          `${monitor.nudges.length} nudges, ${gaps.map((g) => seconds(g)).join(", ")} s apart`,
      );
      expect(maxOf(before)).toBeGreaterThan(budgetMs);
      expect(steady.length).toBeGreaterThanOrEqual(8);
      expect(maxOf(steady)).toBeLessThanOrEqual(budgetMs);
      expect(steady.every((e) => e.budget.level !== "exceeded")).toBe(true);
      expect(gaps.every((g) => g >= monitor.evaluator.config.walSwitchAfterMs)).toBe(true);
      expect(monitor.nudges.every((n) => n.error === undefined)).toBe(true);
      expect(await metrics.registry.metrics()).toContain(`pgfed_wal_switch_nudges_total{federation="orders",member="pg-eu",region="eu-west"} ${monitor.nudges.length}`);
    } finally {
      await writer.stop();
      await monitor.close();
      await pair.destroy();
    }
  });
});
