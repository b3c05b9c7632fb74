/**
 * Whether a member follows the designated primary (DESIGN.md, safety rule 7): pure, no clock.
 *
 * Two rules, either one makes a replica "not following":
 * - timeline: its Postgres has been sampled on another timeline than the primary's for
 *   FOLLOW_GRACE_MS or longer (judged by the evaluator, src/wal/monitor.ts, from the lag samples;
 *   never from CNPG's status.timelineID, which CNPG refreshes only from instances out of recovery,
 *   internal/controller/cluster_status.go, so it is stale on every replica cluster);
 * - topology: its spec does not lead to the primary. CNPG replicates a replica cluster from the
 *   externalClusters entry named by spec.replica.source and designates the primary by
 *   spec.replica.primary (pkg/reconciler/replicaclusterswitch). Every replica's source must be the
 *   primary itself: a source that is another replica (cascading) counts as not following, as pgfed
 *   re-points every source at the new primary after each change of primary; so does a member that
 *   runs as a primary cluster without being the designated one, or names another primary.
 */
import type { Observation } from "../bus/index.js";
import type { MemberStatus } from "../wal/monitor.js";

/** A member's name and its topology name (the `cluster` of its config: what spec.replica.* names). */
export interface TopologyMember {
  readonly name: string;
  readonly cluster: string;
}

export type FollowingVerdict =
  | { readonly following: true }
  | {
      readonly following: false;
      readonly rule: "timeline" | "topology";
      /** One clause, subject left out: "on timeline 1, primary pg-ap on timeline 2", "follows pg-us, which is not the primary pg-ap". */
      readonly reason: string;
    };

export interface FollowingInput {
  readonly member: string;
  readonly members: readonly TopologyMember[];
  /** The latest observation of a member (undefined: never observed). */
  readonly observation: (member: string) => Observation | undefined;
  /** The designated primary (a member name), or null when there is none. */
  readonly primary: string | null;
  /** The evaluator's status of the member (its timeline verdict), if any. */
  readonly status?: MemberStatus | undefined;
}

const FOLLOWING: FollowingVerdict = { following: true };

/** The member whose topology name is `cluster`, or `cluster` itself when none is. */
export function memberNameOf(members: readonly TopologyMember[], cluster: string): string {
  return members.find((m) => m.cluster === cluster)?.name ?? cluster;
}

/** The timeline rule first (positions on another timeline are not comparable), then the topology rule. */
export function followingOf(input: FollowingInput): FollowingVerdict {
  const st = input.status;
  if (st?.following === false) return { following: false, rule: "timeline", reason: st.notFollowing ?? "on another timeline than the primary" };
  return topologyVerdict(input);
}

/** The topology rule alone: does the member's spec lead to the designated primary? */
export function topologyVerdict(input: FollowingInput): FollowingVerdict {
  const { member, members, primary } = input;
  if (primary === null || member === primary) return FOLLOWING;
  const o = input.observation(member);
  if (o === undefined || o.role === "unknown") return FOLLOWING; // no evidence either way
  const byCluster = new Map(members.map((m) => [m.cluster, m.name]));
  const primaryCluster = members.find((m) => m.name === primary)?.cluster;
  if (primaryCluster === undefined) return FOLLOWING;
  const nameOf = (cluster: string): string => byCluster.get(cluster) ?? cluster;
  if (o.role === "primary") return { following: false, rule: "topology", reason: `runs as a primary cluster, not as a replica of the primary ${primary}` };
  if (o.specPrimary !== undefined && o.specPrimary !== primaryCluster) {
    return { following: false, rule: "topology", reason: `names ${nameOf(o.specPrimary)} as its primary, not the designated primary ${primary}` };
  }
  const source = o.specSource;
  if (source === undefined || source === primaryCluster) return FOLLOWING;
  const via = byCluster.get(source);
  if (via === undefined) return { following: false, rule: "topology", reason: `follows ${source}, which is not a member of the federation (the primary is ${primary})` };
  return { following: false, rule: "topology", reason: `follows ${via}, which is not the primary ${primary}${chainWords(via, member, input, byCluster, primaryCluster)}` };
}

/** Where the source chain from `first` goes: "" when it reaches the primary, else why not. */
function chainWords(first: string, from: string, input: FollowingInput, byCluster: ReadonlyMap<string, string>, primaryCluster: string): string {
  const seen = [from, first];
  let at = first;
  for (;;) {
    const o = input.observation(at);
    if (o?.role === "primary") return `; ${at} runs as a primary cluster itself`;
    const next = o?.role === "replica" ? o.specSource : undefined;
    if (next === undefined) return "";
    if (next === primaryCluster) return ""; // cascading: it leads to the primary, still not its source
    const nextName = byCluster.get(next);
    if (nextName === undefined) return `; ${at} follows ${next}, which is not a member`;
    if (seen.includes(nextName)) return `; ${at} follows ${nextName}: a cycle that reaches no primary`;
    seen.push(nextName);
    at = nextName;
  }
}

