/**
 * What `pgfed status` and the API show of one federation: its designated primary, epoch, exposure,
 * each member's role, state, lag and whether it follows, the operation in flight, the alerts.
 */
import type { FederationContext } from "../../../machines/index.js";
import { lossOf } from "../following.js";
import type { ExposureView, FederationView, MemberView } from "../../api/contract.js";
import { exposureSeconds } from "./evaluation.js";
import { toOperationView } from "./operations.js";
import type { RuntimeParts } from "./parts.js";

/** The part of a member actor's snapshot the view shows. */
export interface MemberSnapshot {
  value: unknown;
  context: { unreachableSinceMs: number | null; reason: string | null };
}

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

export function federationView(p: RuntimeParts, ctx: FederationContext, memberSnapshot: (member: string) => MemberSnapshot | undefined, lastDecision: string): FederationView {
  const ev = p.evaluation.last;
  const wc = ev?.worstCase;
  const nowMs = p.now();
  const figures = exposureSeconds(ev);
  const exposure: ExposureView | null = wc && figures
    ? {
        bytes: Number(wc.exposureBytes),
        ...figures,
        level: ev.budget.level,
        safeSource: wc.safeSource.kind === "replica" ? wc.safeSource.name : wc.safeSource.kind,
        sampledAt: isoOf(wc.basedOn.primarySampledAtMs),
      }
    : null;
  const members: MemberView[] = p.cfg.members.map((m) => {
    const seen = p.signals.observations.get(m.name);
    const o = seen?.obs;
    const snap = memberSnapshot(m.name);
    const st = p.evaluation.status(m.name);
    const verdict = p.evaluation.following(m.name, ctx.designatedPrimary);
    const lag = lossOf(st, verdict);
    const diverged = ctx.diverged.includes(m.name);
    // The agent re-reads every member each heartbeat and publishes changes, so a reachable
    // observation is current as of the region's last heartbeat; an unreachable one is last known
    // from when the member became unreachable.
    const unreachableSince = snap?.context.unreachableSinceMs ?? seen?.atMs;
    const currentAtMs = seen ? (o?.reachable ? Math.max(seen.atMs, p.signals.heartbeats.get(m.region) ?? 0) : unreachableSince) : undefined;
    return {
      name: m.name,
      region: m.region,
      namespace: m.namespace,
      cluster: m.cluster,
      role: o?.role ?? "unknown",
      state: diverged ? "diverged" : typeof snap?.value === "string" ? snap.value : "unknown",
      phase: o?.phase ?? "",
      fenced: o?.fenced ?? false,
      reachable: o?.reachable ?? false,
      diverged,
      lagBytes: lag ? Number(lag.bytes) : null,
      lagSeconds: lag ? lag.ms / 1000 : null,
      lossIfPromotedSeconds: lag ? lag.ms / 1000 : null,
      // Postgres's own (the lag sample's); CNPG's status.timelineID is stale on replica clusters.
      timeline: st?.timeline ?? o?.timelineID ?? null,
      following: verdict.following,
      ...(verdict.following ? {} : { notFollowing: verdict.reason }),
      lastSeenAt: currentAtMs !== undefined ? isoOf(currentAtMs) : null,
      observedAgoSeconds: currentAtMs !== undefined ? Math.max(0, nowMs - currentAtMs) / 1000 : null,
      reason: snap?.context.reason ?? o?.reason ?? null,
    };
  });
  const opRecord = ctx.operation ? p.operations.get(ctx.operation.id) : undefined;
  return {
    name: p.name,
    epoch: ctx.epoch,
    designatedPrimary: ctx.designatedPrimary,
    mode: ctx.failoverMode,
    paused: ctx.paused,
    rpo: { budgetSeconds: ctx.rpo.budgetMs / 1000, warnAt: ctx.rpo.warnAt },
    failover: { leaseTtlSeconds: p.cfg.failover.leaseTtl / 1000, clockSkewMarginSeconds: p.cfg.failover.clockSkewMargin / 1000 },
    exposure,
    members,
    operation: opRecord ? toOperationView(opRecord) : null,
    lastDecision,
    alerts: ctx.alerts.map((a) => ({ name: a.name, reason: a.reason })),
    diverged: [...ctx.diverged],
  };
}
