/**
 * The coordinator's corroboration of a silent primary (src/coordinator/corroboration.ts), through
 * the real @kubernetes/client-node (pgfed's RegionClient) against the lab's Kubernetes API server:
 * the verdicts the failover decision rests on — healthy unfenced primary (no failover), not healthy
 * (the coordinator fences it and reads it back fenced), no answer (a lost region: the lease
 * decides), no client (the lease decides) — and the probe bounds (timeout, one request in flight).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isFullyFenced, parseCluster, type Cluster, type MergePatch } from "../../../src/cnpg/index.js";
import { PrimaryCorroborator, judgeCluster, type ProbeTarget, type RegionClusterAccess } from "../../../src/coordinator/corroboration.js";
import { RegionClient, type ObjectRef } from "../../../src/kube/region.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer } from "../../../src/lab/kube-api/index.js";
import { ADMIN_TOKEN, TOKENS, cluster } from "../kube-api/helpers.js";

const NS = "db";
const REF = { namespace: NS, name: "pg-eu" };
const TARGET: ProbeTarget = { member: "pg-eu", region: "eu-west", ref: REF };
const HEALTHY = { phase: "Cluster in healthy state", instances: 1, readyInstances: 1, conditions: [{ type: "Ready", status: "True", reason: "ClusterIsReady" }] };
const DOWN = { phase: "Waiting for the instances to become active", phaseReason: "Instance pg-eu-1 is not running", instances: 1, readyInstances: 0, conditions: [{ type: "Ready", status: "False", reason: "ClusterIsNotReady" }] };

let dir: string;
let api: KubeApiServer;
let client: RegionClient;

/** The real client, counting the requests it starts (to check that only one is in flight). */
class CountingAccess implements RegionClusterAccess {
  reads = 0;
  patches = 0;
  constructor(private readonly inner: RegionClusterAccess) {}
  getCluster(ref: ObjectRef): Promise<Cluster> {
    this.reads++;
    return this.inner.getCluster(ref);
  }
  patchCluster(ref: ObjectRef, patch: MergePatch, doing?: string): Promise<Cluster> {
    this.patches++;
    return this.inner.patchCluster(ref, patch, doing);
  }
}

function corroborator(access: RegionClusterAccess | undefined, timeoutMs = 500, intervalMs = 100): PrimaryCorroborator {
  return new PrimaryCorroborator({ federation: "orders", access: (r) => (r === "eu-west" ? access : undefined), timeoutMs, intervalMs, now: Date.now });
}

function setStatus(status: Record<string, unknown>): void {
  api.store.updateStatus("clusters", REF, status);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-corroboration-"));
  api = await startKubeApi({ region: "eu-west", tokens: TOKENS, namespaces: [NS] });
  const kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, [{ name: "eu-west", url: api.url, token: ADMIN_TOKEN }]);
  client = new RegionClient({ region: "eu-west", kubeconfigPath: kubeconfig, context: "eu-west" });
  api.store.create("clusters", cluster("pg-eu", NS));
});