/** Its loss if promoted under the verdict: a member whose source is not the primary gets no credit for the primary's archive. */
export function lossOf(st: MemberStatus | undefined, verdict: FollowingVerdict): { bytes: bigint; ms: number } | undefined {
  if (!verdict.following && verdict.rule === "topology") return st?.ownLag ?? st?.lag;
  return st?.lag;
}

export interface SwitchoverCheck {
  readonly target: string;
  /** The current primary. */
  readonly primary: string;
  readonly verdict: FollowingVerdict;
  readonly status: MemberStatus | undefined;
  readonly primaryTimeline: number | undefined;
  readonly nowMs: number;
}

/**
 * Why a switchover to `target` must be refused because it does not follow the primary (with the
 * numbers), or undefined. `wait`: it is on another timeline but still within FOLLOW_GRACE_MS, so
 * the preflight may look again before it refuses (right after a promotion replicas catch up).
 */
export function followingRefusal(c: SwitchoverCheck): { reason: string; wait: boolean } | undefined {
  const { target, primary, verdict, status: st, primaryTimeline, nowMs } = c;
  const off = st?.timeline !== undefined && primaryTimeline !== undefined && st.timeline !== primaryTimeline;
  const onTimeline = off ? `${target} is on timeline ${st.timeline}, the primary ${primary} on timeline ${primaryTimeline}` : undefined;
  const since = st?.lastOnTimelineAtMs ?? st?.offTimelineSinceMs;
  const silent = since === undefined ? "" : `; it has not received WAL from ${primary} for ${seconds(nowMs - since)}`;
  if (!verdict.following && verdict.rule === "timeline") return { reason: `${onTimeline ?? `${target} is not following ${primary}: ${verdict.reason}`}${silent}`, wait: false };
  if (!verdict.following) {
    const loss = lossOf(st, verdict);
    const lacks = loss === undefined || loss.bytes === 0n ? "" : `; it lacks the WAL ${primary} wrote in the last ${seconds(loss.ms)}`;
    return { reason: `${target} ${verdict.reason}${lacks}`, wait: false };
  }
  if (onTimeline !== undefined) return { reason: `${onTimeline} (not yet switched${silent.replace(/^;/, ",")})`, wait: true };
  return undefined;
}

function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)} s`;
}

export interface RepointNeed {
  member: string;
  /** What is wrong, in words: "names pg-eu as primary and follows pg-us". */
  why: string;
}

/**
 * Who must follow whom after a change of the designated primary (CNPG.md, "Who follows whom"):
 * CNPG's designated primary of a replica cluster streams and restores from `spec.replica.source`,
 * not from `primary` (pkg/management/postgres/instance_replica.go in CNPG), so with three or more
 * members every replica's `source` and every member's `primary` must name the new primary, or a
 * member keeps following a demoted or lost cluster and never reaches the new timeline. pgfed points
 * every replica at the primary directly, never at another replica: a cascade would make a
 * replica's recovery depend on a second member's health and timeline switch as well. Stricter than
 * the topology rule above: a replica with no source set is repointed too.
 *
 * The replicas whose spec does not name `primary` as primary and source. Skipped: the primary
 * itself, `skip` (diverged members, former primaries waiting to be fenced, a member being
 * demoted: each has its own step), members not reachable or not understood, a member whose spec
 * makes it a primary (a demotion, not a repoint) and one in the middle of a replica cluster switch.
 */
export function membersToRepoint(members: readonly TopologyMember[], primary: string, observed: (member: string) => Observation | undefined, skip: ReadonlySet<string>): RepointNeed[] {
  const target = members.find((m) => m.name === primary);
  if (!target) return [];
  const needs: RepointNeed[] = [];
  for (const m of members) {
    if (m.name === primary || skip.has(m.name)) continue;
    const o = observed(m.name);
    if (!o?.reachable || o.role !== "replica" || o.switchInProgress) continue;
    if (o.specPrimary === target.cluster && o.specSource === target.cluster) continue;
    const names = o.specPrimary === undefined ? "names no primary" : `names ${memberNameOf(members, o.specPrimary)} as primary`;
    const follows = o.specSource === undefined ? "has no source" : `follows ${memberNameOf(members, o.specSource)}`;
    needs.push({ member: m.name, why: `${names} and ${follows}` });
  }
  return needs;
}
