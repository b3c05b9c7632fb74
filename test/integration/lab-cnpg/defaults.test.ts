/**
 * The CNPG stand-in's two self-timed waits with their default values (no retry options given):
 * both are CNPG's 10 s. The instance manager re-checks an unmet promotion token every 10 s
 * (internal/management/controller/instance_controller.go), and the operator retries a demotion
 * whose data directory is not shut down every 10 s (pkg/reconciler/replicaclusterswitch/reconciler.go).
 * Measured on real Postgres through @kubernetes/client-node; operator.test.ts uses short intervals.
 */
import { chmod, mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONDITIONS, PHASES, REPLICA_PROMOTION_IN_PROGRESS_REASON, databaseClusterState, encodeToken, tokenFromControlData, type Cluster } from "../../../src/cnpg/index.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer } from "../../../src/lab/kube-api/index.js";
import { ExternalClusterRegistry } from "../../../src/lab/cnpg/registry.js";
import { CNPG_DEMOTION_RETRY_MS, CNPG_PROMOTION_RETRY_MS, startCnpgOperator, type CnpgOperator } from "../../../src/lab/cnpg/operator.js";
import type { PgInstance } from "../../../src/lab/cnpg/instance.js";
import { pgBin, run, waitFor } from "../../../src/lab/proc.js";
import { formatLsn, parseLsn } from "../../../src/wal/lsn.js";
import { silentLogger } from "../../../src/log.js";
import { clusterManifest, getCluster as readCluster, healthy, waitCluster as awaitCluster, type ClusterRef } from "../../support/cnpg-cluster.js";
import { postgresDescendants } from "../../support/postgres.js";

const NS = "db";
const TOKEN = "test-token";
const MERGE = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const REGIONS = ["eu", "us"] as const;
type Region = (typeof REGIONS)[number];

let labDir: string;
const registry = new ExternalClusterRegistry();
const servers = new Map<Region, KubeApiServer>();
const operators = new Map<Region, CnpgOperator>();
const apis = new Map<Region, CustomObjectsApi>();

function api(region: Region): CustomObjectsApi {
  const a = apis.get(region);
  if (!a) throw new Error(`no API client for ${region}`);
  return a;
}

function operator(region: Region): CnpgOperator {
  const o = operators.get(region);
  if (!o) throw new Error(`no operator for ${region}`);
  return o;
}

function instanceOf(region: Region, name: string): PgInstance {
  const i = operator(region).instance(NS, name);
  if (!i) throw new Error(`no instance for ${name} in ${region}`);
  return i;
}

const ref = (region: Region, name: string): ClusterRef => ({ api: api(region), namespace: NS, name, region });
const waitCluster = (region: Region, name: string, what: string, ok: (c: Cluster) => boolean, timeoutMs?: number): Promise<Cluster> => awaitCluster(ref(region, name), what, ok, timeoutMs);

async function patch(region: Region, name: string, body: object): Promise<void> {
  await api(region).patchNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", name, body }, MERGE);
}

async function checkpointsRequested(inst: PgInstance): Promise<number> {
  const rows = await inst.query<{ n: string }>("SELECT checkpoints_req AS n FROM pg_stat_bgwriter");
  return Number(rows[0]?.n ?? -1);
}

beforeAll(async () => {
  labDir = await mkdtemp(join(tmpdir(), "pgfed-l2d-"));
  await chmod(labDir, 0o755);
  const tokens = { [TOKEN]: { name: "admin", allow: [{ verbs: "*" as const, resources: "*" as const }] } };
  for (const region of REGIONS) servers.set(region, await startKubeApi({ region, tokens, namespaces: [NS] }));
  const kubeconfig = join(labDir, "kubeconfig");
  await writeKubeconfig(kubeconfig, REGIONS.map((r) => ({ name: r, url: servers.get(r)?.url ?? "", token: TOKEN })));
  for (const region of REGIONS) {
    const forOperator = new KubeConfig();
    forOperator.loadFromFile(kubeconfig);
    forOperator.setCurrentContext(region);
    // No promotionRetryMs / demotionRetryMs: the defaults are under test.
    operators.set(region, await startCnpgOperator({ region, kube: forOperator, dataDir: join(labDir, "data"), registry, pollIntervalMs: 100, log: silentLogger() }));
    const forTest = new KubeConfig();
    forTest.loadFromFile(kubeconfig);
    forTest.setCurrentContext(region);
    apis.set(region, forTest.makeApiClient(CustomObjectsApi));
  }
  const members = ["pg-eu", "pg-us"];
  const opts = { namespace: NS, instances: 1, barman: true, streaming: true };
  await api("eu").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: clusterManifest("pg-eu", "pg-eu", "pg-us", members, { ...opts, replica: false }) });
  await waitCluster("eu", "pg-eu", "healthy", healthy);
  await api("us").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: clusterManifest("pg-us", "pg-eu", "pg-eu", members, { ...opts, replica: true }) });
  await waitCluster("us", "pg-us", "healthy", healthy);
});

afterAll(async () => {
  for (const o of operators.values()) await o.stop().catch(() => o.stop({ kill: true }));
  for (const s of servers.values()) await s.stop();
  const left = postgresDescendants();
  await rm(labDir, { recursive: true, force: true });
  expect(left).toEqual([]);
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
    expect(first - tPatch).toBeLessThan(2_000);
    expect(second - first).toBeGreaterThanOrEqual(CNPG_PROMOTION_RETRY_MS - 300);
    expect(second - first).toBeLessThan(CNPG_PROMOTION_RETRY_MS + 1_500);
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
    expect(tFixed - tStuck).toBeLessThan(CNPG_DEMOTION_RETRY_MS - 1_000);
    expect((await readCluster(ref("eu", "pg-eu"))).status?.demotionToken).toBeUndefined();

    const done = await waitCluster("eu", "pg-eu", "demotion token published", (c) => (c.status?.demotionToken ?? "") !== "", 25_000);
    const tToken = Date.now();
    expect(tToken - tStuck).toBeGreaterThanOrEqual(CNPG_DEMOTION_RETRY_MS - 500);
    expect(tToken - tStuck).toBeLessThan(CNPG_DEMOTION_RETRY_MS + 2_000);
    const completed = await waitCluster("eu", "pg-eu", "switch completed", (c) => c.status?.switchReplicaClusterStatus?.inProgress === false);
    expect(completed.status?.demotionToken).toBe(done.status?.demotionToken);
    // The demotion recorded its fencing (ReplicaClusterFencing=True) and lifts "*" at the end.
    expect(completed.metadata.annotations?.["cnpg.io/fencedInstances"]).toBeUndefined();
  });
});
