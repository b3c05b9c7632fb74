/**
 * The agent's fence sweep (fencing.ts) against the real thing: the lab (nats-server with
 * JetStream, the Kubernetes API and CNPG stand-ins over real Postgres), no coordinator: the test
 * writes the federation record in KV `pgfed_state` as the coordinator would, then starts the agent
 * of eu-west, whose member pg-eu is the primary cluster by its spec.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Registry } from "prom-client";
import { z } from "zod";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { agentMembersFromConfig, startAgent, type Agent } from "../../../src/agent/index.js";
import { connectBus, openLeases, openStateStore, type Bus, type BusMessage, type BusSubscription, type LeaseStore, type MessageOf, type StateStore } from "../../../src/bus/index.js";
import { isFullyFenced } from "../../../src/cnpg/index.js";
import { RegionClient } from "../../../src/kube/region.js";
import { LAB_FEDERATION, LAB_NAMESPACE, startLab, type Lab } from "../../../src/lab/lab.js";
import { waitFor } from "../../../src/lab/proc.js";
import { createLogger, silentLogger, type Logger } from "../../../src/log.js";

const FED = LAB_FEDERATION;
const REGION = "eu-west";
const log: Logger = process.env.AGENT_TEST_LOG ? createLogger({ level: process.env.AGENT_TEST_LOG, pretty: false }) : silentLogger();
const timings: string[] = [];

let dir: string;
let lab: Lab;
let testBus: Bus;
let records: StateStore<unknown>;
let collector: BusSubscription;
const seen: BusMessage[] = [];
let running: { agent: Agent; bus: Bus } | undefined;

function connectAgentBus(): Promise<Bus> {
  return connectBus({ ...lab.busOptions(REGION), manageStream: false, name: `sweep-test-${REGION}`, log, metrics: new Registry(), requestTimeoutMs: 1_000, reconnectDelayMs: { min: 50, max: 200 } });
}

/** Starts the agent of eu-west as the lab's control plane does (own bus connection, lab kubeconfig). */
async function startEuAgent(connected?: { bus: Bus; leases: LeaseStore }): Promise<Agent> {
  const bus = connected?.bus ?? (await connectAgentBus());
  const leases = connected?.leases ?? (await openLeases(bus));
  const agent = await startAgent({
    agentId: REGION,
    region: REGION,
    kube: new RegionClient({ region: REGION, kubeconfigPath: lab.kubeconfigPath, context: REGION, log }),
    bus,
    leases,
    members: agentMembersFromConfig(lab.config, REGION),
    log,
    registry: new Registry(),
    heartbeatIntervalMs: 500,
  });
  running = { agent, bus };
  return agent;
}

async function stopEuAgent(): Promise<void> {
  const r = running;
  running = undefined;
  if (!r) return;
  await r.agent.stop();
  await r.bus.close();
}

async function euFenced(): Promise<boolean> {
  return isFullyFenced(await lab.getCluster("pg-eu"));
}

const euOperator = () => lab.region(REGION).operator;
const euRunning = () => euOperator().instance(LAB_NAMESPACE, "pg-eu")?.running === true;

/** The first observation of pg-eu the agent published from message index `from` on. */
function firstEuObservation(from: number): Promise<MessageOf<"observation">> {
  return waitFor(
    "the agent's first observation of pg-eu",
    () => seen.slice(from).find((m): m is MessageOf<"observation"> => m.type === "observation" && m.member === "pg-eu" && m.source === `agent:${REGION}`),
    10_000,
    10,
  );
}

/** A federation record as the coordinator writes it (coordinator/record.ts), with the fields the sweep reads. */
function record(epoch: number, designatedPrimary: string | null, op?: { id: string; kind: string; target: string | null }): Record<string, unknown> {
  return {
    epoch,
    designatedPrimary,
    operationId: op?.id ?? null,
    step: op ? "confirm" : null,
    leader: "test",
    updatedAt: new Date().toISOString(),
    snapshot: null,
    operations: op ? [{ ...op, federation: FED, state: "running", step: "confirm", from: "pg-us" }] : [],
  };
}

async function putRecord(value: unknown): Promise<void> {
  await records.modify(FED, () => value);
}

beforeAll(async () => {
  const t0 = Date.now();
  dir = await mkdtemp(join(tmpdir(), "pgfed-sweep-"));
  lab = await startLab({ dir, regions: 2, log });
  testBus = await connectBus({ ...lab.busOptions("coordinator", 2), name: "sweep-test", log, metrics: new Registry() });
  records = await openStateStore(testBus, z.unknown(), { scope: "*" });
  collector = await testBus.subscribe(`pgfed.${FED}.>`, (m) => void seen.push(m), { deliverNew: true, deadLetters: false });
  timings.push(`setup (lab: NATS, 2 kube APIs, 2 operators, 2 Postgres): ${Date.now() - t0} ms`);
}, 180_000);

afterAll(async () => {
  if (timings.length > 0) console.log(`fence sweep measurements:\n  ${timings.join("\n  ")}`);
  await stopEuAgent().catch(() => undefined);
  await collector?.stop().catch(() => undefined);
  await testBus?.close().catch(() => undefined);
  await lab?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  await stopEuAgent();
  // Each case starts from pg-eu an unfenced, running primary cluster.
  if (await euFenced()) lab.region(REGION).kubeApi.store.patch("clusters", { namespace: LAB_NAMESPACE, name: "pg-eu" }, { metadata: { annotations: { "cnpg.io/fencedInstances": null } } });
  await waitFor("pg-eu running unfenced", () => euRunning(), 30_000, 50);
});

