/**
 * Leases on KV values with expiry times and compare-and-swap, against a real nats-server 2.9
 * (which ignores per-key TTL); and the keeper an agent uses to fence a primary it can no longer
 * vouch for.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, isExpired, leaseKeys, openLeases, LeaseKeeper, LeaseLostError, type Bus, type HeldLease, type LeaseStore } from "../../../src/bus/index.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { silentLogger } from "../../../src/log.js";
import { waitFor } from "../../../src/lab/proc.js";

let dir: string;
let nats: NatsServer;
let bus: Bus;
let leases: LeaseStore;
let registry: Registry;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-lease-"));
  nats = await startNats({ dir });
  registry = new Registry();
  bus = await connectBus({ servers: nats.url, name: "lease-test", log: silentLogger(), metrics: registry, reconnectDelayMs: { min: 50, max: 200 }, requestTimeoutMs: 1_000 });
  leases = await openLeases(bus);
});

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function mustAcquire(key: string, holder: string, ttlMs: number): Promise<HeldLease> {
  const r = await leases.acquire(key, holder, ttlMs);
  if (!r.ok) throw new Error(`expected ${holder} to acquire ${key}, but ${r.current.holder} holds it`);
  return r.held;
}

describe("leases", () => {
  it("is taken by A; B cannot take it while it is valid, and can once it expired", async () => {
    const key = leaseKeys.primary("orders");
    const a = await mustAcquire(key, "agent:eu-west", 300);
    expect(a.lease).toMatchObject({ holder: "agent:eu-west", term: 1 });
    const refused = await leases.acquire(key, "agent:us-east", 300);
    expect(refused).toMatchObject({ ok: false, current: { holder: "agent:eu-west", term: 1 } });
    await sleep(350);
    const b = await mustAcquire(key, "agent:us-east", 300);
    expect(b.lease.term).toBe(2);
    // A's renewal now fails: the lease changed hands.
    await expect(leases.renew(a, 300)).rejects.toBeInstanceOf(LeaseLostError);
  });

  it("stays with its holder while renewed, past several TTLs", async () => {
    const key = leaseKeys.coordinator;
    let held = await mustAcquire(key, "coordinator:c1", 300);
    for (let i = 0; i < 6; i++) {
      await sleep(100);
      held = await leases.renew(held, 300);
      expect((await leases.acquire(key, "coordinator:c2", 300)).ok).toBe(false);
    }
    expect(held.lease.term).toBe(1);
    expect(await leases.release(held)).toBe(true);
    const c2 = await mustAcquire(key, "coordinator:c2", 300);
    expect(c2.lease.term).toBe(2);
  });

  it("re-acquiring a lease one already holds keeps its term; only one of two racers wins a free lease", async () => {
    const key = leaseKeys.primary("racy");
    const results = await Promise.all([leases.acquire(key, "agent:a", 1_000), leases.acquire(key, "agent:b", 1_000)]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    const winner = results.find((r) => r.ok);
    if (!winner?.ok) throw new Error("no winner");
    const again = await leases.acquire(key, winner.held.lease.holder, 1_000);
    expect(again.ok && again.held.lease.term).toBe(winner.held.lease.term);
  });

  it("applies the reader's clock-skew margin", () => {
    const lease = { holder: "agent:eu-west", expiresAtMs: 10_000, renewedAtMs: 9_000, term: 3 };
    expect(isExpired(lease, 10_500)).toBe(true);
    expect(isExpired(lease, 10_500, 2_000)).toBe(false);
    expect(isExpired(lease, 12_001, 2_000)).toBe(true);
  });
});

describe("lease keeper", () => {
  it("holds the lease, reports it lost when NATS is down longer than the TTL, and takes it again after NATS is back", async () => {
    const events: string[] = [];
    let lostAt: number | undefined;
    const ttlMs = 400;
    const keeper = new LeaseKeeper({
      leases,
      key: leaseKeys.primary("partitioned"),
      holder: "agent:eu-west",
      ttlMs,
      log: silentLogger(),
      bus,
      onAcquired: (h) => events.push(`acquired:${h.lease.term}`),
      onLost: (info) => {
        events.push(`lost:${info.reason}`);
        lostAt = info.lostAt;
      },
    });
    keeper.start();
    await waitFor("the keeper to acquire", () => keeper.held !== undefined, 5_000);
    // Renewals keep it across several TTLs.
    await sleep(ttlMs * 2);
    expect(events).toEqual(["acquired:1"]);
    const lastExpiry = keeper.held?.lease.expiresAtMs ?? 0;

    await nats.stop();
    const stoppedAt = Date.now();
    await waitFor("the keeper to report the lease lost", () => events.includes("lost:expired"), 5_000);
    expect(keeper.held).toBeUndefined();
    expect(keeper.isHolder()).toBe(false);
    // Lost at the expiry of the last renewal, no later than one TTL after the bus went away.
    expect(lostAt).toBeGreaterThanOrEqual(lastExpiry);
    expect(lostAt).toBeLessThanOrEqual(stoppedAt + ttlMs + 50);
    expect(keeper.lostAt).toBe(lostAt);

    await nats.restart();
    await waitFor("the keeper to acquire again", () => events.includes("acquired:2"), 10_000);
    expect(keeper.lostAt).toBeUndefined();
    expect(events).toEqual(["acquired:1", "lost:expired", "acquired:2"]);
    const losses = await registry.getSingleMetric("pgfed_bus_lease_losses_total")?.get();
    expect(losses?.values[0]?.value).toBe(1);

    await keeper.stop();
    const after = await leases.read(leaseKeys.primary("partitioned"));
    expect(after && isExpired(after.lease, Date.now())).toBe(true);
  });

  it("reports the lease lost at once when another holder took it", async () => {
    const key = leaseKeys.primary("stolen");
    const reasons: string[] = [];
    const keeper = new LeaseKeeper({ leases, key, holder: "agent:eu-west", ttlMs: 300, log: silentLogger(), onLost: (i) => reasons.push(i.reason) });
    keeper.start();
    await waitFor("the keeper to acquire", () => keeper.held !== undefined, 5_000);
    // An operator (or a bug) overwrites the lease behind the keeper's back.
    const cur = await leases.read(key);
    if (!cur) throw new Error("no lease");
    const kvLeases = await openLeases(bus);
    await kvLeases.release({ key, lease: cur.lease, revision: cur.revision });
    const taken = await kvLeases.acquire(key, "agent:us-east", 60_000);
    expect(taken.ok).toBe(true);
    await waitFor("the keeper to notice", () => reasons.length > 0, 5_000);
    expect(reasons).toEqual(["taken"]);
    await keeper.stop();
    expect((await leases.read(key))?.lease.holder).toBe("agent:us-east");
  });
});
