/**
 * One federation inside the leading coordinator: its federation actor and member actors, fed by
 * the bus. This file wires the parts (runtime/*.ts) and holds the lifecycle; each concern has its
 * own file: the agent protocol (agent-rpc), the record (persistence), the audit trail (audit), the
 * operation records (operations), the steps of each operation (switchover, failover, rejoin,
 * followers), fencing (../fencing.ts), the RPO figures (evaluation), failure detection
 * (detection), transitions (transitions), the machine's effects (effects) and the view (view).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { createActor, type Actor, type Snapshot } from "xstate";
import {
  failoverCandidate,
  federationStepSentence,
  memberMachine,
  type FederationContext,
  type FederationEvent,
  type FederationInput,
  type LossEstimate,
  defaultTimeouts,
} from "../../../machines/index.js";
import { filters, subjects, type Bus, type BusMessage, type BusSubscription, type LeaseStore, type Observation, type StateStore } from "../../bus/index.js";
import type { FederationConfig } from "../../config.js";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import { OPERATION_FAILED_WINDOW_MS, type FederationTick } from "../alerting.js";
import { PrimaryCorroborator, type RegionClusterAccess } from "../corroboration.js";
import { Fencing } from "../fencing.js";
import { rejectedCommandOf, type FederationIntakeLike, type RejectedCommand } from "../intake.js";
import type { Limit } from "../limiter.js";
import type { CoordinatorMetrics } from "../metrics.js";
import type { FederationRecord, OperationRecord } from "../record.js";
import type { FederationHistoryView, FederationView, OperationView } from "../../api/contract.js";
import { FederationSignals, memberObservation } from "../signals.js";
import { AgentCommands } from "./agent-rpc.js";
import { AuditTrail, type AuditNumbers } from "./audit.js";
import { Detection, type AgentDown } from "./detection.js";
import { createFederationActor, withTimeouts, type FederationActor } from "./effects.js";
import { FederationEvaluation } from "./evaluation.js";
import { FailoverSteps } from "./failover.js";
import { Followers } from "./followers.js";
import { OperationBook } from "./operations.js";
import type { RuntimeParts } from "./parts.js";
import { RecordWriter } from "./persistence.js";
import { RejoinSteps } from "./rejoin.js";
import { SwitchoverSteps } from "./switchover.js";
import { MemberTransitions, transitionsOf, type PendingTransition } from "./transitions.js";
import { federationView } from "./view.js";

export type { AgentDown } from "./detection.js";

export interface FederationRuntimeOptions {
  cfg: FederationConfig;
  bus: Bus;
  leases: LeaseStore;
  store: StateStore<FederationRecord>;
  coordinatorId: string;
  log: Logger;
  metrics: CoordinatorMetrics;
  /** Another writer changed the record: this coordinator must stop acting for the federation. */
  onStale: (federation: string, why: string) => void;
  now?: () => number;
  /** How long a freshly started runtime waits for observations before deciding the primary of a new federation. */
  discoverMs?: number;
  /** Called after every evaluation pass (alerting, exposure metrics); must not block. */
  onEvaluation?: (tick: FederationTick) => void;
  /** The leader's shared consumer (intake.ts); without it the runtime opens its own consumer on `pgfed.<federation>.>`. */
  intake?: FederationIntakeLike;
  /** Bounds KV round trips when many runtimes start at once (limiter.ts); default: unbounded. */
  kvLimit?: Limit;
  /** The coordinator's own client per region, to corroborate a silent primary (corroboration.ts); none: the lease alone decides. */
  regionKube?: (region: string) => RegionClusterAccess | undefined;
  /** Probe bounds of that corroboration (defaults: 2 s timeout, 1 s between probes). */
  corroboration?: { timeoutMs?: number; intervalMs?: number };
}

type MemberActor = Actor<typeof memberMachine>;

const TICK_MS = 250;

