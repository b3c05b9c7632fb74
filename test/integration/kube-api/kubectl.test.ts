/**
 * The lab's Kubernetes API stand-in driven by the real kubectl: discovery, get (CNPG's printer
 * columns), merge patch, annotate (fencing), client-side and server-side apply, explain, create
 * namespace, and the answers to unknown fields and CNPG's webhook.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run, spawnManaged, waitFor, type ManagedProcess } from "../../../src/lab/proc.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer, type KubeObject } from "../../../src/lab/kube-api/index.js";
import type { ManagedFieldsEntry } from "../../../src/lab/kube-api/managed-fields.js";
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

/** stdout and stderr of a kubectl run that may fail (the error text carries kubectl's stderr). */
async function kubectlOutcome(context: string, ...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const { stdout, stderr } = await run("kubectl", ["--kubeconfig", kubeconfig, "--context", context, "--cache-dir", join(dir, "cache"), ...args], { timeoutMs: 20_000 });
    return { ok: true, out: `${stdout}${stderr}` };
  } catch (e) {
    return { ok: false, out: String(e) };
  }
}

function stored(name: string): KubeObject {
  return api.store.read("clusters", { namespace: NS, name });
}

describe("kube API stand-in with kubectl", () => {
  it("lists Clusters as JSON", async () => {
    const out = JSON.parse(await kubectl("eu-west", "get", "clusters.postgresql.cnpg.io", "-n", NS, "-o", "json")) as { items: KubeObject[] };
    expect(out.items.map((i) => i.metadata.name)).toEqual(["pg-eu"]);
    expect(out.items[0]?.metadata.resourceVersion).toBe(stored("pg-eu").metadata.resourceVersion);
    api.store.updateStatus("clusters", { namespace: NS, name: "pg-eu" }, { instances: 1, readyInstances: 1, phase: "Cluster in healthy state", currentPrimary: "pg-eu-1" });
    const table = await kubectl("eu-west", "get", "clusters", "-n", NS);
    expect(table).toMatch(/^NAME\s+AGE\s+INSTANCES\s+READY\s+STATUS\s+PRIMARY\npg-eu\s+\d+s\s+1\s+1\s+Cluster in healthy state\s+pg-eu-1\n$/);
    const wide = await kubectl("eu-west", "get", "cluster", "-n", NS, "-o", "wide");
    expect(wide.split("\n")[0]).toMatch(/PRIMARY\s+SYNCTOPOLOGY$/);
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
        "  bootstrap: { pg_basebackup: { source: pg-eu } }",
        "  replica: { self: pg-ap, primary: pg-eu, source: pg-eu }",
        "  externalClusters:",
        "  - { name: pg-eu, connectionParameters: { host: pg-eu-rw.db.svc, user: streaming_replica } }",
        "  - { name: pg-ap, connectionParameters: { host: pg-ap-rw.db.svc, user: streaming_replica } }",
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
  it("applies server-side: creates, answers a conflict with the other manager's name, takes the field with --force-conflicts", async () => {
    const file = join(dir, "pg-ssa.yaml");
    const manifest = (primary: string) =>
      [
        "apiVersion: postgresql.cnpg.io/v1",
        "kind: Cluster",
        "metadata: { name: pg-ssa, namespace: db }",
        "spec:",
        "  instances: 1",
        `  replica: { self: pg-ssa, primary: ${primary}, source: pg-eu }`,
        "  externalClusters:",
        "  - { name: pg-ssa, plugin: { name: barman-cloud.cloudnative-pg.io } }",
        "  - { name: pg-eu, plugin: { name: barman-cloud.cloudnative-pg.io } }",
        "",
      ].join("\n");
    await writeFile(file, manifest("pg-ssa"));
    expect(await kubectl("eu-west", "apply", "--server-side", "-f", file)).toContain("cluster.postgresql.cnpg.io/pg-ssa serverside-applied");
    expect((stored("pg-ssa").metadata.managedFields as ManagedFieldsEntry[]).map((e) => `${e.manager}:${e.operation}`)).toEqual(["kubectl:Apply"]);

    await kubectl("eu-west", "patch", "clusters.postgresql.cnpg.io", "pg-ssa", "-n", NS, "--type", "merge", "-p", '{"spec":{"replica":{"primary":"pg-eu"}}}');
    await writeFile(file, manifest("pg-ssa"));
    const conflict = await kubectlOutcome("eu-west", "apply", "--server-side", "-f", file, "--field-manager", "pgfed-ops");
    expect(conflict.ok).toBe(false);
    expect(conflict.out).toMatch(/error: Apply failed with 1 conflict: conflict with "kubectl-patch" using postgresql\.cnpg\.io\/v1 at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: \.spec\.replica\.primary\n/);

    expect(await kubectl("eu-west", "apply", "--server-side", "--force-conflicts", "-f", file)).toContain("serverside-applied");
    expect((spec(stored("pg-ssa")).replica as { primary: string }).primary).toBe("pg-ssa");
    const owners = (stored("pg-ssa").metadata.managedFields as ManagedFieldsEntry[]).map((e) => e.manager);
    expect(owners).toEqual(["kubectl"]);
  });

  it("shows CNPG's webhook denial and refuses unknown fields as a real server does", async () => {
    const file = join(dir, "pg-bad.yaml");
    await writeFile(file, "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: { name: pg-bad, namespace: db }\nspec:\n  instances: 1\n  replica: { primary: pg-eu, source: pg-eu }\n  externalClusters: [{ name: pg-eu }]\n");
    const denied = await kubectlOutcome("eu-west", "create", "-f", file);
    expect(denied.ok).toBe(false);
    // kubectl prints an Invalid Status by its causes, as it does for CNPG's real denials.
    expect(denied.out).toContain(
      'The Cluster "pg-bad" is invalid: \n* spec.externalClusters[0]: Required value: one of connectionParameters, plugin and barmanObjectStore is required\n* spec.replicaCluster: Invalid value: "pg-eu": replica mode bootstrap is compatible only with pg_basebackup or recovery',
    );

    await writeFile(file, "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: { name: pg-odd, namespace: db }\nspec:\n  instances: 1\n  foo: bar\n");
    // kubectl validates strictly by default (fieldValidation=Strict).
    const strict = await kubectlOutcome("eu-west", "create", "-f", file);
    expect(strict.ok).toBe(false);
    expect(strict.out).toContain('strict decoding error: unknown field "spec.foo"');
    const warned = await kubectlOutcome("eu-west", "create", "-f", file, "--validate=warn");
    expect(warned.ok).toBe(true);
    expect(warned.out).toContain('Warning: unknown field "spec.foo"');
    expect(spec(stored("pg-odd")).foo).toBeUndefined();
  });

  it("explains the Cluster schema from the server's OpenAPI", async () => {
    const out = await kubectl("eu-west", "explain", "clusters.postgresql.cnpg.io.spec.replica");
    expect(out).toContain("KIND:       Cluster");
    expect(out).toMatch(/FIELD: replica <Object>/);
    for (const f of ["enabled\t<boolean>", "minApplyDelay\t<string>", "primary\t<string>", "promotionToken\t<string>", "self\t<string>", "source\t<string> -required-"]) expect(out).toContain(f);
    const ext = await kubectl("eu-west", "explain", "clusters.spec.externalClusters", "--recursive");
    for (const f of ["connectionParameters\t<map[string]string>", "plugin\t<Object>", "name\t<string> -required-"]) expect(ext).toContain(f);
    expect(await kubectl("eu-west", "explain", "clusters.status.switchReplicaClusterStatus")).toContain("inProgress\t<boolean>");
    expect(await kubectl("eu-west", "explain", "clusters.metadata")).toContain("FIELD: metadata <ObjectMeta>");
  });

  it("creates a namespace with kubectl create namespace and prints it", async () => {
    expect(await kubectl("eu-west", "create", "namespace", "scratch")).toContain("namespace/scratch created");
    expect(api.store.get("namespaces", { name: "scratch" })?.status).toEqual({ phase: "Active" });
    expect(await kubectl("eu-west", "get", "namespace", "scratch")).toMatch(/^NAME\s+STATUS\s+AGE\nscratch\s+Active\s+\d+s\n$/);
  });
});
