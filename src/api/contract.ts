/**
 * The contract between the API and the coordinator: what the coordinator offers to its users (the
 * HTTP API, the CLI through it, and the lab). `src/coordinator` implements `CoordinatorService` and
 * imports this module; `src/api` serves it and imports nothing from the coordinator.
 * Plain JSON-friendly data: numbers in seconds/bytes for people, ids as strings.
 */
import { z } from "zod";
import { PgfedError } from "../errors.js";

export type MemberRoleView = "primary" | "replica" | "unknown";

export interface MemberView {
  name: string;
  region: string;
  namespace: string;
  cluster: string;
  /** Role CNPG reports (spec.replica.primary == self). */
  role: MemberRoleView;
  /** The member machine's state: unknown, primary, replica, demoting, demoted, promoting, fenced, unreachable, diverged. */
  state: string;
  phase: string;
  fenced: boolean;
  reachable: boolean;
  diverged: boolean;
  /** Replication lag behind the primary (replicas), from the WAL history. */
  lagBytes: number | null;
  lagSeconds: number | null;
  /** What this member could not recover if promoted now. */
  lossIfPromotedSeconds: number | null;
  /** Postgres's timeline from the member's last lag sample (CNPG's status.timelineID only before any sample). */
  timeline: number | null;
  /** false: a replica not following the designated primary (another timeline, or a source that does not lead to it); its lag then grows. */
  following: boolean;
  /** Why not, in words: "on timeline 1, primary pg-ap on timeline 2", "follows pg-us, which is not the primary pg-ap". */
  notFollowing?: string;
  /**
   * When the member's observed fields (role, phase, fenced, reachable…) were last known current:
   * its agent's last heartbeat while it could read the Cluster, else when it stopped being able to.
   */
  lastSeenAt: string | null;
  /** Age of lastSeenAt when the view was made; older than the lease TTL: the member may be gone. */
  observedAgoSeconds: number | null;
  reason: string | null;
}

export interface ExposureView {
  bytes: number;
  seconds: number;
  /** Worst case when the primary has gone silent (last known + time since the last sample). */
  worstCaseSeconds: number;
  level: "ok" | "warn" | "exceeded";
  /** Where the safe LSN comes from: "archive", a replica's name, or "none". */
  safeSource: string;
  sampledAt: string | null;
}

export interface OperationStepView {
  at: string;
  step: string;
  /** The transition description, verbatim (STYLE.md). */
  description: string;
}

export type OperationState = "running" | "awaitingApproval" | "operatorRequired" | "completed" | "aborted" | "refused" | "cancelled" | "resolved";

export interface OperationView {
  id: string;
  federation: string;
  kind: "switchover" | "failover" | "rejoin";
  state: OperationState;
  step: string;
  target: string | null;
  from: string | null;
  reason: string;
  requestedBy: string;
  automatic: boolean;
  startedAt: string;
  finishedAt: string | null;
  /** Epoch when the operation started and (when it changed the primary) after. */
  epochBefore: number;
  epochAfter: number | null;
  acceptedLossSeconds: number | null;
  /** Measured at the end: duration and the data loss pgfed estimated at promotion time. */
  durationSeconds: number | null;
  dataLossSeconds: number | null;
  lastDecision: string;
  steps: OperationStepView[];
}

export interface FederationView {
  name: string;
  epoch: number;
  designatedPrimary: string | null;
  mode: "automatic" | "manual";
  paused: boolean;
  rpo: { budgetSeconds: number; warnAt: number };
  /** The configured failover timing: a silent primary is presumed gone after leaseTtl + clockSkewMargin. */
  failover: { leaseTtlSeconds: number; clockSkewMarginSeconds: number };
  exposure: ExposureView | null;
  members: MemberView[];
  operation: OperationView | null;
  lastDecision: string;
  alerts: { name: string; reason: string }[];
  diverged: string[];
}

export interface PreconditionView {
  name: string;
  ok: boolean;
  detail: string;
  numbers: Record<string, number | string>;
}

/** A dry run: what would happen, and why it would be refused. Nothing is changed to produce it. */
export interface PlanView {
  federation: string;
  kind: "switchover" | "failover" | "rejoin" | "pause" | "resume" | "resolve";
  target: string | null;
  allowed: boolean;
  refusal: string | null;
  steps: { step: string; description: string }[];
  preconditions: PreconditionView[];
  expectedDataLoss: { bytes: number; seconds: number };
  /** From recent measurements of the same kind of operation, else a documented default. */
  expectedDurationSeconds: number;
}

export interface RequestContext {
  /** Token name (API) or user (CLI, lab). */
  requestedBy: string;
  reason: string;
  /** Same key, same operation (HTTP `Idempotency-Key`). */
  idempotencyKey?: string;
}

export interface AuditEntry {
  at: string;
  federation: string;
  member: string | null;
  epoch: number;
  actor: string;
  action: string;
  reason: string;
  description: string;
  numbers: Record<string, unknown>;
  operationId: string | null;
}

export type ActionResult = { kind: "plan"; plan: PlanView } | { kind: "operation"; operation: OperationView };