export class FederationRuntime {
  readonly name: string;
  readonly cfg: FederationConfig;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly signals: FederationSignals;
  private readonly members = new Map<string, MemberActor>();
  private readonly pendingTransitions: PendingTransition[] = [];
  private readonly stopSignal = new AbortController();
  private readonly audits: AuditTrail;
  private readonly agents: AgentCommands;
  private readonly writer: RecordWriter;
  private readonly operations: OperationBook;
  private readonly evaluation: FederationEvaluation;
  private readonly fencing: Fencing;
  private readonly followers: Followers;
  private readonly switchover: SwitchoverSteps;
  private readonly failover: FailoverSteps;
  private readonly rejoins: RejoinSteps;
  private readonly detection: Detection;
  private readonly memberTransitions: MemberTransitions;
  private readonly parts: RuntimeParts;
  private actor: FederationActor | undefined;
  private subscription: BusSubscription | undefined;
  private rejectionSubscription: BusSubscription | undefined;
  private unregister: (() => void) | undefined;
  private loaded = false;
  private startedAtMs: number;
  private tickTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  private lastSnapshotStep = "";
  /** The stored record's epoch (1 for a new federation) until the federation actor runs. */
  private epochAtStart = 1;

  constructor(private readonly opts: FederationRuntimeOptions) {
    this.cfg = opts.cfg;
    this.name = opts.cfg.name;
    const now = (this.now = opts.now ?? Date.now);
    const source = `coordinator:${opts.coordinatorId}`;
    const log = (this.log = opts.log.child({ federation: this.name }));
    const stopped = () => this.stopped;
    this.startedAtMs = now();
    this.signals = new FederationSignals(this.name, this.cfg.members);
    opts.metrics.initFederation(this.name, this.cfg.rpo.warnAt);
    this.audits = new AuditTrail({ federation: this.name, source, bus: opts.bus, log, epoch: () => this.context?.epoch ?? 0, stopped });
    this.writer = new RecordWriter({ federation: this.name, coordinatorId: opts.coordinatorId, store: opts.store, log, now, kvLimit: opts.kvLimit, onStale: opts.onStale, stopped });
    this.agents = new AgentCommands({ federation: this.name, source, bus: opts.bus, log, now, audit: this.audits, signals: this.signals, flushed: () => this.writer.flushed(), stopped });
    this.operations = new OperationBook({ federation: this.name, log, metrics: opts.metrics });
    this.evaluation = new FederationEvaluation({ cfg: this.cfg, signals: this.signals, metrics: opts.metrics, now, onEvaluation: opts.onEvaluation });
    const corroborator = new PrimaryCorroborator({ federation: this.name, access: (region) => opts.regionKube?.(region), now, ...opts.corroboration });
    this.fencing = new Fencing({ federation: this.name, log, now, signals: this.signals, agents: this.agents, audit: this.audits, writer: this.writer, corroborator, stopSignal: this.stopSignal.signal });
    this.parts = {
      name: this.name,
      cfg: this.cfg,
      log,
      now,
      metrics: opts.metrics,
      leases: opts.leases,
      signals: this.signals,
      agents: this.agents,
      audit: this.audits,
      writer: this.writer,
      operations: this.operations,
      evaluation: this.evaluation,
      fencing: this.fencing,
      corroborator,
      stopSignal: this.stopSignal.signal,
      context: () => this.context,
      send: (e) => this.send(e),
      stopped,
      persistNow: () => {
        const ctx = this.context;
        if (ctx) this.persist(ctx, true);
      },
    };
    this.followers = new Followers(this.parts);
    this.switchover = new SwitchoverSteps(this.parts, this.followers);
    this.failover = new FailoverSteps(this.parts, this.followers);
    this.rejoins = new RejoinSteps(this.parts);
    this.detection = new Detection(this.parts, this.failover, () => this.startedAtMs);
    this.memberTransitions = new MemberTransitions({ federation: this.name, log, audit: this.audits, epoch: () => this.context?.epoch ?? this.epochAtStart });
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Subscribes, loads the record, restores (or creates) the actors and starts detection. */
  async start(): Promise<void> {
    this.startedAtMs = this.now();
    if (this.opts.intake) this.unregister = this.opts.intake.register(this.name, (msg) => this.onMessage(msg), (r) => this.onRejectedCommand(r));
    else {
      this.subscription = await this.opts.bus.subscribe(filters.federation(this.name), (msg) => this.onMessage(msg), { deliverNew: true, deadLetters: true });
      this.rejectionSubscription = await this.opts.bus.subscribeDeadLetters(
        (dl, meta) => {
          const r = rejectedCommandOf(dl, meta.storedAt.getTime());
          if (r?.federation === this.name) this.onRejectedCommand(r.rejected);
        },
        { deliverNew: true },
      );
    }
    const entry = await this.writer.kv(() => this.opts.store.get(this.name));
    await Promise.all([this.seedSamples(entry?.value.designatedPrimary ?? null), this.seedHeartbeats()]);
    let actor: FederationActor;
    if (entry) {
      this.writer.revision = entry.revision;
      for (const op of entry.value.operations) this.operations.register(op);
    }
    // Member actors start once the epoch is known (their transitions are audited with it), from what was heard meanwhile.
    this.epochAtStart = entry?.value.epoch ?? 1;
    for (const m of this.cfg.members) {
      const a: MemberActor = createActor(memberMachine, { input: { federation: this.name, member: m.name, region: m.region }, inspect: this.memberTransitions.inspector(m.name, () => this.members.get(m.name)) });
      this.members.set(m.name, a);
      a.start();
      const seen = this.signals.observations.get(m.name);
      if (seen) this.feedMember(m.name, seen.obs, seen.atMs);
    }
    if (entry?.value.snapshot) {
      // The stored snapshot carries the timeouts of the config it was made with: today's config wins.
      actor = this.createActor(this.input(null, 1), withTimeouts(entry.value.snapshot, this.input(null, 1)));
      this.log.info(
        { epoch: entry.value.epoch, revision: entry.revision },
        `resuming ${this.name} from the stored record at revision ${entry.revision}: epoch ${entry.value.epoch}, primary ${entry.value.designatedPrimary ?? "none"}, operation ${entry.value.operationId ?? "none"} at step ${entry.value.step ?? "-"}`,
      );
    } else {
      const primary = await this.discoverPrimary();
      actor = this.createActor(this.input(primary, entry?.value.epoch ?? 1));
      this.log.info(`starting ${this.name} fresh: designated primary ${primary ?? "none (operator must resolve)"} from the observed Clusters`);
    }
    this.actor = actor;
    actor.subscribe({
      next: (snap) => this.onSnapshot(snap.context),
      error: (err) => this.log.error({ err: errorMessage(err) }, `federation actor of ${this.name} failed: ${errorMessage(err)}`),
    });
    actor.start();
    this.onSnapshot(actor.getSnapshot().context);
    await this.flushed();
    this.tickTimer = setInterval(() => void this.tick(), TICK_MS);
    this.loaded = true;
  }

  /**
   * Reads the last lag sample of each member from the stream (the live intake sees only new ones)
   * and builds a loss estimate from them. Without it, a leader that starts after the primary died
   * has no estimate at all and its RPO gate can only wait (found by the chaos suite:
   * test/e2e/leader-loss.test.ts). Best effort: a failed read leaves it to the live samples.
   */
  private async seedSamples(designated: string | null): Promise<void> {
    const times: number[] = [];
    await Promise.all(
      this.cfg.members.map(async (m) => {
        try {
          const last = await this.opts.bus.lastMessage(subjects.lag(this.name, m.name));
          if (last?.message?.type !== "lag" || last.message.member !== m.name) return;
          const samples = this.signals.samples.get(m.name);
          if (!samples || (samples.lastAtMs !== undefined && samples.lastAtMs >= last.storedAtMs)) return;
          samples.record(last.message.data, last.storedAtMs);
          times.push(last.storedAtMs);
        } catch (e) {
          this.log.warn({ member: m.name }, `could not read the last lag sample of ${this.name}/${m.name} from the stream: ${errorMessage(e)}`);
        }
      }),
    );
    // As of each seeded moment in turn: the primary's own (older) sample is stale at the newest.
    for (const t of times.sort((a, b) => a - b)) this.evaluation.seedEstimate(t, designated);
  }

  /**
   * The last heartbeat of each member region's agent, read from the stream at start: a leader that
   * takes over (a crash, or a lease lost while JetStream elected a meta leader) measures a silent
   * region from when it was last heard, not from its own start, so detection does not start over.
   * Safety does not hang on it: failing over still needs the primary's lease expired (rule 3).
   */
  private async seedHeartbeats(): Promise<void> {
    const regions = [...new Set(this.cfg.members.map((m) => m.region))];
    await Promise.all(
      regions.map(async (region) => {
        try {
          const last = await this.opts.bus.lastMessage(subjects.heartbeat(this.name, region));
          if (last?.message?.type !== "heartbeat" || last.message.data.region !== region) return;
          const known = this.signals.heartbeats.get(region);
          if (known === undefined || known < last.storedAtMs) this.signals.heartbeats.set(region, last.storedAtMs);
        } catch (e) {
          this.log.warn({ region }, `could not read the last heartbeat of ${region} for ${this.name} from the stream: ${errorMessage(e)}`);
        }
      }),
    );
  }

  /** Started, and its record (claimed by this coordinator) stored. */
  get isLoaded(): boolean {
    return this.loaded && !this.stopped;
  }

  /** Stops without writing anything more (a crash looks the same to the next leader). Bounded. */
  async stop(): Promise<void> {
    if (this.stopSignal.signal.aborted) return;
    this.stopSignal.abort();
    clearInterval(this.tickTimer);
    this.detection.stop();
    this.unregister?.();
    this.actor?.stop();
    for (const a of this.members.values()) a.stop();
    await Promise.race([Promise.all([this.subscription?.stop().catch(() => undefined), this.rejectionSubscription?.stop().catch(() => undefined)]), sleep(3_000)]);
    await Promise.race([this.audits.drained(), sleep(2_000)]);
  }

  get stopped(): boolean {
    return this.stopSignal.signal.aborted;
  }

  private input(primary: string | null, epoch: number): FederationInput {
    return {
      federation: this.name,
      members: this.cfg.members.map((m) => m.name),
      designatedPrimary: primary,
      epoch,
      rpo: { budgetMs: this.cfg.rpo.budget, warnAt: this.cfg.rpo.warnAt },
      failoverMode: this.cfg.failover.mode,
      timeouts: { tokenMs: this.cfg.switchover.tokenTimeout, promoteMs: this.cfg.switchover.promoteTimeout, suspectGraceMs: Math.min(this.cfg.failover.leaseTtl, defaultTimeouts.suspectGraceMs) },
    };
  }

  private createActor(input: FederationInput, snapshot?: Snapshot<unknown>): FederationActor {
    return createFederationActor(
      {
        preflight: (i, s) => this.switchover.preflight(i, s),
        demotePrimary: (i, s) => this.switchover.demote(i, s),
        awaitDemotionToken: (i, s) => this.switchover.awaitToken(i, s),
        promoteWithToken: (i, s) => this.switchover.promote(i, s),
        verifySwitchover: (i, s) => this.switchover.verify(i, s),
        undoDemotion: (i, s) => this.switchover.undo(i, s),
        confirmPrimaryDown: (i, s) => this.failover.confirmDown(i, s, this.startedAtMs),
        promoteWithoutToken: (i, s) => this.failover.promoteWithoutToken(i, s),
        fenceAndDemoteFormer: (i, s) => this.fencing.fenceAndDemoteFormer(i, s),
        rejoinMember: (i, s) => this.rejoins.rejoin(i, s),
      },
      { input, snapshot, inspect: (ev) => this.pendingTransitions.push(...transitionsOf(ev, this.actor)) },
    );
  }

  /** A federation seen for the first time: the one member CNPG runs as an unfenced primary. */
  private async discoverPrimary(): Promise<string | null> {
    const until = this.now() + (this.opts.discoverMs ?? 6_000);
    while (this.now() < until && !this.stopped) {
      if (this.cfg.members.every((m) => this.signals.observations.has(m.name))) break;
      await sleep(100);
    }
    const primaries = this.signals.writable();
    if (primaries.length === 1) return primaries[0]?.name ?? null;
    this.log.warn(`${this.name}: ${primaries.length} members are observed as unfenced primaries (${primaries.map((p) => p.name).join(", ") || "none"}); no designated primary until an operator resolves`);
    return null;
  }

  get context(): FederationContext | undefined {
    return this.actor?.getSnapshot().context;
  }

  /** pgfed stopped and waits for an operator to name the primary (a failed operation, or no primary at start). */
  get awaitsOperator(): boolean {
    return this.actor?.getSnapshot().matches({ operation: "operatorRequired" }) ?? false;
  }

  send(event: FederationEvent): void {
    this.actor?.send(event);
  }

  // ---- bus intake ------------------------------------------------------------------------------

  private onMessage(msg: BusMessage): void {
    if (this.stopped) return;
    try {
      const nowMs = this.now();
      this.evaluation.noteInput();
      switch (msg.type) {
        case "observation": {
          if (!this.signals.samples.has(msg.member)) return;
          const before = this.signals.obs(msg.member);
          this.signals.observations.set(msg.member, { obs: msg.data, atMs: nowMs });
          this.detection.noticeOtherWriter(msg.member, before, msg.data);
          this.feedMember(msg.member, msg.data, nowMs);
          const ctx = this.context;
          if (ctx?.pendingFence.includes(msg.member) && msg.data.reachable && ctx.fencing === null) {
            this.send({ type: "FORMER_PRIMARY_SEEN", member: msg.member });
          } else if (ctx) this.fencing.keepDivergedFenced(ctx, msg.member, msg.data, nowMs);
          return;
        }
        case "lag":
          this.signals.samples.get(msg.member)?.record(msg.data, nowMs);
          return;
        case "heartbeat":
          this.signals.heartbeats.set(msg.data.region, nowMs);
          return;
        case "result":
          this.agents.onResult(msg.data);
          return;
        default:
          return;
      }
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, `ignoring a ${msg.type} message for ${this.name}: ${errorMessage(e)}`);
    }
  }

