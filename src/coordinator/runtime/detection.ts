/**
 * Failure detection for one federation, every tick: is the designated primary in trouble (region
 * silent, its Kubernetes API or Postgres not answering), does anyone vouch for it (its primary
 * lease), and does its own region's Kubernetes API show it serving (then no failover: its agent is
 * down, alert PgfedAgentDown)? The answers go to the federation machine as PRIMARY_SUSPECT and
 * PRIMARY_RECOVERED. Also here: a change of the CNPG topology by another writer.
 */
import { isExpired, type Observation } from "../../bus/index.js";
import type { FederationContext } from "../../../machines/index.js";
import { PGFED_FIELD_MANAGER } from "../../cnpg/index.js";
import type { KubeVerdict } from "../corroboration.js";
import type { FailoverSteps } from "./failover.js";
import type { RuntimeParts } from "./parts.js";

/** The primary's agent is silent while its region's Kubernetes API shows the primary healthy: failover held back. */
export interface AgentDown {
  member: string;
  region: string;
  silentMs: number;
  sinceMs: number;
}

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

export class Detection {
  private agentDown: AgentDown | undefined;
  private heldBack: string | undefined;
  private readonly name: string;

  constructor(
    private readonly p: RuntimeParts,
    private readonly failover: FailoverSteps,
    private readonly startedAtMs: () => number,
  ) {
    this.name = p.name;
  }

  /** Forget the PgfedAgentDown gauge of this runtime (it stops). */
  stop(): void {
    if (this.agentDown) this.p.metrics.agentSilentSeconds.remove({ federation: this.name, member: this.agentDown.member, region: this.agentDown.region });
  }

  /**
   * Someone other than pgfed (a person, Argo CD, Flux) changed a member's `spec.replica.primary`:
   * pgfed must not fight them, nor keep failing over on a topology it no longer knows. Automation
   * pauses (PAUSE, by "pgfed"), an alert names the member, the change and the field manager that
   * made it (metadata.managedFields), and the audit keeps it. A change to the designated primary
   * agrees with pgfed and is not one. Only a change pgfed sees happen
   * counts (a coordinator that starts fresh compares nothing), and only with field tracking: an API
   * server without managedFields leaves `primaryManager` unset and this check silent.
   */
  noticeOtherWriter(member: string, before: Observation | undefined, now: Observation): void {
    const ctx = this.p.context();
    if (!ctx || !before?.reachable || !now.reachable || before.specPrimary === now.specPrimary || now.specPrimary === undefined) return;
    const manager = now.primaryManager;
    if (manager === undefined || manager === PGFED_FIELD_MANAGER) return;
    // Setting it to the designated primary (an operator undoing a change) agrees with pgfed.
    if (ctx.designatedPrimary !== null && now.specPrimary === this.p.signals.topologyName(ctx.designatedPrimary)) return;
    const was = before.specPrimary ?? "(unset)";
    const sentence = `spec.replica.primary of ${this.name}/${member} was changed from ${was} to ${now.specPrimary} by field manager "${manager}", not by pgfed; automation paused until an operator resumes it`;
    this.p.log.warn({ member, manager, before: was, after: now.specPrimary }, sentence);
    this.p.audit.write("topology.changed_outside", sentence, "another writer changes the CNPG topology: pgfed does not fight it (docs/operations.md, \"GitOps and other writers\")", { manager, before: was, after: now.specPrimary }, null, member, ctx.epoch);
    this.p.send({ type: "OUTSIDE_CHANGE", member, manager, sentence });
  }

  /** Why the designated primary looks down (corroboration beyond the lease), or undefined. */
  private primaryTrouble(primary: string, nowMs: number): string | undefined {
    const f = this.p.cfg.failover;
    const region = this.p.signals.regionOf(primary);
    const silentMs = this.failover.regionSilentMs(primary, nowMs, this.startedAtMs());
    if (silentMs > f.leaseTtl) return `region ${region} silent for ${(silentMs / 1000).toFixed(1)} s (no heartbeat or observation; lease TTL ${f.leaseTtl / 1000} s)`;
    const o = this.p.signals.obs(primary);
    if (o && !o.reachable) return `the Kubernetes API of ${region} does not answer for ${primary}: ${o.reason ?? "unreachable"}`;
    const s = this.p.signals.samples.get(primary);
    if (s && s.failures >= 2) return `Postgres of ${primary} does not answer (${s.failures} failed samples)`;
    return undefined;
  }

  /** The primary's agent and region, if its agent is silent while the primary serves (PgfedAgentDown). */
  get agentsDown(): AgentDown[] {
    return this.agentDown ? [this.agentDown] : [];
  }

