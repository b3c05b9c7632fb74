/**
 * The leader's shared intake against a real nats-server 2.9: one consumer on `pgfed.*.>` routes
 * each message to the runtime of its own federation only, drops those of federations nobody
 * registered, stops routing after unregister, and one runtime's throwing handler does not stall
 * the others.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, makeMessage, type Bus, type BusMessage, type Observation } from "../../../src/bus/index.js";
import { FederationIntake } from "../../../src/coordinator/intake.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { waitFor } from "../../../src/lab/proc.js";
import { silentLogger } from "../../../src/log.js";
import { createRegistry } from "../../../src/metrics.js";

let dir: string;
let nats: NatsServer;
let bus: Bus;

const observation: Observation = { role: "replica", phase: "Cluster in healthy state", fenced: false, switchInProgress: false, reachable: true, ready: true, archiving: "ok", resourceVersion: "1", timelineID: 1, currentPrimary: "x-1" };

const obs = (federation: string, member: string) => makeMessage("observation", { federation, member, epoch: 1, source: "agent:eu-west", data: observation });
const hb = (federation: string) => makeMessage("heartbeat", { federation, epoch: 1, source: "agent:eu-west", data: { region: "eu-west", agentId: "eu-west", members: ["pg-eu"] } });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-intake-"));
  nats = await startNats({ dir });
  bus = await connectBus({ servers: nats.url, name: "intake-test", log: silentLogger(), metrics: createRegistry() });
});

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("FederationIntake", () => {
  it("routes every federation's messages to its own handler only, through one consumer", async () => {
    const intake = new FederationIntake(bus, silentLogger());
    await intake.start();
    const got = new Map<string, BusMessage[]>([
      ["fed-a", []],
      ["fed-b", []],
      ["fed-boom", []],
    ]);
    intake.register("fed-a", (m) => got.get("fed-a")?.push(m));
    const unregisterB = intake.register("fed-b", (m) => got.get("fed-b")?.push(m));
    intake.register("fed-boom", (m) => {
      got.get("fed-boom")?.push(m);
      throw new Error("a runtime bug");
    });
    expect(intake.size).toBe(3);

    for (let i = 0; i < 5; i++) {
      await bus.publish(obs("fed-boom", "pg-eu"));
      await bus.publish(obs("fed-a", "pg-eu"));
      await bus.publish(obs("fed-b", "pg-us"));
      await bus.publish(obs("fed-c", "pg-eu"));
      await bus.publish(hb("fed-a"));
    }
    await waitFor("all routed", () => (got.get("fed-a")?.length ?? 0) === 10 && got.get("fed-b")?.length === 5 && got.get("fed-boom")?.length === 5, 10_000);
    expect(got.get("fed-a")?.every((m) => m.federation === "fed-a")).toBe(true);
    expect(got.get("fed-a")?.filter((m) => m.type === "heartbeat")).toHaveLength(5);
    expect(got.get("fed-b")?.every((m) => m.federation === "fed-b" && m.member === "pg-us")).toBe(true);
    await waitFor("fed-c dropped", () => intake.dropped >= 5, 5_000);
    expect(intake.dropped).toBe(5);

    unregisterB();
    await bus.publish(obs("fed-b", "pg-us"));
    await bus.publish(obs("fed-a", "pg-eu"));
    await waitFor("fed-a's 11th", () => got.get("fed-a")?.length === 11, 10_000);
    expect(got.get("fed-b")).toHaveLength(5);
    expect(intake.dropped).toBe(6);
    await intake.stop();
  });

  it("delivers only what is stored after start (deliverNew, like the per-federation consumers it replaces)", async () => {
    await bus.publish(obs("fed-old", "pg-eu"));
    const intake = new FederationIntake(bus, silentLogger());
    await intake.start();
    const got: BusMessage[] = [];
    intake.register("fed-old", (m) => got.push(m));
    const fresh = obs("fed-old", "pg-us");
    await bus.publish(fresh);
    await waitFor("the new message", () => got.length >= 1, 10_000);
    expect(got.map((m) => m.id)).toEqual([fresh.id]);
    await intake.stop();
  });
});
