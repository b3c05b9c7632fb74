/**
 * Model-based tests: @xstate/graph walks the federation machine with a bounded set of events,
 * including the `xstate.done.actor.<id>` / `xstate.error.actor.<id>` / `xstate.after.<delay>`
 * events that real effects and timers would produce (the graph never runs invoked actors), and
 * every generated path is replayed with the pure `transition()` while DESIGN.md's safety rules are
 * checked at every step.
 */
import { getShortestPaths, getSimplePaths, getStateNodes } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import {
  __unsafe_getAllOwnEventDescriptors,
  getInitialMicrosteps,
  getMicrosteps,
  initialTransition,
  transition,
  type EventObject,
  type SnapshotFrom,
} from "xstate";
import {
  federationMachine,
  type ConfirmPrimaryDownOutput,
  type FederationEvent,
  type FederationInput,
  type LossEstimate,
} from "../../../machines/index.js";
import { ordersFederation } from "./support.js";

type Snapshot = SnapshotFrom<typeof federationMachine>;

const input: FederationInput = { ...ordersFederation, epoch: 1 };
const MAX_EPOCH = 3;

const within: LossEstimate[] = [
  { target: "pg-us", worstCaseLossMs: 2_000, lossBytes: 65_536 },
  { target: "pg-ap", worstCaseLossMs: 5_000, lossBytes: 262_144 },
  { target: "pg-eu", worstCaseLossMs: 3_000, lossBytes: 131_072 },
];
const over: LossEstimate[] = [
  { target: "pg-us", worstCaseLossMs: 41_000, lossBytes: 16_777_216 },
  { target: "pg-ap", worstCaseLossMs: 50_000, lossBytes: 33_554_432 },
  { target: "pg-eu", worstCaseLossMs: 45_000, lossBytes: 20_000_000 },
];

/** Injected actor results: what the coordinator's effects would report. */
const actorResults: Record<string, unknown[]> = {
  preflight: [{ ok: true, targetLagBytes: 8_192, targetLagMs: 400 }, { ok: true, targetLagBytes: 16_777_216, targetLagMs: 41_000 }],
  demotePrimary: [undefined],
  awaitDemotionToken: [{ token: "dG9rZW4=" }],
  promoteWithToken: [undefined],
  verifySwitchover: [{ ok: true }, { ok: false, reason: "old primary does not follow the new timeline" }],
  undoDemotion: [undefined],
  confirmPrimaryDown: [
    { fenced: true, leaseExpired: false, candidates: within },
    { fenced: false, leaseExpired: true, candidates: over },
    { fenced: false, leaseExpired: false },
  ] satisfies ConfirmPrimaryDownOutput[],
  promoteWithoutToken: [undefined],
  fenceAndDemoteFormer: [undefined],
  rejoinMember: [undefined],
};
const OPERATION_ACTORS = new Set(Object.keys(actorResults).filter((id) => id !== "confirmPrimaryDown" && id !== "fenceAndDemoteFormer"));

const injected = (event: EventObject) => event as unknown as FederationEvent;

