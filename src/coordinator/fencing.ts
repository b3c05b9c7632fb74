/**
 * Every fence the coordinator decides, in one place. Each function's first sentence is why the
 * fence happens; it is also what the log and the audit say. Where else a member changes role or
 * is fenced: the machines (machines/federation.ts, machines/member.ts: which member is designated,
 * diverged, promoted, demoted) and the agent (src/agent/fencing.ts: its start-up sweep and its
 * lease self-fence). DESIGN.md lists them all.
 *
 * Agent commands carry the epoch and an agent refuses an older one (safety rule 1). The one fence
 * the coordinator writes itself, through a region's Kubernetes API, first checks the same rule
 * against the stored federation record (RecordWriter.confirmWriter).
 */
import type { FederationContext, FenceAndDemoteFormerInput } from "../../machines/index.js";
import type { Observation } from "../bus/index.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { PrimaryCorroborator, ProbeTarget } from "./corroboration.js";
import type { AgentCommands } from "./runtime/agent-rpc.js";
import type { AuditTrail } from "./runtime/audit.js";
import type { RecordWriter } from "./runtime/persistence.js";
import type { FederationSignals } from "./signals.js";

/** How long a former primary may sit fenced and switching with no token before pgfed takes its demotion as never completing (CNPG retries every 10 s). */
export const STUCK_DEMOTION_MS = 15_000;
/** Least time between two attempts to fence a diverged member again. */
const REFENCE_EVERY_MS = 2_000;
/** Budget of one such attempt: a level-triggered repair outside any step, so not a step's budget. */
const REFENCE_BUDGET_MS = 10_000;

export interface FencingDeps {
  federation: string;
  log: Logger;
  now: () => number;
  signals: FederationSignals;
  agents: AgentCommands;
  audit: AuditTrail;
  writer: RecordWriter;
  corroborator: PrimaryCorroborator;
  stopSignal: AbortSignal;
}

export class Fencing {
  private refencing: Promise<void> | undefined;
  private lastRefenceAtMs = 0;

  constructor(private readonly d: FencingDeps) {}

  /**
   * A former primary of an unplanned failover is fenced as soon as it is seen again, because it may
   * hold writes the new primary never saw; it is then pointed at the new primary and fenced again,
   * since CNPG ends a demotion by unfencing (it then runs read-only, in recovery).
   */
  async fenceAndDemoteFormer(input: FenceAndDemoteFormerInput, signal: AbortSignal): Promise<void> {
    const d = this.d;
    const deadline = d.now() + input.budgetMs;
    const left = (): number => Math.max(1_000, deadline - d.now());
    const call = (step: string) => ({ epoch: input.epoch, operationId: `fence-${input.member}-e${input.epoch}`, step, timeoutMs: left(), signal });
    d.log.info({ member: input.member, epoch: input.epoch }, `${d.federation}/${input.member}: fencing former primary ${input.member}: it may hold writes the new primary never saw`);
    await d.agents.command(input.member, { kind: "fence" }, call("fence"));
    if (!input.newPrimary) return;
    const to = input.newPrimary;
    const seen = d.signals.obs(input.member);
    const alreadyDemoted = seen?.reachable === true && seen.role === "replica" && !seen.switchInProgress;
    await d.agents.command(input.member, { kind: "demote", to }, call("demoteFormer"));
    if (!alreadyDemoted) await this.awaitFormerDemoted(input.member, to, seen?.demotionToken, input.epoch, left(), signal);
    await d.agents.command(input.member, { kind: "fence" }, call("refence"));
  }

