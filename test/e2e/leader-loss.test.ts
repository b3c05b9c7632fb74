/**
 * A region and the coordinator leader lost together (found by the chaos suite, seed 852713195):
 * the primary's region dies and the leader is SIGKILLed a moment later, so the next leader never
 * hears the primary. It must still fail over through the RPO gate, with a loss estimate built from
 * the last samples the stream holds (the primary's last one included), not wait for an approval
 * that it would refuse for lack of an estimate. Three regions: the gate picks between two replicas.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectionOf, federation, finished, startE2E, waitUntil, writable, type E2E } from "./fixture.js";

const COORDINATOR_LEASE_TTL_MS = 2_000;
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
    await e.plane.startCoordinator();
    await e.plane.coordinator.waitLeader(30_000);
    const leaderMs = Date.now() - t0;
    let opId: string | undefined;
    await waitUntil("a failover operation", 30_000, () => (opId = federation(e).operation?.id ?? undefined) !== undefined);
    const op = await finished(e, opId ?? "", 60_000);
    const f = federation(e);
    const promoted = f.designatedPrimary ?? "";
    const toWritable = await waitUntil(`${promoted} writable`, 30_000, () => writable(connectionOf(e.lab, promoted)));
    console.log(`region and leader lost: new leader after ${(leaderMs / 1000).toFixed(2)} s, ${op.kind} ${op.state} in ${op.durationSeconds ?? "?"} s to ${promoted} (estimated loss ${op.dataLossSeconds ?? "?"} s), writable ${((Date.now() - t0) / 1000).toFixed(2)} s after the loss (+${toWritable} ms wait); ${op.lastDecision}`);
    expect(op.kind).toBe("failover");
    expect(op.state, op.lastDecision).toBe("completed");
    expect(op.automatic).toBe(true);
    expect(["pg-us", "pg-ap"]).toContain(promoted);
    expect(f.epoch).toBe(epochBefore + 1);
  });
});