/** The bounded event set, as a function of the snapshot (only events that can matter there). */
function eventsFor(s: Snapshot): FederationEvent[] {
  const c = s.context;
  const events: FederationEvent[] = [];
  const op = c.operation;
  if (s.matches({ operation: "steady" })) {
    for (const target of ["pg-us", "pg-ap", "pg-eu"]) {
      events.push({ type: "SWITCHOVER", operationId: `sw-${target}`, target, reason: "planned", requestedBy: "alice", atMs: 1 });
    }
    events.push({ type: "FAILOVER", operationId: "fo-op", reason: "region lost", requestedBy: "bob", atMs: 2 });
    events.push({ type: "FAILOVER", operationId: "fo-ap", target: "pg-ap", acceptDataLossMs: 60_000, reason: "region lost", requestedBy: "bob", atMs: 2 });
    for (const member of c.diverged) {
      events.push({ type: "REJOIN", operationId: `rj-${member}`, member, reason: "back", requestedBy: "carol", atMs: 3 });
      events.push({ type: "REJOIN", operationId: `rj-${member}-ok`, member, reason: "back", requestedBy: "carol", approved: true, atMs: 3 });
    }
  }
  events.push({ type: "PRIMARY_SUSPECT", atMs: 10, reason: "no observation for 15 s" });
  if (s.matches({ operation: "failover" })) {
    events.push({ type: "PRIMARY_RECOVERED", atMs: 11 });
    events.push({ type: "LOSS_ESTIMATES", candidates: within, atMs: 12 });
    events.push({ type: "LOSS_ESTIMATES", candidates: over, atMs: 12 });
  }
  events.push(c.paused ? { type: "RESUME", by: "alice" } : { type: "PAUSE", by: "alice", reason: "maintenance" });
  if (op) {
    events.push({ type: "ABORT", operationId: op.id, reason: "changed my mind", by: "alice" });
    events.push({ type: "APPROVE", operationId: op.id, acceptedLossMs: 20_000, by: "dave" });
    events.push({ type: "APPROVE", operationId: op.id, acceptedLossMs: 90_000, by: "dave" });
  }
  if (s.matches({ operation: "operatorRequired" })) {
    events.push({ type: "RESOLVE", primary: "pg-us", by: "erin", reason: "checked by hand" });
    events.push({ type: "RESOLVE", primary: "pg-eu", by: "erin", reason: "checked by hand" });
  }
  for (const member of c.pendingFence) events.push({ type: "FORMER_PRIMARY_SEEN", member });
  for (const id of Object.keys(s.children)) {
    for (const output of actorResults[id] ?? []) events.push(injected({ type: `xstate.done.actor.${id}`, output } as EventObject));
    events.push(injected({ type: `xstate.error.actor.${id}`, error: new Error(`${id} failed`) } as EventObject));
  }
  for (const type of __unsafe_getAllOwnEventDescriptors(s) as string[]) {
    if (type.startsWith("xstate.after.")) events.push(injected({ type }));
  }
  return events;
}

/**
 * What makes two snapshots the same vertex for the graph: everything the safety rules depend on.
 * Sentences (lastDecision, alert reasons) and the last finished operation are left out, or the
 * graph would count every wording as a new state.
 */
function safetyKey(s: Snapshot): string {
  const c = s.context;
  const op = c.operation;
  return JSON.stringify([
    s.value,
    c.epoch,
    c.designatedPrimary,
    c.paused,
    op && [op.id, op.target, op.step, op.acceptedLossMs, op.worstCaseLossMs],
    c.pendingFence,
    c.diverged,
    c.fencing,
    c.demotionToken,
    c.lossEstimates.map((e) => e.worstCaseLossMs),
    c.alerts.map((a) => a.name).sort(),
  ]);
}

const traversal = {
  input,
  events: eventsFor,
  serializeState: safetyKey,
  // Bounded: stop exploring once the designated primary changed MAX_EPOCH - 1 times.
  stopWhen: (s: Snapshot) => s.context.epoch >= MAX_EPOCH,
};

// ---------------------------------------------------------------------------------------------
// The safety rules, checked on one step of a replayed path. `Track` is the path's history.
// ---------------------------------------------------------------------------------------------

interface Track {
  primaryByEpoch: Map<number, string>;
  tokenFor: Set<string>;
  confirmedDown: Set<string>;
}

/** A plain check: vitest's expect() is too slow for tens of thousands of steps. */
function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(`safety rule broken: ${message}`);
}

