/**
 * What one coordinator carries, and what it adds to a switchover.
 *
 * Part 1 (scale): a NATS server (src/lab/nats.ts), one coordinator in this process over a
 * generated config of 1000 federations × 2 members (pg-eu in eu-west, pg-us in us-east), and
 * synthetic agents in a child process (this file run with `--agents`, stopped by PID) so the
 * coordinator's CPU is measured alone. Like real agents they publish, per federation, a lag
 * sample per member every 1 s (the primary's LSN advancing 16 KB/s, the replica 200 ms behind),
 * a heartbeat per region every 2 s and, with it, each member's observation (the real agent re-sends
 * observations with every heartbeat); and they hold every primary lease (`agent:eu-west/pg-eu`).
 * Loading: the coordinator reads every federation through one shared consumer (`deliverNew`) and
 * a fresh federation waits for both members' observations before it picks a primary; all
 * federations start at once (KV round trips bounded), so a first-ever start of all of them is
 * measured (up to FRESH_LIMIT_MS); any records it did not write are then written by
 * FederationRuntimes started in parallel, and the measured coordinator resumes all from KV.
 * Steady state is then measured for STEADY_MS.
 *
 * Part 2 (switchover overhead): the real lab (startE2E: NATS, Kubernetes and CNPG stand-ins,
 * real Postgres, agents + coordinator), 3 switchovers through the service; the audit records of
 * each split its time into waits on CNPG/Postgres and the controller's own part.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { Session } from "node:inspector/promises";
import { writeFile } from "node:fs/promises";
import { writeHeapSnapshot } from "node:v8";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import { pino } from "pino";
import {
  connectBus,
  leaseKeys,
  LeaseKeeper,
  makeMessage,
  openLeases,
  openStateStore,
  type Bus,
  type MessageHandler,
  type Observation,
} from "../../src/bus/index.js";
import { parseConfig, type Config } from "../../src/config.js";
import { createCoordinatorMetrics, federationRecordSchema, startCoordinator, type AuditEntry, type Coordinator } from "../../src/coordinator/index.js";
import { FederationRuntime } from "../../src/coordinator/runtime/runtime.js";
import { errorMessage } from "../../src/errors.js";
import { startNats, type NatsServer } from "../../src/lab/nats.js";
import { spawnManaged, type ManagedProcess } from "../../src/lab/proc.js";
import { silentLogger, type Logger } from "../../src/log.js";
import { createRegistry } from "../../src/metrics.js";
import { FED, finished, startE2E, waitUntil, type E2E } from "../e2e/fixture.js";
import type { BenchCase, Figure } from "./run.js";

/** Smaller runs while profiling: PGFED_BENCH_FEDERATIONS=200 (the figures to quote come from the default). */
const FEDERATIONS = envInt("PGFED_BENCH_FEDERATIONS", 1000);
/** Bound on the fresh start; past it, the rate is extrapolated from what loaded. */
const FRESH_LIMIT_MS = 30_000;
/** Bound on the measured coordinator's load; past it, the steady state is measured on what loaded. */
const LOAD_LIMIT_MS = 60_000;
const WARMUP_MS = 5_000;
const STEADY_MS = envInt("PGFED_BENCH_STEADY_MS", 60_000);
/** PGFED_BENCH_SWITCHOVER=0 skips part 2 (the lab) while iterating on part 1. */
const WITH_SWITCHOVER = process.env.PGFED_BENCH_SWITCHOVER !== "0";
const SWITCHOVERS = 3;
const CLOCK_TICKS_PER_S = 100;
const LEASE_TTL_MS = 10_000;
const HEALTHY = "Cluster in healthy state";

