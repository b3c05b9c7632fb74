/** How the federation machine words who asked for an operation, with and without a reason. */
import { describe, expect, it } from "vitest";
import { createActor, fromPromise } from "xstate";
import {
  federationMachine,
  type ConfirmPrimaryDownInput,
  type ConfirmPrimaryDownOutput,
  type PreflightInput,
  type PreflightOutput,
  type UndoDemotionInput,
} from "../../../machines/index.js";
import { never, ordersFederation } from "./support.js";

/** The machine with its first steps never finishing: the sentence of the request stays the last decision. */
function started() {
  const actor = createActor(
    federationMachine.provide({
      actors: {
        preflight: fromPromise<PreflightOutput, PreflightInput>(() => never()),
        confirmPrimaryDown: fromPromise<ConfirmPrimaryDownOutput, ConfirmPrimaryDownInput>(() => never()),
        undoDemotion: fromPromise<void, UndoDemotionInput>(() => never()),
      },
    }),
    { input: ordersFederation },
  );
  actor.start();
  return actor;
}

describe("who asked, in the decision sentence", () => {
  it("names the reason of a switchover after the requester", () => {
    const a = started();
    a.send({ type: "SWITCHOVER", operationId: "sw-1", target: "pg-us", reason: "kernel upgrade", requestedBy: "alice", atMs: 1 });
    expect(a.getSnapshot().context.lastDecision).toBe("switchover sw-1 of orders from pg-eu to pg-us accepted (requested by alice: kernel upgrade)");
    a.stop();
  });

  it("leaves no dangling colon or empty parentheses when no reason was given", () => {
    const sw = started();
    sw.send({ type: "SWITCHOVER", operationId: "sw-2", target: "pg-us", reason: "", requestedBy: "lab", atMs: 1 });
    expect(sw.getSnapshot().context.lastDecision).toBe("switchover sw-2 of orders from pg-eu to pg-us accepted (requested by lab)");
    sw.send({ type: "ABORT", operationId: "sw-2", reason: "", by: "bob" });
    const aborted = sw.getSnapshot().context.alerts[0]?.reason ?? "";
    expect(aborted).toContain("aborted by bob");
    expect(aborted).not.toContain("aborted by bob:");
    sw.stop();

    const fo = started();
    fo.send({ type: "FAILOVER", operationId: "fo-1", target: "pg-us", reason: "", requestedBy: "lab", atMs: 1 });
    expect(fo.getSnapshot().context.lastDecision).toBe("failover fo-1 of orders requested by lab; confirming that pg-eu is down first");
    fo.stop();
  });
});
