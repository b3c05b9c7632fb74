/**
 * Scenario 4: the coordinator crashes (no lease release) at each step of a planned switchover in
 * turn — preflight, demote, awaitToken, promote, verify — while a writer commits. A new leader,
 * once the coordinator lease lapses, resumes from the KV record and completes the switchover (or
 * aborts it safely). After each: exactly one designated primary (coordinator, KV and CNPG agree,
 * one member writable), the epoch consistent, zero committed rows lost, the old primary following.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, openStateStore, type Bus, type StateStore } from "../../src/bus/index.js";
import { federationRecordSchema, type FederationRecord, type OperationView } from "../../src/coordinator/index.js";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { FED, connectionOf, federation, finished, query, startE2E, waitUntil, writable, type E2E } from "./fixture.js";

const STEPS = ["preflight", "demote", "awaitToken", "promote", "verify"] as const;
type Step = (typeof STEPS)[number];
const COORDINATOR_LEASE_TTL_MS = 2_000;

let e: E2E;
let bus: Bus;
let store: StateStore<FederationRecord>;
const figures: string[] = [];

beforeAll(async () => {
  e = await startE2E("coordinator-crash", { plane: { coordinatorLeaseTtlMs: COORDINATOR_LEASE_TTL_MS } });
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
  bus = await connectBus({ ...e.lab.busOptions("coordinator", 2), name: "e2e-coordinator-crash-reader", log: e.log });
  store = await openStateStore(bus, federationRecordSchema, { scope: "*" });
});

afterAll(async () => {
  for (const f of figures) console.log(f);
  await bus?.close().catch(() => undefined);
  await e?.stop();
});

/** The designated primary as the running coordinator sees it (undefined while none runs). */
function designated(): string | undefined {
  try {
    return e.plane.coordinator.getFederation(FED)?.designatedPrimary ?? undefined;
  } catch {
    return undefined;
  }
}

interface Attempt {
  op: OperationView;
  /** The step the KV record held when the coordinator died: where the new leader resumed. */
  resumedAt: string;
  killToLeaderMs: number;
  killToFinishedMs: number;
  requestToFinishedMs: number;
  maxGapMs: number;
  committed: number;
  lost: number;
  designated: string;
}

