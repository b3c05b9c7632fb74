/**
 * The federation's decisions that matter for safety, as small pure functions: the machine's
 * guards, its lastDecision sentences, the coordinator's dry runs and the tests all share them.
 */
import type { FederationContext, FederationEvent, LossEstimate, Operation } from "./federation-types.js";
import { formatBytes, formatMs } from "./units.js";

/** A member that may become primary or be switched to: a member, not diverged, not waiting to be fenced. */
export function isEligibleTarget(context: FederationContext, member: string): boolean {
  return context.members.includes(member) && !context.diverged.includes(member) && !context.pendingFence.includes(member);
}

/** Why a switchover request must be refused, or null when it may start. */
export function switchoverRefusal(context: FederationContext, target: string): string | null {
  const fed = context.federation;
  if (context.operation) return `refusing switchover of ${fed} to ${target}: ${context.operation.kind} ${context.operation.id} is in flight`;
  if (context.designatedPrimary === null) return `refusing switchover of ${fed} to ${target}: there is no designated primary to switch from`;
  if (!context.members.includes(target)) return `refusing switchover of ${fed} to ${target}: not a member of the federation`;
  if (target === context.designatedPrimary) return `refusing switchover of ${fed} to ${target}: it is already the designated primary`;
  if (context.diverged.includes(target)) return `refusing switchover of ${fed} to ${target}: it has diverged and must be rejoined first`;
  if (context.pendingFence.includes(target)) return `refusing switchover of ${fed} to ${target}: it is a former primary waiting to be fenced`;
  return null;
}

/** Why an operator failover request must be refused, or null when it may start. */
export function failoverRefusal(context: FederationContext, target: string | undefined): string | null {
  const fed = context.federation;
  const to = target ? ` to ${target}` : "";
  if (context.operation) return `refusing failover of ${fed}${to}: ${context.operation.kind} ${context.operation.id} is in flight`;
  if (context.designatedPrimary === null) return `refusing failover of ${fed}${to}: there is no designated primary to fail over from`;
  if (target === undefined) return null;
  if (target === context.designatedPrimary) return `refusing failover of ${fed}${to}: it is already the designated primary`;
  if (!isEligibleTarget(context, target)) return `refusing failover of ${fed}${to}: not an eligible member (unknown, diverged or waiting to be fenced)`;
  return null;
}

/**
 * Why a rejoin request must be refused, or null when it may start: the member is marked diverged,
 * or (`notFollowing`) it is a replica that does not follow the designated primary — e.g. one that
 * replayed past the new primary's fork point after a failover, which only a re-clone brings back.
 */
export function rejoinRefusal(context: FederationContext, member: string, notFollowing?: string): string | null {
  const fed = context.federation;
  if (context.operation) return `refusing rejoin of ${member} to ${fed}: ${context.operation.kind} ${context.operation.id} is in flight`;
  if (member === context.designatedPrimary) return `refusing rejoin of ${member} to ${fed}: it is the designated primary`;
  if (context.pendingFence.includes(member)) return `refusing rejoin of ${member} to ${fed}: it is a former primary not fenced yet (it is marked diverged once it is)`;
  if (!context.diverged.includes(member) && notFollowing === undefined) return `refusing rejoin of ${member} to ${fed}: it is not marked diverged and follows the primary`;
  if (context.designatedPrimary === null) return `refusing rejoin of ${member} to ${fed}: there is no designated primary to clone from`;
  return null;
}

/** The member a failover would promote now, with its worst-case loss; null when there is no estimate. */
export function failoverCandidate(context: FederationContext): LossEstimate | null {
  const op = context.operation;
  const eligible = context.lossEstimates.filter(
    (e) => isEligibleTarget(context, e.target) && e.target !== op?.from,
  );
  if (op?.target) return eligible.find((e) => e.target === op.target) ?? null;
  const sorted = [...eligible].sort(
    (a, b) => a.worstCaseLossMs - b.worstCaseLossMs || a.lossBytes - b.lossBytes || a.target.localeCompare(b.target),
  );
  return sorted[0] ?? null;
}

export interface FailoverVerdict {
  promote: boolean;
  candidate: LossEstimate | null;
  /** The lastDecision sentence. */
  sentence: string;
}

/**
 * The RPO gate (safety rule 3b). Automatic failover promotes only in automatic mode, unpaused,
 * within the budget; an operator-requested one within the budget; beyond the budget only with an
 * accepted loss that covers the current worst case.
 */
