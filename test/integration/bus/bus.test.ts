/**
 * The bus against a real nats-server 2.9 with JetStream: publish/subscribe, msgID dedup,
 * dead letters for bad input (rule 6), handler failures, the version warning.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, makeMessage, subjects, filters, type Bus, type BusMessage, type DeadLetter, type MessageOf, type Observation } from "../../../src/bus/index.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { waitFor } from "../../../src/lab/proc.js";

let dir: string;
let nats: NatsServer;
let bus: Bus;
let registry: Registry;
const logLines: Array<{ level: number; msg: string }> = [];

const observation: Observation = {
  role: "primary",
  phase: "Cluster in healthy state",
  fenced: false,
  switchInProgress: false,
  reachable: true,
  ready: true,
  archiving: "ok",
  resourceVersion: "42",
  timelineID: 1,
  currentPrimary: "pg-eu-1",
};

function obs(federation: string, member: string, id?: string): MessageOf<"observation"> {
  return makeMessage("observation", { federation, member, epoch: 1, source: "agent:eu-west", data: observation, ...(id ? { id } : {}) });
}

async function counterValue(name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (!metric) return 0;
  const data = await metric.get();
  return data.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((a, v) => a + v.value, 0);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-bus-"));
  nats = await startNats({ dir });
  registry = new Registry();
  const log = pino({ level: "debug" }, { write: (line: string) => void logLines.push(JSON.parse(line) as { level: number; msg: string }) });
  bus = await connectBus({ servers: nats.url, name: "bus-test", log, metrics: registry });
});

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("bus", () => {
  it("warns at connect that nats-server 2.9 ignores per-key TTL", () => {
    expect(bus.serverVersion).toMatch(/^2\.9\./);
    expect(bus.modernServer).toBe(false);
    const warning = logLines.find((l) => l.level === 40 && l.msg.includes("older than 2.10"));
    expect(warning?.msg).toContain("per-key TTL");
  });

  it("delivers a published observation to a subscriber, typed", async () => {
    const got: BusMessage[] = [];
    const sub = await bus.subscribe(filters.federation("orders"), (m) => void got.push(m), { durable: "rt" });
    const sent = obs("orders", "pg-eu");
    const ack = await bus.publish(sent);
    expect(ack).toMatchObject({ stream: "PGFED", duplicate: false });
    await waitFor("the observation", () => got.length === 1, 5_000);
    const m = got[0];
    expect(m).toEqual(sent);
    if (m?.type !== "observation") throw new Error("expected an observation");
    expect(m.data.role).toBe("primary");
    await sub.stop();
  });

  it("stores a message published twice with the same id once", async () => {
    const m = obs("dedup", "pg-eu", "obs-dedup-1");
    const first = await bus.publish(m);
    const second = await bus.publish(m);
    expect(first.duplicate).toBe(false);
    expect(second).toEqual({ ...first, duplicate: true });
    expect(await counterValue("pgfed_bus_duplicates_total", { type: "observation" })).toBe(1);

    const got: BusMessage[] = [];
    const sub = await bus.subscribe(filters.federation("dedup"), (msg) => void got.push(msg));
    await waitFor("the deduplicated message", () => got.length >= 1, 5_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(got).toHaveLength(1);
    await sub.stop();
  });

  it("dead-letters bad JSON, a wrong schema and a subject mismatch, counts them, and keeps consuming", async () => {
    const handled: BusMessage[] = [];
    const sub = await bus.subscribe(filters.federation("bad"), (m) => void handled.push(m), { durable: "bad-input" });
    const dead: DeadLetter[] = [];
    const dlq = await bus.subscribeDeadLetters((d) => void dead.push(d));

    await bus.js.publish(subjects.obs("bad", "pg-eu"), "{not json");
    const wrongSchema = { ...obs("bad", "pg-eu"), data: { ...observation, role: "leader" } };
    await bus.js.publish(subjects.obs("bad", "pg-eu"), JSON.stringify(wrongSchema));
    // A valid envelope for another member, on pg-eu's subject.
    await bus.js.publish(subjects.obs("bad", "pg-eu"), JSON.stringify(obs("bad", "pg-us")));
    const good = obs("bad", "pg-eu");
    await bus.publish(good);

    await waitFor("the good message after three bad ones", () => handled.length === 1, 5_000);
    expect(handled[0]?.id).toBe(good.id);
    await waitFor("three dead letters", () => dead.length === 3, 5_000);
    expect(dead.map((d) => d.reason).sort()).toEqual(["invalid_envelope", "invalid_json", "subject_mismatch"]);
    const schemaDl = dead.find((d) => d.reason === "invalid_envelope");
    expect(schemaDl?.error).toContain("data.role");
    expect(JSON.parse(Buffer.from(schemaDl?.payloadBase64 ?? "", "base64").toString("utf8"))).toEqual(wrongSchema);
    expect(dead.every((d) => d.subject === "pgfed.bad.obs.pg-eu" && d.consumer === "bad-input")).toBe(true);
    expect(await counterValue("pgfed_bus_dead_letters_total", { reason: "invalid_json" })).toBe(1);
    expect(await counterValue("pgfed_bus_dead_letters_total", { reason: "invalid_envelope" })).toBe(1);
    expect(logLines.filter((l) => l.msg.startsWith("dead-lettered message")).length).toBe(3);

    // Acked: a new consumer instance on the same durable sees nothing more.
    await sub.stop();
    const again: BusMessage[] = [];
    const sub2 = await bus.subscribe(filters.federation("bad"), (m) => void again.push(m), { durable: "bad-input" });
    await new Promise((r) => setTimeout(r, 300));
    expect(again).toHaveLength(0);
    await sub2.stop();
    await dlq.stop();
  });

  it("redelivers after a handler error, and dead-letters a message that keeps failing", async () => {
    const attempts = new Map<string, number>();
    const sub = await bus.subscribe(
      filters.channel("flaky", "obs"),
      (m) => {
        const n = (attempts.get(m.id) ?? 0) + 1;
        attempts.set(m.id, n);
        if (m.member === "pg-poison" || n < 2) throw new Error(`refusing ${m.member} on attempt ${n}`);
      },
      { durable: "flaky", nakDelayMs: 50, maxDeliver: 3 },
    );
    const recovers = obs("flaky", "pg-eu");
    const poison = obs("flaky", "pg-poison");
    await bus.publish(recovers);
    await bus.publish(poison);
    await waitFor("the recovering message to succeed on its second delivery", () => attempts.get(recovers.id) === 2, 5_000);
    await waitFor("the poison message to be dead-lettered", async () => (await counterValue("pgfed_bus_dead_letters_total", { reason: "handler_failed" })) === 1, 5_000);
    expect(attempts.get(poison.id)).toBe(3);
    expect(await counterValue("pgfed_bus_handler_errors_total", { consumer: "flaky" })).toBe(4);
    await sub.stop();
  });

  it("reads from a stream sequence with an ordered consumer", async () => {
    const a = await bus.publish(makeMessage("audit", { federation: "audited", epoch: 3, source: "api:alice", data: { actor: "operator:alice", action: "switchover.requested", reason: "maintenance", numbers: { lagBytes: 0 }, description: "switchover requested" } }));
    await bus.publish(makeMessage("audit", { federation: "audited", member: "pg-us", epoch: 3, source: "coordinator:c1", data: { actor: "coordinator:c1", action: "command.sent", reason: "step 1", numbers: {}, description: "demote pg-eu" } }));
    const got: BusMessage[] = [];
    const sub = await bus.subscribe(filters.allAudit(), (m) => void got.push(m), { startSeq: a.seq });
    await waitFor("two audit records", () => got.length === 2, 5_000);
    expect(got.map((m) => m.type)).toEqual(["audit", "audit"]);
    await sub.stop();
  });

  it("refuses to publish an invalid message and names the field", async () => {
    const bad = { ...obs("orders", "pg-eu"), epoch: -1 };
    await expect(bus.publish(bad)).rejects.toThrow(/epoch/);
    await expect(bus.publish({ ...obs("orders", "pg-eu"), federation: "dlq" })).rejects.toThrow(/federation: reserved/);
    await expect(bus.subscribe("orders.>", () => undefined)).rejects.toThrow(/must start with "pgfed\."/);
  });

  it("ensures the stream idempotently, updating limits that changed", async () => {
    const jsm = await bus.js.jetstreamManager();
    const before = await jsm.streams.info("PGFED");
    expect(before.config).toMatchObject({ subjects: ["pgfed.>"], storage: "file", duplicate_window: 120_000_000_000 });
    const second = await connectBus({ servers: nats.url, name: "bus-test-2", log: pino({ level: "silent" }), metrics: new Registry(), stream: { maxAgeMs: 3 * 86_400_000 } });
    const after = await jsm.streams.info("PGFED");
    expect(after.config.max_age).toBe(3 * 86_400_000 * 1_000_000);
    expect(after.state.messages).toBe(before.state.messages);
    await second.close();
  });

  it("exposes published and dead-letter counters on the injected registry", async () => {
    const text = await registry.metrics();
    expect(text).toContain("pgfed_bus_published_total");
    expect(text).toContain('pgfed_bus_dead_letters_total{reason="invalid_json"} 1');
  });
});
