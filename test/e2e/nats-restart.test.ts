/**
 * Scenario 5: the NATS server restarts in the middle of a planned switchover (while the old
 * primary is being demoted and its token awaited). Every process reconnects; the switchover
 * completes with zero committed rows lost.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { FED, connectionOf, federation, finished, query, startE2E, waitUntil, writable, type E2E } from "./fixture.js";

let e: E2E;

beforeAll(async () => {
  e = await startE2E("nats-restart");
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
});

afterAll(async () => {
  await e?.stop();
});

describe("NATS restarted mid-switchover", () => {
  it("completes the switchover pg-eu -> pg-us with zero committed rows lost", async () => {
    const before = federation(e);
    expect(before.designatedPrimary).toBe("pg-eu");
    let target = "pg-eu";
    const writer = startRowWriter(() => connectionOf(e.lab, target), 2);
    try {
      await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
      const c = e.plane.coordinator;
      const t0 = Date.now();
      let restarting: Promise<void> | undefined;
      let restartedAtStep = "";
      let restartMs = 0;
      const request = c.switchover(FED, { target: "pg-us" }, { requestedBy: "e2e", reason: "switchover with a NATS restart in the middle" }, { dryRun: false });
      request.catch(() => undefined);
      const id = c.getFederation(FED)?.operation?.id;
      if (!id) throw new Error("the switchover did not start");
      const unwatch = c.watchOperation(id, (op) => {
        target = federation(e).designatedPrimary ?? target;
        if (!restarting && (op.step === "demote" || op.step === "awaitToken")) {
          restartedAtStep = op.step;
          const r0 = Date.now();
          restarting = e.lab.nats.restart().then(() => {
            restartMs = Date.now() - r0;
          });
        }
      });
      const op = await finished(e, id, 90_000);
      const tDone = Date.now() - t0;
      unwatch();
      await restarting;
      target = federation(e).designatedPrimary ?? target;

      await waitUntil("pg-us to accept writes", 30_000, () => writable(connectionOf(e.lab, "pg-us")), 100);
      const settled = writer.committedCount;
      await waitUntil("more commits after the switchover", 30_000, () => writer.committedCount > settled + 20);
      const report = await writer.stop();

      const after = federation(e);
      const rows = await query<{ id: string }>(connectionOf(e.lab, "pg-us"), `SELECT id FROM ${ROWS_TABLE}`);
      const present = new Set(rows.map((r) => Number(r.id)));
      const lost = report.committed.filter((x) => !present.has(x));
      const lastId = report.committed[report.committed.length - 1] ?? 0;
      await waitUntil("pg-eu to follow pg-us and replay the last committed row", 30_000, async () => {
        try {
          const r = await query<{ rec: boolean; n: string }>(connectionOf(e.lab, "pg-eu"), `SELECT pg_is_in_recovery() AS rec, (SELECT count(*) FROM ${ROWS_TABLE} WHERE id = ${lastId}) AS n`);
          return r[0]?.rec === true && r[0].n === "1";
        } catch {
          return false;
        }
      }, 200);

      console.log(
        `switchover pg-eu -> pg-us with NATS restarted at step ${restartedAtStep || "(never)"}: restart took ${(restartMs / 1000).toFixed(2)} s; ` +
          `request -> ${op.state} ${(tDone / 1000).toFixed(2)} s (operation ${op.durationSeconds?.toFixed(2) ?? "?"} s); write unavailability ${(report.maxGapMs / 1000).toFixed(2)} s; ` +
          `${report.committed.length} rows committed, ${lost.length} lost, ${report.inDoubt.length} in doubt; epoch ${before.epoch} -> ${after.epoch}`,
      );
      expect(restartedAtStep === "demote" || restartedAtStep === "awaitToken").toBe(true);
      expect(op.state, op.lastDecision).toBe("completed");
      expect(after.designatedPrimary).toBe("pg-us");
      expect(after.epoch).toBe(before.epoch + 1);
      expect(lost).toEqual([]);
      expect(await writable(connectionOf(e.lab, "pg-eu"))).toBe(false);
    } finally {
      await writer.stop();
    }
  });
});
