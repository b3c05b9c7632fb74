import { describe, expect, it } from "vitest";
import { CLUSTER_SCHEMA } from "../../../src/lab/kube-api/cluster-schema.js";
import { FieldSet, fieldSetOf, pathString } from "../../../src/lab/kube-api/field-set.js";
import { managerName, trackingSchema, type ManagedFieldsEntry } from "../../../src/lab/kube-api/managed-fields.js";
import { KubeStore, type KubeApiError, type KubeObject } from "../../../src/lab/kube-api/index.js";

const REF = { namespace: "db", name: "pg-eu" };

function newStore(): KubeStore {
  const s = new KubeStore({ watchHistory: 100, admission: undefined, logger: undefined });
  s.create("namespaces", { metadata: { name: "db" } });
  return s;
}

function create(s: KubeStore, manager: string): void {
  s.create(
    "clusters",
    {
      metadata: { ...REF, labels: { app: "pg" } },
      spec: { instances: 1, replica: { self: "pg-eu", primary: "pg-eu", source: "pg-us" }, externalClusters: [{ name: "pg-eu", connectionParameters: { host: "a" } }] },
    },
    { fieldManager: manager },
  );
}

function spec(o: KubeObject): Record<string, unknown> {
  return (o.spec ?? {}) as Record<string, unknown>;
}

function entries(s: KubeStore): ManagedFieldsEntry[] {
  return s.read("clusters", REF).metadata.managedFields as ManagedFieldsEntry[];
}

/** The one question the coordinator asks: who last set spec.replica.primary. */
function ownersOfPrimary(s: KubeStore): string[] {
  return entries(s)
    .filter((e) => FieldSet.fromFieldsV1(e.fieldsV1).has(["f:spec", "f:replica", "f:primary"]))
    .map((e) => `${e.manager}/${e.operation}${e.subresource ? `/${e.subresource}` : ""}`);
}

describe("field sets (structured-merge-diff fieldpath)", () => {
  it("encodes members with f:, k:, v: and '.' as FieldsV1", () => {
    const schema = trackingSchema(CLUSTER_SCHEMA);
    const set = fieldSetOf(
      {
        metadata: { labels: { app: "pg" }, finalizers: ["a"], ownerReferences: [{ uid: "u1", name: "o" }] },
        spec: { replica: { primary: "pg-eu" }, externalClusters: [{ name: "x" }], postgresql: { parameters: { archive_timeout: "5s" }, custom: { deep: 1 } }, storage: {} },
      },
      schema,
    );
    expect(set.toFieldsV1()).toEqual({
      "f:metadata": { "f:finalizers": { 'v:"a"': {} }, "f:labels": { "f:app": {} }, "f:ownerReferences": { 'k:{"uid":"u1"}': {} } },
      "f:spec": {
        // An atomic list (CNPG declares no list type for externalClusters) is one member.
        "f:externalClusters": {},
        // Undeclared members of a kept subtree are members with members below them.
        "f:postgresql": { "f:custom": { ".": {}, "f:deep": {} }, "f:parameters": { "f:archive_timeout": {} } },
        "f:replica": { "f:primary": {} },
        "f:storage": {},
      },
    });
    expect(FieldSet.fromFieldsV1(set.toFieldsV1()).paths().length).toBe(set.size);
    expect(pathString(["f:spec", "f:replica", "f:primary"])).toBe(".spec.replica.primary");
    expect(pathString(["f:metadata", "f:ownerReferences", 'k:{"uid":"u1"}'])).toBe('.metadata.ownerReferences[uid="u1"]');
  });

  it("derives the manager from fieldManager, else from the User-Agent before its first '/'", () => {
    expect(managerName("pgfed-coordinator", "kubectl/v1.32.0 (linux/amd64)")).toBe("pgfed-coordinator");
    expect(managerName(null, "kubectl/v1.32.0 (linux/amd64) kubernetes/abc")).toBe("kubectl");
    expect(managerName(null, "node-fetch")).toBe("node-fetch");
    expect(managerName(null, undefined)).toBe("");
    expect(managerName(null, `${"a".repeat(200)}/x`)).toHaveLength(128);
  });
});

