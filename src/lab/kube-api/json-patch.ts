/**
 * RFC 6902 JSON Patch (add, remove, replace, move, copy, test) over RFC 6901 JSON Pointers.
 * Pure: the input document is never modified. (RFC 7386 merge patches: src/cnpg's applyMergePatch.)
 */
import { isRecord } from "./types.js";

/** `malformed`: the patch document itself is wrong (→ 400); `failed`: it does not apply (→ 422). */
export class PatchError extends Error {
  constructor(
    readonly kind: "malformed" | "failed",
    message: string,
  ) {
    super(message);
    this.name = "PatchError";
  }
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => deepEqual(v, b[i]));
  }
  if (isRecord(a)) {
    if (!isRecord(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

export type JsonPatchOp =
  | { op: "add" | "replace" | "test"; path: string; value: unknown }
  | { op: "remove"; path: string }
  | { op: "move" | "copy"; from: string; path: string };

/** Parses the body of an `application/json-patch+json` request. */
export function parseJsonPatch(doc: unknown): JsonPatchOp[] {
  if (!Array.isArray(doc)) throw new PatchError("malformed", "a JSON patch must be an array of operations");
  return doc.map((raw, i): JsonPatchOp => {
    if (!isRecord(raw)) throw new PatchError("malformed", `operation ${i} is not an object`);
    const { op, path } = raw;
    if (typeof path !== "string") throw new PatchError("malformed", `operation ${i} (${String(op)}) is missing the string field "path"`);
    switch (op) {
      case "add":
      case "replace":
      case "test":
        if (!Object.hasOwn(raw, "value")) throw new PatchError("malformed", `operation ${i} (${op}) is missing the field "value"`);
        return { op, path, value: raw.value };
      case "remove":
        return { op, path };
      case "move":
      case "copy":
        if (typeof raw.from !== "string") throw new PatchError("malformed", `operation ${i} (${op}) is missing the string field "from"`);
        return { op, from: raw.from, path };
      default:
        throw new PatchError("malformed", `operation ${i} has an unknown op ${JSON.stringify(op)}`);
    }
  });
}

/** RFC 6901: "" is the whole document; "/a~1b/0" is ["a/b", "0"]. */
export function parsePointer(pointer: string): string[] {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new PatchError("malformed", `JSON pointer "${pointer}" must be empty or start with "/"`);
  return pointer
    .slice(1)
    .split("/")
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(arr: unknown[], token: string, pointer: string, allowEnd: boolean): number {
  if (token === "-" && allowEnd) return arr.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError("failed", `invalid array index "${token}" in "${pointer}"`);
  const i = Number(token);
  if (i > arr.length || (!allowEnd && i === arr.length)) throw new PatchError("failed", `array index ${i} out of bounds in "${pointer}"`);
  return i;
}

function getAt(doc: unknown, pointer: string): unknown {
  let cur = doc;
  for (const token of parsePointer(pointer)) {
    if (Array.isArray(cur)) cur = cur[arrayIndex(cur, token, pointer, false)];
    else if (isRecord(cur) && Object.hasOwn(cur, token)) cur = cur[token];
    else throw new PatchError("failed", `path "${pointer}" does not exist`);
  }
  return cur;
}

/** The container holding the last token of `pointer`, and that token. */
function parentOf(doc: unknown, pointer: string): { parent: unknown; token: string } {
  const tokens = parsePointer(pointer);
  const token = tokens.pop();
  if (token === undefined) throw new PatchError("failed", "the root has no parent");
  let parent = doc;
  for (const t of tokens) {
    if (Array.isArray(parent)) parent = parent[arrayIndex(parent, t, pointer, false)];
    else if (isRecord(parent) && Object.hasOwn(parent, t)) parent = parent[t];
    else throw new PatchError("failed", `path "${pointer}" does not exist: missing "${t}"`);
  }
  return { parent, token };
}

function addAt(doc: unknown, pointer: string, value: unknown): unknown {
  if (pointer === "") return value;
  const { parent, token } = parentOf(doc, pointer);
  if (Array.isArray(parent)) parent.splice(arrayIndex(parent, token, pointer, true), 0, value);
  // Defined, not assigned: a "__proto__" member stays data instead of changing the prototype.
  else if (isRecord(parent)) Object.defineProperty(parent, token, { value, enumerable: true, writable: true, configurable: true });
  else throw new PatchError("failed", `cannot add "${pointer}": its parent is not an object or array`);
  return doc;
}

function removeAt(doc: unknown, pointer: string): { doc: unknown; removed: unknown } {
  if (pointer === "") return { doc: null, removed: doc };
  const { parent, token } = parentOf(doc, pointer);
  if (Array.isArray(parent)) {
    const removed: unknown = parent.splice(arrayIndex(parent, token, pointer, false), 1)[0];
    return { doc, removed };
  }
  if (isRecord(parent) && Object.hasOwn(parent, token)) {
    const removed = parent[token];
    delete parent[token];
    return { doc, removed };
  }
  throw new PatchError("failed", `cannot remove "${pointer}": it does not exist`);
}

export function applyJsonPatch(target: unknown, ops: JsonPatchOp[]): unknown {
  let doc = structuredClone(target);
  for (const op of ops) {
    switch (op.op) {
      case "add":
        doc = addAt(doc, op.path, structuredClone(op.value));
        break;
      case "remove":
        doc = removeAt(doc, op.path).doc;
        break;
      case "replace":
        getAt(doc, op.path);
        doc = op.path === "" ? structuredClone(op.value) : addAt(removeAt(doc, op.path).doc, op.path, structuredClone(op.value));
        break;
      case "move": {
        if (op.path !== op.from && op.path.startsWith(`${op.from}/`)) throw new PatchError("failed", `cannot move "${op.from}" into its own child "${op.path}"`);
        const r = removeAt(doc, op.from);
        doc = addAt(r.doc, op.path, r.removed);
        break;
      }
      case "copy":
        doc = addAt(doc, op.path, structuredClone(getAt(doc, op.from)));
        break;
      case "test": {
        const actual = getAt(doc, op.path);
        if (!deepEqual(actual, op.value)) throw new PatchError("failed", `testing value ${op.path} failed: expected ${JSON.stringify(op.value)}, found ${JSON.stringify(actual)}`);
        break;
      }
    }
  }
  return doc;
}
