/**
 * Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) and a
 * small OpenAPI v3 description, in the legacy (unaggregated) JSON forms every client falls back
 * to. kubectl reads the OpenAPI v3 documents to learn that PATCH accepts `fieldValidation` (so it
 * validates server-side instead of downloading the protobuf OpenAPI v2 schema), that custom
 * resources take JSON merge patches rather than strategic merge patches, and (`kubectl explain`)
 * the schema of a kind: the CRD's schema for Cluster, open schemas for the core types.
 */
import { apiGroups, apiVersionOf, RESOURCE_VERBS, RESOURCES, resourcesOf, type ResourceDef } from "./resources.js";
import type { StructuralSchema } from "./structural-schema.js";

export const SERVER_VERSION = { major: "1", minor: "31", gitVersion: "v1.31.0-pgfed-lab" };

export function versionInfo(): Record<string, string> {
  return {
    ...SERVER_VERSION,
    gitCommit: "0000000000000000000000000000000000000000",
    gitTreeState: "clean",
    buildDate: "2026-01-01T00:00:00Z",
    goVersion: "go1.22.0",
    compiler: "gc",
    platform: "linux/amd64",
  };
}

export function apiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: "APIVersions",
    apiVersion: "v1",
    versions: ["v1"],
    serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
  };
}

function groupBody(name: string, versions: string[]): Record<string, unknown> {
  const gv = versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { name, versions: gv, preferredVersion: gv[0] };
}

export function apiGroupList(): Record<string, unknown> {
  return { kind: "APIGroupList", apiVersion: "v1", groups: apiGroups().map((g) => groupBody(g.name, g.versions)) };
}

export function apiGroup(name: string): Record<string, unknown> | undefined {
  const g = apiGroups().find((x) => x.name === name);
  return g ? { kind: "APIGroup", apiVersion: "v1", ...groupBody(g.name, g.versions) } : undefined;
}

function resourceEntries(def: ResourceDef): Array<Record<string, unknown>> {
  const main: Record<string, unknown> = {
    name: def.name,
    singularName: def.singular,
    namespaced: def.namespaced,
    kind: def.kind,
    verbs: RESOURCE_VERBS,
  };
  if (def.shortNames.length > 0) main.shortNames = def.shortNames;
  if (def.categories.length > 0) main.categories = def.categories;
  const out = [main];
  for (const sub of def.subresources) {
    const entry: Record<string, unknown> = { name: `${def.name}/${sub}`, singularName: "", namespaced: def.namespaced, kind: def.kind, verbs: ["get", "patch", "update"] };
    if (sub === "scale") Object.assign(entry, { group: "autoscaling", version: "v1", kind: "Scale" });
    out.push(entry);
  }
  return out;
}

export function apiResourceList(group: string, version: string): Record<string, unknown> | undefined {
  const defs = resourcesOf(group, version);
  if (defs.length === 0) return undefined;
  return {
    kind: "APIResourceList",
    apiVersion: "v1",
    groupVersion: group ? `${group}/${version}` : version,
    resources: defs.flatMap(resourceEntries),
  };
}

const OPENAPI_HASH = "PGFEDLAB1";

