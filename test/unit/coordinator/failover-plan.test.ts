import { describe, expect, it } from "vitest";
import { createActor } from "xstate";
import { federationMachine, type FederationContext, type LossEstimate } from "../../../machines/index.js";
import { failoverPlan } from "../../../src/coordinator/coordinator.js";

const MEMBERS = ["pg-eu", "pg-us", "pg-ap"];
const request = { requestedBy: "alice", reason: "eu-west is gone", atMs: 1_000 };

/** orders over three regions, pg-eu the designated primary, 30 s budget; `over` as the runtime would have it. */
function context(over: Partial<FederationContext> = {}): FederationContext {
  const actor = createActor(federationMachine, {
    input: { federation: "orders", members: MEMBERS, designatedPrimary: "pg-eu", epoch: 7, rpo: { budgetMs: 30_000, warnAt: 0.5 }, failoverMode: "manual" },
  });
  return { ...actor.getSnapshot().context, ...over };
}

describe("failover dry run", () => {
  it("never proposes a diverged member, even when it would lose the least", () => {
    const estimates: LossEstimate[] = [
      { target: "pg-us", worstCaseLossMs: 1_000, lossBytes: 1_024 },
      { target: "pg-ap", worstCaseLossMs: 5_000, lossBytes: 65_536 },
    ];
    const plan = failoverPlan(context({ diverged: ["pg-us"] }), {}, request, estimates, 13);
    expect(plan).toMatchObject({ target: "pg-ap", allowed: true, refusal: null, expectedDataLoss: { bytes: 65_536, seconds: 5 } });
  });

  it("proposes nobody when the only estimate is of a diverged member, and says it would wait", () => {
    const plan = failoverPlan(context({ diverged: ["pg-us"] }), {}, request, [{ target: "pg-us", worstCaseLossMs: 1_000, lossBytes: 1_024 }], 13);
    expect(plan).toMatchObject({ target: null, allowed: false, refusal: "failover of orders would wait for approval: no loss estimate yet" });
  });

  it("for every way three members can diverge or wait to be fenced, proposes only an eligible member", () => {
    const losses = [
      [1_000, 2_000],
      [2_000, 1_000],
      [40_000, 50_000],
    ];
    for (const [usMs, apMs] of losses) {
      const estimates: LossEstimate[] = [
        { target: "pg-us", worstCaseLossMs: usMs ?? 0, lossBytes: 1 },
        { target: "pg-ap", worstCaseLossMs: apMs ?? 0, lossBytes: 1 },
      ];
      for (const diverged of [[], ["pg-us"], ["pg-ap"], ["pg-us", "pg-ap"]]) {
        for (const pendingFence of [[], ["pg-us"], ["pg-ap"]]) {
          for (const acceptDataLossSeconds of [undefined, 60]) {
            const fc = context({ diverged, pendingFence });
            const plan = failoverPlan(fc, acceptDataLossSeconds === undefined ? {} : { acceptDataLossSeconds }, request, estimates, 13);
            const shown = `${usMs}/${apMs} ms, diverged [${diverged.join(",")}], pendingFence [${pendingFence.join(",")}], accepted ${acceptDataLossSeconds ?? "-"}`;
            if (plan.target !== null) {
              expect(diverged, shown).not.toContain(plan.target);
              expect(pendingFence, shown).not.toContain(plan.target);
            }
            if (plan.allowed) expect(plan.target, shown).not.toBeNull();
          }
        }
      }
    }
  });

  it("words its steps as the machine's states do", () => {
    const plan = failoverPlan(context(), {}, request, [], 13);
    expect(plan.steps.map((s) => s.step)).toEqual(["confirm", "gate", "promoteWithoutToken"]);
    expect(plan.steps[1]?.description).toBe(federationMachine.getStateNodeById("federation.operation.failover.gate").description);
  });
});
