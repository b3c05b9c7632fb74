/**
 * The region agent against the real thing: nats-server 2.9 with JetStream, two lab regions (the
 * Kubernetes API stand-in and the CNPG operator stand-in over real Postgres), one agent per region
 * serving one federation. Commands are raw bus messages, as the coordinator will send them.
 *
 *   region eu: pg-eu (primary cluster), pg-ap (an object the agent cannot understand, no Postgres)
 *   region us: pg-us (replica cluster of pg-eu, streaming)
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import pg from "pg";
import { Registry } from "prom-client";
import { z } from "zod";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { agentMembersFromConfig, consumerName, startAgent, type Agent } from "../../../src/agent/index.js";
import {
  connectBus,
  isExpired,
  leaseKeys,
  makeMessage,
  openLeases,
  openStateStore,
  subjects,
  type Bus,
  type BusMessage,
  type BusSubscription,
  type Command,
  type DeadLetter,
  type LeaseStore,
  type MessageOf,
} from "../../../src/bus/index.js";
import type { Cluster } from "../../../src/cnpg/index.js";
import { parseConfig } from "../../../src/config.js";
import { RegionClient } from "../../../src/kube/region.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer } from "../../../src/lab/kube-api/index.js";
import { ExternalClusterRegistry } from "../../../src/lab/cnpg/registry.js";
import { startCnpgOperator, type CnpgOperator } from "../../../src/lab/cnpg/operator.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { freePort, waitFor } from "../../../src/lab/proc.js";
import { createLogger, silentLogger, type Logger } from "../../../src/log.js";
import { clusterManifest, getCluster as readCluster, healthy, waitCluster as awaitCluster, type ClusterRef } from "../../support/cnpg-cluster.js";
import { postgresDescendants } from "../../support/postgres.js";

const NS = "db";
const FED = "orders";
const TOKEN = "agent-test-token";
const LEASE_TTL_MS = 2_000;
const SKEW_MS = 1_000;
const HEARTBEAT_MS = 500;
const REGIONS = ["eu", "us"] as const;
type Region = (typeof REGIONS)[number];

const log: Logger = process.env.AGENT_TEST_LOG ? createLogger({ level: process.env.AGENT_TEST_LOG, pretty: false }) : silentLogger();
const timings: string[] = [];

let dir: string;
let nats: NatsServer;
const servers = new Map<Region, KubeApiServer>();
const operators = new Map<Region, CnpgOperator>();
const apis = new Map<Region, CustomObjectsApi>();
const agents = new Map<Region, Agent>();
const agentBuses: Bus[] = [];
let testBus: Bus;
let leases: LeaseStore;
let collector: BusSubscription | undefined;
const seen: BusMessage[] = [];
let epoch = 1;

function must<K, V>(m: Map<K, V>, k: K): V {
  const v = m.get(k);
  if (v === undefined) throw new Error(`nothing for ${String(k)}`);
  return v;
}

function pgPort(region: Region, name: string): number {
  const inst = must(operators, region).instance(NS, name);
  if (!inst) throw new Error(`no instance for ${name}`);
  return inst.port;
}

const ref = (region: Region, name: string): ClusterRef => ({ api: must(apis, region), namespace: NS, name, region });
const getCluster = (region: Region, name: string): Promise<Cluster> => readCluster(ref(region, name));
const waitCluster = (region: Region, name: string, what: string, ok: (c: Cluster) => boolean, timeoutMs?: number): Promise<Cluster> => awaitCluster(ref(region, name), what, ok, timeoutMs);

/** pg-eu and pg-us streaming from each other, one instance each, no WAL-archiver plugin. */
function manifest(name: string, primary: string, source: string, replica: boolean): object {
  return clusterManifest(name, primary, source, ["pg-eu", "pg-us"], { namespace: NS, replica, streaming: true, barman: false, instances: 1 });
}

/** Messages seen from index `from` on that match. */
async function waitMessage<T extends BusMessage>(what: string, match: (m: BusMessage) => m is T, opts: { from?: number; timeoutMs?: number } = {}): Promise<T> {
  const from = opts.from ?? 0;
  return waitFor(what, () => seen.slice(from).find(match), opts.timeoutMs ?? 15_000, 10);
}

