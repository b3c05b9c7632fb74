/**
 * The resources the stand-in serves and how the real API server treats each of them: scope,
 * subresources, whether writes need a resourceVersion, which field selectors it accepts.
 */
import { CLUSTER_PRINTER_COLUMNS, CLUSTER_SCHEMA, type PrinterColumn } from "./cluster-schema.js";
import type { GroupResource } from "./status.js";
import type { StructuralSchema } from "./structural-schema.js";
import type { ResourceName } from "./types.js";

export type Subresource = "status" | "scale";

export interface ResourceDef {
  name: ResourceName;
  group: string;
  version: string;
  kind: string;
  listKind: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  subresources: Subresource[];
  /** CRDs set `metadata.generation` and bump it when anything outside metadata/status changes. */
  tracksGeneration: boolean;
  /** PUT without `metadata.resourceVersion` is allowed (core types); CRDs require it. */
  unconditionalUpdate: boolean;
  /** Strategic merge patch is accepted (core types only; handled as a JSON merge patch here). */
  strategicMerge: boolean;
  /** Field selectors beyond metadata.name / metadata.namespace, as dotted paths into the object. */
  extraFieldSelectors: string[];
  /** The CRD's structural schema (custom resources only): pruning, validation, field ownership, OpenAPI. */
  schema?: StructuralSchema;
  /** The CRD's additionalPrinterColumns, for Table responses (core types print name and age). */
  printerColumns?: PrinterColumn[];
}

const VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

export const CNPG_GROUP = "postgresql.cnpg.io";
export const COORDINATION_GROUP = "coordination.k8s.io";

export const RESOURCES: Readonly<Record<ResourceName, ResourceDef>> = {
  clusters: {
    name: "clusters",
    group: CNPG_GROUP,
    version: "v1",
    kind: "Cluster",
    listKind: "ClusterList",
    singular: "cluster",
    namespaced: true,
    shortNames: [],
    categories: ["all"],
    subresources: ["status", "scale"],
    tracksGeneration: true,
    unconditionalUpdate: false,
    strategicMerge: false,
    extraFieldSelectors: [],
    schema: CLUSTER_SCHEMA,
    printerColumns: CLUSTER_PRINTER_COLUMNS,
  },
  namespaces: {
    name: "namespaces",
    group: "",
    version: "v1",
    kind: "Namespace",
    listKind: "NamespaceList",
    singular: "namespace",
    namespaced: false,
    shortNames: ["ns"],
    categories: [],
    subresources: ["status"],
    tracksGeneration: false,
    unconditionalUpdate: true,
    strategicMerge: true,
    extraFieldSelectors: ["status.phase"],
  },
  secrets: {
    name: "secrets",
    group: "",
    version: "v1",
    kind: "Secret",
    listKind: "SecretList",
    singular: "secret",
    namespaced: true,
    shortNames: [],
    categories: [],
    subresources: [],
    tracksGeneration: false,
    unconditionalUpdate: true,
    strategicMerge: true,
    extraFieldSelectors: ["type"],
  },
  events: {
    name: "events",
    group: "",
    version: "v1",
    kind: "Event",
    listKind: "EventList",
    singular: "event",
    namespaced: true,
    shortNames: ["ev"],
    categories: [],
    subresources: [],
    tracksGeneration: false,
    unconditionalUpdate: true,
    strategicMerge: true,
    extraFieldSelectors: [
      "involvedObject.kind",
      "involvedObject.namespace",
      "involvedObject.name",
      "involvedObject.uid",
      "involvedObject.apiVersion",
      "involvedObject.resourceVersion",
      "involvedObject.fieldPath",
      "reason",
      "reportingComponent",
      "source",
      "type",
    ],
  },
  leases: {
    name: "leases",
    group: COORDINATION_GROUP,
    version: "v1",
    kind: "Lease",
    listKind: "LeaseList",
    singular: "lease",
    namespaced: true,
    shortNames: [],
    categories: [],
    subresources: [],
    tracksGeneration: false,
    unconditionalUpdate: true,
    strategicMerge: true,
    extraFieldSelectors: [],
  },
};

export function apiVersionOf(def: ResourceDef): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

export function groupResource(def: ResourceDef): GroupResource {
  return { group: def.group, resource: def.name };
}

/** The resources served under one group/version (`""` is the core group). */
export function resourcesOf(group: string, version: string): ResourceDef[] {
  return Object.values(RESOURCES).filter((d) => d.group === group && d.version === version);
}

export function findResource(group: string, version: string, plural: string): ResourceDef | undefined {
  return resourcesOf(group, version).find((d) => d.name === plural);
}

/** Every group other than the core one, with its versions. */
export function apiGroups(): Array<{ name: string; versions: string[] }> {
  const groups = new Map<string, Set<string>>();
  for (const d of Object.values(RESOURCES)) {
    if (!d.group) continue;
    const set = groups.get(d.group) ?? new Set<string>();
    set.add(d.version);
    groups.set(d.group, set);
  }
  return [...groups.entries()].map(([name, versions]) => ({ name, versions: [...versions] }));
}

export { VERBS as RESOURCE_VERBS };