  async detect(ctx: FederationContext, nowMs: number): Promise<void> {
    const primary = ctx.designatedPrimary;
    const op = ctx.operation;
    const idle = op === null;
    const confirming = op?.kind === "failover" && (op.step === "suspect" || op.step === "confirm" || op.step === "unconfirmed");
    if (!primary || (!idle && !confirming)) {
      this.endHoldBack(nowMs, primary);
      return;
    }
    const trouble = this.primaryTrouble(primary, nowMs);
    if (trouble === undefined) this.endHoldBack(nowMs, primary);
    if (idle && trouble === undefined) return;
    const lease = await this.failover.readPrimaryLease().catch(() => null);
    if (lease === null) return; // the bus cannot tell: decide nothing
    const holder = `agent:${this.p.signals.regionOf(primary)}/${primary}`;
    const vouched = lease !== undefined && lease.lease.holder === holder && !isExpired(lease.lease, nowMs);
    if (!vouched && trouble !== undefined) {
      // Nobody vouches: ask the primary's own Kubernetes API before suspecting it (its agent may just be gone).
      const kube = this.p.corroborator.latest(this.failover.probeTarget(primary));
      if (kube === undefined) return; // first answer pending, for at most the probe timeout
      if (kube.kind === "healthyPrimary") {
        this.holdBack(ctx, primary, trouble, kube, nowMs);
        if (confirming) this.p.send({ type: "PRIMARY_RECOVERED", atMs: nowMs });
        return;
      }
      this.endHoldBack(nowMs, primary);
    }
    if (idle && !vouched && trouble !== undefined && !ctx.paused) {
      const reason = `${trouble}; primary lease ${lease ? `held by ${lease.lease.holder}, expires ${isoOf(lease.lease.expiresAtMs)}` : "not held"}`;
      this.p.log.warn({ epoch: ctx.epoch }, `primary ${primary} of ${this.name} suspected down: ${reason}`);
      this.p.send({ type: "PRIMARY_SUSPECT", atMs: nowMs, reason });
    } else if (idle && !vouched && trouble !== undefined && ctx.paused && !ctx.alerts.some((a) => a.name === "PgfedFailoverBlocked")) {
      this.p.send({ type: "PRIMARY_SUSPECT", atMs: nowMs, reason: trouble });
    } else if (confirming && vouched && trouble === undefined) {
      this.p.send({ type: "PRIMARY_RECOVERED", atMs: nowMs });
    }
  }

  /** The primary serves per its region's Kubernetes API although nobody vouches for it: no failover; one sentence per episode. */
  private holdBack(ctx: FederationContext, primary: string, trouble: string, kube: KubeVerdict & { kind: "healthyPrimary" }, nowMs: number): void {
    const region = this.p.signals.regionOf(primary);
    const silentMs = this.failover.regionSilentMs(primary, nowMs, this.startedAtMs());
    const agentSilent = silentMs > this.p.cfg.failover.leaseTtl;
    if (agentSilent) {
      this.agentDown = { member: primary, region, silentMs, sinceMs: this.agentDown?.sinceMs ?? nowMs - silentMs };
      this.p.metrics.agentSilentSeconds.set({ federation: this.name, member: primary, region }, silentMs / 1000);
    }
    const key = `${primary}:${agentSilent ? "agent" : "other"}`;
    if (this.heldBack === key) return;
    this.heldBack = key;
    const sentence = agentSilent
      ? `not failing over ${this.name} from ${primary}: agent of ${region} silent ${(silentMs / 1000).toFixed(1)} s, but ${primary} is the healthy unfenced primary per ${region}'s Kubernetes API`
      : `not failing over ${this.name} from ${primary}: ${trouble}, but ${primary} is the healthy unfenced primary per ${region}'s Kubernetes API`;
    this.p.log.warn({ epoch: ctx.epoch, member: primary, region, silentMs }, sentence);
    this.p.audit.write(
      "failover.withheld",
      sentence,
      trouble,
      { epoch: ctx.epoch, regionSilentSeconds: Math.round(silentMs) / 1000, leaseTtlSeconds: this.p.cfg.failover.leaseTtl / 1000, phase: kube.phase, probeTimeoutMs: this.p.corroborator.timeoutMs },
      null,
      primary,
      ctx.epoch,
    );
  }

  private endHoldBack(nowMs: number, primary: string | null | undefined): void {
    this.heldBack = undefined;
    const down = this.agentDown;
    if (!down) return;
    this.agentDown = undefined;
    this.p.metrics.agentSilentSeconds.remove({ federation: this.name, member: down.member, region: down.region });
    const heard = primary === down.member && this.failover.regionSilentMs(down.member, nowMs, this.startedAtMs()) <= this.p.cfg.failover.leaseTtl;
    const sentence = heard
      ? `agent of ${down.region} heard again after ${((nowMs - down.sinceMs) / 1000).toFixed(1)} s of silence; ${down.member} of ${this.name} is vouched for by its agent again`
      : `no longer holding back a failover of ${this.name} from ${down.member}: it is no longer the healthy unfenced primary per ${down.region}'s Kubernetes API, or no longer designated`;
    this.p.log.info({ member: down.member, region: down.region }, sentence);
    this.p.audit.write("agent.back", sentence, heard ? "heartbeat or observation received" : "corroboration changed", { silentSeconds: Math.round(nowMs - down.sinceMs) / 1000 }, null, down.member);
  }
}
