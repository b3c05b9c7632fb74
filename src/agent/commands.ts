/**
 * What a command means for one Cluster, as an "ensure" step (STYLE.md, from CloudNativePG): look
 * at the object as it is, return early when there is nothing to do, otherwise name the one merge
 * patch that makes it so. Pure: the agent reads, plans, patches at most once, and plans again on
 * the patched object to prove the step took. Repeating a command therefore patches nothing the
 * second time and answers the same way.
 *
 * `walSwitch` needs Postgres rather than the Cluster; the agent runs it through the sampler.
 * `reclone` is several steps with a deletion between them (planReclone; the agent runs it in reclone.ts).
 */
import type { Command } from "../bus/index.js";
import {
  FENCED_INSTANCES_ANNOTATION,
  PHASES,
  clearTokenPatch,
  clusterRole,
  demotePatch,
  followPatch,
  designatedPrimary,
  entryArchiveServerName,
  entryWithServerName,
  fencePatch,
  isFencedForSure,
  isReady,
  lastPromotionToken,
  promoteWithTokenPatch,
  promoteWithoutTokenPatch,
  promotedPastToken,
  reclonedForEpoch,
  selfName,
  specPromotionToken,
  switchInProgress,
  unfencePatch,
  type Cluster,
  type JsonValue,
  type MergePatch,
} from "../cnpg/index.js";

/** The command kinds that are carried out with one patch of the Cluster object. */
export type ClusterCommand = Exclude<Command, { kind: "walSwitch" } | { kind: "reclone" }>;

export interface PlanContext {
  /** "orders/pg-eu": federation/member, used in every sentence. */
  who: string;
  /** The topology name (`externalClusters` entry, `spec.replica.primary` value) of a member. */
  topologyName(member: string): string;
}

export type CommandPlan =
  /** One patch makes it so; `sentence` says what it did once applied. */
  | { action: "patch"; patch: MergePatch; sentence: string }
  /** Already so: nothing to patch. */
  | { action: "none"; sentence: string }
  /** Not safe or not possible: nothing is patched, the result carries `code` and `message`. */
  | { action: "refuse"; code: string; message: string };

export function planCommand(c: Cluster, cmd: ClusterCommand, ctx: PlanContext): CommandPlan {
  switch (cmd.kind) {
    case "demote":
      return planDemote(c, ctx.topologyName(cmd.to), cmd.to, ctx);
    case "follow":
      return planFollow(c, ctx.topologyName(cmd.primary), cmd.primary, ctx);
    case "promoteWithToken":
      return planPromoteWithToken(c, cmd.token, ctx);
    case "promoteWithoutToken":
      return planPromoteWithoutToken(c, ctx);
    case "clearToken":
      return planClearToken(c, ctx);
    case "fence":
      return planFence(c, ctx);
    case "unfence":
      return planUnfence(c, ctx);
    case "ensurePrimary":
      return planEnsurePrimary(c, ctx);
    case "retargetArchive":
      return planRetargetArchive(c, cmd, ctx);
  }
}

function planDemote(c: Cluster, to: string, toMember: string, ctx: PlanContext): CommandPlan {
  const self = selfName(c);
  const primary = designatedPrimary(c);
  const source = c.spec.replica?.source;
  const token = specPromotionToken(c);
  const doing = `refusing to demote ${ctx.who} to follow ${toMember}`;
  if (to === self) return refuse("agent.invalid_command", `${doing}: that is the member itself (topology name ${self}); a promotion is a promote command`);
  if (!(c.spec.externalClusters ?? []).some((e) => e.name === to)) {
    return refuse("agent.unknown_member", `${doing}: spec.externalClusters has no entry named ${to}, so CNPG could not follow it`);
  }
  if (primary === to && source === to && token === undefined) {
    return none(`${ctx.who} already follows ${toMember}${switchInProgress(c) ? " (its demotion is in progress)" : ""}; nothing to patch`);
  }
  // Only a change of role is refused during a switch (CNPG's webhook); pointing source at the new primary is not one.
  if (switchInProgress(c) && (primary !== to || token !== undefined)) {
    return refuse("agent.switch_in_progress", `${doing}: a replica cluster switch is in progress (status.switchReplicaClusterStatus.inProgress) and CNPG refuses role changes until it ends`);
  }
  const fields = [primary === to ? undefined : "spec.replica.primary", source === to ? undefined : "spec.replica.source", token === undefined ? undefined : "removed spec.replica.promotionToken"].filter((f) => f !== undefined);
  return { action: "patch", patch: demotePatch(to), sentence: `demoted ${ctx.who} to follow ${toMember} (patched ${fields.join(", ")})` };
}

