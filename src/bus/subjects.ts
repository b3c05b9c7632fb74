/**
 * Subjects and the stream that stores them (DESIGN.md, data-flow diagram):
 *
 *   pgfed.<federation>.obs.<member>   agent → coordinator   observation of a member's Cluster
 *   pgfed.<federation>.lag.<member>   agent → coordinator   WAL position / archiver sample
 *   pgfed.<federation>.cmd.<member>   coordinator → agent   command for the member's agent
 *   pgfed.<federation>.res.<member>   agent → coordinator   result of a command
 *   pgfed.<federation>.hb.<region>    agent → coordinator   heartbeat of the agent serving <region>
 *   pgfed.<federation>.audit          coordinator/api → all one subject per federation (the diagram's)
 *   pgfed.dlq.<reason>                bus → on-call         messages no schema accepted
 *
 * Everything about one federation lives under `pgfed.<federation>.>` so a coordinator reads a
 * federation with one filter (nats-server 2.9 has no multi-filter consumers). Heartbeats are per
 * federation for the same reason: an agent serving several federations sends one to each.
 * "dlq" is therefore reserved and cannot name a federation.
 */
import { createHash } from "node:crypto";
import { PgfedError } from "../errors.js";

export const SUBJECT_ROOT = "pgfed";

/** Channels that carry one member's traffic. */
export const MEMBER_CHANNELS = ["obs", "lag", "cmd", "res"] as const;
export type MemberChannel = (typeof MEMBER_CHANNELS)[number];

/** Federation names that would collide with subjects the bus uses itself. */
export const RESERVED_FEDERATION_NAMES: readonly string[] = ["dlq"];

/** Why a message was dead-lettered; each is one token under `pgfed.dlq.`. */
export const DEAD_LETTER_REASONS = ["invalid_json", "invalid_envelope", "subject_mismatch", "handler_failed", "unauthenticated"] as const;
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];

export type NameKind = "federation" | "member" | "region" | "agent id" | "coordinator id" | "machine" | "consumer" | "key part";

const NAME_RE = /^[A-Za-z0-9_-]+$/;
const MAX_NAME_LENGTH = 64;

/**
 * Why `value` cannot be one subject token (or KV key part), or undefined when it can. Names are
 * 1–64 of letters, digits, "-" and "_": Kubernetes names fit, dots, wildcards and spaces do not.
 */
export function nameProblem(value: string): string | undefined {
  if (value.length === 0) return "is empty";
  if (value.length > MAX_NAME_LENGTH) return `is ${value.length} characters long (at most ${MAX_NAME_LENGTH})`;
  if (NAME_RE.test(value)) return undefined;
  if (value.includes(".")) return `contains "." (the subject separator)`;
  if (value.includes("*") || value.includes(">")) return `contains a wildcard ("*" or ">")`;
  if (/\s/.test(value)) return "contains whitespace";
  const bad = [...value].find((c) => !/[A-Za-z0-9_-]/.test(c)) ?? "?";
  return `contains ${JSON.stringify(bad)} (allowed: letters, digits, "-" and "_")`;
}

/** Returns `value` when it is a valid name of that kind; throws `bus.invalid_name` naming the problem. */
export function checkName(kind: NameKind, value: string): string {
  const problem = nameProblem(value);
  if (problem) throw new PgfedError("bus.invalid_name", `invalid ${kind} name ${JSON.stringify(value)}: ${problem}`, { kind, value });
  if (kind === "federation" && RESERVED_FEDERATION_NAMES.includes(value)) {
    throw new PgfedError("bus.invalid_name", `invalid federation name ${JSON.stringify(value)}: reserved by the bus`, { kind, value });
  }
  return value;
}

/** Subject of a member channel: `pgfed.<federation>.<channel>.<member>`. */
export function memberSubject(channel: MemberChannel, federation: string, member: string): string {
  return `${SUBJECT_ROOT}.${checkName("federation", federation)}.${channel}.${checkName("member", member)}`;
}

export const subjects = {
  obs: (federation: string, member: string): string => memberSubject("obs", federation, member),
  lag: (federation: string, member: string): string => memberSubject("lag", federation, member),
  cmd: (federation: string, member: string): string => memberSubject("cmd", federation, member),
  res: (federation: string, member: string): string => memberSubject("res", federation, member),
  heartbeat: (federation: string, region: string): string => `${SUBJECT_ROOT}.${checkName("federation", federation)}.hb.${checkName("region", region)}`,
  audit: (federation: string): string => `${SUBJECT_ROOT}.${checkName("federation", federation)}.audit`,
  deadLetter: (reason: DeadLetterReason): string => `${SUBJECT_ROOT}.dlq.${reason}`,
};

/** An agent's durable consumer of one member's commands: readable when it fits in 64 characters, hashed otherwise. */
export function agentConsumerName(agentId: string, federation: string, member: string): string {
  const plain = `agent_${agentId}_${federation}_${member}`;
  if (plain.length <= 64) return plain;
  const hash = createHash("sha256").update(plain).digest("hex").slice(0, 16);
  return `agent_${agentId.slice(0, 20)}_${hash}`;
}

