/**
 * Three regions (pg-eu, pg-us, pg-ap), under a writer. With three members every change of primary
 * must repoint every replica's spec.replica.primary and source (CNPG follows `source`), or a member
 * keeps following a demoted cluster and never reaches the new timeline: the bug this file guards
 * against left pg-eu and pg-us following each other after pg-eu → pg-ap, and the next switchover
 * stranded the federation with no writable primary.
 *
 * 1. Switchovers around the ring eu → us → ap → eu: each loses no acknowledged row, and after each
 *    every other member replays a row written on the new primary (so it is on its timeline).
 * 2. Failover with three members: pg-eu's region is lost; pgfed promotes the least-loss replica,
 *    the third member follows it; the region comes back, pg-eu (crashed, so CNPG can never finish
 *    its demotion) is fenced and marked diverged, and a rejoin re-clones it without a token.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PgConnectionInfo } from "../../src/lab/cnpg/instance.js";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { FED, connectionOf, federation, finished, query, restoreRegion, startE2E, waitUntil, writable, type E2E } from "./fixture.js";

const MEMBERS = ["pg-eu", "pg-us", "pg-ap"] as const;
const MARKS = "pgfed_e2e_marks";

let e: E2E;

beforeAll(async () => {
  e = await startE2E("three-regions", { regions: 3 });
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
  await query(connectionOf(e.lab, "pg-eu"), `CREATE TABLE ${MARKS} (id bigserial PRIMARY KEY, label text NOT NULL)`);
}, 180_000);

afterAll(async () => {
  await e?.stop();
});

async function safeQuery<T extends Record<string, unknown>>(conn: PgConnectionInfo, sql: string): Promise<T[] | undefined> {
  try {
    return await query<T>(conn, sql);
  } catch {
    return undefined;
  }
}

/** Writes a row on `primary` and waits until each of `followers` (in recovery) replays it: they follow its timeline. */
async function expectFollowing(primary: string, followers: readonly string[], label: string): Promise<number> {
  const rows = await query<{ id: string }>(connectionOf(e.lab, primary), `INSERT INTO ${MARKS} (label) VALUES ('${label}') RETURNING id`);
  const id = Number(rows[0]?.id);
  const t0 = Date.now();
  for (const m of followers) {
    await waitUntil(`${m} to replay ${label} written on ${primary}`, 30_000, async () => {
      const r = await safeQuery<{ rec: boolean; n: string }>(connectionOf(e.lab, m), `SELECT pg_is_in_recovery() AS rec, (SELECT count(*) FROM ${MARKS} WHERE id = ${id}) AS n`);
      return r?.[0]?.rec === true && r[0].n === "1";
    }, 200);
  }
  return Date.now() - t0;
}

async function switchWithWriter(from: string, to: string): Promise<string> {
  const before = federation(e);
  expect(before.designatedPrimary).toBe(from);
  await query(connectionOf(e.lab, from), `TRUNCATE ${ROWS_TABLE}`);
  const writer = startRowWriter(() => connectionOf(e.lab, federation(e).designatedPrimary ?? from), 2);
  await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
  const res = await e.plane.coordinator.switchover(FED, { target: to }, { requestedBy: "e2e", reason: `ring switchover to ${to}` }, { dryRun: false });
  if (res.kind !== "operation") throw new Error(`expected an operation, got ${JSON.stringify(res)}`);
  const op = await finished(e, res.operation.id, 120_000);
  expect(op.state, op.lastDecision).toBe("completed");
  await waitUntil("commits on the new primary", 20_000, () => federation(e).designatedPrimary === to && writer.committedCount > 0);
  const settled = writer.committedCount;
  await waitUntil("more commits after the switchover", 20_000, () => writer.committedCount > settled + 20);
  const report = await writer.stop();

  const present = new Set((await query<{ id: string }>(connectionOf(e.lab, to), `SELECT id FROM ${ROWS_TABLE}`)).map((r) => Number(r.id)));
  const lost = report.committed.filter((id) => !present.has(id));
  expect(lost).toEqual([]);
  const followMs = await expectFollowing(to, MEMBERS.filter((m) => m !== to), `after ${from}->${to}`);

  // pgfed's own view agrees: every replica names the new primary and follows it, and only it writes.
  const f = federation(e);
  expect(f.epoch).toBe(before.epoch + 1);
  for (const m of MEMBERS) expect(await writable(connectionOf(e.lab, m)), m).toBe(m === to);
  return `${from} -> ${to}: operation ${op.durationSeconds?.toFixed(2) ?? "?"} s, write unavailability ${(report.maxGapMs / 1000).toFixed(2)} s, ${report.committed.length} rows committed, ${lost.length} lost, others on the new timeline ${(followMs / 1000).toFixed(2)} s after`;
}

