/**
 * Field ownership and schema handling of the lab's API stand-in over HTTPS, as a real API server
 * with CNPG's CRD does them: managedFields of every write, server-side apply with conflicts,
 * unknown fields pruned or refused per fieldValidation, Table answers with CNPG's printer
 * columns, protobuf Namespace bodies, and CNPG's own sample manifests admitted unchanged.
 */
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { Agent } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CustomObjectsApi, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FieldSet } from "../../../src/lab/kube-api/field-set.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer, type KubeObject } from "../../../src/lab/kube-api/index.js";
import type { ManagedFieldsEntry } from "../../../src/lab/kube-api/managed-fields.js";
import { HAVE_UPSTREAM, sampleClusters, UPSTREAM_MISSING } from "../../unit/kube-api/cnpg-upstream.js";
import { ADMIN_TOKEN, cluster, kubeConfigFor, obj, refusal, spec, STATUS_WRITER_TOKEN, TOKENS } from "./helpers.js";

const G = { group: "postgresql.cnpg.io", version: "v1", plural: "clusters" };
const NS = "db";
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const applyPatch = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);

let dir: string;
let api: KubeApiServer;
let custom: CustomObjectsApi;
let operator: CustomObjectsApi;
let agent: Agent;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-kube-fields-"));
  api = await startKubeApi({ region: "eu-west", tokens: TOKENS, namespaces: [NS], tls: { dir: join(dir, "tls") } });
  const kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, [
    { name: "eu-west", url: api.url, token: ADMIN_TOKEN, caFile: api.caFile },
    { name: "eu-west-operator", url: api.url, token: STATUS_WRITER_TOKEN, caFile: api.caFile },
  ]);
  custom = kubeConfigFor(kubeconfig, "eu-west").makeApiClient(CustomObjectsApi);
  operator = kubeConfigFor(kubeconfig, "eu-west-operator").makeApiClient(CustomObjectsApi);
  agent = new Agent({ ca: await readFile(api.caFile ?? "") });
});