function checkStep(before: Snapshot, event: EventObject, after: Snapshot, track: Track): void {
  const b = before.context;
  const a = after.context;
  const where = `${JSON.stringify(before.value)} --${event.type}--> ${JSON.stringify(after.value)}`;

  // Rule 1: at most one designated primary per epoch.
  if (a.designatedPrimary !== null) {
    const seen = track.primaryByEpoch.get(a.epoch);
    check(seen === undefined || seen === a.designatedPrimary, `two primaries in epoch ${a.epoch}: ${where}`);
    track.primaryByEpoch.set(a.epoch, a.designatedPrimary);
  }
  // The epoch changes exactly when the designated primary changes, by one.
  const changed = a.designatedPrimary !== b.designatedPrimary;
  check(a.epoch === (changed ? b.epoch + 1 : b.epoch), `epoch rule: ${where}`);

  // Remember facts the later rules need.
  if (event.type === "xstate.done.actor.awaitDemotionToken" && b.operation) track.tokenFor.add(b.operation.id);
  if (event.type === "xstate.done.actor.confirmPrimaryDown" && b.operation && "output" in event) {
    const output = event.output as ConfirmPrimaryDownOutput;
    if (output.fenced || output.leaseExpired) track.confirmedDown.add(b.operation.id);
  }

  // Rule 2: a token promotion only happens inside a switchover, with the token it received.
  if ("promoteWithToken" in after.children) {
    check(after.matches({ operation: { switchover: "promote" } }), where);
    check(a.operation?.kind === "switchover", where);
    check(a.demotionToken !== null, where);
    check(track.tokenFor.has(a.operation?.id ?? ""), `token promote without a token: ${where}`);
  }

  // Every change of designated primary has one of four known causes.
  if (changed) {
    const enteredPromote =
      (after.matches({ operation: { switchover: "promote" } }) && !before.matches({ operation: { switchover: "promote" } })) ||
      (after.matches({ operation: { failover: "promoting" } }) && !before.matches({ operation: { failover: "promoting" } }));
    const resolved = event.type === "RESOLVE";
    const undoFailed = a.designatedPrimary === null && before.matches({ operation: { switchover: "undoing" } });
    check(enteredPromote || resolved || undoFailed, `unexpected change of primary: ${where}`);
    if (undoFailed) check(a.alerts.some((x) => x.name === "PgfedNoPrimary"), where);
  }

  // Rule 3: an unplanned promotion needs the old primary confirmed down, and a loss within the
  // budget (automatic: also automatic mode and unpaused) or an accepted loss that covers it.
  if (after.matches({ operation: { failover: "promoting" } }) && !before.matches({ operation: { failover: "promoting" } })) {
    const op = a.operation;
        if (!op) return;
    check(track.confirmedDown.has(op.id), `failover promote without confirmation: ${where}`);
    const estimate = a.lossEstimates.find((e) => e.target === op.target);
    check(estimate !== undefined, where);
    const worst = estimate?.worstCaseLossMs ?? Number.POSITIVE_INFINITY;
    check(op.worstCaseLossMs === worst, where);
    const accepted = op.acceptedLossMs !== undefined && op.acceptedLossMs >= worst;
    const inBudget = worst <= a.rpo.budgetMs && (!op.automatic || (a.failoverMode === "automatic" && !a.paused));
    check(accepted || inBudget, `unplanned promotion beyond the budget without approval: ${where}`);
    check(!(op.target === op.from || a.diverged.includes(op.target ?? "")), where);
  }

  // Every abort raises an alert naming the operation.
  const opBefore = b.operation;
  const aborted =
    opBefore !== null &&
    ((a.lastOperation?.id === opBefore.id && a.lastOperation.outcome === "aborted" && b.lastOperation?.id !== opBefore.id) ||
      (a.operation?.id === opBefore.id && a.operation.step !== opBefore.step && (a.operation.step === "undo" || a.operation.step === "operatorRequired")));
  if (aborted) {
    const named = a.alerts.some((x) => (x.name === "PgfedOperationFailed" || x.name === "PgfedNoPrimary") && x.reason.length > 0);
    check(named, `abort without alert: ${where}`);
    if (a.operation?.step !== "operatorRequired" || a.designatedPrimary !== null) {
      check(a.alerts.find((x) => x.name === "PgfedOperationFailed")?.reason.includes(opBefore.id) === true, where);
    }
  }
  // An operation step that errors or an ABORT for the operation in flight always stops it.
  const failedActor = event.type.startsWith("xstate.error.actor.") ? event.type.slice("xstate.error.actor.".length) : null;
  const errorOfStep = failedActor !== null && OPERATION_ACTORS.has(failedActor) && failedActor in before.children;
  const abortOfOp = event.type === "ABORT" && "operationId" in event && event.operationId === opBefore?.id;
  if ((errorOfStep || abortOfOp) && opBefore && opBefore.step !== "undo" && opBefore.step !== "operatorRequired") {
    check(aborted || a.designatedPrimary === null, `error/abort did not stop the operation: ${where}`);
  }
}