/**
 * A replica cluster after a change of primary: name it and follow it. Never a change of role: a
 * member whose spec makes it the primary is demoted (demote), one that would become primary promoted.
 */
function planFollow(c: Cluster, to: string, toMember: string, ctx: PlanContext): CommandPlan {
  const self = selfName(c);
  const primary = designatedPrimary(c);
  const source = c.spec.replica?.source;
  const doing = `refusing to point ${ctx.who} at ${toMember}`;
  if (to === self) return refuse("agent.invalid_command", `${doing}: that is the member itself (topology name ${self}); a promotion is a promote command`);
  if (clusterRole(c) === "primary") return refuse("agent.is_primary", `${doing}: its spec makes it the primary cluster (spec.replica.primary ${primary ?? "(unset)"}); a former primary is demoted, not repointed`);
  if (!(c.spec.externalClusters ?? []).some((e) => e.name === to)) {
    return refuse("agent.unknown_member", `${doing}: spec.externalClusters has no entry named ${to}, so CNPG could not follow it`);
  }
  if (primary === to && source === to) return none(`${ctx.who} already names ${toMember} as primary and follows it; nothing to patch`);
  const fields = [primary === to ? undefined : `spec.replica.primary (was ${primary ?? "unset"})`, source === to ? undefined : `spec.replica.source (was ${source ?? "unset"})`].filter((f) => f !== undefined);
  return { action: "patch", patch: followPatch(to), sentence: `pointed ${ctx.who} at ${toMember} (patched ${fields.join(", ")})` };
}

function planPromoteWithToken(c: Cluster, token: string, ctx: PlanContext): CommandPlan {
  const self = selfName(c);
  const isDesignated = designatedPrimary(c) === self;
  const pending = specPromotionToken(c);
  const doing = `refusing to promote ${ctx.who} with a demotion token`;
  if (isDesignated && pending === token) return none(`${ctx.who} is already being promoted with this token (CNPG checks it); nothing to patch`);
  if (isDesignated && lastPromotionToken(c) === token) return none(`${ctx.who} was already promoted with this token (status.lastPromotionToken); nothing to patch`);
  if (isDesignated && pending === undefined && clusterRole(c) === "primary" && !switchInProgress(c) && promotedPastToken(token, c.status?.timelineID, c.status?.systemID)) {
    // A retried promote after the token was cleared: CNPG emptied lastPromotionToken, the timeline shows the promotion.
    return none(`${ctx.who} was already promoted past this token (primary on timeline ${c.status?.timelineID ?? "?"}, newer than the token's); nothing to patch`);
  }
  if (switchInProgress(c)) return refuse("agent.switch_in_progress", `${doing}: a replica cluster switch is in progress and CNPG refuses role changes until it ends`);
  if (isDesignated && pending === undefined) {
    return refuse("agent.already_primary", `${doing}: it is already the primary cluster and no promotion is pending, so the token would check nothing`);
  }
  const sentence = isDesignated
    ? `replaced the pending promotion token of ${ctx.who} (patched spec.replica.promotionToken); CNPG checks the new one`
    : `promoting ${ctx.who} with the demotion token (patched spec.replica.primary and spec.replica.promotionToken in one patch); CNPG promotes once it has replayed up to it`;
  return { action: "patch", patch: promoteWithTokenPatch(self, token), sentence };
}

function planPromoteWithoutToken(c: Cluster, ctx: PlanContext): CommandPlan {
  const self = selfName(c);
  const isDesignated = designatedPrimary(c) === self;
  const pending = specPromotionToken(c);
  if (isDesignated && pending === undefined) return none(`${ctx.who} is already the primary cluster; nothing to patch`);
  if (switchInProgress(c)) return refuse("agent.switch_in_progress", `refusing to promote ${ctx.who} without a token: a replica cluster switch is in progress and CNPG refuses role changes until it ends`);
  const fields = [isDesignated ? undefined : "spec.replica.primary", pending === undefined ? undefined : "removed spec.replica.promotionToken"].filter((f) => f !== undefined);
  return { action: "patch", patch: promoteWithoutTokenPatch(self), sentence: `promoted ${ctx.who} without a token, unchecked (patched ${fields.join(", ")})` };
}

