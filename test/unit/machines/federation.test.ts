import { describe, expect, it } from "vitest";
import { createActor, fromPromise, waitFor, type SnapshotFrom } from "xstate";
import {
  REPLY_MARGIN_MS,
  defaultTimeouts,
  federationMachine,
  federationStepSentence,
  type AwaitDemotionTokenInput,
  type AwaitDemotionTokenOutput,
  type ConfirmPrimaryDownInput,
  type ConfirmPrimaryDownOutput,
  type DemotePrimaryInput,
  type FederationInput,
  type FenceAndDemoteFormerInput,
  type LossEstimate,
  type PreflightInput,
  type PreflightOutput,
  type PromoteWithTokenInput,
  type PromoteWithoutTokenInput,
  type RejoinMemberInput,
  type UndoDemotionInput,
  type VerifySwitchoverInput,
  type VerifySwitchoverOutput,
} from "../../../machines/index.js";
import { never, ordersFederation as input } from "./support.js";

const TOKEN = "eyJsYXRlc3RDaGVja3BvaW50VGltZWxpbmVJRCI6IjEifQ==";
const withinBudget: LossEstimate[] = [
  { target: "pg-us", worstCaseLossMs: 2_000, lossBytes: 65_536 },
  { target: "pg-ap", worstCaseLossMs: 5_000, lossBytes: 262_144 },
];
const overBudget: LossEstimate[] = [
  { target: "pg-us", worstCaseLossMs: 41_000, lossBytes: 16_777_216 },
  { target: "pg-ap", worstCaseLossMs: 50_000, lossBytes: 33_554_432 },
];

const fail = (message: string) => (): Promise<never> => Promise.reject(new Error(message));

type Behaviour = {
  preflight?: () => Promise<PreflightOutput>;
  demotePrimary?: () => Promise<void>;
  awaitDemotionToken?: () => Promise<AwaitDemotionTokenOutput>;
  promoteWithToken?: () => Promise<void>;
  verifySwitchover?: () => Promise<VerifySwitchoverOutput>;
  undoDemotion?: () => Promise<void>;
  confirmPrimaryDown?: () => Promise<ConfirmPrimaryDownOutput>;
  promoteWithoutToken?: () => Promise<void>;
  fenceAndDemoteFormer?: () => Promise<void>;
  rejoinMember?: () => Promise<void>;
};

/** Fake effects: record every call with its input, behave as told (default: succeed). */
function harness(behaviour: Behaviour = {}, machineInput: FederationInput = input) {
  const calls: Array<{ actor: string; input: unknown }> = [];
  const record = (actor: string, value: unknown) => calls.push({ actor, input: value });
  const machine = federationMachine.provide({
    actors: {
      preflight: fromPromise<PreflightOutput, PreflightInput>(({ input: i }) => {
        record("preflight", i);
        return behaviour.preflight?.() ?? Promise.resolve({ ok: true, targetLagBytes: 0, targetLagMs: 0 });
      }),
      demotePrimary: fromPromise<void, DemotePrimaryInput>(({ input: i }) => {
        record("demotePrimary", i);
        return behaviour.demotePrimary?.() ?? Promise.resolve();
      }),
      awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(({ input: i }) => {
        record("awaitDemotionToken", i);
        return behaviour.awaitDemotionToken?.() ?? Promise.resolve({ token: TOKEN });
      }),
      promoteWithToken: fromPromise<void, PromoteWithTokenInput>(({ input: i }) => {
        record("promoteWithToken", i);
        return behaviour.promoteWithToken?.() ?? Promise.resolve();
      }),
      verifySwitchover: fromPromise<VerifySwitchoverOutput, VerifySwitchoverInput>(({ input: i }) => {
        record("verifySwitchover", i);
        return behaviour.verifySwitchover?.() ?? Promise.resolve({ ok: true });
      }),
      undoDemotion: fromPromise<void, UndoDemotionInput>(({ input: i }) => {
        record("undoDemotion", i);
        return behaviour.undoDemotion?.() ?? Promise.resolve();
      }),
      confirmPrimaryDown: fromPromise<ConfirmPrimaryDownOutput, ConfirmPrimaryDownInput>(({ input: i }) => {
        record("confirmPrimaryDown", i);
        return behaviour.confirmPrimaryDown?.() ?? Promise.resolve({ fenced: true, leaseExpired: false, candidates: withinBudget });
      }),
      promoteWithoutToken: fromPromise<void, PromoteWithoutTokenInput>(({ input: i }) => {
        record("promoteWithoutToken", i);
        return behaviour.promoteWithoutToken?.() ?? Promise.resolve();
      }),
      fenceAndDemoteFormer: fromPromise<void, FenceAndDemoteFormerInput>(({ input: i }) => {
        record("fenceAndDemoteFormer", i);
        return behaviour.fenceAndDemoteFormer?.() ?? Promise.resolve();
      }),
      rejoinMember: fromPromise<void, RejoinMemberInput>(({ input: i }) => {
        record("rejoinMember", i);
        return behaviour.rejoinMember?.() ?? Promise.resolve();
      }),
    },
  });
  // Short timeouts so that timeouts happen within the test, unless the test's input sets its own.
  const timeouts = { stepMs: 50, tokenMs: 30, promoteMs: 30, suspectGraceMs: 1, confirmRetryMs: 1, ...machineInput.timeouts };
  const actor = createActor(machine, { input: { ...machineInput, timeouts } });
  actor.start();
  const called = (name: string) => calls.filter((c) => c.actor === name);
  const until = (predicate: (s: SnapshotFrom<typeof federationMachine>) => boolean) => waitFor(actor, predicate, { timeout: 2_000 });
  const steady = () => until((s) => s.matches({ operation: "steady" }));
  return { actor, calls, called, until, steady };
}

