/**
 * How much one process spends sampling members, and how many members it can sample.
 *
 * Simulation: 500 members on 4 real Postgres 15 servers (2 primaries each with a streaming
 * replica, a writer committing on each primary so positions move). Each simulated member is its
 * own MemberSampler with its own pool (max 2) and connection, exactly as 500 real members would
 * be; members alternate between the servers, so each server carries 125 connections. The 500
 * members form 250 two-member federations (one primary, one replica) for the monitor phase.
 * The monitoring role's CONNECTION LIMIT 8 (deploy/) is lifted, as 125 members share one server.
 */
import { readFileSync } from "node:fs";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { descendants } from "../../src/lab/proc.js";
import type { PgInstance } from "../../src/lab/cnpg/instance.js";
import { createMetrics } from "../../src/metrics.js";
import { FederationMonitor } from "../../src/wal/federation-monitor.js";
import type { MemberSampler } from "../../src/wal/sampler.js";
import { monitorSampler, percentile, startPair, startWriter, stopAll, type Pair, type Writer } from "../integration/wal/fixtures.js";
import type { BenchCase, Figure } from "./run.js";

const MEMBERS = 500;
const SATURATE_MS = 10_000;
const CADENCE_MS = 10_000;
const CLOCK_TICKS_PER_S = 100;
const WARM_UP_CONCURRENCY = 25;