describe("three regions", () => {
  it("switches around the ring eu → us → ap → eu with zero loss, every member following the new primary each time", async () => {
    const lines: string[] = [];
    lines.push(await switchWithWriter("pg-eu", "pg-us"));
    lines.push(await switchWithWriter("pg-us", "pg-ap"));
    lines.push(await switchWithWriter("pg-ap", "pg-eu"));
    for (const l of lines) console.log(`three-region switchover ${l}`);
    // Every spec names pg-eu; every replica's source is pg-eu (no cycle left behind).
    const f = federation(e);
    expect(f.designatedPrimary).toBe("pg-eu");
  }, 420_000);

  it("fails over to the least-loss replica when pg-eu's region is lost; the third member follows; pg-eu is diverged and rejoins without a token", async () => {
    await query(connectionOf(e.lab, "pg-eu"), `TRUNCATE ${ROWS_TABLE}`); // the writer numbers its rows from 1
    const writer = startRowWriter(() => connectionOf(e.lab, "pg-eu"), 2);
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
    const estimates = e.plane.coordinator.getFederation(FED)?.members.map((m) => `${m.name} lag ${String(m.lagSeconds)} s`);
    await e.plane.partitionAgentFromBus("eu-west");
    await e.lab.killRegion("eu-west");
    const report = await writer.stop();
    await e.plane.stopAgent("eu-west");
    const t0 = Date.now();
    await waitUntil("the failover to complete", 90_000, () => {
      const f = federation(e);
      return f.designatedPrimary !== "pg-eu" && f.designatedPrimary !== null && f.operation === null;
    }, 100);
    const failoverMs = Date.now() - t0;
    const primary = federation(e).designatedPrimary as string;
    const other = primary === "pg-us" ? "pg-ap" : "pg-us";

    const present = new Set((await query<{ id: string }>(connectionOf(e.lab, primary), `SELECT id FROM ${ROWS_TABLE}`)).map((r) => Number(r.id)));
    const lost = report.committed.filter((id) => !present.has(id));
    await expectFollowing(primary, [other], "after the failover");
    expect(await writable(connectionOf(e.lab, other))).toBe(false);

    // The region comes back, its agent fencing pg-eu before its instance may start: the crashed
    // data directory is never recovered, so CNPG can never finish its demotion: fenced, diverged.
    await restoreRegion(e, "eu-west");
    await waitUntil("pg-eu to be fenced and marked diverged", 90_000, () => {
      const f = federation(e);
      return f.diverged.includes("pg-eu") && f.members.find((m) => m.name === "pg-eu")?.fenced === true;
    }, 100);
    expect(await writable(connectionOf(e.lab, "pg-eu"))).toBe(false);
    // It crashed with its region: CNPG never produces its demotion token, and pgfed says so.
    const stuck = (await e.plane.coordinator.audit(FED, {})).filter((a) => a.action === "former.demotion_stuck" && a.member === "pg-eu");
    expect(stuck.length).toBeGreaterThan(0);
    const c = await e.lab.getCluster("pg-eu");
    expect(c.status?.switchReplicaClusterStatus?.inProgress).toBe(true);
    expect(c.status?.demotionToken ?? "").toBe("");

    const res = await e.plane.coordinator.rejoin(FED, { member: "pg-eu" }, { requestedBy: "e2e", reason: "rejoin after the three-region failover" }, { dryRun: false });
    if (res.kind !== "operation") throw new Error(`expected an operation, got ${JSON.stringify(res)}`);
    expect(res.operation.state).toBe("awaitingApproval");
    await e.plane.coordinator.approve(res.operation.id, {}, { requestedBy: "e2e", reason: "discard pg-eu's diverged writes" }, { dryRun: false });
    const op = await finished(e, res.operation.id, 180_000);
    expect(op.state, op.lastDecision).toBe("completed");
    await expectFollowing(primary, [other, "pg-eu"], "after the rejoin");
    console.log(
      `three-region failover: ${primary} promoted ${(failoverMs / 1000).toFixed(2)} s after the region was lost (before: ${estimates?.join(", ") ?? "?"}), ` +
        `${report.committed.length} rows acknowledged, ${lost.length} lost; ${other} follows it; pg-eu rejoined in ${op.durationSeconds?.toFixed(1) ?? "?"} s`,
    );
  }, 420_000);
});