  private feedMember(member: string, o: Observation, atMs: number): void {
    const actor = this.members.get(member);
    if (!actor) return;
    if (!o.reachable) {
      actor.send({ type: "UNREACHABLE", reason: o.reason ?? "the agent cannot read the Cluster", atMs });
      return;
    }
    const mo = memberObservation(o, atMs);
    if (mo) actor.send({ type: "OBSERVED", observation: mo });
    else actor.send({ type: "INVALID", reason: o.reason ?? "CNPG object not understood" });
  }

  // ---- transitions: log, audit, operation records, persistence -----------------------------------

  private onSnapshot(ctx: FederationContext): void {
    if (this.stopped) return;
    const nowMs = this.now();
    const op = ctx.operation;
    const transitions = this.pendingTransitions.splice(0);
    const record = this.operations.follow(ctx, nowMs);
    const opId = op?.id ?? ctx.lastOperation?.id ?? null;
    for (const t of transitions) {
      const r = opId ? this.operations.get(opId) : undefined;
      if (r) r.steps.push({ at: new Date(nowMs).toISOString(), step: op?.step ?? "finished", description: t.description });
      this.log.info({ epoch: ctx.epoch, op: opId, event: t.event }, `${this.name}: ${t.description}; ${ctx.lastDecision}`);
      this.audits.write("transition", t.description, ctx.lastDecision, this.numbersOf(ctx), opId, null, ctx.epoch);
    }
    this.opts.metrics.failoverAwaitingApproval.set({ federation: this.name }, op?.kind === "failover" && op.step === "awaitApproval" ? 1 : 0);
    for (const m of this.members.values()) {
      const snap = m.getSnapshot();
      const diverged = ctx.diverged.includes(snap.context.member);
      if (diverged && !snap.matches("diverged")) m.send({ type: "MARK_DIVERGED", reason: `former primary of ${this.name}: fenced after a failover; its data has forked` });
      // A completed rejoin removed it from the federation's diverged list: the member machine leaves `diverged`.
      else if (!diverged && snap.matches("diverged")) m.send({ type: "REJOINED" });
    }
    const step = `${op?.id ?? "-"}:${op?.step ?? "-"}`;
    if (record && (transitions.length > 0 || step !== this.lastSnapshotStep)) this.operations.notify(record);
    this.lastSnapshotStep = step;
    this.persist(ctx);
  }

