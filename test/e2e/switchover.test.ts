/**
 * Scenario 1: a planned switchover while a writer commits continuously loses no committed row,
 * the old primary follows the new one, the epoch goes up by one and the audit stream tells the
 * story in order. Then back again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { FED, connectionOf, federation, finished, query, startE2E, storyOf, waitUntil, type E2E } from "./fixture.js";

let e: E2E;

beforeAll(async () => {
  e = await startE2E("switchover");
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
});

afterAll(async () => {
  await e?.stop();
});

async function switchWithWriter(from: string, to: string): Promise<void> {
  const before = federation(e);
  expect(before.designatedPrimary).toBe(from);
  await query(connectionOf(e.lab, from), `TRUNCATE ${ROWS_TABLE}`);
  // The writer always targets the member CNPG-wise designated by the coordinator.
  const writer = startRowWriter(() => connectionOf(e.lab, federation(e).designatedPrimary ?? from), 2);
  await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
  const t0 = Date.now();
  const res = await e.plane.coordinator.switchover(FED, { target: to }, { requestedBy: "e2e", reason: `planned switchover to ${to}` }, { dryRun: false });
  if (res.kind !== "operation") throw new Error("expected an operation");
  const op = await finished(e, res.operation.id, 90_000);
  const tDone = Date.now() - t0;
  await waitUntil("the writer to commit on the new primary", 20_000, () => (writer.lastCommittedId ?? 0) > 0 && writer.committedCount > 0 && federation(e).designatedPrimary === to);
  const settled = writer.committedCount;
  await waitUntil("more commits after the switchover", 20_000, () => writer.committedCount > settled + 20);
  const report = await writer.stop();

  expect(op.state, op.lastDecision).toBe("completed");
  expect(op.epochAfter).toBe(op.epochBefore + 1);
  const after = federation(e);
  expect(after.designatedPrimary).toBe(to);
  expect(after.epoch).toBe(before.epoch + 1);

  // Zero committed rows lost: every acknowledged id is on the new primary.
  const rows = await query<{ id: string }>(connectionOf(e.lab, to), `SELECT id FROM ${ROWS_TABLE}`);
  const present = new Set(rows.map((r) => Number(r.id)));
  const lost = report.committed.filter((id) => !present.has(id));
  expect(lost).toEqual([]);

  // The old primary follows the new one: in recovery, and it replays the writer's last rows.
  await waitUntil(`${from} to replay the last committed row`, 30_000, async () => {
    try {
      const r = await query<{ rec: boolean; n: string }>(connectionOf(e.lab, from), `SELECT pg_is_in_recovery() AS rec, (SELECT count(*) FROM ${ROWS_TABLE} WHERE id = ${report.committed[report.committed.length - 1] ?? 0}) AS n`);
      return r[0]?.rec === true && r[0].n === "1";
    } catch {
      return false;
    }
  }, 200);

  // The audit stream tells the whole story, in order.
  const audit = await e.plane.coordinator.audit(FED, {});
  const story = storyOf(audit, op.id);
  const expected = ["switchover accepted", "preflight passed", "old primary patched", "primary demoted cleanly", "target promoted", "switchover completed"];
  let at = -1;
  for (const words of expected) {
    const i = story.findIndex((d, idx) => idx > at && d.includes(words));
    expect(i, `audit story should contain "${words}" after position ${at}: ${JSON.stringify(story)}`).toBeGreaterThan(at);
    at = i;
  }
  const actions = audit.filter((a) => a.operationId === op.id).map((a) => a.action);
  expect(actions).toContain("command.sent");
  expect(actions).toContain("command.result");

  console.log(
    `switchover ${from} -> ${to}: operation ${op.durationSeconds?.toFixed(2) ?? "?"} s (request to completed ${(tDone / 1000).toFixed(2)} s), ` +
      `write unavailability ${(report.maxGapMs / 1000).toFixed(2)} s, ${report.committed.length} rows committed, ${lost.length} lost, ${report.inDoubt.length} in doubt, epoch ${before.epoch} -> ${after.epoch}`,
  );
}

describe("planned switchover under write load", () => {
  it("switches pg-eu to pg-us with zero committed rows lost and the epoch + 1", async () => {
    await switchWithWriter("pg-eu", "pg-us");
  });

  it("switches back to pg-eu the same way", async () => {
    await switchWithWriter("pg-us", "pg-eu");
  });

  it("a dry run plans with preconditions and changes nothing", async () => {
    await waitUntil("a lag figure for pg-us", 20_000, () => federation(e).members.find((m) => m.name === "pg-us")?.lagSeconds != null);
    const before = federation(e);
    const res = await e.plane.coordinator.switchover(FED, { target: "pg-us" }, { requestedBy: "e2e", reason: "dry run" }, { dryRun: true });
    expect(res.kind).toBe("plan");
    if (res.kind !== "plan") return;
    expect(res.plan.allowed, res.plan.refusal ?? "").toBe(true);
    expect(res.plan.preconditions.map((p) => p.name)).toContain("targetLagWithinBudget");
    const after = federation(e);
    expect(after.epoch).toBe(before.epoch);
    expect(after.operation).toBeNull();
  });
});