/** The last hour of a federation's exposure and replica lag (coordinator/history.ts), columnar, oldest first. */
export interface FederationHistoryView {
  federation: string;
  resolutionSeconds: number;
  /** Epoch seconds of each point. */
  at: number[];
  exposureSeconds: (number | null)[];
  worstCaseSeconds: (number | null)[];
  members: { name: string; lagSeconds: (number | null)[] }[];
}

/** One federation's move in a region's evacuation (coordinator/evacuation.ts). */
export interface EvacuationMoveView {
  federation: string;
  /** The designated primary in the evacuated region. */
  from: string;
  /** The member it moves to; null when skipped. */
  target: string | null;
  state: "planned" | "skipped" | "queued" | "running" | "completed" | "failed";
  /** The switchover operation once started. */
  operationId: string | null;
  /** Why it goes where it goes, why it is skipped, or how it ended, with the numbers. */
  detail: string;
  lagSeconds: number | null;
  expectedDataLossSeconds: number | null;
  /** From its start to its end (running: null). */
  durationSeconds: number | null;
}

/** A region's evacuation: its plan (dry run) or its progress. Kept by the leader in memory. */
export interface EvacuationView {
  /** Empty for a dry run. */
  id: string;
  region: string;
  dryRun: boolean;
  state: "planned" | "running" | "completed" | "failed";
  parallel: number;
  reason: string;
  requestedBy: string;
  startedAt: string;
  finishedAt: string | null;
  moves: EvacuationMoveView[];
  counts: Record<EvacuationMoveView["state"], number>;
}

export interface CoordinatorService {
  /** The API is served by the leader; followers redirect (or answer 503 naming the leader). */
  isLeader(): boolean;
  leader(): { id: string; apiUrl: string | null } | null;

  listFederations(): FederationView[];
  getFederation(name: string): FederationView | undefined;
  /** The leader's last hour of exposure and lag for the federation; undefined when it is unknown. */
  getHistory(name: string): FederationHistoryView | undefined;

  switchover(federation: string, args: { target: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult>;
  failover(federation: string, args: { target?: string; acceptDataLossSeconds?: number }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult>;
  rejoin(federation: string, args: { member: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult>;
  pause(federation: string, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }>;
  resume(federation: string, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }>;
  /**
   * Ends `operatorRequired` once an operator has fixed the Clusters by hand: names the designated
   * primary (epoch + 1 when it changes). Refused unless that member is observed as the one unfenced
   * primary cluster.
   */
  resolve(federation: string, args: { primary: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }>;
  approve(operationId: string, args: { acceptDataLossSeconds?: number }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult>;

  getOperation(id: string): OperationView | undefined;
  /** Resolves when the operation changes (a new step or state) or is finished, or at the timeout with the current view. */
  waitOperation(id: string, opts: { timeoutMs: number; afterSteps?: number }): Promise<OperationView | undefined>;
  /** Calls back on every change of the operation until it finishes; returns the unsubscribe function. */
  watchOperation(id: string, onChange: (op: OperationView) => void): () => void;

  audit(federation: string, opts: { sinceMs?: number; limit?: number }): Promise<AuditEntry[]>;

  /**
   * Switches over every federation whose designated primary is in `region` to its best eligible
   * member elsewhere, `parallel` at a time. Refused when a federation has no eligible target,
   * unless `skipIneligible`; a dry run answers the plan.
   */
  evacuate(region: string, args: { parallel: number; skipIneligible: boolean }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<EvacuationView>;
  getEvacuation(id: string): EvacuationView | undefined;
}

/** Errors the service raises for the API to map: 400/404/409/422/503 (not the leader; a dependency such as NATS did not answer). */
export type ServiceErrorKind = "invalid" | "not_found" | "conflict" | "refused" | "not_leader" | "unavailable";

export class ServiceError extends PgfedError {
  constructor(
    readonly kind: ServiceErrorKind,
    message: string,
    /** The request field the error is about, when there is one. */
    readonly field?: string,
    details: Record<string, unknown> = {},
  ) {
    super(`service.${kind}`, message, { ...details, ...(field ? { field } : {}) });
  }
}

/**
 * `OperationView` as a zod schema: the coordinator stores it in the federation's KV record
 * (coordinator/record.ts) and the API validates and documents its responses with it (schemas.ts).
 */
const operationStepSchema = z.object({ at: z.string(), step: z.string(), description: z.string() });

export const operationViewSchema = z.object({
  id: z.string(),
  federation: z.string(),
  kind: z.enum(["switchover", "failover", "rejoin"]),
  state: z.enum(["running", "awaitingApproval", "operatorRequired", "completed", "aborted", "refused", "cancelled", "resolved"]),
  step: z.string(),
  target: z.string().nullable(),
  from: z.string().nullable(),
  reason: z.string(),
  requestedBy: z.string(),
  automatic: z.boolean(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  epochBefore: z.number(),
  epochAfter: z.number().nullable(),
  acceptedLossSeconds: z.number().nullable(),
  durationSeconds: z.number().nullable(),
  dataLossSeconds: z.number().nullable(),
  lastDecision: z.string().meta({ description: "The coordinator's latest one-sentence decision, with its numbers." }),
  steps: z.array(operationStepSchema),
});
