/**
 * The coordinator: leader-elected through the coordinator lease; the leader runs one
 * FederationRuntime per federation (resuming from the KV record) and serves CoordinatorService.
 * Followers run nothing but the lease keeper and answer `not_leader`.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  LeaseKeeper,
  leaseKeys,
  openLeases,
  openStateStore,
  type Bus,
  type LeaseStore,
  type StateStore,
} from "../bus/index.js";
import type { Config, FederationConfig } from "../config.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import {
  failoverCandidate,
  failoverRefusal,
  formatMs,
  isEligibleTarget,
  rejoinRefusal,
  requestedFailoverVerdict,
  stepDescription,
  switchoverRefusal,
  type FederationContext,
  type LossEstimate,
} from "../../machines/index.js";
import { CoordinatorAlerting, type AlertingOptions } from "./alerting.js";
import { LeaderDirectory } from "./leader.js";
import { createCoordinatorMetrics, type CoordinatorMetrics } from "./metrics.js";
import { federationRecordSchema, type FederationRecord, type OperationRecord } from "./record.js";
import { readAuditTrail } from "./runtime/audit.js";
import { toOperationView } from "./runtime/operations.js";
import { FederationRuntime } from "./runtime/runtime.js";
import type { RegionClusterAccess } from "./corroboration.js";
import { FederationIntake } from "./intake.js";
import { createLimiter, type Limiter } from "./limiter.js";
import { resolveRefusal } from "./service.js";
import { Evacuations, MAX_EVACUATION_PARALLEL, type EvacuationCandidate } from "./evacuation.js";
import {
  ServiceError,
  type ActionResult,
  type AuditEntry,
  type CoordinatorService,
  type EvacuationView,
  type FederationHistoryView,
  type FederationView,
  type OperationView,
  type PlanView,
  type PreconditionView,
  type RequestContext,
} from "../api/contract.js";
import type { Registry } from "prom-client";

export interface CoordinatorOptions {
  config: Config;
  bus: Bus;
  log: Logger;
  /** Subject-safe id; default random. */
  id?: string;
  registry?: Registry;
  /** Coordinator lease TTL (default 10 s). */
  leaseTtlMs?: number;
  /** This coordinator's API address as other coordinators reach it (their 307 redirects); settable later with setApiUrl. */
  apiUrl?: string | null;
  now?: () => number;
  /** Alert engine and notifier settings (hysteresis overrides, re-send interval); targets come from config.alerts. */
  alerting?: AlertingOptions;
  /**
   * The coordinator's own Kubernetes client per region (read and patch a Cluster): with it, a
   * silent primary whose region's API still answers is corroborated there before any failover
   * (src/coordinator/corroboration.ts). A region without one: the primary lease alone decides.
   */
  regionKube?: ReadonlyMap<string, RegionClusterAccess>;
  /** Bounds of those probes (defaults: 2 s timeout, at most one per second per federation). */
  corroboration?: { timeoutMs?: number; intervalMs?: number };
}

export interface Coordinator extends CoordinatorService {
  readonly id: string;
  readonly metrics: CoordinatorMetrics;
  /** The leader's alerts and the exposure metrics (src/coordinator/alerting.ts). */
  readonly alerting: CoordinatorAlerting;
  /** Resolves once this coordinator leads and has loaded every federation (or throws at the timeout). */
  waitLeader(timeoutMs: number): Promise<void>;
  /** Sets and advertises this coordinator's API address (once the API listens). */
  setApiUrl(url: string | null): Promise<void>;
  /** Stops; releases the lease unless `crash` (then the next leader waits for it to lapse). Bounded. */
  stop(opts?: { crash?: boolean }): Promise<void>;
}

/** KV round trips in flight while the leader loads its federations (all start at once; see limiter.ts). */
const LOAD_KV_CONCURRENCY = 64;

const SWITCHOVER_STEPS = ["preflight", "demote", "awaitToken", "promote", "verify"] as const;
const FAILOVER_STEPS = ["confirm", "gate", "promoteWithoutToken"] as const;

/** A plan's steps in the words of the federation machine's own descriptions. */
function planSteps(steps: readonly string[]): PlanView["steps"] {
  return steps.map((step) => ({ step, description: stepDescription(step) ?? step }));
}

/**
 * The failover dry run: the real RPO gate (same candidate filter, same verdict) applied to the
 * loss estimates the confirm step would hand it now, so it never proposes a member the gate refuses.
 */
