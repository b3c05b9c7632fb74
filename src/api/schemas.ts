/**
 * The API's zod schemas: the same objects validate requests (strict: an unknown field is refused
 * by name) and describe requests and responses in the OpenAPI document (`openapi.ts`).
 */
import { z } from "zod";
import { parseDurationMs } from "../duration.js";
import { operationViewSchema, type AuditEntry, type FederationView, type OperationView, type PlanView } from "./contract.js";

const name = z.string().min(1).max(63).regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be a DNS-label-like name (lower-case letters, digits and '-')");
const reason = z.string().max(1_000).optional().meta({ description: "Why; recorded in the audit trail." });

/** "30s", "1m30s" or a number of seconds → seconds. */
export const acceptDataLoss = z
  .union([z.number().nonnegative().max(86_400 * 365), z.string().max(64)])
  .transform((v, ctx) => {
    if (typeof v === "number") return v;
    try {
      return parseDurationMs(v) / 1_000;
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
      return z.NEVER;
    }
  })
  .meta({ description: 'Data loss the operator accepts: a duration ("30s", "1m30s") or a number of seconds.' });

/** A duration string ("30s") → milliseconds; used in query strings. */
const durationQuery = (max: number) =>
  z
    .string()
    .max(64)
    .transform((v, ctx) => {
      try {
        const ms = parseDurationMs(v);
        if (ms > max) ctx.addIssue({ code: "custom", message: `must be at most ${max / 1_000}s` });
        return ms;
      } catch (e) {
        ctx.addIssue({ code: "custom", message: (e as Error).message });
        return z.NEVER;
      }
    });

export const switchoverBody = z.strictObject({ target: name.meta({ description: "The member to promote." }), reason });
export const failoverBody = z.strictObject({
  target: name.optional().meta({ description: "The member to promote; pgfed picks the one with the least loss when omitted." }),
  acceptDataLoss: acceptDataLoss.optional(),
  reason,
});
export const reasonBody = z.strictObject({ reason });
export const resolveBody = z.strictObject({
  primary: name.meta({ description: "The member to designate as primary: observed as the one unfenced primary cluster." }),
  reason,
});
export const approveBody = z.strictObject({ acceptDataLoss: acceptDataLoss.optional(), reason });
export const federationApproveBody = z.strictObject({
  operation: z.string().min(1).max(200).meta({ description: "The operation id to approve." }),
  acceptDataLoss: acceptDataLoss.optional(),
  reason,
});

export const dryRunQuery = z.strictObject({
  dryRun: z.enum(["true", "false", "1", "0"]).optional().meta({ description: "`true`: answer with the plan and change nothing." }),
});
export const operationQuery = z.strictObject({
  wait: durationQuery(120_000).optional().meta({ description: "Long-poll: wait up to this long (e.g. `30s`, at most 120s) for the operation to change." }),
  afterSteps: z
    .string()
    .regex(/^\d{1,6}$/, "must be a whole number")
    .transform(Number)
    .optional()
    .meta({ description: "With `wait`: answer as soon as the operation has more steps than this." }),
});
export const auditQuery = z.strictObject({
  since: z
    .string()
    .max(64)
    .transform((v, ctx) => {
      if (/^\d/.test(v) && /[T-]/.test(v)) {
        const t = Date.parse(v);
        if (Number.isNaN(t)) ctx.addIssue({ code: "custom", message: `invalid time "${v}" (expected an ISO time like 2026-01-02T03:04:05Z)` });
        return t;
      }
      try {
        return Date.now() - parseDurationMs(v);
      } catch {
        ctx.addIssue({ code: "custom", message: `invalid since "${v}" (expected a duration like 1h or an ISO time)` });
        return z.NEVER;
      }
    })
    .optional()
    .meta({ description: "A duration back from now (`1h`) or an ISO time." }),
  limit: z
    .string()
    .regex(/^\d{1,5}$/, "must be a whole number between 1 and 10000")
    .transform(Number)
    .refine((n) => n >= 1 && n <= 10_000, "must be between 1 and 10000")
    .optional(),
});

export const fedParams = z.strictObject({ name });
export const memberParams = z.strictObject({ name, member: name });
export const operationParams = z.strictObject({ id: z.string().min(1).max(200) });

// ---- responses (documentation; the TypeScript types in contract.ts are the source) ----