  /**
   * The role follows the spec at once; the demotion is over (and its unfence done) only once CNPG
   * was seen switching, or published a new demotion token (a fast switch may be coalesced away).
   * A former primary that crashed never finishes: CNPG demotes only a cleanly shut down data
   * directory and a fenced instance never runs crash recovery (CNPG's
   * pkg/reconciler/replicaclusterswitch/shutdown_wal.go), so it stays fenced, switching, with no
   * token. That is as safe as a finished demotion (it cannot write) and is accepted once it has
   * lasted longer than CNPG's 10 s retry; the member is diverged either way and a rejoin re-clones
   * it without a token.
   */
  private async awaitFormerDemoted(member: string, to: string, tokenBefore: string | undefined, epoch: number, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const d = this.d;
    const toCluster = d.signals.topologyName(to);
    let switching = false;
    let stuckSinceMs: number | undefined;
    const o = await d.agents.awaitObservation(
      member,
      `to finish its demotion to follow ${to}`,
      (x) => {
        switching ||= x.switchInProgress;
        const stuck = x.fenced && x.switchInProgress && x.specPrimary === toCluster && x.demotionToken === undefined;
        stuckSinceMs = stuck ? (stuckSinceMs ?? d.now()) : undefined;
        if (stuckSinceMs !== undefined && d.now() - stuckSinceMs >= STUCK_DEMOTION_MS) return true;
        return x.role === "replica" && !x.switchInProgress && (switching || (x.demotionToken !== undefined && x.demotionToken !== tokenBefore));
      },
      timeoutMs,
      signal,
    );
    if (!o.switchInProgress) return;
    const sentence = `former primary ${member} of ${d.federation} cannot finish its demotion: it is fenced and names ${to} as primary, but CNPG produced no demotion token for ${(STUCK_DEMOTION_MS / 1000).toFixed(0)} s`;
    d.log.warn({ member, epoch }, sentence);
    d.audit.write(
      "former.demotion_stuck",
      sentence,
      "its data directory was not shut down cleanly (it crashed with its region): CNPG retries forever and never starts it; it stays fenced and diverged, and a rejoin re-clones it",
      { epoch, stuckSeconds: STUCK_DEMOTION_MS / 1000 },
      null,
      member,
      epoch,
    );
  }

  /**
   * A diverged member is fenced again whenever it is seen unfenced, because its data has forked and
   * it must not serve until it is rejoined (CNPG ends a demotion by unfencing; a person may too).
   * Level-triggered, at most one attempt in flight, one every 2 s.
   */
  keepDivergedFenced(ctx: FederationContext, member: string, obs: Observation, nowMs: number): void {
    const d = this.d;
    if (!ctx.diverged.includes(member) || !obs.reachable || obs.fenced || obs.switchInProgress || ctx.fencing !== null) return;
    if (ctx.operation?.kind === "rejoin" && ctx.operation.target === member) return;
    if (this.refencing !== undefined || nowMs - this.lastRefenceAtMs < REFENCE_EVERY_MS) return;
    this.lastRefenceAtMs = nowMs;
    const reason = `diverged member ${member} of ${d.federation} seen unfenced; fencing it again until it is rejoined`;
    d.log.warn({ member, epoch: ctx.epoch }, reason);
    d.audit.write("diverged.refence", reason, "a diverged member has forked data and must not serve", {}, null, member, ctx.epoch);
    const call = { epoch: ctx.epoch, operationId: `refence-${member}-e${ctx.epoch}`, step: "refence", timeoutMs: REFENCE_BUDGET_MS, signal: d.stopSignal };
    this.refencing = d.agents
      .command(member, { kind: "fence" }, call)
      .then(() => undefined)
      .catch((e: unknown) => d.log.warn({ member, err: errorMessage(e) }, `fencing diverged member ${member} of ${d.federation} again failed: ${errorMessage(e)}`))
      .finally(() => {
        this.refencing = undefined;
      });
  }

  /**
   * A designated primary whose lease lapsed and that its own region's Kubernetes API shows not
   * healthy is fenced there by the coordinator, because its agent cannot do it (it is silent) and a
   * failover must not start while it might still accept writes. The coordinator acts only while
   * the stored record names it the writer at `epoch` (the agents' epoch rule), then reads it back
   * fenced. Throws when it could not (the lease then decides, as for a lost region).
   */
  async fenceSilentPrimary(target: ProbeTarget, why: string, epoch: number, signal: AbortSignal): Promise<{ patched: boolean }> {
    const d = this.d;
    await d.writer.confirmWriter(epoch);
    d.log.warn({ member: target.member, region: target.region, epoch }, `${d.federation}/${target.member}: fencing the silent primary through ${target.region}'s Kubernetes API: ${why}`);
    const r = await d.corroborator.ensureFenced(target, why, signal);
    return { patched: r.patched };
  }
}
