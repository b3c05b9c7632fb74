/**
 * Fault injection of the lab's Kubernetes API stand-in (latency, error rate, partitions, watch
 * lifetimes) and its HTTPS mode with a generated CA, seen through @kubernetes/client-node 1.4.
 */
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi, KubeConfig, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorMessageWithCauses } from "../../../src/errors.js";
import { waitFor } from "../../../src/lab/proc.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer } from "../../../src/lab/kube-api/index.js";
import { ADMIN_TOKEN, cluster, connectOutcome, kubeConfigFor, obj, refusal, TOKENS } from "./helpers.js";

const G = { group: "postgresql.cnpg.io", version: "v1", plural: "clusters" };
const NS = "db";

let dir: string;
let plain: KubeApiServer;
let secure: KubeApiServer;
let kubeconfig: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-kube-faults-"));
  plain = await startKubeApi({ region: "eu-west", tokens: TOKENS, namespaces: [NS] });
  secure = await startKubeApi({ region: "us-east", tokens: TOKENS, namespaces: [NS], tls: { dir: join(dir, "tls-us-east") } });
  kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, [
    { name: "eu-west", url: plain.url, token: ADMIN_TOKEN },
    { name: "us-east", url: secure.url, token: ADMIN_TOKEN, caFile: secure.caFile },
  ]);
  plain.store.create("clusters", cluster("pg-eu", NS));
});

afterAll(async () => {
  await plain?.stop();
  await secure?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function customApi(context: string): CustomObjectsApi {
  return kubeConfigFor(kubeconfig, context).makeApiClient(CustomObjectsApi);
}

describe("kube API stand-in fault injection", () => {
  it("adds the configured latency to every request until cleared", async () => {
    const api = customApi("eu-west");
    await api.getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" });
    await plain.faults.set({ latencyMs: 300 });
    let t = Date.now();
    await api.getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" });
    expect(Date.now() - t).toBeGreaterThanOrEqual(290);
    await plain.faults.clear();
    t = Date.now();
    await api.getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" });
    expect(Date.now() - t).toBeLessThan(200);
  });

  it("answers the configured share of requests with 503, 500 or 429", async () => {
    const api = customApi("eu-west");
    await plain.faults.set({ errorRate: 1 });
    const r503 = await refusal(api.getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" }));
    expect(r503.code).toBe(503);
    expect(r503.body.reason).toBe("ServiceUnavailable");
    await plain.faults.set({ errorStatus: 429 });
    const r429 = await fetch(`${plain.url}/api/v1/namespaces`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(r429.status).toBe(429);
    expect(r429.headers.get("retry-after")).toBe("1");
    await plain.faults.set({ errorStatus: 500, errorRate: 0.5 });
    let failed = 0;
    for (let i = 0; i < 200; i++) {
      const r = await fetch(`${plain.url}/api/v1/namespaces`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
      await r.arrayBuffer();
      if (r.status === 500) failed++;
      else expect(r.status).toBe(200);
    }
    expect(failed).toBeGreaterThan(60);
    expect(failed).toBeLessThan(140);
    await plain.faults.clear();
    expect(plain.faults.get()).toEqual({});
    await api.getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" });
  });

  it("refuses connections while partitioned, ends open watches, and recovers on the same port", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    let watchEnded = false;
    const req = await new Watch(kc).watch(`/apis/postgresql.cnpg.io/v1/namespaces/${NS}/clusters`, {}, () => undefined, () => (watchEnded = true));
    const port = plain.port;
    await plain.faults.set({ partitioned: true });
    expect(await connectOutcome(port)).toBe("ECONNREFUSED");
    await waitFor("the open watch to end", () => watchEnded, 5_000);
    const during = await customApi("eu-west")
      .getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" })
      .then(
        () => "answered",
        (e: unknown) => errorMessageWithCauses(e),
      );
    expect(during).toMatch(/ECONNREFUSED/);
    // The region keeps working in-process: the lab's operator is on the other side of the partition.
    plain.store.patch("clusters", { namespace: NS, name: "pg-eu" }, { spec: { instances: 2 } });
    await plain.faults.set({ partitioned: false });
    expect(plain.port).toBe(port);
    expect(await connectOutcome(port)).toBe("connected");
    const after = obj(await customApi("eu-west").getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" }));
    expect((after.spec as { instances: number }).instances).toBe(2);
    req.abort();
  });

  it("keeps dropping watches while watchLifetimeMs is set", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    await plain.faults.set({ watchLifetimeMs: 150 });
    let ends = 0;
    const started = Date.now();
    const open = async (): Promise<void> => {
      await new Watch(kc).watch(`/apis/postgresql.cnpg.io/v1/namespaces/${NS}/clusters`, {}, () => undefined, () => {
        ends++;
        if (ends < 3) void open();
      });
    };
    await open();
    await waitFor("three dropped watches", () => ends >= 3, 5_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);
    await plain.faults.clear();
  });
});

describe("kube API stand-in over HTTPS", () => {
  it("writes ca.crt, server.crt and server.key and serves client-node with that CA", async () => {
    for (const f of ["ca.crt", "server.crt", "server.key"]) expect(existsSync(join(dir, "tls-us-east", f))).toBe(true);
    expect(secure.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const api = customApi("us-east");
    await api.createNamespacedCustomObject({ ...G, namespace: NS, body: cluster("pg-us", NS) });
    const got = obj(await api.getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-us" }));
    expect(got.metadata.name).toBe("pg-us");
    const ns = await kubeConfigFor(kubeconfig, "us-east").makeApiClient(CoreV1Api).listNamespace();
    expect(ns.items.map((n) => n.metadata?.name)).toContain(NS);
  });

  it("is refused by a client that does not trust the generated CA", async () => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: "c", server: secure.url, skipTLSVerify: false }],
      users: [{ name: "u", token: ADMIN_TOKEN }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const err = await kc
      .makeApiClient(CustomObjectsApi)
      .getNamespacedCustomObject({ ...G, namespace: NS, name: "pg-us" })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(errorMessageWithCauses(err)).toMatch(/self[- ]signed|unable to verify|certificate/i);
  });

  it("reuses existing certificates when restarted on the same directory", async () => {
    const again = await startKubeApi({ region: "us-east", tokens: TOKENS, tls: { dir: join(dir, "tls-us-east") } });
    try {
      const file = join(dir, "kubeconfig-again");
      await writeKubeconfig(file, [{ name: "us-east", url: again.url, token: ADMIN_TOKEN, caFile: secure.caFile }]);
      const ns = await kubeConfigFor(file, "us-east").makeApiClient(CoreV1Api).readNamespace({ name: "default" });
      expect(ns.metadata?.name).toBe("default");
    } finally {
      await again.stop();
    }
  });
});