const numOrNull = z.number().nullable();
const memberView = z.object({
  name: z.string(),
  region: z.string(),
  namespace: z.string(),
  cluster: z.string(),
  role: z.enum(["primary", "replica", "unknown"]),
  state: z.string(),
  phase: z.string(),
  fenced: z.boolean(),
  reachable: z.boolean(),
  diverged: z.boolean(),
  lagBytes: numOrNull,
  lagSeconds: numOrNull,
  lossIfPromotedSeconds: numOrNull,
  timeline: numOrNull.meta({ description: "Postgres's timeline from the member's last WAL sample (CNPG's status.timelineID only before the first sample: CNPG does not refresh it on replica clusters)." }),
  following: z.boolean().meta({
    description:
      "false: a replica that does not follow the designated primary: sampled on another timeline for longer than a few seconds, or its spec.replica.source/primary does not lead to the primary. Its lag and loss then grow with the primary's WAL, and it is refused as a switchover target.",
  }),
  notFollowing: z.string().optional().meta({ description: 'Why it is not following, e.g. "on timeline 1, primary pg-ap on timeline 2" or "follows pg-us, which is not the primary pg-ap"; absent while following.' }),
  lastSeenAt: z
    .string()
    .nullable()
    .meta({ description: "When the member's observed fields (role, phase, fenced, reachable) were last known current: its agent's last heartbeat while it could read the Cluster, else when it stopped being able to." }),
  observedAgoSeconds: numOrNull.meta({ description: "Age of lastSeenAt when this view was made; older than failover.leaseTtlSeconds means the member may be gone and its fields are a last report." }),
  reason: z.string().nullable(),
});
const exposureView = z.object({
  bytes: z.number(),
  seconds: z.number(),
  worstCaseSeconds: z.number(),
  level: z.enum(["ok", "warn", "exceeded"]),
  safeSource: z.string(),
  sampledAt: z.string().nullable(),
});
/** Owned by the coordinator: the same shape is stored in its KV record. */
export const operationView = operationViewSchema;
export const federationView = z
  .object({
    name: z.string(),
    epoch: z.number(),
    designatedPrimary: z.string().nullable(),
    mode: z.enum(["automatic", "manual"]),
    paused: z.boolean(),
    rpo: z.object({ budgetSeconds: z.number(), warnAt: z.number() }),
    failover: z
      .object({ leaseTtlSeconds: z.number(), clockSkewMarginSeconds: z.number() })
      .meta({ description: "Configured failover timing: a silent primary is presumed gone after leaseTtlSeconds + clockSkewMarginSeconds, unless confirmed fenced earlier." }),
    exposure: exposureView.nullable(),
    members: z.array(memberView),
    operation: operationView.nullable(),
    lastDecision: z.string(),
    alerts: z.array(z.object({ name: z.string(), reason: z.string() })),
    diverged: z.array(z.string()),
  });
export const planView = z
  .object({
    federation: z.string(),
    kind: z.enum(["switchover", "failover", "rejoin", "pause", "resume", "resolve"]),
    target: z.string().nullable(),
    allowed: z.boolean(),
    refusal: z.string().nullable(),
    steps: z.array(z.object({ step: z.string(), description: z.string() })),
    preconditions: z.array(z.object({ name: z.string(), ok: z.boolean(), detail: z.string(), numbers: z.record(z.string(), z.union([z.number(), z.string()])) })),
    expectedDataLoss: z.object({ bytes: z.number(), seconds: z.number() }),
    expectedDurationSeconds: z.number(),
  });
export const auditEntry = z
  .object({
    at: z.string(),
    federation: z.string(),
    member: z.string().nullable(),
    epoch: z.number(),
    actor: z.string(),
    action: z.string(),
    reason: z.string(),
    description: z.string(),
    numbers: z.record(z.string(), z.unknown()),
    operationId: z.string().nullable(),
  });
export const statusBody = z
  .object({
    kind: z.literal("Status"),
    code: z.number().int(),
    reason: z.string().meta({ description: "BadRequest, Unauthorized, Forbidden, NotFound, Conflict, Refused, PayloadTooLarge, UnsupportedMediaType, NotLeader, InternalError" }),
    message: z.string(),
    field: z.string().optional().meta({ description: "The request field the error is about." }),
    leader: z.string().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  });
export type StatusBody = z.infer<typeof statusBody>;
export const federationList = z.object({ items: z.array(federationView) });
export const auditList = z.object({ items: z.array(auditEntry) });
export const federationOrPlan = z.union([federationView, planView]);
const seriesValue = z.number().nullable();
export const federationHistory = z.object({
  federation: z.string(),
  resolutionSeconds: z.number().meta({ description: "Seconds between two points." }),
  at: z.array(z.number()).meta({ description: "Epoch seconds of each point, oldest first (at most one hour)." }),
  exposureSeconds: z.array(seriesValue).meta({ description: "Exposure at each point (as FederationView.exposure.seconds); null when unknown." }),
  worstCaseSeconds: z.array(seriesValue).meta({ description: "Worst-case exposure at each point (primary silent since its last sample)." }),
  members: z.array(z.object({ name: z.string(), lagSeconds: z.array(seriesValue).meta({ description: "What promoting the member would lose at each point; null for the primary or when unknown." }) })),
});
export const regionParams = z.strictObject({ region: name });
export const evacuateBody = z.strictObject({
  parallel: z.number().int().min(1).max(64).default(4).meta({ description: "Switchovers at a time (1-64, default 4)." }),
  skipIneligible: z.boolean().default(false).meta({ description: "Move the others when a federation has no eligible target (default: refuse the whole evacuation)." }),
  reason,
});
const evacuationMove = z.object({
  federation: z.string(),
  from: z.string(),
  target: z.string().nullable(),
  state: z.enum(["planned", "skipped", "queued", "running", "completed", "failed"]),
  operationId: z.string().nullable(),
  detail: z.string(),
  lagSeconds: z.number().nullable(),
  expectedDataLossSeconds: z.number().nullable(),
  durationSeconds: z.number().nullable(),
});
export const evacuationView = z.object({
  id: z.string().meta({ description: "Empty for a dry run." }),
  region: z.string(),
  dryRun: z.boolean(),
  state: z.enum(["planned", "running", "completed", "failed"]),
  parallel: z.number(),
  reason: z.string(),
  requestedBy: z.string(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  moves: z.array(evacuationMove),
  counts: z.record(z.string(), z.number()),
});
export const runbookQuery = z.strictObject({ format: z.enum(["markdown", "html"]).default("markdown") });

// Compile-time checks that the documented shapes match the contract.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _checks: [Same<z.infer<typeof federationView>, FederationView>, Same<z.infer<typeof operationView>, OperationView>, Same<z.infer<typeof planView>, PlanView>, Same<z.infer<typeof auditEntry>, AuditEntry>] = [true, true, true, true];
void _checks;