function planClearToken(c: Cluster, ctx: PlanContext): CommandPlan {
  const pending = specPromotionToken(c);
  if (pending === undefined) return none(`${ctx.who} has no promotion token in its spec; nothing to patch`);
  if (designatedPrimary(c) === selfName(c) && lastPromotionToken(c) !== pending) {
    // With primary == self, removing the token turns a checked promotion into an unchecked one.
    return refuse(
      "agent.promotion_pending",
      `refusing to clear the promotion token of ${ctx.who}: its promotion with that token has not completed (status.lastPromotionToken differs), and without the token CNPG would promote unchecked`,
    );
  }
  return { action: "patch", patch: clearTokenPatch(), sentence: `cleared the used promotion token of ${ctx.who} (removed spec.replica.promotionToken)` };
}

function planFence(c: Cluster, ctx: PlanContext): CommandPlan {
  const fenced = isFencedForSure(c);
  if (fenced) return none(`${ctx.who} is already fenced (all instances); nothing to patch`);
  return { action: "patch", patch: fencePatch(["*"]), sentence: `fenced ${ctx.who} (annotated ${FENCED_INSTANCES_ANNOTATION} ["*"]); CNPG stops its Postgres` };
}

function planUnfence(c: Cluster, ctx: PlanContext): CommandPlan {
  // Present at all (even unreadable, or an empty list): remove it, so that CNPG sees no fencing.
  const annotated = c.metadata.annotations?.[FENCED_INSTANCES_ANNOTATION] !== undefined;
  if (!annotated) return none(`${ctx.who} is not fenced; nothing to patch`);
  return { action: "patch", patch: unfencePatch(), sentence: `unfenced ${ctx.who} (removed ${FENCED_INSTANCES_ANNOTATION})` };
}

/**
 * Verification only: it never promotes. Making a replica primary is a promotion that rule 3 gates
 * (the coordinator sends promoteWithToken / promoteWithoutToken for that).
 */
function planEnsurePrimary(c: Cluster, ctx: PlanContext): CommandPlan {
  if (clusterRole(c) === "primary") return none(`${ctx.who} is the primary cluster (spec.replica.primary names itself); nothing to patch`);
  return refuse(
    "agent.not_primary",
    `${ctx.who} is not the primary cluster: spec.replica.primary is ${designatedPrimary(c) ?? "(unset)"}, not ${selfName(c)}; ensurePrimary never promotes (send a promote command)`,
  );
}

/**
 * After `cmd.member` was re-cloned under a fresh archive server name, this member's
 * `externalClusters` entry for it must read the new path: were this member ever to follow it in
 * archive-only replay, the old path holds the diverged timeline. The array is replaced as a whole
 * (merge patch), so the patch carries the resourceVersion it was computed from.
 */
function planRetargetArchive(c: Cluster, cmd: Extract<ClusterCommand, { kind: "retargetArchive" }>, ctx: PlanContext): CommandPlan {
  const name = ctx.topologyName(cmd.member);
  const entries = c.spec.externalClusters ?? [];
  const entry = entries.find((e) => e.name === name);
  const of = `${ctx.who}'s externalClusters entry for ${cmd.member}`;
  if (!entry) return none(`${ctx.who} has no externalClusters entry named ${name}, so it never reads ${cmd.member}'s archive; nothing to patch`);
  const current = entryArchiveServerName(entry);
  if (current === undefined) return none(`${of} names no archive (streaming only); nothing to patch`);
  if (current === cmd.to) return none(`${of} already reads archive server ${cmd.to}; nothing to patch`);
  if (current !== cmd.from && current !== null) {
    return refuse("agent.archive_mismatch", `refusing to retarget ${of}: it reads archive server ${current}, neither the old ${cmd.from} nor the new ${cmd.to}; left as it is (check it by hand)`);
  }
  const patch: MergePatch = {
    ...(c.metadata.resourceVersion ? { metadata: { resourceVersion: c.metadata.resourceVersion } } : {}),
    // The entries came from the API as JSON, so they are JSON.
    spec: { externalClusters: entries.map((e) => (e.name === name ? entryWithServerName(e, cmd.to) : e)) as JsonValue[] },
  };
  const was = current === null ? "the default server name" : `archive server ${cmd.from}`;
  return { action: "patch", patch, sentence: `pointed ${of} at archive server ${cmd.to} instead of ${was} (patched spec.externalClusters)` };
}

