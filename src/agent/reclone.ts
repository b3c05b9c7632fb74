/**
 * The agent's side of a rejoin: re-clone a diverged former primary (CNPG.md, "Unplanned failover").
 * One `reclone` command takes the steps that fit before its deadline and says whether it is done;
 * the coordinator repeats it until it is. Every step is chosen by planReclone from the Cluster as
 * it is now, so a repeat after a crash (agent or coordinator) resumes where things stand:
 *
 *   1. fence it (Postgres stops, so nothing more diverges while we read it);
 *   2. record what it holds (last timeline and WAL position the sampler saw, the archive that keeps
 *      its diverged WAL) and save the manifest of its replacement in the KV state store, because
 *      after step 3 the old object is gone and a crash must not lose how to recreate it;
 *   3. delete the Cluster (foreground: its pods and volumes go first) and wait until it is gone;
 *   4. create it again as a replica cluster of the primary, bootstrapped with pg_basebackup from it,
 *      archiving under a fresh server name, annotated `pgfed.io/recloned-for-epoch`;
 *   5. wait until it runs as a healthy replica cluster and its Postgres answers in recovery.
 *
 * This discards the member's diverged writes, so only an operator's rejoin request (approved)
 * sends this command (safety: no committed data is lost by pgfed's own decision); the old archive
 * keeps them for salvage and the result names it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import type { JsonValue, StateStore } from "../bus/index.js";
import { recloneManifest, selfName, type Cluster } from "../cnpg/index.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { ObjectRef, RegionClient } from "../kube/region.js";
import type { Logger } from "../log.js";
import { formatLsn } from "../wal/lsn.js";
import type { MemberSample } from "../wal/sampler.js";
import { planReclone } from "./commands.js";

/** What is kept between steps (KV `pgfed_state`, key `<federation>.reclone.<member>`). */
export const recloneRecordSchema = z.object({
  epoch: z.number().int().nonnegative(),
  primary: z.string().min(1),
  /** uid of the diverged Cluster that is (being) deleted. */
  deletedUid: z.string(),
  manifest: z.record(z.string(), z.unknown()),
  /** What the diverged member held when it was re-cloned: goes into every result, hence the audit. */
  discarded: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
  savedAt: z.string(),
});
export type RecloneRecord = z.infer<typeof recloneRecordSchema>;

export function recloneKey(federation: string, member: string): string {
  return `${federation}.reclone.${member}`;
}

export interface RecloneContext {
  who: string;
  federation: string;
  member: string;
  ref: ObjectRef;
  epoch: number;
  /** The primary's topology name (externalClusters entry) and its member name. */
  primary: string;
  primaryMember: string;
  /** Stop taking steps and answer by this time (the command's deadline, less a margin). */
  answerByMs: number;
  kube: Pick<RegionClient, "getCluster" | "patchCluster" | "deleteCluster" | "createCluster">;
  /** Bounds one Kubernetes call. */
  kubeCall<T>(p: Promise<T>, doing: string): Promise<T>;
  store(): Promise<StateStore<RecloneRecord>>;
  lastSample(): MemberSample | undefined;
  log: Logger;
}

export type RecloneOutcome = { ok: true; sentence: string; data: Record<string, JsonValue> } | { ok: false; refused: boolean; code: string; message: string };

const POLL_MS = 200;

