/**
 * What the agent says about a member's CNPG Cluster on the bus: the Cluster read through the
 * src/cnpg readers and turned into the wire shape (bus/messages.ts `observationSchema`). Pure.
 *
 * Three ways a read ends (safety rule 6, "bad input changes nothing"):
 *   - a Cluster pgfed understands        → role primary/replica, reachable
 *   - an object it does not understand   → role "unknown" with the reason, reachable
 *   - no answer from the Kubernetes API   → the last known values, reachable false with the reason
 */
import { observationSchema, describeIssues, type Observation } from "../bus/index.js";
import {
  archivingStatus,
  clusterPhase,
  clusterRole,
  demotionToken,
  designatedPrimary,
  fieldOwner,
  isFencedForSure,
  isReady,
  lastPromotionToken,
  switchInProgress,
  type Cluster,
} from "../cnpg/index.js";

const MAX_REASON = 2_048;
const MAX_PHASE = 512;

/** The wire observation of a parsed Cluster; an object the readers refuse yields role "unknown". */
export function observeCluster(c: Cluster): Observation {
  const resourceVersion = (c.metadata.resourceVersion ?? "").slice(0, 128);
  // Fenced means "no instance runs Postgres": all instances ("*"). CNPG counts an unparseable
  // annotation as no fencing at all (api/v1/cluster_funcs.go, IsInstanceFenced) and a partial list
  // leaves the other instances running (one may be promoted), so both read as not fenced here:
  // the member may write, and a member that must stay fenced is fenced again with ["*"].
  const fenced = isFencedForSure(c);
  const timeline = c.status?.timelineID;
  const candidate: Observation = {
    role: clusterRole(c),
    phase: (clusterPhase(c) ?? "").slice(0, MAX_PHASE),
    fenced,
    switchInProgress: switchInProgress(c),
    ...optional("demotionToken", demotionToken(c)),
    ...optional("lastPromotionToken", lastPromotionToken(c)),
    ...(timeline !== undefined && timeline > 0 ? { timelineID: timeline } : {}),
    ...optional("currentPrimary", c.status?.currentPrimary),
    ...optional("specPrimary", designatedPrimary(c)),
    ...optional("specSource", c.spec.replica?.source),
    ...optional("primaryManager", fieldOwner(c, ["spec", "replica", "primary"])?.manager.slice(0, 128)),
    reachable: true,
    ready: isReady(c),
    archiving: archivingStatus(c),
    resourceVersion,
  };
  const checked = observationSchema.safeParse(candidate);
  if (checked.success) return checked.data;
  return unknownObservation(`the Cluster does not fit an observation: ${describeIssues(checked.error.issues)}`, resourceVersion, {
    fenced,
    phase: candidate.phase,
  });
}

/** A member whose object is not a Cluster pgfed understands (or no longer exists). */
export function unknownObservation(reason: string, resourceVersion = "", known: { fenced?: boolean; phase?: string } = {}): Observation {
  return {
    role: "unknown",
    phase: (known.phase ?? "").slice(0, MAX_PHASE),
    fenced: known.fenced ?? false,
    switchInProgress: false,
    reachable: true,
    reason: clip(reason, MAX_REASON),
    ready: false,
    archiving: "unknown",
    resourceVersion: resourceVersion.slice(0, 128),
  };
}

/** The Kubernetes API did not answer: keep the last known values, say so and why. */
export function unreachableObservation(last: Observation | undefined, reason: string): Observation {
  const base = last ?? unknownObservation("");
  return { ...base, role: last ? base.role : "unknown", reachable: false, reason: clip(reason, MAX_REASON), ready: last ? base.ready : false };
}

/**
 * Equal as far as the coordinator can tell: every field but `resourceVersion`, which moves with
 * any write (a label, a condition's timestamp) and would make every write a publish. Key order
 * does not matter. The heartbeat carries the newest resourceVersion anyway.
 */
export function sameObservation(a: Observation | undefined, b: Observation | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return canonical(a) === canonical(b);
}

function canonical(o: Observation): string {
  const { resourceVersion: _rv, ...rest } = o;
  return JSON.stringify(Object.fromEntries(Object.entries(rest).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))));
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined || value === "" ? {} : { [key]: value }) as { [P in K]?: string };
}

/** Bounds a text that goes on the bus (reasons, result messages, sample errors) to `max` characters. */
export function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
