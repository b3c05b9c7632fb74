/**
 * The federation machine's vocabulary: its context, events, the operation in flight, and the input
 * and output of each effect actor (the contract between the machine and the coordinator's steps).
 */
import type { StepTimeouts } from "./federation-timeouts.js";

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
  /** Overrides of defaultTimeouts (the coordinator passes its config's). */
  timeouts?: Partial<StepTimeouts>;
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
  /**
   * How long each step may take. A snapshot persisted before this field existed lacks it: the
   * machine then uses defaultTimeouts (timeoutsOf), and the coordinator overwrites it from config on restore.
   */
  timeouts: StepTimeouts;
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
      /** Why the member, not marked diverged, does not follow the designated primary (the coordinator's reading); a rejoin re-clones it too. */
      notFollowing?: string;
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

// Inputs and outputs of the effect actors. Every input carries the epoch the command belongs to
// and the time its actor has.
export interface StepInput {
  federation: string;
  epoch: number;
  operationId: string;
  /** Milliseconds the actor has: its state's timeout less REPLY_MARGIN_MS, so its own error arrives before the machine's timer. */
  budgetMs: number;
}
export interface PreflightInput extends StepInput {
  from: string;
  target: string;
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
  /** As StepInput.budgetMs. */
  budgetMs: number;
}
export interface RejoinMemberInput extends StepInput {
  member: string;
  primary: string | null;
}

/** The error code the awaitDemotionToken effect throws when CNPG ended the switch without a token. */
export const DEMOTION_TOKEN_LOST = "coordinator.demotion_token_lost";
