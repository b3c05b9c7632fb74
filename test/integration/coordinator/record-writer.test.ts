/**
 * The federation record writer against a real nats-server KV: CAS writes, stepping down when
 * another coordinator writes, and the epoch rule the coordinator applies to the one fence it
 * writes itself (fencing.ts: it acts only while the stored record names it the writer at that epoch).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, openStateStore, type Bus, type StateStore } from "../../../src/bus/index.js";
import { federationRecordSchema, type FederationRecord } from "../../../src/coordinator/record.js";
import { RecordWriter, type RecordValue } from "../../../src/coordinator/runtime/persistence.js";
import { PgfedError } from "../../../src/errors.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { silentLogger } from "../../../src/log.js";

const log = silentLogger();
let dir: string;
let nats: NatsServer;
let bus: Bus;
let store: StateStore<FederationRecord>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-record-writer-"));
  nats = await startNats({ dir });
  bus = await connectBus({ servers: nats.url, name: "record-writer-test", log, metrics: new Registry() });
  store = await openStateStore(bus, federationRecordSchema);
});

afterAll(async () => {
  await bus?.close();
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function writerFor(federation: string, coordinatorId: string, stale: string[]): RecordWriter {
  return new RecordWriter({ federation, coordinatorId, store, log, now: Date.now, onStale: (_f, why) => stale.push(why), stopped: () => false });
}

function value(leader: string, epoch: number): RecordValue {
  return { epoch, designatedPrimary: "pg-eu", operationId: null, step: null, leader, snapshot: null, operations: [] };
}

async function refusal(p: Promise<unknown>): Promise<PgfedError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  if (!(e instanceof PgfedError)) throw new Error(`expected a PgfedError, got ${String(e)}`);
  return e;
}

describe("RecordWriter", () => {
  it("confirms the writer only at the stored epoch and for the coordinator that wrote it", async () => {
    const stale: string[] = [];
    const a = writerFor("orders", "coord-a", stale);
    a.persist(value("coord-a", 2));
    await a.flushed();
    await expect(a.confirmWriter(2)).resolves.toBeUndefined();

    const older = await refusal(a.confirmWriter(1));
    expect(older.code).toBe("coordinator.superseded");
    expect(older.message).toBe("orders: not acting at epoch 1: the stored record is at epoch 2, written by coord-a");

    // Another coordinator that never wrote the record may not act for it, at any epoch.
    const b = writerFor("orders", "coord-b", stale);
    const other = await refusal(b.confirmWriter(2));
    expect(other.code).toBe("coordinator.superseded");
    expect(other.message).toContain("written by coord-a");
    expect(stale).toEqual([]);
  });

  it("steps down when another coordinator wrote the record meanwhile, and then confirms nothing", async () => {
    const stale: string[] = [];
    const a = writerFor("payments", "coord-a", stale);
    a.persist(value("coord-a", 1));
    await a.flushed();
    // A new leader claims the record at the next epoch (its own CAS on the revision it read).
    const cur = await store.get("payments");
    if (!cur) throw new Error("record not stored");
    await store.update("payments", { ...value("coord-b", 2), updatedAt: new Date().toISOString() }, cur.revision);

    // Its next transition (an operation starting) is refused by the CAS.
    a.persist({ ...value("coord-a", 1), operationId: "op-1", step: "preflight" });
    await expect(a.flushed()).rejects.toThrow("payments: this coordinator is no longer the writer of the federation record");
    expect(a.isStale).toBe(true);
    expect(stale).toHaveLength(1);
    expect(stale[0]).toContain("written by coord-b");
    const e = await refusal(a.confirmWriter(1));
    expect(e.code).toBe("coordinator.stale");
  });
});