afterAll(async () => {
  agent?.destroy();
  await api?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** One HTTPS request with full control of the headers (client-node hides the Warning header). */
async function raw(method: string, path: string, o: { body?: string | Buffer; headers?: Record<string, string> } = {}): Promise<RawResponse> {
  const { request } = await import("node:https");
  return new Promise((resolve, reject) => {
    const req = request(`${api.url}${path}`, { method, agent, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(o.headers ?? {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} });
      });
    });
    req.on("error", reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

const clusterPath = (name?: string) => `/apis/postgresql.cnpg.io/v1/namespaces/${NS}/clusters${name ? `/${name}` : ""}`;

function managed(o: KubeObject): ManagedFieldsEntry[] {
  return o.metadata.managedFields as ManagedFieldsEntry[];
}

/** Who set spec.replica.primary, read as the coordinator would. */
function primaryOwners(o: KubeObject): string[] {
  return managed(o)
    .filter((e) => FieldSet.fromFieldsV1(e.fieldsV1).has(["f:spec", "f:replica", "f:primary"]))
    .map((e) => `${e.manager}:${e.operation}`);
}

describe("managedFields", () => {
  it("names the manager by fieldManager, else by the User-Agent, and moves a field to whoever changes it", async () => {
    const created = obj(await custom.createNamespacedCustomObject({ ...G, namespace: NS, body: cluster("pg-mf", NS), fieldManager: "pgfed-coordinator" }));
    expect(managed(created)).toEqual([
      {
        manager: "pgfed-coordinator",
        operation: "Update",
        apiVersion: "postgresql.cnpg.io/v1",
        time: expect.stringMatching(/Z$/) as string,
        fieldsType: "FieldsV1",
        fieldsV1: {
          "f:metadata": { "f:labels": { "f:app": {}, "f:tier": {} } },
          "f:spec": { "f:externalClusters": {}, "f:instances": {}, "f:replica": { "f:primary": {}, "f:self": {}, "f:source": {} } },
        },
      },
    ]);
    // client-node's User-Agent is kubernetes-client-javascript/<version>.
    const byAgent = obj(await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-mf", body: { spec: { replica: { primary: "pg-us" } } } }, mergePatch));
    expect(primaryOwners(byAgent)).toEqual(["kubernetes-client-javascript:Update"]);
    const res = await raw("PATCH", clusterPath("pg-mf"), { body: JSON.stringify({ spec: { replica: { primary: "pg-eu" } } }), headers: { "content-type": "application/merge-patch+json", "user-agent": "someone-by-hand/2.1 (linux/amd64)" } });
    expect(res.status).toBe(200);
    expect(primaryOwners(res.body as unknown as KubeObject)).toEqual(["someone-by-hand:Update"]);
  });

  it("records writes through /status with subresource status", async () => {
    await custom.createNamespacedCustomObject({ ...G, namespace: NS, body: cluster("pg-mf-status", NS) });
    const patched = obj(await operator.patchNamespacedCustomObjectStatus({ ...G, namespace: NS, name: "pg-mf-status", body: { status: { phase: "Setting up primary" } }, fieldManager: "cnpg-operator" }, mergePatch));
    expect(managed(patched).find((e) => e.subresource === "status")).toEqual(expect.objectContaining({ manager: "cnpg-operator", operation: "Update", subresource: "status", fieldsV1: { "f:status": { "f:phase": {} } } }));
  });
});

describe("server-side apply", () => {
  const applied = (primary: string) => ({ apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata: { name: "pg-ssa", namespace: NS }, spec: { ...spec(cluster("pg-ssa", NS)), replica: { self: "pg-ssa", primary, source: "pg-us" } } });

  it("creates with 201, applies again with 200, and refuses another manager's field with 409 unless forced", async () => {
    const yaml = `apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg-ssa\nspec:\n  instances: 1\n  replica: {self: pg-ssa, primary: pg-ssa, source: pg-us}\n  externalClusters:\n  - {name: pg-ssa, plugin: {name: barman-cloud.cloudnative-pg.io}}\n  - {name: pg-us, plugin: {name: barman-cloud.cloudnative-pg.io}}\n`;
    const first = await raw("PATCH", `${clusterPath("pg-ssa")}?fieldManager=pgfed`, { body: yaml, headers: { "content-type": "application/apply-patch+yaml" } });
    expect(first.status).toBe(201);
    expect(managed(first.body as unknown as KubeObject).map((e) => `${e.manager}:${e.operation}`)).toEqual(["pgfed:Apply"]);

    await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-ssa", body: { spec: { replica: { primary: "pg-us" } } }, fieldManager: "kubectl-edit" }, mergePatch);
    const conflict = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-ssa", body: applied("pg-ssa"), fieldManager: "pgfed" }, applyPatch));
    expect(conflict.code).toBe(409);
    expect(conflict.body).toMatchObject({ kind: "Status", status: "Failure", reason: "Conflict", details: { causes: [{ reason: "FieldManagerConflict", field: ".spec.replica.primary", message: expect.stringMatching(/^conflict with "kubectl-edit" using postgresql\.cnpg\.io\/v1 at /) as string }] } });
    expect(conflict.body.message).toMatch(/^Apply failed with 1 conflict: conflict with "kubectl-edit" using postgresql\.cnpg\.io\/v1 at \S+: \.spec\.replica\.primary$/);

    const forced = obj(await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-ssa", body: applied("pg-ssa"), fieldManager: "pgfed", force: true }, applyPatch));
    expect((spec(forced).replica as { primary: string }).primary).toBe("pg-ssa");
    expect(primaryOwners(forced)).toEqual(["pgfed:Apply"]);
    expect(forced.metadata.generation).toBe(3);

    const again = await raw("PATCH", `${clusterPath("pg-ssa")}?fieldManager=pgfed`, { body: JSON.stringify(applied("pg-ssa")), headers: { "content-type": "application/apply-patch+yaml" } });
    expect(again.status).toBe(200);
    expect((again.body.metadata as { resourceVersion: string }).resourceVersion).toBe(forced.metadata.resourceVersion);
  });

  it("runs CNPG's admission on applied objects and refuses fields the schema does not declare", async () => {
    const denied = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-ssa", body: applied("pg-nowhere"), fieldManager: "pgfed", force: true }, applyPatch));
    expect(denied.code).toBe(422);
    expect(denied.body.message).toContain('admission webhook "vcluster.cnpg.io" denied the request');
    const undeclared = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-ssa", body: { ...applied("pg-ssa"), spec: { ...applied("pg-ssa").spec, colour: "red" } }, fieldManager: "pgfed" }, applyPatch));
    expect(undeclared.code).toBe(400);
    expect(undeclared.body.message).toBe("failed to create typed patch object (db/pg-ssa; postgresql.cnpg.io/v1, Kind=Cluster): .spec.colour: field not declared in schema");
  });

  it("applies namespaces too, and requires a fieldManager", async () => {
    const ns = await raw("PATCH", "/api/v1/namespaces/applied?fieldManager=ops", { body: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: applied\n  labels: {team: db}\n", headers: { "content-type": "application/apply-patch+yaml" } });
    expect(ns.status).toBe(201);
    expect(managed(ns.body as unknown as KubeObject)).toEqual([expect.objectContaining({ manager: "ops", operation: "Apply", apiVersion: "v1", fieldsV1: { "f:metadata": { "f:labels": { "f:team": {} } } } })]);
    const noManager = await raw("PATCH", "/api/v1/namespaces/applied", { body: "apiVersion: v1\nkind: Namespace\nmetadata: {name: applied}\n", headers: { "content-type": "application/apply-patch+yaml" } });
    expect(noManager.status).toBe(422);
    expect(noManager.body.message).toBe('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
  });
});

describe("unknown fields", () => {
  const withUnknown = (name: string) => ({ ...cluster(name, NS), spec: { ...spec(cluster(name, NS)), foo: "bar", replica: { self: name, primary: name, source: "pg-us", colour: "red" } } });

  it("prunes them by default with one Warning header each", async () => {
    const res = await raw("POST", clusterPath(), { body: JSON.stringify(withUnknown("pg-warn")), headers: { "content-type": "application/json" } });
    expect(res.status).toBe(201);
    expect(res.headers.warning).toBe('299 - "unknown field \\"spec.foo\\"", 299 - "unknown field \\"spec.replica.colour\\""');
    const stored = api.store.read("clusters", { namespace: NS, name: "pg-warn" });
    expect(spec(stored).foo).toBeUndefined();
    expect(spec(stored).replica).toEqual({ self: "pg-warn", primary: "pg-warn", source: "pg-us" });
  });

  it("refuses them with 400 under fieldValidation=Strict, naming each field", async () => {
    const refused = await refusal(custom.createNamespacedCustomObject({ ...G, namespace: NS, body: withUnknown("pg-strict"), fieldValidation: "Strict" }));
    expect(refused.code).toBe(400);
    expect(refused.body.reason).toBe("BadRequest");
    expect(refused.body.message).toBe('Cluster in version "v1" cannot be handled as a Cluster: strict decoding error: unknown field "spec.foo", unknown field "spec.replica.colour"');
    expect(api.store.get("clusters", { namespace: NS, name: "pg-strict" })).toBeUndefined();
    const patched = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-warn", body: { metadata: { colour: "red" } }, fieldValidation: "Strict" }, mergePatch));
    expect(patched.code).toBe(400);
    expect(patched.body.message).toContain('unknown field "metadata.colour"');
  });

  it("prunes them silently under fieldValidation=Ignore", async () => {
    const res = await raw("POST", `${clusterPath()}?fieldValidation=Ignore`, { body: JSON.stringify(withUnknown("pg-ignore")), headers: { "content-type": "application/json" } });
    expect(res.status).toBe(201);
    expect(res.headers.warning).toBeUndefined();
    expect(spec(api.store.read("clusters", { namespace: NS, name: "pg-ignore" })).foo).toBeUndefined();
  });

  it("checks the CRD schema (422 naming the field) before CNPG's webhook", async () => {
    const refused = await refusal(custom.createNamespacedCustomObject({ ...G, namespace: NS, body: { ...cluster("pg-schema", NS), spec: { instances: 0, replica: { primary: "pg-schema" } } } }));
    expect(refused.code).toBe(422);
    expect(refused.body.message).toBe('Cluster.postgresql.cnpg.io "pg-schema" is invalid: [spec.instances: Invalid value: 0: spec.instances in body should be greater than or equal to 1, spec.replica.source: Required value]');
  });
});

describe("Table answers and protobuf bodies", () => {
  it("answers kubectl's Table request with CNPG's printer columns", async () => {
    api.store.create("clusters", cluster("pg-table", NS));
    api.store.updateStatus("clusters", { namespace: NS, name: "pg-table" }, { instances: 1, readyInstances: 1, phase: "Cluster in healthy state", currentPrimary: "pg-table-1" });
    const res = await raw("GET", `${clusterPath()}?fieldSelector=metadata.name%3Dpg-table`, { headers: { accept: "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json" } });
    expect(res.status).toBe(200);
    expect(res.body.kind).toBe("Table");
    expect((res.body.columnDefinitions as Array<{ name: string; priority: number }>).map((c) => `${c.name}/${c.priority}`)).toEqual(["Name/0", "Age/0", "Instances/0", "Ready/0", "Status/0", "Primary/0", "SyncTopology/1"]);
    const rows = res.body.rows as Array<{ cells: unknown[]; object: { kind: string; metadata: { name: string } } }>;
    expect(rows.map((r) => r.cells.slice(0, 1).concat(r.cells.slice(2)))).toEqual([["pg-table", 1, 1, "Cluster in healthy state", "pg-table-1", null]]);
    expect(rows[0]?.cells[1]).toMatch(/^\d+s$/);
    expect(rows[0]?.object).toMatchObject({ kind: "PartialObjectMetadata", metadata: { name: "pg-table" } });
  });

  it("creates a Namespace from a protobuf body", async () => {
    const varint = (n: number) => Buffer.from([n]);
    const ld = (no: number, payload: Buffer) => Buffer.concat([varint((no << 3) | 2), varint(payload.length), payload]);
    const str = (no: number, s: string) => ld(no, Buffer.from(s));
    const body = Buffer.concat([Buffer.from("k8s\0", "binary"), ld(1, Buffer.concat([str(1, "v1"), str(2, "Namespace")])), ld(2, ld(1, str(1, "from-protobuf")))]);
    const res = await raw("POST", "/api/v1/namespaces", { body, headers: { "content-type": "application/vnd.kubernetes.protobuf", accept: "application/vnd.kubernetes.protobuf, */*" } });
    expect(res.status).toBe(201);
    expect((res.body.metadata as { name: string }).name).toBe("from-protobuf");
    const secret = await raw("POST", `/api/v1/namespaces/${NS}/secrets`, { body, headers: { "content-type": "application/vnd.kubernetes.protobuf" } });
    expect(secret.status).toBe(415);
  });
});

describe.skipIf(!HAVE_UPSTREAM)("CNPG's sample manifests", () => {
  it("are all created as sent: nothing pruned, no warning, no refusal", async () => {
    if (!HAVE_UPSTREAM) console.warn(UPSTREAM_MISSING);
    const samples = sampleClusters();
    expect(samples.length).toBeGreaterThanOrEqual(9);
    for (const { file, cluster: c } of samples) {
      const res = await raw("POST", clusterPath(), { body: JSON.stringify({ ...c, metadata: { ...c.metadata, namespace: NS } }), headers: { "content-type": "application/json" } });
      expect({ file, status: res.status, warning: res.headers.warning, message: res.body.message }).toEqual({ file, status: 201, warning: undefined, message: undefined });
      expect({ file, spec: res.body.spec }).toEqual({ file, spec: c.spec });
    }
  });
});