function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${JSON.stringify(v)}`);
  return n;
}

function fedName(i: number): string {
  return `fed-${String(i).padStart(4, "0")}`;
}

function benchConfig(url: string, n: number): Config {
  const member = (fed: string, name: string, region: string) => ({ name, region, namespace: "db", cluster: `${fed}-${name}`, postgres: { host: "127.0.0.1" } });
  return parseConfig({
    federations: Array.from({ length: n }, (_, i) => {
      const f = fedName(i);
      return { name: f, members: [member(f, "pg-eu", "eu-west"), member(f, "pg-us", "us-east")] };
    }),
    regions: [{ name: "eu-west" }, { name: "us-east" }],
    bus: { servers: [url] },
  });
}

/** CPU seconds (user + system) of a process by PID. */
function procCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return Number.NaN;
  }
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

// ---- the synthetic agents (child process) ---------------------------------------------------------

function observation(role: "primary" | "replica", cluster: string): Observation {
  return { role, phase: HEALTHY, fenced: false, switchInProgress: false, timelineID: 1, currentPrimary: `${cluster}-1`, reachable: true, ready: true, archiving: "ok", resourceVersion: "1" };
}

function lsnText(n: number): string {
  return `${Math.floor(n / 2 ** 32).toString(16).toUpperCase()}/${(n % 2 ** 32).toString(16).toUpperCase()}`;
}

async function agentsMain(url: string, n: number): Promise<void> {
  const log = silentLogger();
  const bus = await connectBus({ servers: url, name: "bench-agents", log, metrics: createRegistry(), maxPendingPublishes: 50_000 });
  const leases = await openLeases(bus);
  const keepers = Array.from({ length: n }, (_, i) => new LeaseKeeper({ leases, key: leaseKeys.primary(fedName(i)), holder: "agent:eu-west/pg-eu", ttlMs: LEASE_TTL_MS, log }));
  for (const k of keepers) k.start();
  const t0 = Date.now();
  const base = 0x3000000;
  let published = 0;
  let failed = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const publish = (p: Promise<unknown>): void => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    p.then(
      () => published++,
      () => failed++,
    ).finally(() => inFlight--);
  };
  const lagOf = (i: number, role: "primary" | "replica", now: number) => {
    const lsn = base + i * 0x100000 + Math.floor((now - t0) * 16);
    const lagged = base + i * 0x100000 + Math.floor(Math.max(0, now - 200 - t0) * 16);
    const archive = { lastArchivedWal: `00000001${(Math.floor(lsn / 2 ** 32) >>> 0).toString(16).padStart(8, "0").toUpperCase()}${Math.floor((lsn % 2 ** 32) / 0x1000000).toString(16).padStart(8, "0").toUpperCase()}`, lastArchivedAtMs: now - 1_000, archiveFailedCount: 0, segmentsReady: 0, timeline: 1, sampledAtMs: now };
    return role === "primary"
      ? { role, currentLsn: lsnText(lsn), inRecovery: false, nextXid: String(1000 + Math.floor((now - t0) / 10)), runningXids: 1, ...archive }
      : { role, receivedLsn: lsnText(lagged), replayedLsn: lsnText(lagged), inRecovery: true, ...archive };
  };
  const sendAll = (i: number, withHeartbeat: boolean): void => {
    const federation = fedName(i);
    const now = Date.now();
    for (const [member, role, region] of [
      ["pg-eu", "primary", "eu-west"],
      ["pg-us", "replica", "us-east"],
    ] as const) {
      const source = `agent:${region}`;
      publish(bus.publish(makeMessage("lag", { federation, member, epoch: 1, source, data: lagOf(i, role, now) })));
      if (withHeartbeat) {
        publish(bus.publish(makeMessage("observation", { federation, member, epoch: 1, source, data: observation(role, `${federation}-${member}`) })));
        publish(bus.publish(makeMessage("heartbeat", { federation, epoch: 1, source, data: { region, agentId: region, members: [member] } })));
      }
    }
  };
  // Start: every member's observation once (and its first lag sample and heartbeat).
  for (let i = 0; i < n; i++) sendAll(i, true);
  while (inFlight > 0) await sleep(20);
  process.stdout.write(`ready ${JSON.stringify({ published, failed })}\n`);
  // Then: a slice of the federations every 100 ms, so each gets a lag sample per second and a heartbeat (with observations) every 2 s.
  let tick = 0;
  const timer = setInterval(() => {
    const slot = tick % 10;
    const second = Math.floor(tick / 10);
    tick++;
    for (let i = slot; i < n; i += 10) sendAll(i, (second + i) % 2 === 0);
  }, 100);
  const stats = setInterval(() => process.stdout.write(`stats ${JSON.stringify({ published, failed, inFlight, maxInFlight, leasesHeld: keepers.filter((k) => k.isHolder()).length })}\n`), 5_000);
  const stop = async (): Promise<void> => {
    clearInterval(timer);
    clearInterval(stats);
    await Promise.race([Promise.all(keepers.map((k) => k.stop({ release: false }))), sleep(3_000)]);
    await Promise.race([bus.close(), sleep(2_000)]);
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop());
  process.once("SIGINT", () => void stop());
}

// ---- the bench process --------------------------------------------------------------------------

interface AgentsChild {
  proc: ManagedProcess;
  ready: Promise<void>;
  last: { published: number; failed: number; inFlight: number; maxInFlight: number; leasesHeld: number } | undefined;
}

function spawnAgents(url: string, n: number, logFile: string): AgentsChild {
  const proc = spawnManaged(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--agents", url, String(n)], { name: "bench-agents", cwd: process.cwd() });
  const out: AgentsChild = { proc, ready: Promise.resolve(), last: undefined };
  let buf = "";
  let stderr = "";
  out.ready = new Promise<void>((resolveReady, reject) => {
    proc.child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith("ready")) resolveReady();
        if (line.startsWith("stats ")) out.last = JSON.parse(line.slice(6)) as AgentsChild["last"];
      }
    });
    proc.child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4_000)));
    void proc.exited.then((x) => reject(new Error(`the agents process exited (${x.code ?? x.signal ?? "?"}) before it was ready: ${stderr} (log ${logFile})`)));
  });
  return out;
}

/** A Bus whose subscriptions count the messages they hand to the coordinator. */
function countingBus(bus: Bus, counter: { n: number }): Bus {
  return new Proxy(bus, {
    get(target, prop) {
      if (prop === "subscribe") {
        return (filter: string, handler: MessageHandler, opts?: Parameters<Bus["subscribe"]>[2]) =>
          target.subscribe(
            filter,
            (m, meta) => {
              counter.n++;
              return handler(m, meta);
            },
            opts,
          );
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A logger at warn that counts what it is given (suspects, warnings, errors) and keeps a few examples. */
function countingLogger(): { log: Logger; suspects: number; warnings: number; errors: number; examples: string[] } {
  const c = { log: silentLogger(), suspects: 0, warnings: 0, errors: 0, examples: [] as string[] };
  c.log = pino(
    { level: "warn" },
    {
      write(line: string) {
        const e = JSON.parse(line) as { level: number; msg?: string };
        if (e.level >= 50) c.errors++;
        else c.warnings++;
        if (e.msg?.includes("suspected down")) c.suspects++;
        if (c.examples.length < 5) c.examples.push(`${e.level >= 50 ? "error" : "warn"}: ${(e.msg ?? "").slice(0, 200)}`);
      },
    },
  );
  return c;
}

async function streamLastSeq(bus: Bus, stream: string): Promise<number> {
  const jsm = await jetstreamManager(bus.nc);
  const info = await jsm.streams.info(stream);
  return info.state.last_seq;
}

async function scalePart(log: (line: string) => void, dir: string, cleanup: (() => Promise<void>)[]): Promise<Figure[]> {
  const nats: NatsServer = await startNats({ dir: join(dir, "nats"), monitorPort: false });
  cleanup.push(() => nats.stop());
  const config = benchConfig(nats.url, FEDERATIONS);
  const agents = spawnAgents(nats.url, FEDERATIONS, join(dir, "agents.log"));
  cleanup.push(() => agents.proc.stop("SIGTERM", 5_000));
  const tAgents = performance.now();
  await Promise.race([agents.ready, sleep(60_000).then(() => Promise.reject(new Error("the agents were not ready within 60 s")))]);
  log(`NATS on ${nats.url} (pid ${nats.pid}); agents (pid ${agents.proc.pid}) published every member's first observation in ${((performance.now() - tAgents) / 1000).toFixed(1)} s`);

  const quiet = silentLogger();
  const bus = await connectBus({ servers: nats.url, name: "bench-coordinator", log: quiet, metrics: createRegistry() });
  cleanup.push(() => bus.close());

  // Fresh start: how fast does a coordinator load federations it has never seen?
  const fresh = await startCoordinator({ config, bus, log: quiet, id: "fresh", registry: createRegistry() });
  cleanup.unshift(() => fresh.stop());
  const tFresh = performance.now();
  await fresh.waitLeader(FRESH_LIMIT_MS).catch(() => undefined);
  const freshLoaded = fresh.listFederations().length;
  const freshS = (performance.now() - tFresh) / 1000;
  await fresh.stop();
  log(`fresh start: ${freshLoaded} federations loaded in ${freshS.toFixed(1)} s (each waits for both members' observations, stored after it subscribed; all at once, KV round trips bounded)`);

  // The others' records, written in parallel (so the measured coordinator resumes all of them from KV).
  const store = await openStateStore(bus, federationRecordSchema, { scope: "*" });
  const leases = await openLeases(bus);
  const metrics = createCoordinatorMetrics(createRegistry());
  const missing: string[] = [];
  for (const f of config.federations) if ((await store.get(f.name)) === undefined) missing.push(f.name);
  const tSeed = performance.now();
  for (let i = 0; i < missing.length; i += 250) {
    const rts = missing.slice(i, i + 250).map(
      (name) =>
        new FederationRuntime({ cfg: config.federations.find((f) => f.name === name) as Config["federations"][number], bus, leases, store, coordinatorId: "seed", log: quiet, metrics, onStale: () => undefined }),
    );
    await Promise.all(rts.map((r) => r.start()));
    await Promise.all(rts.map((r) => r.stop()));
  }
  const noPrimary: string[] = [];
  for (const f of config.federations) if ((await store.get(f.name))?.value.designatedPrimary !== "pg-eu") noPrimary.push(f.name);
  if (noPrimary.length > 0) throw new Error(`${noPrimary.length} federation records have no designated primary pg-eu after seeding, e.g. ${noPrimary.slice(0, 3).join(", ")}`);
  log(`seeded ${missing.length} federation records in parallel in ${((performance.now() - tSeed) / 1000).toFixed(1)} s`);

  // The measured coordinator.
  const counted = { n: 0 };
  const logs = countingLogger();
  const kv0 = await streamLastSeq(bus, "KV_pgfed_state");
  const tStart = performance.now();
  const coordinator: Coordinator = await startCoordinator({ config, bus: countingBus(bus, counted), log: logs.log, id: "bench", registry: createRegistry() });
  cleanup.unshift(() => coordinator.stop());
  await waitUntil("the coordinator to lead", 30_000, () => coordinator.isLeader(), 10);
  const leaderMs = performance.now() - tStart;
  await coordinator.waitLeader(LOAD_LIMIT_MS).catch(() => undefined);
  const loadedMs = performance.now() - tStart;
  const loadedCount = coordinator.listFederations().length;
  const kvLoad = (await streamLastSeq(bus, "KV_pgfed_state")) - kv0;
  log(`leader after ${leaderMs.toFixed(0)} ms; ${loadedCount} of ${FEDERATIONS} federations resumed from KV after ${(loadedMs / 1000).toFixed(1)} s (${kvLoad} KV writes)`);

  await sleep(WARMUP_MS);
  const natsCpu0 = procCpuSeconds(nats.pid);
  const agentsCpu0 = procCpuSeconds(agents.proc.pid);
  const cpu0 = cpuSeconds();
  const msgs0 = counted.n;
  const kv1 = await streamLastSeq(bus, "KV_pgfed_state");
  const pub0 = await streamLastSeq(bus, "PGFED");
  // Profiling aid: PGFED_BENCH_ALLOC_PROFILE=<dir> samples every allocation of the steady state, garbage included (a .heapprofile for Chrome DevTools).
  const allocDir = process.env.PGFED_BENCH_ALLOC_PROFILE;
  const alloc = allocDir ? new Session() : undefined;
  if (alloc) {
    alloc.connect();
    await alloc.post("HeapProfiler.startSampling", { samplingInterval: 64 * 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  const rss: number[] = [];
  const heap: number[] = [];
  const t0 = performance.now();
  loopDelay.enable();
  while (performance.now() - t0 < STEADY_MS) {
    await sleep(1_000);
    const m = process.memoryUsage();
    rss.push(m.rss);
    heap.push(m.heapUsed);
  }
  loopDelay.disable();
  const s = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - cpu0;
  const msgs = counted.n - msgs0;
  const kvWrites = (await streamLastSeq(bus, "KV_pgfed_state")) - kv1;
  const published = (await streamLastSeq(bus, "PGFED")) - pub0;
  const natsCpu = procCpuSeconds(nats.pid) - natsCpu0;
  const agentsCpu = procCpuSeconds(agents.proc.pid) - agentsCpu0;

  // Profiling aids: retained heap (run node with --expose-gc) and a heap snapshot (PGFED_BENCH_HEAP_SNAPSHOT=<dir>).
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    log(`heap retained after a full GC: ${(process.memoryUsage().heapUsed / 1024 / 1024).toFixed(0)} MiB`);
  }
  if (alloc && allocDir) {
    const { profile } = await alloc.post("HeapProfiler.stopSampling");
    const file = join(allocDir, `coordinator-${FEDERATIONS}.heapprofile`);
    await writeFile(file, JSON.stringify(profile));
    alloc.disconnect();
    log(`allocation profile of the steady state: ${file}`);
  }
  if (process.env.PGFED_BENCH_HEAP_SNAPSHOT) log(`heap snapshot: ${writeHeapSnapshot(join(process.env.PGFED_BENCH_HEAP_SNAPSHOT, `coordinator-${FEDERATIONS}.heapsnapshot`))}`);

  const views = coordinator.listFederations();
  const withOperation = views.filter((v) => v.operation !== null).length;
  const epochMoved = views.filter((v) => v.epoch !== 1 || v.designatedPrimary !== "pg-eu").length;
  const withAlerts = views.filter((v) => v.alerts.length > 0).length;
  const firing = coordinator.alerting.active();
  const levels = new Map<string, number>();
  for (const v of views) levels.set(v.exposure?.level ?? "none", (levels.get(v.exposure?.level ?? "none") ?? 0) + 1);
  log(`steady ${s.toFixed(0)} s: ${msgs} messages handled (${published} stored in PGFED), ${kvWrites} KV writes; agents ${JSON.stringify(agents.last)}`);
  log(`exposure levels: ${[...levels].map(([k, v]) => `${k} ${v}`).join(", ")}; federations with an operation ${withOperation}, with alerts ${withAlerts}; alerts firing ${firing.length}${firing.length ? ` (${[...new Set(firing.map((a) => a.name))].join(", ")})` : ""}`);
  if (logs.examples.length > 0) log(`coordinator warnings/errors (first ${logs.examples.length}): ${logs.examples.join(" | ")}`);

  const max = (xs: number[]) => Math.max(...xs);
  const mb = (b: number) => b / 1024 / 1024;
  return [
    { name: "federations / members", value: `${FEDERATIONS} / ${2 * FEDERATIONS}` },
    { name: "fresh load rate", value: freshLoaded / freshS, unit: "federations/s", note: `${freshLoaded} loaded in ${freshS.toFixed(1)} s of a first-ever start (startCoordinator → waitLeader)${freshLoaded < FEDERATIONS ? `; ${FEDERATIONS} would take ~${Math.round(FEDERATIONS / Math.max(freshLoaded / freshS, 1e-9))} s` : ""}` },
    { name: "time to become leader", value: leaderMs, unit: "ms", note: "startCoordinator → lease held (previous leader released it)" },
    { name: `time to load ${FEDERATIONS} federations`, value: loadedCount === FEDERATIONS ? (loadedMs / 1000).toFixed(1) : `> ${(loadedMs / 1000).toFixed(0)} (only ${loadedCount} loaded)`, unit: "s", note: `resume from KV records, startCoordinator → waitLeader; ${kvLoad} KV writes meanwhile` },
    { name: "coordinator CPU", value: (cpu / s) * 100, unit: "% of one core", note: `process.cpuUsage over ${s.toFixed(0)} s steady state (2 cores shared with NATS and the agents)` },
    { name: "coordinator RSS (max)", value: mb(max(rss)), unit: "MiB", note: `first / last second of the steady state ${mb(rss[0] ?? 0).toFixed(0)} / ${mb(rss[rss.length - 1] ?? 0).toFixed(0)} MiB; the process also ran the fresh start before` },
    { name: "coordinator heap used (max / last)", value: `${mb(max(heap)).toFixed(0)} / ${mb(heap[heap.length - 1] ?? 0).toFixed(0)}`, unit: "MiB" },
    { name: "event loop delay p50 / p99 / max", value: `${(loopDelay.percentile(50) / 1e6).toFixed(1)} / ${(loopDelay.percentile(99) / 1e6).toFixed(1)} / ${(loopDelay.max / 1e6).toFixed(0)}`, unit: "ms" },
    { name: "messages consumed", value: msgs / s, unit: "msg/s", note: `delivered by the coordinator's one shared consumer; ${(published / s).toFixed(0)} msg/s stored in PGFED` },
    { name: "KV writes (pgfed_state)", value: kvWrites / s, unit: "writes/s" },
    { name: "NATS server CPU", value: (natsCpu / s) * 100, unit: "% of one core" },
    { name: "agents process CPU", value: (agentsCpu / s) * 100, unit: "% of one core", note: `${agents.last?.leasesHeld ?? "?"} primary leases held` },
    { name: "spurious PRIMARY_SUSPECT", value: logs.suspects, note: `"suspected down" log lines since start; ${withOperation} federations with an operation, ${epochMoved} with a moved epoch/primary (must all be 0)` },
    { name: "alerts firing", value: firing.length, note: `${withAlerts} federations with machine alerts` },
    { name: "coordinator warnings / errors", value: `${logs.warnings} / ${logs.errors}` },
  ];
}

// ---- part 2: switchover overhead ------------------------------------------------------------------

interface Split {
  totalS: number;
  commandS: number;
  tokenS: number;
  promotionS: number;
  followS: number;
}

function splitOf(op: { startedAt: string; finishedAt: string | null; steps: { at: string; description: string }[] }, audit: AuditEntry[], opId: string): Split {
  const at = (words: string): number => {
    const s = op.steps.find((x) => x.description.includes(words));
    if (!s) throw new Error(`operation ${opId} has no step "${words}": ${op.steps.map((x) => x.description).join(" | ")}`);
    return Date.parse(s.at);
  };
  const start = Date.parse(op.startedAt);
  const end = Date.parse(op.finishedAt ?? op.startedAt);
  const demoted = at("old primary patched");
  const token = at("primary demoted cleanly");
  const promoted = at("target promoted");
  const mine = audit.filter((a) => a.operationId === opId);
  let commandMs = 0;
  const pending = new Map<string, number>();
  let promoteResult = token;
  let clearResult = promoted;
  for (const a of mine) {
    const key = `${a.member ?? ""}|${a.reason}`;
    if (a.action === "command.sent") pending.set(key, Date.parse(a.at));
    if (a.action === "command.result") {
      const sent = pending.get(key);
      if (sent !== undefined) commandMs += Date.parse(a.at) - sent;
      pending.delete(key);
      if (a.reason.startsWith("step promote ")) promoteResult = Date.parse(a.at);
      if (a.reason.startsWith("step verify ")) clearResult = Date.parse(a.at);
    }
  }
  return {
    totalS: (end - start) / 1000,
    commandS: commandMs / 1000,
    tokenS: (token - demoted) / 1000,
    promotionS: (promoted - promoteResult) / 1000,
    followS: (end - clearResult) / 1000,
  };
}

async function switchoverPart(log: (line: string) => void, cleanup: (() => Promise<void>)[]): Promise<Figure[]> {
  const e: E2E = await startE2E("bench");
  cleanup.unshift(() => e.stop());
  const splits: Split[] = [];
  const requestS: number[] = [];
  for (let i = 0; i < SWITCHOVERS; i++) {
    const from = e.plane.coordinator.getFederation(FED)?.designatedPrimary ?? "?";
    const to = from === "pg-eu" ? "pg-us" : "pg-eu";
    await waitUntil(`a lag figure for ${to}`, 30_000, () => e.plane.coordinator.getFederation(FED)?.members.find((m) => m.name === to)?.lagSeconds != null);
    const t0 = performance.now();
    const res = await e.plane.coordinator.switchover(FED, { target: to }, { requestedBy: "bench", reason: `bench switchover ${i + 1}` }, { dryRun: false });
    if (res.kind !== "operation") throw new Error("expected an operation");
    const op = await finished(e, res.operation.id, 120_000);
    const wall = (performance.now() - t0) / 1000;
    if (op.state !== "completed") throw new Error(`switchover ${op.id} ${op.state}: ${op.lastDecision}`);
    const audit = await e.plane.coordinator.audit(FED, {});
    const sp = splitOf(op, audit, op.id);
    splits.push(sp);
    requestS.push(wall);
    const waits = sp.tokenS + sp.promotionS + sp.followS;
    log(
      `switchover ${i + 1} ${from} -> ${to}: request→completed ${wall.toFixed(2)} s (operation ${sp.totalS.toFixed(2)} s) = CNPG/Postgres waits ${waits.toFixed(2)} s ` +
        `(token ${sp.tokenS.toFixed(2)}, promotion observed ${sp.promotionS.toFixed(2)}, old primary follows ${sp.followS.toFixed(2)}) + controller ${(sp.totalS - waits).toFixed(2)} s (of which command round trips ${sp.commandS.toFixed(2)})`,
    );
  }
  const avg = (f: (s: Split) => number) => splits.reduce((t, s) => t + f(s), 0) / splits.length;
  const waits = (s: Split) => s.tokenS + s.promotionS + s.followS;
  return [
    { name: "switchover request→completed (mean)", value: requestS.reduce((a, b) => a + b, 0) / requestS.length, unit: "s", note: `${SWITCHOVERS} switchovers, each: ${requestS.map((x) => x.toFixed(2)).join(", ")} s` },
    { name: "  waits on CNPG/Postgres", value: avg(waits), unit: "s", note: "token to appear + promotion to be observed + old primary to follow" },
    { name: "    demotion token to appear", value: avg((s) => s.tokenS), unit: "s" },
    { name: "    promotion to be observed", value: avg((s) => s.promotionS), unit: "s", note: "promote command's result → the target observed as primary with the token" },
    { name: "    old primary to follow", value: avg((s) => s.followS), unit: "s", note: "clearToken result → old primary observed as an unfenced replica" },
    { name: "  controller's part", value: avg((s) => s.totalS - waits(s)), unit: "s", note: "preflight, decisions, persistence, command round trips" },
    { name: "    command round trips", value: avg((s) => s.commandS), unit: "s", note: "command.sent → command.result (demote, promote, clearToken; includes the agent's Kubernetes patch)" },
    { name: "  controller share", value: (avg((s) => s.totalS - waits(s)) / avg((s) => s.totalS)) * 100, unit: "%" },
  ];
}

export const coordinatorBench: BenchCase = {
  name: "coordinator",
  description: `one coordinator over ${FEDERATIONS} federations × 2 members fed by synthetic agents (child process): load time, CPU, memory, event loop, messages/s, KV writes/s, spurious suspects; then the controller's share of ${SWITCHOVERS} real switchovers in the lab`,
  async run(log) {
    const dir = await mkdtemp(join(tmpdir(), "pgfed-bench-coordinator-"));
    const cleanup: (() => Promise<void>)[] = [];
    try {
      const figures = await scalePart(log, dir, cleanup);
      // Free the 2 cores before the lab starts.
      for (const c of cleanup.splice(0)) await c().catch((e: unknown) => log(`cleanup: ${errorMessage(e)}`));
      if (WITH_SWITCHOVER) figures.push(...(await switchoverPart(log, cleanup)));
      return figures;
    } finally {
      for (const c of cleanup) await c().catch((e: unknown) => log(`cleanup: ${errorMessage(e)}`));
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  },
};

// The synthetic agents' entry: `node --import tsx test/bench/coordinator.ts --agents <url> <n>`.
if (process.argv[2] === "--agents" && process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await agentsMain(process.argv[3] ?? "", Number(process.argv[4] ?? FEDERATIONS));
}
