/**
 * Scenario 6: the worst-case loss is above the budget (a 2 s budget; detection alone takes longer):
 * no automatic promotion; the federation waits for approval with the alert signal raised; an
 * approval that accepts the loss proceeds and the accepted figure is in the audit.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.js";
import { FED, connectionOf, federation, finished, startE2E, waitUntil, writable, type E2E } from "./fixture.js";

let e: E2E;

const tinyBudget = (c: Config): Config => ({ ...c, federations: c.federations.map((f) => ({ ...f, rpo: { ...f.rpo, budget: 2_000, walSwitchAfter: undefined } })) });

beforeAll(async () => {
  e = await startE2E("approval", { config: tinyBudget });
});

afterAll(async () => {
  await e?.stop();
});

describe("failover beyond the RPO budget", () => {
  it("does not promote on its own, waits for approval, and proceeds once the loss is accepted", async () => {
    const epochBefore = federation(e).epoch;
    await e.plane.partitionAgentFromBus("eu-west");
    await e.lab.killRegion("eu-west");
    await e.plane.stopAgent("eu-west");

    await waitUntil("the failover to wait for approval", 30_000, () => federation(e).operation?.state === "awaitingApproval", 100);
    const waiting = federation(e);
    const op = waiting.operation;
    if (!op) throw new Error("no operation");
    expect(waiting.designatedPrimary).toBe("pg-eu");
    expect(waiting.alerts.map((a) => a.name)).toContain("PgfedFailoverAwaitingApproval");
    const gauge = await e.plane.coordinator.metrics.failoverAwaitingApproval.get();
    expect(gauge.values.find((v) => v.labels.federation === FED)?.value).toBe(1);
    await new Promise((r) => setTimeout(r, 2_000));
    expect(await writable(connectionOf(e.lab, "pg-us"))).toBe(false);

    // Not enough: refused, nothing promoted.
    await expect(e.plane.coordinator.approve(op.id, { acceptDataLossSeconds: 1 }, { requestedBy: "alice", reason: "too little" }, { dryRun: false })).rejects.toThrow(/refused|does not cover/);
    expect(federation(e).designatedPrimary).toBe("pg-eu");

    const res = await e.plane.coordinator.approve(op.id, { acceptDataLossSeconds: 600 }, { requestedBy: "alice", reason: "region eu-west is gone; accept the loss" }, { dryRun: false });
    expect(res.kind).toBe("operation");
    const done = await finished(e, op.id, 30_000);
    expect(done.state, done.lastDecision).toBe("completed");
    expect(done.acceptedLossSeconds).toBe(600);
    const after = federation(e);
    expect(after.designatedPrimary).toBe("pg-us");
    expect(after.epoch).toBe(epochBefore + 1);
    await waitUntil("pg-us to accept writes", 5_000, () => writable(connectionOf(e.lab, "pg-us")));
    const audit = (await e.plane.coordinator.audit(FED, {})).filter((a) => a.operationId === op.id);
    expect(audit.some((a) => a.action === "request.approve" && a.numbers.acceptedLossSeconds === 600)).toBe(true);
    expect(audit.some((a) => a.description.includes("operator accepted a loss"))).toBe(true);
    console.log(`failover beyond budget: waited for approval (${waiting.lastDecision}); approved by alice accepting 600 s; estimated loss ${done.dataLossSeconds ?? "?"} s; epoch ${epochBefore} -> ${after.epoch}`);
  });
});