const isObs = (member: string, pred: (o: MessageOf<"observation">["data"]) => boolean) => (m: BusMessage): m is MessageOf<"observation"> => m.type === "observation" && m.member === member && pred(m.data);
const isLag = (member: string, pred: (l: MessageOf<"lag">["data"]) => boolean) => (m: BusMessage): m is MessageOf<"lag"> => m.type === "lag" && m.member === member && pred(m.data);

type CommandData = Command extends infer C ? (C extends Command ? Omit<C, "operationId" | "deadlineAt"> : never) : never;

interface Sent {
  result: MessageOf<"result">;
  rttMs: number;
}

let commandSeq = 0;
/** Publishes a command as the coordinator would and waits for its result. */
async function command(member: string, data: CommandData, opts: { epoch?: number; deadlineAt?: string; label?: string } = {}): Promise<Sent> {
  const id = `cmd-${Date.now()}-${++commandSeq}`;
  const from = seen.length;
  const msg = makeMessage("command", {
    federation: FED,
    member,
    epoch: opts.epoch ?? epoch,
    source: "coordinator:test",
    id,
    data: { ...data, operationId: "op-agent-test", deadlineAt: opts.deadlineAt ?? new Date(Date.now() + 30_000).toISOString() },
  });
  const t0 = performance.now();
  await testBus.publish(msg);
  const result = await waitMessage(`result of ${data.kind} on ${member}`, (m): m is MessageOf<"result"> => m.type === "result" && m.data.commandId === id, { from, timeoutMs: 20_000 });
  const rttMs = performance.now() - t0;
  if (opts.label) timings.push(`command round trip ${opts.label}: ${rttMs.toFixed(1)} ms`);
  return { result, rttMs };
}

async function skippedCount(region: Region, member: string): Promise<number> {
  const metric = await must(agents, region).registry.getSingleMetric("pgfed_agent_observations_skipped_total")?.get();
  return metric?.values.find((v) => v.labels.member === member)?.value ?? 0;
}

async function acceptsConnections(port: number): Promise<boolean> {
  const c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres", connectionTimeoutMillis: 500 });
  c.on("error", () => undefined);
  try {
    await c.connect();
    await c.query("SELECT 1");
    return true;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function subscribeCollector(): Promise<void> {
  await collector?.stop();
  // deadLetters: false: the agents' consumers are the ones that must dead-letter bad commands.
  collector = await testBus.subscribe(`pgfed.${FED}.>`, (m) => void seen.push(m), { deliverNew: true, deadLetters: false });
}

beforeAll(async () => {
  const t0 = Date.now();
  dir = await mkdtemp(join(tmpdir(), "pgfed-agent-"));
  await chmod(dir, 0o755);
  nats = await startNats({ dir: join(dir, "nats"), monitorPort: false });
  const tokens = { [TOKEN]: { name: "admin", allow: [{ verbs: "*" as const, resources: "*" as const }] } };
  for (const r of REGIONS) servers.set(r, await startKubeApi({ region: r, tokens, namespaces: [NS] }));
  const kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, REGIONS.map((r) => ({ name: r, url: must(servers, r).url, token: TOKEN })));
  const registry = new ExternalClusterRegistry();
  for (const r of REGIONS) {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    kc.setCurrentContext(r);
    operators.set(r, await startCnpgOperator({ region: r, kube: kc, dataDir: join(dir, "data"), registry, pollIntervalMs: 100, promotionRetryMs: 250, log }));
    const forTest = new KubeConfig();
    forTest.loadFromFile(kubeconfig);
    forTest.setCurrentContext(r);
    apis.set(r, forTest.makeApiClient(CustomObjectsApi));
  }
  await must(apis, "eu").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: manifest("pg-eu", "pg-eu", "pg-us", false) });
  await waitCluster("eu", "pg-eu", "healthy", healthy);
  await must(apis, "us").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: manifest("pg-us", "pg-eu", "pg-eu", true) });
  await waitCluster("us", "pg-us", "healthy", healthy);
  // The monitoring secret CNPG would hold; the agent reads it through its RegionClient (trust auth ignores the password).
  must(servers, "eu").store.create("secrets", {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "pg-eu-monitor", namespace: NS },
    type: "kubernetes.io/basic-auth",
    data: { username: Buffer.from("postgres").toString("base64"), password: Buffer.from("unused").toString("base64") },
  });

  const cfg = parseConfig({
    federations: [
      {
        name: FED,
        failover: { mode: "automatic", leaseTtl: LEASE_TTL_MS, clockSkewMargin: SKEW_MS },
        sampleInterval: 500,
        members: [
          { name: "pg-eu", region: "eu", namespace: NS, cluster: "pg-eu", postgres: { secretRef: "pg-eu-monitor", host: "127.0.0.1", port: pgPort("eu", "pg-eu"), sslmode: "disable" } },
          { name: "pg-ap", region: "eu", namespace: NS, cluster: "pg-ap", postgres: { host: "127.0.0.1", port: await freePort(), user: "postgres", sslmode: "disable" } },
          { name: "pg-us", region: "us", namespace: NS, cluster: "pg-us", postgres: { host: "127.0.0.1", port: pgPort("us", "pg-us"), user: "postgres", sslmode: "disable" } },
        ],
      },
    ],
    regions: REGIONS.map((name) => ({ name, kubeconfig: { path: kubeconfig, context: name } })),
    bus: { servers: [nats.url] },
  });

  const busOpts = { servers: nats.url, log, reconnectDelayMs: { min: 50, max: 200 }, requestTimeoutMs: 1_000, pingIntervalMs: 1_000 };
  testBus = await connectBus({ ...busOpts, name: "agent-test", metrics: new Registry() });
  leases = await openLeases(testBus);
  await subscribeCollector();
  for (const r of REGIONS) {
    const bus = await connectBus({ ...busOpts, name: `agent-${r}`, metrics: new Registry() });
    agentBuses.push(bus);
    agents.set(
      r,
      await startAgent({
        agentId: r,
        region: r,
        kube: new RegionClient({ region: r, kubeconfigPath: kubeconfig, context: r, log }),
        bus,
        leases: await openLeases(bus),
        members: agentMembersFromConfig(cfg, r),
        log,
        registry: new Registry(),
        heartbeatIntervalMs: HEARTBEAT_MS,
      }),
    );
  }
  timings.push(`setup (NATS, 2 kube APIs, 2 operators, 2 Postgres, 2 agents): ${Date.now() - t0} ms`);
});