/** `/openapi/v3`: where each group/version's document is. */
export function openApiV3Root(): Record<string, unknown> {
  const paths: Record<string, { serverRelativeURL: string }> = {};
  for (const def of Object.values(RESOURCES)) {
    const p = def.group ? `apis/${def.group}/${def.version}` : `api/${def.version}`;
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${OPENAPI_HASH}` };
  }
  return { paths };
}

function schemaName(def: ResourceDef): string {
  const g = def.group ? def.group.split(".").reverse().join(".") : "io.k8s.api.core";
  return `${g}.${def.version}.${def.kind}`;
}

/** `/openapi/v3/apis/<group>/<version>`: paths with their PATCH media types, kinds with open schemas. */
export function openApiV3Document(group: string, version: string): Record<string, unknown> | undefined {
  const defs = resourcesOf(group, version);
  if (defs.length === 0) return undefined;
  const paths: Record<string, unknown> = {};
  const schemas: Record<string, unknown> = {};
  for (const def of defs) {
    const gvk = { group: def.group, version: def.version, kind: def.kind };
    const ref = { $ref: `#/components/schemas/${schemaName(def)}` };
    const prefix = def.group ? `/apis/${def.group}/${def.version}` : `/api/${def.version}`;
    const item = def.namespaced ? `${prefix}/namespaces/{namespace}/${def.name}/{name}` : `${prefix}/${def.name}/{name}`;
    const content = (types: string[]) => Object.fromEntries(types.map((t) => [t, { schema: ref }]));
    // Custom resources take no strategic merge patch: kubectl then sends a JSON merge patch.
    const patchTypes = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml", ...(def.strategicMerge ? ["application/strategic-merge-patch+json"] : [])];
    const op = (action: string, extra: Record<string, unknown> = {}) => ({
      operationId: `${action}${def.kind}`,
      parameters: [
        { name: "dryRun", in: "query", schema: { type: "string", uniqueItems: true } },
        { name: "fieldManager", in: "query", schema: { type: "string", uniqueItems: true } },
        { name: "fieldValidation", in: "query", schema: { type: "string", uniqueItems: true } },
        ...(action === "patch" ? [{ name: "force", in: "query", schema: { type: "boolean", uniqueItems: true } }] : []),
      ],
      responses: { "200": { description: "OK", content: content(["application/json"]) } },
      "x-kubernetes-action": action,
      "x-kubernetes-group-version-kind": gvk,
      ...extra,
    });
    paths[item] = {
      get: { operationId: `read${def.kind}`, responses: { "200": { description: "OK", content: content(["application/json"]) } }, "x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk },
      put: op("put", { requestBody: { content: content(["application/json"]), required: true } }),
      patch: op("patch", { requestBody: { content: content(patchTypes), required: true } }),
    };
    schemas[schemaName(def)] = def.schema
      ? { ...withMetadataRef(def.schema), "x-kubernetes-group-version-kind": [gvk] }
      : {
          type: "object",
          description: `${def.kind} (${apiVersionOf(def)}); the lab's API server keeps any fields`,
          properties: { apiVersion: { type: "string" }, kind: { type: "string" }, metadata: { allOf: [{ $ref: OBJECT_META_REF }], default: {} } },
          "x-kubernetes-preserve-unknown-fields": true,
          "x-kubernetes-group-version-kind": [gvk],
        };
  }
  schemas[OBJECT_META] = OBJECT_META_SCHEMA;
  return { openapi: "3.0.0", info: { title: "Kubernetes (pgfed lab)", version: SERVER_VERSION.gitVersion }, paths, components: { schemas } };
}

const OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const OBJECT_META_REF = `#/components/schemas/${OBJECT_META}`;

/** The part of ObjectMeta's published schema that `kubectl explain <kind>.metadata` shows. */
const OBJECT_META_SCHEMA = {
  type: "object",
  description: "Standard object metadata: name, namespace, labels, annotations and the fields the server maintains.",
  properties: {
    name: { type: "string", description: "Unique within a namespace; cannot be updated." },
    generateName: { type: "string", description: "A prefix the server completes to a unique name when name is empty." },
    namespace: { type: "string", description: "The namespace the object lives in." },
    uid: { type: "string", description: "Unique in time and space, set by the server." },
    resourceVersion: { type: "string", description: "The version of the object, for optimistic concurrency and watches." },
    generation: { type: "integer", format: "int64", description: "Bumped by the server when the desired state changes." },
    creationTimestamp: { type: "string", format: "date-time", description: "When the object was created." },
    deletionTimestamp: { type: "string", format: "date-time", description: "When the object is to be deleted (set by a delete with finalizers pending)." },
    labels: { type: "object", additionalProperties: { type: "string", default: "" }, description: "Key/value pairs for selecting objects." },
    annotations: { type: "object", additionalProperties: { type: "string", default: "" }, description: "Key/value pairs for tools and operators." },
    finalizers: { type: "array", items: { type: "string", default: "" }, "x-kubernetes-list-type": "set", description: "What must happen before the object is deleted." },
    managedFields: { type: "array", items: { type: "object", "x-kubernetes-preserve-unknown-fields": true }, description: "Which manager owns which fields (server-side apply)." },
  },
};

/** A CRD schema as the API server publishes it: metadata refers to ObjectMeta. */
function withMetadataRef(schema: StructuralSchema): Record<string, unknown> {
  return { ...schema, properties: { ...(schema.properties ?? {}), metadata: { allOf: [{ $ref: OBJECT_META_REF }], default: {}, description: "Standard object's metadata." } } };
}