/** Consumer filters (one subject with wildcards; 2.9 accepts one filter per consumer). */
export const filters = {
  /** Everything of one federation: what a coordinator reads. */
  federation: (federation: string): string => `${SUBJECT_ROOT}.${checkName("federation", federation)}.>`,
  /** One channel of one federation, all members (`member` narrows it to one). */
  channel: (federation: string, channel: MemberChannel | "hb", member?: string): string =>
    `${SUBJECT_ROOT}.${checkName("federation", federation)}.${channel}.${member === undefined ? "*" : checkName(channel === "hb" ? "region" : "member", member)}`,
  /** Everything of every federation (and `pgfed.dlq.*`, which consumers skip): one shared coordinator intake. */
  allFederations: (): string => `${SUBJECT_ROOT}.*.>`,
  /** The audit trail of every federation. */
  allAudit: (): string => `${SUBJECT_ROOT}.*.audit`,
  deadLetters: (): string => `${SUBJECT_ROOT}.dlq.>`,
  everything: (): string => `${SUBJECT_ROOT}.>`,
};

export type ParsedSubject =
  | { kind: "member"; federation: string; channel: MemberChannel; member: string }
  | { kind: "heartbeat"; federation: string; region: string }
  | { kind: "audit"; federation: string }
  | { kind: "deadLetter"; reason: string };

/** Reads a concrete pgfed subject back into its parts; undefined when it is not one of ours. */
export function parseSubject(subject: string): ParsedSubject | undefined {
  const t = subject.split(".");
  if (t[0] !== SUBJECT_ROOT) return undefined;
  if (t.some((token) => nameProblem(token) !== undefined)) return undefined;
  const [, second, third, fourth] = t;
  if (second === undefined || third === undefined) return undefined;
  if (second === "dlq") return t.length === 3 ? { kind: "deadLetter", reason: third } : undefined;
  if (t.length === 3 && third === "audit") return { kind: "audit", federation: second };
  if (t.length !== 4 || fourth === undefined) return undefined;
  if (third === "hb") return { kind: "heartbeat", federation: second, region: fourth };
  if ((MEMBER_CHANNELS as readonly string[]).includes(third)) return { kind: "member", federation: second, channel: third as MemberChannel, member: fourth };
  return undefined;
}

/**
 * Checks a consumer filter: a subject under `pgfed.` whose tokens are names or wildcards
 * (`*` anywhere, `>` last). Throws `bus.invalid_filter`.
 */
export function checkFilter(filter: string): string {
  const t = filter.split(".");
  const bad = (why: string) => new PgfedError("bus.invalid_filter", `invalid subscription filter ${JSON.stringify(filter)}: ${why}`, { filter });
  if (t[0] !== SUBJECT_ROOT) throw bad(`must start with "${SUBJECT_ROOT}."`);
  if (t.length < 2) throw bad("names no subject under the root");
  t.forEach((token, i) => {
    if (token === "*") return;
    if (token === ">") {
      if (i !== t.length - 1) throw bad(`">" may only be the last token`);
      return;
    }
    const problem = nameProblem(token);
    if (problem) throw bad(`token ${i + 1} ${JSON.stringify(token)} ${problem}`);
  });
  return filter;
}

/** True when the concrete `subject` matches the NATS `filter` (`*` one token, `>` the rest). */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    const ft = f[i];
    if (ft === ">") return s.length > i;
    if (i >= s.length) return false;
    if (ft !== "*" && ft !== s[i]) return false;
  }
  return f.length === s.length;
}

// ---- the stream ------------------------------------------------------------------------------

/**
 * One stream, `PGFED`, holds `pgfed.>`: file storage, limits retention, 7 days max age, 2 minutes
 * of msgID dedup. Why one: nats-server refuses two streams whose subjects overlap, so a separate
 * audit stream would need a root other than `pgfed.` (the diagram's `pgfed.<fed>.audit`), and
 * 2.9 has no per-subject TTL. Volume is small (a lag sample every few seconds per member is a few
 * MB per member per day), so 7 days of everything fits; `maxBytes` bounds the worst case. The
 * audit trail's long-term home is whatever reads `pgfed.*.audit` and ships it on (logs, SIEM).
 */
export const STREAM_NAME = "PGFED";

export interface StreamSettings {
  name: string;
  maxAgeMs: number;
  /** -1 for unlimited; oldest messages go first when reached. */
  maxBytes: number;
  /** Window in which a repeated msgID (envelope id) is stored only once. */
  duplicateWindowMs: number;
  replicas: number;
}

export const DEFAULT_STREAM: StreamSettings = {
  name: STREAM_NAME,
  maxAgeMs: 7 * 24 * 3_600_000,
  maxBytes: 4 * 1024 ** 3,
  duplicateWindowMs: 2 * 60_000,
  replicas: 1,
};
