/**
 * A region and the coordinator leader lost together (found by the chaos suite, seed 852713195):
 * the primary's region dies and the leader is SIGKILLed a moment later, so the next leader never
 * hears the primary. It must still fail over through the RPO gate, with a loss estimate built from
 * the last samples the stream holds (the primary's last one included), not wait for an approval
 * that it would refuse for lack of an estimate, nor measure the region's silence from its own start
 * (it reads the last heartbeat from the stream). Three regions: the gate picks between two replicas.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectionOf, federation, finished, startE2E, waitUntil, writable, type E2E } from "./fixture.js";

const COORDINATOR_LEASE_TTL_MS = 2_000;
/** How long after the loss the next coordinator starts (the region's lease TTL is 5 s). */
const LATE_START_MS = 3_000;
let e: E2E;

beforeAll(async () => {
  e = await startE2E("leader-loss", { regions: 3, plane: { coordinatorLeaseTtlMs: COORDINATOR_LEASE_TTL_MS } });
});

afterAll(async () => {
  await e?.stop();
});

describe("the primary's region and the coordinator leader lost together", () => {
  it("the next leader, which never heard the primary, fails over within the budget", async () => {
    const epochBefore = federation(e).epoch;
    const t0 = Date.now();
    await e.plane.partitionAgentFromBus("eu-west");
    await e.lab.killRegion("eu-west");
    await e.plane.stopAgent("eu-west");
    await e.plane.killCoordinator();
    // The next leader starts late, most of a lease TTL after the region was last heard.
    await new Promise((r) => setTimeout(r, LATE_START_MS));
    await e.plane.startCoordinator();
    await e.plane.coordinator.waitLeader(30_000);
    const leaderMs = Date.now() - t0;
    let opId: string | undefined;
    const suspectedAfterLeadMs = await waitUntil("a failover operation", 30_000, () => (opId = federation(e).operation?.id ?? undefined) !== undefined);
    // It measures eu-west's silence from the last heartbeat in the stream, not from its own start:
    // the failover begins well before a full lease TTL of its own (the old code waited 5 s + more).
    const leaseTtl = e.plane.config.federations[0]?.failover.leaseTtl ?? 0;
    expect(suspectedAfterLeadMs, `suspected ${suspectedAfterLeadMs} ms after leading`).toBeLessThan(leaseTtl - 1_000);
    const op = await finished(e, opId ?? "", 60_000);
    const f = federation(e);
    const promoted = f.designatedPrimary ?? "";
    const toWritable = await waitUntil(`${promoted} writable`, 30_000, () => writable(connectionOf(e.lab, promoted)));
    console.log(`region and leader lost: new leader after ${(leaderMs / 1000).toFixed(2)} s, failover begun ${(suspectedAfterLeadMs / 1000).toFixed(2)} s after it led, ${op.kind} ${op.state} in ${op.durationSeconds ?? "?"} s to ${promoted} (estimated loss ${op.dataLossSeconds ?? "?"} s), writable ${((Date.now() - t0) / 1000).toFixed(2)} s after the loss (+${toWritable} ms wait); ${op.lastDecision}`);
    expect(op.kind).toBe("failover");
    expect(op.state, op.lastDecision).toBe("completed");
    expect(op.automatic).toBe(true);
    expect(["pg-us", "pg-ap"]).toContain(promoted);
    expect(f.epoch).toBe(epochBefore + 1);
  });
});
