/**
 * The federation machine's named implementations (xstate's `setup`): placeholder effect actors,
 * the delays read from `context.timeouts`, guards and context updates. The states and rows that
 * use them are the table in machines/federation.ts.
 *
 * Pure: every effect actor's placeholder rejects; the coordinator supplies the real ones with
 * `.provide({ actors })`.
 */
import { assign, fromPromise, setup } from "xstate";
import {
  approvalShortfall,
  requestedOperation,
  failoverCandidate,
  failoverRefusal,
  failoverVerdict,
  isEligibleTarget,
  rejoinRefusal,
  requestedFailover,
  switchoverRefusal,
} from "./federation-decisions.js";
import { delayMs } from "./federation-timeouts.js";
import {
  DEMOTION_TOKEN_LOST,
  type Alert,
  type AwaitDemotionTokenInput,
  type AwaitDemotionTokenOutput,
  type ConfirmPrimaryDownInput,
  type ConfirmPrimaryDownOutput,
  type DemotePrimaryInput,
  type FederationContext,
  type FederationEvent,
  type FederationInput,
  type FenceAndDemoteFormerInput,
  type Operation,
  type OperationOutcome,
  type OperationStep,
  type PreflightInput,
  type PreflightOutput,
  type PromoteWithTokenInput,
  type PromoteWithoutTokenInput,
  type RejoinMemberInput,
  type UndoDemotionInput,
  type VerifySwitchoverInput,
  type VerifySwitchoverOutput,
} from "./federation-types.js";
import { abortCause, operationLabel, requestedByWhy } from "./federation-words.js";
import { formatBytes, formatMs } from "./units.js";

function notProvided(name: string): never {
  throw new Error(`actor ${name} not provided: the coordinator supplies it with .provide({ actors })`);
}

function withAlert(alerts: Alert[], alert: Alert): Alert[] {
  return [...alerts.filter((a) => a.name !== alert.name), alert];
}

