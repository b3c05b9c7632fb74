/**
 * Conformance of the lab's Kubernetes API stand-in against the real @kubernetes/client-node 1.4,
 * as pgfed's kube code uses it: CRUD, patches, status subresource, conflicts, core and
 * coordination types, selectors, auth, admission, watches and informers.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  PatchStrategy,
  setHeaderOptions,
  VersionApi,
  Watch,
  type KubernetesObject,
  type V1Lease,
} from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../../../src/lab/proc.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer, type KubeObject, type StoreEvent } from "../../../src/lab/kube-api/index.js";
import { ADMIN_TOKEN, cluster, connectOutcome, kubeConfigFor, obj, READER_TOKEN, refusal, spec, STATUS_WRITER_TOKEN, TOKENS } from "./helpers.js";

const G = { group: "postgresql.cnpg.io", version: "v1", plural: "clusters" };
const NS = "db";
const CLUSTERS_PATH = `/apis/postgresql.cnpg.io/v1/namespaces/${NS}/clusters`;
const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
const jsonPatch = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch);

let dir: string;
let api: KubeApiServer;
let kubeconfig: string;
let custom: CustomObjectsApi;
let core: CoreV1Api;
let coordination: CoordinationV1Api;
const cleanups: Array<() => void> = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-kube-api-"));
  api = await startKubeApi({ region: "eu-west", tokens: TOKENS, namespaces: [NS], watchHistory: 50, bookmarkIntervalMs: 200 });
  kubeconfig = join(dir, "kubeconfig");
  await writeKubeconfig(kubeconfig, [
    { name: "eu-west", url: api.url, token: ADMIN_TOKEN },
    { name: "eu-west-reader", url: api.url, token: READER_TOKEN },
    { name: "eu-west-operator", url: api.url, token: STATUS_WRITER_TOKEN },
    { name: "eu-west-stranger", url: api.url, token: "nobody-knows-me" },
  ]);
  const kc = kubeConfigFor(kubeconfig, "eu-west");
  custom = kc.makeApiClient(CustomObjectsApi);
  core = kc.makeApiClient(CoreV1Api);
  coordination = kc.makeApiClient(CoordinationV1Api);
});

afterAll(async () => {
  for (const c of cleanups) c();
  await api?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function createCluster(name: string, replica?: Record<string, unknown>): Promise<KubeObject> {
  return obj(await custom.createNamespacedCustomObject({ ...G, namespace: NS, body: cluster(name, NS, replica) }));
}

async function getCluster(name: string): Promise<KubeObject> {
  return obj(await custom.getNamespacedCustomObject({ ...G, namespace: NS, name }));
}

async function deleteCluster(name: string): Promise<void> {
  await custom.deleteNamespacedCustomObject({ ...G, namespace: NS, name });
}

describe("kube API stand-in with @kubernetes/client-node", () => {
  it("answers /version and discovery", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    const version = await kc.makeApiClient(VersionApi).getCode();
    expect(version.major).toBe("1");
    const res = await fetch(`${api.url}/apis`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const body = (await res.json()) as { groups: Array<{ name: string }> };
    expect(body.groups.map((g) => g.name).sort()).toEqual(["coordination.k8s.io", "postgresql.cnpg.io"]);
    const resources = obj({ metadata: {}, ...((await custom.getAPIResources({ group: G.group, version: G.version })) as object) });
    expect((resources.resources as Array<{ name: string }>).map((r) => r.name)).toEqual(["clusters", "clusters/status", "clusters/scale"]);
  });

  it("creates, reads, lists, replaces and deletes a Cluster with server-kept metadata", async () => {
    const created = await createCluster("pg-eu");
    expect(created.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.metadata.generation).toBe(1);
    expect(created.metadata.resourceVersion).toMatch(/^\d+$/);
    expect(created.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);

    const dup = await refusal(createCluster("pg-eu"));
    expect(dup.code).toBe(409);
    expect(dup.body.reason).toBe("AlreadyExists");

    const list = obj(await custom.listNamespacedCustomObject({ ...G, namespace: NS }));
    expect(list.kind).toBe("ClusterList");
    expect(list.apiVersion).toBe("postgresql.cnpg.io/v1");
    expect(Number(list.metadata.resourceVersion)).toBeGreaterThanOrEqual(Number(created.metadata.resourceVersion));
    expect((list.items as KubeObject[]).map((i) => i.metadata.name)).toEqual(["pg-eu"]);

    const changed = { ...created, spec: { ...spec(created), instances: 3 } };
    const replaced = obj(await custom.replaceNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu", body: changed }));
    expect(replaced.metadata.generation).toBe(2);
    expect(replaced.metadata.uid).toBe(created.metadata.uid);
    expect(Number(replaced.metadata.resourceVersion)).toBeGreaterThan(Number(created.metadata.resourceVersion));

    const sameAgain = obj(await custom.replaceNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu", body: replaced }));
    expect(sameAgain.metadata.resourceVersion).toBe(replaced.metadata.resourceVersion);

    const noVersion = { ...replaced, metadata: { ...replaced.metadata, resourceVersion: undefined } };
    const unconditional = await refusal(custom.replaceNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu", body: noVersion }));
    expect(unconditional.code).toBe(422);

    const deleted = obj(await custom.deleteNamespacedCustomObject({ ...G, namespace: NS, name: "pg-eu" }));
    expect(deleted.metadata.name).toBe("pg-eu");
    const gone = await refusal(getCluster("pg-eu"));
    expect(gone.code).toBe(404);
    expect(gone.body.reason).toBe("NotFound");
    expect(gone.body.message).toBe('clusters.postgresql.cnpg.io "pg-eu" not found');
  });

  it("applies merge and JSON patches to spec and metadata, keeping status", async () => {
    await createCluster("pg-patch");
    api.store.updateStatus("clusters", { namespace: NS, name: "pg-patch" }, { phase: "Cluster in healthy state", instances: 1 });

    const merged = obj(await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-patch", body: { spec: { instances: 2, replica: { primary: "pg-us" } }, status: { phase: "ignored" } } }, mergePatch));
    expect(spec(merged).instances).toBe(2);
    expect(spec(merged).replica).toEqual({ self: "pg-patch", primary: "pg-us", source: "pg-us" });
    expect(merged.metadata.generation).toBe(2);
    expect(merged.status).toEqual({ phase: "Cluster in healthy state", instances: 1 });

    const removed = obj(await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-patch", body: { metadata: { labels: { tier: null } } } }, mergePatch));
    expect(removed.metadata.labels).toEqual({ app: "pg" });
    expect(removed.metadata.generation).toBe(2);

    const patched = obj(
      await custom.patchNamespacedCustomObject(
        {
          ...G,
          namespace: NS,
          name: "pg-patch",
          body: [
            { op: "test", path: "/spec/instances", value: 2 },
            { op: "add", path: "/metadata/annotations", value: {} },
            { op: "add", path: "/metadata/annotations/cnpg.io~1fencedInstances", value: '["*"]' },
            { op: "replace", path: "/spec/instances", value: 4 },
            { op: "copy", from: "/spec/replica/self", path: "/spec/replica/source" },
            { op: "move", from: "/spec/externalClusters/2", path: "/spec/externalClusters/0" },
            { op: "remove", path: "/spec/externalClusters/2" },
          ],
        },
        jsonPatch,
      ),
    );
    expect(patched.metadata.annotations).toEqual({ "cnpg.io/fencedInstances": '["*"]' });
    expect(spec(patched).instances).toBe(4);
    expect(spec(patched).replica).toEqual({ self: "pg-patch", primary: "pg-us", source: "pg-patch" });
    expect((spec(patched).externalClusters as Array<{ name: string }>).map((e) => e.name)).toEqual(["pg-us", "pg-patch", "pg-ap"]);

    const failedTest = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-patch", body: [{ op: "test", path: "/spec/instances", value: 99 }, { op: "replace", path: "/spec/instances", value: 5 }] }, jsonPatch));
    expect(failedTest.code).toBe(422);
    expect(failedTest.body.reason).toBe("Invalid");
    expect(spec(await getCluster("pg-patch")).instances).toBe(4);

    const missing = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-patch", body: [{ op: "remove", path: "/spec/nothing" }] }, jsonPatch));
    expect(missing.code).toBe(422);
    const malformed = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-patch", body: { op: "add" } }, jsonPatch));
    expect(malformed.code).toBe(400);

    const strategic = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-patch", body: { spec: {} } }, setHeaderOptions("Content-Type", PatchStrategy.StrategicMergePatch)));
    expect(strategic.code).toBe(415);
    expect(strategic.body.reason).toBe("UnsupportedMediaType");
    const apply = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-patch", body: { spec: {} } }, setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply)));
    expect(apply.code).toBe(422);
    expect(apply.body.message).toBe('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch');
    expect((await getCluster("pg-patch")).status).toEqual({ phase: "Cluster in healthy state", instances: 1 });
  });

  it("writes to /status change only status, without a generation bump", async () => {
    const before = await createCluster("pg-status");
    const kcOperator = kubeConfigFor(kubeconfig, "eu-west-operator");
    const operator = kcOperator.makeApiClient(CustomObjectsApi);
    const patched = obj(
      await operator.patchNamespacedCustomObjectStatus(
        { ...G, namespace: NS, name: "pg-status", body: { spec: { instances: 9 }, metadata: { labels: { x: "y" } }, status: { phase: "Setting up primary", switchReplicaClusterStatus: { inProgress: false } } } },
        mergePatch,
      ),
    );
    expect(patched.status).toEqual({ phase: "Setting up primary", switchReplicaClusterStatus: { inProgress: false } });
    expect(spec(patched).instances).toBe(1);
    expect(patched.metadata.labels).toEqual(before.metadata.labels);
    expect(patched.metadata.generation).toBe(1);

    const replaced = obj(await operator.replaceNamespacedCustomObjectStatus({ ...G, namespace: NS, name: "pg-status", body: { ...patched, status: { phase: "Cluster in healthy state" } } }));
    expect(replaced.status).toEqual({ phase: "Cluster in healthy state" });

    const stale = await refusal(operator.replaceNamespacedCustomObjectStatus({ ...G, namespace: NS, name: "pg-status", body: patched }));
    expect(stale.code).toBe(409);

    const asOperator = await refusal(operator.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-status", body: { spec: { instances: 2 } } }, mergePatch));
    expect(asOperator.code).toBe(403);
    expect(asOperator.body.reason).toBe("Forbidden");
    expect(asOperator.body.message).toBe('clusters.postgresql.cnpg.io "pg-status" is forbidden: User "operator" cannot patch resource "clusters" in API group "postgresql.cnpg.io" in the namespace "db"');
  });

  it("answers a stale resourceVersion with 409 Conflict and a Status body", async () => {
    const c = await createCluster("pg-conflict");
    await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-conflict", body: { spec: { instances: 2 } } }, mergePatch);
    const viaPut = await refusal(custom.replaceNamespacedCustomObject({ ...G, namespace: NS, name: "pg-conflict", body: { ...c, spec: { ...spec(c), instances: 5 } } }));
    expect(viaPut.code).toBe(409);
    expect(viaPut.body).toMatchObject({ kind: "Status", status: "Failure", reason: "Conflict", code: 409 });
    expect(viaPut.body.message).toContain("the object has been modified");
    const viaPatch = await refusal(
      custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-conflict", body: { metadata: { resourceVersion: c.metadata.resourceVersion }, spec: { instances: 5 } } }, mergePatch),
    );
    expect(viaPatch.code).toBe(409);
    expect(spec(await getCluster("pg-conflict")).instances).toBe(2);
  });

  it("reads and writes the scale subresource as spec.instances", async () => {
    await createCluster("pg-scale");
    const scale = obj(await custom.patchNamespacedCustomObjectScale({ ...G, namespace: NS, name: "pg-scale", body: { spec: { replicas: 3 } } }, mergePatch));
    expect(scale.kind).toBe("Scale");
    expect((scale.spec as { replicas: number }).replicas).toBe(3);
    expect(spec(await getCluster("pg-scale")).instances).toBe(3);
  });

  it("serves namespaces, secrets and events through CoreV1Api", async () => {
    await core.createNamespace({ body: { metadata: { name: "scratch" } } });
    const ns = await core.readNamespace({ name: "scratch" });
    expect(ns.status?.phase).toBe("Active");
    const missingNs = await refusal(core.createNamespacedSecret({ namespace: "nowhere", body: { metadata: { name: "s" } } }));
    expect(missingNs.code).toBe(404);

    const secret = await core.createNamespacedSecret({ namespace: "scratch", body: { metadata: { name: "pg-eu-monitor", labels: { role: "monitor" } }, stringData: { password: "s3cret" } } });
    expect(secret.data?.password).toBe(Buffer.from("s3cret").toString("base64"));
    expect(secret.type).toBe("Opaque");
    const read = await core.readNamespacedSecret({ namespace: "scratch", name: "pg-eu-monitor" });
    expect(Buffer.from(read.data?.password ?? "", "base64").toString()).toBe("s3cret");
    const secrets = await core.listNamespacedSecret({ namespace: "scratch", labelSelector: "role=monitor" });
    expect(secrets.items.map((s) => s.metadata?.name)).toEqual(["pg-eu-monitor"]);

    await core.createNamespacedEvent({
      namespace: "scratch",
      body: { metadata: { name: "pg-eu.1" }, involvedObject: { kind: "Cluster", name: "pg-eu", namespace: "scratch" }, reason: "Promoted", message: "promoted", type: "Normal" },
    });
    await core.createNamespacedEvent({
      namespace: "scratch",
      body: { metadata: { name: "pg-us.1" }, involvedObject: { kind: "Cluster", name: "pg-us", namespace: "scratch" }, reason: "Demoted", message: "demoted", type: "Normal" },
    });
    const events = await core.listNamespacedEvent({ namespace: "scratch", fieldSelector: "involvedObject.name=pg-eu" });
    expect(events.items.map((e) => e.reason)).toEqual(["Promoted"]);

    await core.deleteNamespace({ name: "scratch" });
    expect(api.store.list("secrets", { namespace: "scratch" }).items).toEqual([]);
    expect((await refusal(core.readNamespace({ name: "scratch" }))).code).toBe(404);
  });

  it("serves leases through CoordinationV1Api with optimistic concurrency", async () => {
    const body: V1Lease = { metadata: { name: "pg-eu-primary" }, spec: { holderIdentity: "agent-eu", leaseDurationSeconds: 10, renewTime: new Date() } };
    const lease = await coordination.createNamespacedLease({ namespace: NS, body });
    expect(lease.spec?.holderIdentity).toBe("agent-eu");
    const renewed = await coordination.replaceNamespacedLease({ namespace: NS, name: "pg-eu-primary", body: { ...lease, spec: { ...lease.spec, renewTime: new Date() } } });
    expect(Number(renewed.metadata?.resourceVersion)).toBeGreaterThan(Number(lease.metadata?.resourceVersion));
    const stolen = await refusal(coordination.replaceNamespacedLease({ namespace: NS, name: "pg-eu-primary", body: { ...lease, spec: { ...lease.spec, holderIdentity: "agent-us" } } }));
    expect(stolen.code).toBe(409);
    expect(stolen.body.reason).toBe("Conflict");
    const bad = await refusal(coordination.createNamespacedLease({ namespace: NS, body: { metadata: { name: "bad" }, spec: { leaseDurationSeconds: 0 } } }));
    expect(bad.code).toBe(422);
    expect((bad.body.details as { causes: Array<{ field: string }> }).causes[0]?.field).toBe("spec.leaseDurationSeconds");
    expect((await coordination.readNamespacedLease({ namespace: NS, name: "pg-eu-primary" })).spec?.holderIdentity).toBe("agent-eu");
  });

  it("filters lists with label and field selectors", async () => {
    await core.createNamespace({ body: { metadata: { name: "sel" } } });
    const mk = (name: string, labels: Record<string, string>) => custom.createNamespacedCustomObject({ ...G, namespace: "sel", body: { ...cluster(name, "sel"), metadata: { name, labels } } });
    await mk("a", { app: "pg", tier: "gold" });
    await mk("b", { app: "pg", tier: "silver" });
    await mk("c", { app: "other" });
    const names = async (q: { labelSelector?: string; fieldSelector?: string }) =>
      ((obj(await custom.listNamespacedCustomObject({ ...G, namespace: "sel", ...q })).items as KubeObject[]) ?? []).map((i) => i.metadata.name);
    expect(await names({ labelSelector: "app=pg" })).toEqual(["a", "b"]);
    expect(await names({ labelSelector: "app==pg,tier!=gold" })).toEqual(["b"]);
    expect(await names({ labelSelector: "tier in (gold, silver)" })).toEqual(["a", "b"]);
    expect(await names({ labelSelector: "tier notin (gold)" })).toEqual(["b", "c"]);
    expect(await names({ labelSelector: "tier" })).toEqual(["a", "b"]);
    expect(await names({ labelSelector: "!tier" })).toEqual(["c"]);
    expect(await names({ fieldSelector: "metadata.name=b" })).toEqual(["b"]);
    expect(await names({ fieldSelector: "metadata.name!=b,metadata.namespace=sel" })).toEqual(["a", "c"]);
    const all = obj(await custom.listClusterCustomObject({ ...G, fieldSelector: "metadata.namespace=sel" }));
    expect((all.items as KubeObject[]).length).toBe(3);
    expect((await refusal(custom.listNamespacedCustomObject({ ...G, namespace: "sel", labelSelector: "tier in (gold" }))).code).toBe(400);
    expect((await refusal(custom.listNamespacedCustomObject({ ...G, namespace: "sel", fieldSelector: "spec.instances=1" }))).code).toBe(400);
  });

  it("answers 401 without a known token and 403 without permission", async () => {
    const stranger = kubeConfigFor(kubeconfig, "eu-west-stranger").makeApiClient(CustomObjectsApi);
    const r401 = await refusal(stranger.listNamespacedCustomObject({ ...G, namespace: NS }));
    expect(r401.code).toBe(401);
    const raw = await fetch(`${api.url}${CLUSTERS_PATH}`);
    expect(raw.status).toBe(401);
    expect(await raw.json()).toMatchObject({ kind: "Status", reason: "Unauthorized", code: 401 });

    const reader = kubeConfigFor(kubeconfig, "eu-west-reader");
    const readerCustom = reader.makeApiClient(CustomObjectsApi);
    await readerCustom.listNamespacedCustomObject({ ...G, namespace: NS });
    const r403 = await refusal(readerCustom.createNamespacedCustomObject({ ...G, namespace: NS, body: cluster("pg-nope", NS) }));
    expect(r403.code).toBe(403);
    expect(r403.body.message).toContain('User "reader" cannot create resource "clusters"');
    const leases = await refusal(reader.makeApiClient(CoordinationV1Api).listNamespacedLease({ namespace: NS }));
    expect(leases.code).toBe(403);
  });

  it("answers malformed bodies with 400 and unknown paths with 404", async () => {
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" };
    const bad = await fetch(`${api.url}${CLUSTERS_PATH}`, { method: "POST", headers, body: "{not json" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ kind: "Status", reason: "BadRequest" });
    const wrongKind = await fetch(`${api.url}${CLUSTERS_PATH}`, { method: "POST", headers, body: JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name: "x" } }) });
    expect(wrongKind.status).toBe(400);
    const noName = await fetch(`${api.url}${CLUSTERS_PATH}`, { method: "POST", headers, body: JSON.stringify({ metadata: {} }) });
    expect(noName.status).toBe(422);
    const unknown = await fetch(`${api.url}/apis/apps/v1/namespaces/db/deployments`, { headers });
    expect(unknown.status).toBe(404);
    const notAllowed = await fetch(`${api.url}${CLUSTERS_PATH}`, { method: "PUT", headers, body: "{}" });
    expect(notAllowed.status).toBe(405);
    expect(await notAllowed.json()).toMatchObject({ reason: "MethodNotAllowed" });
  });

  it("refuses what an admission hook refuses with 422 naming the fields, storing nothing", async () => {
    const strict = await startKubeApi({
      region: "us-east",
      tokens: TOKENS,
      namespaces: [NS],
      admission: (op, resource, newObj) =>
        resource === "clusters" && spec(newObj).instances === 7 ? [{ field: "spec.instances", message: `Invalid value: 7: ${op} allows at most six instances` }] : [],
    });
    try {
      const file = join(dir, "strict-kubeconfig");
      await writeKubeconfig(file, [{ name: "us-east", url: strict.url, token: ADMIN_TOKEN }]);
      const c = kubeConfigFor(file, "us-east").makeApiClient(CustomObjectsApi);
      const refused = await refusal(c.createNamespacedCustomObject({ ...G, namespace: NS, body: { ...cluster("pg-us", NS), spec: { instances: 7 } } }));
      expect(refused.code).toBe(422);
      expect(refused.body.reason).toBe("Invalid");
      expect(refused.body.message).toBe('Cluster.postgresql.cnpg.io "pg-us" is invalid: spec.instances: Invalid value: 7: CREATE allows at most six instances');
      expect((refused.body.details as { causes: Array<{ field: string }> }).causes.map((x) => x.field)).toEqual(["spec.instances"]);
      expect(strict.store.get("clusters", { namespace: NS, name: "pg-us" })).toBeUndefined();
      await c.createNamespacedCustomObject({ ...G, namespace: NS, body: cluster("pg-us", NS) });
      const update = await refusal(c.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-us", body: { spec: { instances: 7 } } }, mergePatch));
      expect(update.code).toBe(422);
      expect(spec(strict.store.read("clusters", { namespace: NS, name: "pg-us" })).instances).toBe(1);
    } finally {
      await strict.stop();
    }
  });

  it("applies CNPG's webhook by default: its 422 denial naming the fields, role changes refused during a switch", async () => {
    const wrong = await refusal(createCluster("pg-bad", { self: "pg-bad", primary: "pg-nowhere", source: "pg-us", enabled: true }));
    expect(wrong.code).toBe(422);
    expect(wrong.body.reason).toBe("Invalid");
    const causes = (wrong.body.details as { causes: Array<{ field: string }> }).causes.map((c) => c.field).sort();
    expect(causes).toEqual(["spec.replicaCluster.enabled", "spec.replicaCluster.primary"]);
    expect(wrong.body.message).toBe(
      'admission webhook "vcluster.cnpg.io" denied the request: Cluster.postgresql.cnpg.io "pg-bad" is invalid: [spec.replicaCluster.enabled: Forbidden: replica mode enabled is not compatible with the primary field, spec.replicaCluster.primary: Invalid value: "pg-nowhere": External cluster pg-nowhere not found]',
    );
    expect(wrong.body.details).toMatchObject({ name: "pg-bad", group: "postgresql.cnpg.io", kind: "Cluster" });
    expect(api.store.get("clusters", { namespace: NS, name: "pg-bad" })).toBeUndefined();

    const bare = await refusal(custom.createNamespacedCustomObject({ ...G, namespace: NS, body: { ...cluster("pg-bare", NS), spec: { instances: 1, externalClusters: [{ name: "pg-us" }] } } }));
    expect(bare.code).toBe(422);
    expect(bare.body.details).toMatchObject({ causes: [{ reason: "FieldValueRequired", field: "spec.externalClusters[0]", message: "Required value: one of connectionParameters, plugin and barmanObjectStore is required" }] });

    await createCluster("pg-switch", { self: "pg-switch", primary: "pg-switch", source: "pg-us" });
    api.store.updateStatus("clusters", { namespace: NS, name: "pg-switch" }, { switchReplicaClusterStatus: { inProgress: true } });
    const during = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-switch", body: { spec: { replica: { primary: "pg-us" } } } }, mergePatch));
    expect(during.code).toBe(422);
    expect(during.body.message).toMatch(/^admission webhook "vcluster\.cnpg\.io" denied the request: Cluster\.cluster\.cnpg\.io "pg-switch" is invalid: spec\.replica\.enabled: Forbidden: /);
    expect((during.body.details as { causes: Array<{ field: string }> }).causes.map((c) => c.field)).toEqual(["spec.replica.enabled"]);
    api.store.updateStatus("clusters", { namespace: NS, name: "pg-switch" }, { switchReplicaClusterStatus: { inProgress: false } });
    const after = obj(await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-switch", body: { spec: { replica: { primary: "pg-us" } } } }, mergePatch));
    expect((spec(after).replica as { primary: string }).primary).toBe("pg-us");
    const token = await refusal(custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-switch", body: { spec: { replica: { promotionToken: "bm90LWEtdG9rZW4=" } } } }, mergePatch));
    expect(token.code).toBe(422);
    expect((token.body.details as { causes: Array<{ field: string }> }).causes.map((c) => c.field)).toEqual(["spec.replicaCluster.token"]);
  });

  it("streams ADDED, MODIFIED and DELETED to a Watch and to in-process subscribers alike", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    const seen: Array<[string, string, number | undefined]> = [];
    const inProcess: StoreEvent[] = [];
    const unsubscribe = api.store.subscribe((e) => inProcess.push(e), { resource: "clusters", name: "pg-watch" });
    cleanups.push(unsubscribe);
    let done: unknown = "open";
    const req = await new Watch(kc).watch(
      CLUSTERS_PATH,
      { fieldSelector: "metadata.name=pg-watch" },
      (type: string, o: KubernetesObject & { spec?: { instances?: number } }) => seen.push([type, o.metadata?.name ?? "", o.spec?.instances]),
      (err: unknown) => (done = err),
    );
    await createCluster("pg-watch");
    await createCluster("pg-unwatched");
    await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-watch", body: { spec: { instances: 2 } } }, mergePatch);
    await deleteCluster("pg-watch");
    await waitFor("three watch events", () => seen.length >= 3, 5_000);
    expect(seen).toEqual([
      ["ADDED", "pg-watch", 1],
      ["MODIFIED", "pg-watch", 2],
      ["DELETED", "pg-watch", 2],
    ]);
    expect(inProcess.map((e) => e.type)).toEqual(["ADDED", "MODIFIED", "DELETED"]);
    expect(inProcess.map((e) => e.resourceVersion)).toEqual([...inProcess.map((e) => e.resourceVersion)].sort((a, b) => a - b));
    expect(done).toBe("open");
    req.abort();
  });

  it("resumes a watch from a resourceVersion, and ends a too-old one with a 410 Expired ERROR event", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    const start = await createCluster("pg-resume");
    for (let i = 2; i <= 4; i++) await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-resume", body: { spec: { instances: i } } }, mergePatch);
    const replayed: number[] = [];
    const r1 = await new Watch(kc).watch(CLUSTERS_PATH, { resourceVersion: start.metadata.resourceVersion, fieldSelector: "metadata.name=pg-resume" }, (_t: string, o: { spec?: { instances?: number } }) => replayed.push(o.spec?.instances ?? -1), () => undefined);
    await waitFor("replayed events", () => replayed.length >= 3, 5_000);
    expect(replayed).toEqual([2, 3, 4]);
    r1.abort();

    for (let i = 0; i < 60; i++) api.store.patch("clusters", { namespace: NS, name: "pg-resume" }, { metadata: { annotations: { n: String(i) } } });
    const events: Array<{ type: string; code?: number; reason?: string }> = [];
    let ended = false;
    await new Watch(kc).watch(CLUSTERS_PATH, { resourceVersion: start.metadata.resourceVersion }, (type: string, o: { code?: number; reason?: string }) => events.push({ type, code: o.code, reason: o.reason }), () => (ended = true));
    await waitFor("the expired watch to end", () => ended, 5_000);
    expect(events).toEqual([{ type: "ERROR", code: 410, reason: "Expired" }]);
  });

  it("sends BOOKMARKs when allowed and ends the stream after timeoutSeconds", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    const bookmarks: string[] = [];
    let endedAt = 0;
    const started = Date.now();
    await new Watch(kc).watch(
      CLUSTERS_PATH,
      { allowWatchBookmarks: true, timeoutSeconds: 1, resourceVersion: String(api.store.resourceVersion) },
      (type: string, o: KubernetesObject) => {
        if (type === "BOOKMARK") bookmarks.push(o.metadata?.resourceVersion ?? "");
      },
      () => (endedAt = Date.now()),
    );
    await waitFor("the watch to time out", () => endedAt > 0, 5_000);
    expect(endedAt - started).toBeGreaterThanOrEqual(900);
    expect(endedAt - started).toBeLessThan(3_000);
    expect(bookmarks.length).toBeGreaterThanOrEqual(2);
    expect(bookmarks.at(-1)).toBe(String(api.store.resourceVersion));
  });

  it("keeps an informer current across dropped watches", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    const informer = makeInformer(kc, CLUSTERS_PATH, () => custom.listNamespacedCustomObject({ ...G, namespace: NS }));
    const added: string[] = [];
    const updated: string[] = [];
    const deleted: string[] = [];
    informer.on("add", (o: KubernetesObject) => added.push(o.metadata?.name ?? ""));
    informer.on("update", (o: KubernetesObject) => updated.push(o.metadata?.name ?? ""));
    informer.on("delete", (o: KubernetesObject) => deleted.push(o.metadata?.name ?? ""));
    await informer.start();
    cleanups.push(() => void informer.stop());
    await createCluster("pg-inf");
    await waitFor("informer add", () => added.includes("pg-inf"), 5_000);

    await api.faults.set({ dropWatches: true });
    expect(api.faults.get().dropWatches).toBeUndefined();
    await custom.patchNamespacedCustomObject({ ...G, namespace: NS, name: "pg-inf", body: { spec: { instances: 2 } } }, mergePatch);
    await waitFor("informer update after a dropped watch", () => updated.includes("pg-inf"), 5_000);
    await api.faults.set({ dropWatches: true });
    await deleteCluster("pg-inf");
    await waitFor("informer delete after a dropped watch", () => deleted.includes("pg-inf"), 5_000);
    expect(informer.get("pg-inf", NS)).toBeUndefined();
    await informer.stop();
  });

  it("lets an informer recover from a partition through 410 and a relist", async () => {
    const kc = kubeConfigFor(kubeconfig, "eu-west");
    const informer = makeInformer(kc, CLUSTERS_PATH, () => custom.listNamespacedCustomObject({ ...G, namespace: NS }));
    let errors = 0;
    informer.on("error", () => {
      errors++;
      setTimeout(() => void informer.start(), 100);
    });
    await informer.start();
    cleanups.push(() => void informer.stop());
    await createCluster("pg-part");
    await waitFor("informer sees pg-part", () => informer.get("pg-part", NS) !== undefined, 5_000);

    await api.faults.set({ partitioned: true });
    expect(await connectOutcome(api.port)).toBe("ECONNREFUSED");
    // More changes than the watch history holds: the informer's resourceVersion expires.
    for (let i = 0; i < 60; i++) api.store.patch("clusters", { namespace: NS, name: "pg-part" }, { spec: { instances: 100 + i } });
    api.store.create("clusters", cluster("pg-during", NS));
    await waitFor("the informer to notice the partition", () => errors > 0, 5_000);
    await api.faults.clear();

    await waitFor("informer relisted after 410", () => informer.get("pg-during", NS) !== undefined, 10_000);
    const seen: unknown = informer.get("pg-part", NS);
    expect(spec(obj(seen)).instances).toBe(159);
    await informer.stop();
  });

  it("delivers in-process events in commit order when a subscriber writes while notified", () => {
    const order: string[] = [];
    const off1 = api.store.subscribe(
      (e) => {
        order.push(`a:${e.type}:${e.object.metadata.name}`);
        if (e.type === "ADDED" && e.object.metadata.name === "pg-order") {
          api.store.updateStatus("clusters", { namespace: NS, name: "pg-order" }, (cur: KubeObject) => ({ ...(cur.status as object), phase: "Setting up primary" }));
        }
      },
      { resource: "clusters", name: "pg-order" },
    );
    const off2 = api.store.subscribe((e) => order.push(`b:${e.type}:${e.object.metadata.name}`), { resource: "clusters", name: "pg-order" });
    api.store.create("clusters", cluster("pg-order", NS));
    off1();
    off2();
    expect(order).toEqual(["a:ADDED:pg-order", "b:ADDED:pg-order", "a:MODIFIED:pg-order", "b:MODIFIED:pg-order"]);
    expect(api.store.read("clusters", { namespace: NS, name: "pg-order" }).status).toEqual({ phase: "Setting up primary" });
  });
});