const switchover = (target = "pg-us") =>
  ({ type: "SWITCHOVER", operationId: "sw-1", target, reason: "planned maintenance", requestedBy: "alice", atMs: 1_000 }) as const;
const alertNames = (s: SnapshotFrom<typeof federationMachine>) => s.context.alerts.map((a) => a.name);

describe("planned switchover", () => {
  it("completes a switchover with the demotion token and bumps the epoch once, when the promote is issued", async () => {
    const h = harness();
    h.actor.send(switchover());
    const done = await h.until((s) => s.matches({ operation: "steady" }) && s.context.lastOperation !== null);
    expect(h.calls.map((c) => c.actor)).toEqual(["preflight", "demotePrimary", "awaitDemotionToken", "promoteWithToken", "verifySwitchover"]);
    expect(h.called("demotePrimary")[0]?.input).toMatchObject({ epoch: 7, from: "pg-eu", target: "pg-us" });
    expect(h.called("promoteWithToken")[0]?.input).toMatchObject({ epoch: 8, target: "pg-us", token: TOKEN });
    expect(done.context).toMatchObject({ epoch: 8, designatedPrimary: "pg-us", operation: null, demotionToken: null, alerts: [] });
    expect(done.context.lastOperation).toMatchObject({ id: "sw-1", outcome: "completed" });
    expect(done.context.lastDecision).toBe("switchover sw-1 of orders to pg-us completed: pg-us is the designated primary at epoch 8");
  });

  it("refuses a switchover to a member that lags more than the budget", async () => {
    const h = harness({ preflight: () => Promise.resolve({ ok: true, targetLagBytes: 16_777_216, targetLagMs: 41_000 }) });
    h.actor.send(switchover());
    const s = await h.until((x) => x.context.lastOperation?.outcome === "refused");
    expect(s.matches({ operation: "steady" })).toBe(true);
    expect(s.context.lastDecision).toBe("refusing switchover sw-1 of orders to pg-us: lags 41 s (16.0 MiB), more than the budget 30 s");
    expect(h.called("demotePrimary")).toHaveLength(0);
    expect(s.context).toMatchObject({ epoch: 7, designatedPrimary: "pg-eu" });
  });

  it("refuses a switchover to the current primary, to a stranger, or while another operation runs", () => {
    const h = harness({ preflight: never });
    h.actor.send(switchover("pg-eu"));
    expect(h.actor.getSnapshot().context.lastDecision).toBe("refusing switchover of orders to pg-eu: it is already the designated primary");
    h.actor.send(switchover("pg-zz"));
    expect(h.actor.getSnapshot().context.lastDecision).toBe("refusing switchover of orders to pg-zz: not a member of the federation");
    h.actor.send(switchover("pg-us"));
    h.actor.send({ ...switchover("pg-ap"), operationId: "sw-2" });
    expect(h.actor.getSnapshot().context.lastDecision).toBe("refusing switchover of orders to pg-ap: switchover sw-1 is in flight");
    expect(h.actor.getSnapshot().context.operation?.id).toBe("sw-1");
  });

  it("aborts a switchover whose demotion token never comes and re-designates the old primary", async () => {
    const h = harness({ awaitDemotionToken: never });
    h.actor.send(switchover());
    const s = await h.until((x) => x.context.lastOperation?.outcome === "aborted");
    expect(h.called("undoDemotion")[0]?.input).toMatchObject({ member: "pg-eu", epoch: 7 });
    expect(h.called("promoteWithToken")).toHaveLength(0);
    expect(s.context).toMatchObject({ epoch: 7, designatedPrimary: "pg-eu", operation: null });
    expect(alertNames(s)).toEqual(["PgfedOperationFailed"]);
    expect(s.context.alerts[0]?.reason).toBe(
      "switchover sw-1 of orders to pg-us aborted at step awaitToken (timed out); re-designating the old primary",
    );
  });

  it("ends with no designated primary, a new epoch and a page when re-designating the old primary fails", async () => {
    const h = harness({ demotePrimary: fail("admission webhook refused the patch"), undoDemotion: fail("API server unreachable") });
    h.actor.send(switchover());
    const s = await h.until((x) => x.matches({ operation: "operatorRequired" }));
    expect(s.context).toMatchObject({ epoch: 8, designatedPrimary: null });
    expect(alertNames(s)).toEqual(["PgfedOperationFailed", "PgfedNoPrimary"]);
    expect(s.context.operation?.step).toBe("operatorRequired");
    h.actor.send({ type: "RESOLVE", primary: "pg-eu", by: "alice", reason: "pg-eu checked by hand" });
    const resolved = h.actor.getSnapshot();
    expect(resolved.matches({ operation: "steady" })).toBe(true);
    expect(resolved.context).toMatchObject({ epoch: 9, designatedPrimary: "pg-eu", operation: null });
    expect(alertNames(resolved)).toEqual(["PgfedOperationFailed"]);
  });

  it("never undoes once the promote was issued: a failed promote needs an operator and keeps the target designated", async () => {
    const h = harness({ promoteWithToken: fail("token content is not correct") });
    h.actor.send(switchover());
    const s = await h.until((x) => x.matches({ operation: "operatorRequired" }));
    expect(h.called("undoDemotion")).toHaveLength(0);
    expect(s.context).toMatchObject({ epoch: 8, designatedPrimary: "pg-us" });
    expect(alertNames(s)).toEqual(["PgfedOperationFailed"]);
    expect(s.context.lastDecision).toContain("not undoing: the target may already be primary");
  });

  it("lets an operator abort while waiting for the token, and re-designates the old primary", async () => {
    const h = harness({ awaitDemotionToken: never });
    h.actor.send(switchover());
    await h.until((x) => x.matches({ operation: { switchover: "awaitToken" } }));
    h.actor.send({ type: "ABORT", operationId: "other", reason: "typo", by: "bob" });
    expect(h.actor.getSnapshot().matches({ operation: { switchover: "awaitToken" } })).toBe(true);
    h.actor.send({ type: "ABORT", operationId: "sw-1", reason: "traffic spike", by: "bob" });
    const s = await h.steady();
    expect(s.context.alerts[0]?.reason).toContain("aborted by bob: traffic spike");
    expect(s.context.designatedPrimary).toBe("pg-eu");
  });

  it("says where a running switchover is, for the CLI progress line", async () => {
    const h = harness({ awaitDemotionToken: never });
    h.actor.send(switchover());
    const s = await h.until((x) => x.matches({ operation: { switchover: "awaitToken" } }));
    expect(federationStepSentence(s)).toBe("switchover sw-1 of orders to pg-us: waiting for pg-eu's demotion token");
  });
});

