/**
 * The agent's fence sweep (issue scenario 7): a former primary whose region comes back after a
 * failover must never take a write.
 *
 * CNPG cannot fence across regions (CNPG.md, "Unplanned failover"): when a lost region returns, its
 * Cluster still says `spec.replica.primary: <itself>` and CNPG starts Postgres as a primary. The
 * coordinator fences it once it sees it, but only after the agent has published an observation,
 * which is too late: it already took writes. The one party inside that region that can act first is
 * its agent, so before it publishes anything or starts a primary-lease guard it compares each of its
 * members' Clusters with the coordinator's federation record (KV `pgfed_state`, key `<federation>`)
 * and fences, through the local Kubernetes API, a member that is an unfenced primary by its spec
 * while the record designates ANOTHER member. It does that again after every reconnect, on every
 * record change and on every observation (ensure-style, idempotent).
 *
 * It fences only on evidence, never on a guess. It does NOT fence when:
 *   - there is no record, or it cannot be read or parsed (KV unreachable, invalid value);
 *   - the record designates nobody (an operator must RESOLVE) or this very member;
 *   - the agent has seen a command of a newer epoch than the record's (the coordinator designated
 *     someone newer, maybe this member, and has not written the record yet: it writes after the
 *     transition, the promote command may come first);
 *   - the record's in-flight switchover or failover names this member as its target, or has not
 *     chosen one yet (a promote to this member may already be under way);
 *   - the Cluster is not a primary by its spec, or is already fully fenced.
 * Since the epoch changes exactly when the designated primary changes (machines/federation.ts), a
 * record that designates another member at an epoch no command contradicts is newer than whatever
 * made this member primary.
 *
 * Pure: the agent reads the Cluster and the record and applies the verdict.
 */
import { z } from "zod";
import { clusterRole, isFullyFenced, type Cluster } from "../cnpg/index.js";
import { errorMessage } from "../errors.js";
import { describeIssues } from "../bus/index.js";

/**
 * The fields of the coordinator's federation record (src/coordinator/record.ts) the sweep decides
 * on; the rest (snapshot, steps) is not needed here and may change without touching the agent.
 */
export const sweepRecordSchema = z.looseObject({
  epoch: z.number().int().nonnegative(),
  designatedPrimary: z.string().nullable(),
  operationId: z.string().nullable().optional(),
  operations: z.array(z.looseObject({ id: z.string(), kind: z.string(), target: z.string().nullable() })).optional(),
});
export type SweepRecord = z.infer<typeof sweepRecordSchema>;

/** What the agent knows of one federation's record: a usable record, none, or why it cannot be used. */
export type RecordKnowledge =
  | { kind: "record"; record: SweepRecord; revision: number }
  | { kind: "absent" }
  | { kind: "invalid"; revision: number; problem: string };

export function recordKnowledge(value: unknown, revision: number): RecordKnowledge {
  const parsed = sweepRecordSchema.safeParse(value);
  if (parsed.success) return { kind: "record", record: parsed.data, revision };
  return { kind: "invalid", revision, problem: describeIssues(parsed.error.issues) };
}

/** What the sweep needs to know of a member's Cluster. */
export interface MemberSpecState {
  /** A primary cluster by its spec (`spec.replica.primary == self`). */
  primary: boolean;
  /** All instances fenced; "unreadable" when the annotation cannot be parsed. */
  fullyFenced: boolean | "unreadable";
  unreadableReason?: string;
}

export function specStateOf(c: Cluster): MemberSpecState {
  try {
    return { primary: clusterRole(c) === "primary", fullyFenced: isFullyFenced(c) };
  } catch (e) {
    return { primary: clusterRole(c) === "primary", fullyFenced: "unreadable", unreadableReason: errorMessage(e) };
  }
}

export interface SweepInput {
  federation: string;
  /** The member's name in the federation (what the record's `designatedPrimary` names). */
  member: string;
  spec: MemberSpecState;
  /** Undefined: the record was never read (KV unreachable so far). */
  knowledge: RecordKnowledge | undefined;
  /** The newest epoch the agent has seen for the federation, on a command or a record (undefined: none). */
  newestEpochSeen: number | undefined;
}

export type SweepVerdict =
  | { fence: true; sentence: string; numbers: Record<string, number | string | boolean | null> }
  | { fence: false; why: string };

/** Should the sweep fence this member now? One sentence either way. */
export function sweepVerdict(input: SweepInput): SweepVerdict {
  const { federation, member, spec, knowledge } = input;
  const who = `${federation}/${member}`;
  // CNPG cannot read such an annotation either and keeps Postgres stopped (observation.ts does the same).
  if (spec.fullyFenced === "unreadable") return { fence: false, why: `${who} has an unreadable fencing annotation (${spec.unreadableReason ?? "?"})` };
  if (spec.fullyFenced) return { fence: false, why: `${who} is already fenced` };
  if (!spec.primary) return { fence: false, why: `${who} is not a primary cluster by its spec` };
  if (knowledge === undefined) return { fence: false, why: `the federation record of ${federation} could not be read yet; not fencing ${who} on a guess` };
  if (knowledge.kind === "absent") return { fence: false, why: `${federation} has no federation record yet; nothing designates another member than ${who}` };
  if (knowledge.kind === "invalid") return { fence: false, why: `the federation record of ${federation} (revision ${knowledge.revision}) is not usable (${knowledge.problem}); not fencing ${who} on a guess` };
  const r = knowledge.record;
  if (r.designatedPrimary === null) return { fence: false, why: `the record of ${federation} designates no primary at epoch ${r.epoch} (an operator must resolve); not fencing ${who}` };
  if (r.designatedPrimary === member) return { fence: false, why: `${who} is the designated primary at epoch ${r.epoch}` };
  const seen = input.newestEpochSeen;
  if (seen !== undefined && seen > r.epoch) {
    return { fence: false, why: `the record of ${federation} (epoch ${r.epoch}, designating ${r.designatedPrimary}) is older than epoch ${seen} seen on a command; waiting for the record to catch up before judging ${who}` };
  }
  if (r.operationId) {
    const op = r.operations?.find((o) => o.id === r.operationId);
    if (!op) return { fence: false, why: `operation ${r.operationId} of ${federation} is in flight but not in the record; cannot tell whether ${who} is its target` };
    if ((op.kind === "switchover" || op.kind === "failover") && (op.target === member || op.target === null)) {
      return { fence: false, why: `${op.kind} ${op.id} of ${federation} is in flight ${op.target === null ? "without a chosen target yet" : `with ${who} as its target`}` };
    }
  }
  return {
    fence: true,
    sentence: `${who} is an unfenced primary by its spec but the record of ${federation} designates ${r.designatedPrimary} at epoch ${r.epoch} (revision ${knowledge.revision}): it is a former primary`,
    numbers: { recordEpoch: r.epoch, recordRevision: knowledge.revision, designatedPrimary: r.designatedPrimary, newestEpochSeen: seen ?? null, operationId: r.operationId ?? null },
  };
}
