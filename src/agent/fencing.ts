/**
 * Every fence the agent decides on its own, in one place. The doc comment of each exported
 * function says why that fence happens in the sentence that is logged (with `{federation, member,
 * epoch}`) and audited when it does:
 *
 *   why                                                             reason                decided by
 *   the record designates another member: a former primary          superseded            sweepVerdict, applied by ensureNotSuperseded
 *   a renewal found the primary lease taken by another holder       lease_taken           leaseLostFence
 *   a renewal found the primary lease already expired               lease_expiring        leaseLostFence
 *   no renewal got through and the lease's validity runs out        lease_expiring        leaseExpiringFence
 *   the lease passed from this holder to another one                lease_taken           leaseHeldElsewhereFence
 *   another holder keeps renewing it while this member is primary   lease_held_elsewhere  leaseHeldElsewhereFence
 *   the bus never let this holder take the lease                    lease_unreachable     leaseUnreachableFence
 *
 * The lease fences are applied by selfFence, which the primary guard calls; both kinds patch the
 * member through the local Kubernetes API under its write lock and are reported on the audit
 * stream (fence-reports.ts). The mechanics stay where they run: the lease loop and its timer in
 * primary-guard.ts, the record reads and watch in federation-records.ts. The agent never unfences:
 * after any of these the coordinator decides.
 *
 * The fence sweep (issue scenario 7): a former primary whose region comes back after a failover
 * must never take a write. CNPG cannot fence across regions (CNPG.md, "Unplanned failover"): when
 * a lost region returns, its Cluster still says `spec.replica.primary: <itself>` and CNPG starts
 * Postgres as a primary. The coordinator fences it once it sees it, but only after the agent has
 * published an observation, which is too late: it already took writes. The one party inside that
 * region that can act first is its agent, so before it publishes anything or starts a primary-lease
 * guard it compares each of its members' Clusters with the coordinator's federation record (KV
 * `pgfed_state`, key `<federation>`) and fences a member that is an unfenced primary by its spec
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
 */
import { setTimeout as sleep } from "node:timers/promises";
import { isExpired, type Lease, type Observation } from "../bus/index.js";
import { clusterRole, fencePatch, isFencedForSure, isFullyFenced, type Cluster } from "../cnpg/index.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { ObjectRef, RegionClient } from "../kube/region.js";
import type { Logger } from "../log.js";
import type { EpochTracker } from "./epochs.js";
import type { FederationRecords, RecordKnowledge } from "./federation-records.js";
import type { FenceReports } from "./fence-reports.js";
import type { AgentMetrics } from "./metrics.js";
import type { WriteLock } from "./write-lock.js";

// ---- what a fence needs ------------------------------------------------------------------------

/** The member a fence acts on (the agent's member runtime). */
export interface FencedMember {
  readonly fed: { readonly name: string };
  readonly cfg: { readonly name: string };
  readonly ref: ObjectRef;
  /** "orders/pg-eu" */
  readonly who: string;
  readonly labels: { region: string; federation: string; member: string };
  /** Binds federation and member. */
  readonly log: Logger;
  readonly observation: Observation | undefined;
  readonly guard: { setWanted(wanted: boolean): void };
  readonly lock: WriteLock;
  /** A fence sweep of this member in flight (one at a time; it re-reads the Cluster). */
  sweeping: Promise<SweepOutcome> | undefined;
}

/** What the agent's fences may use. */
export interface FenceContext {
  readonly region: string;
  readonly source: string;
  readonly startedAtMs: number;
  readonly kube: Pick<RegionClient, "getCluster" | "patchCluster">;
  readonly log: Logger;
  readonly metrics: Pick<AgentMetrics, "fences" | "kubeErrors">;
  readonly epochs: EpochTracker;
  readonly records: FederationRecords;
  readonly reports: FenceReports;
  readonly members: readonly FencedMember[];
  /** False when the agent does not follow the federation records (`watchStateEpochs: false`): no sweep. */
  readonly sweepEnabled: boolean;
  readonly sweep: { status: StartupSweepStatus; retrying: boolean };
  readonly stopSignal: AbortSignal;
  /** Background loops the agent's stop() waits for. */
  readonly loops: Promise<void>[];
  readonly now: () => number;
  /** Bounds one Kubernetes API call. */
  readonly kubeCall: <T>(p: Promise<T>, doing: string) => Promise<T>;
}

// ---- a former primary: the fence sweep ---------------------------------------------------------

