/**
 * One federation inside the leading coordinator: its federation actor and member actors, fed by
 * the bus; the effect actors that turn the machine's steps into agent commands; persistence of
 * every transition (CAS); failure detection; the audit trail; the views the service returns.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { createActor, fromPromise, type Actor, type AnyTransitionDefinition, type Snapshot } from "xstate";
import {
  federationMachine,
  federationStepSentence,
  failoverCandidate,
  memberMachine,
  type AwaitDemotionTokenInput,
  type AwaitDemotionTokenOutput,
  type ConfirmPrimaryDownInput,
  type ConfirmPrimaryDownOutput,
  type DemotePrimaryInput,
  type FederationContext,
  type FederationEvent,
  type FenceAndDemoteFormerInput,
  type LossEstimate,
  type PreflightInput,
  type PreflightOutput,
  type PromoteWithoutTokenInput,
  type PromoteWithTokenInput,
  type RejoinMemberInput,
  type UndoDemotionInput,
  type VerifySwitchoverInput,
  type VerifySwitchoverOutput,
  DEMOTION_TOKEN_LOST,
  defaultDelays,
} from "../../machines/index.js";
import {
  filters,
  isExpired,
  isStaleRevision,
  leaseKeys,
  makeMessage,
  type Bus,
  type BusMessage,
  type BusSubscription,

  type CommandResult,
  type JsonValue,
  type LeaseStore,
  type Observation,
  type StateStore,
} from "../bus/index.js";
import type { FederationConfig } from "../config.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { FederationEvaluator, type Evaluation } from "../wal/monitor.js";
import { formatLsn } from "../wal/lsn.js";
import type { ExposureEstimate } from "../wal/exposure.js";
import { PGFED_FIELD_MANAGER, PHASES, cnpgVersionWarnings, promotedPastToken, tryDecodeToken } from "../cnpg/index.js";
import type { CoordinatorMetrics } from "./metrics.js";
import { MAX_KEPT_OPERATIONS, type FederationRecord, type OperationRecord } from "./record.js";
import type { AuditEntry, ExposureView, FederationView, MemberView, OperationView } from "./service.js";
import { MemberSamples, memberObservation, type SeenObservation } from "./signals.js";
import type { FederationTick } from "./alerting.js";
import { PrimaryCorroborator, verdictWords, type KubeVerdict, type ProbeTarget, type RegionClusterAccess } from "./corroboration.js";
import type { FederationIntakeLike } from "./intake.js";
import type { Limit } from "./limiter.js";
import { followingOf, followingRefusal, lossOf } from "./following.js";
import { membersToRepoint } from "./topology.js";

type CommandSpec =
  | { kind: "demote"; to: string }
  | { kind: "follow"; primary: string }
  | { kind: "promoteWithToken"; token: string }
  | { kind: "promoteWithoutToken" }
  | { kind: "clearToken" }
  | { kind: "fence" }
  | { kind: "unfence" }
  | { kind: "walSwitch" }
  | { kind: "ensurePrimary" }
  | { kind: "reclone"; primary: string }
  | { kind: "retargetArchive"; member: string; from: string; to: string };

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

/** The primary's agent is silent while its region's Kubernetes API shows the primary healthy: failover held back. */
export interface AgentDown {
  member: string;
  region: string;
  silentMs: number;
  sinceMs: number;
}

interface PendingTransition {
  description: string;
  event: string;
}

type FedActor = Actor<typeof federationMachine>;
type MemberActor = Actor<typeof memberMachine>;

type ProvidedFederationMachine = ReturnType<typeof federationMachine.provide>;
type AnyActorSystem = Actor<typeof federationMachine>["system"];

/** Each federation actor's system (shared with the effect actors it invokes) to its runtime. */
const runtimes = new WeakMap<AnyActorSystem, FederationRuntime>();
/** The runtime whose federation actor is being created right now (createActor is synchronous). */
let constructing: FederationRuntime | undefined;

function runtimeOf(system: AnyActorSystem): FederationRuntime {
  const rt = runtimes.get(system) ?? constructing;
  if (!rt) throw new PgfedError("coordinator.no_runtime", "an effect of the federation machine ran outside any federation runtime of this coordinator");
  return rt;
}

function whileConstructing<T>(rt: FederationRuntime, create: () => T): T {
  constructing = rt;
  try {
    return create();
  } finally {
    constructing = undefined;
  }
}

const STEP_TIMEOUT_MS = 60_000;
/** A rejoin re-clones the whole database: its pg_basebackup may take hours, not a step's minute. */
const REJOIN_TIMEOUT_MS = defaultDelays.rejoinTimeout;
/** How long the end of a rejoin waits for each other member's agent to point it at the new archive. */
const RETARGET_TIMEOUT_MS = 30_000;
const TICK_MS = 250;
/**
 * A healthy federation with no new input and no machine change is re-evaluated (exposure,
 * alerting) at this pace instead of every tick; anything new, or anything not healthy, is
 * evaluated at the next tick. Failure detection (detect) still runs every tick.
 */
const QUIET_EVALUATION_MS = 1_000;
const ATTEMPT_MS = 5_000;
/** How long a former primary may sit fenced and switching with no token before pgfed takes its demotion as never completing (CNPG retries every 10 s). */
const STUCK_DEMOTION_MS = 15_000;
/** Between two steady-state passes that repoint replicas still naming an old primary or source. */
const REPOINT_EVERY_MS = 5_000;

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

function shortId(): string {
  return randomBytes(4).toString("hex");
}

export class FederationRuntime {
  readonly name: string;
  readonly cfg: FederationConfig;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly source: string;
  private readonly evaluator: FederationEvaluator;
  private readonly observations = new Map<string, SeenObservation>();
  private readonly samples = new Map<string, MemberSamples>();
  private readonly heartbeats = new Map<string, number>();
  private readonly members = new Map<string, MemberActor>();
  private readonly pendingResults = new Map<string, (r: CommandResult) => void>();
  private readonly operations = new Map<string, OperationRecord>();
  private readonly watchers = new Map<string, Set<(op: OperationView) => void>>();
  private readonly pendingTransitions: PendingTransition[] = [];
  private readonly stopSignal = new AbortController();
  private actor: FedActor | undefined;
  private subscription: BusSubscription | undefined;
  private unregister: (() => void) | undefined;
  private loaded = false;
  private revision: number | undefined;
  private persistChain: Promise<void> = Promise.resolve();
  private auditChain: Promise<void> = Promise.resolve();
  private lastPersisted = "";
  private lastWrite: { updatedAt: string } | undefined;
  private stale = false;
  private startedAtMs: number;
  private lastEvaluation: Evaluation | undefined;
  private lastEstimate: ExposureEstimate | undefined;
  private lastEstimatesSentAtMs = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** Bumped by every message taken in; the evaluation pass compares it with the one it last saw. */
  private inputSeq = 0;
  private evaluated: { inputSeq: number; ctx: FederationContext; atMs: number; healthy: boolean } | undefined;
  private lastSnapshotStep = "";
  private refencing: Promise<void> | undefined;
  private lastRefenceAtMs = 0;
  private repointing: Promise<void> | undefined;
  private readonly cnpgVersionsSeen = new Set<string>();
  private lastRepointAtMs = 0;
  private readonly corroborator: PrimaryCorroborator;
  private agentDown: AgentDown | undefined;
  private heldBack: string | undefined;

