/**
 * The CNPG stand-in's two self-timed waits with their default values (no retry options given):
 * both are CNPG's 10 s. The instance manager re-checks an unmet promotion token every 10 s
 * (internal/management/controller/instance_controller.go), and the operator retries a demotion
 * whose data directory is not shut down every 10 s (pkg/reconciler/replicaclusterswitch/reconciler.go).
 * Measured on real Postgres through @kubernetes/client-node; operator.test.ts uses short intervals.
 */
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NS, StandIns, type Region } from "./harness.js";
import { CONDITIONS, PHASES, REPLICA_PROMOTION_IN_PROGRESS_REASON, databaseClusterState, encodeToken, tokenFromControlData, type Cluster } from "../../../src/cnpg/index.js";
import { CNPG_DEMOTION_RETRY_MS, CNPG_PROMOTION_RETRY_MS } from "../../../src/lab/cnpg/operator.js";
import type { PgInstance } from "../../../src/lab/cnpg/instance.js";
import { pgBin, run, waitFor } from "../../../src/lab/proc.js";
import { formatLsn, parseLsn } from "../../../src/wal/lsn.js";
import { silentLogger } from "../../../src/log.js";
import { clusterManifest, healthy } from "../../support/cnpg-cluster.js";

// No promotionRetryMs / demotionRetryMs: the defaults are under test.
const h = new StandIns({ prefix: "pgfed-l2d-", timing: { pollIntervalMs: 100 }, log: silentLogger() });
const api = (region: Region) => h.api(region);
const operator = (region: Region) => h.operator(region);
const instanceOf = (region: Region, name: string): PgInstance => h.instanceOf(region, name);
const waitCluster = (region: Region, name: string, what: string, ok: (c: Cluster) => boolean, timeoutMs?: number): Promise<Cluster> => h.waitCluster(region, name, what, ok, timeoutMs);
const patch = (region: Region, name: string, body: object): Promise<void> => h.patch(region, name, body);

async function checkpointsRequested(inst: PgInstance): Promise<number> {
  const rows = await inst.query<{ n: string }>("SELECT checkpoints_req AS n FROM pg_stat_bgwriter");
  return Number(rows[0]?.n ?? -1);
}

beforeAll(async () => {
  await h.start();
  const members = ["pg-eu", "pg-us"];
  const opts = { namespace: NS, instances: 1, barman: true, streaming: true };
  await api("eu").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: clusterManifest("pg-eu", "pg-eu", "pg-us", members, { ...opts, replica: false }) });
  await waitCluster("eu", "pg-eu", "healthy", healthy);
  await api("us").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: clusterManifest("pg-us", "pg-eu", "pg-eu", members, { ...opts, replica: true }) });
  await waitCluster("us", "pg-us", "healthy", healthy);
});

afterAll(async () => {
  await h.stop();
});

describe("CNPG stand-in defaults", () => {
  it("are CNPG's 10 s", () => {
    expect(CNPG_PROMOTION_RETRY_MS).toBe(10_000);
    expect(CNPG_DEMOTION_RETRY_MS).toBe(10_000);
  });

  it("re-checks an unmet promotion token 10 s after the last check, a new token at once", async () => {
    const us = instanceOf("us", "pg-us");
    // A token of this system and timeline whose REDO location pg-us will not reach.
    const content = tokenFromControlData(await us.controlData(), "test");
    const ahead = encodeToken({ ...content, latestCheckpointREDOLocation: formatLsn(parseLsn(content.latestCheckpointREDOLocation) + 0x10000000n) });
    // Each check asks for a restartpoint (CHECKPOINT), which pg_stat_bgwriter counts.
    const base = await checkpointsRequested(us);
    const tPatch = Date.now();
    await patch("us", "pg-us", { spec: { replica: { primary: "pg-us", promotionToken: ahead } } });
    const checks: number[] = [];
    await waitFor(
      "two token checks on pg-us",
      async () => {
        const n = await checkpointsRequested(us);
        while (base + checks.length < n) checks.push(Date.now());
        return checks.length >= 2;
      },
      25_000,
      50,
    );
    const [first = 0, second = 0] = checks;
    // Upper bounds are loose (a loaded 2-core CI machine); the lower bound is the CNPG behaviour under test.
    expect(first - tPatch).toBeLessThan(5_000);
    expect(second - first).toBeGreaterThanOrEqual(CNPG_PROMOTION_RETRY_MS - 300);
    expect(second - first).toBeLessThan(CNPG_PROMOTION_RETRY_MS + 5_000);
    const c = await waitCluster("us", "pg-us", "promoting", (k) => k.status?.phase === PHASES.promoting);
    expect(c.status?.phaseReason).toBe(REPLICA_PROMOTION_IN_PROGRESS_REASON);
    expect((await us.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r"))[0]?.r).toBe(true);
    // Back to following pg-eu.
    await patch("us", "pg-us", { spec: { replica: { primary: "pg-eu", promotionToken: null } } });
    await waitCluster("us", "pg-us", "a healthy replica again", healthy);
  });

  it("retries a stuck demotion 10 s apart: the token comes only at the retry after the data directory was shut down by hand", async () => {
    const eu = instanceOf("eu", "pg-eu");
    await operator("eu").killInstance(NS, "pg-eu");
    await patch("eu", "pg-eu", { metadata: { annotations: { "cnpg.io/fencedInstances": '["*"]' } } });
    await operator("eu").restartInstance(NS, "pg-eu");
    await patch("eu", "pg-eu", { spec: { replica: { primary: "pg-us", source: "pg-us", promotionToken: null } } });
    await waitCluster("eu", "pg-eu", "designated primary transition done", (c) => c.status?.conditions?.find((k) => k.type === CONDITIONS.designatedPrimaryTransition)?.status === "True");
    // The operator checks pg_controldata in the pass right after this condition (within ~100 ms).
    const tStuck = Date.now();
    expect(databaseClusterState(await eu.controlData())).toBe("in production");

    // Manual intervention: crash recovery in single-user mode (standby.signal moved aside for it) ends with a shutdown checkpoint.
    const signal = join(eu.pgdata, "standby.signal");
    await rename(signal, `${signal}.aside`);
    try {
      await run(pgBin("postgres"), ["--single", "-D", eu.pgdata, "postgres"], { asPostgres: true, input: "", timeoutMs: 60_000 });
    } finally {
      await rename(`${signal}.aside`, signal);
    }
    expect(databaseClusterState(await eu.controlData())).toBe("shut down");
    const tFixed = Date.now();
    expect((await h.getCluster("eu", "pg-eu")).status?.demotionToken).toBeUndefined();

    const done = await waitCluster("eu", "pg-eu", "demotion token published", (c) => (c.status?.demotionToken ?? "") !== "", 25_000);
    const tToken = Date.now();
    expect(tToken - tStuck).toBeGreaterThanOrEqual(CNPG_DEMOTION_RETRY_MS - 500);
    // Never sooner than CNPG's retry after it got stuck, and within one retry once the directory is clean.
    expect(tToken - tFixed).toBeLessThan(CNPG_DEMOTION_RETRY_MS + 5_000);
    const completed = await waitCluster("eu", "pg-eu", "switch completed", (c) => c.status?.switchReplicaClusterStatus?.inProgress === false);
    expect(completed.status?.demotionToken).toBe(done.status?.demotionToken);
    // The demotion recorded its fencing (ReplicaClusterFencing=True) and lifts "*" at the end.
    expect(completed.metadata.annotations?.["cnpg.io/fencedInstances"]).toBeUndefined();
  });
});
