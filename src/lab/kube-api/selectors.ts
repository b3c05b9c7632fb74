/**
 * Label selectors (`a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`)
 * and field selectors (`metadata.name=x`, `metadata.namespace!=y`, …) with the real API server's
 * meaning: `!=` and `notin` also match objects that lack the label.
 */
import { badRequest } from "./status.js";
import { isRecord, type KubeObject } from "./types.js";

export type LabelRequirement =
  | { key: string; op: "exists" | "notexists" }
  | { key: string; op: "eq" | "neq"; value: string }
  | { key: string; op: "in" | "notin"; values: string[] }
  | { key: string; op: "gt" | "lt"; value: number };

export type LabelSelector = LabelRequirement[];

export interface FieldRequirement {
  field: string;
  op: "eq" | "neq";
  value: string;
}

export type FieldSelector = FieldRequirement[];

const NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?";
const KEY = `(?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?${NAME}`;
const KEY_RE = new RegExp(`^${KEY}$`);
const VALUE_RE = new RegExp(`^(${NAME})?$`);

/** Splits on commas that are not inside parentheses. */
function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function checkKey(key: string, raw: string): string {
  if (!KEY_RE.test(key) || key.length > 317) throw badRequest(`unable to parse requirement: invalid label key "${key}" in "${raw}"`);
  return key;
}

function checkValue(value: string, raw: string): string {
  if (!VALUE_RE.test(value) || value.length > 63) throw badRequest(`unable to parse requirement: invalid label value "${value}" in "${raw}"`);
  return value;
}

export function parseLabelSelector(input: string): LabelSelector {
  const reqs: LabelSelector = [];
  if (input.trim() === "") return reqs;
  for (const rawPart of splitTopLevel(input)) {
    const part = rawPart.trim();
    if (part === "") throw badRequest(`unable to parse requirement: empty requirement in label selector "${input}"`);
    let m = /^!\s*(\S+)$/.exec(part);
    if (m) {
      reqs.push({ key: checkKey(m[1] ?? "", part), op: "notexists" });
      continue;
    }
    m = /^(\S+)\s+(in|notin)\s*\((.*)\)$/.exec(part);
    if (m) {
      const values = (m[3] ?? "").split(",").map((v) => checkValue(v.trim(), part));
      reqs.push({ key: checkKey(m[1] ?? "", part), op: m[2] === "in" ? "in" : "notin", values });
      continue;
    }
    m = /^([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(\S*)$/.exec(part);
    if (m) {
      const key = checkKey(m[1] ?? "", part);
      const op = m[2];
      const value = m[3] ?? "";
      if (op === "<" || op === ">") {
        const n = Number(value);
        if (value === "" || !Number.isInteger(n)) throw badRequest(`unable to parse requirement: for 'gt', 'lt' operators, the value must be an integer, got "${value}"`);
        reqs.push({ key, op: op === ">" ? "gt" : "lt", value: n });
      } else reqs.push({ key, op: op === "!=" ? "neq" : "eq", value: checkValue(value, part) });
      continue;
    }
    if (/^\S+$/.test(part)) {
      reqs.push({ key: checkKey(part, part), op: "exists" });
      continue;
    }
    throw badRequest(`unable to parse requirement: "${part}" is not a valid label selector requirement`);
  }
  return reqs;
}

export function matchesLabels(sel: LabelSelector, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return sel.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case "exists":
        return has;
      case "notexists":
        return !has;
      case "eq":
        return has && v === r.value;
      case "neq":
        return !has || v !== r.value;
      case "in":
        return has && r.values.includes(v ?? "");
      case "notin":
        return !has || !r.values.includes(v ?? "");
      case "gt":
      case "lt": {
        if (!has) return false;
        const n = Number(v);
        if (!Number.isFinite(n)) return false;
        return r.op === "gt" ? n > r.value : n < r.value;
      }
    }
  });
}

/** Parses a field selector; only `metadata.name`, `metadata.namespace` and `allowed` may be used. */
export function parseFieldSelector(input: string, allowed: readonly string[]): FieldSelector {
  const reqs: FieldSelector = [];
  if (input.trim() === "") return reqs;
  for (const rawPart of input.split(",")) {
    const part = rawPart.trim();
    const m = /^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw badRequest(`invalid field selector: "${part}" is not of the form field=value or field!=value`);
    const field = m[1] ?? "";
    if (field !== "metadata.name" && field !== "metadata.namespace" && !allowed.includes(field)) {
      throw badRequest(`field label not supported: ${field}`);
    }
    reqs.push({ field, op: m[2] === "!=" ? "neq" : "eq", value: (m[3] ?? "").trim() });
  }
  return reqs;
}

function fieldValue(obj: KubeObject, path: string): string {
  let cur: unknown = obj;
  for (const seg of path.split(".")) {
    if (!isRecord(cur)) return "";
    cur = cur[seg];
  }
  if (typeof cur === "string") return cur;
  if (typeof cur === "number" || typeof cur === "boolean") return String(cur);
  if (isRecord(cur) && path === "source") return typeof cur.component === "string" ? cur.component : "";
  return "";
}

export function matchesFields(sel: FieldSelector, obj: KubeObject): boolean {
  return sel.every((r) => {
    const v = fieldValue(obj, r.field);
    return r.op === "eq" ? v === r.value : v !== r.value;
  });
}

/** The complete filter of one list or watch request. */
export interface ObjectFilter {
  namespace?: string;
  labels: LabelSelector;
  fields: FieldSelector;
}

export function matchesFilter(f: ObjectFilter, obj: KubeObject): boolean {
  if (f.namespace !== undefined && obj.metadata.namespace !== f.namespace) return false;
  return matchesLabels(f.labels, obj.metadata.labels) && matchesFields(f.fields, obj);
}
