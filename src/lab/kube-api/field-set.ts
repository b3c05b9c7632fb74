/**
 * Field sets as server-side apply tracks them (sigs.k8s.io/structured-merge-diff fieldpath): a
 * set of paths whose elements are `f:<field>`, `k:<json keys>` (item of a map list), `v:<json>`
 * (item of a set list) or `i:<index>`, serialised as `FieldsV1` (nested objects, `.` marking a
 * path that is a member and also has members below it).
 */
import { deepEqual } from "./json-patch.js";
import { isAtomicMap, isDeclared, listTypeOf, memberSchema, type StructuralSchema } from "./structural-schema.js";
import { isRecord } from "./types.js";

export type FieldPath = readonly string[];

/** An immutable-by-convention set of field paths. */
export class FieldSet {
  private readonly members = new Map<string, FieldPath>();

  static of(paths: Iterable<FieldPath>): FieldSet {
    const s = new FieldSet();
    for (const p of paths) s.insert(p);
    return s;
  }

  insert(path: FieldPath): void {
    this.members.set(JSON.stringify(path), [...path]);
  }

  has(path: FieldPath): boolean {
    return this.members.has(JSON.stringify(path));
  }

  get size(): number {
    return this.members.size;
  }

  get empty(): boolean {
    return this.members.size === 0;
  }

  paths(): FieldPath[] {
    return [...this.members.values()];
  }

  union(o: FieldSet): FieldSet {
    return FieldSet.of([...this.paths(), ...o.paths()]);
  }

  difference(o: FieldSet): FieldSet {
    return FieldSet.of(this.paths().filter((p) => !o.has(p)));
  }

  intersection(o: FieldSet): FieldSet {
    return FieldSet.of(this.paths().filter((p) => o.has(p)));
  }

  /** Whether some member lies at or below `prefix`. */
  hasAtOrBelow(prefix: FieldPath): boolean {
    return this.paths().some((p) => p.length >= prefix.length && prefix.every((e, i) => p[i] === e));
  }

  /** Members without the ones at or below any of `prefixes`. */
  without(prefixes: FieldPath[]): FieldSet {
    return FieldSet.of(this.paths().filter((p) => !prefixes.some((pre) => p.length >= pre.length && pre.every((e, i) => p[i] === e))));
  }

  /** Only the members at or below `prefix`. */
  within(prefix: FieldPath): FieldSet {
    return FieldSet.of(this.paths().filter((p) => p.length >= prefix.length && prefix.every((e, i) => p[i] === e)));
  }

  /** The `fieldsV1` object. */
  toFieldsV1(): Record<string, unknown> {
    const root: Record<string, unknown> = {};
    const sorted = this.paths().sort((a, b) => compareElements(a, b));
    for (const p of sorted) {
      let node = root;
      for (const el of p) {
        const child = node[el];
        const next = isRecord(child) ? child : {};
        node[el] = next;
        node = next;
      }
      node["."] = {};
    }
    return collapse(root);
  }

  static fromFieldsV1(v: unknown): FieldSet {
    const s = new FieldSet();
    const walk = (node: unknown, path: string[]) => {
      if (!isRecord(node)) return;
      const keys = Object.keys(node);
      if (path.length > 0 && (keys.length === 0 || keys.includes("."))) s.insert(path);
      for (const k of keys) if (k !== ".") walk(node[k], [...path, k]);
    };
    walk(v, []);
    return s;
  }
}

function compareElements(a: FieldPath, b: FieldPath): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i] ?? "";
    const y = b[i] ?? "";
    if (x !== y) return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** `{".": {}}` alone becomes `{}`: a member with nothing below it. */
function collapse(node: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const keys = Object.keys(node).sort((a, b) => (a === "." ? -1 : b === "." ? 1 : a < b ? -1 : a > b ? 1 : 0));
  for (const k of keys) {
    const child = node[k];
    if (k === ".") {
      out["."] = {};
      continue;
    }
    const c = collapse(isRecord(child) ? child : {});
    const ck = Object.keys(c);
    out[k] = ck.length === 1 && ck[0] === "." ? {} : c;
  }
  return out;
}

