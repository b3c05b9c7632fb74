import { describe, expect, it } from "vitest";
import { createActor, fromPromise, waitFor, type Snapshot } from "xstate";
import {
  REPLY_MARGIN_MS,
  defaultTimeouts,
  federationMachine,
  memberMachine,
  type AwaitDemotionTokenInput,
  type AwaitDemotionTokenOutput,
  type ConfirmPrimaryDownOutput,
  type DemotePrimaryInput,
  type PreflightInput,
  type PreflightOutput,
  type PromoteWithTokenInput,
  type PromoteWithoutTokenInput,
  type VerifySwitchoverInput,
  type VerifySwitchoverOutput,
} from "../../../machines/index.js";
import { never, ordersFederation as input } from "./support.js";

/** What the coordinator does: persist to NATS KV as JSON, read it back after a crash. */
const throughJson = (snapshot: Snapshot<unknown>): Snapshot<unknown> => JSON.parse(JSON.stringify(snapshot)) as Snapshot<unknown>;

describe("persisted snapshots", () => {
  it("resumes a switchover at the step it was on and re-runs that step's effect, without bumping the epoch twice", async () => {
    const promoteCalls: PromoteWithTokenInput[] = [];
    const tokenCalls: AwaitDemotionTokenInput[] = [];
    // First coordinator: crashes while waiting for the token.
    const first = createActor(
      federationMachine.provide({
        actors: {
          preflight: fromPromise<PreflightOutput, PreflightInput>(async () => ({ ok: true, targetLagBytes: 0, targetLagMs: 100 })),
          demotePrimary: fromPromise<void, DemotePrimaryInput>(async () => undefined),
          awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(({ input: i }) => {
            tokenCalls.push(i);
            return never();
          }),
        },
      }),
      { input },
    );
    first.start();
    first.send({ type: "SWITCHOVER", operationId: "sw-1", target: "pg-us", reason: "planned", requestedBy: "alice", atMs: 1 });
    await waitFor(first, (s) => s.matches({ operation: { switchover: "awaitToken" } }));
    const atToken = throughJson(first.getPersistedSnapshot());
    first.stop();

    // Second coordinator: token arrives; crashes while the promote is in flight.
    const second = createActor(
      federationMachine.provide({
        actors: {
          awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(({ input: i }) => {
            tokenCalls.push(i);
            return Promise.resolve({ token: "dG9rZW4=" });
          }),
          promoteWithToken: fromPromise<void, PromoteWithTokenInput>(({ input: i }) => {
            promoteCalls.push(i);
            return never();
          }),
        },
      }),
      { snapshot: atToken, input },
    );
    second.start();
    const promoting = await waitFor(second, (s) => s.matches({ operation: { switchover: "promote" } }));
    expect(tokenCalls).toHaveLength(2);
    expect(promoting.context.epoch).toBe(8);
    const atPromote = throughJson(second.getPersistedSnapshot());
    second.stop();

    // Third coordinator: the promote is ensured again with the same epoch and token, then verified.
    const third = createActor(
      federationMachine.provide({
        actors: {
          promoteWithToken: fromPromise<void, PromoteWithTokenInput>(({ input: i }) => {
            promoteCalls.push(i);
            return Promise.resolve();
          }),
          verifySwitchover: fromPromise<VerifySwitchoverOutput, VerifySwitchoverInput>(async () => ({ ok: true })),
        },
      }),
      { snapshot: atPromote, input },
    );
    third.start();
    const done = await waitFor(third, (s) => s.matches({ operation: "steady" }));
    expect(promoteCalls).toHaveLength(2);
    expect(promoteCalls[1]).toEqual(promoteCalls[0]);
    expect(promoteCalls[1]).toMatchObject({ epoch: 8, token: "dG9rZW4=", target: "pg-us" });
    expect(done.context).toMatchObject({ epoch: 8, designatedPrimary: "pg-us", operation: null });
    third.stop();
  });

  it("resumes a failover waiting for approval, and the approval still works after the restart", async () => {
    const candidates = [{ target: "pg-us", worstCaseLossMs: 41_000, lossBytes: 1 }];
    const first = createActor(
      federationMachine.provide({
        actors: { confirmPrimaryDown: fromPromise(async (): Promise<ConfirmPrimaryDownOutput> => ({ fenced: true, leaseExpired: false, candidates })) },
      }),
      { input: { ...input, timeouts: { suspectGraceMs: 1 } } },
    );
    first.start();
    first.send({ type: "PRIMARY_SUSPECT", atMs: 5, reason: "silent" });
    await waitFor(first, (s) => s.matches({ operation: { failover: "awaitingApproval" } }));
    const saved = throughJson(first.getPersistedSnapshot());
    first.stop();

    const second = createActor(federationMachine.provide({ actors: { promoteWithoutToken: fromPromise<void, PromoteWithoutTokenInput>(async () => undefined) } }), {
      snapshot: saved,
      input,
    });
    second.start();
    const restored = second.getSnapshot();
    expect(restored.context.alerts.map((a) => a.name)).toEqual(["PgfedFailoverAwaitingApproval"]);
    second.send({ type: "APPROVE", operationId: "failover-7-5", acceptedLossMs: 45_000, by: "carol" });
    const done = await waitFor(second, (s) => s.matches({ operation: "steady" }));
    expect(done.context).toMatchObject({ epoch: 8, designatedPrimary: "pg-us", pendingFence: ["pg-eu"] });
    second.stop();
  });

  it("restores a snapshot stored before the context held timeouts: the next steps run on the default timeouts", async () => {
    const first = createActor(
      federationMachine.provide({
        actors: {
          preflight: fromPromise<PreflightOutput, PreflightInput>(async () => ({ ok: true, targetLagBytes: 0, targetLagMs: 100 })),
          demotePrimary: fromPromise<void, DemotePrimaryInput>(async () => undefined),
          awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(() => never()),
        },
      }),
      { input: { ...input, timeouts: { promoteMs: 30_000 } } },
    );
    first.start();
    first.send({ type: "SWITCHOVER", operationId: "sw-1", target: "pg-us", reason: "planned", requestedBy: "alice", atMs: 1 });
    await waitFor(first, (s) => s.matches({ operation: { switchover: "awaitToken" } }));
    const stored = throughJson(first.getPersistedSnapshot()) as Snapshot<unknown> & { context: Record<string, unknown> };
    first.stop();
    // What an older pgfed persisted: the same context without `timeouts`.
    delete stored.context.timeouts;

    const promoteCalls: PromoteWithTokenInput[] = [];
    const second = createActor(
      federationMachine.provide({
        actors: {
          awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(async () => ({ token: "dG9rZW4=" })),
          promoteWithToken: fromPromise<void, PromoteWithTokenInput>(({ input: i }) => {
            promoteCalls.push(i);
            return never();
          }),
        },
      }),
      { snapshot: stored, input },
    );
    second.start();
    await waitFor(second, (s) => s.matches({ operation: { switchover: "promote" } }));
    expect(promoteCalls.map((c) => c.budgetMs)).toEqual([defaultTimeouts.promoteMs - REPLY_MARGIN_MS]);
    second.stop();
  });

  it("restores a member actor with its token and keeps it level-triggered", () => {
    const memberInput = { federation: "orders", member: "pg-eu", region: "eu-west" };
    const a = createActor(memberMachine, { input: memberInput }).start();
    a.send({
      type: "OBSERVED",
      observation: { role: "replica", phase: "Cluster in healthy state", fenced: false, switchInProgress: false, demotionToken: "dG9rZW4=", unrecoverable: false, atMs: 1 },
    });
    const saved = throughJson(a.getPersistedSnapshot());
    a.stop();
    const b = createActor(memberMachine, { snapshot: saved, input: memberInput }).start();
    expect(b.getSnapshot().value).toBe("demoted");
    expect(b.getSnapshot().context.demotionToken).toBe("dG9rZW4=");
    b.send({
      type: "OBSERVED",
      observation: { role: "replica", phase: "Cluster in healthy state", fenced: false, switchInProgress: false, unrecoverable: false, atMs: 0 },
    });
    expect(b.getSnapshot().value).toBe("demoted"); // stale observation ignored after restore too
    b.stop();
  });
});
