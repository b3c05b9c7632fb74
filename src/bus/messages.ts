/**
 * What travels on the bus: one JSON envelope per message,
 *
 *   { id, type, federation, member?, epoch, at, source, data }
 *
 * parsed with zod at the edge (rule 6), typed inside. `id` is the JetStream msgID, so a message
 * published twice within the stream's duplicate window is stored once: give retried work a
 * deterministic id (e.g. `<operationId>.<step>`), fresh observations a random one.
 * `member` is required on member traffic (observation, lag, command, result), optional on audit
 * records, absent on heartbeats (they name a region). The subject is derived from the envelope
 * (see `subjectOf`), and the receiving side checks that both agree.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { SERVER_NAME } from "../cnpg/reclone.js";
import { PgfedError } from "../errors.js";
import { isLsnText } from "../wal/lsn.js";
import { commandProofSchema } from "./command-proof.js";
import { DEAD_LETTER_REASONS, RESERVED_FEDERATION_NAMES, nameProblem, subjects, type MemberChannel } from "./subjects.js";

// ---- building blocks ---------------------------------------------------------------------------

/** A subject token: federation, member, region, agent id. */
export const nameSchema = z.string().superRefine((v, ctx) => {
  const problem = nameProblem(v);
  if (problem) ctx.addIssue({ code: "custom", message: `not a valid name: ${problem}` });
});

/** A federation name: a name that is not reserved by the bus ("dlq"). */
export const federationNameSchema = nameSchema.refine((v) => !RESERVED_FEDERATION_NAMES.includes(v), { message: "reserved by the bus" });

const lsnSchema = z.string().refine(isLsnText, { message: "not an LSN (expected two hex numbers like 0/16B3748)" });
const isoTime = z.iso.datetime({ offset: true });
const msTime = z.number().int().nonnegative();
const count = z.number().int().nonnegative();

/** msgID-safe: it goes into the Nats-Msg-Id header. */
export const messageIdSchema = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "must be 1-128 of letters, digits, '_', '.', ':', '-'");

/** Who sent it: "agent:<region>", "coordinator:<id>", "api", "api:<user>", "cli", "lab". */
export const sourceSchema = z
  .string()
  .regex(/^(?:(?:agent|coordinator):[A-Za-z0-9_-]{1,64}|(?:api|cli|lab)(?::[A-Za-z0-9_.@-]{1,128})?)$/, 'expected "agent:<region>", "coordinator:<id>", "api", "cli" or "lab"');

export const memberRoleSchema = z.enum(["primary", "replica", "unknown"]);
export type MemberRole = z.infer<typeof memberRoleSchema>;

// ---- data per type -----------------------------------------------------------------------------

/** A member's CNPG Cluster as the agent read it (the agent parses; this is the wire shape). */
export const observationSchema = z.object({
  /** Primary cluster of the distributed topology, replica cluster, or unreadable. */
  role: memberRoleSchema,
  /** `status.phase` text as CNPG wrote it. */
  phase: z.string().max(512),
  fenced: z.boolean(),
  switchInProgress: z.boolean(),
  demotionToken: z.string().min(1).max(8_192).optional(),
  lastPromotionToken: z.string().min(1).max(8_192).optional(),
  timelineID: z.number().int().positive().optional(),
  currentPrimary: z.string().max(253).optional(),
  /** `spec.replica.primary` and `spec.replica.source` as written (topology names: a member's `cluster`): whom this member names as primary and follows. */
  specPrimary: z.string().min(1).max(253).optional(),
  specSource: z.string().min(1).max(253).optional(),
  /** The field manager that last set `spec.replica.primary` (metadata.managedFields); pgfed's own is "pgfed". */
  primaryManager: z.string().min(1).max(128).optional(),
  /** Whether the agent could read the Cluster at all (false: the rest is last known). */
  reachable: z.boolean(),
  /** Why the member is `unknown` or unreachable, in words. */
  reason: z.string().max(2_048).optional(),
  ready: z.boolean(),
  archiving: z.enum(["ok", "failing", "unknown"]),
  resourceVersion: z.string().max(128),
});
export type Observation = z.infer<typeof observationSchema>;