/** Go's json.Marshal of a map: keys sorted, no spaces. */
function sortedJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(sortedJson).join(",")}]`;
  if (isRecord(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${sortedJson(v[k])}`).join(",")}}`;
  return JSON.stringify(v);
}

/** The path element of one item of a list, by its list type. */
export function itemElement(item: unknown, index: number, schema: StructuralSchema | undefined): string {
  const type = listTypeOf(schema);
  if (type === "set") return `v:${sortedJson(item)}`;
  if (type === "map" && isRecord(item)) {
    const keys: Record<string, unknown> = {};
    for (const k of schema?.["x-kubernetes-list-map-keys"] ?? []) if (item[k] !== undefined) keys[k] = item[k];
    return `k:${sortedJson(keys)}`;
  }
  return `i:${index}`;
}

/** The members of a value, as structured-merge-diff's ToFieldSet computes them. */
export function fieldSetOf(value: unknown, schema: StructuralSchema | undefined): FieldSet {
  const s = new FieldSet();
  walkMembers(value, schema, [], s);
  return s;
}

function walkMembers(value: unknown, schema: StructuralSchema | undefined, path: string[], out: FieldSet): void {
  if (Array.isArray(value)) {
    const type = listTypeOf(schema);
    if (type === "atomic") {
      out.insert(path);
      return;
    }
    value.forEach((item, i) => {
      const p = [...path, itemElement(item, i, schema)];
      walkMembers(item, schema?.items, p, out);
      out.insert(p);
    });
    return;
  }
  if (isRecord(value)) {
    if (isAtomicMap(schema)) {
      out.insert(path);
      return;
    }
    for (const [key, v] of Object.entries(value)) {
      const p = [...path, `f:${key}`];
      walkMembers(v, memberSchema(schema, key), p, out);
      if (v === null || (isRecord(v) && Object.keys(v).length === 0) || !isDeclared(schema, key)) out.insert(p);
    }
    return;
  }
  out.insert(path);
}

/** The value at a field path, or undefined when it is absent. */
export function valueAt(value: unknown, path: FieldPath, schema: StructuralSchema | undefined): unknown {
  let cur: unknown = value;
  let s = schema;
  for (const el of path) {
    if (el.startsWith("f:")) {
      if (!isRecord(cur)) return undefined;
      const key = el.slice(2);
      cur = cur[key];
      s = memberSchema(s, key);
    } else {
      if (!Array.isArray(cur)) return undefined;
      const list: unknown[] = cur;
      const listSchema = s;
      cur = list.find((item, i) => itemElement(item, i, listSchema) === el);
      s = s?.items;
    }
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** What changed between two values, path by path (structured-merge-diff typed.Compare). */
export interface Comparison {
  added: FieldSet;
  modified: FieldSet;
  removed: FieldSet;
}

export function compare(before: unknown, after: unknown, schema: StructuralSchema | undefined): Comparison {
  const a = fieldSetOf(before, schema);
  const b = fieldSetOf(after, schema);
  const modified = new FieldSet();
  for (const p of a.intersection(b).paths()) {
    const x = valueAt(before, p, schema);
    const y = valueAt(after, p, schema);
    // A member with members below it changes through them; a leaf (scalar, atomic) changes itself.
    const leaf = !b.paths().some((q) => q.length > p.length && p.every((e, i) => q[i] === e));
    if (leaf && !deepEqual(x, y)) modified.insert(p);
  }
  return { added: b.difference(a), modified, removed: a.difference(b) };
}

/** `.spec.replica.primary`, `.spec.externalClusters[name="pg-eu"]`: fieldpath.Path's String(). */
export function pathString(path: FieldPath): string {
  return path
    .map((el) => {
      const body = el.slice(2);
      if (el.startsWith("f:")) return `.${body}`;
      if (el.startsWith("i:")) return `[${body}]`;
      if (el.startsWith("v:")) return `[=${body}]`;
      const keys = JSON.parse(body) as Record<string, unknown>;
      return `[${Object.entries(keys).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(",")}]`;
    })
    .join("");
}
