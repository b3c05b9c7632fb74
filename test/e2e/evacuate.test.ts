/**
 * `pgfed evacuate <region>` over the lab's real coordinator, three regions: the dry run names the
 * move, the evacuation switches the federation over to the least-lagging member elsewhere with 0
 * acknowledged rows lost, the summary says so, and evacuating a region without primaries does
 * nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { serveLabApi, type LabApi } from "../support/lab-api.js";
import { FED, connectionOf, federation, query, startE2E, waitUntil, type E2E } from "./fixture.js";

let e: E2E;
let api: LabApi;

beforeAll(async () => {
  e = await startE2E("evacuate", { regions: 3 });
  api = await serveLabApi(e, { name: "oncall", role: "operator", token: "evacuate-operator-token" });
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
}, 180_000);

afterAll(async () => {
  await api?.close();
  await e?.stop();
}, 120_000);

describe("pgfed evacuate", () => {
  it("moves the federation out of eu-west to its best member elsewhere, losing no acknowledged row", async () => {
    const dry = await api.cli(["evacuate", "eu-west", "--dry-run", "-o", "json"]);
    expect(dry.code, dry.err).toBe(0);
    const plan = JSON.parse(dry.out) as { moves: { federation: string; from: string; target: string; state: string; lagSeconds: number | null }[] };
    expect(plan.moves).toHaveLength(1);
    const move = plan.moves[0];
    expect(move).toMatchObject({ federation: FED, from: "pg-eu", state: "planned" });
    expect(["pg-us", "pg-ap"]).toContain(move?.target);

    await query(connectionOf(e.lab, "pg-eu"), `TRUNCATE ${ROWS_TABLE}`);
    const writer = startRowWriter(() => connectionOf(e.lab, federation(e).designatedPrimary ?? "pg-eu"), 2);
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 30);
    const t0 = Date.now();
    const r = await api.cli(["evacuate", "eu-west", "--yes", "--wait", "--reason", "e2e: evacuate eu-west"]);
    const tookMs = Date.now() - t0;
    expect(r.code, `${r.out}${r.err}`).toBe(0);
    expect(r.out).toContain("1 moved, 0 failed, 0 skipped");
    const target = federation(e).designatedPrimary ?? "";
    expect(["pg-us", "pg-ap"]).toContain(target);
    const settled = writer.committedCount;
    await waitUntil("commits on the new primary", 20_000, () => writer.committedCount > settled + 20);
    const report = await writer.stop();
    const rows = await query<{ id: string }>(connectionOf(e.lab, target), `SELECT id FROM ${ROWS_TABLE}`);
    const present = new Set(rows.map((x) => Number(x.id)));
    const lost = report.committed.filter((id) => !present.has(id));
    console.log(`evacuate eu-west: ${FED} moved pg-eu -> ${target} (dry run chose ${move?.target}) in ${(tookMs / 1000).toFixed(2)} s; write unavailability ${(report.maxGapMs / 1000).toFixed(2)} s; ${report.committed.length} rows committed, ${lost.length} lost`);
    expect(lost).toEqual([]);
    const audit = await e.plane.coordinator.audit(FED, {});
    expect(audit.some((a) => a.action === "request.switchover" && /^evacuation \S+ of region eu-west: e2e: evacuate eu-west$/.test(a.reason ?? ""))).toBe(true);
  });

  it("does nothing for a region that holds no primary", async () => {
    const primaryRegion = federation(e).members.find((m) => m.name === federation(e).designatedPrimary)?.region;
    const r = await api.cli(["evacuate", "eu-west", "--yes"]);
    expect(primaryRegion).not.toBe("eu-west");
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("no federation has its primary in region eu-west; nothing to do");
  });
});
