/**
 * The `cnpg.io/fencedInstances` annotation as CNPG itself reads and writes it. This is the
 * stand-in's own reading, deliberately not pgfed's (src/cnpg/readers.ts treats an unreadable
 * annotation as an error so that pgfed never mistakes it for "unfenced"); the operator must agree
 * with CNPG, which treats it as not fenced.
 */
import { FENCED_INSTANCES_ANNOTATION, type Cluster, type MergePatch } from "../../cnpg/index.js";

/** CNPG's wildcard: every instance of the Cluster (pkg/utils/fencing.go, FenceAllInstances). */
export const FENCE_ALL = "*";

export type FencedSet = { ok: true; names: ReadonlySet<string> } | { ok: false; raw: string };

/**
 * The fenced instance names (pkg/utils/fencing.go, GetFencedInstances): absent → empty; JSON `null`
 * → empty (Go unmarshals null into a nil slice); anything but a JSON array of strings is a syntax error.
 */
export function readFencedSet(c: Cluster): FencedSet {
  const raw = c.metadata.annotations?.[FENCED_INSTANCES_ANNOTATION];
  if (raw === undefined) return { ok: true, names: new Set() };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { ok: false, raw };
  }
  if (parsed === null) return { ok: true, names: new Set() };
  if (!Array.isArray(parsed) || !parsed.every((v): v is string => typeof v === "string")) return { ok: false, raw };
  return { ok: true, names: new Set(parsed) };
}

/** api/v1/cluster_funcs.go, IsInstanceFenced: an annotation that does not parse fences nothing. */
export function isInstanceFenced(c: Cluster, instance: string): boolean {
  const set = readFencedSet(c);
  if (!set.ok) return false;
  return set.names.has(FENCE_ALL) || set.names.has(instance);
}

/**
 * The patch that fences every instance, as pkg/utils/fencing.go AddFencedInstance("*") builds it:
 * undefined when "*" is already there (no change, no patch), `["*"]` replacing any list of single
 * instances otherwise. Throws on an annotation that does not parse, as CNPG refuses to edit it.
 */
export function fenceAllPatch(c: Cluster): MergePatch | undefined {
  const set = readFencedSet(c);
  if (!set.ok) throw new Error(`${FENCED_INSTANCES_ANNOTATION} annotation has invalid syntax: ${JSON.stringify(set.raw)}`);
  if (set.names.has(FENCE_ALL)) return undefined;
  return { metadata: { annotations: { [FENCED_INSTANCES_ANNOTATION]: JSON.stringify([FENCE_ALL]) } } };
}
