/**
 * The federation: which member is the designated primary, at which epoch, and the one operation
 * (switchover, failover, rejoin) that may be in flight.
 *
 * Pure: every effect is an invoked actor named in `setup({ actors })` whose placeholder rejects;
 * the coordinator supplies the real ones with `.provide({ actors, delays })`. Each actor is an
 * idempotent "ensure" step, because restoring a persisted snapshot taken inside an invoking state
 * starts that actor again (STACK.md).
 *
 * Decisions that matter for safety live in small pure functions below (`switchoverRefusal`,
 * `failoverVerdict`, …) so that the guard, the lastDecision sentence and the tests share them.
 *
 * Design decisions:
 * - Pause blocks automation only. While paused, PRIMARY_SUSPECT starts nothing (an alert is
 *   raised) and an automatic failover already past its confirm step stops at the approval gate.
 *   Operator requests (SWITCHOVER, FAILOVER, REJOIN, APPROVE, ABORT, RESOLVE) are still served:
 *   pausing is what an operator does before driving things by hand.
 * - Abort before the promote command: re-designate the old primary (actor `undoDemotion`); if that
 *   fails there is NO designated primary (epoch bumped so that older commands are refused) and an
 *   operator must RESOLVE. Abort after the promote command: never undo (the target may already be
 *   primary); the target stays designated and an operator must RESOLVE.
 * - The epoch changes exactly when `designatedPrimary` changes, "no primary" (null) included.
 * - A former primary left behind by a failover is fenced in a parallel region, so that fencing it
 *   never waits for another operation to finish.
 */
import { and, assign, fromPromise, setup, type EventObject } from "xstate";

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

export type FailoverMode = "automatic" | "manual";

export interface RpoPolicy {
  /** Most exposure the federation accepts. */
  budgetMs: number;
  /** Fraction of the budget at which lag alerts warn (used by the coordinator, kept for status). */
  warnAt: number;
}

/** Worst-case loss if `target` were promoted now (DESIGN.md, "Measuring exposure"). */
export interface LossEstimate {
  target: string;
  worstCaseLossMs: number;
  lossBytes: number;
}

export type OperationKind = "switchover" | "failover" | "rejoin";

export type OperationStep =
  | "preflight"
  | "demote"
  | "awaitToken"
  | "promote"
  | "verify"
  | "undo"
  | "suspect"
  | "confirm"
  | "unconfirmed"
  | "awaitApproval"
  | "promoteWithoutToken"
  | "rejoinApproval"
  | "rejoin"
  | "operatorRequired";

export interface Operation {
  id: string;
  kind: OperationKind;
  /** Member to promote (switchover, failover) or to rejoin; null while an automatic failover has not chosen. */
  target: string | null;
  /** The designated primary when the operation started. */
  from: string | null;
  reason: string;
  requestedBy: string;
  startedAtMs: number;
  /** pgfed started it on its own (automatic failover). */
  automatic: boolean;
  /** Loss an operator accepted explicitly (audit record, safety rule 3). */
  acceptedLossMs?: number;
  approvedBy?: string;
  /** Worst-case loss of the target when the promotion was decided. */
  worstCaseLossMs?: number;
  /** The promote command has been issued: from here on an abort never undoes. */
  promoteIssued: boolean;
  step: OperationStep;
}

export type AlertName =
  | "PgfedOperationFailed"
  | "PgfedNoPrimary"
  | "PgfedFailoverAwaitingApproval"
  | "PgfedFailoverBlocked"
  | "PgfedFormerPrimaryNotFenced"
  | "PgfedTopologyChangedOutside";

export interface Alert {
  name: AlertName;
  reason: string;
}

export type OperationOutcome = "completed" | "aborted" | "refused" | "cancelled" | "resolved";

export interface FinishedOperation {
  id: string;
  kind: OperationKind;
  outcome: OperationOutcome;
  target: string | null;
  from: string | null;
}

export interface FederationInput {
  federation: string;
  members: string[];
  /** The designated primary at start, null when unknown (an operator must RESOLVE). */
  designatedPrimary: string | null;
  epoch?: number;
  rpo: RpoPolicy;
  failoverMode: FailoverMode;
  paused?: boolean;
}

export interface FederationContext {
  federation: string;
  epoch: number;
  designatedPrimary: string | null;
  members: string[];
  rpo: RpoPolicy;
  failoverMode: FailoverMode;
  paused: boolean;
  operation: Operation | null;
  lastOperation: FinishedOperation | null;
  /** One human sentence with the numbers behind the last decision (logs, API, CLI). */
  lastDecision: string;
  /** Alerts currently raised, at most one per name (the newest reason wins). */
  alerts: Alert[];
  diverged: string[];
  /** Former primaries of unplanned failovers, to fence and mark diverged as soon as they are seen. */
  pendingFence: string[];
  /** The former primary being fenced right now (parallel region `formerPrimaries`). */
  fencing: string | null;
  demotionToken: string | null;
  /** Latest worst-case loss per candidate, from the confirm step or LOSS_ESTIMATES events. */
  lossEstimates: LossEstimate[];
}

