/**
 * The JSON merge patches (RFC 7386; `null` removes a field) pgfed sends for each step of a role
 * change (CNPG.md, "Planned switchover", "Unplanned failover", "Fencing"). Each is a whole step in
 * one patch, so a crash between two patches can never leave half a step applied, and each is
 * idempotent: sending it twice gives the same object.
 */
import { PgfedError } from "../errors.js";
import { FENCED_INSTANCES_ANNOTATION } from "./cluster.js";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A merge patch document: an object whose `null` members remove the field they name. */
export type MergePatch = { [key: string]: JsonValue };

/**
 * Step 1 of a switchover, on the old primary: follow `newPrimary`, and stream/restore from it
 * (`source`: CNPG follows `source`, not `primary`, so with three or more members a demotion that
 * left `source` on a third member would follow the wrong cluster). The leftover promotion token of
 * an earlier promotion goes in the same patch, since CNPG only allows a token on a primary (#9273).
 */
export function demotePatch(newPrimary: string): MergePatch {
  const to = requireName(newPrimary, "newPrimary");
  return { spec: { replica: { primary: to, source: to, promotionToken: null } } };
}

/**
 * Every replica after a change of primary: name `primary` as the topology's primary and follow it
 * directly (no cascading: a replica following another replica depends on that one's health too).
 */
export function followPatch(primary: string): MergePatch {
  const to = requireName(primary, "primary");
  return { spec: { replica: { primary: to, source: to } } };
}

/**
 * Step 3 of a switchover, on the target: become primary once replayed up to `token`. Primary and
 * token go in one patch: `primary` alone would promote at once, unchecked (the failover path).
 */
export function promoteWithTokenPatch(self: string, token: string): MergePatch {
  if (token === "") throw new PgfedError("cnpg.invalid_token", "refusing to build a promotion patch with an empty token");
  return { spec: { replica: { primary: requireName(self, "self"), promotionToken: token } } };
}

/** Unplanned failover: promote now, unchecked; a stale token is removed so it cannot hold the promotion back. */
export function promoteWithoutTokenPatch(self: string): MergePatch {
  return { spec: { replica: { primary: requireName(self, "self"), promotionToken: null } } };
}

/** Step 6: drop the used token from a new primary's spec before it can be demoted again. */
export function clearTokenPatch(): MergePatch {
  return { spec: { replica: { promotionToken: null } } };
}

/** Fences the given instances (`["*"]`: all of them, Postgres stopped, pods kept). */
export function fencePatch(instances: readonly string[] = ["*"]): MergePatch {
  const unique = [...new Set(instances)];
  // An empty list would read as "fenced" to a human but fence nothing; unfencing is unfencePatch.
  if (unique.length === 0 || unique.some((i) => i === "")) {
    throw new PgfedError("cnpg.invalid_fencing", `fencePatch needs instance names or "*", got ${JSON.stringify(instances)}`);
  }
  return { metadata: { annotations: { [FENCED_INSTANCES_ANNOTATION]: JSON.stringify(unique) } } };
}

/** Removes the fencing annotation, unfencing every instance. */
export function unfencePatch(): MergePatch {
  return { metadata: { annotations: { [FENCED_INSTANCES_ANNOTATION]: null } } };
}

/**
 * RFC 7386 merge: objects merge member by member, `null` removes, anything else (arrays included)
 * replaces. Pure: neither argument is modified and the result shares nothing with them.
 */
export function applyMergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return cloneJson(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? (cloneJson(target) as Record<string, unknown>) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === undefined) continue; // not JSON: absent from the patch as it would be on the wire
    if (value === null) {
      delete result[key];
    } else {
      const current = Object.hasOwn(result, key) ? result[key] : undefined;
      setOwn(result, key, applyMergePatch(current, value));
    }
  }
  return result;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function cloneJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(cloneJson);
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) if (v !== undefined) setOwn(out, key, cloneJson(v));
  return out;
}

/** Defines rather than assigns, so a `__proto__` key from parsed JSON stays data instead of changing the prototype. */
function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function requireName(name: string, what: string): string {
  if (name === "") throw new PgfedError("cnpg.invalid_patch", `${what} must be a non-empty cluster name`);
  return name;
}