/**
 * The next step of a re-clone (rejoin of a diverged member), level-triggered like the others: the
 * Cluster as it is now says which step comes next, so a command repeated after a crash resumes.
 *   absent                                   → create it again (from the manifest saved before the delete)
 *   annotated recloned-for-epoch >= epoch    → ours: wait until it is a healthy replica cluster of the primary
 *   not fenced                               → fence (Postgres stops: nothing more diverges while we look)
 *   fenced                                   → delete it with its volumes (the archive stays)
 */
export type RecloneStep =
  | { action: "refuse"; code: string; message: string }
  | { action: "fence"; patch: MergePatch; sentence: string }
  | { action: "delete"; sentence: string }
  | { action: "create"; sentence: string }
  | { action: "wait"; sentence: string }
  | { action: "done"; sentence: string };

export function planReclone(c: Cluster | undefined, opts: { epoch: number; primary: string; primaryMember: string; who: string }): RecloneStep {
  const from = `${opts.primaryMember} (topology name ${opts.primary})`;
  if (c === undefined) return { action: "create", sentence: `${opts.who} is deleted; creating it again as a replica cluster of ${from}` };
  const self = selfName(c);
  if (self === opts.primary) {
    return { action: "refuse", code: "agent.invalid_command", message: `refusing to re-clone ${opts.who}: it is the primary ${opts.primary} it would be cloned from` };
  }
  const recloned = reclonedForEpoch(c);
  if (recloned !== undefined && recloned >= opts.epoch) {
    if (designatedPrimary(c) !== opts.primary) {
      return {
        action: "refuse",
        code: "agent.reclone_conflict",
        message: `refusing to go on re-cloning ${opts.who}: it was recreated for epoch ${recloned} but now names ${designatedPrimary(c) ?? "no primary"} as primary, not ${opts.primary}; someone changed it since`,
      };
    }
    const healthy = clusterRole(c) === "replica" && c.status?.phase === PHASES.healthy && isReady(c) && c.metadata.annotations?.[FENCED_INSTANCES_ANNOTATION] === undefined;
    if (healthy) return { action: "done", sentence: `${opts.who} is a healthy replica cluster of ${from}, re-cloned for epoch ${recloned}` };
    return { action: "wait", sentence: `${opts.who} was recreated for epoch ${recloned}; waiting for it to run as a replica cluster of ${from} (phase ${c.status?.phase ?? "none yet"})` };
  }
  if (!(c.spec.externalClusters ?? []).some((e) => e.name === opts.primary)) {
    return { action: "refuse", code: "agent.unknown_member", message: `refusing to re-clone ${opts.who}: spec.externalClusters has no entry named ${opts.primary} to clone from` };
  }
  if (!c.spec.replica) return { action: "refuse", code: "agent.invalid_command", message: `refusing to re-clone ${opts.who}: spec.replica is not set, so it is not part of a distributed topology` };
  const fenced = isFencedForSure(c);
  if (!fenced) return { action: "fence", patch: fencePatch(["*"]), sentence: `fenced ${opts.who} before re-cloning it (annotated ${FENCED_INSTANCES_ANNOTATION} ["*"])` };
  return { action: "delete", sentence: `deleting the Cluster of ${opts.who} with its volumes to re-clone it from ${from}` };
}

function none(sentence: string): CommandPlan {
  return { action: "none", sentence };
}

function refuse(code: string, message: string): CommandPlan {
  return { action: "refuse", code, message };
}

/** A short description of a command for log lines: `demote (to pg-us)`. */
export function describeCommand(cmd: Command): string {
  switch (cmd.kind) {
    case "demote":
      return `demote (to ${cmd.to})`;
    case "follow":
      return `follow (${cmd.primary})`;
    case "promoteWithToken":
      return "promoteWithToken";
    case "reclone":
      return `reclone (from ${cmd.primary})`;
    case "retargetArchive":
      return `retargetArchive (${cmd.member}: ${cmd.from} → ${cmd.to})`;
    default:
      return cmd.kind;
  }
}