export type FederationEvent =
  | { type: "SWITCHOVER"; operationId: string; target: string; reason: string; requestedBy: string; atMs: number }
  | {
      type: "FAILOVER";
      operationId: string;
      target?: string;
      acceptDataLossMs?: number;
      reason: string;
      requestedBy: string;
      atMs: number;
    }
  | {
      type: "REJOIN";
      operationId: string;
      member: string;
      reason: string;
      requestedBy: string;
      approved?: boolean;
      atMs: number;
    }
  | { type: "APPROVE"; operationId: string; acceptedLossMs?: number; by: string }
  | { type: "ABORT"; operationId: string; reason: string; by: string }
  | { type: "PRIMARY_SUSPECT"; atMs: number; reason: string }
  | { type: "PRIMARY_RECOVERED"; atMs: number }
  | { type: "LOSS_ESTIMATES"; candidates: LossEstimate[]; atMs: number }
  | { type: "FORMER_PRIMARY_SEEN"; member: string }
  | { type: "PAUSE"; by: string; reason: string }
  /** Another writer changed a member's spec.replica.primary (the runtime saw it in managedFields). */
  | { type: "OUTSIDE_CHANGE"; member: string; manager: string; sentence: string }
  | { type: "RESUME"; by: string }
  | { type: "CONFIGURE"; rpo: RpoPolicy; failoverMode: FailoverMode }
  | { type: "RESOLVE"; primary: string; by: string; reason: string }
  | { type: "CLEAR_ALERT"; name: AlertName; by: string };

// Inputs and outputs of the effect actors. Every input carries the epoch the command belongs to.
export interface StepInput {
  federation: string;
  epoch: number;
  operationId: string;
}
export interface PreflightInput extends StepInput {
  from: string;
  target: string;
  budgetMs: number;
}
export interface PreflightOutput {
  ok: boolean;
  targetLagBytes: number;
  targetLagMs: number;
  reason?: string;
}
export interface DemotePrimaryInput extends StepInput {
  from: string;
  target: string;
}
export interface AwaitDemotionTokenInput extends StepInput {
  member: string;
}
export interface AwaitDemotionTokenOutput {
  token: string;
}
export interface PromoteWithTokenInput extends StepInput {
  target: string;
  from: string;
  token: string;
}
export interface VerifySwitchoverInput extends StepInput {
  target: string;
  from: string;
  token: string;
}
export interface VerifySwitchoverOutput {
  ok: boolean;
  reason?: string;
}
export interface UndoDemotionInput extends StepInput {
  member: string;
}
export interface ConfirmPrimaryDownInput extends StepInput {
  member: string;
}
export interface ConfirmPrimaryDownOutput {
  fenced: boolean;
  leaseExpired: boolean;
  candidates?: LossEstimate[];
}
export interface PromoteWithoutTokenInput extends StepInput {
  target: string;
  former: string | null;
  worstCaseLossMs: number;
  acceptedLossMs: number | null;
}
export interface FenceAndDemoteFormerInput {
  federation: string;
  epoch: number;
  member: string;
  newPrimary: string | null;
}
export interface RejoinMemberInput extends StepInput {
  member: string;
  primary: string | null;
}

/** Default delays; the coordinator overrides them from config with `.provide({ delays })`. */
export const defaultDelays = {
  /** Longest wait for any step without a more specific timeout. */
  stepTimeout: 60_000,
  /** Longest wait for the old primary's demotion token. */
  tokenTimeout: 120_000,
  /** Longest wait for the promote command to finish (CNPG itself never gives up, CNPG.md). */
  promoteTimeout: 120_000,
  /** Grace before confirming a suspected primary down (a lease TTL). */
  suspectGrace: 10_000,
  /** Pause before trying again to confirm a suspected primary down. */
  confirmRetry: 5_000,
  /** Longest wait for a rejoin: a re-clone copies the whole database (pg_basebackup), hours for a large one. */
  rejoinTimeout: 6 * 60 * 60_000,
} as const;