export function failoverPlan(
  fc: FederationContext,
  args: { target?: string; acceptDataLossSeconds?: number },
  request: { requestedBy: string; reason: string; atMs: number },
  estimates: LossEstimate[],
  expectedDurationSeconds: number,
): PlanView {
  const federation = fc.federation;
  const refusal = failoverRefusal(fc, args.target);
  const verdict = requestedFailoverVerdict(
    fc,
    {
      type: "FAILOVER",
      operationId: `dry-run-${federation}`,
      ...(args.target !== undefined ? { target: args.target } : {}),
      ...(args.acceptDataLossSeconds !== undefined ? { acceptDataLossMs: Math.round(args.acceptDataLossSeconds * 1000) } : {}),
      ...request,
    },
    estimates,
  );
  const best = verdict.candidate;
  const within = verdict.promote;
  const pre: PreconditionView[] = [
    { name: "noOperationInFlight", ok: fc.operation === null, detail: fc.operation ? `${fc.operation.kind} ${fc.operation.id} is in flight` : "nothing in flight", numbers: {} },
    { name: "primaryConfirmedDown", ok: true, detail: "checked when it runs: the old primary must be fenced or its lease expired plus the clock-skew margin", numbers: {} },
    {
      name: "lossWithinBudgetOrAccepted",
      ok: within,
      detail: best ? `${best.target} would lose up to ${formatMs(best.worstCaseLossMs)} (budget ${formatMs(fc.rpo.budgetMs)})` : "no loss estimate yet",
      numbers: { worstCaseLossSeconds: best ? best.worstCaseLossMs / 1000 : "unknown", budgetSeconds: fc.rpo.budgetMs / 1000 },
    },
  ];
  return {
    federation,
    kind: "failover",
    target: args.target ?? best?.target ?? null,
    allowed: refusal === null && within,
    refusal: refusal ?? (within ? null : `failover of ${federation} would wait for approval: ${pre[2]?.detail ?? ""}`),
    steps: planSteps(FAILOVER_STEPS),
    preconditions: pre,
    expectedDataLoss: { bytes: best?.lossBytes ?? 0, seconds: best ? best.worstCaseLossMs / 1000 : 0 },
    expectedDurationSeconds,
  };
}

export async function startCoordinator(opts: CoordinatorOptions): Promise<Coordinator> {
  const c = new CoordinatorImpl(opts);
  await c.start();
  return c;
}

class CoordinatorImpl implements Coordinator {
  readonly id: string;
  readonly metrics: CoordinatorMetrics;
  readonly alerting: CoordinatorAlerting;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly runtimes = new Map<string, FederationRuntime>();
  private intake: FederationIntake | undefined;
  private readonly kvLimiter: Limiter = createLimiter(LOAD_KV_CONCURRENCY);
  private leases: LeaseStore | undefined;
  private keeper: LeaseKeeper | undefined;
  private directory: LeaderDirectory | undefined;
  private apiUrl: string | null;
  private leading = false;
  private transition: Promise<void> = Promise.resolve();
  private stopped = false;
  private generation = 0;
  private readonly evacuations: Evacuations;

  constructor(private readonly opts: CoordinatorOptions) {
    this.id = opts.id ?? `c${randomBytes(4).toString("hex")}`;
    this.log = opts.log.child({ component: "coordinator", coordinator: this.id });
    this.metrics = createCoordinatorMetrics(opts.registry);
    this.now = opts.now ?? Date.now;
    this.apiUrl = opts.apiUrl ?? null;
    this.metrics.leader.set({ coordinator: this.id }, 0);
    this.alerting = new CoordinatorAlerting({ ...opts.alerting, config: opts.config, registry: this.metrics.registry, log: this.log });
    this.evacuations = new Evacuations({
      affected: (region) => this.affectedBy(region),
      start: async (federation, target, ctx) => {
        const r = await this.switchover(federation, { target }, ctx, { dryRun: false });
        if (r.kind !== "operation") throw new ServiceError("refused", `switchover of ${federation} to ${target} did not start`);
        return r.operation;
      },
      wait: async (id, timeoutMs) => {
        const until = this.now() + timeoutMs;
        for (;;) {
          const op = await this.waitOperation(id, { timeoutMs: Math.max(1, Math.min(30_000, until - this.now())) });
          if (!op || op.finishedAt !== null || this.now() >= until) return op;
        }
      },
      now: this.now,
      newId: (region) => `evacuation-${region}-${this.now().toString(36)}-${randomBytes(3).toString("hex")}`,
      onChange: (v) => {
        if (v.state !== "running") this.log.info({ evacuation: v.id, region: v.region }, `evacuation ${v.id} of region ${v.region} ${v.state}: ${v.counts.completed} moved, ${v.counts.failed} failed, ${v.counts.skipped} skipped`);
      },
    });
  }

  /** The federations whose designated primary is in `region`, each with a switchover plan to every member elsewhere. */
  private affectedBy(region: string): { federation: string; from: string; candidates: EvacuationCandidate[] }[] {
    const out: { federation: string; from: string; candidates: EvacuationCandidate[] }[] = [];
    for (const rt of this.runtimes.values()) {
      const fc = rt.context;
      if (!fc?.designatedPrimary) continue;
      const from = fc.designatedPrimary;
      if (rt.cfg.members.find((m) => m.name === from)?.region !== region) continue;
      const candidates = rt.cfg.members
        .filter((m) => m.region !== region)
        .map((m) => ({ target: m.name, lagMs: rt.targetLag(m.name)?.ms ?? null, plan: this.switchoverPlan(rt, fc, m.name, switchoverRefusal(fc, m.name)) }));
      out.push({ federation: rt.name, from, candidates });
    }
    return out.sort((a, b) => a.federation.localeCompare(b.federation));
  }