/** CPU seconds used so far by a server: the postmaster and every backend it forked. */
function serverCpuSeconds(inst: PgInstance): number {
  const root = inst.pid;
  if (root === undefined) return 0;
  let ticks = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks / CLOCK_TICKS_PER_S;
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function totals(samplers: MemberSampler[]): { samples: number; queries: number; errors: number } {
  return samplers.reduce((t, s) => ({ samples: t.samples + s.stats.samples, queries: t.queries + s.stats.queries, errors: t.errors + s.stats.errors }), { samples: 0, queries: 0, errors: 0 });
}

export const samplerBench: BenchCase = {
  name: "sampler",
  description: `WAL sampling cost per member and throughput of one process across ${MEMBERS} simulated members (4 real Postgres servers, one pool and connection per member)`,
  async run(log) {
    const pairs: Pair[] = [];
    const writers: Writer[] = [];
    const samplers: MemberSampler[] = [];
    const monitors: FederationMonitor[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const pair = await startPair({ archiveTimeout: "60s", streaming: true, parameters: { max_connections: "200" } });
        pairs.push(pair);
        // One server stands in for 125 members here; a real member sees 2 connections per agent.
        await pair.primary.query("ALTER ROLE pgfed_monitor CONNECTION LIMIT -1");
      }
      const servers = pairs.flatMap((p) => [p.primary, p.replica]);
      for (const p of pairs) writers.push(startWriter(p.primary, 20));
      for (let i = 0; i < MEMBERS; i++) {
        const server = servers[i % servers.length] as PgInstance;
        samplers.push(monitorSampler(server, `m${String(i).padStart(3, "0")}`, `region-${i % servers.length}`));
      }
      log(`started ${servers.length} servers (ports ${servers.map((s) => s.port).join(", ")}), ${MEMBERS} samplers`);

      // Warm-up: opens the 500 connections, so the figures below are the steady state. At most
      // WARM_UP_CONCURRENCY at a time: 500 connects at once put 125 forks and authentications on
      // each server while the writers run, on 2 cores, and some missed the sampler's 3 s connect
      // timeout ("Connection terminated due to connection timeout"). Real members have a server
      // each, so that storm is this simulation's, not an agent's. The measured phases below
      // still sample all 500 members concurrently.
      const warmStart = performance.now();
      for (let i = 0; i < samplers.length; i += WARM_UP_CONCURRENCY) await Promise.all(samplers.slice(i, i + WARM_UP_CONCURRENCY).map((s) => s.sample()));
      const warm = totals(samplers);
      if (warm.errors > 0) {
        const bad = samplers.map((s) => s.state).find((st) => st.status === "unreachable");
        throw new Error(`warm-up: ${warm.errors} samples failed, e.g. ${bad?.status === "unreachable" ? bad.error.message : "?"}`);
      }
      log(`connected and sampled all ${MEMBERS} members once in ${(performance.now() - warmStart).toFixed(0)} ms`);

      // Phase 1: rounds of all 500 members back to back, as fast as one process can go.
      const before = totals(samplers);
      const cpu0 = cpuSeconds();
      const srv0 = servers.reduce((t, s) => t + serverCpuSeconds(s), 0);
      const t0 = performance.now();
      const roundMs: number[] = [];
      while (performance.now() - t0 < SATURATE_MS) {
        const r0 = performance.now();
        await Promise.all(samplers.map((s) => s.sample()));
        roundMs.push(performance.now() - r0);
      }
      const elapsedS = (performance.now() - t0) / 1000;
      const cpuS = cpuSeconds() - cpu0;
      const srvS = servers.reduce((t, s) => t + serverCpuSeconds(s), 0) - srv0;
      const after = totals(samplers);
      const samples = after.samples - before.samples;
      const queries = after.queries - before.queries;
      log(`saturation: ${roundMs.length} rounds of ${MEMBERS} in ${elapsedS.toFixed(1)} s, ${after.errors - before.errors} errors`);

      // Phase 2: the real cadence: 250 federation monitors sampling every 1 s, with estimator, rules and metrics.
      const metrics = createMetrics();
      for (let f = 0; f < MEMBERS / 2; f++) {
        const primary = samplers[2 * f] as MemberSampler;
        const replica = samplers[2 * f + 1] as MemberSampler;
        monitors.push(new FederationMonitor({ federation: `fed-${f}`, budgetMs: 30_000, members: [{ sampler: primary }, { sampler: replica, applicationName: "pg-us" }], metrics }));
      }
      const loopDelay = monitorEventLoopDelay({ resolution: 10 });
      const c0 = totals(samplers);
      const cpu1 = cpuSeconds();
      const t1 = performance.now();
      loopDelay.enable();
      for (const m of monitors) m.start();
      await sleep(CADENCE_MS);
      await Promise.all(monitors.map((m) => m.stop()));
      loopDelay.disable();
      const cadenceS = (performance.now() - t1) / 1000;
      const cadenceCpuS = cpuSeconds() - cpu1;
      const c1 = totals(samplers);
      const cadenceSamples = c1.samples - c0.samples;
      const exposures = monitors.map((m) => m.last?.worstCase?.exposureMs ?? Number.NaN);
      const metricsText = await metrics.registry.metrics();
      log(`cadence: ${monitors.length} monitors, ${cadenceSamples} samples in ${cadenceS.toFixed(1)} s, ${c1.errors - c0.errors} errors; exposure p50 ${percentile(exposures, 50).toFixed(0)} ms; /metrics ${(metricsText.length / 1024).toFixed(0)} KiB`);

      const figures: Figure[] = [
        { name: "queries per sample", value: queries / samples, note: "one SELECT per sample; connections are pooled and stay open" },
        { name: "client CPU per sample", value: (cpuS / samples) * 1e6, unit: "µs", note: "pgfed process, user+system, saturation phase" },
        { name: "server CPU per sample", value: (srvS / samples) * 1e6, unit: "µs", note: "all 4 Postgres servers' processes, same phase" },
        { name: "max samples/s, one process", value: samples / elapsedS, unit: "samples/s", note: `all ${MEMBERS} members concurrently, back to back, client and servers sharing 2 cores` },
        { name: "round of 500 members p50 / p99", value: `${percentile(roundMs, 50).toFixed(0)} / ${percentile(roundMs, 99).toFixed(0)}`, unit: "ms" },
        { name: "members one process can sample at 1 s", value: Math.floor(samples / elapsedS), note: "= max samples/s at the default interval" },
        { name: "at 1 s cadence: samples/s achieved", value: cadenceSamples / cadenceS, unit: "samples/s", note: `${monitors.length} federation monitors, ${MEMBERS} members, estimator + rules + metrics` },
        { name: "at 1 s cadence: pgfed CPU", value: (cadenceCpuS / cadenceS) * 100, unit: "% of one core" },
        { name: "at 1 s cadence: CPU per member-sample", value: (cadenceCpuS / cadenceSamples) * 1e6, unit: "µs", note: "sampling + evaluation + metrics" },
        { name: "at 1 s cadence: event loop delay p99", value: loopDelay.percentile(99) / 1e6, unit: "ms" },
      ];
      return figures;
    } finally {
      await Promise.all(monitors.map((m) => m.stop()));
      await Promise.all(samplers.map((s) => s.close()));
      for (const w of writers) await w.stop();
      for (const p of pairs) await p.destroy();
      await stopAll();
    }
  },
};
