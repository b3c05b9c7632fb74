/**
 * NATS going away and coming back (same store): publishes wait and land once, durable consumers
 * resume where they were, KV state survives, the reconnect hook runs; and when NATS stays away,
 * publishes fail clearly instead of piling up.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { connectBus, filters, makeMessage, openStateStore, type Bus, type LagSample, type MessageOf } from "../../../src/bus/index.js";
import { PgfedError } from "../../../src/errors.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { silentLogger } from "../../../src/log.js";
import { waitFor } from "../../../src/lab/proc.js";

let dir: string;
let nats: NatsServer;
const buses: Bus[] = [];

const sample: LagSample = { role: "primary", currentLsn: "0/3000060", inRecovery: false, sampledAtMs: 1_700_000_000_000, timeline: 1 };

function lag(federation: string, id: string): MessageOf<"lag"> {
  return makeMessage("lag", { federation, member: "pg-eu", epoch: 2, source: "agent:eu-west", id, data: sample });
}

async function open(name: string, extra: Partial<Parameters<typeof connectBus>[0]> = {}): Promise<Bus> {
  const bus = await connectBus({ servers: nats.url, name, log: silentLogger(), metrics: new Registry(), reconnectDelayMs: { min: 50, max: 300 }, ...extra });
  buses.push(bus);
  return bus;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-restart-"));
  nats = await startNats({ dir });
});

afterAll(async () => {
  for (const b of buses) await b.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("NATS restart", () => {
  it("resumes durable consumers, lands publishes made while it was down, and keeps KV state", async () => {
    let reconnects = 0;
    const bus = await open("restart", { onReconnect: () => void reconnects++, publishTimeoutMs: 15_000 });
    const state = await openStateStore(bus, z.object({ epoch: z.number() }));
    const rev = await state.create("orders", { epoch: 7 });

    const handled: string[] = [];
    let releaseSlow: () => void = () => undefined;
    const slowGate = new Promise<void>((r) => (releaseSlow = r));
    const sub = await bus.subscribe(
      filters.federation("restart"),
      async (m) => {
        if (m.id === "lag-slow") await slowGate;
        handled.push(m.id);
      },
      { durable: "coordinator", ackWaitMs: 1_500 },
    );

    for (let i = 1; i <= 3; i++) await bus.publish(lag("restart", `lag-${i}`));
    await waitFor("the first three", () => handled.length === 3, 5_000);
    // A message in the handler (not acked yet) when the server goes down, and one behind it.
    await bus.publish(lag("restart", "lag-slow"));
    await bus.publish(lag("restart", "lag-4"));
    await sleep(100);

    await nats.stop();
    await waitFor("the bus to notice", () => !bus.connected, 5_000);
    const whileDown = bus.publish(lag("restart", "lag-while-down"));
    await sleep(500);
    await nats.restart();
    const ack = await whileDown;
    expect(ack.duplicate).toBe(false);
    releaseSlow();

    for (let i = 5; i <= 6; i++) await bus.publish(lag("restart", `lag-${i}`));
    const all = ["lag-1", "lag-2", "lag-3", "lag-slow", "lag-4", "lag-while-down", "lag-5", "lag-6"];
    await waitFor("every message handled after the restart", () => all.every((id) => handled.includes(id)), 15_000);
    // Each stored once; at-least-once delivery may repeat the one in flight at the restart.
    expect(new Set(handled)).toEqual(new Set(all));
    expect(handled.filter((id) => id !== "lag-slow" && id !== "lag-4").length).toBe(all.length - 2);
    await waitFor("the reconnect hook", () => reconnects >= 1, 5_000);

    expect(await state.get("orders")).toMatchObject({ value: { epoch: 7 }, revision: rev });
    await sub.stop();

    // A new process with the same durable name starts after the last ack, not from the beginning.
    const other = await open("restart-2");
    const replayed: string[] = [];
    const sub2 = await other.subscribe(filters.federation("restart"), (m) => void replayed.push(m.id), { durable: "coordinator" });
    await other.publish(lag("restart", "lag-7"));
    await waitFor("the next message", () => replayed.includes("lag-7"), 5_000);
    expect(replayed).toEqual(["lag-7"]);
    await sub2.stop();
  });

  it("fails a publish clearly when NATS stays away, and refuses beyond the waiting limit", async () => {
    const bus = await open("impatient", { publishTimeoutMs: 600, maxPendingPublishes: 2 });
    await bus.publish(lag("impatient", "before"));
    await nats.kill();
    await waitFor("the bus to notice", () => !bus.connected, 5_000);

    const started = Date.now();
    const waiting = [bus.publish(lag("impatient", "a")), bus.publish(lag("impatient", "b"))];
    const third = await bus.publish(lag("impatient", "c")).catch((e: unknown) => e);
    expect(third).toBeInstanceOf(PgfedError);
    expect(third).toMatchObject({ code: "bus.publish_backlog_full" });

    const results = await Promise.allSettled(waiting);
    expect(Date.now() - started).toBeLessThan(3_000);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      const err: unknown = r.status === "rejected" ? r.reason : undefined;
      expect(err).toMatchObject({ code: "bus.publish_failed" });
      expect((err as Error).message).toMatch(/while publishing lag [ab] for impatient\/pg-eu on pgfed\.impatient\.lag\.pg-eu: not acknowledged within 600 ms/);
    }

    await nats.restart();
    await bus.waitConnected(10_000);
    // The caller re-derives and sends again with the same id: stored once.
    const again = await bus.publish(lag("impatient", "a"));
    expect(again.duplicate).toBe(false);
    expect((await bus.publish(lag("impatient", "a"))).duplicate).toBe(true);
  });

  it("closes promptly while NATS is down, subscriptions included", async () => {
    const bus = await open("closing", { requestTimeoutMs: 1_000 });
    const sub = await bus.subscribe(filters.federation("closing"), () => undefined, { durable: "closing" });
    await nats.kill();
    await waitFor("the bus to notice", () => !bus.connected, 5_000);
    const started = Date.now();
    await sub.stop();
    await bus.close();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(bus.nc.isClosed()).toBe(true);
    await expect(bus.publish(lag("closing", "late"))).rejects.toMatchObject({ code: "bus.closed" });
    await nats.restart();
  });
});