  async evacuate(region: string, args: { parallel: number; skipIneligible: boolean }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<EvacuationView> {
    if (!this.isLeader()) throw new ServiceError("not_leader", `coordinator ${this.id} is not the leader; ask the leader`);
    if (!this.opts.config.regions.some((r) => r.name === region)) {
      throw new ServiceError("not_found", `unknown region "${region}" (regions: ${this.opts.config.regions.map((r) => r.name).join(", ")})`, "region");
    }
    if (!Number.isInteger(args.parallel) || args.parallel < 1 || args.parallel > MAX_EVACUATION_PARALLEL) {
      throw new ServiceError("invalid", `parallel must be a whole number from 1 to ${MAX_EVACUATION_PARALLEL}, not ${args.parallel}`, "parallel");
    }
    const plan = this.evacuations.plan(region, args.parallel);
    if (opts.dryRun) return plan;
    const inFlight = this.evacuations.running(region);
    if (inFlight) throw new ServiceError("conflict", `evacuation ${inFlight.id} of region ${region} is running (${inFlight.counts.completed} of ${inFlight.moves.length} moved)`, "region");
    const skipped = plan.moves.filter((m) => m.state === "skipped");
    if (skipped.length > 0 && !args.skipIneligible) {
      throw new ServiceError(
        "refused",
        `refusing to evacuate region ${region}: ${skipped.length} of ${plan.moves.length} federation(s) have no eligible target (${skipped.map((m) => `${m.federation}: ${m.detail}`).join("; ")}); pass skipIneligible to move the others`,
        "skipIneligible",
      );
    }
    const view = this.evacuations.start(plan, ctx);
    this.log.info({ evacuation: view.id, region }, `evacuation ${view.id} of region ${region} requested by ${ctx.requestedBy}: ${view.moves.length - view.counts.skipped} switchover(s), ${args.parallel} at a time, ${view.counts.skipped} skipped${ctx.reason ? `: ${ctx.reason}` : ""}`);
    return view;
  }

  getEvacuation(id: string): EvacuationView | undefined {
    return this.evacuations.get(id);
  }

  async start(): Promise<void> {
    this.leases = await openLeases(this.opts.bus);
    this.keeper = new LeaseKeeper({
      leases: this.leases,
      key: leaseKeys.coordinator,
      holder: `coordinator:${this.id}`,
      holderKey: this.opts.bus.identity?.publicKey,
      ttlMs: this.opts.leaseTtlMs ?? 10_000,
      log: this.log,
      bus: this.opts.bus,
      onAcquired: () => this.queue(() => this.lead()),
      onLost: (info) => this.queue(() => this.follow(`lost the coordinator lease (${info.reason}${info.error ? `: ${info.error}` : ""})`)),
    });
    this.keeper.start();
    const regions = [...new Set(this.opts.config.federations.flatMap((f) => f.members.map((m) => m.region)))];
    const blind = regions.filter((r) => !this.opts.regionKube?.has(r));
    if (blind.length > 0) {
      this.log.warn(
        { regions: blind },
        `no Kubernetes client for region(s) ${blind.join(", ")}: the coordinator cannot corroborate a silent primary there, so a primary whose agent stops is failed over once its lease expired plus the clock-skew margin, even if it still serves (give the coordinator a kubeconfig for every region)`,
      );
    }
    this.directory = new LeaderDirectory({ bus: this.opts.bus, leases: this.leases, id: this.id, log: this.log, pollMs: Math.min(1_000, Math.floor((this.opts.leaseTtlMs ?? 10_000) / 3)), now: this.now });
    await this.directory.start(this.apiUrl);
    this.log.info(`coordinator ${this.id} started; competing for the coordinator lease`);
  }

  private queue(fn: () => Promise<void>): void {
    this.transition = this.transition.then(fn).catch((e: unknown) => this.log.error({ err: errorMessage(e) }, `coordinator ${this.id}: ${errorMessage(e)}`));
  }

  private async lead(): Promise<void> {
    if (this.stopped || this.leading) return;
    const gen = ++this.generation;
    this.leading = true;
    this.metrics.leader.set({ coordinator: this.id }, 1);
    const t0 = this.now();
    const n = this.opts.config.federations.length;
    this.log.info(`coordinator ${this.id} is the leader: loading ${n} federation(s) from KV`);
    const store = await openStateStore(this.opts.bus, federationRecordSchema, { scope: "*" });
    const intake = await this.openIntake(gen);
    if (!intake) return;
    // All at once: a fresh federation waits for its members' observations without blocking the others; KV round trips are bounded by kvLimiter.
    await Promise.all(this.opts.config.federations.map((f) => this.startFederation(f, store, gen)));
    if (gen === this.generation && !this.stopped) this.log.info(`coordinator ${this.id} loaded ${this.runtimes.size} of ${n} federation(s) in ${this.now() - t0} ms`);
  }

  /** The shared consumer every runtime of this leadership reads from; retried while this generation leads. */
  private async openIntake(gen: number): Promise<FederationIntake | undefined> {
    for (let attempt = 1; gen === this.generation && !this.stopped; attempt++) {
      const intake = new FederationIntake(this.opts.bus, this.log);
      try {
        await intake.start();
        this.intake = intake;
        return intake;
      } catch (e) {
        this.log.error({ err: errorMessage(e) }, `coordinator ${this.id} could not open its bus intake (attempt ${attempt}): ${errorMessage(e)}; retrying in 2 s`);
        await sleep(2_000);
      }
    }
    return undefined;
  }

  private async startFederation(f: FederationConfig, store: StateStore<FederationRecord>, gen: number): Promise<void> {
    if (gen !== this.generation || this.stopped) return;
    const rt = this.newRuntime(f, store);
    this.runtimes.set(f.name, rt);
    try {
      await rt.start();
    } catch (e) {
      this.log.error({ federation: f.name, err: errorMessage(e) }, `could not start federation ${f.name}: ${errorMessage(e)}; retrying in 2 s`);
      await rt.stop();
      if (this.runtimes.get(f.name) === rt) this.runtimes.delete(f.name);
      setTimeout(() => this.queue(async () => this.restartFederation(f.name)), 2_000);
    }
  }

  private newRuntime(f: FederationConfig, store: StateStore<FederationRecord>): FederationRuntime {
    return new FederationRuntime({
      cfg: f,
      bus: this.opts.bus,
      leases: this.leases as LeaseStore,
      store,
      coordinatorId: this.id,
      log: this.log,
      metrics: this.metrics,
      onStale: (fed) => this.queue(() => this.restartFederation(fed)),
      onEvaluation: (tick) => this.alerting.observe(tick),
      regionKube: (region) => this.opts.regionKube?.get(region),
      ...(this.opts.corroboration ? { corroboration: this.opts.corroboration } : {}),
      ...(this.intake ? { intake: this.intake } : {}),
      kvLimit: this.kvLimiter.run,
      ...(this.opts.now ? { now: this.opts.now } : {}),
    });
  }

  /** After a CAS conflict or a failed start: drop the runtime and load it again from KV while leading. */
  private async restartFederation(name: string): Promise<void> {
    const old = this.runtimes.get(name);
    this.runtimes.delete(name);
    await old?.stop();
    if (!this.leading || this.stopped) return;
    await sleep(500);
    const f = this.opts.config.federations.find((x) => x.name === name);
    if (!f) return;
    const store = await openStateStore(this.opts.bus, federationRecordSchema, { scope: "*" });
    const rt = this.newRuntime(f, store);
    this.runtimes.set(name, rt);
    try {
      await rt.start();
    } catch (e) {
      this.log.error({ federation: name, err: errorMessage(e) }, `could not restart federation ${name}: ${errorMessage(e)}`);
      await rt.stop();
      this.runtimes.delete(name);
      setTimeout(() => this.queue(async () => this.restartFederation(name)), 2_000);
    }
  }

  private async follow(why: string): Promise<void> {
    this.generation++;
    if (!this.leading) return;
    this.leading = false;
    this.metrics.leader.set({ coordinator: this.id }, 0);
    this.log.warn(`coordinator ${this.id} steps down: ${why}`);
    await Promise.all([...this.runtimes.values()].map((r) => r.stop()));
    this.runtimes.clear();
    await this.closeIntake();
    await this.alerting.stepDown();
    // After the runtimes stopped, so that none sets a gauge again.
    this.metrics.resetFederationGauges();
  }

  private async closeIntake(): Promise<void> {
    const intake = this.intake;
    this.intake = undefined;
    await intake?.stop().catch((e: unknown) => this.log.warn(`coordinator ${this.id}: closing the bus intake: ${errorMessage(e)}`));
  }

  async waitLeader(timeoutMs: number): Promise<void> {
    const until = this.now() + timeoutMs;
    while (this.now() < until) {
      if (this.leading && this.opts.config.federations.every((f) => this.runtimes.get(f.name)?.isLoaded === true)) return;
      await sleep(100);
    }
    throw new PgfedError("coordinator.not_leader", `coordinator ${this.id} did not become the leader within ${timeoutMs} ms`);
  }

  async stop(opts: { crash?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.generation++;
    const t0 = this.now();
    await Promise.race([Promise.all([...this.runtimes.values()].map((r) => r.stop())), sleep(5_000)]);
    this.runtimes.clear();
    await Promise.race([this.closeIntake(), sleep(3_000)]);
    await this.alerting.close();
    this.leading = false;
    this.metrics.leader.set({ coordinator: this.id }, 0);
    await Promise.race([this.keeper?.stop({ release: !opts.crash }), sleep(3_000)]);
    await Promise.race([this.directory?.stop(), sleep(3_000)]);
    this.log.info(`coordinator ${this.id} stopped${opts.crash ? " (as a crash: lease not released)" : ""} in ${this.now() - t0} ms`);
  }

  async setApiUrl(url: string | null): Promise<void> {
    this.apiUrl = url;
    await this.directory?.advertise(url);
  }

  // ---- service ---------------------------------------------------------------------------------

  isLeader(): boolean {
    return this.leading && !this.stopped;
  }

  leader(): { id: string; apiUrl: string | null } | null {
    const held = this.keeper?.held;
    if (held && this.leading) return { id: this.id, apiUrl: this.apiUrl };
    if (this.stopped) return null;
    const known = this.directory?.known();
    return known ? { id: known.id, apiUrl: known.apiUrl } : null;
  }

  listFederations(): FederationView[] {
    return [...this.runtimes.values()].map((r) => r.view()).filter((v): v is FederationView => v !== undefined);
  }

  getFederation(name: string): FederationView | undefined {
    return this.runtimes.get(name)?.view();
  }

  getHistory(name: string): FederationHistoryView | undefined {
    return this.runtimes.get(name)?.history();
  }

  private runtime(name: string): FederationRuntime {
    if (!this.isLeader()) throw new ServiceError("not_leader", `coordinator ${this.id} is not the leader; ask the leader`);
    const rt = this.runtimes.get(name);
    if (!rt?.context) {
      if (this.opts.config.federations.some((f) => f.name === name)) throw new ServiceError("not_leader", `federation ${name} is still loading on coordinator ${this.id}; try again`);
      throw new ServiceError("not_found", `no federation named ${name}`, "federation");
    }
    return rt;
  }

  private ctxOf(rt: FederationRuntime): FederationContext {
    const ctx = rt.context;
    if (!ctx) throw new ServiceError("not_leader", `federation ${rt.name} is not loaded`);
    return ctx;
  }

  private existing(rt: FederationRuntime, ctx: RequestContext): OperationView | undefined {
    if (!ctx.idempotencyKey) return undefined;
    const r = rt.operationByKey(ctx.idempotencyKey);
    return r ? toOperationView(r) : undefined;
  }

  private newOpId(fed: string, kind: string): string {
    return `${kind}-${fed}-${this.now().toString(36)}-${randomBytes(3).toString("hex")}`;
  }

  private expectedSeconds(rt: FederationRuntime, kind: OperationRecord["kind"], fallback: number): number {
    const done = rt.recentOperations(kind).slice(-5);
    if (done.length === 0) return fallback;
    return Math.round((done.reduce((s, o) => s + (o.durationSeconds ?? 0), 0) / done.length) * 10) / 10;
  }

  private refusalError(sentence: string, field: string): ServiceError {
    if (sentence.includes("is in flight")) return new ServiceError("conflict", sentence, field);
    if (sentence.includes("not a member")) return new ServiceError("invalid", sentence, field);
    return new ServiceError("refused", sentence, field);
  }

  /** Starts an operation: registers its record, sends the event, waits for the machine to take it. */
  private async begin(rt: FederationRuntime, record: OperationRecord, send: () => void): Promise<OperationView> {
    rt.registerOperation(record);
    send();
    const ctx = this.ctxOf(rt);
    if (ctx.operation?.id !== record.id && ctx.lastOperation?.id !== record.id) {
      rt.forgetOperation(record.id);
      throw new ServiceError("refused", ctx.lastDecision, undefined, { federation: rt.name });
    }
    // An operation id is only handed out once its record is stored: a new leader must know it.
    const stored = await rt.flushed().then(
      () => !this.stopped,
      () => false,
    );
    if (!stored) throw new ServiceError("not_leader", `operation ${record.id} on ${rt.name} was not stored (this coordinator stopped leading); ask again`, undefined, { federation: rt.name });
    return toOperationView(rt.operation(record.id) ?? record);
  }

  async switchover(federation: string, args: { target: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    const rt = this.runtime(federation);
    const seen = this.existing(rt, ctx);
    if (seen) return { kind: "operation", operation: seen };
    const fc = this.ctxOf(rt);
    const refusal = switchoverRefusal(fc, args.target);
    if (opts.dryRun) return { kind: "plan", plan: this.switchoverPlan(rt, fc, args.target, refusal) };
    if (refusal) throw this.refusalError(refusal, "target");
    const id = this.newOpId(federation, "switchover");
    const nowMs = this.now();
    const record = rt.newRecord(id, "switchover", args.target, fc.designatedPrimary, ctx.reason, ctx.requestedBy, false, fc.epoch, nowMs, ctx.idempotencyKey);
    this.log.info({ federation, op: id }, `switchover ${id} of ${federation} from ${fc.designatedPrimary ?? "?"} to ${args.target} requested by ${ctx.requestedBy}${ctx.reason ? `: ${ctx.reason}` : ""}`);
    rt.audit("request.switchover", `switchover to ${args.target} requested`, ctx.reason, { epoch: fc.epoch }, id, args.target);
    const operation = await this.begin(rt, record, () => rt.send({ type: "SWITCHOVER", operationId: id, target: args.target, reason: ctx.reason, requestedBy: ctx.requestedBy, atMs: nowMs }));
    return { kind: "operation", operation };
  }

  private switchoverPlan(rt: FederationRuntime, fc: FederationContext, target: string, refusal: string | null): PlanView {
    const view = rt.view();
    const m = view?.members.find((x) => x.name === target);
    const lag = rt.targetLag(target);
    const budget = fc.rpo.budgetMs;
    const pre: PreconditionView[] = [
      { name: "noOperationInFlight", ok: fc.operation === null, detail: fc.operation ? `${fc.operation.kind} ${fc.operation.id} is in flight` : "nothing in flight", numbers: {} },
      { name: "designatedPrimary", ok: fc.designatedPrimary !== null, detail: `designated primary ${fc.designatedPrimary ?? "none"} at epoch ${fc.epoch}`, numbers: { epoch: fc.epoch } },
      { name: "targetIsMember", ok: fc.members.includes(target), detail: `${target} ${fc.members.includes(target) ? "is" : "is not"} a member of ${fc.federation}`, numbers: {} },
      { name: "targetHealthyReplica", ok: m?.role === "replica" && m.reachable && !m.fenced && !m.diverged, detail: `${target}: role ${m?.role ?? "?"}, phase ${m?.phase ?? "?"}, reachable ${String(m?.reachable ?? false)}, fenced ${String(m?.fenced ?? false)}`, numbers: {} },
      // CNPG could never promote it with the token: it is not on the primary's timeline or not fed by it.
      { name: "targetFollowsPrimary", ok: m?.following !== false, detail: m?.following === false ? `${target} does not follow the primary: ${m.notFollowing ?? "no reason recorded"}` : `${target} follows ${fc.designatedPrimary ?? "the primary"}`, numbers: {} },
      {
        name: "targetLagWithinBudget",
        ok: lag !== undefined && lag.ms <= budget,
        detail: lag ? `${target} lags ${formatMs(lag.ms)} (${lag.bytes} bytes); budget ${formatMs(budget)}` : `no lag figure for ${target} yet`,
        numbers: { lagSeconds: lag ? lag.ms / 1000 : "unknown", lagBytes: lag?.bytes ?? "unknown", budgetSeconds: budget / 1000 },
      },
    ];
    const allowed = refusal === null && pre.every((p) => p.ok);
    return {
      federation: fc.federation,
      kind: "switchover",
      target,
      allowed,
      refusal: refusal ?? (allowed ? null : `switchover of ${fc.federation} to ${target} would be refused: ${pre.filter((p) => !p.ok).map((p) => p.detail).join("; ")}`),
      steps: planSteps(SWITCHOVER_STEPS),
      preconditions: pre,
      expectedDataLoss: { bytes: 0, seconds: 0 },
      expectedDurationSeconds: this.expectedSeconds(rt, "switchover", 10),
    };
  }

  async failover(federation: string, args: { target?: string; acceptDataLossSeconds?: number }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    const rt = this.runtime(federation);
    const seen = this.existing(rt, ctx);
    if (seen) return { kind: "operation", operation: seen };
    if (args.acceptDataLossSeconds !== undefined && !(Number.isFinite(args.acceptDataLossSeconds) && args.acceptDataLossSeconds >= 0)) {
      throw new ServiceError("invalid", "acceptDataLossSeconds must be a number of seconds >= 0", "acceptDataLossSeconds");
    }
    const fc = this.ctxOf(rt);
    if (opts.dryRun) {
      const leaseTtlMs = this.opts.config.federations.find((f) => f.name === federation)?.failover.leaseTtl ?? 10_000;
      const estimates = rt.lossCandidates(fc.designatedPrimary);
      const plan = failoverPlan(fc, args, { requestedBy: ctx.requestedBy, reason: ctx.reason, atMs: this.now() }, estimates, this.expectedSeconds(rt, "failover", leaseTtlMs / 1000 + 3));
      return { kind: "plan", plan };
    }
    const refusal = failoverRefusal(fc, args.target);
    if (refusal) throw this.refusalError(refusal, "target");
    const id = this.newOpId(federation, "failover");
    const nowMs = this.now();
    const record = rt.newRecord(id, "failover", args.target ?? null, fc.designatedPrimary, ctx.reason, ctx.requestedBy, false, fc.epoch, nowMs, ctx.idempotencyKey);
    if (args.acceptDataLossSeconds !== undefined) record.acceptedLossSeconds = args.acceptDataLossSeconds;
    rt.audit("request.failover", `failover${args.target ? ` to ${args.target}` : ""} requested`, ctx.reason, { epoch: fc.epoch, acceptDataLossSeconds: args.acceptDataLossSeconds ?? null }, id, args.target ?? null);
    const operation = await this.begin(rt, record, () =>
      rt.send({
        type: "FAILOVER",
        operationId: id,
        ...(args.target !== undefined ? { target: args.target } : {}),
        ...(args.acceptDataLossSeconds !== undefined ? { acceptDataLossMs: Math.round(args.acceptDataLossSeconds * 1000) } : {}),
        reason: ctx.reason,
        requestedBy: ctx.requestedBy,
        atMs: nowMs,
      }),
    );
    return { kind: "operation", operation };
  }

  async rejoin(federation: string, args: { member: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    const rt = this.runtime(federation);
    const seen = this.existing(rt, ctx);
    if (seen) return { kind: "operation", operation: seen };
    const fc = this.ctxOf(rt);
    // A replica that does not follow the primary (its own view says why) may be rejoined too.
    const view = (rt.view() as FederationView).members.find((m) => m.name === args.member);
    const notFollowing = view && !view.following && !fc.diverged.includes(args.member) ? (view.notFollowing ?? "it does not follow the designated primary") : undefined;
    const refusal = rejoinRefusal(fc, args.member, notFollowing);
    if (opts.dryRun) {
      return {
        kind: "plan",
        plan: {
          federation,
          kind: "rejoin",
          target: args.member,
          allowed: refusal === null,
          refusal,
          steps: planSteps(["rejoin"]),
          preconditions: [
            {
              name: "memberDivergedOrNotFollowing",
              ok: fc.diverged.includes(args.member) || notFollowing !== undefined,
              detail: fc.diverged.includes(args.member) ? `${args.member} is marked diverged` : notFollowing !== undefined ? `${args.member} does not follow the primary: ${notFollowing}` : `${args.member} is not marked diverged and follows the primary`,
              numbers: {},
            },
          ],
          expectedDataLoss: { bytes: 0, seconds: 0 },
          expectedDurationSeconds: this.expectedSeconds(rt, "rejoin", 60),
        },
      };
    }
    if (refusal) throw this.refusalError(refusal, "member");
    const id = this.newOpId(federation, "rejoin");
    const nowMs = this.now();
    const record = rt.newRecord(id, "rejoin", args.member, fc.designatedPrimary, ctx.reason, ctx.requestedBy, false, fc.epoch, nowMs, ctx.idempotencyKey);
    const operation = await this.begin(rt, record, () => rt.send({ type: "REJOIN", operationId: id, member: args.member, reason: ctx.reason, requestedBy: ctx.requestedBy, ...(notFollowing !== undefined ? { notFollowing } : {}), atMs: nowMs }));
    return { kind: "operation", operation };
  }

  async pause(federation: string, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }> {
    const rt = this.runtime(federation);
    const fc = this.ctxOf(rt);
    if (opts.dryRun) return { kind: "plan", plan: this.simplePlan(federation, "pause", !fc.paused, fc.paused ? `${federation} is already paused` : null) };
    rt.send({ type: "PAUSE", by: ctx.requestedBy, reason: ctx.reason });
    await rt.flushed().catch(() => undefined);
    return { kind: "done", federation: rt.view() as FederationView };
  }

  async resume(federation: string, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }> {
    const rt = this.runtime(federation);
    const fc = this.ctxOf(rt);
    if (opts.dryRun) return { kind: "plan", plan: this.simplePlan(federation, "resume", fc.paused, fc.paused ? null : `${federation} is not paused`) };
    rt.send({ type: "RESUME", by: ctx.requestedBy });
    await rt.flushed().catch(() => undefined);
    return { kind: "done", federation: rt.view() as FederationView };
  }

  async resolve(federation: string, args: { primary: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }> {
    const rt = this.runtime(federation);
    const fc = this.ctxOf(rt);
    const refusal = resolveRefusal(rt.view() as FederationView, args.primary, rt.awaitsOperator, !isEligibleTarget(fc, args.primary));
    if (opts.dryRun) return { kind: "plan", plan: this.simplePlan(federation, "resolve", refusal === null, refusal, args.primary) };
    if (refusal) throw this.refusalError(refusal, "primary");
    rt.send({ type: "RESOLVE", primary: args.primary, by: ctx.requestedBy, reason: ctx.reason });
    await rt.flushed().catch(() => undefined);
    if (rt.awaitsOperator) throw new ServiceError("refused", rt.context?.lastDecision ?? `resolve of ${federation} refused`, "primary");
    return { kind: "done", federation: rt.view() as FederationView };
  }

  private simplePlan(federation: string, kind: "pause" | "resume" | "resolve", allowed: boolean, refusal: string | null, target: string | null = null): PlanView {
    return { federation, kind, target, allowed, refusal, steps: planSteps([kind]), preconditions: [], expectedDataLoss: { bytes: 0, seconds: 0 }, expectedDurationSeconds: 0 };
  }

  async approve(operationId: string, args: { acceptDataLossSeconds?: number }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    if (!this.isLeader()) throw new ServiceError("not_leader", `coordinator ${this.id} is not the leader; ask the leader`);
    if (args.acceptDataLossSeconds !== undefined && !(Number.isFinite(args.acceptDataLossSeconds) && args.acceptDataLossSeconds >= 0)) {
      throw new ServiceError("invalid", "acceptDataLossSeconds must be a number of seconds >= 0", "acceptDataLossSeconds");
    }
    const rt = [...this.runtimes.values()].find((r) => r.operation(operationId) !== undefined);
    const record = rt?.operation(operationId);
    if (!rt || !record) throw new ServiceError("not_found", `no operation ${operationId}`, "operationId");
    const fc = this.ctxOf(rt);
    if (fc.operation?.id !== operationId || record.state !== "awaitingApproval") {
      throw new ServiceError("conflict", `operation ${operationId} of ${rt.name} does not wait for approval (state ${record.state}, step ${record.step})`, "operationId");
    }
    // The gate must judge the loss as of now, not as of the confirm step.
    if (fc.operation.kind === "failover") rt.refreshEstimates();
    const acceptedMs = args.acceptDataLossSeconds !== undefined ? Math.round(args.acceptDataLossSeconds * 1000) : undefined;
    if (opts.dryRun) {
      // The gate's own candidate (same eligibility filter, the operation's target if it names one).
      const cand = failoverCandidate({ ...fc, lossEstimates: rt.lossCandidates(fc.operation.from) }) ?? undefined;
      const covers = fc.operation.kind === "rejoin" || (cand !== undefined && acceptedMs !== undefined && acceptedMs >= cand.worstCaseLossMs);
      return {
        kind: "plan",
        plan: {
          federation: rt.name,
          kind: fc.operation.kind,
          target: fc.operation.target ?? cand?.target ?? null,
          allowed: covers,
          refusal: covers ? null : `approval of ${operationId} would be refused: it must accept at least ${cand ? formatMs(cand.worstCaseLossMs) : "the (unknown) worst-case loss"}`,
          steps: planSteps(["promoteWithoutToken"]),
          preconditions: [
            { name: "acceptedCoversWorstCase", ok: covers, detail: `accepted ${acceptedMs === undefined ? "nothing" : formatMs(acceptedMs)}; worst case ${cand ? formatMs(cand.worstCaseLossMs) : "unknown"}`, numbers: { acceptedLossSeconds: args.acceptDataLossSeconds ?? "none", worstCaseLossSeconds: cand ? cand.worstCaseLossMs / 1000 : "unknown" } },
          ],
          expectedDataLoss: { bytes: cand?.lossBytes ?? 0, seconds: cand ? cand.worstCaseLossMs / 1000 : 0 },
          expectedDurationSeconds: 2,
        },
      };
    }
    const stepsBefore = record.steps.length;
    rt.audit("request.approve", `approval of ${operationId} by ${ctx.requestedBy}`, ctx.reason, { acceptedLossSeconds: args.acceptDataLossSeconds ?? null }, operationId, null);
    rt.send({ type: "APPROVE", operationId, ...(acceptedMs !== undefined ? { acceptedLossMs: acceptedMs } : {}), by: ctx.requestedBy });
    await rt.flushed().catch(() => undefined);
    const after = rt.operation(operationId) ?? record;
    const stillWaiting = rt.context?.operation?.id === operationId && rt.context.operation.step === "awaitApproval" && after.steps.length >= stepsBefore;
    if (stillWaiting && rt.context?.lastDecision.includes("refused")) throw new ServiceError("refused", rt.context.lastDecision, "acceptDataLossSeconds");
    return { kind: "operation", operation: toOperationView(after) };
  }

  getOperation(id: string): OperationView | undefined {
    for (const rt of this.runtimes.values()) {
      const r = rt.operation(id);
      if (r) return toOperationView(r);
    }
    return undefined;
  }

  async waitOperation(id: string, opts: { timeoutMs: number; afterSteps?: number }): Promise<OperationView | undefined> {
    const current = this.getOperation(id);
    if (!current) return undefined;
    if (current.finishedAt !== null) return current;
    if (opts.afterSteps !== undefined && current.steps.length > opts.afterSteps) return current;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        unsubscribe();
        resolve(this.getOperation(id));
      }, opts.timeoutMs);
      const unsubscribe = this.watchOperation(id, (op) => {
        clearTimeout(timer);
        unsubscribe();
        resolve(op);
      });
    });
  }

  watchOperation(id: string, onChange: (op: OperationView) => void): () => void {
    const unsubs = [...this.runtimes.values()].map((rt) => rt.watch(id, onChange));
    return () => {
      for (const u of unsubs) u();
    };
  }

  async audit(federation: string, opts: { sinceMs?: number; limit?: number }): Promise<AuditEntry[]> {
    if (!this.opts.config.federations.some((f) => f.name === federation)) throw new ServiceError("not_found", `no federation named ${federation}`, "federation");
    return readAuditTrail(this.opts.bus, federation, opts);
  }
}