export function failoverVerdict(context: FederationContext): FailoverVerdict {
  const fed = context.federation;
  const op = context.operation;
  const candidate = failoverCandidate(context);
  if (!op || !candidate) {
    const who = op?.target ?? "any eligible member";
    return { promote: false, candidate: null, sentence: `not failing over ${fed}: no loss estimate for ${who} yet; waiting for an estimate or approval` };
  }
  const to = `${fed} to ${candidate.target}`;
  const loss = `worst-case loss ${formatMs(candidate.worstCaseLossMs)} (${formatBytes(candidate.lossBytes)})`;
  const budget = `budget ${formatMs(context.rpo.budgetMs)}`;
  const within = candidate.worstCaseLossMs <= context.rpo.budgetMs;
  if (op.acceptedLossMs !== undefined && op.acceptedLossMs >= candidate.worstCaseLossMs) {
    const who = op.approvedBy ?? op.requestedBy;
    return { promote: true, candidate, sentence: `failing over ${to}: ${loss}; ${who} accepted up to ${formatMs(op.acceptedLossMs)}` };
  }
  if (op.automatic) {
    if (context.failoverMode === "manual")
      return { promote: false, candidate, sentence: `not failing over ${to}: failover mode is manual (${loss}, ${budget}); waiting for approval` };
    if (context.paused)
      return { promote: false, candidate, sentence: `not failing over ${to}: automation is paused (${loss}, ${budget}); waiting for approval` };
    if (!within) return { promote: false, candidate, sentence: `not failing over ${to}: ${loss} exceeds ${budget}; waiting for approval` };
    return { promote: true, candidate, sentence: `failing over ${to}: ${loss} within ${budget}` };
  }
  if (within) return { promote: true, candidate, sentence: `failing over ${to} as ${op.requestedBy} asked: ${loss} within ${budget}` };
  const accepted = op.acceptedLossMs !== undefined ? ` and the ${formatMs(op.acceptedLossMs)} accepted does not cover it` : "";
  return { promote: false, candidate, sentence: `not failing over ${to}: ${loss} exceeds ${budget}${accepted}; waiting for approval` };
}

type FailoverRequest = Extract<FederationEvent, { type: "FAILOVER" }>;

/** What every operator request carries. */
interface OperatorRequest {
  operationId: string;
  reason: string;
  requestedBy: string;
  atMs: number;
}

/** The operation an operator's request starts, from the designated primary at that moment. */
export function requestedOperation(context: FederationContext, event: OperatorRequest, kind: Operation["kind"], target: string | null, step: Operation["step"]): Operation {
  return {
    id: event.operationId,
    kind,
    target,
    from: context.designatedPrimary,
    reason: event.reason,
    requestedBy: event.requestedBy,
    startedAtMs: event.atMs,
    automatic: false,
    promoteIssued: false,
    step,
  };
}

/** The operation an operator's FAILOVER starts: it confirms the old primary is down before the gate. */
export function requestedFailover(context: FederationContext, event: FailoverRequest): Operation {
  return {
    ...requestedOperation(context, event, "failover", event.target ?? null, "confirm"),
    ...(event.acceptDataLossMs !== undefined ? { acceptedLossMs: event.acceptDataLossMs, approvedBy: event.requestedBy } : {}),
  };
}

/**
 * What the RPO gate would say if `event` were sent now and the loss estimates were `estimates`
 * (what the confirm step hands the gate): the failover dry run, through the same candidate filter.
 */
export function requestedFailoverVerdict(context: FederationContext, event: FailoverRequest, estimates: LossEstimate[]): FailoverVerdict {
  return failoverVerdict({ ...context, operation: requestedFailover(context, event), lossEstimates: estimates });
}

/** Why an APPROVE does not let the waiting failover promote. */
export function approvalShortfall(context: FederationContext, acceptedLossMs: number | undefined): string {
  const candidate = failoverCandidate(context);
  if (context.operation?.kind !== "failover" || context.operation.step !== "awaitApproval") return "the operation is not waiting for approval";
  if (!candidate) return "there is no loss estimate yet";
  if (acceptedLossMs === undefined) return `it accepts no loss, worst case is ${formatMs(candidate.worstCaseLossMs)}`;
  return `accepted loss ${formatMs(acceptedLossMs)} does not cover worst-case loss ${formatMs(candidate.worstCaseLossMs)} for ${candidate.target}`;
}
