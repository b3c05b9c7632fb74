/**
 * `meta.k8s.io/v1` Table responses, what `kubectl get` asks for (`Accept: application/json;
 * as=Table;v=v1;g=meta.k8s.io`): a Name column, then a custom resource's additionalPrinterColumns
 * evaluated on each object (apiextensions-apiserver pkg/registry/customresource/tableconvertor),
 * or Age (and Status for namespaces) for core types.
 */
import type { PrinterColumn } from "./cluster-schema.js";
import type { ResourceDef } from "./resources.js";
import { isRecord, type KubeObject } from "./types.js";

/** Whether an Accept header asks for a v1 Table first among what it accepts. */
export function wantsTable(accept: string | undefined): boolean {
  const first = (accept ?? "").split(",").map((p) => p.trim()).find((p) => p !== "");
  if (!first) return false;
  const params = new Map(first.split(";").slice(1).map((kv) => kv.trim().split("=") as [string, string]));
  return params.get("as") === "Table" && params.get("g") === "meta.k8s.io" && params.get("v") === "v1";
}

/** apimachinery util/duration HumanDuration. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8) return days % 365 === 0 ? `${Math.floor(days / 365)}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  return `${Math.floor(days / 365)}y`;
}

/** The JSONPath subset printer columns use: `.a.b`, `[n]`, `[?(@.k=='v')]`. First result only. */
export function jsonPathValue(obj: unknown, path: string): unknown {
  const tokens = path.match(/\.[A-Za-z0-9_-]+|\[\?\(@\.[A-Za-z0-9_.-]+==['"][^'"]*['"]\)\]|\[\d+\]/g) ?? [];
  let cur: unknown = obj;
  for (const t of tokens) {
    if (t.startsWith(".")) cur = isRecord(cur) ? cur[t.slice(1)] : undefined;
    else if (/^\[\d+\]$/.test(t)) cur = Array.isArray(cur) ? cur[Number(t.slice(1, -1))] : undefined;
    else {
      const m = /^\[\?\(@\.([A-Za-z0-9_.-]+)==['"]([^'"]*)['"]\)\]$/.exec(t);
      const key = m?.[1] ?? "";
      const want = m?.[2];
      cur = Array.isArray(cur) ? cur.find((item) => String(jsonPathValue(item, `.${key}`)) === want) : undefined;
    }
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** tableconvertor cellForJSONValue: a cell of the column's type, or null. */
function cell(type: PrinterColumn["type"], value: unknown, now: number): unknown {
  if (value === undefined || value === null) return null;
  switch (type) {
    case "integer":
      return typeof value === "number" ? Math.trunc(value) : null;
    case "string":
      return typeof value === "string" ? value : JSON.stringify(value);
    case "date": {
      const t = typeof value === "string" ? Date.parse(value) : NaN;
      return Number.isNaN(t) ? "<invalid>" : humanDuration(now - t);
    }
  }
}

const NAME_COLUMN = { name: "Name", type: "string", format: "name", description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names", priority: 0 };

function columnsOf(def: ResourceDef): PrinterColumn[] {
  if (def.printerColumns) return def.printerColumns;
  const age: PrinterColumn = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" };
  return def.name === "namespaces" ? [{ name: "Status", type: "string", jsonPath: ".status.phase", description: "The status of the namespace" }, age] : [age];
}

export type IncludeObject = "None" | "Metadata" | "Object";

function rowObject(def: ResourceDef, obj: KubeObject, include: IncludeObject): unknown {
  if (include === "Object") return obj;
  return { kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: obj.metadata };
}

/** A Table of `objects`; `withColumns` false leaves columnDefinitions out (watch events after the first). */
export function tableOf(def: ResourceDef, objects: KubeObject[], o: { resourceVersion: string; include: IncludeObject; withColumns?: boolean; continueToken?: string }): Record<string, unknown> {
  const now = Date.now();
  const cols = columnsOf(def);
  const metadata: Record<string, unknown> = { resourceVersion: o.resourceVersion };
  if (o.continueToken) metadata.continue = o.continueToken;
  const table: Record<string, unknown> = { kind: "Table", apiVersion: "meta.k8s.io/v1", metadata };
  if (o.withColumns !== false) {
    table.columnDefinitions = [NAME_COLUMN, ...cols.map((c) => ({ name: c.name, type: c.type, format: "", description: c.description ?? "", priority: c.priority ?? 0 }))];
  }
  table.rows = objects.map((obj) => {
    const row: Record<string, unknown> = { cells: [obj.metadata.name, ...cols.map((c) => cell(c.type, jsonPathValue(obj, c.jsonPath), now))] };
    if (o.include !== "None") row.object = rowObject(def, obj, o.include);
    return row;
  });
  return table;
}