describe("unplanned failover", () => {
  const suspect = { type: "PRIMARY_SUSPECT", atMs: 5_000, reason: "no observation from eu-west for 15 s" } as const;

  it("fails over automatically to the member with the least worst-case loss when it is within the budget", async () => {
    const h = harness();
    h.actor.send(suspect);
    const s = await h.until((x) => x.context.lastOperation?.outcome === "completed");
    expect(h.called("confirmPrimaryDown")[0]?.input).toMatchObject({ member: "pg-eu", epoch: 7 });
    expect(h.called("promoteWithoutToken")[0]?.input).toMatchObject({ target: "pg-us", epoch: 8, former: "pg-eu", worstCaseLossMs: 2_000, acceptedLossMs: null });
    expect(s.context).toMatchObject({ epoch: 8, designatedPrimary: "pg-us", pendingFence: ["pg-eu"] });
  });

  it("waits for approval when the worst-case loss exceeds the budget, and records the accepted loss", async () => {
    const h = harness({ confirmPrimaryDown: () => Promise.resolve({ fenced: false, leaseExpired: true, candidates: overBudget }) });
    h.actor.send(suspect);
    const waiting = await h.until((x) => x.matches({ operation: { failover: "awaitingApproval" } }));
    expect(waiting.context.lastDecision).toBe(
      "not failing over orders to pg-us: worst-case loss 41 s (16.0 MiB) exceeds budget 30 s; waiting for approval",
    );
    expect(alertNames(waiting)).toEqual(["PgfedFailoverAwaitingApproval"]);
    const id = waiting.context.operation?.id ?? "";
    h.actor.send({ type: "APPROVE", operationId: id, acceptedLossMs: 20_000, by: "carol" });
    expect(h.actor.getSnapshot().matches({ operation: { failover: "awaitingApproval" } })).toBe(true);
    expect(h.actor.getSnapshot().context.lastDecision).toBe(
      `approval of ${id} by carol refused: accepted loss 20 s does not cover worst-case loss 41 s for pg-us`,
    );
    h.actor.send({ type: "APPROVE", operationId: id, acceptedLossMs: 45_000, by: "carol" });
    const done = await h.until((x) => x.context.lastOperation?.outcome === "completed");
    expect(h.called("promoteWithoutToken")[0]?.input).toMatchObject({ target: "pg-us", worstCaseLossMs: 41_000, acceptedLossMs: 45_000 });
    expect(done.context.lastDecision).toBe(
      `failover ${id} of orders to pg-us completed: pg-us is the designated primary at epoch 8 (accepted loss 45 s by carol)`,
    );
    expect(alertNames(done)).toEqual([]);
  });

  it("proceeds on its own when a new estimate brings the worst case within the budget", async () => {
    const h = harness({ confirmPrimaryDown: () => Promise.resolve({ fenced: true, leaseExpired: false, candidates: overBudget }) });
    h.actor.send(suspect);
    await h.until((x) => x.matches({ operation: { failover: "awaitingApproval" } }));
    h.actor.send({ type: "LOSS_ESTIMATES", candidates: withinBudget, atMs: 6_000 });
    const s = await h.until((x) => x.context.lastOperation?.outcome === "completed");
    expect(s.context.designatedPrimary).toBe("pg-us");
  });

  it("starts no automatic failover while paused, and says so with an alert", () => {
    const h = harness();
    h.actor.send({ type: "PAUSE", by: "alice", reason: "network maintenance" });
    h.actor.send(suspect);
    const s = h.actor.getSnapshot();
    expect(s.matches({ operation: "steady" })).toBe(true);
    expect(h.called("confirmPrimaryDown")).toHaveLength(0);
    expect(alertNames(s)).toEqual(["PgfedFailoverBlocked"]);
    expect(s.context.lastDecision).toBe(
      "not failing over orders: automation is paused; primary pg-eu suspected down (no observation from eu-west for 15 s)",
    );
  });

  it("in manual mode confirms the primary down but waits for approval even within the budget", async () => {
    const h = harness({}, { ...input, failoverMode: "manual" });
    h.actor.send(suspect);
    const s = await h.until((x) => x.matches({ operation: { failover: "awaitingApproval" } }));
    expect(s.context.lastDecision).toBe(
      "not failing over orders to pg-us: failover mode is manual (worst-case loss 2 s (64.0 KiB), budget 30 s); waiting for approval",
    );
    expect(h.called("promoteWithoutToken")).toHaveLength(0);
  });

  it("accepts an operator failover whose accepted loss covers the worst case without asking again", async () => {
    const h = harness({ confirmPrimaryDown: () => Promise.resolve({ fenced: true, leaseExpired: false, candidates: overBudget }) });
    h.actor.send({ type: "FAILOVER", operationId: "fo-1", target: "pg-ap", acceptDataLossMs: 60_000, reason: "eu-west lost", requestedBy: "dave", atMs: 1 });
    const s = await h.until((x) => x.context.lastOperation?.outcome === "completed");
    expect(h.called("promoteWithoutToken")[0]?.input).toMatchObject({ target: "pg-ap", worstCaseLossMs: 50_000, acceptedLossMs: 60_000 });
    expect(s.context).toMatchObject({ epoch: 8, designatedPrimary: "pg-ap" });
  });

  it("cancels the failover when the primary recovers during the grace period", () => {
    const h = harness();
    const slow = createActor(federationMachine, { input: { ...input, timeouts: { suspectGraceMs: 60_000 } } });
    slow.start();
    slow.send(suspect);
    expect(slow.getSnapshot().matches({ operation: { failover: "suspect" } })).toBe(true);
    slow.send({ type: "PRIMARY_RECOVERED", atMs: 6_000 });
    expect(slow.getSnapshot().matches({ operation: "steady" })).toBe(true);
    expect(slow.getSnapshot().context.lastOperation?.outcome).toBe("cancelled");
    slow.stop();
    h.actor.stop();
  });

  it("keeps trying to confirm until the old primary is fenced or its lease expired", async () => {
    let attempts = 0;
    const h = harness({
      confirmPrimaryDown: () => {
        attempts += 1;
        if (attempts === 1) return Promise.reject(new Error("eu-west API unreachable"));
        if (attempts === 2) return Promise.resolve({ fenced: false, leaseExpired: false });
        return Promise.resolve({ fenced: false, leaseExpired: true, candidates: withinBudget });
      },
    });
    h.actor.send(suspect);
    const s = await h.until((x) => x.context.lastOperation?.outcome === "completed");
    expect(attempts).toBe(3);
    expect(s.context.designatedPrimary).toBe("pg-us");
  });

  it("fences a former primary when it is seen again, marks it diverged, and rejoins it only after approval", async () => {
    const h = harness();
    h.actor.send(suspect);
    await h.until((x) => x.context.lastOperation?.outcome === "completed");
    h.actor.send({ type: "FORMER_PRIMARY_SEEN", member: "pg-us" });
    expect(h.called("fenceAndDemoteFormer")).toHaveLength(0);
    h.actor.send({ type: "FORMER_PRIMARY_SEEN", member: "pg-eu" });
    const fenced = await h.until((x) => x.context.diverged.includes("pg-eu") && x.matches({ formerPrimaries: "idle" }));
    // budgetMs: half of the harness's 50 ms step timeout, which is shorter than two reply margins.
    expect(h.called("fenceAndDemoteFormer")[0]?.input).toEqual({ federation: "orders", epoch: 8, member: "pg-eu", newPrimary: "pg-us", budgetMs: 25 });
    expect(fenced.context.pendingFence).toEqual([]);

    h.actor.send({ type: "SWITCHOVER", operationId: "sw-9", target: "pg-eu", reason: "back home", requestedBy: "alice", atMs: 9 });
    expect(h.actor.getSnapshot().context.lastDecision).toBe("refusing switchover of orders to pg-eu: it has diverged and must be rejoined first");

    h.actor.send({ type: "REJOIN", operationId: "rj-1", member: "pg-eu", reason: "region back", requestedBy: "alice", atMs: 10 });
    expect(h.actor.getSnapshot().matches({ operation: { rejoin: "awaitingApproval" } })).toBe(true);
    expect(h.called("rejoinMember")).toHaveLength(0);
    h.actor.send({ type: "APPROVE", operationId: "rj-1", by: "bob" });
    const rejoined = await h.until((x) => x.context.lastOperation?.id === "rj-1");
    expect(h.called("rejoinMember")[0]?.input).toMatchObject({ member: "pg-eu", primary: "pg-us", epoch: 8 });
    expect(rejoined.context.diverged).toEqual([]);
    expect(rejoined.context.lastOperation?.outcome).toBe("completed");
  });

  it("rejoins a replica that does not follow the primary only when the coordinator says why, and never the primary (found by the chaos suite)", async () => {
    const h = harness();
    h.actor.send(suspect);
    await h.until((x) => x.context.lastOperation?.outcome === "completed");
    const three = { operationId: "rj-2", reason: "behind", requestedBy: "alice", atMs: 11 } as const;
    h.actor.send({ type: "REJOIN", member: "pg-us", ...three, notFollowing: "it is the primary" });
    expect(h.actor.getSnapshot().context.lastDecision).toBe("refusing rejoin of pg-us to orders: it is the designated primary");
    h.actor.send({ type: "REJOIN", member: "pg-eu", ...three, notFollowing: "unreachable" });
    expect(h.actor.getSnapshot().context.lastDecision).toBe("refusing rejoin of pg-eu to orders: it is a former primary not fenced yet (it is marked diverged once it is)");
    h.actor.send({ type: "REJOIN", member: "pg-ap", ...three });
    expect(h.actor.getSnapshot().context.lastDecision).toBe("refusing rejoin of pg-ap to orders: it is not marked diverged and follows the primary");
    expect(h.actor.getSnapshot().context.operation).toBeNull();
    // A replica past the new primary's fork point after a failover: not diverged, and it never follows.
    h.actor.send({ type: "REJOIN", member: "pg-ap", ...three, notFollowing: "on timeline 5, primary pg-us on timeline 6" });
    expect(h.actor.getSnapshot().matches({ operation: { rejoin: "awaitingApproval" } })).toBe(true);
    h.actor.send({ type: "APPROVE", operationId: "rj-2", by: "bob" });
    const done = await h.until((x) => x.context.lastOperation?.id === "rj-2");
    expect(h.called("rejoinMember")[0]?.input).toMatchObject({ member: "pg-ap", primary: "pg-us" });
    expect(done.context.lastOperation?.outcome).toBe("completed");
  });

  it("raises an alert when a former primary cannot be fenced, and retries at the next sighting", async () => {
    let attempts = 0;
    const h = harness({ fenceAndDemoteFormer: () => (++attempts === 1 ? Promise.reject(new Error("timeout")) : Promise.resolve()) });
    h.actor.send(suspect);
    await h.until((x) => x.context.lastOperation?.outcome === "completed");
    h.actor.send({ type: "FORMER_PRIMARY_SEEN", member: "pg-eu" });
    const failed = await h.until((x) => alertNames(x).includes("PgfedFormerPrimaryNotFenced"));
    expect(failed.context.pendingFence).toEqual(["pg-eu"]);
    h.actor.send({ type: "FORMER_PRIMARY_SEEN", member: "pg-eu" });
    const ok = await h.until((x) => x.context.diverged.includes("pg-eu"));
    expect(ok.context.pendingFence).toEqual([]);
  });
});