afterAll(async () => {
  if (timings.length > 0) console.log(`agent measurements:\n  ${timings.join("\n  ")}`);
  for (const a of agents.values()) await a.stop();
  await collector?.stop().catch(() => undefined);
  for (const b of agentBuses) await b.close();
  await testBus?.close();
  for (const o of operators.values()) await o.stop().catch(() => o.stop({ kill: true }));
  for (const s of servers.values()) await s.stop();
  await nats?.stop();
  const left = postgresDescendants();
  if (dir) await rm(dir, { recursive: true, force: true });
  expect(left).toEqual([]);
});

describe("region agent", () => {
  it("publishes observations when a member appears and changes, and with every heartbeat", async () => {
    const eu = await waitMessage("pg-eu observed as a ready primary", isObs("pg-eu", (o) => o.role === "primary" && o.reachable && o.ready && !o.fenced));
    expect(eu.source).toBe("agent:eu");
    const us = await waitMessage("pg-us observed as a replica", isObs("pg-us", (o) => o.role === "replica" && o.reachable));
    expect(us.data.fenced).toBe(false);
    const missing = await waitMessage("pg-ap observed as missing", isObs("pg-ap", (o) => o.role === "unknown" && (o.reason ?? "").includes("does not exist")));
    expect(missing.data.reachable).toBe(true);
    const hb = await waitMessage("a heartbeat from eu", (m): m is MessageOf<"heartbeat"> => m.type === "heartbeat" && m.data.region === "eu");
    expect(hb.data).toEqual({ region: "eu", agentId: "eu", members: ["pg-eu", "pg-ap"] });

    // A Cluster the agent cannot understand (spec.replica without source): role unknown with the reason (rule 6).
    let from = seen.length;
    let t = performance.now();
    must(servers, "eu").store.create("clusters", { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata: { name: "pg-ap", namespace: NS }, spec: { replica: { primary: "pg-ap" } } }, { skipAdmission: true });
    const bad = await waitMessage("pg-ap observed as not understood", isObs("pg-ap", (o) => o.role === "unknown" && (o.reason ?? "").includes("spec.replica.source")), { from });
    timings.push(`observation of a created (unreadable) Cluster: ${(performance.now() - t).toFixed(1)} ms after create`);
    expect(bad.data.reason).toMatch(/invalid CNPG Cluster/);

    // A change the coordinator reads (all instances fenced) is published at once, not at the next heartbeat.
    from = seen.length;
    t = performance.now();
    must(servers, "us").store.patch("clusters", { namespace: NS, name: "pg-us" }, { metadata: { annotations: { "cnpg.io/fencedInstances": '["*"]' } } });
    await waitMessage("pg-us observed as fenced", isObs("pg-us", (o) => o.fenced), { from });
    const changeMs = performance.now() - t;
    timings.push(`observation after a Cluster change: ${changeMs.toFixed(1)} ms`);
    expect(changeMs).toBeLessThan(HEARTBEAT_MS);
    must(servers, "us").store.patch("clusters", { namespace: NS, name: "pg-us" }, { metadata: { annotations: { "cnpg.io/fencedInstances": null } } });
    await waitMessage("pg-us observed unfenced again", isObs("pg-us", (o) => !o.fenced), { from });

    // A write that changes nothing the coordinator reads (a label) is skipped; the heartbeat carries its resourceVersion.
    from = seen.length;
    const skippedBefore = await skippedCount("eu", "pg-eu");
    const rv = must(servers, "eu").store.patch("clusters", { namespace: NS, name: "pg-eu" }, { metadata: { labels: { touched: "yes" } } }).metadata.resourceVersion;
    await waitFor("the label change skipped", async () => (await skippedCount("eu", "pg-eu")) > skippedBefore, 2_000, 10);
    const withRv = await waitMessage("pg-eu's heartbeat observation at the new resourceVersion", isObs("pg-eu", (o) => o.resourceVersion === rv), { from });
    expect(withRv.data.role).toBe("primary");

    // Heartbeats keep coming, with the (unchanged) observations.
    from = seen.length;
    await sleep(HEARTBEAT_MS * 3);
    const beats = seen.slice(from).filter((m) => m.type === "heartbeat" && m.data.region === "eu").length;
    const euObs = seen.slice(from).filter((m) => m.type === "observation" && m.member === "pg-eu").length;
    expect(beats).toBeGreaterThanOrEqual(2);
    expect(euObs).toBeGreaterThanOrEqual(2);
    // Bounded: one per heartbeat plus the few status writes of the operator, never a flood.
    expect(euObs).toBeLessThanOrEqual(beats + 4);
  });

  it("reports reachable:false with the reason while its Kubernetes API is partitioned, and recovers", async () => {
    const server = must(servers, "eu");
    const from = seen.length;
    const t = performance.now();
    await server.faults.set({ partitioned: true });
    try {
      const down = await waitMessage("pg-eu unreachable", isObs("pg-eu", (o) => !o.reachable), { from });
      timings.push(`reachable:false after the kube API partition: ${(performance.now() - t).toFixed(0)} ms`);
      expect(down.data.role).toBe("primary"); // last known
      expect(down.data.reason).toMatch(/region eu/);
      // A new connection is refused; a request already on a kept-alive connection sees it reset.
      expect(down.data.reason).toMatch(/ECONNREFUSED|ECONNRESET|connect|no answer/i);
    } finally {
      // The later tests need the API back even when an assertion above failed.
      await server.faults.clear();
    }
    const back = seen.length;
    await waitMessage("pg-eu reachable again", isObs("pg-eu", (o) => o.reachable && o.role === "primary"), { from: back });
    // The watch resumes too: it delivers the next write (a label, so it is counted as skipped).
    const skippedBefore = await skippedCount("eu", "pg-eu");
    server.store.patch("clusters", { namespace: NS, name: "pg-eu" }, { metadata: { labels: { touched: "again" } } });
    const t2 = performance.now();
    await waitFor("the watch to deliver a write after the partition", async () => (await skippedCount("eu", "pg-eu")) > skippedBefore, 15_000, 20);
    timings.push(`watch resumed after the partition: write delivered ${(performance.now() - t2).toFixed(0)} ms later`);
    const kubeErrors = await must(agents, "eu").registry.getSingleMetricAsString("pgfed_agent_kube_errors_total");
    expect(kubeErrors).toMatch(/operation="read"/);
  });

  it("publishes lag samples with LSNs (primary: current, replica: replayed) and errors for a Postgres it cannot reach", async () => {
    const from = seen.length;
    const lsn = /^[0-9A-F]+\/[0-9A-F]+$/;
    const primary = await waitMessage("a primary lag sample", isLag("pg-eu", (l) => l.role === "primary" && l.error === undefined), { from });
    expect(primary.data.currentLsn).toMatch(lsn);
    expect(primary.data.inRecovery).toBe(false);
    expect(primary.data.timeline).toBe(1);
    const replica = await waitMessage("a replica lag sample", isLag("pg-us", (l) => l.role === "replica" && l.error === undefined), { from });
    expect(replica.data.replayedLsn).toMatch(lsn);
    expect(replica.data.receivedLsn).toMatch(lsn);
    expect(replica.data.inRecovery).toBe(true);
    const failing = await waitMessage("an error lag sample", isLag("pg-ap", (l) => l.error !== undefined), { from });
    expect(failing.data.error).toMatch(/pg-ap/);
    const text = await must(agents, "eu").registry.getSingleMetricAsString("pgfed_agent_lag_samples_total");
    expect(text).toMatch(/member="pg-eu",outcome="ok"\} [1-9]/);
    expect(text).toMatch(/member="pg-ap",outcome="error"\} [1-9]/);
  });

  it("holds the primary lease while pg-eu is the unfenced primary", async () => {
    const l = await waitFor("the primary lease held by pg-eu's agent", async () => {
      const r = await leases.read(leaseKeys.primary(FED));
      return r && r.lease.holder === "agent:eu/pg-eu" && !isExpired(r.lease, Date.now()) ? r.lease : undefined;
    }, 10_000);
    expect(l.expiresAtMs - l.renewedAtMs).toBe(LEASE_TTL_MS);
    const st = must(agents, "eu").status().members.find((m) => m.member === "pg-eu");
    expect(st?.lease.state).toBe("held");
    expect(must(agents, "us").status().members[0]?.lease.state).toBe("idle");
  });

  it("executes each command idempotently: a repeat patches nothing and answers the same", async () => {
    const port = pgPort("eu", "pg-eu");
    const f1 = await command("pg-eu", { kind: "fence" }, { label: "fence (patch)" });
    expect(f1.result.data).toMatchObject({ ok: true, data: { patched: true, fenced: true } });
    const f2 = await command("pg-eu", { kind: "fence" }, { label: "fence (repeat, no patch)" });
    expect(f2.result.data).toMatchObject({ ok: true, data: { patched: false, fenced: true } });
    await waitFor("pg-eu's Postgres to stop after the fence", async () => !(await acceptsConnections(port)), 15_000, 50);
    // Fenced: no longer vouched for, so the lease is given up.
    await waitFor("the lease released", async () => {
      const r = await leases.read(leaseKeys.primary(FED));
      return r !== undefined && isExpired(r.lease, Date.now());
    }, 5_000);

    const u1 = await command("pg-eu", { kind: "unfence" }, { label: "unfence" });
    expect(u1.result.data).toMatchObject({ ok: true, data: { patched: true, fenced: false } });
    const u2 = await command("pg-eu", { kind: "unfence" });
    expect(u2.result.data).toMatchObject({ ok: true, data: { patched: false } });
    await waitFor("pg-eu's Postgres to accept connections again", () => acceptsConnections(port), 20_000, 100);
    await waitFor("the lease taken again", async () => {
      const r = await leases.read(leaseKeys.primary(FED));
      return r?.lease.holder === "agent:eu/pg-eu" && !isExpired(r.lease, Date.now());
    }, 5_000);

    const e1 = await command("pg-eu", { kind: "ensurePrimary" }, { label: "ensurePrimary" });
    expect(e1.result.data).toMatchObject({ ok: true, data: { patched: false, role: "primary" } });
    const e2 = await command("pg-us", { kind: "ensurePrimary" });
    expect(e2.result.data).toMatchObject({ ok: false, error: { code: "agent.not_primary" } });
    expect(e2.result.source).toBe("agent:us");

    const c1 = await command("pg-eu", { kind: "clearToken" });
    expect(c1.result.data).toMatchObject({ ok: true, data: { patched: false } });
    const p1 = await command("pg-eu", { kind: "promoteWithoutToken" });
    expect(p1.result.data).toMatchObject({ ok: true, data: { patched: false } });
    const p2 = await command("pg-eu", { kind: "promoteWithToken", token: "dGhpcyBpcyBub3QgdXNlZA==" });
    expect(p2.result.data).toMatchObject({ ok: false, error: { code: "agent.already_primary" } });
    const d1 = await command("pg-eu", { kind: "demote", to: "pg-nowhere" });
    expect(d1.result.data).toMatchObject({ ok: false, error: { code: "agent.unknown_member" } });

    const w1 = await command("pg-eu", { kind: "walSwitch" }, { label: "walSwitch" });
    expect(w1.result.data.ok).toBe(true);
    expect(w1.result.data.data?.switchLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);

    const text = await must(agents, "eu").registry.getSingleMetricAsString("pgfed_agent_commands_total");
    expect(text).toMatch(/member="pg-eu",kind="fence",result="ok"\} 2/);
    expect(text).toMatch(/kind="promoteWithToken",result="refused"\} 1/);
  });

  it("refuses a command from an older epoch (naming both epochs) and one past its deadline", async () => {
    epoch = 5;
    const ok = await command("pg-eu", { kind: "ensurePrimary" }, { epoch: 5 });
    expect(ok.result.data.ok).toBe(true);
    const stale = await command("pg-eu", { kind: "fence" }, { epoch: 4, label: "stale epoch refusal" });
    expect(stale.result.data).toMatchObject({ ok: false, error: { code: "agent.stale_epoch" } });
    expect(stale.result.data.error?.message).toMatch(/epoch 4/);
    expect(stale.result.data.error?.message).toMatch(/epoch 5/);
    expect(stale.result.epoch).toBe(4);

    // The coordinator's federation record raises the floor too.
    const state = await openStateStore(testBus, z.looseObject({ epoch: z.number() }), { scope: "*" });
    await state.modify(FED, () => ({ epoch: 7, designatedPrimary: "pg-eu" }));
    await waitFor("agent eu to follow the record's epoch", () => must(agents, "eu").status().epochs[FED]?.epoch === 7, 5_000);
    const old = await command("pg-eu", { kind: "fence" }, { epoch: 6 });
    expect(old.result.data).toMatchObject({ ok: false, error: { code: "agent.stale_epoch" } });
    expect(old.result.data.error?.message).toMatch(/epoch 6.*epoch 7.*coordinator's record/);
    epoch = 7;

    const late = await command("pg-eu", { kind: "fence" }, { deadlineAt: new Date(Date.now() - 1_000).toISOString() });
    expect(late.result.data).toMatchObject({ ok: false, error: { code: "agent.deadline_expired" } });
    expect((await getCluster("eu", "pg-eu")).metadata.annotations?.["cnpg.io/fencedInstances"]).toBeUndefined();
  });

  it("dead-letters an invalid command and keeps executing the next ones", async () => {
    const letters: DeadLetter[] = [];
    const dlq = await testBus.subscribeDeadLetters((d) => void letters.push(d), { deliverNew: true });
    try {
      const subject = subjects.cmd(FED, "pg-eu");
      await testBus.js.publish(subject, "this is not JSON");
      const wrongKind = { ...makeMessage("command", { federation: FED, member: "pg-eu", epoch, source: "coordinator:test", data: { kind: "fence", operationId: "op-x", deadlineAt: new Date(Date.now() + 30_000).toISOString() } }), data: { kind: "explode", operationId: "op-x", deadlineAt: new Date().toISOString() } };
      await testBus.js.publish(subject, JSON.stringify(wrongKind));
      const durable = consumerName("eu", FED, "pg-eu");
      await waitFor("two dead letters from the agent's consumer", () => letters.filter((l) => l.consumer === durable).length >= 2, 10_000);
      const reasons = letters.filter((l) => l.consumer === durable).map((l) => l.reason).sort();
      expect(reasons).toEqual(["invalid_envelope", "invalid_json"]);
      const next = await command("pg-eu", { kind: "ensurePrimary" });
      expect(next.result.data.ok).toBe(true);
    } finally {
      await dlq.stop();
    }
  });

  it("fences its primary itself when the bus is gone for longer than the lease TTL, and reports it once the bus is back", async () => {
    const port = pgPort("eu", "pg-eu");
    const agent = must(agents, "eu");
    const member = () => agent.status().members.find((m) => m.member === "pg-eu");
    await waitFor("pg-eu's lease held", () => member()?.lease.state === "held", 10_000);
    expect(await acceptsConnections(port)).toBe(true);

    const tStop = Date.now();
    await nats.stop();
    const tStopped = Date.now();
    const heldBefore = member()?.lease.expiresAtMs;
    await waitFor("pg-eu's Postgres to stop accepting connections", async () => !(await acceptsConnections(port)), LEASE_TTL_MS + SKEW_MS + 8_000, 25);
    const tDown = Date.now();
    const fence = member()?.lease.lastFence;
    expect(fence?.reason).toBe("lease_expiring");
    const n = fence?.numbers ?? {};
    const expiresAt = Number(n.leaseExpiresAtMs);
    const fencedAt = Number(n.fencedAtMs);
    expect(expiresAt).toBeGreaterThanOrEqual(heldBefore ?? 0);
    // Fence applied before the lease expired, Postgres down before the coordinator could act (expiry + margin).
    expect(fencedAt).toBeLessThan(expiresAt);
    expect(tDown).toBeLessThan(expiresAt + SKEW_MS);
    timings.push(
      `self-fence: NATS stopped at +0 (stop took ${tStopped - tStop} ms); lease last renewed +${Number(n.leaseRenewedAtMs) - tStop} ms, expires +${expiresAt - tStop} ms; ` +
        `fence started +${Number(n.fenceStartedAtMs) - tStop} ms, fence patch accepted +${fencedAt - tStop} ms (${expiresAt - fencedAt} ms before expiry), ` +
        `Postgres refusing connections +${tDown - tStop} ms (fence latency: ${tDown - Number(n.fenceStartedAtMs)} ms from the agent's decision), i.e. ${expiresAt + SKEW_MS - tDown} ms before the coordinator may promote (expiry + ${SKEW_MS} ms margin)`,
    );

    const tRestart = Date.now();
    await nats.restart();
    // A fresh reader of the audit trail from the start of the stream.
    const audits: MessageOf<"audit">[] = [];
    await testBus.waitConnected(10_000);
    // JetStream needs a moment after a restart to load the stream: retry opening the reader.
    const reader = await waitFor(
      "an audit reader after the restart",
      () => testBus.subscribe(subjects.audit(FED), (m) => void (m.type === "audit" && audits.push(m)), { deadLetters: false }).catch(() => undefined),
      15_000,
      100,
    );
    try {
      const report = await waitFor("the self-fence audit record", () => audits.find((a) => a.data.action === "primary.self_fenced" && a.member === "pg-eu"), 20_000, 20);
      timings.push(`self-fence audit published ${Date.now() - tRestart} ms after NATS restarted`);
      expect(report.source).toBe("agent:eu");
      expect(report.data.actor).toBe("agent:eu");
      expect(report.data.numbers).toMatchObject({ leaseExpiresAtMs: expiresAt, fencedAtMs: fencedAt, leaseTtlMs: LEASE_TTL_MS, clockSkewMarginMs: SKEW_MS });
      expect(report.data.description).toMatch(/^fenced orders\/pg-eu through the local Kubernetes API because/);
    } finally {
      await reader.stop();
    }
    await waitFor("the collector again", () => subscribeCollector().then(() => true).catch(() => false), 15_000, 100);
    // It does not unfence by itself: the coordinator decides.
    await sleep(1_500);
    expect(await acceptsConnections(port)).toBe(false);
    expect((await getCluster("eu", "pg-eu")).metadata.annotations?.["cnpg.io/fencedInstances"]).toBe('["*"]');
    const fences = await agent.registry.getSingleMetricAsString("pgfed_agent_fences_total");
    expect(fences).toMatch(/reason="lease_expiring"\} 1/);

    // The coordinator's decision: unfence; the agent guards the primary again with a new term.
    const before = (await leases.read(leaseKeys.primary(FED)))?.lease.term ?? 0;
    const u = await command("pg-eu", { kind: "unfence" });
    expect(u.result.data).toMatchObject({ ok: true, data: { patched: true } });
    await waitFor("pg-eu back", () => acceptsConnections(port), 20_000, 100);
    await waitFor("the lease taken again with a new term", async () => {
      const r = await leases.read(leaseKeys.primary(FED));
      return r?.lease.holder === "agent:eu/pg-eu" && r.lease.term > before && !isExpired(r.lease, Date.now());
    }, 10_000);
  });

  it("switches over pg-eu → pg-us through the two agents with raw commands (demote, token, promote with it)", async () => {
    const t0 = performance.now();
    const d1 = await command("pg-eu", { kind: "demote", to: "pg-us" }, { label: "demote (patch)" });
    expect(d1.result.data).toMatchObject({ ok: true, data: { patched: true, role: "replica" } });
    const d2 = await command("pg-eu", { kind: "demote", to: "pg-us" });
    expect(d2.result.data).toMatchObject({ ok: true, data: { patched: false, role: "replica" } });
    const tokenObs = await waitMessage("pg-eu's demotion token in an observation", isObs("pg-eu", (o) => o.demotionToken !== undefined && !o.switchInProgress), { timeoutMs: 60_000 });
    const token = tokenObs.data.demotionToken ?? "";
    const tToken = performance.now();
    epoch += 1;
    const p1 = await command("pg-us", { kind: "promoteWithToken", token }, { label: "promoteWithToken (patch)" });
    expect(p1.result.data).toMatchObject({ ok: true, data: { patched: true, role: "primary" } });
    const p2 = await command("pg-us", { kind: "promoteWithToken", token });
    expect(p2.result.data).toMatchObject({ ok: true, data: { patched: false } });
    await waitMessage("pg-us promoted with the token", isObs("pg-us", (o) => o.role === "primary" && o.lastPromotionToken === token && o.ready), { timeoutMs: 60_000 });
    const tPromoted = performance.now();
    await waitFor("the lease held by pg-us's agent", async () => {
      const r = await leases.read(leaseKeys.primary(FED));
      return r?.lease.holder === "agent:us/pg-us" && !isExpired(r.lease, Date.now());
    }, 10_000);
    const c1 = await command("pg-us", { kind: "clearToken" });
    expect(c1.result.data).toMatchObject({ ok: true, data: { patched: true } });
    const c2 = await command("pg-us", { kind: "clearToken" });
    expect(c2.result.data).toMatchObject({ ok: true, data: { patched: false } });
    await waitMessage("pg-eu following as a ready replica", isObs("pg-eu", (o) => o.role === "replica" && o.ready), { timeoutMs: 60_000 });
    timings.push(`switchover through the agents: demote → token observed ${(tToken - t0).toFixed(0)} ms, promoteWithToken → promoted observed ${(tPromoted - tToken).toFixed(0)} ms`);
    // The old primary's guard stays quiet: it is a replica now.
    expect(must(agents, "eu").status().members.find((m) => m.member === "pg-eu")?.lease.state).not.toBe("fencing");
  });

  it("fails over back to pg-eu without a token once pg-us is fenced", async () => {
    epoch += 1;
    const f = await command("pg-us", { kind: "fence" });
    expect(f.result.data).toMatchObject({ ok: true, data: { patched: true } });
    const p1 = await command("pg-eu", { kind: "promoteWithoutToken" }, { label: "promoteWithoutToken (patch)" });
    expect(p1.result.data).toMatchObject({ ok: true, data: { patched: true, role: "primary" } });
    const p2 = await command("pg-eu", { kind: "promoteWithoutToken" });
    expect(p2.result.data).toMatchObject({ ok: true, data: { patched: false } });
    await waitMessage("pg-eu a ready primary again", isObs("pg-eu", (o) => o.role === "primary" && o.ready), { timeoutMs: 60_000 });
    await waitFor("the lease held by pg-eu's agent", async () => {
      const r = await leases.read(leaseKeys.primary(FED));
      return r?.lease.holder === "agent:eu/pg-eu" && !isExpired(r.lease, Date.now());
    }, 10_000);
    expect(await acceptsConnections(pgPort("eu", "pg-eu"))).toBe(true);
  });
});