// ---------------------------------------------------------------------------------------------
// Pure helpers: sentences and decisions
// ---------------------------------------------------------------------------------------------

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 120) return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
  const min = Math.floor(s / 60);
  const rest = Math.round(s - min * 60);
  return rest ? `${min} min ${rest} s` : `${min} min`;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit] ?? "B"}`;
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

function requireOperation(context: FederationContext): Operation {
  if (!context.operation) throw new Error(`federation ${context.federation}: a step ran with no operation in flight (bug)`);
  return context.operation;
}

function requireString(value: string | null, what: string, context: FederationContext): string {
  if (value === null) throw new Error(`federation ${context.federation}: ${what} is missing (bug)`);
  return value;
}

function stepInput(context: FederationContext): StepInput {
  return { federation: context.federation, epoch: context.epoch, operationId: requireOperation(context).id };
}

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

/** Why a rejoin request must be refused, or null when it may start. */
export function rejoinRefusal(context: FederationContext, member: string): string | null {
  const fed = context.federation;
  if (context.operation) return `refusing rejoin of ${member} to ${fed}: ${context.operation.kind} ${context.operation.id} is in flight`;
  if (!context.diverged.includes(member)) return `refusing rejoin of ${member} to ${fed}: it is not marked diverged`;
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

function withAlert(alerts: Alert[], alert: Alert): Alert[] {
  return [...alerts.filter((a) => a.name !== alert.name), alert];
}

/** What made an operation stop, from the event that stopped it. */
/** "requested by alice: kernel upgrade", or "requested by alice" when no reason was given. */
const requestedByWhy = (who: string, reason: string): string => `requested by ${who}${reason ? `: ${reason}` : ""}`;

function abortCause(event: EventObject): string {
  if (event.type.startsWith("xstate.after.")) return "timed out";
  if (event.type.startsWith("xstate.error.actor.") && "error" in event) return `error: ${errorText(event.error)}`;
  if (event.type.startsWith("xstate.done.actor.verifySwitchover") && "output" in event) {
    const output = event.output as VerifySwitchoverOutput;
    return `verification failed: ${output.reason ?? "no reason given"}`;
  }
  if (event.type === "ABORT" && "by" in event && "reason" in event) return `aborted by ${String(event.by)}${String(event.reason) ? `: ${String(event.reason)}` : ""}`;
  return event.type;
}

function operationLabel(context: FederationContext, op: Operation): string {
  const to = op.target ? ` to ${op.target}` : "";
  return op.kind === "rejoin" ? `rejoin ${op.id} of ${op.target ?? "?"} to ${context.federation}` : `${op.kind} ${op.id} of ${context.federation}${to}`;
}

/** One line for the API status and the CLI progress line. */
export function federationStepSentence(snapshot: { context: FederationContext }): string {
  const c = snapshot.context;
  const op = c.operation;
  if (!op) {
    const primary = c.designatedPrimary ? `${c.designatedPrimary} is the designated primary` : "no designated primary";
    return `${c.federation}: ${primary} at epoch ${c.epoch}${c.paused ? " (automation paused)" : ""}; ${c.lastDecision}`;
  }
  const from = op.from ?? "?";
  const target = op.target ?? "?";
  const steps: Record<OperationStep, string> = {
    preflight: `checking that ${target} can take over from ${from} within the RPO budget`,
    demote: `demoting ${from} (patching it to follow ${target})`,
    awaitToken: `waiting for ${from}'s demotion token`,
    promote: `promoting ${target} with ${from}'s demotion token at epoch ${c.epoch}`,
    verify: `verifying that ${target} is primary and ${from} follows it`,
    undo: `aborting: re-designating ${from} as primary`,
    suspect: `primary ${from} suspected down; grace period before confirming`,
    confirm: `confirming that ${from} is down (fenced, or its lease expired)`,
    unconfirmed: `could not confirm that ${from} is down yet; trying again`,
    awaitApproval: c.lastDecision,
    promoteWithoutToken: `promoting ${target} without a token at epoch ${c.epoch}`,
    rejoinApproval: `rejoin of ${target} waits for approval`,
    rejoin: `re-cloning ${target} from ${c.designatedPrimary ?? "?"}`,
    operatorRequired: `operator required: ${c.lastDecision}`,
  };
  return `${operationLabel(c, op)}: ${steps[op.step]}`;
}

function notProvided(name: string): never {
  throw new Error(`actor ${name} not provided: the coordinator supplies it with .provide({ actors })`);
}

// ---------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------

const STEADY = "#federation.operation.steady";
const OPERATOR_REQUIRED = "#federation.operation.operatorRequired";

// What an aborted operation does next (the `then` of abortOperation, part of its lastDecision).
const NOTHING_CHANGED = "nothing was changed";
const REDESIGNATING_OLD_PRIMARY = "re-designating the old primary";
const TARGET_MAY_BE_PRIMARY = "not undoing: the target may already be primary; operator required";
const TARGET_WAS_PROMOTED = "not undoing: the target was promoted; operator required";
const PRIMARY_STAYS = "the primary stays designated";
const PRIMARY_STAYS_MAYBE_FENCED = "the primary stays designated (it may have been fenced)";
const OLD_PRIMARY_FENCED = "nothing promoted; the old primary stays designated but is fenced";
const MEMBER_STAYS_DIVERGED = "the member stays diverged";
const OLD_PRIMARY_DEMOTED_NO_TOKEN =
  "not undoing: the old primary is already a clean replica and nothing was promoted, so no member accepts writes; operator required (docs/operations.md, \"Demotion without a token\")";

/** The error code the awaitDemotionToken effect throws when CNPG ended the switch without a token. */
export const DEMOTION_TOKEN_LOST = "coordinator.demotion_token_lost";

const setStep = (step: OperationStep) => ({ type: "setStep", params: { step } }) as const;
const finishAs = (outcome: OperationOutcome) => ({ type: "finishOperation", params: { outcome } }) as const;
const abortOperation = (then: string) => ({ type: "abortOperation", params: { then } }) as const;

// Ways out of an operation step, shared by its error, timeout and ABORT rows. Each row keeps its
// own description: the coordinator logs and audits it verbatim.