describe("one clock per step", () => {
  const budgetsOf = (calls: Array<{ actor: string; input: unknown }>) => calls.map((c) => [c.actor, (c.input as { budgetMs: number }).budgetMs]);

  it("gives each step's actor the timeout of its state less the reply margin", async () => {
    const h = harness({}, { ...input, timeouts: { stepMs: 60_000, tokenMs: 120_000, promoteMs: 300_000 } });
    h.actor.send(switchover());
    await h.until((s) => s.context.lastOperation?.outcome === "completed");
    expect(budgetsOf(h.calls)).toEqual([
      ["preflight", 60_000 - REPLY_MARGIN_MS],
      ["demotePrimary", 60_000 - REPLY_MARGIN_MS],
      ["awaitDemotionToken", 120_000 - REPLY_MARGIN_MS],
      ["promoteWithToken", 300_000 - REPLY_MARGIN_MS],
      ["verifySwitchover", 60_000 - REPLY_MARGIN_MS],
    ]);
    h.actor.stop();
  });

  it("runs on the timeouts that run in production when the input sets none", () => {
    const actor = createActor(federationMachine, { input });
    expect(actor.getSnapshot().context.timeouts).toEqual(defaultTimeouts);
    expect(defaultTimeouts).toEqual({ stepMs: 60_000, tokenMs: 120_000, promoteMs: 300_000, suspectGraceMs: 1_000, confirmRetryMs: 1_000, rejoinMs: 6 * 60 * 60_000 });
  });

  it("leaves an actor half of a timeout shorter than two reply margins", async () => {
    const h = harness({ preflight: never });
    h.actor.send(switchover());
    await h.until((s) => s.context.lastOperation?.outcome === "aborted");
    expect(budgetsOf(h.called("preflight"))).toEqual([["preflight", 25]]);
    h.actor.stop();
  });
});

describe("placeholders", () => {
  it("rejects with 'not provided' when the coordinator forgot an effect", async () => {
    const actor = createActor(federationMachine, { input });
    actor.start();
    actor.send(switchover());
    const s = await waitFor(actor, (x) => x.context.lastOperation !== null, { timeout: 2_000 });
    expect(s.context.lastDecision).toContain("actor preflight not provided");
    actor.stop();
  });
});