/** One switchover `from` → `to` with the coordinator killed at `step`; checks the safety properties after. */
async function switchoverWithCrash(step: Step, from: string, to: string): Promise<Attempt> {
  const before = federation(e);
  expect(before.designatedPrimary).toBe(from);
  await query(connectionOf(e.lab, from), `TRUNCATE ${ROWS_TABLE}`);
  let target = from;
  const writer = startRowWriter(() => connectionOf(e.lab, target), 2);
  let following = true;
  const follow = (async () => {
    while (following) {
      target = designated() ?? target;
      await sleep(50);
    }
  })();
  try {
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 30);

    if (step === "preflight") {
      // A leader that has just taken over has no observations or lag figures yet.
      await e.plane.killCoordinator();
      await (await e.plane.startCoordinator()).waitLeader(30_000);
    }
    const c = e.plane.coordinator;
    let killing: Promise<void> | undefined;
    let killedAt = 0;
    const kill = (): void => {
      if (killing) return;
      killedAt = Date.now();
      killing = e.plane.killCoordinator();
    };
    const t0 = Date.now();
    // The request's synchronous part registers the operation and enters preflight.
    const request = c.switchover(FED, { target: to }, { requestedBy: "e2e", reason: `switchover to ${to}, coordinator killed at ${step}` }, { dryRun: false });
    request.catch(() => undefined);
    const id = c.getFederation(FED)?.operation?.id;
    if (!id) throw new Error("the switchover did not start");
    const seen: string[] = [];
    const killWhenStored = (): void => {
      void (async () => {
        const until = Date.now() + 60_000;
        while (!killing && Date.now() < until) {
          const r = await store.get(FED).catch(() => undefined);
          if (r?.value.operationId === id && r.value.step === step) kill();
          else await sleep(1);
        }
      })();
    };
    // Where the crash lands (commands are only sent once their step is stored, so the KV record
    // never lags behind what the agents were told):
    //  - preflight: the leader was just replaced, so it waits for observations and lag figures;
    //    crash once the KV record says preflight;
    //  - demote is one quick command: crash as the machine enters awaitToken, after the demote
    //    was done and before that is stored;
    //  - awaitToken, promote, verify last long enough: crash mid-step, once the KV record says so.
    const unwatch = c.watchOperation(id, (op) => {
      seen.push(op.step);
      if (step === "demote" && op.step === "awaitToken") kill();
      else if (op.step === step && step !== "demote") killWhenStored();
    });
    if (step === "preflight") killWhenStored();
    await waitUntil(`the crash at ${step} (steps seen: ${seen.join(", ")})`, 60_000, () => killing !== undefined || c.getOperation(id)?.finishedAt != null, 5);
    if (!killing) throw new Error(`the switchover finished before the crash at ${step}; steps seen: ${seen.join(", ")}`);
    unwatch();
    await killing;

    const rec = await store.get(FED);
    const resumedAt = rec?.value.operationId === id ? (rec.value.step ?? "?") : rec?.value.operations.some((o) => o.id === id) ? "finished" : "not stored";
    const c2 = await e.plane.startCoordinator();
    await c2.waitLeader(30_000);
    const killToLeaderMs = Date.now() - killedAt;

    let op: OperationView;
    if (resumedAt === "not stored") {
      // Nothing of the operation reached the store, so nothing was done: the new leader never heard of it.
      const now = federation(e);
      op = { id, federation: FED, kind: "switchover", state: "aborted", step: "finished", target: to, from, reason: "", requestedBy: "e2e", automatic: false, startedAt: "", finishedAt: new Date().toISOString(), epochBefore: before.epoch, epochAfter: null, acceptedLossSeconds: null, durationSeconds: null, dataLossSeconds: null, lastDecision: "never stored; the new leader did not know it", steps: [] };
      expect(now.operation).toBeNull();
    } else {
      op = await finished(e, id, 90_000);
    }
    const killToFinishedMs = Date.now() - killedAt;
    const requestToFinishedMs = Date.now() - t0;

    // Exactly one designated primary: coordinator, KV record and both CNPG specs agree.
    const after = federation(e);
    const primary = after.designatedPrimary;
    expect(op.state === "completed" || op.state === "aborted", `${op.state}: ${op.lastDecision}`).toBe(true);
    expect(primary === from || primary === to, `designated primary ${String(primary)}`).toBe(true);
    if (op.state === "completed") expect(primary).toBe(to);
    const p = primary as string;
    const other = p === from ? to : from;
    // The epoch goes up by one exactly when the primary changed; the record and the agents agree.
    expect(after.epoch).toBe(before.epoch + (p === to ? 1 : 0));
    if (op.state === "completed") expect(op.epochAfter).toBe(before.epoch + 1);
    const stored = await store.get(FED);
    expect(stored?.value.epoch).toBe(after.epoch);
    expect(stored?.value.designatedPrimary).toBe(p);
    await waitUntil("both Clusters to name the designated primary", 30_000, async () => {
      const a = await e.lab.getCluster(p);
      const b = await e.lab.getCluster(other);
      return a.spec.replica?.primary === p && b.spec.replica?.primary === p && a.spec.replica.promotionToken === undefined;
    }, 100);
    await waitUntil("the agents to follow the epoch", 10_000, () => [...e.plane.agents.values()].every((a) => a.status().epochs[FED]?.epoch === after.epoch), 100);
    await waitUntil(`only ${p} to accept writes`, 30_000, async () => (await writable(connectionOf(e.lab, p))) && !(await writable(connectionOf(e.lab, other))), 100);

    // Zero committed rows lost: every acknowledged id is on the designated primary.
    const settled = writer.committedCount;
    await waitUntil("more commits after the switchover", 30_000, () => writer.committedCount > settled + 20);
    following = false;
    await follow;
    const report = await writer.stop();
    const rows = await query<{ id: string }>(connectionOf(e.lab, p), `SELECT id FROM ${ROWS_TABLE}`);
    const present = new Set(rows.map((r) => Number(r.id)));
    const lost = report.committed.filter((x) => !present.has(x));
    expect(lost).toEqual([]);

    // The other member follows the designated primary: in recovery, replaying the last row.
    const lastId = report.committed[report.committed.length - 1] ?? 0;
    await waitUntil(`${other} to replay the last committed row`, 30_000, async () => {
      try {
        const r = await query<{ rec: boolean; n: string }>(connectionOf(e.lab, other), `SELECT pg_is_in_recovery() AS rec, (SELECT count(*) FROM ${ROWS_TABLE} WHERE id = ${lastId}) AS n`);
        return r[0]?.rec === true && r[0].n === "1";
      } catch {
        return false;
      }
    }, 200);

    return { op, resumedAt, killToLeaderMs, killToFinishedMs, requestToFinishedMs, maxGapMs: report.maxGapMs, committed: report.committed.length, lost: lost.length, designated: p };
  } finally {
    following = false;
    await follow;
    await writer.stop();
  }
}

describe("coordinator crash at every step of a switchover", () => {
  for (const step of STEPS) {
    it(`a new leader finishes the switchover when the coordinator dies at ${step}`, async () => {
      let a: Attempt | undefined;
      // The crash lands where the KV record is; retry when it slipped to a neighbouring step.
      for (let attempt = 1; attempt <= 3; attempt++) {
        const from = federation(e).designatedPrimary ?? "pg-eu";
        const to = from === "pg-eu" ? "pg-us" : "pg-eu";
        if (step !== "preflight") await waitUntil(`a lag figure for ${to}`, 20_000, () => federation(e).members.find((m) => m.name === to)?.lagSeconds != null, 100);
        a = await switchoverWithCrash(step, from, to);
        const line =
          `coordinator killed at ${step} (attempt ${attempt}; KV record at ${a.resumedAt}), ${from} -> ${to}: ${a.op.state} (${a.op.lastDecision}); ` +
          `kill -> new leader ${(a.killToLeaderMs / 1000).toFixed(2)} s, kill -> finished ${(a.killToFinishedMs / 1000).toFixed(2)} s, request -> finished ${(a.requestToFinishedMs / 1000).toFixed(2)} s; ` +
          `write unavailability ${(a.maxGapMs / 1000).toFixed(2)} s; ${a.committed} rows committed, ${a.lost} lost; designated primary ${a.designated}, epoch ${a.op.epochBefore} -> ${a.op.epochAfter ?? a.op.epochBefore}`;
        console.log(line);
        figures.push(line);
        if (a.resumedAt === step) break;
      }
      expect(a?.resumedAt).toBe(step);
      expect(a?.op.state, a?.op.lastDecision).toBe("completed");
    });
  }
});
