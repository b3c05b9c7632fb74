/**
 * Reading a federation's audit trail from a real nats-server (src/coordinator/runtime/audit.ts):
 * every record up to the newest, and an `unavailable` error — never an empty or shorter trail —
 * when NATS does not answer (found by the chaos suite: right after NATS was SIGKILLed and
 * restarted, GET /audit answered 200 with no records).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServiceError } from "../../../src/api/contract.js";
import { connectBus, type Bus } from "../../../src/bus/index.js";
import { AuditTrail, readAuditTrail } from "../../../src/coordinator/runtime/audit.js";
import { startNats, type NatsServer } from "../../../src/lab/nats.js";
import { silentLogger } from "../../../src/log.js";

const log = silentLogger();
let dir: string;
let nats: NatsServer;
let bus: Bus;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-audit-read-"));
  nats = await startNats({ dir });
  bus = await connectBus({ servers: nats.url, name: "audit-read-test", log, metrics: new Registry(), publishTimeoutMs: 1_000 });
});

afterAll(async () => {
  await bus?.close().catch(() => undefined);
  await nats?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the audit trail read", () => {
  it("returns every record up to the newest, oldest first, the newest `limit` of them", async () => {
    expect(await readAuditTrail(bus, "orders", {})).toEqual([]);
    const trail = new AuditTrail({ federation: "orders", source: "coordinator:test", bus, log, epoch: () => 3, stopped: () => false });
    for (let i = 1; i <= 5; i++) trail.write("step", `step ${i}`, "because", { i }, "op-1", null);
    await trail.drained();
    const all = await readAuditTrail(bus, "orders", {});
    expect(all.map((e) => e.description)).toEqual(["step 1", "step 2", "step 3", "step 4", "step 5"]);
    expect(all[0]).toMatchObject({ operationId: "op-1", epoch: 3, numbers: { i: 1 } });
    expect((await readAuditTrail(bus, "orders", { limit: 2 })).map((e) => e.description)).toEqual(["step 4", "step 5"]);
  });

  it("is unavailable, not empty, while NATS does not answer", async () => {
    await nats.stop();
    try {
      const e = await readAuditTrail(bus, "orders", {}).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(ServiceError);
      expect((e as ServiceError).kind).toBe("unavailable");
      expect((e as ServiceError).message).toMatch(/cannot read the audit trail of orders from NATS: .*; try again/);
    } finally {
      await nats.restart();
    }
    await bus.waitConnected(15_000);
    expect(await readAuditTrail(bus, "orders", {})).toHaveLength(5);
  }, 60_000);
});