export const heartbeatSchema = z.object({
  region: nameSchema,
  agentId: nameSchema,
  /** Members of this federation the agent serves. */
  members: z.array(nameSchema).max(1_000),
});
export type Heartbeat = z.infer<typeof heartbeatSchema>;

/** One WAL/archiver sample; LSNs as "X/Y" text, times in epoch milliseconds. */
export const lagSampleSchema = z.object({
  role: memberRoleSchema,
  currentLsn: lsnSchema.optional(),
  receivedLsn: lsnSchema.optional(),
  replayedLsn: lsnSchema.optional(),
  lastArchivedWal: z.string().max(64).optional(),
  lastArchivedAtMs: msTime.optional(),
  archiveFailedCount: count.optional(),
  lastFailedAtMs: msTime.optional(),
  segmentsReady: count.optional(),
  /** Primary only: pg_current_xact_id-based next xid (decimal) and transactions holding an xid, so a quiet primary's non-commit WAL is not counted as exposure. */
  nextXid: z.string().regex(/^\d{1,20}$/).optional(),
  runningXids: count.optional(),
  timeline: z.number().int().positive().optional(),
  inRecovery: z.boolean(),
  sampledAtMs: msTime,
  /** Why the sample is partial (Postgres unreachable, query failed). */
  error: z.string().max(2_048).optional(),
});
export type LagSample = z.infer<typeof lagSampleSchema>;

const serverNameSchema = z.string().regex(SERVER_NAME, "must be an object-store server name (letters, digits, _ . -; at most 200)");

const commandBase = {
  /** The operation (switchover, failover, rejoin…) this step belongs to. */
  operationId: messageIdSchema,
  /** The agent drops the command after this time instead of acting late. */
  deadlineAt: isoTime,
};

export const commandSchema = z.discriminatedUnion("kind", [
  /** Make this member a replica cluster of `to` (the member that will be primary). */
  z.object({ kind: z.literal("demote"), to: nameSchema, ...commandBase }),
  /** A replica cluster (not a former primary: that is demote): name `primary` as primary and follow it (`spec.replica.primary` and `source`). */
  z.object({ kind: z.literal("follow"), primary: nameSchema, ...commandBase }),
  /** Promote using the old primary's demotion token (planned switchover). */
  z.object({ kind: z.literal("promoteWithToken"), token: z.string().min(1).max(8_192), ...commandBase }),
  /** Promote without a token (unplanned failover, gated by rule 3 before it is sent). */
  z.object({ kind: z.literal("promoteWithoutToken"), ...commandBase }),
  z.object({ kind: z.literal("clearToken"), ...commandBase }),
  z.object({ kind: z.literal("fence"), ...commandBase }),
  z.object({ kind: z.literal("unfence"), ...commandBase }),
  /** Force a WAL switch so the archiver ships the partial segment. */
  z.object({ kind: z.literal("walSwitch"), ...commandBase }),
  /** Make sure the member is (still) the primary cluster, e.g. after a coordinator restart. */
  z.object({ kind: z.literal("ensurePrimary"), ...commandBase }),
  /**
   * Rejoin of a diverged member: ensure it is re-cloned (fence, record what it holds, delete its
   * Cluster, create it again as a replica cluster of `primary` with a fresh archive path). Each
   * delivery takes the steps that fit before its deadline and reports `data.done`; repeat until done.
   */
  z.object({ kind: z.literal("reclone"), primary: nameSchema, ...commandBase }),
  /**
   * After a rejoin gave `member` a fresh archive server name: make this member's `externalClusters`
   * entry for `member` read its archive under `to` (where it read `from`), so archive replay from
   * the rejoined member never reads the old, diverged path.
   */
  z.object({ kind: z.literal("retargetArchive"), member: nameSchema, from: serverNameSchema, to: serverNameSchema, ...commandBase }),
]);
export type Command = z.infer<typeof commandSchema>;
export type CommandKind = Command["kind"];