function replay(
  steps: ReadonlyArray<{ event: FederationEvent }>,
  cache: Map<string, { snapshot: Snapshot; track: Track }>,
  visit?: (snapshot: Snapshot, event: FederationEvent) => void,
  checkDescriptions = true,
): { snapshot: Snapshot; replayed: number } {
  let [snapshot] = initialTransition(federationMachine, input);
  let track: Track = { primaryByEpoch: new Map([[1, "pg-eu"]]), tokenFor: new Set(), confirmedDown: new Set() };
  let key = "";
  let replayed = 0;
  for (const { event } of steps) {
    key += `|${JSON.stringify(event)}`;
    const hit = cache.get(key);
    if (hit) {
      ({ snapshot, track } = hit);
      continue;
    }
    visit?.(snapshot, event);
    const [next] = transition(federationMachine, snapshot, event);
    const nextTrack: Track = {
      primaryByEpoch: new Map(track.primaryByEpoch),
      tokenFor: new Set(track.tokenFor),
      confirmedDown: new Set(track.confirmedDown),
    };
    checkStep(snapshot, event, next, nextTrack);
    if (checkDescriptions) {
      for (const t of federationMachine.getTransitionData(snapshot, event)) {
        check(Boolean(t.description), `undescribed transition on ${event.type}`);
      }
    }
    snapshot = next;
    track = nextTrack;
    cache.set(key, { snapshot, track });
    replayed += 1;
  }
  return { snapshot, replayed };
}

function stateValueOf(path: readonly string[]): object | string {
  const [head, ...rest] = path;
  if (head === undefined) return {};
  return rest.length === 0 ? head : { [head]: stateValueOf(rest) };
}

describe("federation machine, model-based", () => {
  const shortest = getShortestPaths(federationMachine, traversal);
  // Simple paths over (state value, epoch, designated primary, operation kind, paused): loop-free
  // walks through every flow up to the first change of primary (all of them: beyond that they explode).
  const simple = getSimplePaths(federationMachine, {
    ...traversal,
    serializeState: (s) => JSON.stringify([s.value, s.context.epoch, s.context.designatedPrimary, s.context.operation?.kind, s.context.paused]),
    stopWhen: (s: Snapshot) => s.context.epoch >= 2,
  });

  it("reaches every state node, transient ones included", () => {
    const visited = new Set<string>();
    const cache = new Map<string, { snapshot: Snapshot; track: Track }>();
    const note = (s: Snapshot) => {
      for (const node of getStateNodes(federationMachine.root)) {
        if (s.matches(stateValueOf(node.path) as never)) visited.add(node.id);
      }
    };
    for (const [micro] of getInitialMicrosteps(federationMachine, input)) note(micro);
    for (const path of shortest) {
      replay(path.steps, cache, (snapshot, event) => {
        note(snapshot);
        for (const [micro] of getMicrosteps(federationMachine, snapshot, event)) note(micro);
      });
      note(path.state);
    }
    const all = getStateNodes(federationMachine.root).map((n) => n.id);
    expect(all.filter((id) => !visited.has(id))).toEqual([]);
  }, 120_000);

  it("starts in operatorRequired, with a PgfedNoPrimary alert, when no primary is known", () => {
    const [s] = initialTransition(federationMachine, { ...input, designatedPrimary: null });
    expect(s.matches({ operation: "operatorRequired" })).toBe(true);
    expect(s.context.alerts.map((a) => a.name)).toEqual(["PgfedNoPrimary"]);
  });

  it("keeps the safety rules at every step of every generated path", () => {
    const cache = new Map<string, { snapshot: Snapshot; track: Track }>();
    let replayed = 0;
    for (const path of shortest) {
      const r = replay(path.steps, cache);
      replayed += r.replayed;
      expect(safetyKey(r.snapshot)).toBe(safetyKey(path.state));
    }
    // The description check already ran on every vertex above (and statically in describe.test.ts).
    for (const path of simple) replayed += replay(path.steps, cache, undefined, false).replayed;
    const total = shortest.length + simple.length;
    console.log(
      `federation machine: ${total} paths checked (${shortest.length} shortest, ${simple.length} simple; ${replayed} distinct steps replayed), all safety rules held`,
    );
    expect(total).toBeGreaterThan(100);
  }, 180_000);
});