  constructor(private readonly opts: FederationRuntimeOptions) {
    this.cfg = opts.cfg;
    this.name = opts.cfg.name;
    this.now = opts.now ?? Date.now;
    this.source = `coordinator:${opts.coordinatorId}`;
    this.log = opts.log.child({ federation: this.name });
    this.startedAtMs = this.now();
    this.evaluator = new FederationEvaluator({
      federation: this.name,
      budgetMs: this.cfg.rpo.budget,
      warnAt: this.cfg.rpo.warnAt,
      walSwitchAfterMs: this.cfg.rpo.walSwitchAfter,
    });
    for (const m of this.cfg.members) this.samples.set(m.name, new MemberSamples(this.name, m.name, m.region));
    opts.metrics.initFederation(this.name, this.cfg.rpo.warnAt);
    this.corroborator = new PrimaryCorroborator({ federation: this.name, access: (region) => opts.regionKube?.(region), now: this.now, ...opts.corroboration });
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  /** Subscribes, loads the record, restores (or creates) the actors and starts detection. */
  async start(): Promise<void> {
    this.startedAtMs = this.now();
    if (this.opts.intake) this.unregister = this.opts.intake.register(this.name, (msg) => this.onMessage(msg));
    else this.subscription = await this.opts.bus.subscribe(filters.federation(this.name), (msg) => this.onMessage(msg), { deliverNew: true, deadLetters: true });
    for (const m of this.cfg.members) {
      const a = createActor(memberMachine, { input: { federation: this.name, member: m.name, region: m.region } });
      a.start();
      this.members.set(m.name, a);
    }
    const entry = await this.kv(() => this.opts.store.get(this.name));
    let actor: FedActor;
    if (entry?.value.snapshot) {
      this.revision = entry.revision;
      for (const op of entry.value.operations) this.operations.set(op.id, op);
      actor = this.createFederationActor({ snapshot: entry.value.snapshot as Snapshot<unknown>, input: this.input(null, 1) });
      this.log.info(
        { epoch: entry.value.epoch, revision: entry.revision },
        `resuming ${this.name} from the stored record at revision ${entry.revision}: epoch ${entry.value.epoch}, primary ${entry.value.designatedPrimary ?? "none"}, operation ${entry.value.operationId ?? "none"} at step ${entry.value.step ?? "-"}`,
      );
    } else {
      if (entry) {
        this.revision = entry.revision;
        for (const op of entry.value.operations) this.operations.set(op.id, op);
      }
      const primary = await this.discoverPrimary();
      actor = this.createFederationActor({ input: this.input(primary, entry?.value.epoch ?? 1) });
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

  /** Started, and its record (claimed by this coordinator) stored. */
  get isLoaded(): boolean {
    return this.loaded && !this.stopped;
  }

  /** Stops without writing anything more (a crash looks the same to the next leader). Bounded. */
  async stop(): Promise<void> {
    if (this.stopSignal.signal.aborted) return;
    this.stopSignal.abort();
    clearInterval(this.tickTimer);
    if (this.agentDown) this.opts.metrics.agentSilentSeconds.remove({ federation: this.name, member: this.agentDown.member, region: this.agentDown.region });
    this.unregister?.();
    this.actor?.stop();
    for (const a of this.members.values()) a.stop();
    await Promise.race([this.subscription?.stop().catch(() => undefined), sleep(3_000)]);
    await Promise.race([this.auditChain, sleep(2_000)]);
  }

  private kv<T>(fn: () => Promise<T>): Promise<T> {
    return this.opts.kvLimit ? this.opts.kvLimit(fn) : fn();
  }

  get stopped(): boolean {
    return this.stopSignal.signal.aborted;
  }

  private input(primary: string | null, epoch: number) {
    return {
      federation: this.name,
      members: this.cfg.members.map((m) => m.name),
      designatedPrimary: primary,
      epoch,
      rpo: { budgetMs: this.cfg.rpo.budget, warnAt: this.cfg.rpo.warnAt },
      failoverMode: this.cfg.failover.mode,
    };
  }

  /** A federation seen for the first time: the one member CNPG runs as an unfenced primary. */
  private async discoverPrimary(): Promise<string | null> {
    const until = this.now() + (this.opts.discoverMs ?? 6_000);
    while (this.now() < until && !this.stopped) {
      if (this.cfg.members.every((m) => this.observations.has(m.name))) break;
      await sleep(100);
    }
    const primaries = this.cfg.members.filter((m) => {
      const o = this.observations.get(m.name)?.obs;
      return o?.role === "primary" && !o.fenced;
    });
    if (primaries.length === 1) return primaries[0]?.name ?? null;
    this.log.warn(`${this.name}: ${primaries.length} members are observed as unfenced primaries (${primaries.map((p) => p.name).join(", ") || "none"}); no designated primary until an operator resolves`);
    return null;
  }

  /** The member's name in the CNPG topology (`spec.replica.primary` values): its `cluster`. */
  private topologyName(member: string): string {
    return this.cfg.members.find((m) => m.name === member)?.cluster ?? member;
  }

  private regionOf(member: string): string {
    return this.cfg.members.find((m) => m.name === member)?.region ?? "?";
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
      this.inputSeq++;
      switch (msg.type) {
        case "observation": {
          if (!this.samples.has(msg.member)) return;
          const before = this.observations.get(msg.member)?.obs;
          this.observations.set(msg.member, { obs: msg.data, atMs: nowMs });
          this.noticeOtherWriter(msg.member, before, msg.data);
          this.feedMember(msg.member, msg.data, nowMs);
          const ctx = this.context;
          if (ctx?.pendingFence.includes(msg.member) && msg.data.reachable && ctx.fencing === null) {
            this.send({ type: "FORMER_PRIMARY_SEEN", member: msg.member });
          } else if (ctx) this.keepDivergedFenced(ctx, msg.member, msg.data, nowMs);
          return;
        }
        case "lag":
          this.samples.get(msg.member)?.record(msg.data, nowMs);
          return;
        case "heartbeat":
          this.heartbeats.set(msg.data.region, nowMs);
          return;
        case "result": {
          const done = this.pendingResults.get(msg.data.commandId);
          if (done) done(msg.data);
          return;
        }
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

  // ---- transitions: log, audit, operation views, persistence ------------------------------------

  private inspect(ev: { type: string; actorRef?: unknown }): void {
    if (ev.type !== "@xstate.microstep" || this.actor === undefined || ev.actorRef !== this.actor) return;
    const micro = ev as unknown as { event: { type: string }; _transitions: AnyTransitionDefinition[] };
    for (const t of micro._transitions) {
      this.pendingTransitions.push({ description: t.description ?? `${micro.event.type} handled`, event: micro.event.type });
    }
  }

  private onSnapshot(ctx: FederationContext): void {
    if (this.stopped) return;
    const nowMs = this.now();
    const op = ctx.operation;
    const transitions = this.pendingTransitions.splice(0);
    // Operation record: created for automatic failovers, updated at every step.
    let record: OperationRecord | undefined;
    if (op) {
      record = this.operations.get(op.id);
      if (!record) {
        record = this.newRecord(op.id, op.kind, op.target, op.from, op.reason, op.requestedBy, op.automatic, ctx.epoch, op.startedAtMs);
        this.operations.set(op.id, record);
      }
      record.step = op.step;
      record.target = op.target;
      record.state = op.step === "operatorRequired" ? "operatorRequired" : op.step === "awaitApproval" || op.step === "rejoinApproval" ? "awaitingApproval" : "running";
      record.lastDecision = ctx.lastDecision;
      record.acceptedLossSeconds = op.acceptedLossMs !== undefined ? op.acceptedLossMs / 1000 : record.acceptedLossSeconds;
      if (op.worstCaseLossMs !== undefined) record.dataLossSeconds = op.worstCaseLossMs / 1000;
      if (op.promoteIssued) record.epochAfter = ctx.epoch;
    }
    const last = ctx.lastOperation;
    if (last) {
      const r = this.operations.get(last.id);
      if (r && r.finishedAt === null && (!op || op.id !== last.id)) {
        r.state = last.outcome;
        r.finishedAt = isoOf(nowMs);
        r.durationSeconds = (nowMs - Date.parse(r.startedAt)) / 1000;
        r.lastDecision = ctx.lastDecision;
        r.step = "finished";
        if (r.state === "completed" && r.kind !== "rejoin") r.epochAfter = ctx.epoch;
        if (r.kind === "switchover" && r.state === "completed") r.dataLossSeconds = 0;
        this.opts.metrics.operations.inc({ federation: this.name, kind: r.kind, result: r.state });
        this.opts.metrics.operationDuration.observe({ federation: this.name, kind: r.kind }, r.durationSeconds);
        if (r.state === "aborted") this.opts.metrics.operationsFailed.inc({ federation: this.name, kind: r.kind });
        this.log.info({ op: r.id, epoch: ctx.epoch }, `${r.kind} ${r.id} of ${this.name} ${r.state} in ${r.durationSeconds.toFixed(1)} s: ${ctx.lastDecision}`);
        record ??= r;
        this.notify(r);
      }
    }
    if (op?.step === "operatorRequired" && record && !record.steps.some((s) => s.step === "operatorRequired")) {
      this.opts.metrics.operationsFailed.inc({ federation: this.name, kind: op.kind });
    }
    const opId = op?.id ?? last?.id ?? null;
    for (const t of transitions) {
      const r = opId ? this.operations.get(opId) : undefined;
      const stepName = op?.step ?? "finished";
      if (r) r.steps.push({ at: isoOf(nowMs), step: stepName, description: t.description });
      this.log.info({ epoch: ctx.epoch, op: opId, event: t.event }, `${this.name}: ${t.description}; ${ctx.lastDecision}`);
      this.audit("transition", t.description, ctx.lastDecision, this.numbersOf(ctx), opId, null, ctx.epoch);
    }
    this.opts.metrics.failoverAwaitingApproval.set({ federation: this.name }, op?.kind === "failover" && op.step === "awaitApproval" ? 1 : 0);
    for (const m of this.members.values()) {
      if (ctx.diverged.includes(m.getSnapshot().context.member) && !m.getSnapshot().matches("diverged")) m.send({ type: "MARK_DIVERGED", reason: `former primary of ${this.name}: fenced after a failover; its data has forked` });
      // A completed rejoin removed it from the federation's diverged list: the member machine leaves `diverged`.
      else if (!ctx.diverged.includes(m.getSnapshot().context.member) && m.getSnapshot().matches("diverged")) m.send({ type: "REJOINED" });
    }
    const step = `${op?.id ?? "-"}:${op?.step ?? "-"}`;
    if (record && (transitions.length > 0 || step !== this.lastSnapshotStep)) this.notify(record);
    this.lastSnapshotStep = step;
    this.persist(ctx);
  }

  newRecord(id: string, kind: OperationRecord["kind"], target: string | null, from: string | null, reason: string, requestedBy: string, automatic: boolean, epoch: number, startedAtMs: number, idempotencyKey?: string): OperationRecord {
    return {
      id,
      federation: this.name,
      kind,
      state: "running",
      step: "starting",
      target,
      from,
      reason,
      requestedBy,
      automatic,
      startedAt: isoOf(startedAtMs),
      finishedAt: null,
      epochBefore: epoch,
      epochAfter: null,
      acceptedLossSeconds: null,
      durationSeconds: null,
      dataLossSeconds: null,
      lastDecision: "",
      steps: [],
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    };
  }

  /** Registers an operation before its event is sent (requests from the service). */
  registerOperation(r: OperationRecord): void {
    this.operations.set(r.id, r);
  }

  forgetOperation(id: string): void {
    this.operations.delete(id);
  }

  private numbersOf(ctx: FederationContext): Record<string, number | string | boolean | null> {
    const wc = this.lastEvaluation?.worstCase;
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

  private persist(ctx: FederationContext): void {
    if (this.stale || this.stopped || !this.actor) return;
    const snapshot = this.actor.getPersistedSnapshot();
    // Copies: the write runs later, and the records keep changing; the stored operations must match the snapshot.
    const ops = [...this.operations.values()].slice(-MAX_KEPT_OPERATIONS).map((o) => structuredClone(o));
    const value: Omit<FederationRecord, "updatedAt"> = {
      epoch: ctx.epoch,
      designatedPrimary: ctx.designatedPrimary,
      operationId: ctx.operation?.id ?? null,
      step: ctx.operation?.step ?? null,
      leader: this.opts.coordinatorId,
      snapshot,
      operations: ops,
    };
    const key = JSON.stringify(value);
    if (key === this.lastPersisted) return;
    this.lastPersisted = key;
    this.persistChain = this.persistChain.then(() => this.write({ ...value, updatedAt: new Date(this.now()).toISOString() }));
  }

  /** Writes with CAS; retries transport failures; a stale revision means someone else writes: step down. */
  private async write(value: FederationRecord): Promise<void> {
    for (let attempt = 0; !this.stale && !this.stopped; attempt++) {
      try {
        this.lastWrite = { updatedAt: value.updatedAt };
        const rev = this.revision;
        this.revision = await this.kv(() => (rev === undefined ? this.opts.store.create(this.name, value) : this.opts.store.update(this.name, value, rev)));
        return;
      } catch (e) {
        if (isStaleRevision(e)) {
          // The previous attempt may have landed with its reply lost: adopt it if it is ours.
          const cur = await this.opts.store.get(this.name).catch(() => undefined);
          if (cur && cur.value.leader === this.opts.coordinatorId && cur.value.updatedAt === this.lastWrite?.updatedAt) {
            this.revision = cur.revision;
            return;
          }
          this.stale = true;
          const why = `the record of ${this.name} changed under revision ${this.revision ?? "none"} (now ${cur?.revision ?? "?"}, written by ${cur?.value.leader ?? "?"})`;
          this.log.error(`stepping down for ${this.name}: ${why}; another coordinator writes it`);
          this.opts.onStale(this.name, why);
          return;
        }
        if (attempt % 10 === 0) this.log.warn({ err: errorMessage(e) }, `persisting ${this.name} failed (attempt ${attempt + 1}); retrying: ${errorMessage(e)}`);
        await sleep(Math.min(2_000, 200 * (attempt + 1)));
      }
    }
  }

  /** Resolves when everything decided so far is stored. */
  async flushed(): Promise<void> {
    await this.persistChain;
    if (this.stale) throw new PgfedError("coordinator.stale", `${this.name}: this coordinator is no longer the writer of the federation record`);
  }

  // ---- audit -----------------------------------------------------------------------------------

  audit(action: string, description: string, reason: string, numbers: Record<string, number | string | boolean | null>, operationId: string | null, member: string | null, epoch?: number): void {
    if (this.stopped) return;
    const ep = epoch ?? this.context?.epoch ?? 0;
    let msg: BusMessage;
    try {
      msg = makeMessage("audit", {
        federation: this.name,
        ...(member ? { member } : {}),
        epoch: ep,
        source: this.source,
        data: {
          actor: this.source,
          action,
          reason: reason.slice(0, 4_000),
          numbers,
          description: description.slice(0, 4_000),
          ...(operationId ? { operationId } : {}),
        },
      });
    } catch (e) {
      this.log.error({ err: errorMessage(e) }, `cannot build the audit record ${action} for ${this.name}: ${errorMessage(e)}`);
      return;
    }
    this.auditChain = this.auditChain.then(async () => {
      for (let attempt = 0; attempt < 5 && !this.stopped; attempt++) {
        try {
          await this.opts.bus.publish(msg);
          return;
        } catch (e) {
          this.log.warn({ err: errorMessage(e) }, `audit record ${action} of ${this.name} not stored yet (attempt ${attempt + 1}): ${errorMessage(e)}`);
        }
      }
    });
  }

  // ---- commands --------------------------------------------------------------------------------

  /**
   * Sends `spec` to the member's agent and waits for the result; re-sends (new id, same effect:
   * agents ensure) every few seconds until `timeoutMs`. Throws naming federation, member and step.
   */
  async command(member: string, spec: CommandSpec, p: { epoch: number; operationId: string; step: string; timeoutMs: number; signal: AbortSignal }): Promise<Record<string, JsonValue>> {
    await this.flushed();
    const deadline = this.now() + p.timeoutMs;
    let lastError = "no answer";
    for (let attempt = 1; this.now() < deadline; attempt++) {
      if (p.signal.aborted || this.stopped) throw new PgfedError("coordinator.cancelled", `${p.step} of ${this.name}/${member}: cancelled`);
      const id = `${p.operationId}.${p.step}.${attempt}.${shortId()}`.slice(0, 128);
      const wait = Math.min(ATTEMPT_MS, Math.max(200, deadline - this.now()));
      const data = { ...spec, operationId: p.operationId, deadlineAt: isoOf(this.now() + wait) };
      const result = new Promise<CommandResult | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), wait);
        const onAbort = () => resolve(undefined);
        p.signal.addEventListener("abort", onAbort, { once: true });
        this.pendingResults.set(id, (r) => {
          clearTimeout(timer);
          p.signal.removeEventListener("abort", onAbort);
          resolve(r);
        });
      });
      try {
        const msg = makeMessage("command", { federation: this.name, member, epoch: p.epoch, source: this.source, id, data });
        this.audit("command.sent", `${spec.kind} sent to ${member} (attempt ${attempt})`, `step ${p.step} of operation ${p.operationId}`, { epoch: p.epoch, attempt }, p.operationId, member, p.epoch);
        this.log.info({ op: p.operationId, epoch: p.epoch, member, commandId: id }, `sending ${spec.kind} to ${this.name}/${member} at epoch ${p.epoch} for step ${p.step} (attempt ${attempt})`);
        await this.opts.bus.publish(msg);
      } catch (e) {
        this.pendingResults.delete(id);
        lastError = errorMessage(e);
        await sleep(300);
        continue;
      }
      const r = await result;
      this.pendingResults.delete(id);
      if (!r) {
        lastError = `no result within ${wait} ms`;
        continue;
      }
      const sentence = r.ok ? `${spec.kind} of ${member} done` : `${spec.kind} of ${member} failed: ${r.error?.code ?? "?"}: ${r.error?.message ?? ""}`;
      this.audit("command.result", sentence, `step ${p.step} of operation ${p.operationId}`, { epoch: p.epoch, ok: r.ok }, p.operationId, member, p.epoch);
      if (r.ok) return r.data ?? {};
      throw new PgfedError(r.error?.code ?? "coordinator.command_failed", `step ${p.step} of ${this.name}/${member}: ${r.error?.message ?? "failed"}`, { federation: this.name, member, step: p.step });
    }
    throw new PgfedError("coordinator.command_timeout", `step ${p.step} of ${this.name}/${member}: ${spec.kind} got no answer from the agent of region ${this.regionOf(member)} within ${p.timeoutMs} ms (${lastError})`, {
      federation: this.name,
      member,
      step: p.step,
    });
  }

  /** Waits until the member's latest observation satisfies `ok`; throws after `timeoutMs` naming what it waited for. */
  async awaitObservation(member: string, what: string, ok: (o: Observation) => boolean, timeoutMs: number, signal: AbortSignal): Promise<Observation> {
    const deadline = this.now() + timeoutMs;
    while (this.now() < deadline) {
      if (signal.aborted || this.stopped) throw new PgfedError("coordinator.cancelled", `waiting for ${this.name}/${member} ${what}: cancelled`);
      const o = this.observations.get(member)?.obs;
      if (o && o.reachable && ok(o)) return o;
      await sleep(100);
    }
    const o = this.observations.get(member)?.obs;
    throw new PgfedError("coordinator.wait_timeout", `waited ${timeoutMs} ms for ${this.name}/${member} ${what}; last seen: role ${o?.role ?? "?"}, phase ${o?.phase ?? "?"}, fenced ${String(o?.fenced ?? "?")}`, { federation: this.name, member });
  }

  // ---- effects (every one an idempotent "ensure") ----------------------------------------------

  /**
   * The federation machine with the coordinator's effects, built once per process: `.provide()`
   * copies the whole machine (~70 KB), so the actors and delays find their runtime through the
   * actor system of the federation actor that invoked them (runtimeOf) rather than by closure.
   */
  private static machine(): ProvidedFederationMachine {
    return (FederationRuntime.provided ??= FederationRuntime.provideMachine());
  }

  private static provided: ProvidedFederationMachine | undefined;

  private static provideMachine() {
    const rt = (system: AnyActorSystem): FederationRuntime => runtimeOf(system);
    return federationMachine.provide({
      delays: {
        stepTimeout: STEP_TIMEOUT_MS,
        tokenTimeout: ({ system }) => rt(system).cfg.switchover.tokenTimeout,
        promoteTimeout: ({ system }) => rt(system).cfg.switchover.promoteTimeout,
        suspectGrace: ({ system }) => Math.min(1_000, rt(system).cfg.failover.leaseTtl),
        confirmRetry: 1_000,
        rejoinTimeout: REJOIN_TIMEOUT_MS,
      },
      actors: {
        preflight: fromPromise<PreflightOutput, PreflightInput>(async ({ input, signal, system }) => rt(system).preflightStep(input, signal)),
        demotePrimary: fromPromise<void, DemotePrimaryInput>(async ({ input, signal, system }) => rt(system).demotePrimary(input, signal)),
        awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(async ({ input, signal, system }) => rt(system).awaitDemotionToken(input, signal)),
        promoteWithToken: fromPromise<void, PromoteWithTokenInput>(async ({ input, signal, system }) => rt(system).promoteWithToken(input, signal)),
        verifySwitchover: fromPromise<VerifySwitchoverOutput, VerifySwitchoverInput>(async ({ input, signal, system }) => rt(system).verifySwitchover(input, signal)),
        undoDemotion: fromPromise<void, UndoDemotionInput>(async ({ input, signal, system }) => rt(system).undoDemotion(input, signal)),
        confirmPrimaryDown: fromPromise<ConfirmPrimaryDownOutput, ConfirmPrimaryDownInput>(async ({ input, signal, system }) => rt(system).confirmDown(input, signal)),
        promoteWithoutToken: fromPromise<void, PromoteWithoutTokenInput>(async ({ input, signal, system }) => rt(system).promoteWithoutToken(input, signal)),
        fenceAndDemoteFormer: fromPromise<void, FenceAndDemoteFormerInput>(async ({ input, signal, system }) => rt(system).fenceAndDemoteFormer(input, signal)),
        rejoinMember: fromPromise<void, RejoinMemberInput>(async ({ input, signal, system }) => rt(system).rejoin(input, REJOIN_TIMEOUT_MS - 5_000, signal)),
      },
    });
  }

  /** Creates the federation actor and binds its actor system to this runtime (runtimeOf). */
  private createFederationActor(options: { snapshot?: Snapshot<unknown>; input: ReturnType<FederationRuntime["input"]> }): FedActor {
    // createActor already resolves the delays of the initial state, before its system can be bound.
    const actor = whileConstructing(this, () => createActor(FederationRuntime.machine(), { ...options, inspect: (ev) => this.inspect(ev) }));
    runtimes.set(actor.system, this);
    return actor;
  }

  private async preflightStep(input: PreflightInput, signal: AbortSignal): Promise<PreflightOutput> {
    // A leader that just started (or resumed this step) has no observations or lag figures yet: wait for them, bounded, rather than refuse.
    const until = this.now() + 10_000;
    let out = this.preflight(input);
    while (!out.ok && out.missingEvidence === true && this.now() < until && !signal.aborted && !this.stopped) {
      await sleep(200);
      out = this.preflight(input);
    }
    const { missingEvidence: _missing, ...verdict } = out;
    return verdict;
  }

  private async demotePrimary(input: DemotePrimaryInput, signal: AbortSignal): Promise<void> {
    const op = this.operations.get(input.operationId);
    if (op && op.tokenBefore === undefined) {
      op.tokenBefore = this.observations.get(input.from)?.obs.demotionToken ?? null;
      this.lastPersisted = "";
      const ctx = this.context;
      if (ctx) this.persist(ctx);
    }
    await this.command(input.from, { kind: "demote", to: input.target }, { ...input, step: "demote", timeoutMs: STEP_TIMEOUT_MS - 5_000, signal });
  }

  private async awaitDemotionToken(input: AwaitDemotionTokenInput, signal: AbortSignal): Promise<AwaitDemotionTokenOutput> {
    const before = this.operations.get(input.operationId)?.tokenBefore ?? null;
    // CNPG before 1.28.4 / 1.29.2 / 1.30.0 can end the switch with an empty token (CNPG issue
    // #11074): seen switching, then done with no new token, is that bug; waiting longer cannot help.
    let switching = false;
    const o = await this.awaitObservation(
      input.member,
      `to be demoted with a new demotion token${before ? " (different from the stale one seen before the demote)" : ""}`,
      (x) => {
        switching ||= x.switchInProgress;
        const done = x.role === "replica" && !x.switchInProgress;
        const fresh = x.demotionToken !== undefined && x.demotionToken !== before;
        return done && (fresh || switching);
      },
      this.cfg.switchover.tokenTimeout,
      signal,
    );
    if (o.demotionToken === undefined || o.demotionToken === before) {
      const sentence = `CNPG completed the demotion of ${this.name}/${input.member} (ReplicaClusterSwitch done, switch no longer in progress) but wrote no demotion token: CNPG issue #11074, fixed in 1.28.4, 1.29.2 and 1.30.0; upgrade the operator`;
      this.audit("switchover.token_lost", sentence, "without the token no replica can be promoted with the zero-loss check; nothing was promoted", { epoch: input.epoch }, input.operationId, input.member, input.epoch);
      throw new PgfedError(DEMOTION_TOKEN_LOST, sentence, { federation: this.name, member: input.member });
    }
    this.warnAboutCnpg(o.demotionToken, input.member);
    return { token: o.demotionToken };
  }

  /** The token names the CNPG that wrote it: say once per version when it is too old or has the token-loss bug. */
  private warnAboutCnpg(token: string, member: string): void {
    const decoded = tryDecodeToken(token);
    if (!decoded.ok || this.cnpgVersionsSeen.has(decoded.token.operatorVersion)) return;
    this.cnpgVersionsSeen.add(decoded.token.operatorVersion);
    for (const warning of cnpgVersionWarnings(decoded.token.operatorVersion)) {
      this.log.warn({ member, operatorVersion: decoded.token.operatorVersion }, `${this.name}/${member}: ${warning}`);
      this.audit("cnpg.version_warning", warning, `read from the demotion token of ${member}`, { operatorVersion: decoded.token.operatorVersion }, null, member);
    }
  }

  private async promoteWithToken(input: PromoteWithTokenInput, signal: AbortSignal): Promise<void> {
    const f = this.cfg;
    await this.command(input.target, { kind: "promoteWithToken", token: input.token }, { ...input, step: "promote", timeoutMs: f.switchover.promoteTimeout, signal });
    await this.awaitObservation(
      input.target,
      "to be promoted with the demotion token",
      // CNPG empties lastPromotionToken once the token leaves the spec (a resumed step after verify's
      // clearToken): a primary on a timeline newer than the token's was promoted by it or after it.
      (x) => x.role === "primary" && (x.lastPromotionToken === input.token || promotedPastToken(input.token, x.timelineID)) && !x.switchInProgress && x.phase !== PHASES.promoting,
      f.switchover.promoteTimeout,
      signal,
    );
  }

  private async verifySwitchover(input: VerifySwitchoverInput, signal: AbortSignal): Promise<VerifySwitchoverOutput> {
    const verifyDeadline = this.now() + STEP_TIMEOUT_MS - 5_000;
    // A leader resuming this step has not heard from the target yet: wait for it (bounded) before judging.
    const t = await this.awaitObservation(input.target, "to run as an unfenced primary", (x) => x.role === "primary" && !x.fenced, 10_000, signal).catch(() => this.observations.get(input.target)?.obs);
    if (t?.role !== "primary" || t.fenced) return { ok: false, reason: `${input.target} is not an unfenced primary (role ${t?.role ?? "?"}, fenced ${String(t?.fenced)})` };
    // CNPG issue #9273: the token must leave the new primary's spec before it is demoted again.
    await this.command(input.target, { kind: "clearToken" }, { ...input, step: "verify", timeoutMs: 20_000, signal });
    const [, followers] = await Promise.all([
      this.awaitObservation(input.from, `to follow ${input.target} as a replica`, (x) => x.role === "replica" && !x.fenced, 20_000, signal),
      this.ensureFollowers({ ...input, primary: input.target, skip: [input.from], step: "verify", budgetMs: 20_000, signal }),
    ]);
    // Whatever is left of the step's minute (the machine's stepTimeout), less a margin.
    const left = Math.max(1_000, verifyDeadline - this.now());
    await this.awaitTimeline(input.target, [input.from, ...followers.repointed, ...followers.unchanged], input, left, signal);
    return { ok: true };
  }

  /**
   * Ensure step "every replica follows the primary" (topology.ts): a `follow` command to each
   * replica whose spec names another primary or source, all at once. A member that cannot be
   * changed (its region down) does not fail the operation: it is audited and the steady-state pass
   * (tick) repoints it once it answers. Returns who was repointed, who already followed, who failed.
   */
  private async ensureFollowers(p: { epoch: number; operationId: string; primary: string; skip: readonly string[]; step: string; budgetMs: number; signal: AbortSignal }): Promise<{ repointed: string[]; unchanged: string[]; failed: string[] }> {
    const ctx = this.context;
    const skip = new Set([...p.skip, ...(ctx?.diverged ?? []), ...(ctx?.pendingFence ?? []), ...(ctx?.fencing ? [ctx.fencing] : [])]);
    const needs = membersToRepoint(this.cfg.members, p.primary, (m) => this.observations.get(m)?.obs, skip);
    const needing = new Set(needs.map((n) => n.member));
    const unchanged = this.cfg.members.map((m) => m.name).filter((m) => m !== p.primary && !skip.has(m) && !needing.has(m));
    const outcomes = await Promise.all(
      needs.map(async (n) => {
        try {
          await this.command(n.member, { kind: "follow", primary: p.primary }, { epoch: p.epoch, operationId: p.operationId, step: p.step, timeoutMs: p.budgetMs, signal: p.signal });
          this.audit("topology.follow", `${n.member} now names ${p.primary} as primary and follows it`, `it ${n.why}`, { epoch: p.epoch }, p.operationId, n.member, p.epoch);
          return { member: n.member, ok: true };
        } catch (e) {
          const why = errorMessage(e);
          this.audit("topology.follow_failed", `${n.member} could not be pointed at ${p.primary}`, `it ${n.why}; ${why}; pgfed tries again once it answers`, { epoch: p.epoch }, p.operationId, n.member, p.epoch);
          this.log.warn({ op: p.operationId, member: n.member }, `could not point ${this.name}/${n.member} at ${p.primary}: ${why}`);
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
  private async awaitTimeline(primary: string, members: readonly string[], p: { epoch: number; operationId: string }, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const until = this.now() + timeoutMs;
    const behind = (): { member: string; timeline: number }[] => {
      const pr = this.samples.get(primary)?.current(this.now(), 5_000);
      const want = pr?.status === "up" && pr.sample.role === "primary" ? pr.sample.timeline : undefined;
      return members.flatMap((m) => {
        const st = this.samples.get(m)?.current(this.now(), 5_000);
        const tl = st?.status === "up" && st.sample.role === "replica" ? st.sample.timeline : 0;
        return want !== undefined && tl === want ? [] : [{ member: m, timeline: tl }];
      });
    };
    let left = behind();
    while (left.length > 0 && this.now() < until && !signal.aborted && !this.stopped) {
      await sleep(200);
      left = behind();
    }
    const pr = this.samples.get(primary)?.current(this.now(), 5_000);
    const timeline = pr?.status === "up" ? pr.sample.timeline : null;
    if (left.length === 0) {
      this.audit("topology.following", `every replica replays ${primary}'s timeline ${String(timeline)}`, `${members.join(", ") || "no replica"} checked after the change of primary`, { epoch: p.epoch, timeline }, p.operationId, null, p.epoch);
      return;
    }
    const list = left.map((b) => `${b.member} (timeline ${b.timeline === 0 ? "unknown" : b.timeline})`).join(", ");
    this.audit("topology.not_following", `${list} not yet on ${primary}'s timeline ${String(timeline)} after ${timeoutMs / 1000} s`, "the operation is done; these members show as not following until they catch up or are rejoined", { epoch: p.epoch, timeline }, p.operationId, null, p.epoch);
    this.log.warn({ op: p.operationId }, `${this.name}: ${list} not yet on ${primary}'s timeline ${String(timeline)}`);
  }

  private async undoDemotion(input: UndoDemotionInput, signal: AbortSignal): Promise<void> {
    // Re-designate: spec.replica.primary = itself. Only reached before any promote was issued.
    await this.command(input.member, { kind: "ensurePrimary" }, { ...input, step: "undo", timeoutMs: 20_000, signal }).catch(async (e: unknown) => {
      if (e instanceof PgfedError && e.code === "agent.not_primary") {
        throw new PgfedError("coordinator.undo_impossible", `undo of ${this.name}/${input.member}: it was already demoted (${e.message}); an operator must RESOLVE`);
      }
      throw e;
    });
  }

  private async promoteWithoutToken(input: PromoteWithoutTokenInput, signal: AbortSignal): Promise<void> {
    const f = this.cfg;
    const numbers = { worstCaseLossSeconds: input.worstCaseLossMs / 1000, acceptedLossSeconds: input.acceptedLossMs === null ? null : input.acceptedLossMs / 1000, budgetSeconds: f.rpo.budget / 1000, epoch: input.epoch };
    this.audit("failover.promote", `promoting ${input.target} without a token at epoch ${input.epoch}`, this.context?.lastDecision ?? "", numbers, input.operationId, input.target, input.epoch);
    await this.command(input.target, { kind: "promoteWithoutToken" }, { ...input, step: "promoteWithoutToken", timeoutMs: f.switchover.promoteTimeout, signal });
    await this.awaitObservation(input.target, "to run as the primary", (x) => x.role === "primary" && !x.switchInProgress && x.phase !== PHASES.promoting, f.switchover.promoteTimeout, signal);
    // The spec says primary at once; Postgres itself must have left recovery (a lag sample says so).
    const until = this.now() + f.switchover.promoteTimeout;
    while (this.samples.get(input.target)?.role() !== "primary" && this.now() < until && !signal.aborted) await sleep(100);
    // The other replicas follow the new primary (the former one is fenced and demoted when seen again).
    const followers = await this.ensureFollowers({ ...input, primary: input.target, skip: input.former ? [input.former] : [], step: "promoteWithoutToken", budgetMs: 20_000, signal });
    await this.awaitTimeline(input.target, [...followers.repointed, ...followers.unchanged], input, 20_000, signal);
  }

  private async fenceAndDemoteFormer(input: FenceAndDemoteFormerInput, signal: AbortSignal): Promise<void> {
    const p = { epoch: input.epoch, operationId: `fence-${input.member}-e${input.epoch}`, timeoutMs: 30_000, signal };
    // Fence first (Postgres stops), then point it at the new primary; CNPG's demotion ends by
    // unfencing (it then runs read-only, in recovery), so fence again once it is done.
    await this.command(input.member, { kind: "fence" }, { ...p, step: "fence" });
    if (input.newPrimary) {
      const to = input.newPrimary;
      const seen = this.observations.get(input.member)?.obs;
      const alreadyDemoted = seen?.reachable === true && seen.role === "replica" && !seen.switchInProgress;
      await this.command(input.member, { kind: "demote", to }, { ...p, step: "demoteFormer" });
      if (!alreadyDemoted) {
        // The role follows the spec at once; the demotion is over (and its unfence done) only once CNPG
        // was seen switching, or published a new demotion token (a fast switch may be coalesced away).
        // A former primary that crashed never finishes: CNPG demotes only a cleanly shut down data
        // directory and a fenced instance never runs crash recovery (CNPG's
        // pkg/reconciler/replicaclusterswitch/shutdown_wal.go), so it stays fenced, switching, with no
        // token. That is as safe as a finished demotion (it cannot write) and is accepted once it has
        // lasted longer than CNPG's 10 s retry; the member is diverged either way and a rejoin
        // re-clones it without a token.
        const tokenBefore = seen?.demotionToken;
        const toCluster = this.topologyName(to);
        let switching = false;
        let stuckSinceMs: number | undefined;
        const o = await this.awaitObservation(
          input.member,
          `to finish its demotion to follow ${to}`,
          (x) => {
            switching ||= x.switchInProgress;
            const stuck = x.fenced && x.switchInProgress && x.specPrimary === toCluster && x.demotionToken === undefined;
            stuckSinceMs = stuck ? (stuckSinceMs ?? this.now()) : undefined;
            if (stuckSinceMs !== undefined && this.now() - stuckSinceMs >= STUCK_DEMOTION_MS) return true;
            return x.role === "replica" && !x.switchInProgress && (switching || (x.demotionToken !== undefined && x.demotionToken !== tokenBefore));
          },
          30_000,
          signal,
        );
        if (o.switchInProgress) {
          const sentence = `former primary ${input.member} of ${this.name} cannot finish its demotion: it is fenced and names ${to} as primary, but CNPG produced no demotion token for ${(STUCK_DEMOTION_MS / 1000).toFixed(0)} s`;
          this.log.warn({ member: input.member, epoch: input.epoch }, sentence);
          this.audit("former.demotion_stuck", sentence, "its data directory was not shut down cleanly (it crashed with its region): CNPG retries forever and never starts it; it stays fenced and diverged, and a rejoin re-clones it", { epoch: input.epoch, stuckSeconds: STUCK_DEMOTION_MS / 1000 }, null, input.member, input.epoch);
        }
      }
      await this.command(input.member, { kind: "fence" }, { ...p, step: "refence" });
    }
  }

  /**
   * Level-triggered: a diverged member stays fenced until it is rejoined. Whatever unfenced it (CNPG
   * ends a demotion by unfencing; a person), it is fenced again — at most one attempt in flight,
   * one every 2 s — and the audit says so.
   */
  private keepDivergedFenced(ctx: FederationContext, member: string, obs: Observation, nowMs: number): void {
    if (!ctx.diverged.includes(member) || !obs.reachable || obs.fenced || obs.switchInProgress || ctx.fencing !== null) return;
    if (ctx.operation?.kind === "rejoin" && ctx.operation.target === member) return;
    if (this.refencing !== undefined || nowMs - this.lastRefenceAtMs < 2_000) return;
    this.lastRefenceAtMs = nowMs;
    const reason = `diverged member ${member} of ${this.name} seen unfenced; fencing it again until it is rejoined`;
    this.log.warn({ member, epoch: ctx.epoch }, reason);
    this.audit("diverged.refence", reason, "a diverged member has forked data and must not serve", {}, null, member, ctx.epoch);
    const p = { epoch: ctx.epoch, operationId: `refence-${member}-e${ctx.epoch}`, step: "refence", timeoutMs: 10_000, signal: this.stopSignal.signal };
    this.refencing = this.command(member, { kind: "fence" }, p)
      .then(() => undefined)
      .catch((e: unknown) => this.log.warn({ member, err: errorMessage(e) }, `fencing diverged member ${member} of ${this.name} again failed: ${errorMessage(e)}`))
      .finally(() => {
        this.refencing = undefined;
      });
  }

  /**
   * Rejoin of a diverged former primary (operator-requested and approved: it discards the member's
   * diverged writes). The agent re-clones it (reclone.ts: fence, record what it holds, delete,
   * recreate as a replica cluster of the primary with a fresh archive path), one bounded attempt at
   * a time until it says done; then the member must be seen following the primary: a healthy,
   * unfenced replica cluster whose Postgres replays on the primary's timeline. The audit record
   * `rejoin.recloned` carries what was discarded and where the old archive stays.
   */
  private async rejoin(input: RejoinMemberInput, budgetMs: number, signal: AbortSignal): Promise<void> {
    const { member, primary } = input;
    const who = `${this.name}/${member}`;
    if (primary === null) throw new PgfedError("coordinator.no_primary", `rejoin of ${who}: there is no designated primary to clone from`);
    const t0 = this.now();
    const until = t0 + budgetMs;
    const p = { epoch: input.epoch, operationId: input.operationId, signal };
    // The coordinator's own last sample of the member (often from before the region was lost), kept
    // before the re-clone replaces it: the agent of a restarted region may never have sampled it.
    const st = this.samples.get(member)?.current(this.now(), Number.MAX_SAFE_INTEGER);
    const seen = st?.status === "up" ? st.sample : st?.status === "unreachable" ? st.lastSample : undefined;
    const seenLsn = seen === undefined ? undefined : seen.role === "primary" ? seen.currentLsn : (seen.replayLsn ?? seen.receiveLsn);
    const lastKnown = {
      lastKnownLsn: seenLsn === undefined ? null : formatLsn(seenLsn),
      lastKnownRole: seen?.role ?? null,
      lastKnownTimeline: seen?.timeline ?? null,
      lastKnownSampledAt: seen ? isoOf(seen.atMs) : null,
    };
    let data: Record<string, JsonValue> = {};
    for (let round = 1; ; round++) {
      const left = until - this.now();
      if (left <= 0) throw new PgfedError("coordinator.rejoin_timeout", `rejoin of ${who}: the re-clone from ${primary} was not done within ${budgetMs} ms (last: ${JSON.stringify(data.done ?? null)})`, { federation: this.name, member });
      data = await this.command(member, { kind: "reclone", primary }, { ...p, step: "reclone", timeoutMs: left });
      if (data.done === true) break;
      this.log.info({ op: input.operationId, epoch: input.epoch, member, round }, `rejoin of ${who}: re-clone from ${primary} not done after attempt ${round}; repeating`);
      await sleep(200, undefined, { signal }).catch(() => undefined);
    }
    const left = () => Math.max(1_000, until - this.now());
    await this.awaitObservation(member, `to run as a healthy unfenced replica cluster of ${primary}`, (x) => x.role === "replica" && !x.fenced && x.ready, left(), signal);
    // Following, not just running: its Postgres replays on the timeline the primary writes.
    let timelines = { member: 0, primary: -1 };
    while (!signal.aborted && !this.stopped) {
      const m = this.samples.get(member)?.current(this.now(), 5_000);
      const pr = this.samples.get(primary)?.current(this.now(), 5_000);
      timelines = { member: m?.status === "up" ? m.sample.timeline : 0, primary: pr?.status === "up" ? pr.sample.timeline : -1 };
      if (m?.status === "up" && m.sample.role === "replica" && timelines.member === timelines.primary) break;
      if (this.now() >= until) {
        throw new PgfedError("coordinator.rejoin_timeout", `rejoin of ${who}: re-cloned, but its Postgres was not seen replaying on the primary's timeline within ${budgetMs} ms (member timeline ${timelines.member}, primary ${primary} timeline ${timelines.primary})`, { federation: this.name, member });
      }
      await sleep(200);
    }
    const retarget = await this.retargetArchives(member, data, p, Math.min(RETARGET_TIMEOUT_MS, left()));
    const figures: Record<string, string | number | boolean | null> = { epoch: input.epoch, durationSeconds: (this.now() - t0) / 1000, timeline: timelines.member, ...lastKnown, ...retarget.figures };
    for (const [k, v] of Object.entries(data)) if (v === null || typeof v !== "object") figures[k] = v;
    const text = (k: string): string => {
      const v = figures[k];
      return v === undefined || v === null ? "?" : String(v);
    };
    const kept = typeof data.keptArchive === "string" ? `the old archive stays under server name ${data.keptArchive} (its diverged WAL can be salvaged from there); the new one is ${text("newArchive")}` : "no archive was configured";
    const held =
      typeof data.divergedLsn === "string"
        ? `WAL up to ${data.divergedLsn} on timeline ${text("divergedTimeline")} (its agent's last ${text("divergedLsnRole")} sample at ${text("divergedSampledAt")})`
        : lastKnown.lastKnownLsn !== null
          ? `WAL up to at least ${lastKnown.lastKnownLsn} on timeline ${String(lastKnown.lastKnownTimeline)} (the coordinator's last ${String(lastKnown.lastKnownRole)} sample at ${String(lastKnown.lastKnownSampledAt)}; anything written after it is unknown)`
          : "an unknown WAL position (never sampled)";
    this.audit(
      "rejoin.recloned",
      `${member} re-cloned from ${primary} in ${((this.now() - t0) / 1000).toFixed(1)} s and follows it on timeline ${timelines.member}`,
      `discarded what ${member} held after the fork: ${held}; ${kept}${retarget.sentence}`,
      figures,
      input.operationId,
      member,
      input.epoch,
    );
  }

  /**
   * The rejoined member archives under a fresh server name; every other member's externalClusters
   * entry for it must read there too, or a member following it in archive-only replay would read
   * the old path with the diverged timeline. Ensure-style on each agent, all at once; a member that
   * cannot be reached (its region down) does not fail the rejoin, which is done: it is audited as
   * `rejoin.retarget_failed` with what to change by hand (docs/operations.md).
   */
  private async retargetArchives(
    member: string,
    data: Record<string, JsonValue>,
    p: { epoch: number; operationId: string; signal: AbortSignal },
    timeoutMs: number,
  ): Promise<{ figures: Record<string, string>; sentence: string }> {
    const from = data.keptArchive;
    const to = data.newArchive;
    if (typeof from !== "string" || typeof to !== "string" || from === to) return { figures: {}, sentence: "" };
    const others = this.cfg.members.map((m) => m.name).filter((m) => m !== member);
    const outcomes = await Promise.all(
      others.map(async (other) => {
        try {
          const r = await this.command(other, { kind: "retargetArchive", member, from, to }, { ...p, step: "retargetArchive", timeoutMs });
          return { other, patched: r.patched === true };
        } catch (e) {
          const why = errorMessage(e);
          this.audit(
            "rejoin.retarget_failed",
            `${other}'s externalClusters entry for ${member} may still read archive server ${from}`,
            `${why}; set its archive serverName to ${to} by hand before ${other} follows ${member} (docs/operations.md, rejoin)`,
            { from, to },
            p.operationId,
            other,
            p.epoch,
          );
          this.log.warn({ op: p.operationId, member: other }, `rejoin of ${this.name}/${member}: could not point ${other} at archive server ${to}: ${why}`);
          return { other, failed: why };
        }
      }),
    );
    const patched = outcomes.filter((o) => "patched" in o && o.patched).map((o) => o.other);
    const already = outcomes.filter((o) => "patched" in o && !o.patched).map((o) => o.other);
    const failed = outcomes.filter((o) => "failed" in o).map((o) => o.other);
    const parts = [
      patched.length > 0 ? `${patched.join(", ")} now read${patched.length === 1 ? "s" : ""} ${member}'s archive under ${to}` : "",
      already.length > 0 ? `${already.join(", ")} needed no change` : "",
      failed.length > 0 ? `${failed.join(", ")} could not be changed (see rejoin.retarget_failed)` : "",
    ].filter((x) => x !== "");
    return {
      figures: { retargeted: patched.join(","), retargetUnchanged: already.join(","), retargetFailed: failed.join(",") },
      sentence: parts.length > 0 ? `; ${parts.join("; ")}` : "",
    };
  }

  private preflight(input: PreflightInput): PreflightOutput & { missingEvidence?: boolean } {
    const t = this.observations.get(input.target)?.obs;
    const lag = this.targetLag(input.target);
    const no = (reason: string, missingEvidence = false): PreflightOutput & { missingEvidence?: boolean } => ({ ok: false, targetLagBytes: lag?.bytes ?? 0, targetLagMs: lag?.ms ?? 0, reason, missingEvidence });
    if (!t || !this.observations.has(input.from)) return no(`no observation of ${t ? input.from : input.target} yet`, true);
    if (!t.reachable) return no(`${input.target} is unreachable: ${t.reason ?? "no reason"}`);
    if (t.role !== "replica") return no(`${input.target} is not a replica cluster (role ${t.role})`);
    if (t.fenced) return no(`${input.target} is fenced`);
    if (!t.ready) return no(`${input.target} is not ready (phase ${t.phase})`);
    const f = this.observations.get(input.from)?.obs;
    if (!f?.reachable || f.role !== "primary") return no(`${input.from} is not observed as a reachable primary`);
    // Rule 7: a target that does not follow the primary would never reach its demotion token.
    const st = this.lastEvaluation?.members.find((m) => m.name === input.target);
    const verdict = followingOf({ member: input.target, members: this.cfg.members, observation: (m) => this.observations.get(m)?.obs, primary: input.from, status: st });
    const refusal = followingRefusal({ target: input.target, primary: input.from, verdict, status: st, primaryTimeline: this.lastEvaluation?.primaryTimeline, nowMs: this.now() });
    if (refusal) return no(refusal.reason, refusal.wait);
    if (!lag) return no(`no lag figure for ${input.target} yet (waiting for samples of both members)`, true);
    return { ok: true, targetLagBytes: lag.bytes, targetLagMs: lag.ms };
  }

  targetLag(member: string): { bytes: number; ms: number } | undefined {
    const st = this.lastEvaluation?.members.find((m) => m.name === member);
    const verdict = followingOf({ member, members: this.cfg.members, observation: (m) => this.observations.get(m)?.obs, primary: this.context?.designatedPrimary ?? null, status: st });
    const lag = lossOf(st, verdict);
    if (!lag) return undefined;
    return { bytes: Number(lag.bytes), ms: lag.ms };
  }

  /**
   * Worst-case loss per eligible candidate: last known loss of each replica + time since the
   * primary's last sample. Members not following the primary (following.ts) are left out while any
   * replica follows it; when none does, all are offered with their grown loss for the RPO gate.
   */
  lossCandidates(from: string | null): LossEstimate[] {
    const est = this.lastEstimate;
    if (!est) return [];
    const silence = Math.max(0, this.now() - est.primarySampledAtMs);
    const primary = this.context?.designatedPrimary ?? from;
    const rows = est.replicas
      .filter((r) => r.name !== from)
      .map((r) => {
        const st = this.lastEvaluation?.members.find((m) => m.name === r.name);
        const v = followingOf({ member: r.name, members: this.cfg.members, observation: (m) => this.observations.get(m)?.obs, primary, status: st });
        const loss = !v.following && v.rule === "topology" ? r.lossWithoutArchive : r.lossIfPromoted;
        return { following: v.following, estimate: { target: r.name, worstCaseLossMs: Math.round(loss.ms + silence), lossBytes: Number(loss.bytes) } };
      });
    const following = rows.filter((x) => x.following);
    return (following.length > 0 ? following : rows).map((x) => x.estimate);
  }

  private async readPrimaryLease() {
    return this.opts.leases.read(leaseKeys.primary(this.name));
  }

  /**
   * Rule 3a: the old primary is confirmed down when it is fenced, or its lease expired plus the
   * clock-skew margin. A lapsed lease alone may only mean its agent stopped, so when the
   * coordinator has a client for the primary's region it asks that Kubernetes API first
   * (corroboration.ts): a healthy unfenced primary is not down; a fenced one is confirmed; one that
   * is not healthy is fenced by the coordinator itself and read back fenced. No answer: a lost
   * region, and the lease decides as before.
   */
  private async confirmDown(input: ConfirmPrimaryDownInput, signal: AbortSignal): Promise<ConfirmPrimaryDownOutput> {
    const f = this.cfg.failover;
    const until = this.now() + f.leaseTtl + f.clockSkewMargin + 2_000;
    const target = this.probeTarget(input.member);
    const region = target.region;
    let fenced = false;
    let leaseExpired = false;
    let coordinatorFenced = false;
    let detail = "";
    let how = "";
    let kube: KubeVerdict | undefined;
    while (!signal.aborted && !this.stopped) {
      const o = this.observations.get(input.member);
      fenced = o?.obs.reachable === true && o.obs.fenced && this.now() - o.atMs < f.leaseTtl;
      const lease = await this.readPrimaryLease().catch(() => undefined);
      const nowMs = this.now();
      leaseExpired = lease === undefined || isExpired(lease.lease, nowMs, f.clockSkewMargin);
      detail = lease ? `lease held by ${lease.lease.holder} until ${isoOf(lease.lease.expiresAtMs)} (+${f.clockSkewMargin} ms margin)` : "no primary lease stored";
      if (fenced) {
        how = "fenced";
        break;
      }
      const lapsed = lease === undefined || lease.lease.holder !== `agent:${region}/${input.member}` || isExpired(lease.lease, nowMs);
      if (lapsed && this.corroborator.hasClient(region)) {
        kube = await this.corroborator.read(target);
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
            const r = await this.corroborator.ensureFenced(target, why, signal);
            fenced = true;
            coordinatorFenced = r.patched;
            how = r.patched ? `fenced by the coordinator through ${region}'s Kubernetes API` : `read back fenced through ${region}'s Kubernetes API`;
            detail = `${detail}; ${why}`;
            break;
          } catch (e) {
            // Read but could not fence (e.g. no patch permission): the lease decides, as for a lost region.
            detail = `${detail}; ${why}; fencing it there failed: ${errorMessage(e)}`;
          }
        }
      }
      if (leaseExpired) {
        how = kube ? `lease expired plus margin; ${verdictWords(kube, region)}` : "lease expired plus margin";
        break;
      }
      if (this.now() >= until) break;
      await sleep(100);
    }
    const candidates = this.lossCandidates(input.member);
    const confirmed = fenced || leaseExpired;
    const description = confirmed
      ? `${input.member} confirmed down (${how})`
      : kube?.kind === "healthyPrimary"
        ? `${input.member} not confirmed down: ${verdictWords(kube, region)}`
        : `${input.member} not confirmed down`;
    if (coordinatorFenced) this.log.warn({ epoch: input.epoch, member: input.member, region }, `${this.name}: ${description}; ${detail}`);
    this.audit(
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
        regionSilentSeconds: Math.round(this.regionSilentMs(input.member, this.now())) / 1000,
        ...Object.fromEntries(candidates.map((c) => [`worstCaseLossSeconds.${c.target}`, c.worstCaseLossMs / 1000])),
      },
      input.operationId,
      input.member,
      input.epoch,
    );
    return { fenced, leaseExpired, candidates };
  }

  // ---- the loop: evaluation, detection, estimates ----------------------------------------------

  private async tick(): Promise<void> {
    if (this.ticking || this.stopped) return;
    this.ticking = true;
    try {
      const nowMs = this.now();
      const ctx = this.context;
      if (!ctx) return;
      if (!this.quiet(ctx, nowMs)) this.evaluationPass(ctx, nowMs);
      await this.detect(ctx, nowMs);
      this.repointStragglers(ctx, nowMs);
      const op = ctx.operation;
      if (op?.kind === "failover" && op.step === "awaitApproval" && nowMs - this.lastEstimatesSentAtMs > 10_000) this.refreshEstimates();
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, `evaluation pass of ${this.name} failed: ${errorMessage(e)}`);
    } finally {
      this.ticking = false;
    }
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
  private noticeOtherWriter(member: string, before: Observation | undefined, now: Observation): void {
    const ctx = this.context;
    if (!ctx || !before?.reachable || !now.reachable || before.specPrimary === now.specPrimary || now.specPrimary === undefined) return;
    const manager = now.primaryManager;
    if (manager === undefined || manager === PGFED_FIELD_MANAGER) return;
    // Setting it to the designated primary (an operator undoing a change) agrees with pgfed.
    if (ctx.designatedPrimary !== null && now.specPrimary === this.topologyName(ctx.designatedPrimary)) return;
    const was = before.specPrimary ?? "(unset)";
    const sentence = `spec.replica.primary of ${this.name}/${member} was changed from ${was} to ${now.specPrimary} by field manager "${manager}", not by pgfed; automation paused until an operator resumes it`;
    this.log.warn({ member, manager, before: was, after: now.specPrimary }, sentence);
    this.audit("topology.changed_outside", sentence, "another writer changes the CNPG topology: pgfed does not fight it (docs/operations.md, \"GitOps and other writers\")", { manager, before: was, after: now.specPrimary }, null, member, ctx.epoch);
    this.send({ type: "OUTSIDE_CHANGE", member, manager, sentence });
  }

  /**
   * Level-triggered repair of the topology between operations: a replica that was unreachable
   * during the last change of primary (or a coordinator that crashed between two follow commands)
   * still names the old primary or source; point it at the designated primary once it answers.
   * Not while paused (someone else may be changing the topology on purpose), not during an
   * operation (its own steps do it), one pass in flight, one every REPOINT_EVERY_MS.
   */
  private repointStragglers(ctx: FederationContext, nowMs: number): void {
    const primary = ctx.designatedPrimary;
    if (!primary || ctx.operation !== null || ctx.paused || this.repointing !== undefined || nowMs - this.lastRepointAtMs < REPOINT_EVERY_MS) return;
    const p = this.observations.get(primary)?.obs;
    if (!p?.reachable || p.role !== "primary" || p.fenced || p.switchInProgress) return;
    const skip = new Set([...ctx.diverged, ...ctx.pendingFence, ...(ctx.fencing ? [ctx.fencing] : [])]);
    if (membersToRepoint(this.cfg.members, primary, (m) => this.observations.get(m)?.obs, skip).length === 0) return;
    this.lastRepointAtMs = nowMs;
    const input = { epoch: ctx.epoch, operationId: `repoint-e${ctx.epoch}`, primary, skip: [], step: "repoint", budgetMs: 10_000, signal: this.stopSignal.signal };
    this.repointing = this.ensureFollowers(input)
      .then(() => undefined)
      .catch((e: unknown) => this.log.warn({ err: errorMessage(e) }, `repointing replicas of ${this.name} at ${primary} failed: ${errorMessage(e)}`))
      .finally(() => {
        this.repointing = undefined;
      });
  }

  /** Nothing new since a healthy pass less than QUIET_EVALUATION_MS ago: that pass still stands. */
  private quiet(ctx: FederationContext, nowMs: number): boolean {
    const e = this.evaluated;
    return e !== undefined && e.healthy && e.inputSeq === this.inputSeq && e.ctx === ctx && nowMs - e.atMs < QUIET_EVALUATION_MS;
  }

  /** One evaluation pass: exposure and lag figures, the writable-primaries gauge, alerting. */
  private evaluationPass(ctx: FederationContext, nowMs: number): void {
    const inputSeq = this.inputSeq;
    this.evaluator.setDesignatedPrimary(ctx.designatedPrimary ?? undefined);
    const staleMs = Math.max(3 * this.cfg.sampleInterval, 3_000);
    this.lastEvaluation = this.evaluator.evaluate({
      nowMs,
      members: this.cfg.members.map((m) => ({ spec: { name: m.name, region: m.region, applicationName: m.cluster }, state: (this.samples.get(m.name) as MemberSamples).current(nowMs, staleMs) })),
    });
    if (this.lastEvaluation.estimate) this.lastEstimate = this.lastEvaluation.estimate;
    const writable = this.cfg.members.filter((m) => {
      const o = this.observations.get(m.name)?.obs;
      return o?.reachable === true && o.role === "primary" && !o.fenced;
    });
    this.opts.metrics.primariesWritable.set({ federation: this.name }, writable.length);
    this.opts.onEvaluation?.({
      cfg: this.cfg,
      ctx,
      evaluation: this.lastEvaluation,
      writable: writable.map((m) => m.name),
      kubeUnreachable: this.cfg.members.filter((m) => this.observations.get(m.name)?.obs.reachable === false).map((m) => m.name),
      sampleFailures: new Map(this.cfg.members.map((m) => [m.name, this.samples.get(m.name)?.failures ?? 0])),
      agentsDown: this.agentsDown,
      nowMs,
    });
    const ev = this.lastEvaluation;
    const healthy =
      writable.length === 1 &&
      writable[0]?.name === ctx.designatedPrimary &&
      ctx.operation === null &&
      ctx.alerts.length === 0 &&
      this.agentDown === undefined &&
      ev.budget.level === "ok" &&
      ev.nudge === undefined &&
      ev.members.every((m) => m.status === "up" && m.archive?.failing !== true && m.replica?.stalled !== true);
    this.evaluated = { inputSeq, ctx, atMs: nowMs, healthy };
  }

  refreshEstimates(): void {
    const ctx = this.context;
    if (!ctx?.operation) return;
    this.lastEstimatesSentAtMs = this.now();
    const candidates = this.lossCandidates(ctx.operation.from);
    if (candidates.length > 0) this.send({ type: "LOSS_ESTIMATES", candidates, atMs: this.now() });
  }

  /** How long the primary's region has been silent: no heartbeat from it, no observation of the primary. */
  private regionSilentMs(primary: string, nowMs: number): number {
    const region = this.regionOf(primary);
    const lastHb = Math.max(this.heartbeats.get(region) ?? this.startedAtMs, this.observations.get(primary)?.atMs ?? this.startedAtMs, this.startedAtMs);
    return nowMs - lastHb;
  }

  private probeTarget(member: string): ProbeTarget {
    const m = this.cfg.members.find((x) => x.name === member);
    return { member, region: m?.region ?? "?", ref: { namespace: m?.namespace ?? "", name: m?.cluster ?? member } };
  }

  /** Why the designated primary looks down (corroboration beyond the lease), or undefined. */
  private primaryTrouble(primary: string, nowMs: number): string | undefined {
    const f = this.cfg.failover;
    const region = this.regionOf(primary);
    const silentMs = this.regionSilentMs(primary, nowMs);
    if (silentMs > f.leaseTtl) return `region ${region} silent for ${(silentMs / 1000).toFixed(1)} s (no heartbeat or observation; lease TTL ${f.leaseTtl / 1000} s)`;
    const o = this.observations.get(primary)?.obs;
    if (o && !o.reachable) return `the Kubernetes API of ${region} does not answer for ${primary}: ${o.reason ?? "unreachable"}`;
    const s = this.samples.get(primary);
    if (s && s.failures >= 2) return `Postgres of ${primary} does not answer (${s.failures} failed samples)`;
    return undefined;
  }

  /** The primary's agent and region, if its agent is silent while the primary serves (PgfedAgentDown). */
  get agentsDown(): AgentDown[] {
    return this.agentDown ? [this.agentDown] : [];
  }

  private async detect(ctx: FederationContext, nowMs: number): Promise<void> {
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
    const lease = await this.readPrimaryLease().catch(() => null);
    if (lease === null) return; // the bus cannot tell: decide nothing
    const holder = `agent:${this.regionOf(primary)}/${primary}`;
    const vouched = lease !== undefined && lease.lease.holder === holder && !isExpired(lease.lease, nowMs);
    if (!vouched && trouble !== undefined) {
      // Nobody vouches: ask the primary's own Kubernetes API before suspecting it (its agent may just be gone).
      const kube = this.corroborator.latest(this.probeTarget(primary));
      if (kube === undefined) return; // first answer pending, for at most the probe timeout
      if (kube.kind === "healthyPrimary") {
        this.holdBack(ctx, primary, trouble, kube, nowMs);
        if (confirming) this.send({ type: "PRIMARY_RECOVERED", atMs: nowMs });
        return;
      }
      this.endHoldBack(nowMs, primary);
    }
    if (idle && !vouched && trouble !== undefined && !ctx.paused) {
      const reason = `${trouble}; primary lease ${lease ? `held by ${lease.lease.holder}, expires ${isoOf(lease.lease.expiresAtMs)}` : "not held"}`;
      this.log.warn({ epoch: ctx.epoch }, `primary ${primary} of ${this.name} suspected down: ${reason}`);
      this.send({ type: "PRIMARY_SUSPECT", atMs: nowMs, reason });
    } else if (idle && !vouched && trouble !== undefined && ctx.paused && !ctx.alerts.some((a) => a.name === "PgfedFailoverBlocked")) {
      this.send({ type: "PRIMARY_SUSPECT", atMs: nowMs, reason: trouble });
    } else if (confirming && vouched && trouble === undefined) {
      this.send({ type: "PRIMARY_RECOVERED", atMs: nowMs });
    }
  }

  /** The primary serves per its region's Kubernetes API although nobody vouches for it: no failover; one sentence per episode. */
  private holdBack(ctx: FederationContext, primary: string, trouble: string, kube: KubeVerdict & { kind: "healthyPrimary" }, nowMs: number): void {
    const region = this.regionOf(primary);
    const silentMs = this.regionSilentMs(primary, nowMs);
    const agentSilent = silentMs > this.cfg.failover.leaseTtl;
    if (agentSilent) {
      this.agentDown = { member: primary, region, silentMs, sinceMs: this.agentDown?.sinceMs ?? nowMs - silentMs };
      this.opts.metrics.agentSilentSeconds.set({ federation: this.name, member: primary, region }, silentMs / 1000);
    }
    const key = `${primary}:${agentSilent ? "agent" : "other"}`;
    if (this.heldBack === key) return;
    this.heldBack = key;
    const sentence = agentSilent
      ? `not failing over ${this.name} from ${primary}: agent of ${region} silent ${(silentMs / 1000).toFixed(1)} s, but ${primary} is the healthy unfenced primary per ${region}'s Kubernetes API`
      : `not failing over ${this.name} from ${primary}: ${trouble}, but ${primary} is the healthy unfenced primary per ${region}'s Kubernetes API`;
    this.log.warn({ epoch: ctx.epoch, member: primary, region, silentMs }, sentence);
    this.audit(
      "failover.withheld",
      sentence,
      trouble,
      { epoch: ctx.epoch, regionSilentSeconds: Math.round(silentMs) / 1000, leaseTtlSeconds: this.cfg.failover.leaseTtl / 1000, phase: kube.phase, probeTimeoutMs: this.corroborator.timeoutMs },
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
    this.opts.metrics.agentSilentSeconds.remove({ federation: this.name, member: down.member, region: down.region });
    const heard = primary === down.member && this.regionSilentMs(down.member, nowMs) <= this.cfg.failover.leaseTtl;
    const sentence = heard
      ? `agent of ${down.region} heard again after ${((nowMs - down.sinceMs) / 1000).toFixed(1)} s of silence; ${down.member} of ${this.name} is vouched for by its agent again`
      : `no longer holding back a failover of ${this.name} from ${down.member}: it is no longer the healthy unfenced primary per ${down.region}'s Kubernetes API, or no longer designated`;
    this.log.info({ member: down.member, region: down.region }, sentence);
    this.audit("agent.back", sentence, heard ? "heartbeat or observation received" : "corroboration changed", { silentSeconds: Math.round(nowMs - down.sinceMs) / 1000 }, null, down.member);
  }

  // ---- views -----------------------------------------------------------------------------------

  operation(id: string): OperationRecord | undefined {
    return this.operations.get(id);
  }

  operationByKey(key: string): OperationRecord | undefined {
    return [...this.operations.values()].find((o) => o.idempotencyKey === key);
  }

  recentOperations(kind: OperationRecord["kind"]): OperationRecord[] {
    return [...this.operations.values()].filter((o) => o.kind === kind && o.state === "completed" && o.durationSeconds !== null);
  }

  watch(id: string, fn: (op: OperationView) => void): () => void {
    let set = this.watchers.get(id);
    if (!set) {
      set = new Set();
      this.watchers.set(id, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  private notify(r: OperationRecord): void {
    const view = toOperationView(r);
    for (const fn of this.watchers.get(r.id) ?? []) {
      try {
        fn(view);
      } catch (e) {
        this.log.warn({ err: errorMessage(e) }, `an operation watcher of ${r.id} threw: ${errorMessage(e)}`);
      }
    }
  }

  view(): FederationView | undefined {
    const ctx = this.context;
    if (!ctx) return undefined;
    const ev = this.lastEvaluation;
    const wc = ev?.worstCase;
    const nowMs = this.now();
    const exposure: ExposureView | null = wc
      ? {
          bytes: Number(wc.exposureBytes),
          seconds: (ev.estimate?.exposureMs ?? wc.basedOn.exposureMs) / 1000,
          worstCaseSeconds: wc.exposureMs / 1000,
          level: ev.budget.level,
          safeSource: wc.safeSource.kind === "replica" ? wc.safeSource.name : wc.safeSource.kind,
          sampledAt: isoOf(wc.basedOn.primarySampledAtMs),
        }
      : null;
    const members: MemberView[] = this.cfg.members.map((m) => {
      const seen = this.observations.get(m.name);
      const o = seen?.obs;
      const actor = this.members.get(m.name);
      const snap = actor?.getSnapshot();
      const st = ev?.members.find((x) => x.name === m.name);
      const verdict = followingOf({ member: m.name, members: this.cfg.members, observation: (x) => this.observations.get(x)?.obs, primary: ctx.designatedPrimary, status: st });
      const lag = lossOf(st, verdict);
      const diverged = ctx.diverged.includes(m.name);
      // The agent re-reads every member each heartbeat and publishes changes, so a reachable
      // observation is current as of the region's last heartbeat; an unreachable one is last known
      // from when the member became unreachable.
      const unreachableSince = snap?.context.unreachableSinceMs ?? seen?.atMs;
      const currentAtMs = seen ? (o?.reachable ? Math.max(seen.atMs, this.heartbeats.get(m.region) ?? 0) : unreachableSince) : undefined;
      return {
        name: m.name,
        region: m.region,
        namespace: m.namespace,
        cluster: m.cluster,
        role: o?.role ?? "unknown",
        state: diverged ? "diverged" : typeof snap?.value === "string" ? snap.value : "unknown",
        phase: o?.phase ?? "",
        fenced: o?.fenced ?? false,
        reachable: o?.reachable ?? false,
        diverged,
        lagBytes: lag ? Number(lag.bytes) : null,
        lagSeconds: lag ? lag.ms / 1000 : null,
        lossIfPromotedSeconds: lag ? lag.ms / 1000 : null,
        // Postgres's own (the lag sample's); CNPG's status.timelineID is stale on replica clusters.
        timeline: st?.timeline ?? o?.timelineID ?? null,
        following: verdict.following,
        ...(verdict.following ? {} : { notFollowing: verdict.reason }),
        lastSeenAt: currentAtMs !== undefined ? isoOf(currentAtMs) : null,
        observedAgoSeconds: currentAtMs !== undefined ? Math.max(0, nowMs - currentAtMs) / 1000 : null,
        reason: snap?.context.reason ?? o?.reason ?? null,
      };
    });
    const opRecord = ctx.operation ? this.operations.get(ctx.operation.id) : undefined;
    return {
      name: this.name,
      epoch: ctx.epoch,
      designatedPrimary: ctx.designatedPrimary,
      mode: ctx.failoverMode,
      paused: ctx.paused,
      rpo: { budgetSeconds: ctx.rpo.budgetMs / 1000, warnAt: ctx.rpo.warnAt },
      failover: { leaseTtlSeconds: this.cfg.failover.leaseTtl / 1000, clockSkewMarginSeconds: this.cfg.failover.clockSkewMargin / 1000 },
      exposure,
      members,
      operation: opRecord ? toOperationView(opRecord) : null,
      lastDecision: this.actor ? federationStepSentence(this.actor.getSnapshot()) : ctx.lastDecision,
      alerts: ctx.alerts.map((a) => ({ name: a.name, reason: a.reason })),
      diverged: [...ctx.diverged],
    };
  }
}

export function toOperationView(r: OperationRecord): OperationView {
  return {
    id: r.id,
    federation: r.federation,
    kind: r.kind,
    state: r.state,
    step: r.step,
    target: r.target,
    from: r.from,
    reason: r.reason,
    requestedBy: r.requestedBy,
    automatic: r.automatic,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    epochBefore: r.epochBefore,
    epochAfter: r.epochAfter,
    acceptedLossSeconds: r.acceptedLossSeconds,
    durationSeconds: r.durationSeconds,
    dataLossSeconds: r.dataLossSeconds,
    lastDecision: r.lastDecision,
    steps: r.steps.map((s) => ({ ...s })),
  };
}

export function auditEntryOf(msg: BusMessage): AuditEntry | undefined {
  if (msg.type !== "audit") return undefined;
  return {
    at: msg.at,
    federation: msg.federation,
    member: msg.member ?? null,
    epoch: msg.epoch,
    actor: msg.data.actor,
    action: msg.data.action,
    reason: msg.data.reason,
    description: msg.data.description,
    numbers: { ...msg.data.numbers },
    operationId: msg.data.operationId ?? null,
  };
}