const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export const resultSchema = z
  .object({
    /** Envelope id of the command this answers. */
    commandId: messageIdSchema,
    ok: z.boolean(),
    error: z.object({ code: z.string().min(1).max(128), message: z.string().max(4_096) }).optional(),
    /** What the agent read while executing (e.g. the demotion token). */
    data: z.record(z.string(), jsonValue).optional(),
  })
  .refine((r) => r.ok || r.error !== undefined, { message: "a failed result must carry an error", path: ["error"] });
export type CommandResult = z.infer<typeof resultSchema>;

export const auditSchema = z.object({
  /** Who asked: "operator:alice", "coordinator:eu-1", "agent:us-east". */
  actor: z.string().min(1).max(256),
  /** What was decided or done: "switchover.started", "command.sent", "failover.refused". */
  action: z.string().min(1).max(128),
  /** Why, in words. */
  reason: z.string().max(4_096),
  /** The numbers the decision was based on (exposure bytes/seconds, budget, lag…). */
  numbers: z.record(z.string(), z.union([z.number(), z.string(), z.boolean(), z.null()])),
  from: z.string().max(256).optional(),
  to: z.string().max(256).optional(),
  /** The transition's description, logged verbatim (STYLE.md). */
  description: z.string().max(4_096),
  operationId: messageIdSchema.optional(),
});
export type AuditRecord = z.infer<typeof auditSchema>;

// ---- the envelope ------------------------------------------------------------------------------

const base = {
  id: messageIdSchema,
  federation: federationNameSchema,
  /** Epoch of the federation the sender saw; agents refuse commands older than the newest (rule 1). */
  epoch: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  at: isoTime,
  source: sourceSchema,
};

export const envelopeSchema = z.discriminatedUnion("type", [
  z.object({ ...base, type: z.literal("observation"), member: nameSchema, data: observationSchema }),
  z.object({ ...base, type: z.literal("lag"), member: nameSchema, data: lagSampleSchema }),
  /** `proof`: the sending coordinator's signature (command-proof.ts); agents that trust coordinator keys refuse commands without one. */
  z.object({ ...base, type: z.literal("command"), member: nameSchema, data: commandSchema, proof: commandProofSchema.optional() }),
  z.object({ ...base, type: z.literal("result"), member: nameSchema, data: resultSchema }),
  z.object({ ...base, type: z.literal("heartbeat"), member: z.undefined().optional(), data: heartbeatSchema }),
  z.object({ ...base, type: z.literal("audit"), member: nameSchema.optional(), data: auditSchema }),
]);

export type BusMessage = z.infer<typeof envelopeSchema>;
export type MessageType = BusMessage["type"];
export type MessageOf<T extends MessageType> = Extract<BusMessage, { type: T }>;
export type DataOf<T extends MessageType> = MessageOf<T>["data"];

export const MESSAGE_TYPES: readonly MessageType[] = ["observation", "lag", "command", "result", "heartbeat", "audit"];

const CHANNEL_OF: Record<"observation" | "lag" | "command" | "result", MemberChannel> = {
  observation: "obs",
  lag: "lag",
  command: "cmd",
  result: "res",
};

/** The subject a message is published on; the receiver checks the envelope agrees with it. */
export function subjectOf(msg: BusMessage): string {
  switch (msg.type) {
    case "heartbeat":
      return subjects.heartbeat(msg.federation, msg.data.region);
    case "audit":
      return subjects.audit(msg.federation);
    default:
      return `pgfed.${msg.federation}.${CHANNEL_OF[msg.type]}.${msg.member}`;
  }
}

export interface NewMessage<T extends MessageType> {
  federation: string;
  epoch: number;
  source: string;
  data: DataOf<T>;
  /** Deterministic id for work that may be retried; random when omitted. */
  id?: string;
  /** Defaults to now. */
  at?: Date;
}