/** Stop before anything irreversible: alert, record the operation as aborted, back to steady. */
function abortToSteady(then: string, description: string) {
  return { target: STEADY, actions: [abortOperation(then), finishAs("aborted")], description };
}

/** Stop a switchover before its promote: alert, then re-designate the old primary. */
function abortToUndo(description: string) {
  return { target: "undoing", actions: abortOperation(REDESIGNATING_OLD_PRIMARY), description };
}

/** Stop after the promote was issued: alert and never undo; an operator must RESOLVE. */
function abortToOperator(then: string, description: string) {
  return { target: OPERATOR_REQUIRED, actions: [abortOperation(then), setStep("operatorRequired")], description };
}

/** Re-designating the old primary failed: nobody is designated; an operator must RESOLVE. */
function dropToOperator(description: string) {
  return { target: OPERATOR_REQUIRED, actions: ["dropDesignation" as const, setStep("operatorRequired")], description };
}

/** The failed primary is not confirmed down (yet): wait in `unconfirmed`, then try again. */
function notConfirmed(description: string) {
  return { target: "unconfirmed", actions: "recordUnconfirmed" as const, description };
}

/** The primary came back before it was confirmed down: the failover is cancelled. */
function cancelOnRecovery(description: string) {
  return { target: STEADY, actions: ["recordCancel" as const, finishAs("cancelled")], description };
}

/** An operator's ABORT of the operation in flight, leaving the way `row` does. */
function onAbort<Row extends object>(row: Row) {
  return { guard: "abortMatches" as const, ...row };
}

