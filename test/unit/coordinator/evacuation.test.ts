/** The evacuation's orchestration (coordinator/evacuation.ts) over stand-in switchovers: choice of target, the parallelism bound, skips and failures. */
import { describe, expect, it } from "vitest";
import type { OperationView, PlanView } from "../../../src/api/contract.js";
import { Evacuations, chooseMove, type EvacuationCandidate } from "../../../src/coordinator/evacuation.js";

function plan(target: string, allowed: boolean, refusal: string | null = null): PlanView {
  return { federation: "f", kind: "switchover", target, allowed, refusal, steps: [], preconditions: [], expectedDataLoss: { bytes: 0, seconds: 0 }, expectedDurationSeconds: 1 };
}
const cand = (target: string, lagMs: number | null, allowed = true, refusal: string | null = null): EvacuationCandidate => ({ target, lagMs, plan: plan(target, allowed, refusal) });

function op(id: string, state: OperationView["state"]): OperationView {
  return { id, federation: "f", kind: "switchover", state, step: "verify", target: "x", from: "y", reason: "", requestedBy: "t", automatic: false, startedAt: "", finishedAt: state === "running" ? null : "", epochBefore: 1, epochAfter: 2, acceptedLossSeconds: null, durationSeconds: 1, dataLossSeconds: 0, lastDecision: `${id} ${state}`, steps: [] };
}

describe("chooseMove", () => {
  it("takes the allowed member with the least lag and says why; skips with every refusal when none is allowed", () => {
    expect(chooseMove({ federation: "a", from: "pg-eu", candidates: [cand("pg-us", 900), cand("pg-ap", 200), cand("pg-sa", 10, false, "lags beyond the budget")] })).toMatchObject({
      target: "pg-ap",
      state: "planned",
      detail: "switch over to pg-ap, lag 200 ms (least of 2 eligible)",
      lagSeconds: 0.2,
    });
    const none = chooseMove({ federation: "b", from: "pg-eu", candidates: [cand("pg-us", 1, false, "it has diverged"), cand("pg-ap", 1, false, "not following")] });
    expect(none).toMatchObject({ target: null, state: "skipped", detail: "no eligible target (pg-us: it has diverged; pg-ap: not following)" });
    expect(chooseMove({ federation: "c", from: "pg-eu", candidates: [] }).detail).toBe("no eligible target (no member outside the region)");
  });
});

describe("Evacuations", () => {
  it("runs at most `parallel` switchovers at a time, each through to its end, and records how each ended", async () => {
    let running = 0;
    let peak = 0;
    const started: string[] = [];
    const feds = Array.from({ length: 9 }, (_, i) => `fed-${i}`);
    const ev = new Evacuations({
      affected: () => feds.map((f) => ({ federation: f, from: "pg-eu", candidates: f === "fed-4" ? [cand("pg-us", 1, false, "diverged")] : [cand("pg-us", 5)] })),
      start: async (federation) => {
        if (federation === "fed-7") throw new Error("refusing switchover of fed-7 to pg-us: rejoin in flight");
        started.push(federation);
        running++;
        peak = Math.max(peak, running);
        return op(`op-${federation}`, "running");
      },
      wait: async (id) => {
        await new Promise((r) => setTimeout(r, 20));
        running--;
        return op(id, id === "op-fed-2" ? "aborted" : "completed");
      },
      now: () => Date.now(),
      newId: (region) => `evacuation-${region}-1`,
    });
    const p = ev.plan("eu-west", 3);
    expect(p.counts).toMatchObject({ planned: 8, skipped: 1 });
    const v = ev.start(p, { requestedBy: "alice", reason: "region maintenance" });
    expect(v.state).toBe("running");
    for (let i = 0; i < 100 && ev.get(v.id)?.state === "running"; i++) await new Promise((r) => setTimeout(r, 20));
    const done = ev.get(v.id);
    expect(done?.state).toBe("failed");
    expect(done?.counts).toMatchObject({ completed: 6, failed: 2, skipped: 1, running: 0, queued: 0 });
    expect(peak).toBe(3);
    expect(started).toHaveLength(7);
    expect(done?.moves.find((m) => m.federation === "fed-2")?.detail).toBe("switchover op-fed-2 ended aborted: op-fed-2 aborted");
    expect(done?.moves.find((m) => m.federation === "fed-7")?.detail).toContain("rejoin in flight");
    expect(done?.moves.find((m) => m.federation === "fed-0")?.operationId).toBe("op-fed-0");
    expect(done?.finishedAt).not.toBeNull();
    // A copy: a caller changing it changes nothing.
    if (done) done.state = "running";
    expect(ev.get(v.id)?.state).toBe("failed");
  });
});