/** Builds and validates an envelope; throws a `bus.invalid_message` error naming the path. */
export function makeMessage<T extends MessageType>(type: T, fields: NewMessage<T> & MemberField<T>): MessageOf<T> {
  const raw = {
    id: fields.id ?? randomUUID(),
    type,
    federation: fields.federation,
    ...("member" in fields && fields.member !== undefined ? { member: fields.member } : {}),
    epoch: fields.epoch,
    at: (fields.at ?? new Date()).toISOString(),
    source: fields.source,
    data: fields.data,
  };
  const parsed = envelopeSchema.safeParse(raw);
  if (!parsed.success) throw new InvalidMessageError(`while building a ${type} message for ${fields.federation}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data as MessageOf<T>;
}

/** `member` is required for member traffic, optional for audit, absent for heartbeats. */
export type MemberField<T extends MessageType> = T extends "heartbeat" ? { member?: never } : T extends "audit" ? { member?: string } : { member: string };

// ---- parsing -----------------------------------------------------------------------------------

export type ParseFailureReason = "invalid_json" | "invalid_envelope";

export type ParseResult = { ok: true; message: BusMessage } | { ok: false; reason: ParseFailureReason; error: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Largest payload parseEnvelope looks at (the server's default max_payload is 1 MiB). */
export const MAX_ENVELOPE_BYTES = 1024 * 1024;

/**
 * Parses a raw payload (bytes, text, or an already decoded JSON value) into a typed message.
 * Never throws: garbage yields `{ ok: false, reason, error }` with the failing path named,
 * e.g. `data.role: Invalid option: expected one of "primary"|"replica"|"unknown"`.
 */
export function parseEnvelope(raw: unknown): ParseResult {
  let value: unknown = raw;
  if (raw instanceof Uint8Array || typeof raw === "string") {
    const size = typeof raw === "string" ? raw.length : raw.byteLength;
    if (size > MAX_ENVELOPE_BYTES) return { ok: false, reason: "invalid_json", error: `payload of ${size} bytes exceeds ${MAX_ENVELOPE_BYTES}` };
    try {
      const text = typeof raw === "string" ? raw : utf8.decode(raw);
      value = JSON.parse(text) as unknown;
    } catch (e) {
      return { ok: false, reason: "invalid_json", error: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
    }
  }
  try {
    const parsed = envelopeSchema.safeParse(value);
    if (parsed.success) return { ok: true, message: parsed.data };
    return { ok: false, reason: "invalid_envelope", error: describeIssues(parsed.error.issues) };
  } catch (e) {
    // safeParse does not throw on data, but exotic inputs (getters, proxies) could.
    return { ok: false, reason: "invalid_envelope", error: `unreadable value: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** "data.role: Invalid option …; epoch: Too small …" — at most five issues. */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  const shown = issues.slice(0, 5).map((i) => `${formatPath(i.path)}: ${i.message}`);
  if (issues.length > 5) shown.push(`and ${issues.length - 5} more`);
  return shown.join("; ");
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(message)";
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : `${i === 0 ? "" : "."}${String(p)}`)).join("");
}

/** A message this process was about to send does not match its schema (a bug in the sender). */
export class InvalidMessageError extends PgfedError {
  constructor(message: string) {
    super("bus.invalid_message", message);
    this.name = "InvalidMessageError";
  }
}

// ---- dead letters ------------------------------------------------------------------------------

/** What lands on `pgfed.dlq.<reason>`: why, where from, and the raw payload. */
export const deadLetterSchema = z.object({
  reason: z.enum(DEAD_LETTER_REASONS),
  /** For `unauthenticated`: why the proof failed ("unsigned", "untrusted_signer", "bad_signature", "not_lease_holder"); absent from older agents' records. */
  refusal: z.string().max(64).optional(),
  error: z.string(),
  subject: z.string(),
  streamSeq: z.number().int().nonnegative(),
  consumer: z.string(),
  at: isoTime,
  payloadBase64: z.string(),
});
export type DeadLetter = z.infer<typeof deadLetterSchema>;