export const federationMachine = setup({
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
  delays: { ...defaultDelays },
  guards: {
    hasDesignatedPrimary: ({ context }) => context.designatedPrimary !== null,
    switchoverAllowed: ({ context, event }) => event.type === "SWITCHOVER" && switchoverRefusal(context, event.target) === null,
    failoverRequestAllowed: ({ context, event }) => event.type === "FAILOVER" && failoverRefusal(context, event.target) === null,
    rejoinAllowed: ({ context, event }) => event.type === "REJOIN" && rejoinRefusal(context, event.member) === null,
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
      const operation: Operation = {
        id: event.operationId,
        kind: "switchover",
        target: event.target,
        from: context.designatedPrimary,
        reason: event.reason,
        requestedBy: event.requestedBy,
        startedAtMs: event.atMs,
        automatic: false,
        promoteIssued: false,
        step: "preflight",
      };
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
      const operation: Operation = {
        id: event.operationId,
        kind: "failover",
        target: event.target ?? null,
        from: context.designatedPrimary,
        reason: event.reason,
        requestedBy: event.requestedBy,
        startedAtMs: event.atMs,
        automatic: false,
        promoteIssued: false,
        step: "confirm",
        ...(event.acceptDataLossMs !== undefined ? { acceptedLossMs: event.acceptDataLossMs, approvedBy: event.requestedBy } : {}),
      };
      return {
        operation,
        lastDecision: `failover ${event.operationId} of ${context.federation} ${requestedByWhy(event.requestedBy, event.reason)}; confirming that ${context.designatedPrimary ?? "?"} is down first`,
      };
    }),
    startRejoin: assign(({ context, event }) => {
      if (event.type !== "REJOIN") return {};
      const approved = event.approved === true;
      const operation: Operation = {
        id: event.operationId,
        kind: "rejoin",
        target: event.member,
        from: context.designatedPrimary,
        reason: event.reason,
        requestedBy: event.requestedBy,
        startedAtMs: event.atMs,
        automatic: false,
        promoteIssued: false,
        step: approved ? "rejoin" : "rejoinApproval",
        ...(approved ? { approvedBy: event.requestedBy } : {}),
      };
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
          return { lastDecision: rejoinRefusal(context, event.member) ?? `refusing rejoin of ${event.member} to ${fed}` };
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
}).createMachine({
  id: "federation",
  description: "One federation of CNPG clusters: its designated primary, its epoch and the operation in flight.",
  context: ({ input }) => ({
    federation: input.federation,
    epoch: input.epoch ?? 1,
    designatedPrimary: input.designatedPrimary,
    members: [...input.members],
    rpo: { ...input.rpo },
    failoverMode: input.failoverMode,
    paused: input.paused ?? false,
    operation: null,
    lastOperation: null,
    lastDecision: `${input.federation} started with ${input.designatedPrimary ?? "no"} designated primary`,
    alerts: [],
    diverged: [],
    pendingFence: [],
    fencing: null,
    demotionToken: null,
    lossEstimates: [],
  }),
  type: "parallel",
  states: {
    operation: {
      description: "At most one operation at a time: switchover, failover or rejoin.",
      initial: "starting",
      states: {
        starting: {
          description: "Decides where a fresh federation begins.",
          always: [
            { guard: "hasDesignatedPrimary", target: "steady", description: "federation starts with a designated primary" },
            {
              target: "operatorRequired",
              actions: "alertNoPrimaryAtStart",
              description: "federation starts without a designated primary; an operator must name one",
            },
          ],
        },

        steady: {
          description: "A designated primary, nothing in flight.",
          on: {
            SWITCHOVER: [
              {
                guard: "switchoverAllowed",
                target: "switchover",
                actions: "startSwitchover",
                description: "switchover accepted: checking the target's lag before demoting the primary",
              },
              { actions: "refuseRequest", description: "switchover refused; the reason is in lastDecision" },
            ],
            FAILOVER: [
              {
                guard: "failoverRequestAllowed",
                target: "failover.confirming",
                actions: "startRequestedFailover",
                description: "operator-requested failover accepted: confirming that the primary is down before promoting",
              },
              { actions: "refuseRequest", description: "failover refused; the reason is in lastDecision" },
            ],
            REJOIN: [
              {
                guard: and(["rejoinAllowed", "rejoinPreapproved"]),
                target: "rejoin.rejoining",
                actions: "startRejoin",
                description: "pre-approved rejoin accepted: re-cloning the diverged member from the primary",
              },
              {
                guard: "rejoinAllowed",
                target: "rejoin.awaitingApproval",
                actions: "startRejoin",
                description: "rejoin accepted; it discards the member's diverged data, so it waits for approval",
              },
              { actions: "refuseRequest", description: "rejoin refused; the reason is in lastDecision" },
            ],
            PRIMARY_SUSPECT: [
              {
                guard: "automationPaused",
                actions: "recordFailoverBlocked",
                description: "primary suspected down but automation is paused: no failover starts; alert raised",
              },
              {
                target: "failover.suspect",
                actions: "startAutomaticFailover",
                description: "primary suspected down: automatic failover begins with a grace period",
              },
            ],
          },
        },

        switchover: {
          description: "Planned switchover with zero data loss: demote, hand over the demotion token, promote.",
          initial: "preflight",
          states: {
            preflight: {
              description: "Read-only checks: is the target healthy and within the RPO budget?",
              entry: setStep("preflight"),
              invoke: {
                id: "preflight",
                src: "preflight",
                input: ({ context }): PreflightInput => ({
                  ...stepInput(context),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                  budgetMs: context.rpo.budgetMs,
                }),
                onDone: [
                  {
                    guard: { type: "preflightPassed", params: ({ event }) => event.output },
                    target: "demote",
                    actions: { type: "recordPreflight", params: ({ event }) => event.output },
                    description: "preflight passed: the target lags less than the budget; demoting the primary",
                  },
                  {
                    target: STEADY,
                    actions: [{ type: "recordPreflight", params: ({ event }) => event.output }, finishAs("refused")],
                    description: "switchover refused at preflight: the target lags more than the budget or is not ready; nothing was changed",
                  },
                ],
                onError: abortToSteady(NOTHING_CHANGED, "switchover aborted: preflight failed before anything was changed; alert raised"),
              },
              after: {
                stepTimeout: abortToSteady(NOTHING_CHANGED, "switchover aborted: preflight timed out before anything was changed; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToSteady(NOTHING_CHANGED, "switchover aborted by an operator during preflight; nothing was changed; alert raised")),
              },
            },

            demote: {
              description: "Ensure the old primary is patched to follow the target (CNPG then demotes it cleanly).",
              entry: setStep("demote"),
              invoke: {
                id: "demotePrimary",
                src: "demotePrimary",
                input: ({ context }): DemotePrimaryInput => ({
                  ...stepInput(context),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                }),
                onDone: {
                  target: "awaitToken",
                  description: "old primary patched to follow the target; waiting for its demotion token",
                },
                onError: abortToUndo("switchover aborted: demoting the old primary failed; re-designating it; alert raised"),
              },
              after: {
                stepTimeout: abortToUndo("switchover aborted: demoting the old primary timed out; re-designating it; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToUndo("switchover aborted by an operator while demoting; re-designating the old primary; alert raised")),
              },
            },

            awaitToken: {
              description: "Wait for CNPG to write the old primary's demotion token (clean shutdown checkpoint archived).",
              entry: setStep("awaitToken"),
              invoke: {
                id: "awaitDemotionToken",
                src: "awaitDemotionToken",
                input: ({ context }): AwaitDemotionTokenInput => ({
                  ...stepInput(context),
                  member: requireString(requireOperation(context).from, "switchover source", context),
                }),
                onDone: {
                  target: "promote",
                  actions: { type: "storeToken", params: ({ event }) => event.output },
                  description: "primary demoted cleanly; demotion token available; promoting the target with it",
                },
                onError: [
                  {
                    guard: "demotionTokenLost",
                    ...abortToOperator(OLD_PRIMARY_DEMOTED_NO_TOKEN, "switchover stopped: CNPG completed the demotion but wrote no demotion token (CNPG issue #11074); nothing promoted; operator required; alert raised"),
                  },
                  abortToUndo("switchover aborted: reading the demotion token failed; re-designating the old primary; alert raised"),
                ],
              },
              after: {
                tokenTimeout: abortToUndo("switchover aborted: the demotion token never came; re-designating the old primary; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToUndo("switchover aborted by an operator while waiting for the token; re-designating the old primary; alert raised")),
              },
            },

            undoing: {
              description: "Ensure the old primary is primary again (spec.replica.primary = itself). No promote was issued.",
              entry: setStep("undo"),
              invoke: {
                id: "undoDemotion",
                src: "undoDemotion",
                input: ({ context }): UndoDemotionInput => ({
                  ...stepInput(context),
                  member: requireString(requireOperation(context).from, "switchover source", context),
                }),
                onDone: {
                  target: STEADY,
                  actions: ["recordUndone", finishAs("aborted")],
                  description: "aborted switchover undone: the old primary is primary again; the epoch is unchanged",
                },
                onError: dropToOperator("re-designating the old primary failed: no designated primary is left; operator required; alert raised"),
              },
              after: {
                stepTimeout: dropToOperator("re-designating the old primary timed out: no designated primary is left; operator required; alert raised"),
              },
            },

            promote: {
              description: "The promote command is issued: the target is the designated primary at epoch+1 from this moment.",
              entry: [setStep("promote"), "designateTarget"],
              invoke: {
                id: "promoteWithToken",
                src: "promoteWithToken",
                input: ({ context }): PromoteWithTokenInput => ({
                  ...stepInput(context),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  token: requireString(context.demotionToken, "demotion token", context),
                }),
                onDone: {
                  target: "verify",
                  description: "target promoted with the demotion token; verifying the new topology",
                },
                onError: abortToOperator(TARGET_MAY_BE_PRIMARY, "switchover stopped after the promote was issued: promotion failed; not undoing; operator required; alert raised"),
              },
              after: {
                promoteTimeout: abortToOperator(TARGET_MAY_BE_PRIMARY, "switchover stopped after the promote was issued: promotion timed out; not undoing; operator required; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToOperator(TARGET_MAY_BE_PRIMARY, "switchover aborted by an operator after the promote was issued; not undoing; operator required; alert raised")),
              },
            },

            verify: {
              description: "Check that the target is primary with the token as lastPromotionToken and the old primary follows it.",
              entry: setStep("verify"),
              invoke: {
                id: "verifySwitchover",
                src: "verifySwitchover",
                input: ({ context }): VerifySwitchoverInput => ({
                  ...stepInput(context),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  token: requireString(context.demotionToken, "demotion token", context),
                }),
                onDone: [
                  {
                    guard: { type: "switchoverVerified", params: ({ event }) => event.output },
                    target: STEADY,
                    actions: ["recordCompletion", finishAs("completed")],
                    description: "switchover completed: the target is primary and the old primary follows it",
                  },
                  abortToOperator(TARGET_WAS_PROMOTED, "switchover verification failed after the promote; not undoing; operator required; alert raised"),
                ],
                onError: abortToOperator(TARGET_WAS_PROMOTED, "switchover verification errored after the promote; not undoing; operator required; alert raised"),
              },
              after: {
                stepTimeout: abortToOperator(TARGET_WAS_PROMOTED, "switchover verification timed out after the promote; not undoing; operator required; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToOperator(TARGET_WAS_PROMOTED, "switchover aborted by an operator during verification; not undoing; operator required; alert raised")),
              },
            },
          },
        },

        failover: {
          description: "Unplanned failover: confirm the primary is down, pass the RPO gate, promote without a token.",
          initial: "suspect",
          states: {
            suspect: {
              description: "The primary looks down; give it a grace period to come back.",
              entry: setStep("suspect"),
              after: {
                suspectGrace: { target: "confirming", description: "primary still down after the grace period; confirming it is down" },
              },
              on: {
                PRIMARY_RECOVERED: cancelOnRecovery("primary recovered during the grace period; failover cancelled"),
                ABORT: onAbort(abortToSteady(PRIMARY_STAYS, "failover aborted by an operator before anything was done; alert raised")),
              },
            },

            confirming: {
              description: "Ensure the old primary is fenced, or learn that its primary lease expired plus the clock-skew margin.",
              entry: setStep("confirm"),
              invoke: {
                id: "confirmPrimaryDown",
                src: "confirmPrimaryDown",
                input: ({ context }): ConfirmPrimaryDownInput => ({
                  ...stepInput(context),
                  member: requireString(requireOperation(context).from, "failed primary", context),
                }),
                onDone: [
                  {
                    guard: { type: "primaryConfirmedDown", params: ({ event }) => event.output },
                    target: "gate",
                    actions: { type: "recordConfirmation", params: ({ event }) => event.output },
                    description: "old primary confirmed down (fenced, or its lease expired); applying the RPO gate",
                  },
                  notConfirmed("old primary neither fenced nor past its lease: not confirmed down; trying again later"),
                ],
                onError: notConfirmed("confirming the old primary is down failed; trying again later"),
              },
              after: {
                stepTimeout: notConfirmed("confirming the old primary is down timed out; trying again later"),
              },
              on: {
                PRIMARY_RECOVERED: cancelOnRecovery("primary recovered before it was confirmed down; failover cancelled"),
                ABORT: onAbort(abortToSteady(PRIMARY_STAYS_MAYBE_FENCED, "failover aborted by an operator while confirming; nothing promoted; alert raised")),
              },
            },

            unconfirmed: {
              description: "The primary could not be confirmed down; wait, then try again.",
              entry: setStep("unconfirmed"),
              after: {
                confirmRetry: { target: "confirming", description: "trying again to confirm the old primary is down" },
              },
              on: {
                PRIMARY_RECOVERED: cancelOnRecovery("primary recovered before it was confirmed down; failover cancelled"),
                ABORT: onAbort(abortToSteady(PRIMARY_STAYS_MAYBE_FENCED, "failover aborted by an operator while the primary was unconfirmed; nothing promoted; alert raised")),
              },
            },

            gate: {
              description: "The RPO gate (failoverVerdict): promote now, or wait for approval.",
              always: [
                {
                  guard: "failoverMayPromote",
                  target: "promoting",
                  actions: "recordVerdict",
                  description: "RPO gate passed: worst-case loss within the budget, or accepted by an operator; promoting",
                },
                {
                  target: "awaitingApproval",
                  actions: ["recordVerdict", "alertAwaitingApproval"],
                  description: "RPO gate closed: loss beyond the budget, manual mode, paused or no estimate; waiting for approval; alert raised",
                },
              ],
            },

            awaitingApproval: {
              description: "Promotion waits for an operator to accept the worst-case loss (or for the loss to fall within the budget).",
              entry: setStep("awaitApproval"),
              exit: "clearAwaitingApproval",
              on: {
                APPROVE: [
                  {
                    guard: "approvalCoversLoss",
                    target: "gate",
                    actions: "recordApproval",
                    description: "operator accepted a loss that covers the worst case; the accepted figure goes in the audit",
                  },
                  {
                    actions: "refuseRequest",
                    description: "approval refused: it does not name this operation or does not cover the worst-case loss",
                  },
                ],
                LOSS_ESTIMATES: {
                  target: "gate",
                  actions: "recordEstimates",
                  description: "loss estimates updated while waiting for approval; applying the RPO gate again",
                },
                RESUME: {
                  target: "gate",
                  actions: "resume",
                  description: "automation resumed while waiting for approval; applying the RPO gate again",
                },
                CONFIGURE: {
                  target: "gate",
                  actions: "configure",
                  description: "configuration changed while waiting for approval; applying the RPO gate again",
                },
                ABORT: onAbort(abortToSteady(OLD_PRIMARY_FENCED, "failover aborted by an operator instead of approving; nothing promoted; alert raised")),
              },
            },

            promoting: {
              description: "The promote command is issued: the target is the designated primary at epoch+1 from this moment.",
              entry: [setStep("promoteWithoutToken"), "designateTarget", "markFormerPendingFence"],
              invoke: {
                id: "promoteWithoutToken",
                src: "promoteWithoutToken",
                input: ({ context }): PromoteWithoutTokenInput => {
                  const op = requireOperation(context);
                  return {
                    ...stepInput(context),
                    target: requireString(op.target, "failover target", context),
                    former: op.from,
                    worstCaseLossMs: op.worstCaseLossMs ?? 0,
                    acceptedLossMs: op.acceptedLossMs ?? null,
                  };
                },
                onDone: {
                  target: STEADY,
                  actions: ["recordCompletion", finishAs("completed")],
                  description: "failover completed: the target is primary; the former primary will be fenced and marked diverged when seen",
                },
                onError: abortToOperator(TARGET_MAY_BE_PRIMARY, "failover stopped after the promote was issued: promotion failed; not undoing; operator required; alert raised"),
              },
              after: {
                promoteTimeout: abortToOperator(TARGET_MAY_BE_PRIMARY, "failover stopped after the promote was issued: promotion timed out; not undoing; operator required; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToOperator(TARGET_MAY_BE_PRIMARY, "failover aborted by an operator after the promote was issued; not undoing; operator required; alert raised")),
              },
            },
          },
        },

        rejoin: {
          description: "Re-clone a diverged former primary as a replica of the designated primary.",
          initial: "awaitingApproval",
          states: {
            awaitingApproval: {
              description: "Rejoining discards the member's diverged data: an operator must approve.",
              on: {
                APPROVE: [
                  {
                    guard: "approvalMatches",
                    target: "rejoining",
                    actions: "recordRejoinApproval",
                    description: "rejoin approved; re-cloning the diverged member",
                  },
                  { actions: "refuseRequest", description: "approval ignored: it names another operation" },
                ],
                ABORT: onAbort(abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin aborted by an operator before approval; the member stays diverged; alert raised")),
                PRIMARY_SUSPECT: [
                  {
                    guard: "automationPaused",
                    actions: "recordFailoverBlocked",
                    description: "primary suspected down but automation is paused: no failover starts; alert raised",
                  },
                  {
                    target: "#federation.operation.failover.suspect",
                    actions: ["dropRejoinForFailover", "startAutomaticFailover"],
                    description: "primary suspected down while a rejoin waited for approval: the rejoin is dropped and automatic failover begins",
                  },
                ],
              },
            },
            rejoining: {
              description: "Ensure the diverged member is re-cloned as a replica of the designated primary.",
              entry: setStep("rejoin"),
              invoke: {
                id: "rejoinMember",
                src: "rejoinMember",
                input: ({ context }): RejoinMemberInput => ({
                  ...stepInput(context),
                  member: requireString(requireOperation(context).target, "member to rejoin", context),
                  primary: context.designatedPrimary,
                }),
                onDone: {
                  target: STEADY,
                  actions: ["removeFromDiverged", "recordCompletion", finishAs("completed")],
                  description: "rejoin completed: the member is a replica of the primary and no longer diverged",
                },
                onError: abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin failed; the member stays diverged; alert raised"),
              },
              after: {
                rejoinTimeout: abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin timed out; the member stays diverged; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin aborted by an operator; the member stays diverged; alert raised")),
              },
            },
          },
        },

        operatorRequired: {
          description: "pgfed stopped: an operation failed where retrying or undoing could be unsafe. An operator fixes things and sends RESOLVE.",
          on: {
            RESOLVE: [
              {
                guard: "resolveNamesEligibleMember",
                target: "steady",
                actions: ["resolveDesignation", finishAs("resolved")],
                description: "operator resolved the federation and named its primary; automation continues",
              },
              { actions: "refuseRequest", description: "resolve refused: it does not name an eligible member" },
            ],
          },
        },
      },
    },

    formerPrimaries: {
      description: "Former primaries of unplanned failovers are fenced and marked diverged as soon as they are seen again.",
      initial: "idle",
      states: {
        idle: {
          description: "No former primary is being fenced.",
          on: {
            FORMER_PRIMARY_SEEN: [
              {
                guard: "isPendingFence",
                target: "fencing",
                actions: "startFencing",
                description: "former primary seen again: fencing it and pointing it at the new primary",
              },
              { description: "member seen is not a former primary waiting to be fenced; nothing to do" },
            ],
          },
        },
        fencing: {
          description: "Ensure the former primary is fenced and follows the new primary; then it is diverged.",
          invoke: {
            id: "fenceAndDemoteFormer",
            src: "fenceAndDemoteFormer",
            input: ({ context }): FenceAndDemoteFormerInput => ({
              federation: context.federation,
              epoch: context.epoch,
              member: requireString(context.fencing, "former primary", context),
              newPrimary: context.designatedPrimary,
            }),
            onDone: {
              target: "idle",
              actions: "markFencedDiverged",
              description: "former primary fenced and demoted; marked diverged until it is rejoined",
            },
            onError: {
              target: "idle",
              actions: "alertFenceFailed",
              description: "fencing the former primary failed; it may still accept writes; alert raised; retried when seen again",
            },
          },
          after: {
            stepTimeout: {
              target: "idle",
              actions: "alertFenceFailed",
              description: "fencing the former primary timed out; it may still accept writes; alert raised; retried when seen again",
            },
          },
          on: {
            FORMER_PRIMARY_SEEN: { description: "a former primary is already being fenced; this sighting waits for the next one" },
          },
        },
      },
    },
  },

  // Fallback rows shared by every state (a state's own rows are tried first).
  on: {
    PAUSE: { actions: "pause", description: "automation paused: no automatic failover will start; operator requests still run" },
    OUTSIDE_CHANGE: {
      actions: "pauseForOutsideChange",
      description: "another writer changed a member's spec.replica.primary: automation paused; alert raised; operator requests still run",
    },
    RESUME: { actions: "resume", description: "automation resumed" },
    CONFIGURE: { actions: "configure", description: "RPO budget and failover mode updated" },
    LOSS_ESTIMATES: { actions: "recordEstimates", description: "worst-case loss estimates updated" },
    CLEAR_ALERT: { actions: "clearAlert", description: "alert cleared by an operator" },
    SWITCHOVER: { actions: "refuseRequest", description: "switchover refused: another operation is in flight" },
    FAILOVER: { actions: "refuseRequest", description: "failover refused: another operation is in flight" },
    REJOIN: { actions: "refuseRequest", description: "rejoin refused: another operation is in flight" },
    APPROVE: { actions: "refuseRequest", description: "approval ignored: nothing awaits approval" },
    ABORT: { actions: "refuseRequest", description: "abort ignored: no matching operation can be aborted at this step" },
    RESOLVE: { actions: "refuseRequest", description: "resolve refused: nothing requires an operator" },
    PRIMARY_SUSPECT: {
      actions: "recordSuspectDuringOperation",
      description: "primary suspected down while another operation is in flight; no new failover starts",
    },
    PRIMARY_RECOVERED: { description: "primary reported recovered; no failover to cancel" },
  },
});

function approvalShortfall(context: FederationContext, acceptedLossMs: number | undefined): string {
  const candidate = failoverCandidate(context);
  if (context.operation?.kind !== "failover" || context.operation.step !== "awaitApproval") return "the operation is not waiting for approval";
  if (!candidate) return "there is no loss estimate yet";
  if (acceptedLossMs === undefined) return `it accepts no loss, worst case is ${formatMs(candidate.worstCaseLossMs)}`;
  return `accepted loss ${formatMs(acceptedLossMs)} does not cover worst-case loss ${formatMs(candidate.worstCaseLossMs)} for ${candidate.target}`;
}

export type FederationMachine = typeof federationMachine;