  private numbersOf(ctx: FederationContext): AuditNumbers {
    const wc = this.evaluation.last?.worstCase;
    const cand = ctx.operation ? failoverCandidate(ctx) : null;
    return {
      epoch: ctx.epoch,
      designatedPrimary: ctx.designatedPrimary,
      budgetSeconds: ctx.rpo.budgetMs / 1000,
      exposureSeconds: wc ? Math.round(wc.exposureMs) / 1000 : null,
      exposureBytes: wc ? Number(wc.exposureBytes) : null,
      ...(cand ? { candidate: cand.target, worstCaseLossSeconds: cand.worstCaseLossMs / 1000, lossBytes: cand.lossBytes } : {}),
      ...(ctx.operation?.acceptedLossMs !== undefined ? { acceptedLossSeconds: ctx.operation.acceptedLossMs / 1000 } : {}),
    };
  }

  private persist(ctx: FederationContext, force = false): void {
    if (!this.actor) return;
    this.writer.persist(
      {
        epoch: ctx.epoch,
        designatedPrimary: ctx.designatedPrimary,
        operationId: ctx.operation?.id ?? null,
        step: ctx.operation?.step ?? null,
        leader: this.opts.coordinatorId,
        snapshot: this.actor.getPersistedSnapshot(),
        // Copies: the write runs later, and the records keep changing; the stored operations must match the snapshot.
        operations: this.operations.kept(),
      },
      force,
    );
  }