export async function runReclone(ctx: RecloneContext): Promise<RecloneOutcome> {
  const key = recloneKey(ctx.federation, ctx.member);
  const doing = `while re-cloning ${ctx.who} from ${ctx.primaryMember}`;
  const steps: string[] = [];
  let record: RecloneRecord | undefined;
  try {
    const store = await ctx.store();
    record = (await store.get(key))?.value;
    for (;;) {
      const c = await readCluster(ctx);
      const step = planReclone(c, { epoch: ctx.epoch, primary: ctx.primary, primaryMember: ctx.primaryMember, who: ctx.who });
      if (step.action === "refuse") return { ok: false, refused: true, code: step.code, message: step.message };
      if (step.action === "done") {
        const sample = ctx.lastSample();
        const created = Date.parse(c?.metadata.creationTimestamp ?? "") || 0;
        // The Cluster status is the operator's word; a replica sample after the re-creation is Postgres's.
        if (sample?.role === "replica" && sample.atMs >= created) {
          steps.push(`${step.sentence}; its Postgres answers in recovery on timeline ${sample.timeline}`);
          return done(true, steps, record, c);
        }
        if (!(await waitOrAnswer(ctx))) return done(false, [...steps, `${step.sentence}; waiting for a sample of its Postgres in recovery`], record, c);
        continue;
      }
      if (step.action === "wait") {
        if (!(await waitOrAnswer(ctx))) return done(false, [...steps, step.sentence], record, c);
        continue;
      }
      if (step.action === "fence") {
        await ctx.kubeCall(ctx.kube.patchCluster(ctx.ref, step.patch, `${doing}: fencing`), `patching Cluster ${ctx.ref.namespace}/${ctx.ref.name}`);
        steps.push(step.sentence);
        continue;
      }
      if (step.action === "delete" && c) {
        const uid = c.metadata.uid ?? "";
        if (record?.epoch !== ctx.epoch || record.deletedUid !== uid) {
          // Saved before the delete: after it, this is the only description of the replacement.
          const plan = recloneManifest(c, { epoch: ctx.epoch, primary: ctx.primary });
          record = { epoch: ctx.epoch, primary: ctx.primary, deletedUid: uid, manifest: plan.manifest, discarded: discardedFigures(c, ctx.lastSample(), plan), savedAt: new Date().toISOString() };
          const saved = record;
          await store.modify(key, () => saved);
          ctx.log.info({ discarded: record.discarded }, `re-cloning ${ctx.who}: it held ${describeDiscarded(record.discarded)}; saved the manifest of its replacement`);
        }
        if (!c.metadata.deletionTimestamp) {
          await ctx.kubeCall(ctx.kube.deleteCluster(ctx.ref, uid, `${doing}:`), `deleting Cluster ${ctx.ref.namespace}/${ctx.ref.name}`);
          steps.push(step.sentence);
        }
        if (!(await waitOrAnswer(ctx))) return done(false, [...steps, `waiting for the Cluster of ${ctx.who} to be gone`], record, c);
        continue;
      }
      // create
      if (record?.epoch !== ctx.epoch || record.primary !== ctx.primary) {
        return {
          ok: false,
          refused: true,
          code: "agent.reclone_spec_lost",
          message: `${doing}: the Cluster is gone and no manifest was saved for epoch ${ctx.epoch} (saved: ${record ? `epoch ${record.epoch}, primary ${record.primary}` : "none"}); recreate it by hand as a replica cluster of ${ctx.primary}`,
        };
      }
      try {
        const created = await ctx.kubeCall(ctx.kube.createCluster(ctx.ref, record.manifest, `${doing}:`), `creating Cluster ${ctx.ref.namespace}/${ctx.ref.name}`);
        steps.push(`created ${ctx.who} again as a replica cluster of ${ctx.primaryMember} (bootstrap pg_basebackup, archive server name ${String(record.discarded.newArchive)})`);
        ctx.log.info({ uid: created.metadata.uid }, steps[steps.length - 1] ?? "");
      } catch (e) {
        // Our earlier create whose reply was lost, or a recreate by hand: the next read decides.
        if (!(e instanceof PgfedError && e.code === "kube.conflict")) throw e;
      }
    }
  } catch (e) {
    const code = e instanceof PgfedError ? e.code : "agent.reclone_failed";
    return { ok: false, refused: false, code, message: `${doing}${steps.length ? ` (after: ${steps.join("; ")})` : ""}: ${errorMessage(e)}` };
  }
}

async function readCluster(ctx: RecloneContext): Promise<Cluster | undefined> {
  try {
    return await ctx.kubeCall(ctx.kube.getCluster(ctx.ref), `reading Cluster ${ctx.ref.namespace}/${ctx.ref.name}`);
  } catch (e) {
    if (e instanceof PgfedError && e.code === "kube.not_found") return undefined;
    throw e;
  }
}

/** Sleeps one poll interval; false when the answer is due first. */
async function waitOrAnswer(ctx: RecloneContext): Promise<boolean> {
  if (Date.now() + POLL_MS >= ctx.answerByMs) return false;
  await sleep(POLL_MS);
  return true;
}

function done(finished: boolean, steps: string[], record: RecloneRecord | undefined, c: Cluster | undefined): RecloneOutcome {
  const sentence = steps.join("; ") || "nothing to do yet";
  return {
    ok: true,
    sentence: finished ? sentence : `${sentence} (not done yet; repeat the command)`,
    data: {
      done: finished,
      patched: steps.length > 0,
      resourceVersion: c?.metadata.resourceVersion ?? "",
      ...(record ? { ...record.discarded, savedAt: record.savedAt } : {}),
    },
  };
}

/** What the diverged member held: the figures the audit records as discarded. */
export function discardedFigures(c: Cluster, sample: MemberSample | undefined, plan: { archive: string; keptServerName: string; newServerName: string }): Record<string, string | number | boolean | null> {
  const lsn = sample === undefined ? undefined : sample.role === "primary" ? sample.currentLsn : (sample.replayLsn ?? sample.receiveLsn);
  return {
    divergedCluster: `${c.metadata.namespace ?? "default"}/${c.metadata.name}`,
    divergedTopologyName: selfName(c),
    divergedSystemID: c.status?.systemID ?? null,
    divergedTimeline: sample?.timeline ?? c.status?.timelineID ?? null,
    divergedLsn: lsn === undefined ? null : formatLsn(lsn),
    divergedLsnRole: sample?.role ?? null,
    divergedSampledAt: sample ? new Date(sample.atMs).toISOString() : null,
    divergedLastArchivedWal: sample?.archiver.lastArchivedWal ?? null,
    archive: plan.archive,
    keptArchive: plan.archive === "none" ? null : plan.keptServerName,
    newArchive: plan.archive === "none" ? null : plan.newServerName,
  };
}

function describeDiscarded(d: RecloneRecord["discarded"]): string {
  const pos = d.divergedLsn === null ? "an unknown WAL position (never sampled)" : `WAL up to ${String(d.divergedLsn)} (${String(d.divergedLsnRole)} sample at ${String(d.divergedSampledAt)})`;
  const archive = d.keptArchive === null ? "no archive is configured" : `its archive stays under server name ${String(d.keptArchive)}; the replacement archives under ${String(d.newArchive)}`;
  return `${pos} on timeline ${String(d.divergedTimeline)}; ${archive}`;
}