/** How the fence sweep at start went. */
export interface StartupSweepStatus {
  /** pending: running; waiting: the records could not be read, retrying; done: every member was judged once. */
  state: "pending" | "waiting" | "done";
  /** Agent start → the last fence patch accepted (or → every member judged when nothing was fenced). */
  durationMs?: number;
  /** Time of the KV read of the federation records. */
  kvReadMs?: number;
  /** Wall-clock time the sweep at start completed (its last fence accepted). */
  completedAtMs?: number;
  /** Members fenced by the sweep at start (`<federation>/<member>`). */
  fenced: string[];
  /** Why it is waiting (state "waiting"). */
  reason?: string;
}

export type SweepTrigger = "start" | "retry" | "reconnect" | "record" | "observation";
export type SweepOutcome = { fenced: true; atMs: number; sentence: string } | { fenced: false; why: string; failed?: boolean };

/** What the sweep needs to know of a member's Cluster. */
export interface MemberSpecState {
  /** A primary cluster by its spec (`spec.replica.primary == self`). */
  primary: boolean;
  /** All instances fenced; "unreadable" when the annotation cannot be parsed. */
  fullyFenced: boolean | "unreadable";
  unreadableReason?: string;
}

/** What the sweep reads of a Cluster to tell whether it may be a former primary still taking writes. */
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

/** Fence, because "<federation>/<member> is an unfenced primary by its spec but the record of <federation> designates <other> at epoch <n> (revision <r>): it is a former primary"; pure, one sentence either way. */
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

/** Fence every former primary before anything is published or guarded, so a region that comes back after a failover never takes a write; when KV does not answer, retry in the background. */
export async function sweepAtStart(ctx: FenceContext): Promise<void> {
  if (!ctx.sweepEnabled || ctx.members.length === 0) {
    ctx.sweep.status = { state: "done", durationMs: 0, fenced: [] };
    return;
  }
  const t0 = performance.now();
  const read = await ctx.records.read();
  const kvReadMs = round1(performance.now() - t0);
  if (!read.ok) {
    ctx.sweep.status = { state: "waiting", kvReadMs, fenced: [], reason: read.error };
    ctx.log.warn(
      { kvReadMs },
      `fence sweep at start: cannot read the federation records (${read.error}); fencing nothing on a guess, retrying with backoff; the primary-lease guards keep their rules meanwhile`,
    );
    retrySweep(ctx);
    return;
  }
  await finishStartSweep(ctx, t0, kvReadMs, "start");
}

async function finishStartSweep(ctx: FenceContext, t0: number, kvReadMs: number, trigger: SweepTrigger): Promise<void> {
  const outcomes = await sweepMembers(ctx, trigger);
  const fenced = outcomes.filter((o) => o.outcome.fenced).map((o) => o.rt.who);
  const durationMs = round1(performance.now() - t0);
  ctx.sweep.status = { state: "done", durationMs, kvReadMs, fenced, completedAtMs: ctx.now() };
  const judged = outcomes.map(({ rt, outcome }) => (outcome.fenced ? `${rt.who} fenced` : `${rt.who} left alone (${outcome.why})`)).join("; ");
  ctx.log.info({ durationMs, kvReadMs, fenced }, `fence sweep at ${trigger} done in ${durationMs} ms (KV read ${kvReadMs} ms): ${judged || "no members"}`);
}

