import { describe, expect, it } from "vitest";
import { CLUSTER_PRINTER_COLUMNS, CLUSTER_SCHEMA } from "../../../src/lab/kube-api/cluster-schema.js";
import { decodeNamespace } from "../../../src/lab/kube-api/protobuf.js";
import { applyDefaults, prune, validate, type StructuralSchema } from "../../../src/lab/kube-api/structural-schema.js";
import { humanDuration, jsonPathValue } from "../../../src/lab/kube-api/table.js";
import { HAVE_UPSTREAM, sampleClusters, upstreamClusterSchema, UPSTREAM_MISSING } from "./cnpg-upstream.js";

type Node = Record<string, unknown>;
const props = (n: Node | undefined): Record<string, Node> => (n?.properties ?? {}) as Record<string, Node>;

/** Every schema node the lab declares, with the upstream node at the same place. */
function pairs(ours: StructuralSchema, theirs: Node | undefined, path: string, out: Array<{ path: string; ours: StructuralSchema; theirs: Node | undefined }>): void {
  out.push({ path, ours, theirs });
  for (const [k, v] of Object.entries(ours.properties ?? {})) pairs(v, props(theirs)[k], `${path}.${k}`, out);
  if (ours.items) pairs(ours.items, theirs?.items as Node | undefined, `${path}[]`, out);
  if (ours.additionalProperties) pairs(ours.additionalProperties, theirs?.additionalProperties as Node | undefined, `${path}{}`, out);
}

/** A minimal protobuf Namespace body as client-go writes it (k8s\0 + runtime.Unknown). */
function namespaceProtobuf(name: string, labels: Record<string, string>): Buffer {
  const varint = (n: number) => {
    const out: number[] = [];
    for (let v = n; ; v >>>= 7) {
      if (v <= 0x7f) {
        out.push(v);
        break;
      }
      out.push((v & 0x7f) | 0x80);
    }
    return Buffer.from(out);
  };
  const ld = (no: number, payload: Buffer) => Buffer.concat([varint((no << 3) | 2), varint(payload.length), payload]);
  const str = (no: number, s: string) => ld(no, Buffer.from(s));
  const meta = Buffer.concat([str(1, name), ...Object.entries(labels).map(([k, v]) => ld(11, Buffer.concat([str(1, k), str(2, v)])))]);
  const raw = Buffer.concat([ld(1, meta), ld(2, Buffer.alloc(0)), ld(3, Buffer.alloc(0))]);
  return Buffer.concat([Buffer.from("k8s\0", "binary"), ld(1, Buffer.concat([str(1, "v1"), str(2, "Namespace")])), ld(2, raw), str(3, ""), str(4, "")]);
}

describe("the lab's Cluster schema", () => {
  it("prunes unknown fields with their paths, keeps kept subtrees, and validates types and required fields", () => {
    const obj = { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata: { name: "x" }, spec: { foo: 1, replica: { source: "a", bar: true }, externalClusters: [{ name: "e", baz: 2 }], storage: { size: "1Gi", anything: { deep: 1 } } } };
    expect(prune(obj, CLUSTER_SCHEMA)).toEqual(["spec.foo", "spec.replica.bar", "spec.externalClusters[0].baz"]);
    expect(obj.spec).toEqual({ replica: { source: "a" }, externalClusters: [{ name: "e" }], storage: { size: "1Gi", anything: { deep: 1 } } });
    applyDefaults(obj, CLUSTER_SCHEMA);
    expect((obj.spec as Record<string, unknown>).instances).toBe(1);
    expect(validate({ metadata: {}, spec: { instances: 0, replica: { source: "" }, externalClusters: [{}] } }, CLUSTER_SCHEMA)).toEqual([
      { field: "spec.instances", reason: "FieldValueInvalid", message: "Invalid value: 0: spec.instances in body should be greater than or equal to 1" },
      { field: "spec.replica.source", reason: "FieldValueInvalid", message: 'Invalid value: "": spec.replica.source in body should be at least 1 chars long' },
      { field: "spec.externalClusters[0].name", reason: "FieldValueRequired", message: "Required value" },
    ]);
    expect(validate({ metadata: {}, spec: { instances: "3" } }, CLUSTER_SCHEMA)).toEqual([
      { field: "spec.instances", reason: "FieldValueTypeInvalid", message: 'Invalid value: "string": spec.instances in body must be of type integer: "string"' },
    ]);
  });

  it.skipIf(!HAVE_UPSTREAM)("agrees with CNPG's CRD: same types, required fields, list and map types, every top-level field declared", () => {
    if (!HAVE_UPSTREAM) console.warn(UPSTREAM_MISSING);
    const { schema, columns } = upstreamClusterSchema() as { schema: Node; columns: Array<Record<string, unknown>> };
    const all: Array<{ path: string; ours: StructuralSchema; theirs: Node | undefined }> = [];
    pairs(CLUSTER_SCHEMA, schema, "", all);
    expect(all.length).toBeGreaterThan(150);
    for (const { path, ours, theirs } of all) {
      expect({ path, declaredUpstream: theirs !== undefined }).toEqual({ path, declaredUpstream: true });
      expect({ path, type: ours.type }).toEqual({ path, type: theirs?.type });
      for (const k of ["required", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "enum", "minimum", "maximum", "minLength", "default"] as const) {
        if (ours[k] !== undefined) expect({ path, [k]: ours[k] }).toEqual({ path, [k]: theirs?.[k] });
      }
    }
    for (const part of ["spec", "status"]) {
      expect(Object.keys(props(CLUSTER_SCHEMA.properties?.[part] as Node)).sort()).toEqual(Object.keys(props(props(schema)[part])).sort());
    }
    expect(CLUSTER_PRINTER_COLUMNS.map((c) => [c.name, c.type, c.jsonPath, c.priority ?? 0])).toEqual(columns.map((c) => [c.name, c.type, c.jsonPath, c.priority ?? 0]));
  });

  it.skipIf(!HAVE_UPSTREAM)("prunes nothing of CNPG's samples and finds them valid", () => {
    for (const { file, cluster } of sampleClusters()) {
      const copy = structuredClone(cluster);
      expect({ file, pruned: prune(copy, CLUSTER_SCHEMA) }).toEqual({ file, pruned: [] });
      expect({ file, problems: validate(copy, CLUSTER_SCHEMA) }).toEqual({ file, problems: [] });
    }
  });
});

describe("Table cells and protobuf", () => {
  it("evaluates printer column paths and prints ages as kubectl does", () => {
    const obj = { status: { conditions: [{ type: "Ready", reason: "R" }, { type: "SyncReplicationTopologySatisfied", reason: "S" }], instances: 3 } };
    expect(jsonPathValue(obj, ".status.conditions[?(@.type=='SyncReplicationTopologySatisfied')].reason")).toBe("S");
    expect(jsonPathValue(obj, ".status.instances")).toBe(3);
    expect(jsonPathValue(obj, ".status.phase")).toBeUndefined();
    expect([5_000, 150_000, 600_000, 4 * 3_600_000 + 60_000, 50 * 3_600_000].map(humanDuration)).toEqual(["5s", "2m30s", "10m", "4h1m", "2d2h"]);
  });

  it("decodes a protobuf Namespace and refuses other kinds", () => {
    expect(decodeNamespace(namespaceProtobuf("x", { team: "db" }))).toEqual({ apiVersion: "v1", kind: "Namespace", metadata: { name: "x", labels: { team: "db" } }, spec: {} });
    expect(() => decodeNamespace(Buffer.from("{}"))).toThrow("magic");
  });
});
