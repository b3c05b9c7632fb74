/**
 * The lab's Kubernetes API stand-in driven by the real kubectl: discovery, get, merge patch,
 * annotate (fencing) and client-side apply (create, then update by merge patch).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, spawnManaged, waitFor, type ManagedProcess } from "../../../src/lab/proc.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer, type KubeObject } from "../../../src/lab/kube-api/index.js";
import { ADMIN_TOKEN, cluster, READER_TOKEN, spec, TOKENS } from "./helpers.js";

const NS = "db";

let dir: string;
let api: KubeApiServer;
let plain: KubeApiServer;
let kubeconfig: string;
const processes: ManagedProcess[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-kubectl-"));
  api = await startKubeApi({ region: "eu-west", tokens: TOKENS, namespaces: [NS], tls: { dir: join(dir, "tls") } });
  plain = await startKubeApi({ region: "us-east", tokens: TOKENS, namespaces: [NS], anonymous: { name: "system:anonymous", allow: [{ verbs: ["get", "list"], resources: "*" }] } });
  kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, [
    { name: "eu-west", url: api.url, token: ADMIN_TOKEN, caFile: api.caFile },
    { name: "eu-west-reader", url: api.url, token: READER_TOKEN, caFile: api.caFile },
    { name: "us-east", url: plain.url, token: ADMIN_TOKEN },
  ]);
  api.store.create("clusters", cluster("pg-eu", NS));
  plain.store.create("clusters", cluster("pg-us", NS));
});

afterAll(async () => {
  for (const p of processes) await p.stop("SIGTERM", 2_000);
  await api?.stop();
  await plain?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function kubectl(context: string, ...args: string[]): Promise<string> {
  const { stdout } = await run("kubectl", ["--kubeconfig", kubeconfig, "--context", context, "--cache-dir", join(dir, "cache"), ...args], { timeoutMs: 20_000 });
  return stdout;
}

function stored(name: string): KubeObject {
  return api.store.read("clusters", { namespace: NS, name });
}

describe("kube API stand-in with kubectl", () => {
  it("lists Clusters as JSON", async () => {
    const out = JSON.parse(await kubectl("eu-west", "get", "clusters.postgresql.cnpg.io", "-n", NS, "-o", "json")) as { items: KubeObject[] };
    expect(out.items.map((i) => i.metadata.name)).toEqual(["pg-eu"]);
    expect(out.items[0]?.metadata.resourceVersion).toBe(stored("pg-eu").metadata.resourceVersion);
    const table = await kubectl("eu-west", "get", "cluster", "-n", NS);
    expect(table).toMatch(/^NAME\s+AGE\npg-eu\s+\S+\n$/);
  });

  it("applies a merge patch", async () => {
    const out = await kubectl("eu-west", "patch", "clusters.postgresql.cnpg.io", "pg-eu", "-n", NS, "--type", "merge", "-p", '{"spec":{"instances":3}}');
    expect(out).toContain("cluster.postgresql.cnpg.io/pg-eu patched");
    expect(spec(stored("pg-eu")).instances).toBe(3);
    expect(stored("pg-eu").metadata.generation).toBe(2);
  });

  it("fences with kubectl annotate", async () => {
    const out = await kubectl("eu-west", "annotate", "clusters.postgresql.cnpg.io", "pg-eu", "-n", NS, 'cnpg.io/fencedInstances=["*"]');
    expect(out).toContain("annotated");
    expect(stored("pg-eu").metadata.annotations?.["cnpg.io/fencedInstances"]).toBe('["*"]');
    await kubectl("eu-west", "annotate", "clusters.postgresql.cnpg.io", "pg-eu", "-n", NS, "cnpg.io/fencedInstances-");
    expect(stored("pg-eu").metadata.annotations?.["cnpg.io/fencedInstances"]).toBeUndefined();
  });

  it("creates and then updates with kubectl apply", async () => {
    const file = join(dir, "pg-ap.yaml");
    const manifest = (instances: number) =>
      [
        "apiVersion: postgresql.cnpg.io/v1",
        "kind: Cluster",
        "metadata:",
        "  name: pg-ap",
        `  namespace: ${NS}`,
        "spec:",
        `  instances: ${instances}`,
        "  replica: { self: pg-ap, primary: pg-eu, source: pg-eu }",
        "  externalClusters: [{ name: pg-eu }, { name: pg-ap }]",
        "",
      ].join("\n");
    await writeFile(file, manifest(1));
    expect(await kubectl("eu-west", "apply", "-f", file)).toContain("cluster.postgresql.cnpg.io/pg-ap created");
    const created = stored("pg-ap");
    expect(created.metadata.annotations?.["kubectl.kubernetes.io/last-applied-configuration"]).toContain('"instances":1');
    api.store.updateStatus("clusters", { namespace: NS, name: "pg-ap" }, { phase: "Creating a new replica" });

    await writeFile(file, manifest(2));
    expect(await kubectl("eu-west", "apply", "-f", file)).toContain("cluster.postgresql.cnpg.io/pg-ap configured");
    const updated = stored("pg-ap");
    expect(spec(updated).instances).toBe(2);
    expect(updated.metadata.generation).toBe(2);
    expect(updated.metadata.uid).toBe(created.metadata.uid);
    expect(updated.status).toEqual({ phase: "Creating a new replica" });
    expect(await kubectl("eu-west", "apply", "-f", file)).toContain("unchanged");
  });

  it("creates and updates a Secret with kubectl apply (strategic merge for core types)", async () => {
    const file = join(dir, "secret.yaml");
    const manifest = (password: string) => `apiVersion: v1\nkind: Secret\nmetadata: { name: pg-eu-monitor, namespace: ${NS} }\nstringData: { password: ${password} }\n`;
    await writeFile(file, manifest("one"));
    await kubectl("eu-west", "apply", "-f", file);
    await writeFile(file, manifest("two"));
    await kubectl("eu-west", "apply", "-f", file);
    const data = api.store.read("secrets", { namespace: NS, name: "pg-eu-monitor" }).data as Record<string, string>;
    expect(Buffer.from(data.password ?? "", "base64").toString()).toBe("two");
  });

  it("streams changes with kubectl get -w", async () => {
    const out: string[] = [];
    const p = spawnManaged(
      "kubectl",
      ["--kubeconfig", kubeconfig, "--context", "eu-west", "--cache-dir", join(dir, "cache"), "get", "clusters.postgresql.cnpg.io", "-n", NS, "-w", "--output-watch-events"],
      { name: "kubectl get -w" },
    );
    processes.push(p);
    p.child.stdout?.on("data", (d: Buffer) => out.push(d.toString()));
    await waitFor("the initial listing", () => /ADDED\s+pg-ap/.test(out.join("")), 10_000);
    api.store.patch("clusters", { namespace: NS, name: "pg-eu" }, { spec: { instances: 5 } });
    await waitFor("the MODIFIED line", () => /MODIFIED\s+pg-eu/.test(out.join("")), 10_000);
    await p.stop("SIGTERM", 2_000);
  });

  it("reports 403 from a token without permission", async () => {
    const err = await kubectl("eu-west-reader", "patch", "clusters.postgresql.cnpg.io", "pg-eu", "-n", NS, "--type", "merge", "-p", '{"spec":{"instances":1}}').then(
      () => "patched",
      (e: unknown) => String(e),
    );
    expect(err).toContain('User "reader" cannot patch resource "clusters"');
  });

  it("works over plain HTTP through the anonymous identity (kubectl sends no token to http://)", async () => {
    const out = JSON.parse(await kubectl("us-east", "get", "clusters.postgresql.cnpg.io", "pg-us", "-n", NS, "-o", "json")) as KubeObject;
    expect(out.metadata.name).toBe("pg-us");
    const err = await kubectl("us-east", "delete", "clusters.postgresql.cnpg.io", "pg-us", "-n", NS).then(
      () => "deleted",
      (e: unknown) => String(e),
    );
    expect(err).toContain('User "system:anonymous" cannot delete');
  });
});