afterAll(async () => {
  await api?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("corroborating a silent primary through its region's Kubernetes API", () => {
  it("the healthy unfenced primary is reported as such (the coordinator does not fail over)", async () => {
    setStatus(HEALTHY);
    const c = corroborator(client);
    expect((await c.read(TARGET)).kind).toBe("healthyPrimary");
    expect(c.latest(TARGET)?.kind).toBe("healthyPrimary");
    expect(isFullyFenced(await client.getCluster(REF))).toBe(false);
  });

  it("a primary that is not healthy is fenced by the coordinator and read back fenced", async () => {
    setStatus(DOWN);
    const access = new CountingAccess(client);
    const c = corroborator(access);
    const v = await c.read(TARGET);
    expect(v).toMatchObject({ kind: "notHealthy", phase: DOWN.phase });
    const r = await c.ensureFenced(TARGET, "test: Postgres down and lease lapsed", new AbortController().signal);
    expect(r.patched).toBe(true);
    expect(access.patches).toBe(1);
    expect(isFullyFenced(await client.getCluster(REF))).toBe(true);
    // Ensure, not do: again finds it fenced and patches nothing.
    expect((await c.ensureFenced(TARGET, "again", new AbortController().signal)).patched).toBe(false);
    expect(access.patches).toBe(1);
    await new Promise((res) => setTimeout(res, 150));
    expect((await c.read(TARGET)).kind).toBe("fenced");
    // Unfence for the next cases (as an operator would, by hand).
    await client.patchCluster(REF, { metadata: { annotations: { "cnpg.io/fencedInstances": null } } });
  });

  it("a partitioned region does not answer: the verdict says so at once, and the lease decides", async () => {
    setStatus(HEALTHY);
    await api.faults.set({ partitioned: true });
    try {
      const v = await corroborator(client).read(TARGET);
      expect(v.kind).toBe("noAnswer");
    } finally {
      await api.faults.clear();
    }
  });

  it("a slow API: no answer after the timeout, and no second request while the first is in flight", async () => {
    setStatus(HEALTHY);
    await api.faults.set({ latencyMs: 3_000 });
    try {
      const access = new CountingAccess(client);
      const c = corroborator(access, 300, 100);
      const t0 = Date.now();
      const v = await c.read(TARGET);
      const tookMs = Date.now() - t0;
      expect(v.kind).toBe("noAnswer");
      // Answered by the timeout, long before the API does.
      expect(tookMs).toBeLessThan(2_500);
      for (let i = 0; i < 3; i++) {
        expect(c.latest(TARGET)?.kind).toBe("noAnswer");
        await new Promise((res) => setTimeout(res, 150));
      }
      expect(access.reads).toBe(1);
      // Once the slow answer lands, it counts, and the next probe may start.
      await api.faults.clear();
      const deadline = Date.now() + 10_000;
      while (c.latest(TARGET)?.kind !== "healthyPrimary" && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      expect(c.latest(TARGET)?.kind).toBe("healthyPrimary");
      await new Promise((res) => setTimeout(res, 150));
      expect((await c.read(TARGET)).kind).toBe("healthyPrimary");
    } finally {
      await api.faults.clear();
    }
  });

  it("without a client for the region the verdict is noClient (the lease decides, as before)", async () => {
    const c = corroborator(undefined);
    expect(c.hasClient("eu-west")).toBe(false);
    expect((await c.read(TARGET)).kind).toBe("noClient");
    expect(c.latest(TARGET)?.kind).toBe("noClient");
    await expect(c.ensureFenced(TARGET, "test", new AbortController().signal)).rejects.toMatchObject({ code: "coordinator.fence_failed" });
  });

  it("judges a Cluster the way the decision needs it", () => {
    const base = cluster("pg-eu", NS);
    const spec = base.spec as Record<string, unknown>;
    const of = (status: Record<string, unknown>, extra: Record<string, unknown> = {}) => judgeCluster(parseCluster({ ...base, ...extra, status }), 0).kind;
    expect(of(HEALTHY)).toBe("healthyPrimary");
    expect(of(DOWN)).toBe("notHealthy");
    expect(of({ ...HEALTHY, conditions: [{ type: "Ready", status: "False" }] })).toBe("notHealthy");
    expect(of(HEALTHY, { metadata: { ...base.metadata, annotations: { "cnpg.io/fencedInstances": '["*"]' } } })).toBe("fenced");
    // An annotation CNPG could not parse is not a fence pgfed relies on: it fences again (overwrites it).
    expect(of(HEALTHY, { metadata: { ...base.metadata, annotations: { "cnpg.io/fencedInstances": "yes" } } })).toBe("healthyPrimary");
    expect(of(HEALTHY, { spec: { ...spec, replica: { self: "pg-eu", primary: "pg-us", source: "pg-us" } } })).toBe("notHealthy");
  });
});
