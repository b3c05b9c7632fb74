/**
 * Who must follow whom after a change of the designated primary (CNPG.md, "Who follows whom"):
 * CNPG's designated primary of a replica cluster streams and restores from `spec.replica.source`,
 * not from `primary` (pkg/management/postgres/instance_replica.go in CNPG), so with three or more
 * members every replica's `source` and every member's `primary` must name the new primary, or a
 * member keeps following a demoted or lost cluster and never reaches the new timeline.
 *
 * pgfed points every replica at the primary directly, never at another replica: a cascade would
 * make a replica's recovery depend on a second member's health and timeline switch as well.
 *
 * Pure: the coordinator passes what it observed and sends a `follow` command for each answer.
 */
import type { Observation } from "../bus/index.js";

export interface TopologyMember {
  /** Member name in pgfed's config. */
  name: string;
  /** Topology name (`externalClusters` entry, `spec.replica.primary` value): the member's `cluster`. */
  cluster: string;
}

export interface RepointNeed {
  member: string;
  /** What is wrong, in words: "names pg-eu as primary and follows pg-us". */
  why: string;
}

/**
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
    const names = o.specPrimary === undefined ? "names no primary" : `names ${memberOf(members, o.specPrimary)} as primary`;
    const follows = o.specSource === undefined ? "has no source" : `follows ${memberOf(members, o.specSource)}`;
    needs.push({ member: m.name, why: `${names} and ${follows}` });
  }
  return needs;
}

function memberOf(members: readonly TopologyMember[], cluster: string): string {
  return members.find((m) => m.cluster === cluster)?.name ?? cluster;
}
