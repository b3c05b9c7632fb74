/**
 * `pgfed kubeconfig coordinator`: three regions' Kubernetes API stand-ins (HTTPS) authorize with
 * the Roles rendered from deploy/kubernetes/overlays/<region>, hold the token Secret the base
 * renders (filled in as Kubernetes' token controller would), and the command builds from an
 * administrator's kubeconfig the coordinators' kubeconfig. pgfed's own RegionClient then reaches
 * each region with it as ServiceAccount pgfed-coordinator: get and patch of the member Cluster
 * work, anything else is the API server's 403. Bad input writes nothing and says why.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fencePatch } from "../../../src/cnpg/index.js";
import { addKubeconfigCommand } from "../../../src/cli/kubeconfig.js";
import { CliExit } from "../../../src/cli/exit-codes.js";
import { RegionClient } from "../../../src/kube/region.js";
import { RbacPolicy, serviceAccountGroups, serviceAccountUser, startKubeApi, writeKubeconfig, type KubeApiServer, type KubeObject } from "../../../src/lab/kube-api/index.js";
import { REGIONS, kubectlAvailable, named, render } from "../../unit/deploy/helpers.js";
import { cluster } from "../kube-api/helpers.js";

const hasKubectl = await kubectlAvailable();
if (!hasKubectl) console.warn("SKIPPED test/integration/cli/kubeconfig.test.ts: kubectl is not installed (apt-get install kubernetes-client)");

const MEMBER: Record<string, string> = { "eu-west": "pg-eu", "us-east": "pg-us", "ap-south": "pg-ap" };
let dir: string;
let adminKubeconfig: string;
const apis = new Map<string, KubeApiServer>();

async function run(args: string[]): Promise<{ out: string; err: string }> {
  const program = new Command().exitOverride();
  const io = { out: "", err: "" };
  addKubeconfigCommand(program, { out: (t) => (io.out += t), err: (t) => (io.err += t) });
  await program.parseAsync(["kubeconfig", "coordinator", ...args], { from: "user" });
  return io;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-kubeconfig-"));
  const entries = [];
  for (const region of REGIONS) {
    const objects = await render(`deploy/kubernetes/overlays/${region}`);
    const api = await startKubeApi({
      region,
      tls: { dir: join(dir, "tls") },
      namespaces: ["db", "pgfed"],
      tokens: {
        "admin-token": { name: "admin", allow: [{ verbs: "*", resources: "*" }] },
        [`coordinator-token-${region}`]: { name: serviceAccountUser("pgfed", "pgfed-coordinator"), groups: serviceAccountGroups("pgfed") },
      },
      rbac: new RbacPolicy(objects),
    });
    apis.set(region, api);
    // The token Secret as the overlay renders it, then filled in as the token controller does.
    const rendered = named(objects, "Secret", "pgfed-coordinator-token") as unknown as KubeObject;
    const ca = api.caFile ? await readFile(api.caFile) : Buffer.from("");
    api.store.create("secrets", { ...rendered, data: { token: Buffer.from(`coordinator-token-${region}`).toString("base64"), "ca.crt": ca.toString("base64") } });
    const m = MEMBER[region] ?? "";
    api.store.create("clusters", cluster(m, "db", { self: m, primary: m, source: "pg-eu" === m ? "pg-us" : "pg-eu" }));
    entries.push({ name: `admin@${region}`, url: api.url, token: "admin-token", ...(api.caFile ? { caFile: api.caFile } : {}) });
  }
  adminKubeconfig = join(dir, "admin.kubeconfig");
  await writeKubeconfig(adminKubeconfig, entries);
}, 120_000);

afterAll(async () => {
  for (const api of apis.values()) await api.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasKubectl)("pgfed kubeconfig coordinator", () => {
  it("writes one context per region with which the coordinator may get and patch its member Clusters and nothing else", async () => {
    const out = join(dir, "regions.kubeconfig");
    await run([...REGIONS.map((r) => `${r}=admin@${r}`), "--kubeconfig", adminKubeconfig, "-o", out]);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    for (const region of REGIONS) {
      const client = new RegionClient({ region, kubeconfigPath: out, context: region });
      const ref = { namespace: "db", name: MEMBER[region] ?? "" };
      const c = await client.getCluster(ref);
      const fenced = await client.patchCluster(ref, fencePatch(["*"]), "fencing");
      expect(fenced.metadata.annotations?.["cnpg.io/fencedInstances"]).toBe('["*"]');
      await expect(client.deleteCluster(ref, c.metadata.uid ?? "")).rejects.toMatchObject({
        code: "kube.forbidden",
        message: expect.stringContaining(`User "system:serviceaccount:pgfed:pgfed-coordinator" cannot delete resource "clusters"`) as unknown,
      });
      await expect(client.readSecretKey({ namespace: "pgfed", name: "pgfed-coordinator-token" }, "token")).rejects.toMatchObject({ code: "kube.forbidden" });
    }
    const text = await readFile(out, "utf8");
    expect(text).not.toContain("admin-token");
    // Without -o the same document goes to stdout.
    const printed = await run(["eu-west=admin@eu-west", "--kubeconfig", adminKubeconfig]);
    expect(printed.out).toContain("name: eu-west");
    expect(printed.out).toContain("pgfed-coordinator@eu-west");
    expect(printed.out).not.toContain("us-east");
  });

  it("refuses, writing nothing, when a region's context is unknown, its Secret has no token yet, or the file exists", async () => {
    const out = join(dir, "bad.kubeconfig");
    await expect(run(["eu-west=admin@eu-west", "mars=nowhere", "--kubeconfig", adminKubeconfig, "-o", out])).rejects.toThrow(/mars: context "nowhere" is not in the kubeconfig \(contexts: admin@eu-west, admin@us-east, admin@ap-south\)/);
    expect(existsSync(out)).toBe(false);

    const us = apis.get("us-east") as KubeApiServer;
    const secret = us.store.read("secrets", { namespace: "pgfed", name: "pgfed-coordinator-token" });
    us.store.update("secrets", { ...secret, data: {} });
    const refused = run(["eu-west=admin@eu-west", "us-east=admin@us-east", "--kubeconfig", adminKubeconfig, "-o", out]);
    await expect(refused).rejects.toBeInstanceOf(CliExit);
    await expect(refused).rejects.toThrow(/us-east: Secret pgfed\/pgfed-coordinator-token holds no token yet .*"pgfed-coordinator"/);
    expect(existsSync(out)).toBe(false);

    await expect(run(["eu-west=admin@eu-west", "eu-west=admin@eu-west", "--kubeconfig", adminKubeconfig])).rejects.toThrow(/each region once/);
    await expect(run(["eu-west=admin@eu-west", "--server", "eu-west=http://plain", "--kubeconfig", adminKubeconfig])).rejects.toThrow(/expected REGION=https/);
    await expect(run(["eu-west=admin@eu-west", "--kubeconfig", adminKubeconfig, "-o", join(dir, "admin.kubeconfig")])).rejects.toThrow(/exists; pgfed never overwrites/);
  });
});