describe("managedFields of Update writes", () => {
  it("records the creator as owner of everything it set, under operation Update", () => {
    const s = newStore();
    create(s, "pgfed");
    const [e, ...rest] = entries(s);
    expect(rest).toEqual([]);
    expect(e).toMatchObject({ manager: "pgfed", operation: "Update", apiVersion: "postgresql.cnpg.io/v1", fieldsType: "FieldsV1" });
    expect(e?.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(e?.fieldsV1).toEqual({
      "f:metadata": { "f:labels": { "f:app": {} } },
      "f:spec": { "f:externalClusters": {}, "f:instances": {}, "f:replica": { "f:primary": {}, "f:self": {}, "f:source": {} } },
    });
    expect(Object.keys(e ?? {})).toEqual(["manager", "operation", "apiVersion", "time", "fieldsType", "fieldsV1"]);
  });

  it("moves a changed field to the manager that changed it, and leaves it where it was when the value is the same", () => {
    const s = newStore();
    create(s, "pgfed");
    s.patch("clusters", REF, { spec: { replica: { primary: "pg-us" } } }, "merge", { fieldManager: "kubectl-patch" });
    expect(ownersOfPrimary(s)).toEqual(["kubectl-patch/Update"]);
    s.patch("clusters", REF, { spec: { replica: { primary: "pg-us" } } }, "merge", { fieldManager: "someone-else" });
    expect(ownersOfPrimary(s)).toEqual(["kubectl-patch/Update"]);
    expect(entries(s).map((e) => e.manager)).toEqual(["kubectl-patch", "pgfed"].sort());
    s.patch("clusters", REF, [{ op: "replace", path: "/spec/replica/primary", value: "pg-eu" }], "json", { fieldManager: "pgfed" });
    expect(ownersOfPrimary(s)).toEqual(["pgfed/Update"]);
    // kubectl-patch owned nothing else: its entry is gone.
    expect(entries(s).map((e) => e.manager)).toEqual(["pgfed"]);
  });

  it("drops removed fields from every manager, and merges entries of the same manager", () => {
    const s = newStore();
    create(s, "pgfed");
    s.patch("clusters", REF, { spec: { replica: { minApplyDelay: "1h" } } }, "merge", { fieldManager: "ops" });
    s.patch("clusters", REF, { spec: { instances: 2 } }, "merge", { fieldManager: "ops" });
    const ops = entries(s).find((e) => e.manager === "ops");
    expect(ops?.fieldsV1).toEqual({ "f:spec": { "f:instances": {}, "f:replica": { "f:minApplyDelay": {} } } });
    s.patch("clusters", REF, { spec: { replica: { minApplyDelay: null } } }, "merge", { fieldManager: "pgfed" });
    expect(entries(s).find((e) => e.manager === "ops")?.fieldsV1).toEqual({ "f:spec": { "f:instances": {} } });
  });

  it("records status writes with subresource status, apart from the spec's managers", () => {
    const s = newStore();
    create(s, "pgfed");
    s.updateStatus("clusters", REF, { phase: "Cluster in healthy state", switchReplicaClusterStatus: { inProgress: false } });
    const status = entries(s).find((e) => e.subresource === "status");
    expect(status).toMatchObject({ manager: "pgfed-lab", operation: "Update", fieldsV1: { "f:status": { "f:phase": {}, "f:switchReplicaClusterStatus": { "f:inProgress": {} } } } });
    expect(ownersOfPrimary(s)).toEqual(["pgfed/Update"]);
  });

  it("leaves managedFields and resourceVersion alone on a write that changes nothing", () => {
    const s = newStore();
    create(s, "pgfed");
    const before = s.read("clusters", REF);
    s.patch("clusters", REF, { spec: { instances: 1 } }, "merge", { fieldManager: "other" });
    expect(s.read("clusters", REF)).toEqual(before);
  });
});

describe("server-side apply", () => {
  const config = (replica: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name: "pg-eu" },
    spec: { replica, ...extra },
  });

  it("creates, then owns exactly what it applied, and removes what it stops applying", () => {
    const s = newStore();
    s.apply("clusters", REF, config({ primary: "pg-eu", source: "pg-us", minApplyDelay: "1h" }, { instances: 1, externalClusters: [{ name: "pg-eu", plugin: { name: "p" } }] }), { fieldManager: "pgfed" });
    expect(entries(s)).toEqual([expect.objectContaining({ manager: "pgfed", operation: "Apply", fieldsV1: { "f:spec": { "f:externalClusters": {}, "f:instances": {}, "f:replica": { "f:minApplyDelay": {}, "f:primary": {}, "f:source": {} } } } })]);
    s.apply("clusters", REF, config({ primary: "pg-eu", source: "pg-us" }, { instances: 1, externalClusters: [{ name: "pg-eu", plugin: { name: "p" } }] }), { fieldManager: "pgfed" });
    expect((s.read("clusters", REF).spec as { replica: Record<string, unknown> }).replica).toEqual({ primary: "pg-eu", source: "pg-us" });
  });

  it("refuses to take a field another manager set, listing manager and field, unless forced", () => {
    const s = newStore();
    create(s, "pgfed");
    s.patch("clusters", REF, { spec: { replica: { primary: "pg-us" } } }, "merge", { fieldManager: "intruder" });
    let err: KubeApiError | undefined;
    try {
      s.apply("clusters", REF, config({ primary: "pg-ap", source: "pg-eu" }), { fieldManager: "pgfed-apply" });
    } catch (e) {
      err = e as KubeApiError;
    }
    expect(err?.status.code).toBe(409);
    expect(err?.status.reason).toBe("Conflict");
    expect(err?.status.message).toMatch(/^Apply failed with 2 conflicts: conflicts with "intruder" using postgresql\.cnpg\.io\/v1 at \S+\n- \.spec\.replica\.primary\nconflicts with "pgfed" using postgresql\.cnpg\.io\/v1 at \S+\n- \.spec\.replica\.source$/);
    expect(err?.status.details?.causes).toEqual([
      { reason: "FieldManagerConflict", message: expect.stringMatching(/^conflict with "pgfed" using postgresql\.cnpg\.io\/v1 at /) as string, field: ".spec.replica.source" },
      { reason: "FieldManagerConflict", message: expect.stringMatching(/^conflict with "intruder" using /) as string, field: ".spec.replica.primary" },
    ].sort((a, b) => (a.field < b.field ? -1 : 1)));
    expect((s.read("clusters", REF).spec as { replica: { primary: string } }).replica.primary).toBe("pg-us");

    s.apply("clusters", REF, config({ primary: "pg-ap", source: "pg-eu" }), { fieldManager: "pgfed-apply", force: true });
    expect(ownersOfPrimary(s)).toEqual(["pgfed-apply/Apply"]);
    expect(entries(s).map((e) => e.manager)).toEqual(["pgfed-apply", "pgfed"]);
  });

  it("shares a field applied with the value it already has (no conflict)", () => {
    const s = newStore();
    create(s, "pgfed");
    s.apply("clusters", REF, config({ primary: "pg-eu", source: "pg-us" }), { fieldManager: "applier" });
    expect(ownersOfPrimary(s).sort()).toEqual(["applier/Apply", "pgfed/Update"]);
  });

  it("applies to /status as its own manager, changing only status", () => {
    const s = newStore();
    create(s, "pgfed");
    s.apply("clusters", REF, { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata: { name: "pg-eu" }, spec: { instances: 9 }, status: { phase: "Cluster in healthy state" } }, { fieldManager: "cnpg", subresource: "status" });
    const c = s.read("clusters", REF);
    expect(c.status).toEqual({ phase: "Cluster in healthy state" });
    expect(spec(c).instances).toBe(1);
    expect(entries(s).find((e) => e.manager === "cnpg")).toMatchObject({ operation: "Apply", subresource: "status", fieldsV1: { "f:status": { "f:phase": {} } } });
  });

  it("refuses an undeclared field in an applied configuration", () => {
    const s = newStore();
    expect(() => s.apply("clusters", REF, config({ primary: "pg-eu", source: "pg-us", colour: "red" }), { fieldManager: "a" })).toThrow(
      "failed to create typed patch object (db/pg-eu; postgresql.cnpg.io/v1, Kind=Cluster): .spec.replica.colour: field not declared in schema",
    );
  });
});
