/**
 * The steps of an unplanned failover (CNPG.md, "Failover"): confirm the old primary down (safety
 * rule 3a), then, once the machine's RPO gate lets it, promote the chosen replica without a token
 * and point the other replicas at it. The loss estimates the gate reads are refreshed from here.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { ConfirmPrimaryDownInput, ConfirmPrimaryDownOutput, PromoteWithoutTokenInput } from "../../../machines/index.js";
import { isExpired, leaseKeys } from "../../bus/index.js";
import { PHASES } from "../../cnpg/index.js";
import { PgfedError, errorMessage } from "../../errors.js";
import { verdictWords, type KubeVerdict, type ProbeTarget } from "../corroboration.js";
import type { Followers } from "./followers.js";
import { deadlineOf, type RuntimeParts } from "./parts.js";

/** How often the estimates of a failover awaiting approval are sent to the machine again. */
const ESTIMATES_EVERY_MS = 10_000;

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

export class FailoverSteps {
  private lastEstimatesSentAtMs = 0;

  constructor(
    private readonly p: RuntimeParts,
    private readonly followers: Followers,
  ) {}

  readPrimaryLease() {
    return this.p.leases.read(leaseKeys.primary(this.p.name));
  }

  probeTarget(member: string): ProbeTarget {
    const m = this.p.cfg.members.find((x) => x.name === member);
    return { member, region: m?.region ?? "?", ref: { namespace: m?.namespace ?? "", name: m?.cluster ?? member } };
  }

  /** How long the primary's region has been silent: no heartbeat from it, no observation of the primary. */
  regionSilentMs(primary: string, nowMs: number, startedAtMs: number): number {
    const { signals } = this.p;
    // From the last time the region was heard (live, or from the stream at start: seedHeartbeats); from this leader's start when never.
    const heard = Math.max(signals.heartbeats.get(signals.regionOf(primary)) ?? -Infinity, signals.observations.get(primary)?.atMs ?? -Infinity);
    return nowMs - (heard === -Infinity ? startedAtMs : heard);
  }

  /** Sends the machine the latest worst-case loss per candidate (the gate of a failover in flight reads them). */
  refreshEstimates(): void {
    const ctx = this.p.context();
    if (!ctx?.operation) return;
    this.lastEstimatesSentAtMs = this.p.now();
    const candidates = this.p.evaluation.lossCandidates(ctx.operation.from, ctx.designatedPrimary);
    if (candidates.length > 0) this.p.send({ type: "LOSS_ESTIMATES", candidates, atMs: this.p.now() });
  }

  /** A failover waiting for approval shows loss figures that keep growing with the silence: resend them now and then. */
  refreshWhileAwaitingApproval(nowMs: number): void {
    const op = this.p.context()?.operation;
    if (op?.kind === "failover" && op.step === "awaitApproval" && nowMs - this.lastEstimatesSentAtMs > ESTIMATES_EVERY_MS) this.refreshEstimates();
  }