describe("the agent's fence sweep", () => {
  it("fences its member at start, before publishing any observation, when the record designates another primary; the restarted instance stays stopped", async () => {
    await putRecord(record(2, "pg-us"));
    // The region was lost: Postgres down and held, as before a restore.
    await euOperator().killInstance(LAB_NAMESPACE, "pg-eu", { hold: true });
    const from = seen.length;
    const t0 = Date.now();
    const agent = await startEuAgent();
    const startMs = Date.now() - t0;
    // Already fenced when startAgent returns: the sweep ran inside start().
    expect(await euFenced()).toBe(true);
    const sweep = agent.status().startupSweep;
    expect(sweep.state).toBe("done");
    expect(sweep.fenced).toEqual([`${FED}/pg-eu`]);
    const first = await firstEuObservation(from);
    expect(first.data.fenced).toBe(true);
    expect(first.data.role).toBe("primary");

    // The CNPG stand-in reads the Cluster before starting Postgres: fenced keeps it stopped.
    await euOperator().restartInstance(LAB_NAMESPACE, "pg-eu");
    await sleep(500);
    expect(euRunning()).toBe(false);
    expect((await lab.getCluster("pg-eu")).status?.phaseReason).toMatch(/fenced/);

    const audit = await waitFor(
      "the sweep's audit record",
      () => seen.slice(from).find((m): m is MessageOf<"audit"> => m.type === "audit" && m.member === "pg-eu" && m.data.action === "primary.superseded_fenced"),
      10_000,
      10,
    );
    expect(audit.source).toBe(`agent:${REGION}`);
    expect(audit.data.description).toMatch(/designates pg-us at epoch 2/);
    expect(audit.data.numbers).toMatchObject({ recordEpoch: 2, designatedPrimary: "pg-us" });
    const fences = await agent.registry.getSingleMetricAsString("pgfed_agent_fences_total");
    expect(fences).toMatch(/member="pg-eu",reason="superseded"\} 1/);
    expect(agent.status().members.find((m) => m.member === "pg-eu")?.lease.state).toBe("idle");
    timings.push(`sweep at start: ${sweep.durationMs} ms from start() to the fence patch accepted (KV read ${sweep.kvReadMs} ms); startAgent took ${startMs} ms in all`);
  });

  it("leaves its member alone when the record designates it, or when an in-flight failover targets it", async () => {
    await putRecord(record(3, "pg-eu"));
    let from = seen.length;
    let agent = await startEuAgent();
    expect(agent.status().startupSweep).toMatchObject({ state: "done", fenced: [] });
    expect((await firstEuObservation(from)).data).toMatchObject({ role: "primary", fenced: false });
    await sleep(1_000);
    expect(await euFenced()).toBe(false);
    await stopEuAgent();

    // A failover TO pg-eu whose designation the record does not show yet: not a former primary.
    await putRecord(record(4, "pg-us", { id: "op-to-eu", kind: "failover", target: "pg-eu" }));
    from = seen.length;
    agent = await startEuAgent();
    expect(agent.status().startupSweep).toMatchObject({ state: "done", fenced: [] });
    expect((await firstEuObservation(from)).data).toMatchObject({ role: "primary", fenced: false });
    await sleep(1_000);
    expect(await euFenced()).toBe(false);
    expect(euRunning()).toBe(true);
  });

  it("fences nothing on a guess while the record cannot be read, and fences once a usable record names another primary", async () => {
    // Not a record pgfed can read (epoch is not a number).
    await putRecord({ epoch: "two", designatedPrimary: "pg-us" });
    const from = seen.length;
    const agent = await startEuAgent();
    expect(agent.status().startupSweep).toMatchObject({ state: "done", fenced: [] });
    expect((await firstEuObservation(from)).data).toMatchObject({ role: "primary", fenced: false });
    await sleep(1_500);
    expect(await euFenced()).toBe(false);
    expect(euRunning()).toBe(true);

    // The record becomes usable: the agent follows it (ensure-style) and fences.
    const t = Date.now();
    await putRecord(record(5, "pg-us"));
    await waitFor("pg-eu fenced after the record changed", () => euFenced(), 10_000, 20);
    timings.push(`sweep on a record change: pg-eu fenced ${Date.now() - t} ms after the record named pg-us`);
    await waitFor("pg-eu's Postgres stopped", () => !euRunning(), 15_000, 50);
  });

  it("fences nothing when KV does not answer at start (NATS down), although the stored record names another primary", async () => {
    await putRecord(record(6, "pg-us"));
    const bus = await connectAgentBus();
    const leases = await openLeases(bus);
    await lab.nats.stop();
    try {
      const t = Date.now();
      // The agent cannot subscribe to its commands either, so its start fails, after a sweep that fenced nothing.
      await expect(startEuAgent({ bus, leases })).rejects.toThrow();
      timings.push(`start with NATS down: refused after ${Date.now() - t} ms, nothing fenced`);
      expect(await euFenced()).toBe(false);
      expect(euRunning()).toBe(true);
    } finally {
      await bus.close().catch(() => undefined);
      await lab.nats.restart();
      await testBus.waitConnected(15_000);
    }
  });
});