/** Retries the record read with a bounded backoff until KV answers, then sweeps once. */
function retrySweep(ctx: FenceContext): void {
  const { sweep, stopSignal } = ctx;
  if (sweep.retrying || stopSignal.aborted) return;
  sweep.retrying = true;
  const t0 = performance.now();
  ctx.loops.push(
    (async () => {
      let delayMs = 250;
      for (let attempt = 1; !stopSignal.aborted; attempt++) {
        await sleep(delayMs, undefined, { signal: stopSignal }).catch(() => undefined);
        if (stopSignal.aborted) return;
        const kv0 = performance.now();
        const read = await ctx.records.read();
        if (read.ok) {
          if (!ctx.records.watching) await ctx.records.watch();
          await finishStartSweep(ctx, t0, round1(performance.now() - kv0), "retry");
          return;
        }
        sweep.status = { ...sweep.status, reason: read.error };
        ctx.log.warn({ attempt }, `fence sweep: still cannot read the federation records (${read.error}); retrying in ${Math.min(delayMs * 2, 5_000)} ms`);
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    })()
      .catch((e: unknown) => ctx.log.error({ err: errorMessage(e) }, `the fence sweep retry failed: ${errorMessage(e)}`))
      .finally(() => {
        sweep.retrying = false;
      }),
  );
}

/** Fence the former primaries among the members (of one federation, or all), judging each against its record; after a reconnect, the record may have moved on while the agent was cut off. */
export async function sweepMembers(ctx: FenceContext, trigger: SweepTrigger, federation?: string): Promise<{ rt: FencedMember; outcome: SweepOutcome }[]> {
  const members = ctx.members.filter((rt) => federation === undefined || rt.fed.name === federation);
  return Promise.all(members.map(async (rt) => ({ rt, outcome: await ensureNotSuperseded(ctx, rt, trigger) })));
}

/** Fence the members of `federation` a changed record may have just superseded: those seen as unfenced primaries it supersedes, and those not observed yet (no I/O for the others). */
export function sweepAfterRecordChange(ctx: FenceContext, federation: string): void {
  for (const rt of ctx.members) {
    if (rt.fed.name === federation && (!rt.observation || looksSuperseded(ctx, rt, rt.observation))) void ensureNotSuperseded(ctx, rt, "record");
  }
}

/** True when the observation shows an unfenced primary the known record says is a former primary, so it is fenced rather than guarded (no I/O). */
export function looksSuperseded(ctx: FenceContext, rt: FencedMember, obs: Observation): boolean {
  if (!ctx.sweepEnabled || !obs.reachable || obs.role !== "primary" || obs.fenced) return false;
  return sweepVerdict({ federation: rt.fed.name, member: rt.cfg.name, spec: { primary: true, fullyFenced: false }, knowledge: ctx.records.get(rt.fed.name), newestEpochSeen: ctx.epochs.get(rt.fed.name)?.epoch }).fence;
}

/** Fence a former primary, because the coordinator's record designates another member (sweepVerdict's sentence): reads the Cluster, judges it, patches the fence once, serialized with the member's other writes. */
export function ensureNotSuperseded(ctx: FenceContext, rt: FencedMember, trigger: SweepTrigger): Promise<SweepOutcome> {
  if (rt.sweeping) return rt.sweeping;
  const t0 = performance.now();
  const run = rt.lock
    .run(async (): Promise<SweepOutcome> => {
      const c = await ctx.kubeCall(ctx.kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name} for the fence sweep`);
      const fed = rt.fed.name;
      const verdict = sweepVerdict({ federation: fed, member: rt.cfg.name, spec: specStateOf(c), knowledge: ctx.records.get(fed), newestEpochSeen: ctx.epochs.get(fed)?.epoch });
      if (!verdict.fence) return { fenced: false, why: verdict.why };
      // Never guard the lease of a member being fenced as a former primary.
      rt.guard.setWanted(false);
      const atMs = await patchFence(ctx, rt, `fence sweep (${trigger}) of ${rt.who}:`, "superseded");
      const sweepMs = round1(performance.now() - t0);
      const sentence = `fenced ${rt.who} through the local Kubernetes API (${trigger} sweep, ${sweepMs} ms from reading it to the fence accepted): ${verdict.sentence}`;
      const numbers = { ...verdict.numbers, sweepMs, fencedAtMs: atMs, agentStartedAtMs: ctx.startedAtMs, sinceAgentStartMs: atMs - ctx.startedAtMs, trigger };
      rt.log.warn({ epoch: ctx.epochs.current(fed), ...numbers }, sentence);
      ctx.reports.add({ federation: fed, member: rt.cfg.name, action: "primary.superseded_fenced", idKind: "superseded-fence", from: ctx.source, reason: verdict.sentence, sentence, numbers, fencedAtMs: atMs });
      return { fenced: true, atMs, sentence };
    })
    .catch((e: unknown): SweepOutcome => {
      const why = `could not judge or fence ${rt.who} (${trigger} sweep): ${errorMessage(e)}`;
      rt.log.warn({ epoch: ctx.epochs.current(rt.fed.name), err: errorMessage(e) }, `${why}; judged again on the next observation`);
      return { fenced: false, why, failed: true };
    })
    .finally(() => {
      rt.sweeping = undefined;
    });
  rt.sweeping = run;
  return run;
}

// ---- the primary lease: self-fence -------------------------------------------------------------

export type FenceReason = "lease_expiring" | "lease_taken" | "lease_held_elsewhere" | "lease_unreachable";

/** A lease fence decided: its reason (metric label, audit) and the sentence saying why. */
export interface FenceDecision {
  reason: FenceReason;
  why: string;
}

export interface FenceOutcome {
  /** False when the member was already fenced, or no longer the primary cluster. */
  patched: boolean;
  /** Local time the Kubernetes API accepted the fence (or found it done). */
  atMs: number;
  /** Why nothing was patched, in words. */
  note?: string;
}

/** Fence, because a renewal found the lease gone: "<holder> lost the primary lease to <other> (term <n>)" when another holder took it, "the primary lease expired before <holder> could renew it" when it lapsed. */
export function leaseLostFence(holder: string, current: Lease | undefined): FenceDecision {
  if (current) return { reason: "lease_taken", why: `${holder} lost the primary lease to ${current.holder} (term ${current.term})` };
  return { reason: "lease_expiring", why: `the primary lease expired before ${holder} could renew it` };
}

/** Fence before the coordinator may promote another member, because "<holder> could not renew the primary lease of <federation> (last renewed <n> ms ago; <m> ms of validity left)". */
export function leaseExpiringFence(a: { holder: string; federation: string; lease: Lease; nowMs: number }): FenceDecision {
  return {
    reason: "lease_expiring",
    why: `${a.holder} could not renew the primary lease of ${a.federation} (last renewed ${a.nowMs - a.lease.renewedAtMs} ms ago; ${a.lease.expiresAtMs - a.nowMs} ms of validity left)`,
  };
}

/**
 * Fence, because a live primary elsewhere holds the one-writer role: "the primary lease of <federation> passed from <holder> to <other> (term <n>) while <who> is still primary" once this holder had it, "<other> holds the primary lease of <federation> (term <n>) and keeps renewing it while <who> is also primary: <who> is stale" when the other keeps renewing it; undefined while it may still be released or lapse (after a switchover the old primary's agent releases it, after a failover it lapsed).
 */
export function leaseHeldElsewhereFence(a: { federation: string; holder: string; who: string; current: Lease; previous: Lease | undefined; everHeld: boolean; nowMs: number }): FenceDecision | undefined {
  const { federation, holder, who, current: cur, previous: prev } = a;
  if (isExpired(cur, a.nowMs)) return undefined; // lapsing: taken at a later tick (after the takeover margin)
  if (a.everHeld) return { reason: "lease_taken", why: `the primary lease of ${federation} passed from ${holder} to ${cur.holder} (term ${cur.term}) while ${who} is still primary` };
  if (prev && prev.holder === cur.holder && prev.term === cur.term && cur.renewedAtMs > prev.renewedAtMs) {
    return { reason: "lease_held_elsewhere", why: `${cur.holder} holds the primary lease of ${federation} (term ${cur.term}) and keeps renewing it while ${who} is also primary: ${who} is stale` };
  }
  return undefined;
}

/** Fence, because nobody vouches for this primary so the coordinator may fail over: "<who> has been primary for <n> ms without <holder> being able to take the primary lease (bus unreachable)"; undefined until it never held the lease for a whole ttl minus the fence lead. */
export function leaseUnreachableFence(a: { who: string; holder: string; everHeld: boolean; primaryForMs: number; leaseTtlMs: number; fenceLeadMs: number }): FenceDecision | undefined {
  if (a.everHeld || a.primaryForMs < a.leaseTtlMs - a.fenceLeadMs) return undefined;
  return { reason: "lease_unreachable", why: `${a.who} has been primary for ${a.primaryForMs} ms without ${a.holder} being able to take the primary lease (bus unreachable)` };
}

/** Fence a member that lost its primary lease (leaseLostFence and the others say why), because the coordinator may promote another member: ensures all its instances are fenced through the local Kubernetes API. */
export function selfFence(ctx: FenceContext, rt: FencedMember, reason: FenceReason): Promise<FenceOutcome> {
  return rt.lock.run(async () => {
    const c = await ctx.kubeCall(ctx.kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name} to fence it`);
    if (isFencedForSure(c)) return { patched: false, atMs: ctx.now() };
    if (clusterRole(c) !== "primary") return { patched: false, atMs: ctx.now(), note: `${rt.who} is no longer the primary cluster (spec.replica.primary is ${c.spec.replica?.primary ?? "unset"})` };
    const atMs = await patchFence(ctx, rt, `fencing ${rt.who} after losing its primary lease (${reason}):`, reason);
    return { patched: true, atMs };
  });
}

// ---- the patch both kinds apply ----------------------------------------------------------------

/** Patches the fence of all instances through the local Kubernetes API, counts it, and checks it took; the time it was accepted. */
async function patchFence(ctx: FenceContext, rt: FencedMember, doing: string, reason: string): Promise<number> {
  let after: Cluster;
  try {
    after = await ctx.kubeCall(ctx.kube.patchCluster(rt.ref, fencePatch(["*"]), doing), `patching Cluster ${rt.ref.namespace}/${rt.ref.name}`);
  } catch (e) {
    ctx.metrics.kubeErrors.inc({ region: ctx.region, operation: "patch" });
    throw e;
  }
  const atMs = ctx.now();
  ctx.metrics.fences.inc({ ...rt.labels, reason });
  if (!isFullyFenced(after)) throw new PgfedError("agent.patch_not_effective", `fencing ${rt.who}: the patch was accepted but the Cluster is still not fenced`);
  return atMs;
}

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}