  /**
   * Rule 3a: the old primary is confirmed down when it is fenced, or its lease expired plus the
   * clock-skew margin. A lapsed lease alone may only mean its agent stopped, so when the
   * coordinator has a client for the primary's region it asks that Kubernetes API first
   * (corroboration.ts): a healthy unfenced primary is not down; a fenced one is confirmed; one that
   * is not healthy is fenced by the coordinator itself (fencing.ts) and read back fenced. No answer:
   * a lost region, and the lease decides as before. The wait ends at the lease's expiry plus the
   * margin, or at the step's budget, whichever comes first.
   */
  async confirmDown(input: ConfirmPrimaryDownInput, signal: AbortSignal, startedAtMs: number): Promise<ConfirmPrimaryDownOutput> {
    const { cfg, signals, corroborator, now, name } = this.p;
    const f = cfg.failover;
    const budget = deadlineOf(now, input.budgetMs);
    const until = Math.min(now() + f.leaseTtl + f.clockSkewMargin + 2_000, now() + input.budgetMs);
    const target = this.probeTarget(input.member);
    const region = target.region;
    let fenced = false;
    let leaseExpired = false;
    let coordinatorFenced = false;
    let detail = "";
    let how = "";
    let kube: KubeVerdict | undefined;
    while (!signal.aborted && !this.p.stopped()) {
      const o = signals.observations.get(input.member);
      fenced = o?.obs.reachable === true && o.obs.fenced && now() - o.atMs < f.leaseTtl;
      const lease = await this.readPrimaryLease().catch(() => undefined);
      const nowMs = now();
      leaseExpired = lease === undefined || isExpired(lease.lease, nowMs, f.clockSkewMargin);
      detail = lease ? `lease held by ${lease.lease.holder} until ${isoOf(lease.lease.expiresAtMs)} (+${f.clockSkewMargin} ms margin)` : "no primary lease stored";
      if (fenced) {
        how = "fenced";
        break;
      }
      const lapsed = lease === undefined || lease.lease.holder !== `agent:${region}/${input.member}` || isExpired(lease.lease, nowMs);
      if (lapsed && corroborator.hasClient(region)) {
        kube = await corroborator.read(target);
        if (kube.kind === "healthyPrimary") {
          // Its agent is gone but it serves: promoting now would make two writable primaries.
          leaseExpired = false;
          detail = `${detail}; ${verdictWords(kube, region)}`;
          break;
        }
        if (kube.kind === "fenced") {
          fenced = true;
          how = `read back fenced through ${region}'s Kubernetes API`;
          break;
        }
        if (kube.kind === "notHealthy") {
          const why = `${verdictWords(kube, region)} and its primary lease lapsed`;
          try {
            const r = await this.p.fencing.fenceSilentPrimary(target, why, input.epoch, signal);
            fenced = true;
            coordinatorFenced = r.patched;
            how = r.patched ? `fenced by the coordinator through ${region}'s Kubernetes API` : `read back fenced through ${region}'s Kubernetes API`;
            detail = `${detail}; ${why}`;
            break;
          } catch (e) {
            // Read but could not fence (e.g. no patch permission, or no longer the writer): the lease decides, as for a lost region.
            detail = `${detail}; ${why}; fencing it there failed: ${errorMessage(e)}`;
          }
        }
      }
      if (leaseExpired) {
        how = kube ? `lease expired plus margin; ${verdictWords(kube, region)}` : "lease expired plus margin";
        break;
      }
      if (now() >= until) break;
      await sleep(100);
    }
    const ctx = this.p.context();
    const candidates = this.p.evaluation.lossCandidates(input.member, ctx?.designatedPrimary ?? null);
    const confirmed = fenced || leaseExpired;
    const description = confirmed
      ? `${input.member} confirmed down (${how})`
      : kube?.kind === "healthyPrimary"
        ? `${input.member} not confirmed down: ${verdictWords(kube, region)}`
        : `${input.member} not confirmed down${budget.passed() ? ` within the step's ${input.budgetMs / 1000} s` : ""}`;
    if (coordinatorFenced) this.p.log.warn({ epoch: input.epoch, member: input.member, region }, `${name}: ${description}; ${detail}`);
    this.p.audit.write(
      "failover.confirm",
      description,
      detail,
      {
        leaseTtlMs: f.leaseTtl,
        clockSkewMarginMs: f.clockSkewMargin,
        fenced,
        leaseExpired,
        coordinatorFenced,
        kube: kube?.kind ?? "not asked",
        regionSilentSeconds: Math.round(this.regionSilentMs(input.member, now(), startedAtMs)) / 1000,
        ...Object.fromEntries(candidates.map((c) => [`worstCaseLossSeconds.${c.target}`, c.worstCaseLossMs / 1000])),
      },
      input.operationId,
      input.member,
      input.epoch,
    );
    return { fenced, leaseExpired, candidates };
  }

  /** Promote the gate's choice: the target is the designated primary at the input's epoch from the moment the command is issued. */
  async promoteWithoutToken(input: PromoteWithoutTokenInput, signal: AbortSignal): Promise<void> {
    const { cfg, agents, signals, now, name } = this.p;
    const d = deadlineOf(now, input.budgetMs);
    const numbers = { worstCaseLossSeconds: input.worstCaseLossMs / 1000, acceptedLossSeconds: input.acceptedLossMs === null ? null : input.acceptedLossMs / 1000, budgetSeconds: cfg.rpo.budget / 1000, epoch: input.epoch };
    this.p.audit.write("failover.promote", `promoting ${input.target} without a token at epoch ${input.epoch}`, this.p.context()?.lastDecision ?? "", numbers, input.operationId, input.target, input.epoch);
    await agents.command(input.target, { kind: "promoteWithoutToken" }, { ...input, step: "promoteWithoutToken", timeoutMs: d.left(), signal });
    await agents.awaitObservation(input.target, "to run as the primary", (x) => x.role === "primary" && !x.switchInProgress && x.phase !== PHASES.promoting, d.left(), signal);
    // The spec says primary at once; Postgres itself must have left recovery (a lag sample says so).
    while (signals.samples.get(input.target)?.role() !== "primary") {
      if (signal.aborted || this.p.stopped()) throw new PgfedError("coordinator.cancelled", `promotion of ${name}/${input.target}: cancelled`);
      if (d.passed()) {
        throw new PgfedError("coordinator.promote_timeout", `promotion of ${name}/${input.target}: CNPG runs it as the primary cluster, but its Postgres was not sampled out of recovery within ${input.budgetMs} ms`, { federation: name, member: input.target });
      }
      await sleep(100);
    }
    // The other replicas follow the new primary (the former one is fenced and demoted when seen again).
    const followers = await this.followers.ensure({ ...input, primary: input.target, skip: input.former ? [input.former] : [], step: "promoteWithoutToken", budgetMs: d.left(), signal });
    await this.followers.awaitTimeline(input.target, [...followers.repointed, ...followers.unchanged], input, d.left(), signal);
  }
}
