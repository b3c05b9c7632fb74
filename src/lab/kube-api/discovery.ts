/**
 * Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`) and a
 * small OpenAPI v3 description, in the legacy (unaggregated) JSON forms every client falls back
 * to. kubectl reads the OpenAPI v3 documents to learn that PATCH accepts `fieldValidation` (so it
 * validates server-side instead of downloading the protobuf OpenAPI v2 schema) and that custom
 * resources take JSON merge patches rather than strategic merge patches.
 */
import { apiGroups, apiVersionOf, RESOURCE_VERBS, RESOURCES, resourcesOf, type ResourceDef } from "./resources.js";

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
    const patchTypes = ["application/json-patch+json", "application/merge-patch+json"];
    const op = (action: string, extra: Record<string, unknown> = {}) => ({
      operationId: `${action}${def.kind}`,
      parameters: [
        { name: "dryRun", in: "query", schema: { type: "string", uniqueItems: true } },
        { name: "fieldManager", in: "query", schema: { type: "string", uniqueItems: true } },
        { name: "fieldValidation", in: "query", schema: { type: "string", uniqueItems: true } },
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
    schemas[schemaName(def)] = {
      type: "object",
      description: `${def.kind} (${apiVersionOf(def)}); the lab's API server keeps any fields`,
      properties: { apiVersion: { type: "string" }, kind: { type: "string" }, metadata: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
      "x-kubernetes-preserve-unknown-fields": true,
      "x-kubernetes-group-version-kind": [gvk],
    };
  }
  return { openapi: "3.0.0", info: { title: "Kubernetes (pgfed lab)", version: SERVER_VERSION.gitVersion }, paths, components: { schemas } };
}
