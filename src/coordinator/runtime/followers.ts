/**
 * "Every replica follows the primary" (safety rule 7, following.ts): the ensure step of every
 * change of primary, the bounded wait for the replicas to replay on its timeline, and the
 * level-triggered repair between operations for a replica that could not be changed in time.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { FederationContext } from "../../../machines/index.js";
import { errorMessage } from "../../errors.js";
import { membersToRepoint } from "../following.js";
import type { RuntimeParts } from "./parts.js";

/** Between two steady-state passes that repoint replicas still naming an old primary or source. */
const REPOINT_EVERY_MS = 5_000;
/** Budget of one such pass: outside any operation, so not a step's budget. */
const REPOINT_BUDGET_MS = 10_000;
/** A lag sample older than this does not tell a member's timeline. */
const SAMPLE_FRESH_MS = 5_000;

export interface FollowersCall {
  epoch: number;
  operationId: string;
  primary: string;
  /** Members with a step of their own (the former primary being demoted). */
  skip: readonly string[];
  step: string;
  budgetMs: number;
  signal: AbortSignal;
}

export class Followers {
  private repointing: Promise<void> | undefined;
  private lastRepointAtMs = 0;

  constructor(private readonly p: RuntimeParts) {}

  /**
   * A `follow` command to each replica whose spec names another primary or source, all at once. A
   * member that cannot be changed (its region down) does not fail the operation: it is audited and
   * the steady-state pass repoints it once it answers. Returns who was repointed, who already
   * followed, who failed.
   */
  async ensure(c: FollowersCall): Promise<{ repointed: string[]; unchanged: string[]; failed: string[] }> {
    const { cfg, signals, agents, audit, log, name } = this.p;
    const ctx = this.p.context();
    const skip = new Set([...c.skip, ...(ctx?.diverged ?? []), ...(ctx?.pendingFence ?? []), ...(ctx?.fencing ? [ctx.fencing] : [])]);
    const needs = membersToRepoint(cfg.members, c.primary, (m) => signals.obs(m), skip);
    const needing = new Set(needs.map((n) => n.member));
    const unchanged = cfg.members.map((m) => m.name).filter((m) => m !== c.primary && !skip.has(m) && !needing.has(m));
    const outcomes = await Promise.all(
      needs.map(async (n) => {
        try {
          await agents.command(n.member, { kind: "follow", primary: c.primary }, { epoch: c.epoch, operationId: c.operationId, step: c.step, timeoutMs: c.budgetMs, signal: c.signal });
          audit.write("topology.follow", `${n.member} now names ${c.primary} as primary and follows it`, `it ${n.why}`, { epoch: c.epoch }, c.operationId, n.member, c.epoch);
          return { member: n.member, ok: true };
        } catch (e) {
          const why = errorMessage(e);
          audit.write("topology.follow_failed", `${n.member} could not be pointed at ${c.primary}`, `it ${n.why}; ${why}; pgfed tries again once it answers`, { epoch: c.epoch }, c.operationId, n.member, c.epoch);
          log.warn({ op: c.operationId, member: n.member }, `could not point ${name}/${n.member} at ${c.primary}: ${why}`);
          return { member: n.member, ok: false };
        }
      }),
    );
    return { repointed: outcomes.filter((o) => o.ok).map((o) => o.member), unchanged, failed: outcomes.filter((o) => !o.ok).map((o) => o.member) };
  }

  /**
   * Waits (bounded) until each of `members` replays on the primary's timeline per its own Postgres
   * (lag samples; CNPG's status.timelineID is stale on replica clusters). Members still behind are
   * audited as not following; this never fails the operation, which is done: the member view says
   * "not following" until they catch up.
   */
  async awaitTimeline(primary: string, members: readonly string[], c: { epoch: number; operationId: string }, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const { signals, audit, log, name, now } = this.p;
    const until = now() + timeoutMs;
    const behind = (): { member: string; timeline: number }[] => {
      const pr = signals.samples.get(primary)?.current(now(), SAMPLE_FRESH_MS);
      const want = pr?.status === "up" && pr.sample.role === "primary" ? pr.sample.timeline : undefined;
      return members.flatMap((m) => {
        const st = signals.samples.get(m)?.current(now(), SAMPLE_FRESH_MS);
        const tl = st?.status === "up" && st.sample.role === "replica" ? st.sample.timeline : 0;
        return want !== undefined && tl === want ? [] : [{ member: m, timeline: tl }];
      });
    };
    let left = behind();
    while (left.length > 0 && now() < until && !signal.aborted && !this.p.stopped()) {
      await sleep(200);
      left = behind();
    }
    const pr = signals.samples.get(primary)?.current(now(), SAMPLE_FRESH_MS);
    const timeline = pr?.status === "up" ? pr.sample.timeline : null;
    if (left.length === 0) {
      audit.write("topology.following", `every replica replays ${primary}'s timeline ${String(timeline)}`, `${members.join(", ") || "no replica"} checked after the change of primary`, { epoch: c.epoch, timeline }, c.operationId, null, c.epoch);
      return;
    }
    const list = left.map((b) => `${b.member} (timeline ${b.timeline === 0 ? "unknown" : b.timeline})`).join(", ");
    audit.write("topology.not_following", `${list} not yet on ${primary}'s timeline ${String(timeline)} after ${timeoutMs / 1000} s`, "the operation is done; these members show as not following until they catch up or are rejoined", { epoch: c.epoch, timeline }, c.operationId, null, c.epoch);
    log.warn({ op: c.operationId }, `${name}: ${list} not yet on ${primary}'s timeline ${String(timeline)}`);
  }

  /**
   * Level-triggered repair of the topology between operations: a replica that was unreachable
   * during the last change of primary (or a coordinator that crashed between two follow commands)
   * still names the old primary or source; point it at the designated primary once it answers.
   * Not while paused (someone else may be changing the topology on purpose), not during an
   * operation (its own steps do it), one pass in flight, one every REPOINT_EVERY_MS.
   */
  repointStragglers(ctx: FederationContext, nowMs: number): void {
    const { cfg, signals, log, name } = this.p;
    const primary = ctx.designatedPrimary;
    if (!primary || ctx.operation !== null || ctx.paused || this.repointing !== undefined || nowMs - this.lastRepointAtMs < REPOINT_EVERY_MS) return;
    const pr = signals.obs(primary);
    if (!pr?.reachable || pr.role !== "primary" || pr.fenced || pr.switchInProgress) return;
    const skip = new Set([...ctx.diverged, ...ctx.pendingFence, ...(ctx.fencing ? [ctx.fencing] : [])]);
    if (membersToRepoint(cfg.members, primary, (m) => signals.obs(m), skip).length === 0) return;
    this.lastRepointAtMs = nowMs;
    const call = { epoch: ctx.epoch, operationId: `repoint-e${ctx.epoch}`, primary, skip: [], step: "repoint", budgetMs: REPOINT_BUDGET_MS, signal: this.p.stopSignal };
    this.repointing = this.ensure(call)
      .then(() => undefined)
      .catch((e: unknown) => log.warn({ err: errorMessage(e) }, `repointing replicas of ${name} at ${primary} failed: ${errorMessage(e)}`))
      .finally(() => {
        this.repointing = undefined;
      });
  }
}
