/**
 * The KV state store against a real nats-server: compare-and-swap, read-modify-write retries,
 * schema checks on read, watch and keys (rule 5).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { Kvm } from "@nats-io/kv";
import { connectBus, openStateStore, stateKeys, InvalidStateError, StaleRevisionError, type Bus, type StateChange, type StateStore } from "../../../src/bus/index.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { silentLogger } from "../../../src/log.js";
import { waitFor } from "../../../src/lab/proc.js";

const federationState = z.object({ epoch: z.number().int().nonnegative(), designatedPrimary: z.string(), operation: z.string().optional() });
type FederationState = z.infer<typeof federationState>;

let dir: string;
let nats: NatsServer;
let bus: Bus;
let store: StateStore<FederationState>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-state-"));
  nats = await startNats({ dir });
  bus = await connectBus({ servers: nats.url, name: "state-test", log: silentLogger(), metrics: new Registry() });
  store = await openStateStore(bus, federationState);
});

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("state store", () => {
  it("creates a value once, reads it back with its revision", async () => {
    const rev = await store.create("orders", { epoch: 1, designatedPrimary: "pg-eu" });
    expect(await store.get("orders")).toMatchObject({ key: "orders", value: { epoch: 1, designatedPrimary: "pg-eu" }, revision: rev });
    await expect(store.create("orders", { epoch: 9, designatedPrimary: "pg-us" })).rejects.toBeInstanceOf(StaleRevisionError);
    expect(await store.get("absent")).toBeUndefined();
  });

  it("lets exactly one of two concurrent updates at the same revision win", async () => {
    const rev = await store.create("race", { epoch: 1, designatedPrimary: "pg-eu" });
    const results = await Promise.allSettled([
      store.update("race", { epoch: 2, designatedPrimary: "pg-us" }, rev),
      store.update("race", { epoch: 2, designatedPrimary: "pg-ap" }, rev),
    ]);
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    const err: unknown = lost[0]?.reason;
    expect(err).toBeInstanceOf(StaleRevisionError);
    expect(err).toMatchObject({ code: "bus.stale_revision", key: "race", expectedRevision: rev });
    expect((err as Error).message).toContain("stale revision");
  });

  it("retries modify() on conflicts until its change applies", async () => {
    await store.create("counter", { epoch: 0, designatedPrimary: "pg-eu" });
    const bump = () => store.modify("counter", (cur) => (cur ? { ...cur, epoch: cur.epoch + 1 } : undefined), { retries: 20 });
    await Promise.all(Array.from({ length: 5 }, bump));
    expect((await store.get("counter"))?.value.epoch).toBe(5);
    const created = await store.modify("fresh", (cur) => cur ?? { epoch: 1, designatedPrimary: "pg-us" });
    expect(created?.value.designatedPrimary).toBe("pg-us");
    const unchanged = await store.modify("fresh", () => undefined);
    expect(unchanged?.revision).toBe(created?.revision);
  });

  it("gives up modify() with StaleRevisionError when retries run out", async () => {
    await store.create("busy", { epoch: 0, designatedPrimary: "pg-eu" });
    let calls = 0;
    const attempt = store.modify(
      "busy",
      async (cur) => {
        calls++;
        // Someone else writes between our read and our write, every time.
        await store.modify("busy", (c) => (c ? { ...c, epoch: c.epoch + 100 } : undefined));
        return cur ? { ...cur, operation: "mine" } : undefined;
      },
      { retries: 2 },
    );
    await expect(attempt).rejects.toBeInstanceOf(StaleRevisionError);
    expect(calls).toBe(3);
  });

  it("reports an invalid stored value naming the key and field, without overwriting it", async () => {
    const kv = await new Kvm(bus.js).open("pgfed_state");
    await kv.put("corrupt", JSON.stringify({ epoch: "one", designatedPrimary: "pg-eu" }));
    const err = await store.get("corrupt").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidStateError);
    expect((err as Error).message).toMatch(/pgfed_state\/corrupt at revision \d+ holds an invalid value: epoch/);
    await expect(store.modify("corrupt", () => ({ epoch: 1, designatedPrimary: "x" }))).rejects.toBeInstanceOf(InvalidStateError);
    await kv.put("notjson", "{");
    await expect(store.get("notjson")).rejects.toThrow(/not JSON/);
  });

  it("refuses to write a value its schema rejects, and keys outside its scope", async () => {
    await expect(store.create("typed", { epoch: -1, designatedPrimary: "pg-eu" })).rejects.toThrow(/refusing to write it: epoch/);
    await expect(store.get("orders.snapshot.member-pg-eu")).rejects.toThrow(/outside this store's scope/);
    await expect(store.get("bad key")).rejects.toThrow(/invalid state key/);
  });

  it("keeps snapshots under <federation>.snapshot.<machine> in their own store", async () => {
    const snapshots = await openStateStore(bus, z.object({ value: z.string() }), { scope: stateKeys.snapshots });
    await snapshots.create(stateKeys.snapshot("orders", "member-pg-eu"), { value: "replica" });
    await snapshots.create(stateKeys.snapshot("orders", "federation"), { value: "idle" });
    expect(await snapshots.keys()).toEqual(["orders.snapshot.federation", "orders.snapshot.member-pg-eu"]);
    const fedKeys = await store.keys();
    expect(fedKeys).toContain("orders");
    expect(fedKeys.some((k) => k.includes("."))).toBe(false);
  });

  it("watches changes in scope, delivering invalid values as such instead of throwing", async () => {
    const seen: Array<StateChange<FederationState>> = [];
    const w = await store.watch((c) => void seen.push(c), { updatesOnly: true });
    const rev = await store.create("watched", { epoch: 1, designatedPrimary: "pg-eu" });
    await store.update("watched", { epoch: 2, designatedPrimary: "pg-us" }, rev);
    const kv = await new Kvm(bus.js).open("pgfed_state");
    await kv.put("watched", "garbage");
    await store.delete("watched");
    await waitFor("four changes", () => seen.length >= 4, 5_000);
    expect(seen.map((c) => c.kind)).toEqual(["put", "put", "invalid", "delete"]);
    expect(seen[1]).toMatchObject({ kind: "put", value: { epoch: 2 } });
    const invalid = seen[2];
    expect(invalid?.kind === "invalid" && invalid.error).toBeInstanceOf(InvalidStateError);
    await w.stop();
    expect(await store.get("watched")).toBeUndefined();
    // A deleted key can be created again.
    expect(await store.create("watched", { epoch: 3, designatedPrimary: "pg-eu" })).toBeGreaterThan(0);
  });
});
