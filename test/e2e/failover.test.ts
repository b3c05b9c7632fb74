/**
 * Scenario 2: the primary's region is lost (Postgres SIGKILLed, Kubernetes API down, agent gone):
 * automatic failover within leaseTtl + clockSkewMargin + 2 s, measured loss within the budget,
 * epoch + 1. Scenario 7: the region comes back; the former primary is fenced before it can take a
 * single write (its agent's fence sweep runs before the instance restarts), then demoted and marked
 * diverged.
 */
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { FED, connectionOf, federation, finished, query, restoreRegion, startE2E, storyOf, waitUntil, writable, type E2E } from "./fixture.js";

const PROBE_TABLE = "pgfed_restore_probe";

let e: E2E;
let epochBefore = 0;

beforeAll(async () => {
  e = await startE2E("failover");
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
  await query(connectionOf(e.lab, "pg-eu"), `CREATE TABLE ${PROBE_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
});

afterAll(async () => {
  await e?.stop();
});

describe("region loss of the primary", () => {
  it("fails over automatically to pg-us within leaseTtl + clockSkewMargin + 2 s, losing no more than the budget", async () => {
    const cfg = e.plane.config.federations[0];
    if (!cfg) throw new Error("no federation in the lab config");
    epochBefore = federation(e).epoch;
    const eu = connectionOf(e.lab, "pg-eu");
    const us = connectionOf(e.lab, "pg-us");
    const writer = startRowWriter(() => eu, 2);
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 100);
    await new Promise((r) => setTimeout(r, 2_000));

    const t0 = Date.now();
    await e.plane.partitionAgentFromBus("eu-west"); // the region's agent is gone with it: no lease release
    await e.lab.killRegion("eu-west");
    const killMs = Date.now() - t0;
    const report = await writer.stop();
    await e.plane.stopAgent("eu-west");

    const toWritable = await waitUntil("pg-us to accept writes", 30_000, () => writable(us), 50);
    const f = federation(e);
    const opId = f.operation?.id ?? null;
    const op = opId ? await finished(e, opId, 30_000) : undefined;
    const after = federation(e);

    // Loss: committed rows that pg-us does not have, and the window they span.
    const rows = await query<{ id: string }>(us, `SELECT id FROM ${ROWS_TABLE}`);
    const present = new Set(rows.map((r) => Number(r.id)));
    const lost = report.committed.filter((id) => !present.has(id));
    const lastAt = await query<{ ms: string }>(us, `SELECT (extract(epoch FROM max(at)) * 1000)::bigint AS ms FROM ${ROWS_TABLE}`);
    const lossWindowMs = lost.length === 0 ? 0 : Math.max(0, t0 - Number(lastAt[0]?.ms ?? t0));

    const bound = cfg.failover.leaseTtl + cfg.failover.clockSkewMargin + 2_000;
    console.log(
      `failover after region loss: kill took ${killMs} ms; kill to pg-us writable ${(toWritable / 1000).toFixed(2)} s (bound ${bound / 1000} s); ` +
        `${lost.length} of ${report.committed.length} committed rows lost, loss window ${(lossWindowMs / 1000).toFixed(2)} s (budget ${cfg.rpo.budget / 1000} s); ` +
        `estimated worst-case loss ${op?.dataLossSeconds ?? "?"} s; epoch ${epochBefore} -> ${after.epoch}`,
    );
    expect(op?.state, op?.lastDecision).toBe("completed");
    expect(op?.automatic).toBe(true);
    expect(after.designatedPrimary).toBe("pg-us");
    expect(after.epoch).toBe(epochBefore + 1);
    expect(toWritable + killMs).toBeLessThanOrEqual(bound);
    expect(lossWindowMs).toBeLessThanOrEqual(cfg.rpo.budget);
    const story = storyOf(await e.plane.coordinator.audit(FED, {}), opId ?? "");
    expect(story.some((d) => d.includes("confirmed down"))).toBe(true);
    expect(story.some((d) => d.includes("RPO gate passed"))).toBe(true);
  });

  it("fences the former primary before its Postgres restarts when its region comes back: zero writes on it, then pointed at the new primary and marked diverged", async () => {
    const eu = () => connectionOf(e.lab, "pg-eu");
    // A write probe on pg-eu every ~20 ms from before the restore to well after the marking.
    let probing = true;
    let attempts = 0;
    const accepted: { id: number; atMs: number }[] = [];
    const probe = (async () => {
      let c: pg.Client | undefined;
      while (probing) {
        const t = Date.now();
        attempts++;
        try {
          if (!c) {
            const fresh = new pg.Client({ ...eu(), connectionTimeoutMillis: 500, query_timeout: 1_000 });
            fresh.on("error", () => undefined);
            c = fresh;
            await fresh.connect();
          }
          const r = await c.query<{ id: string }>(`INSERT INTO ${PROBE_TABLE} DEFAULT VALUES RETURNING id`);
          accepted.push({ id: Number(r.rows[0]?.id), atMs: Date.now() });
        } catch {
          await c?.end().catch(() => undefined);
          c = undefined;
        }
        await sleep(Math.max(0, 20 - (Date.now() - t)));
      }
      await c?.end().catch(() => undefined);
    })();
    await sleep(200);

    // Kubernetes API back → the region's agent starts and sweeps → the instance restarts (lab order).
    const t0 = Date.now();
    await restoreRegion(e, "eu-west");
    const restoredMs = Date.now() - t0;
    const sweep = e.plane.agents.get("eu-west")?.status().startupSweep;
    const fencedMs = await waitUntil("pg-eu to be fenced, pointed at pg-us and marked diverged", 60_000, async () => {
      const f = federation(e);
      const m = f.members.find((x) => x.name === "pg-eu");
      return f.diverged.includes("pg-eu") && m?.fenced === true && m.role === "replica";
    }, 100);
    await sleep(1_000);
    probing = false;
    await probe;
    const f = federation(e);
    const c = await e.lab.getCluster("pg-eu");
    const audits = await e.plane.coordinator.audit(FED, {});
    const sweepAudit = audits.find((a) => a.action === "primary.superseded_fenced" && a.member === "pg-eu");
    console.log(
      `former primary pg-eu back: restore → fence patch accepted ${sweep?.completedAtMs !== undefined ? sweep.completedAtMs - t0 : "?"} ms ` +
        `(agent fence sweep ${sweep?.durationMs ?? "?"} ms, of which KV read ${sweep?.kvReadMs ?? "?"} ms); restore incl. instance restart ${restoredMs} ms; ` +
        `fenced, pointed at pg-us and marked diverged (CNPG never finishes its demotion) ${(fencedMs / 1000).toFixed(2)} s after the restore returned; ` +
        `write probes on pg-eu: ${attempts} attempts, ${accepted.length} accepted`,
    );
    expect(attempts).toBeGreaterThan(50);
    // Not "few", not "within a bound": the former primary never takes a single write.
    expect(accepted).toEqual([]);
    expect(sweep?.state).toBe("done");
    expect(sweep?.fenced).toEqual([`${FED}/pg-eu`]);
    expect(sweepAudit?.description).toMatch(/designates pg-us/);
    expect(c.spec.replica?.primary).toBe("pg-us");
    expect(c.metadata.annotations?.["cnpg.io/fencedInstances"]).toBeDefined();
    expect(f.designatedPrimary).toBe("pg-us");
    expect(f.diverged).toEqual(["pg-eu"]);
    expect(await writable(eu())).toBe(false);
    expect(f.epoch).toBe(epochBefore + 1);
    // Fenced before its Postgres could run crash recovery, pg-eu's data directory is not cleanly shut
    // down, so CNPG never finishes its demotion (replicaclusterswitch/shutdown_wal.go): it stays
    // switching, fenced and without a token, and pgfed took that as the end of the step.
    const stuck = audits.some((a) => a.action === "former.demotion_stuck" && a.member === "pg-eu");
    // (Once, this failed because the CNPG stand-in started pg-eu from a read taken before the fence; see restartInstance.)
    const trail = audits.filter((a) => a.member === "pg-eu").map((a) => `${a.action}: ${a.description}`);
    expect(stuck, `pg-eu's audit trail: ${JSON.stringify(trail)}; status ${JSON.stringify(c.status)}`).toBe(true);
    await sleep(2_000);
    const later = await e.lab.getCluster("pg-eu");
    expect(later.status?.switchReplicaClusterStatus?.inProgress).toBe(true);
    expect(later.status?.demotionToken ?? "").toBe("");
    expect(later.metadata.annotations?.["cnpg.io/fencedInstances"]).toBeDefined();
  });
});
