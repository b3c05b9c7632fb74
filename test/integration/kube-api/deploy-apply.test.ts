/**
 * Every manifest of deploy/ as an install would use it: each region's CNPG example and pgfed
 * overlay rendered with `kubectl kustomize` (no flags), then `kubectl apply`ed by the real kubectl
 * to that region's Kubernetes API stand-in, with CNPG's admission rules. The stand-in serves
 * Namespaces, Secrets and CNPG Clusters; the other kinds (Deployments, Roles, …) are checked by
 * test/unit/deploy and, for the Roles, loaded as RBAC by deploy-rbac.test.ts. The configs go
 * through `pgfed config check`. A broken Cluster is refused by admission and nothing is stored.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../../../src/lab/proc.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer } from "../../../src/lab/kube-api/index.js";
import { REGIONS, REPO, kubectlAvailable, render, type KubeObject } from "../../unit/deploy/helpers.js";

const hasKubectl = await kubectlAvailable();
if (!hasKubectl) console.warn("SKIPPED test/integration/kube-api/deploy-apply.test.ts: kubectl is not installed (apt-get install kubernetes-client)");

const SERVED = new Set(["Namespace", "Secret", "Cluster"]);
const MEMBER: Record<string, string> = { "eu-west": "pg-eu", "us-east": "pg-us", "ap-south": "pg-ap" };
let dir: string;
let kubeconfig: string;
const apis = new Map<string, KubeApiServer>();

async function kubectl(context: string, args: string[], input?: string): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run("kubectl", ["--kubeconfig", kubeconfig, "--context", context, "--cache-dir", join(dir, "cache", context), ...args], { timeoutMs: 60_000, ...(input !== undefined ? { input } : {}) });
    return { ok: true, out: stdout + stderr };
  } catch (e) {
    return { ok: false, out: e instanceof Error ? e.message : String(e) };
  }
}

const served = (objects: readonly KubeObject[]): KubeObject[] => objects.filter((o) => SERVED.has(o.kind));
const yamlStream = (objects: readonly KubeObject[]): string => objects.map((o) => stringify(o)).join("---\n");

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-deploy-apply-"));
  for (const region of REGIONS) apis.set(region, await startKubeApi({ region, tls: { dir: join(dir, "tls") }, tokens: { admin: { name: "admin", allow: [{ verbs: "*", resources: "*" }] } } }));
  kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(
    kubeconfig,
    REGIONS.map((r) => {
      const api = apis.get(r) as KubeApiServer;
      return { name: r, url: api.url, token: "admin", ...(api.caFile ? { caFile: api.caFile } : {}) };
    }),
  );
}, 60_000);

afterAll(async () => {
  for (const api of apis.values()) await api.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasKubectl)("deploy/ applied with kubectl", () => {
  it.each(REGIONS)("applies deploy/cnpg/%s and its pgfed overlay: CNPG admission accepts the Cluster, and a second apply changes nothing", async (region) => {
    const cnpg = await render(`deploy/cnpg/${region}`);
    const pgfed = await render(`deploy/kubernetes/overlays/${region}`);
    const objects = [...served(cnpg), ...served(pgfed)];
    expect(objects.filter((o) => o.kind === "Cluster").map((o) => o.metadata.name)).toEqual([MEMBER[region]]);
    const first = await kubectl(region, ["apply", "-f", "-"], yamlStream(objects));
    expect(first.ok, first.out).toBe(true);
    const api = apis.get(region) as KubeApiServer;
    const stored = api.store.read("clusters", { namespace: "db", name: MEMBER[region] ?? "" });
    expect(stored.metadata.generation).toBe(1);
    expect(api.store.read("namespaces", { name: "pgfed" }).metadata.labels?.["pod-security.kubernetes.io/enforce"]).toBe("restricted");
    expect(api.store.read("secrets", { namespace: "pgfed", name: "pgfed-coordinator-token" }).type).toBe("kubernetes.io/service-account-token");
    // Re-applying is a no-op for the spec (GitOps runs it every few minutes).
    const again = await kubectl(region, ["apply", "-f", "-"], yamlStream(objects));
    expect(again.ok, again.out).toBe(true);
    expect(api.store.read("clusters", { namespace: "db", name: MEMBER[region] ?? "" }).metadata.generation).toBe(1);
  });

  it("refuses a member whose externalClusters entry has no connection method, storing nothing", async () => {
    const cnpg = await render("deploy/cnpg/us-east");
    const c = served(cnpg).find((o) => o.kind === "Cluster") as KubeObject;
    const spec = c.spec as { externalClusters: Record<string, unknown>[] };
    const broken = { ...c, metadata: { ...c.metadata, name: "pg-broken" }, spec: { ...spec, externalClusters: spec.externalClusters.map((e) => (e.name === "pg-eu" ? { name: "pg-eu" } : e)) } };
    const out = await kubectl("us-east", ["apply", "-f", "-"], stringify(broken));
    expect(out.ok).toBe(false);
    expect(out.out).toMatch(/denied the request|invalid/i);
    expect(() => apis.get("us-east")?.store.read("clusters", { namespace: "db", name: "pg-broken" })).toThrow();
  });

  it("passes the configs through pgfed config check", async () => {
    for (const [file, members, regions] of [["deploy/cnpg/pgfed.yaml", 3, 3], ["deploy/examples/pgfed.yaml", 2, 2]] as const) {
      const { stdout } = await run(process.execPath, ["bin/pgfed.js", "config", "check", file], { cwd: REPO, timeoutMs: 60_000 });
      expect(stdout.trim(), file).toBe(`${file}: ok (1 federation(s), ${members} member(s), ${regions} region(s))`);
    }
    // And a broken one is refused, naming the path.
    await expect(run(process.execPath, ["bin/pgfed.js", "config", "check", "deploy/cnpg/eu-west/cluster.yaml"], { cwd: REPO, timeoutMs: 60_000 })).rejects.toThrow(/federations|regions|Unrecognized/);
  });
});