  /** Resolves when everything decided so far is stored. */
  flushed(): Promise<void> {
    return this.writer.flushed();
  }

  // ---- the loop --------------------------------------------------------------------------------

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      const nowMs = this.now();
      const ctx = this.context;
      if (!ctx) return;
      if (!this.evaluation.quiet(ctx, nowMs)) this.evaluation.pass(ctx, nowMs, this.detection.agentsDown);
      await this.detection.detect(ctx, nowMs);
      this.followers.repointStragglers(ctx, nowMs);
      this.failover.refreshWhileAwaitingApproval(nowMs);
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, `evaluation pass of ${this.name} failed: ${errorMessage(e)}`);
    } finally {
      this.ticking = false;
    }
  }

  /**
   * An agent refused a command to one of our members because its proof of sender failed: someone
   * who is not the leading coordinator published it (forged, altered, or from a coordinator key
   * that does not lead). Audited, counted, and alerted (PgfedCommandRejected) for 15 minutes.
   */
  private onRejectedCommand(r: RejectedCommand): void {
    const reason = r.reason;
    this.opts.metrics.commandsRejected.inc({ federation: this.name, member: r.member, reason });
    const list = this.signals.rejectedCommands;
    list.push({ member: r.member, reason, atMs: r.atMs });
    while (list.length > 100 || (list[0] !== undefined && r.atMs - list[0].atMs > OPERATION_FAILED_WINDOW_MS)) list.shift();
    this.log.error({ member: r.member, reason, streamSeq: r.streamSeq }, `a command to ${this.name}/${r.member} was refused by its agent (${reason}): ${r.error}`);
    this.audits.write("command.rejected", `command to ${r.member} refused by its agent: ${reason}`, r.error, { streamSeq: r.streamSeq, reason }, null, r.member);
  }

  // ---- what the service uses -------------------------------------------------------------------

  audit(action: string, description: string, reason: string, numbers: AuditNumbers, operationId: string | null, member: string | null, epoch?: number): void {
    this.audits.write(action, description, reason, numbers, operationId, member, epoch);
  }

  newRecord(id: string, kind: OperationRecord["kind"], target: string | null, from: string | null, reason: string, requestedBy: string, automatic: boolean, epoch: number, startedAtMs: number, idempotencyKey?: string): OperationRecord {
    return this.operations.newRecord({ id, kind, target, from, reason, requestedBy, automatic, epoch, startedAtMs, idempotencyKey });
  }

  /** Registers an operation before its event is sent (requests from the service). */
  registerOperation(r: OperationRecord): void {
    this.operations.register(r);
  }

  forgetOperation(id: string): void {
    this.operations.forget(id);
  }

  operation(id: string): OperationRecord | undefined {
    return this.operations.get(id);
  }

  operationByKey(key: string): OperationRecord | undefined {
    return this.operations.byKey(key);
  }

  recentOperations(kind: OperationRecord["kind"]): OperationRecord[] {
    return this.operations.recent(kind);
  }

  watch(id: string, fn: (op: OperationView) => void): () => void {
    return this.operations.watch(id, fn);
  }

  targetLag(member: string): { bytes: number; ms: number } | undefined {
    return this.evaluation.targetLag(member, this.context?.designatedPrimary ?? null);
  }

  lossCandidates(from: string | null): LossEstimate[] {
    return this.evaluation.lossCandidates(from, this.context?.designatedPrimary ?? null);
  }

  refreshEstimates(): void {
    this.failover.refreshEstimates();
  }

  /** The primary's agent and region, if its agent is silent while the primary serves (PgfedAgentDown). */
  get agentsDown(): AgentDown[] {
    return this.detection.agentsDown;
  }

  /** The last hour of exposure and lag (history.ts); undefined before the federation is loaded. */
  history(): FederationHistoryView | undefined {
    return this.context ? this.evaluation.history.view() : undefined;
  }

  view(): FederationView | undefined {
    const ctx = this.context;
    if (!ctx) return undefined;
    const lastDecision = this.actor ? federationStepSentence(this.actor.getSnapshot()) : ctx.lastDecision;
    return federationView(this.parts, ctx, (m) => this.members.get(m)?.getSnapshot(), lastDecision);
  }
}