export const federationSetup = setup({
  types: {
    context: {} as FederationContext,
    events: {} as FederationEvent,
    input: {} as FederationInput,
  },
  actors: {
    preflight: fromPromise<PreflightOutput, PreflightInput>(async () => notProvided("preflight")),
    demotePrimary: fromPromise<void, DemotePrimaryInput>(async () => notProvided("demotePrimary")),
    awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(async () => notProvided("awaitDemotionToken")),
    promoteWithToken: fromPromise<void, PromoteWithTokenInput>(async () => notProvided("promoteWithToken")),
    verifySwitchover: fromPromise<VerifySwitchoverOutput, VerifySwitchoverInput>(async () => notProvided("verifySwitchover")),
    undoDemotion: fromPromise<void, UndoDemotionInput>(async () => notProvided("undoDemotion")),
    confirmPrimaryDown: fromPromise<ConfirmPrimaryDownOutput, ConfirmPrimaryDownInput>(async () => notProvided("confirmPrimaryDown")),
    promoteWithoutToken: fromPromise<void, PromoteWithoutTokenInput>(async () => notProvided("promoteWithoutToken")),
    fenceAndDemoteFormer: fromPromise<void, FenceAndDemoteFormerInput>(async () => notProvided("fenceAndDemoteFormer")),
    rejoinMember: fromPromise<void, RejoinMemberInput>(async () => notProvided("rejoinMember")),
  },
  // The machine's timers, from context.timeouts (input over defaultTimeouts): one clock per step.
  delays: {
    stepTimeout: ({ context }) => delayMs(context, "stepTimeout"),
    tokenTimeout: ({ context }) => delayMs(context, "tokenTimeout"),
    promoteTimeout: ({ context }) => delayMs(context, "promoteTimeout"),
    suspectGrace: ({ context }) => delayMs(context, "suspectGrace"),
    confirmRetry: ({ context }) => delayMs(context, "confirmRetry"),
    rejoinTimeout: ({ context }) => delayMs(context, "rejoinTimeout"),
  },
  guards: {
    hasDesignatedPrimary: ({ context }) => context.designatedPrimary !== null,
    switchoverAllowed: ({ context, event }) => event.type === "SWITCHOVER" && switchoverRefusal(context, event.target) === null,
    failoverRequestAllowed: ({ context, event }) => event.type === "FAILOVER" && failoverRefusal(context, event.target) === null,
    rejoinAllowed: ({ context, event }) => event.type === "REJOIN" && rejoinRefusal(context, event.member, event.notFollowing) === null,
    rejoinPreapproved: ({ event }) => event.type === "REJOIN" && event.approved === true,
    automationPaused: ({ context }) => context.paused,
    demotionTokenLost: ({ event }) => "error" in event && typeof event.error === "object" && event.error !== null && "code" in event.error && event.error.code === DEMOTION_TOKEN_LOST,
    abortMatches: ({ context, event }) => event.type === "ABORT" && context.operation?.id === event.operationId,
    approvalMatches: ({ context, event }) => event.type === "APPROVE" && context.operation?.id === event.operationId,
    approvalCoversLoss: ({ context, event }) => {
      if (event.type !== "APPROVE" || context.operation?.id !== event.operationId || event.acceptedLossMs === undefined) return false;
      const candidate = failoverCandidate(context);
      return candidate !== null && event.acceptedLossMs >= candidate.worstCaseLossMs;
    },
    preflightPassed: ({ context }, output: PreflightOutput) => output.ok && output.targetLagMs <= context.rpo.budgetMs,
    switchoverVerified: (_, output: VerifySwitchoverOutput) => output.ok,
    primaryConfirmedDown: (_, output: ConfirmPrimaryDownOutput) => output.fenced || output.leaseExpired,
    failoverMayPromote: ({ context }) => failoverVerdict(context).promote,
    isPendingFence: ({ context, event }) => event.type === "FORMER_PRIMARY_SEEN" && context.pendingFence.includes(event.member),
    resolveNamesEligibleMember: ({ context, event }) => event.type === "RESOLVE" && isEligibleTarget(context, event.primary),
  },
  actions: {
    // --- operations start and end
    startSwitchover: assign(({ context, event }) => {
      if (event.type !== "SWITCHOVER") return {};
      const operation = requestedOperation(context, event, "switchover", event.target, "preflight");
      return {
        operation,
        demotionToken: null,
        lastDecision: `switchover ${event.operationId} of ${context.federation} from ${context.designatedPrimary ?? "?"} to ${event.target} accepted (${requestedByWhy(event.requestedBy, event.reason)})`,
      };
    }),
    startAutomaticFailover: assign(({ context, event }) => {
      if (event.type !== "PRIMARY_SUSPECT") return {};
      const operation: Operation = {
        id: `failover-${context.epoch}-${event.atMs}`,
        kind: "failover",
        target: null,
        from: context.designatedPrimary,
        reason: event.reason,
        requestedBy: "pgfed",
        startedAtMs: event.atMs,
        automatic: true,
        promoteIssued: false,
        step: "suspect",
      };
      return {
        operation,
        lastDecision: `primary ${context.designatedPrimary ?? "?"} of ${context.federation} suspected down (${event.reason}); waiting out the grace period before confirming`,
      };
    }),
    startRequestedFailover: assign(({ context, event }) => {
      if (event.type !== "FAILOVER") return {};
      return {
        operation: requestedFailover(context, event),
        lastDecision: `failover ${event.operationId} of ${context.federation} ${requestedByWhy(event.requestedBy, event.reason)}; confirming that ${context.designatedPrimary ?? "?"} is down first`,
      };
    }),
    startRejoin: assign(({ context, event }) => {
      if (event.type !== "REJOIN") return {};
      const approved = event.approved === true;
      const operation: Operation = { ...requestedOperation(context, event, "rejoin", event.member, approved ? "rejoin" : "rejoinApproval"), ...(approved ? { approvedBy: event.requestedBy } : {}) };
      return {
        operation,
        lastDecision: approved
          ? `rejoin ${event.operationId} of ${event.member} to ${context.federation} approved by ${event.requestedBy}; its diverged data will be discarded`
          : `rejoin ${event.operationId} of ${event.member} to ${context.federation} waits for approval: it discards the member's diverged data`,
      };
    }),
    refuseRequest: assign(({ context, event }) => {
      const fed = context.federation;
      switch (event.type) {
        case "SWITCHOVER":
          return { lastDecision: switchoverRefusal(context, event.target) ?? `refusing switchover of ${fed} to ${event.target}` };
        case "FAILOVER":
          return { lastDecision: failoverRefusal(context, event.target) ?? `refusing failover of ${fed}: ${context.operation ? "an operation is in flight" : "not allowed now"}` };
        case "REJOIN":
          return { lastDecision: rejoinRefusal(context, event.member, event.notFollowing) ?? `refusing rejoin of ${event.member} to ${fed}` };
        case "APPROVE":
          return {
            lastDecision: context.operation?.id === event.operationId
              ? `approval of ${event.operationId} by ${event.by} refused: ${approvalShortfall(context, event.acceptedLossMs)}`
              : `approval of ${event.operationId} by ${event.by} ignored: no such operation awaits approval`,
          };
        case "ABORT":
          return { lastDecision: `abort of ${event.operationId} by ${event.by} ignored: ${context.operation ? `operation ${context.operation.id} is at step ${context.operation.step}, which cannot be aborted` : "no operation is in flight"}` };
        case "RESOLVE":
          return { lastDecision: `resolve by ${event.by} refused: ${context.operation?.step === "operatorRequired" || context.operation === null ? `${event.primary} is not an eligible member` : "nothing requires an operator"}` };
        default:
          return {};
      }
    }),
    setStep: assign(({ context }, params: { step: OperationStep }) =>
      context.operation ? { operation: { ...context.operation, step: params.step } } : {},
    ),
    finishOperation: assign(({ context }, params: { outcome: OperationOutcome }) => {
      const op = context.operation;
      if (!op) return {};
      return {
        operation: null,
        demotionToken: null,
        lastOperation: { id: op.id, kind: op.kind, outcome: params.outcome, target: op.target, from: op.from },
      };
    }),
    recordCompletion: assign(({ context }) => {
      const op = context.operation;
      if (!op) return {};
      const detail =
        op.kind === "rejoin"
          ? `${op.target ?? "?"} follows ${context.designatedPrimary ?? "?"} again`
          : `${context.designatedPrimary ?? "?"} is the designated primary at epoch ${context.epoch}` +
            (op.acceptedLossMs !== undefined ? ` (accepted loss ${formatMs(op.acceptedLossMs)} by ${op.approvedBy ?? op.requestedBy})` : "");
      return { lastDecision: `${operationLabel(context, op)} completed: ${detail}` };
    }),
    recordCancel: assign(({ context }) => {
      const op = context.operation;
      if (!op) return {};
      return { lastDecision: `${operationLabel(context, op)} cancelled: primary ${op.from ?? "?"} recovered before it was confirmed down` };
    }),

    // --- switchover steps
    recordPreflight: assign(({ context }, output: PreflightOutput) => {
      const op = context.operation;
      if (!op) return {};
      const lag = `${formatMs(output.targetLagMs)} (${formatBytes(output.targetLagBytes)})`;
      const budget = formatMs(context.rpo.budgetMs);
      const passed = output.ok && output.targetLagMs <= context.rpo.budgetMs;
      const why = !output.ok ? `preflight failed: ${output.reason ?? "no reason given"}` : `lags ${lag}, more than the budget ${budget}`;
      return {
        lastDecision: passed
          ? `switchover ${op.id} of ${context.federation}: ${op.target ?? "?"} lags ${lag}, within the budget ${budget}; demoting ${op.from ?? "?"}`
          : `refusing switchover ${op.id} of ${context.federation} to ${op.target ?? "?"}: ${why}`,
      };
    }),
    storeToken: assign((_, output: AwaitDemotionTokenOutput) => ({ demotionToken: output.token })),
    /** The promote command is issued on entry: the target becomes the designated primary at epoch+1. */
    designateTarget: assign(({ context }) => {
      const op = context.operation;
      if (!op?.target) return {};
      const changed = op.target !== context.designatedPrimary;
      return {
        epoch: changed ? context.epoch + 1 : context.epoch,
        designatedPrimary: op.target,
        operation: { ...op, promoteIssued: true },
      };
    }),
    /** Abort: alert, and a sentence saying where it stopped and what happens next. */
    abortOperation: assign(({ context, event }, params: { then: string }) => {
      const op = context.operation;
      if (!op) return {};
      const sentence = `${operationLabel(context, op)} aborted at step ${op.step} (${abortCause(event)}); ${params.then}`;
      return { lastDecision: sentence, alerts: withAlert(context.alerts, { name: "PgfedOperationFailed", reason: sentence }) };
    }),
    recordUndone: assign(({ context }) => ({
      lastDecision: `${context.designatedPrimary ?? "?"} is the designated primary of ${context.federation} again at epoch ${context.epoch}; the aborted switchover changed nothing`,
    })),
    /** The undo failed: nobody is designated; the epoch moves on so that older commands are refused. */
    dropDesignation: assign(({ context, event }) => {
      const before = context.designatedPrimary;
      const cause = abortCause(event);
      const sentence = `re-designating ${before ?? "?"} failed (${cause}): ${context.federation} has no designated primary at epoch ${context.epoch + 1}; an operator must RESOLVE`;
      return {
        epoch: before === null ? context.epoch : context.epoch + 1,
        designatedPrimary: null,
        lastDecision: sentence,
        alerts: withAlert(context.alerts, { name: "PgfedNoPrimary", reason: sentence }),
      };
    }),

    // --- failover steps
    recordConfirmation: assign(({ context }, output: ConfirmPrimaryDownOutput) => {
      const op = context.operation;
      const how = output.fenced ? "is fenced" : "lost its primary lease (expired plus the clock-skew margin)";
      return {
        lossEstimates: output.candidates ?? context.lossEstimates,
        lastDecision: `confirmed ${op?.from ?? "?"} of ${context.federation} is down: it ${how}`,
      };
    }),
    recordUnconfirmed: assign(({ context, event }) => {
      const from = context.operation?.from ?? "?";
      const why = event.type.startsWith("xstate.done.actor.") ? "it is not fenced and its lease has not expired" : abortCause(event);
      return { lastDecision: `cannot confirm ${from} of ${context.federation} is down yet (${why}); trying again` };
    }),
    recordEstimates: assign(({ event }) => (event.type === "LOSS_ESTIMATES" ? { lossEstimates: event.candidates } : {})),
    /** Applies the RPO gate's verdict: the sentence always, the target and loss when it promotes. */
    recordVerdict: assign(({ context }) => {
      const verdict = failoverVerdict(context);
      const op = context.operation;
      if (!op) return {};
      if (!verdict.promote || !verdict.candidate) return { lastDecision: verdict.sentence };
      return {
        lastDecision: verdict.sentence,
        operation: { ...op, target: verdict.candidate.target, worstCaseLossMs: verdict.candidate.worstCaseLossMs },
      };
    }),
    alertAwaitingApproval: assign(({ context }) => ({
      alerts: withAlert(context.alerts, { name: "PgfedFailoverAwaitingApproval", reason: failoverVerdict(context).sentence }),
    })),
    clearAwaitingApproval: assign(({ context }) => ({
      alerts: context.alerts.filter((a) => a.name !== "PgfedFailoverAwaitingApproval"),
    })),
    recordApproval: assign(({ context, event }) => {
      if (event.type !== "APPROVE" || !context.operation) return {};
      const op: Operation = { ...context.operation, approvedBy: event.by };
      if (event.acceptedLossMs !== undefined) op.acceptedLossMs = event.acceptedLossMs;
      return { operation: op };
    }),
    recordRejoinApproval: assign(({ context, event }) => {
      if (event.type !== "APPROVE" || !context.operation) return {};
      return {
        operation: { ...context.operation, approvedBy: event.by },
        lastDecision: `rejoin ${context.operation.id} of ${context.operation.target ?? "?"} approved by ${event.by}; its diverged data will be discarded`,
      };
    }),
    recordFailoverBlocked: assign(({ context, event }) => {
      if (event.type !== "PRIMARY_SUSPECT") return {};
      const sentence = `not failing over ${context.federation}: automation is paused; primary ${context.designatedPrimary ?? "?"} suspected down (${event.reason})`;
      return { lastDecision: sentence, alerts: withAlert(context.alerts, { name: "PgfedFailoverBlocked", reason: sentence }) };
    }),
    recordSuspectDuringOperation: assign(({ context, event }) => {
      if (event.type !== "PRIMARY_SUSPECT") return {};
      const op = context.operation;
      const busy = op ? `${op.kind} ${op.id} is in flight` : "the federation has no designated primary";
      return { lastDecision: `primary of ${context.federation} suspected down (${event.reason}) while ${busy}; no new failover starts` };
    }),
    dropRejoinForFailover: assign(({ context }) => {
      const op = context.operation;
      if (!op) return {};
      return { lastOperation: { id: op.id, kind: op.kind, outcome: "cancelled" as const, target: op.target, from: op.from }, operation: null };
    }),
    /** A failover's former primary must be fenced and re-cloned before it serves again. */
    markFormerPendingFence: assign(({ context }) => {
      const former = context.operation?.from;
      if (!former || context.pendingFence.includes(former)) return {};
      return { pendingFence: [...context.pendingFence, former] };
    }),

    // --- rejoin, resolve, fencing of former primaries
    removeFromDiverged: assign(({ context }) => {
      const member = context.operation?.target;
      return { diverged: context.diverged.filter((m) => m !== member) };
    }),
    resolveDesignation: assign(({ context, event }) => {
      if (event.type !== "RESOLVE") return {};
      const changed = event.primary !== context.designatedPrimary;
      const epoch = changed ? context.epoch + 1 : context.epoch;
      return {
        epoch,
        designatedPrimary: event.primary,
        lastDecision: `${event.by} resolved ${context.federation}: ${event.primary} is the designated primary at epoch ${epoch} (${event.reason})`,
        alerts: context.alerts.filter((a) => a.name !== "PgfedNoPrimary"),
      };
    }),
    startFencing: assign(({ context, event }) => {
      if (event.type !== "FORMER_PRIMARY_SEEN") return {};
      return {
        fencing: event.member,
        lastDecision: `former primary ${event.member} of ${context.federation} is back; fencing it and pointing it at ${context.designatedPrimary ?? "nobody"}`,
      };
    }),
    markFencedDiverged: assign(({ context }) => {
      const member = context.fencing;
      if (!member) return {};
      return {
        fencing: null,
        pendingFence: context.pendingFence.filter((m) => m !== member),
        diverged: context.diverged.includes(member) ? context.diverged : [...context.diverged, member],
        lastDecision: `former primary ${member} of ${context.federation} fenced and marked diverged; it must be rejoined before it serves again`,
      };
    }),
    alertFenceFailed: assign(({ context, event }) => {
      const member = context.fencing ?? "?";
      const sentence = `fencing former primary ${member} of ${context.federation} failed (${abortCause(event)}); it may still accept writes; retrying when it is seen again`;
      return { fencing: null, lastDecision: sentence, alerts: withAlert(context.alerts, { name: "PgfedFormerPrimaryNotFenced", reason: sentence }) };
    }),

    alertNoPrimaryAtStart: assign(({ context }) => {
      const sentence = `${context.federation} has no designated primary; an operator must RESOLVE`;
      return { lastDecision: sentence, alerts: withAlert(context.alerts, { name: "PgfedNoPrimary", reason: sentence }) };
    }),

    // --- automation switches and housekeeping
    pause: assign(({ context, event }) => {
      if (event.type !== "PAUSE") return {};
      return { paused: true, lastDecision: `automation of ${context.federation} paused by ${event.by} (${event.reason}): no automatic failover will start` };
    }),
    pauseForOutsideChange: assign(({ context, event }) => {
      if (event.type !== "OUTSIDE_CHANGE") return {};
      return { paused: true, lastDecision: event.sentence, alerts: withAlert(context.alerts, { name: "PgfedTopologyChangedOutside", reason: event.sentence }) };
    }),
    resume: assign(({ context, event }) => {
      if (event.type !== "RESUME") return {};
      // Resuming is the operator's word that the topology is pgfed's again.
      return { paused: false, alerts: context.alerts.filter((a) => a.name !== "PgfedTopologyChangedOutside"), lastDecision: `automation of ${context.federation} resumed by ${event.by}` };
    }),
    configure: assign(({ context, event }) => {
      if (event.type !== "CONFIGURE") return {};
      return {
        rpo: event.rpo,
        failoverMode: event.failoverMode,
        lastDecision: `${context.federation} reconfigured: RPO budget ${formatMs(event.rpo.budgetMs)}, failover ${event.failoverMode}`,
      };
    }),
    clearAlert: assign(({ context, event }) => {
      if (event.type !== "CLEAR_ALERT") return {};
      return { alerts: context.alerts.filter((a) => a.name !== event.name) };
    }),
  },
});
