/**
 * The region agent (DESIGN.md, "Processes"): one per region, for the federation members whose
 * CNPG Clusters live there. It
 *   1. watches the member Clusters and publishes an observation on every change (unchanged ones
 *      are skipped), re-reads every member each heartbeat so an API that stopped answering is
 *      reported as `reachable: false`, and publishes a heartbeat per federation;
 *   2. samples each member's Postgres every sample interval and publishes the lag sample;
 *   3. executes the commands for its members (one durable consumer per member), "ensure"-style,
 *      refusing commands from an older epoch or past their deadline, and answers with a result;
 *   4. holds the federation's primary lease for a member that is the unfenced primary and fences
 *      that primary itself when it can no longer vouch for it (primary-guard.ts);
 *   5. fences a member that is an unfenced primary by its spec while the coordinator's federation
 *      record designates another member (a former primary whose region came back), before it
 *      publishes anything or guards a lease at start, and again after a reconnect, on every record
 *      change and every observation (startup-fence.ts);
 *   6. counts what it does (metrics.ts).
 * Nothing here may crash the process: every async path ends in a catch that logs; stop() is bounded.
 */
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import type { Registry } from "prom-client";
import {
  checkName,
  leaseKeys,
  makeMessage,
  openStateStore,
  subjects,
  type Bus,
  type BusSubscription,
  type CommandResult,
  type DataOf,
  type JsonValue,
  type LagSample,
  type LeaseStore,
  type MessageOf,
  type Observation,
  type StateStore,
  type StateWatch,
  InvalidStateError,
} from "../bus/index.js";
import { clusterRole, isFencedForSure, isFullyFenced, fencePatch, type Cluster } from "../cnpg/index.js";
import type { FederationConfig, MemberConfig, Config } from "../config.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { ClusterWatch, ObjectRef, RegionClient } from "../kube/region.js";
import type { Logger } from "../log.js";
import { createRegistry } from "../metrics.js";
import type { SecretResolver } from "../wal/credentials.js";
import { formatLsn } from "../wal/lsn.js";
import { MemberSampler, targetFromMemberConfig, type MemberSample } from "../wal/sampler.js";
import { describeCommand, planCommand, type ClusterCommand } from "./commands.js";
import { EpochTracker, type EpochMark } from "./epochs.js";
import { LatestPublisher } from "./latest-publisher.js";
import { createAgentMetrics, type AgentMetrics, type CommandOutcome } from "./metrics.js";
import { observeCluster, sameObservation, unknownObservation, unreachableObservation } from "./observation.js";
import { recloneRecordSchema, runReclone, type RecloneOutcome, type RecloneRecord } from "./reclone.js";
import { PrimaryGuard, type FenceOutcome, type FenceReason, type GuardStatus } from "./primary-guard.js";
import { recordKnowledge, specStateOf, sweepVerdict, type RecordKnowledge } from "./startup-fence.js";
import { orFailAfter, withTimeout } from "../timeout.js";

// ---- options and status ------------------------------------------------------------------------

/** The federation settings an agent needs (from FederationConfig). */
export interface AgentFederation {
  name: string;
  leaseTtlMs: number;
  clockSkewMarginMs: number;
  sampleIntervalMs: number;
  /**
   * Member name → its topology name (`spec.replica.self`, the `externalClusters` entry other
   * members name in `spec.replica.primary`). Default: the member name itself.
   */
  topologyNames?: Readonly<Record<string, string>>;
}

export interface AgentMember {
  federation: AgentFederation;
  member: MemberConfig;
}

export interface AgentOptions {
  /** Subject token naming this agent (heartbeats, consumer names): e.g. the region name, or a pod name. */
  agentId: string;
  region: string;
  kube: RegionClient;
  bus: Bus;
  leases: LeaseStore;
  /** Only members in `region`. */
  members: AgentMember[];
  /** Default: Kubernetes secrets read through `kube` (member namespace unless the ref names one). */
  secretResolver?: SecretResolver;
  log: Logger;
  /** Default: a fresh registry (never prom-client's global one). */
  registry?: Registry;
  heartbeatIntervalMs?: number;
  /** Clock for deadlines, message times and samples; leases use the LeaseStore's clock. */
  now?: () => number;
  /**
   * Follow the coordinator's federation record (`pgfed_state`, key `<federation>`): its `epoch`, and
   * its designated primary for the fence sweep (startup-fence.ts). Default true; false also turns
   * the sweep off.
   */
  watchStateEpochs?: boolean;
  /** Bound on one Kubernetes API call (reads, patches). Default max(2 s, heartbeat interval). */
  kubeTimeoutMs?: number;
  /** Start the self-fence when less than this much lease validity remains. Default clockSkewMargin/2. */
  fenceLeadMs?: number;
}

export interface MemberStatus {
  federation: string;
  member: string;
  namespace: string;
  cluster: string;
  observation: Observation | undefined;
  observedAtMs: number | undefined;
  lag: { ok: boolean; sampledAtMs: number; error?: string } | undefined;
  lease: GuardStatus;
  lastCommand: { id: string; kind: string; ok: boolean; sentence: string; atMs: number } | undefined;
}

/** How the fence sweep at start went (startup-fence.ts). */
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

export interface AgentStatus {
  agentId: string;
  region: string;
  startedAtMs: number;
  startupSweep: StartupSweepStatus;
  busConnected: boolean;
  members: MemberStatus[];
  epochs: Record<string, EpochMark>;
  /** Self-fence reports waiting for the bus. */
  pendingReports: number;
}

export interface Agent {
  readonly agentId: string;
  readonly region: string;
  readonly registry: Registry;
  status(): AgentStatus;
  /**
   * Stops everything the agent started (not the bus, the kube client or the lease store). Bounded.
   * A held primary lease is not released: it lapses at its expiry unless a restarted agent (same
   * holder name) renews it first, so a restart does not make a running primary look abandoned.
   */
  stop(): Promise<void>;
}

/** The agent's members for one region from a validated config. */
export function agentMembersFromConfig(cfg: Config, region: string): AgentMember[] {
  const out: AgentMember[] = [];
  for (const f of cfg.federations) {
    const federation = federationSettings(f);
    for (const m of f.members) if (m.region === region) out.push({ federation, member: m });
  }
  return out;
}

export function federationSettings(f: FederationConfig): AgentFederation {
  return {
    name: f.name,
    leaseTtlMs: f.failover.leaseTtl,
    clockSkewMarginMs: f.failover.clockSkewMargin,
    sampleIntervalMs: f.sampleInterval,
    // CNPG's spec.replica.self defaults to metadata.name: the member's cluster name.
    topologyNames: Object.fromEntries(f.members.map((m) => [m.name, m.cluster])),
  };
}

// ---- the agent ---------------------------------------------------------------------------------

const federationRecordSchema = z.looseObject({ epoch: z.number().int().nonnegative() });
const RESULT_CACHE = 256;

interface MemberRuntime {
  fed: AgentFederation;
  cfg: MemberConfig;
  ref: ObjectRef;
  who: string;
  labels: { region: string; federation: string; member: string };
  log: Logger;
  observation: Observation | undefined;
  observedAtMs: number | undefined;
  offered: Observation | undefined;
  /** Counts watch deliveries; a heartbeat read overtaken by one is not used. */
  watchSeq: number;
  observations: LatestPublisher<{ obs: Observation; trigger: "change" | "heartbeat" }>;
  lags: LatestPublisher<LagSample>;
  lag: MemberStatus["lag"];
  sampler: MemberSampler;
  guard: PrimaryGuard;
  /** Serializes writes to the Cluster (commands and self-fencing). */
  lock: Promise<unknown>;
  results: Map<string, MessageOf<"result">>;
  lastCommand: MemberStatus["lastCommand"];
  subscription: BusSubscription | undefined;
  /** A fence sweep of this member in flight (one at a time; it re-reads the Cluster). */
  sweeping: Promise<SweepOutcome> | undefined;
}

/** What the agent reports on the audit stream after fencing a member itself (self-fence or sweep). */
interface FenceReport {
  federation: string;
  member: string;
  /** Audit action: `primary.self_fenced` (lease guard) or `primary.superseded_fenced` (sweep). */
  action: string;
  /** Part of the deterministic audit id. */
  idKind: string;
  from: string;
  reason: string;
  sentence: string;
  numbers: Record<string, number | string | boolean | null>;
  fencedAtMs: number;
}

type SweepTrigger = "start" | "retry" | "reconnect" | "record" | "observation";
type SweepOutcome = { fenced: true; atMs: number; sentence: string } | { fenced: false; why: string; failed?: boolean };

export async function startAgent(opts: AgentOptions): Promise<Agent> {
  const agent = new RegionAgent(opts);
  try {
    await agent.start();
  } catch (e) {
    await agent.stop();
    throw e;
  }
  return agent;
}

class RegionAgent implements Agent {
  readonly agentId: string;
  readonly region: string;
  readonly registry: Registry;
  private readonly source: string;
  private readonly log: Logger;
  private readonly metrics: AgentMetrics;
  private readonly now: () => number;
  private readonly heartbeatIntervalMs: number;
  private readonly kubeTimeoutMs: number;
  private readonly epochs = new EpochTracker();
  private readonly members: MemberRuntime[] = [];
  private readonly byRef = new Map<string, MemberRuntime>();
  private readonly federations: string[];
  private readonly heartbeats = new Map<string, LatestPublisher<DataOf<"heartbeat">>>();
  private readonly watches: ClusterWatch[] = [];
  private readonly stateWatches: StateWatch[] = [];
  private readonly loops: Promise<void>[] = [];
  private readonly stopSignal = new AbortController();
  private readonly reports: FenceReport[] = [];
  /** The coordinator's federation record per federation, as the sweep understands it (absent key: not read yet). */
  private readonly records = new Map<string, RecordKnowledge>();
  private recordStore: StateStore<z.infer<typeof federationRecordSchema>> | undefined;
  private recordWatching = false;
  private sweepRetrying = false;
  private startupSweep: StartupSweepStatus = { state: "pending", fenced: [] };
  private reporting: Promise<void> | undefined;
  private heartbeatRunning = false;
  private unhookReconnect: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  private recloneStore: Promise<StateStore<RecloneRecord>> | undefined;
  readonly startedAtMs: number;

  constructor(private readonly opts: AgentOptions) {
    this.agentId = checkName("agent id", opts.agentId);
    this.region = checkName("region", opts.region);
    this.source = `agent:${opts.region}`;
    this.log = opts.log.child({ component: "agent", region: opts.region, agentId: opts.agentId });
    this.registry = opts.registry ?? createRegistry();
    this.metrics = createAgentMetrics(this.registry);
    this.now = opts.now ?? Date.now;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 2_000;
    this.kubeTimeoutMs = opts.kubeTimeoutMs ?? Math.max(2_000, this.heartbeatIntervalMs);
    this.startedAtMs = this.now();
    if (!(this.heartbeatIntervalMs > 0)) throw new PgfedError("agent.bad_options", `heartbeatIntervalMs must be positive, not ${this.heartbeatIntervalMs}`);
    const seen = new Set<string>();
    for (const { federation: fed, member: m } of opts.members) {
      const who = `${fed.name}/${m.name}`;
      if (m.region !== opts.region) throw new PgfedError("agent.bad_options", `member ${who} is in region ${m.region}, not in ${opts.region} where this agent runs`);
      checkName("federation", fed.name);
      checkName("member", m.name);
      if (seen.has(who)) throw new PgfedError("agent.bad_options", `member ${who} is listed twice`);
      seen.add(who);
      if (!(fed.leaseTtlMs > 0 && fed.clockSkewMarginMs >= 0 && fed.sampleIntervalMs > 0)) {
        throw new PgfedError("agent.bad_options", `federation ${fed.name}: leaseTtlMs, sampleIntervalMs must be positive and clockSkewMarginMs not negative`);
      }
      this.members.push(this.memberRuntime(fed, m));
    }
    this.federations = [...new Set(opts.members.map((m) => m.federation.name))];
    for (const rt of this.members) this.byRef.set(refKey(rt.ref), rt);
  }

  private memberRuntime(fed: AgentFederation, m: MemberConfig): MemberRuntime {
    const who = `${fed.name}/${m.name}`;
    const labels = { region: this.region, federation: fed.name, member: m.name };
    const log = this.log.child({ federation: fed.name, member: m.name });
    const resolver: SecretResolver = this.opts.secretResolver ?? {
      readSecretKey: async (ref) => {
        try {
          return await this.withKubeTimeout(this.opts.kube.readSecretKey({ namespace: ref.namespace ?? m.namespace, name: ref.name }, ref.key), `reading Secret ${ref.namespace ?? m.namespace}/${ref.name}`);
        } catch (e) {
          this.metrics.kubeErrors.inc({ region: this.region, operation: "secret" });
          throw e;
        }
      },
    };
    const sampler = new MemberSampler(targetFromMemberConfig(fed.name, m), { resolver, log, now: this.now });
    // The guard's callbacks run only after `rt` exists.
    const guard = new PrimaryGuard({
      federation: fed.name,
      member: m.name,
      who,
      key: leaseKeys.primary(fed.name),
      holder: `${this.source}/${m.name}`,
      leaseTtlMs: fed.leaseTtlMs,
      clockSkewMarginMs: fed.clockSkewMarginMs,
      ...(this.opts.fenceLeadMs !== undefined ? { fenceLeadMs: this.opts.fenceLeadMs } : {}),
      leases: this.opts.leases,
      log,
      fence: (reason) => this.selfFence(rt, reason),
      onFenced: (report) => {
        this.reports.push({ ...report, from: report.holder, action: "primary.self_fenced", idKind: "self-fence" });
        this.flushReports();
      },
      onHeld: (held) => this.metrics.leaseHeld.set(labels, held ? 1 : 0),
    });
    const rt: MemberRuntime = {
      fed,
      cfg: m,
      ref: { namespace: m.namespace, name: m.cluster },
      who,
      labels,
      log,
      observation: undefined,
      observedAtMs: undefined,
      offered: undefined,
      watchSeq: 0,
      observations: new LatestPublisher(
        ({ obs, trigger }) => this.publishObservation(rt, obs, trigger),
        (e) => this.publishFailed("observation", `observation of ${who}`, e),
      ),
      lags: new LatestPublisher(
        (sample) => this.publishLag(rt, sample),
        (e) => this.publishFailed("lag", `lag sample of ${who}`, e),
      ),
      lag: undefined,
      sampler,
      guard,
      lock: Promise.resolve(),
      results: new Map(),
      lastCommand: undefined,
      subscription: undefined,
      sweeping: undefined,
    };
    return rt;
  }

  // ---- lifecycle -------------------------------------------------------------------------------

  async start(): Promise<void> {
    this.unhookReconnect = this.opts.bus.onReconnect(() => this.afterReconnect());
    // Before any observation is published or any lease guarded: a former primary whose region came
    // back must be fenced before CNPG (which cannot fence it, CNPG.md) lets it take writes.
    await this.sweepAtStart();
    if (this.opts.watchStateEpochs !== false) await this.watchEpochs();
    for (const rt of this.members) rt.subscription = await this.subscribeCommands(rt);
    for (const ns of new Set(this.members.map((m) => m.ref.namespace))) this.watchNamespace(ns);
    this.loops.push(this.heartbeatLoop());
    for (const rt of this.members) this.loops.push(this.sampleLoop(rt));
    const names = this.members.map((m) => m.who).join(", ");
    this.log.info({ members: this.members.length }, `agent ${this.agentId} serves ${names || "no members"} in region ${this.region}`);
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const t0 = Date.now();
    this.stopSignal.abort();
    this.unhookReconnect?.();
    const bound = (what: string, p: Promise<unknown>, ms = 5_000) =>
      withTimeout(p, ms).then((done) => {
        if (done === undefined) this.log.warn(`stopping the agent: ${what} did not finish within ${ms} ms; going on`);
      });
    await Promise.all([
      bound("the Cluster watches", Promise.all(this.watches.map((w) => w.stop().catch(() => undefined)))),
      bound("the command consumers", Promise.all(this.members.map((m) => (m.subscription ? m.subscription.stop().catch(() => undefined) : Promise.resolve())))),
      bound("the state watches", Promise.all(this.stateWatches.map((w) => w.stop().catch(() => undefined)))),
      bound("the primary guards (the lease is left to lapse, or to a restarted agent)", Promise.all(this.members.map((m) => m.guard.stop().catch(() => undefined)))),
    ]);
    await bound("the loops", Promise.all(this.loops), 3_000);
    await bound("the samplers", Promise.all(this.members.map((m) => m.sampler.close().catch(() => undefined))), 3_000);
    await bound(
      "pending publishes",
      Promise.all(this.members.flatMap((m) => [m.observations.idle(), m.lags.idle()]).concat([...this.heartbeats.values()].map((h) => h.idle()))),
      2_000,
    );
    this.log.info(`agent ${this.agentId} stopped in ${Date.now() - t0} ms`);
  }

  private get stopped(): boolean {
    return this.stopSignal.signal.aborted;
  }

  status(): AgentStatus {
    return {
      agentId: this.agentId,
      region: this.region,
      startedAtMs: this.startedAtMs,
      busConnected: this.opts.bus.connected,
      members: this.members.map((rt) => ({
        federation: rt.fed.name,
        member: rt.cfg.name,
        namespace: rt.ref.namespace,
        cluster: rt.ref.name,
        observation: rt.observation,
        observedAtMs: rt.observedAtMs,
        lag: rt.lag,
        lease: rt.guard.status(),
        lastCommand: rt.lastCommand,
      })),
      startupSweep: { ...this.startupSweep, fenced: [...this.startupSweep.fenced] },
      epochs: this.epochs.snapshot(),
      pendingReports: this.reports.length,
    };
  }

  private async afterReconnect(): Promise<void> {
    if (this.stopped) return;
    // The record may have moved on while we were cut off (a failover): judge the members again
    // before re-publishing what we see.
    if (this.opts.watchStateEpochs !== false && (await this.readRecords()).ok) {
      if (!this.recordWatching) await this.watchEpochs();
      await this.sweepMembers("reconnect");
    }
    // Whatever was lost while disconnected is re-derived: current observations, then reports.
    for (const rt of this.members) if (rt.observation) this.offerObservation(rt, rt.observation, "heartbeat");
    this.flushReports();
  }

  // ---- epochs from the coordinator's federation record -------------------------------------------

  private async watchEpochs(): Promise<void> {
    const watches: StateWatch[] = [];
    try {
      const store = await this.stateStore();
      for (const fed of this.federations) {
        const w = await store.watch(
          (change) => {
            if (change.kind === "put") this.noteRecord(fed, recordKnowledge(change.value, change.revision), change.value.epoch);
            else if (change.kind === "delete") this.noteRecord(fed, { kind: "absent" });
            else this.noteRecord(fed, { kind: "invalid", revision: change.revision, problem: change.error.message });
            // A record naming another primary may have just arrived: judge again the members seen
            // as unfenced primaries it supersedes, and those not observed yet (no I/O for the others).
            for (const rt of this.members) {
              if (rt.fed.name === fed && (!rt.observation || this.looksSuperseded(rt, rt.observation))) void this.ensureNotSuperseded(rt, "record");
            }
          },
          { key: fed },
        );
        watches.push(w);
      }
      this.stateWatches.push(...watches);
      this.recordWatching = true;
    } catch (e) {
      await Promise.all(watches.map((w) => w.stop().catch(() => undefined)));
      this.log.warn({ err: errorMessage(e) }, `not following the federation records in the KV state yet (commands still raise epochs; retried with the fence sweep): ${errorMessage(e)}`);
    }
  }

  private async stateStore(): Promise<StateStore<z.infer<typeof federationRecordSchema>>> {
    this.recordStore ??= await this.bounded(openStateStore(this.opts.bus, federationRecordSchema, { scope: "*" }), "opening the KV state bucket", "bus.kv_failed");
    return this.recordStore;
  }

  /** Raises the epoch from a record and keeps what the sweep needs of it; says when it becomes unusable. */
  private noteRecord(fed: string, k: RecordKnowledge, epoch?: number): void {
    if (epoch !== undefined && k.kind !== "absent" && this.epochs.note(fed, epoch, "state", `revision ${k.revision}`)) {
      this.log.info({ federation: fed, epoch }, `${fed} is at epoch ${epoch} per the coordinator's record (revision ${k.revision})`);
    }
    const before = this.records.get(fed);
    // A read that raced with a newer watch delivery must not put an older record back.
    if (k.kind !== "absent" && before !== undefined && before.kind !== "absent" && k.revision < before.revision) return;
    this.records.set(fed, k);
    if (k.kind === "invalid" && before?.kind !== "invalid") {
      this.log.warn({ federation: fed }, `the federation record of ${fed} is not usable (revision ${k.revision}): ${k.problem}; no member is fenced on its account`);
    }
  }

  /** One read of every federation record; ok when KV answered for all (an invalid value is an answer). */
  private async readRecords(): Promise<{ ok: true } | { ok: false; error: string }> {
    try {
      const store = await this.stateStore();
      for (const fed of this.federations) {
        try {
          const entry = await this.bounded(store.get(fed), `reading the federation record of ${fed}`, "bus.kv_failed");
          if (entry) this.noteRecord(fed, recordKnowledge(entry.value, entry.revision), entry.value.epoch);
          else this.noteRecord(fed, { kind: "absent" });
        } catch (e) {
          if (!(e instanceof InvalidStateError)) throw e;
          this.noteRecord(fed, { kind: "invalid", revision: e.revision, problem: e.message });
        }
      }
      return { ok: true };
    } catch (e) {
      return { ok: false, error: errorMessage(e) };
    }
  }

  // ---- the fence sweep (startup-fence.ts) --------------------------------------------------------

  /** Reads the records and judges every member once; when KV does not answer, retries in the background. */
  private async sweepAtStart(): Promise<void> {
    if (this.opts.watchStateEpochs === false || this.members.length === 0) {
      this.startupSweep = { state: "done", durationMs: 0, fenced: [] };
      return;
    }
    const t0 = performance.now();
    const read = await this.readRecords();
    const kvReadMs = round1(performance.now() - t0);
    if (!read.ok) {
      this.startupSweep = { state: "waiting", kvReadMs, fenced: [], reason: read.error };
      this.log.warn(
        { kvReadMs },
        `fence sweep at start: cannot read the federation records (${read.error}); fencing nothing on a guess, retrying with backoff; the primary-lease guards keep their rules meanwhile`,
      );
      this.retrySweep();
      return;
    }
    await this.finishStartSweep(t0, kvReadMs, "start");
  }

  private async finishStartSweep(t0: number, kvReadMs: number, trigger: SweepTrigger): Promise<void> {
    const outcomes = await this.sweepMembers(trigger);
    const fenced = outcomes.filter((o) => o.outcome.fenced).map((o) => o.rt.who);
    const durationMs = round1(performance.now() - t0);
    this.startupSweep = { state: "done", durationMs, kvReadMs, fenced, completedAtMs: this.now() };
    const judged = outcomes.map(({ rt, outcome }) => (outcome.fenced ? `${rt.who} fenced` : `${rt.who} left alone (${outcome.why})`)).join("; ");
    this.log.info({ durationMs, kvReadMs, fenced }, `fence sweep at ${trigger} done in ${durationMs} ms (KV read ${kvReadMs} ms): ${judged || "no members"}`);
  }

  /** Retries the record read with a bounded backoff until KV answers, then sweeps once. */
  private retrySweep(): void {
    if (this.sweepRetrying || this.stopped) return;
    this.sweepRetrying = true;
    const t0 = performance.now();
    this.loops.push(
      (async () => {
        let delayMs = 250;
        for (let attempt = 1; !this.stopped; attempt++) {
          await sleep(delayMs, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
          if (this.stopped) return;
          const kv0 = performance.now();
          const read = await this.readRecords();
          if (read.ok) {
            if (!this.recordWatching) await this.watchEpochs();
            await this.finishStartSweep(t0, round1(performance.now() - kv0), "retry");
            return;
          }
          this.startupSweep = { ...this.startupSweep, reason: read.error };
          this.log.warn({ attempt }, `fence sweep: still cannot read the federation records (${read.error}); retrying in ${Math.min(delayMs * 2, 5_000)} ms`);
          delayMs = Math.min(delayMs * 2, 5_000);
        }
      })()
        .catch((e: unknown) => this.log.error({ err: errorMessage(e) }, `the fence sweep retry failed: ${errorMessage(e)}`))
        .finally(() => {
          this.sweepRetrying = false;
        }),
    );
  }

  /** Judges every member (of one federation, or all) against its record; fences the superseded ones. */
  private async sweepMembers(trigger: SweepTrigger, federation?: string): Promise<{ rt: MemberRuntime; outcome: SweepOutcome }[]> {
    const members = this.members.filter((rt) => federation === undefined || rt.fed.name === federation);
    return Promise.all(members.map(async (rt) => ({ rt, outcome: await this.ensureNotSuperseded(rt, trigger) })));
  }

  /** True when the observation shows an unfenced primary that the known record says is superseded (no I/O). */
  private looksSuperseded(rt: MemberRuntime, obs: Observation): boolean {
    if (this.opts.watchStateEpochs === false || !obs.reachable || obs.role !== "primary" || obs.fenced) return false;
    return sweepVerdict({ federation: rt.fed.name, member: rt.cfg.name, spec: { primary: true, fullyFenced: false }, knowledge: this.records.get(rt.fed.name), newestEpochSeen: this.epochs.get(rt.fed.name)?.epoch }).fence;
  }

  /**
   * Ensures a member the record says is superseded is fenced: reads the Cluster, judges it
   * (startup-fence.ts), patches the fence once. Serialized with the member's other writes.
   */
  private ensureNotSuperseded(rt: MemberRuntime, trigger: SweepTrigger): Promise<SweepOutcome> {
    if (rt.sweeping) return rt.sweeping;
    const t0 = performance.now();
    const run = this.serialized(rt, async (): Promise<SweepOutcome> => {
      const c = await this.withKubeTimeout(this.opts.kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name} for the fence sweep`);
      const fed = rt.fed.name;
      const verdict = sweepVerdict({ federation: fed, member: rt.cfg.name, spec: specStateOf(c), knowledge: this.records.get(fed), newestEpochSeen: this.epochs.get(fed)?.epoch });
      if (!verdict.fence) return { fenced: false, why: verdict.why };
      // Never guard the lease of a member being fenced as a former primary.
      rt.guard.setWanted(false);
      const atMs = await this.patchFence(rt, `fence sweep (${trigger}) of ${rt.who}:`, "superseded");
      const sweepMs = round1(performance.now() - t0);
      const sentence = `fenced ${rt.who} through the local Kubernetes API (${trigger} sweep, ${sweepMs} ms from reading it to the fence accepted): ${verdict.sentence}`;
      const numbers = { ...verdict.numbers, sweepMs, fencedAtMs: atMs, agentStartedAtMs: this.startedAtMs, sinceAgentStartMs: atMs - this.startedAtMs, trigger };
      rt.log.warn(numbers, sentence);
      this.reports.push({ federation: fed, member: rt.cfg.name, action: "primary.superseded_fenced", idKind: "superseded-fence", from: this.source, reason: verdict.sentence, sentence, numbers, fencedAtMs: atMs });
      this.flushReports();
      return { fenced: true, atMs, sentence };
    })
      .catch((e: unknown): SweepOutcome => {
        const why = `could not judge or fence ${rt.who} (${trigger} sweep): ${errorMessage(e)}`;
        rt.log.warn({ err: errorMessage(e) }, `${why}; judged again on the next observation`);
        return { fenced: false, why, failed: true };
      })
      .finally(() => {
        rt.sweeping = undefined;
      });
    rt.sweeping = run;
    return run;
  }

  // ---- observations ----------------------------------------------------------------------------

  private watchNamespace(namespace: string): void {
    const watch = this.opts.kube.watchClusters(namespace, {
      onChange: (ref, result) => {
        const rt = this.byRef.get(refKey(ref));
        if (!rt || this.stopped) return;
        const obs = result.ok ? observeCluster(result.cluster) : unknownObservation(result.reason);
        rt.watchSeq++;
        this.observe(rt, obs, "change");
      },
      onDelete: (ref) => {
        const rt = this.byRef.get(refKey(ref));
        if (!rt || this.stopped) return;
        rt.watchSeq++;
        this.observe(rt, unknownObservation(`Cluster ${ref.namespace}/${ref.name} was deleted from region ${this.region}`), "change", { gone: true });
      },
      onError: (err) => {
        this.metrics.kubeErrors.inc({ region: this.region, operation: "watch" });
        this.log.debug({ err: err.message }, `watching Clusters in ${namespace}: ${err.message}`);
      },
    });
    watch.start();
    this.watches.push(watch);
  }

  /** Records what was seen, steers the primary guard, and publishes when it changed (or on a heartbeat). */
  private observe(rt: MemberRuntime, obs: Observation, trigger: "change" | "heartbeat", opts: { gone?: boolean } = {}): void {
    rt.observation = obs;
    rt.observedAtMs = this.now();
    // A primary the coordinator's record says is superseded is fenced, not guarded (startup-fence.ts).
    const superseded = this.looksSuperseded(rt, obs);
    // Only a definite answer steers the lease: unreachable or unreadable keeps what was decided.
    if (opts.gone) rt.guard.setWanted(false);
    else if (obs.reachable && obs.role !== "unknown") rt.guard.setWanted(obs.role === "primary" && !obs.fenced && !superseded);
    if (superseded) void this.ensureNotSuperseded(rt, "observation");
    this.offerObservation(rt, obs, trigger);
  }

  private offerObservation(rt: MemberRuntime, obs: Observation, trigger: "change" | "heartbeat"): void {
    if (trigger === "change" && sameObservation(obs, rt.offered)) {
      this.metrics.observationsSkipped.inc(rt.labels);
      return;
    }
    rt.offered = obs;
    rt.observations.offer({ obs, trigger });
  }

  private async publishObservation(rt: MemberRuntime, obs: Observation, trigger: "change" | "heartbeat"): Promise<void> {
    const msg = makeMessage("observation", { federation: rt.fed.name, member: rt.cfg.name, epoch: this.epochs.current(rt.fed.name), source: this.source, data: obs, at: new Date(this.now()) });
    await this.opts.bus.publish(msg);
    this.metrics.observations.inc({ ...rt.labels, trigger });
  }

  /** One Cluster read for the heartbeat: a Cluster, an object pgfed does not understand, or no answer. */
  private async readMember(rt: MemberRuntime): Promise<void> {
    let obs: Observation;
    let gone = false;
    const seq = rt.watchSeq;
    try {
      const c = await this.withKubeTimeout(this.opts.kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name}`);
      obs = observeCluster(c);
    } catch (e) {
      const code = e instanceof PgfedError ? e.code : "kube.unreachable";
      if (code === "cnpg.invalid_cluster") obs = unknownObservation(errorMessage(e));
      else if (code === "kube.not_found") {
        obs = unknownObservation(`Cluster ${rt.ref.namespace}/${rt.ref.name} does not exist in region ${this.region}`);
        gone = true;
      } else {
        this.metrics.kubeErrors.inc({ region: this.region, operation: "read" });
        if (rt.observation?.reachable !== false) rt.log.warn({ code }, `cannot read ${rt.who} from the Kubernetes API of ${this.region}: ${errorMessage(e)}`);
        obs = unreachableObservation(rt.observation, errorMessage(e));
      }
    }
    if (rt.watchSeq !== seq && rt.observation) {
      // A watch event arrived while this read was in flight: it is at least as new as the read,
      // which may describe the object from before the event. Re-publish what the watch said.
      this.offerObservation(rt, rt.observation, "heartbeat");
      return;
    }
    if (rt.observation?.reachable === false && obs.reachable) rt.log.info(`the Kubernetes API of ${this.region} answers again for ${rt.who}`);
    this.observe(rt, obs, "heartbeat", { gone });
  }

  private async heartbeatLoop(): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      try {
        await this.heartbeat();
      } catch (e) {
        this.log.error({ err: errorMessage(e) }, `heartbeat pass failed: ${errorMessage(e)}`);
      }
      const wait = Math.max(0, this.heartbeatIntervalMs - (Date.now() - started));
      await sleep(wait, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
    }
  }

  private async heartbeat(): Promise<void> {
    if (this.heartbeatRunning) return;
    this.heartbeatRunning = true;
    try {
      await Promise.all(this.members.map((rt) => this.readMember(rt)));
      if (this.stopped) return;
      for (const fed of this.federations) {
        let pub = this.heartbeats.get(fed);
        if (!pub) {
          pub = new LatestPublisher(
            async (data) => {
              await this.opts.bus.publish(makeMessage("heartbeat", { federation: fed, epoch: this.epochs.current(fed), source: this.source, data, at: new Date(this.now()) }));
              this.metrics.heartbeats.inc({ region: this.region, federation: fed });
            },
            (e) => this.publishFailed("heartbeat", `heartbeat for ${fed}`, e),
          );
          this.heartbeats.set(fed, pub);
        }
        pub.offer({ region: this.region, agentId: this.agentId, members: this.members.filter((m) => m.fed.name === fed).map((m) => m.cfg.name) });
      }
      this.flushReports();
    } finally {
      this.heartbeatRunning = false;
    }
  }

  // ---- lag -------------------------------------------------------------------------------------

  private async sampleLoop(rt: MemberRuntime): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      try {
        const outcome = await rt.sampler.sample();
        if (this.stopped) break;
        const sample: LagSample = outcome.ok
          ? lagFromSample(outcome.sample)
          : { role: "unknown", inRecovery: false, sampledAtMs: this.now(), error: clip(outcome.error.message, 2_048) };
        rt.lag = { ok: outcome.ok, sampledAtMs: sample.sampledAtMs, ...(sample.error ? { error: sample.error } : {}) };
        rt.lags.offer(sample);
      } catch (e) {
        rt.log.error({ err: errorMessage(e) }, `sampling ${rt.who} failed unexpectedly: ${errorMessage(e)}`);
      }
      const wait = Math.max(0, rt.fed.sampleIntervalMs - (Date.now() - started));
      await sleep(wait, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
    }
  }

  private async publishLag(rt: MemberRuntime, sample: LagSample): Promise<void> {
    await this.opts.bus.publish(makeMessage("lag", { federation: rt.fed.name, member: rt.cfg.name, epoch: this.epochs.current(rt.fed.name), source: this.source, data: sample, at: new Date(this.now()) }));
    this.metrics.lagSamples.inc({ ...rt.labels, outcome: sample.error ? "error" : "ok" });
  }

  // ---- commands --------------------------------------------------------------------------------

  private async subscribeCommands(rt: MemberRuntime): Promise<BusSubscription> {
    return this.opts.bus.subscribe(
      subjects.cmd(rt.fed.name, rt.cfg.name),
      async (msg) => {
        if (msg.type !== "command") return;
        await this.handleCommand(rt, msg);
      },
      // deliverNew: a brand-new agent does not act on commands older than itself (their deadlines
      // have passed anyway); a restarted one resumes where its durable consumer left off.
      { durable: consumerName(this.agentId, rt.fed.name, rt.cfg.name), deliverNew: true },
    );
  }

  /** Throws only when the result could not be published: the bus then redelivers the command. */
  private async handleCommand(rt: MemberRuntime, msg: MessageOf<"command">): Promise<void> {
    const t0 = performance.now();
    const cmd = msg.data;
    const what = describeCommand(cmd);
    const fed = rt.fed.name;
    const cached = rt.results.get(msg.id);
    if (cached) {
      rt.log.info({ commandId: msg.id }, `command ${msg.id} (${what} of ${rt.who}) was already answered; publishing the same result again`);
      await this.opts.bus.publish(cached);
      return;
    }
    rt.log.info({ commandId: msg.id, epoch: msg.epoch, operationId: cmd.operationId }, `received ${what} for ${rt.who} at epoch ${msg.epoch} (operation ${cmd.operationId}, command ${msg.id})`);

    let outcome: { ok: true; sentence: string; data: Record<string, JsonValue> } | { ok: false; refused: boolean; code: string; message: string };
    const verdict = this.epochs.check(fed, msg.epoch);
    this.epochs.note(fed, msg.epoch, "command", msg.id);
    const deadlineMs = Date.parse(cmd.deadlineAt);
    const nowMs = this.now();
    if (!verdict.ok) {
      const n = verdict.newest;
      outcome = {
        ok: false,
        refused: true,
        code: "agent.stale_epoch",
        message: `refusing ${what} of ${rt.who}: it carries epoch ${msg.epoch}, older than epoch ${n.epoch} already seen for ${fed} (from ${n.source === "command" ? `command ${n.by}` : `the coordinator's record, ${n.by}`})`,
      };
    } else if (!(deadlineMs > nowMs)) {
      outcome = { ok: false, refused: true, code: "agent.deadline_expired", message: `refusing ${what} of ${rt.who}: its deadline ${cmd.deadlineAt} passed ${nowMs - deadlineMs} ms ago` };
    } else {
      outcome = await this.serialized(rt, () => this.execute(rt, msg));
    }

    const result: CommandResult = outcome.ok
      ? { commandId: msg.id, ok: true, data: outcome.data }
      : { commandId: msg.id, ok: false, error: { code: outcome.code, message: clip(outcome.message, 4_096) } };
    const kindResult: CommandOutcome = outcome.ok ? "ok" : outcome.refused ? "refused" : "failed";
    this.metrics.commands.inc({ ...rt.labels, kind: cmd.kind, result: kindResult });
    const sentence = outcome.ok ? outcome.sentence : outcome.message;
    if (outcome.ok) rt.log.info({ commandId: msg.id, result: kindResult, data: outcome.data }, sentence);
    else rt.log.warn({ commandId: msg.id, result: kindResult, code: outcome.code }, sentence);
    rt.lastCommand = { id: msg.id, kind: cmd.kind, ok: outcome.ok, sentence, atMs: this.now() };

    const envelope = makeMessage("result", { federation: fed, member: rt.cfg.name, epoch: msg.epoch, source: this.source, id: resultId(msg.id), data: result, at: new Date(this.now()) });
    rt.results.set(msg.id, envelope);
    if (rt.results.size > RESULT_CACHE) {
      const oldest = rt.results.keys().next();
      if (!oldest.done) rt.results.delete(oldest.value);
    }
    await this.opts.bus.publish(envelope);
    this.metrics.commandSeconds.observe({ region: this.region, kind: cmd.kind }, (performance.now() - t0) / 1_000);
  }

  private async execute(
    rt: MemberRuntime,
    msg: MessageOf<"command">,
  ): Promise<{ ok: true; sentence: string; data: Record<string, JsonValue> } | { ok: false; refused: boolean; code: string; message: string }> {
    const cmd = msg.data;
    const doing = `while executing ${describeCommand(cmd)} of ${rt.who}`;
    if (cmd.kind === "walSwitch") {
      try {
        const { switchLsn } = await rt.sampler.switchWal();
        return { ok: true, sentence: `switched WAL on ${rt.who} at ${formatLsn(switchLsn)} so the archiver ships the partial segment`, data: { patched: false, switchLsn: formatLsn(switchLsn) } };
      } catch (e) {
        return { ok: false, refused: false, code: e instanceof PgfedError ? e.code : "wal.switch_failed", message: `${doing}: ${errorMessage(e)}` };
      }
    }
    if (cmd.kind === "reclone") return this.reclone(rt, msg.epoch, cmd.primary, Date.parse(cmd.deadlineAt));
    const ccmd: ClusterCommand = cmd;
    const ctx = { who: rt.who, topologyName: (member: string) => rt.fed.topologyNames?.[member] ?? member };
    let cluster: Cluster;
    try {
      cluster = await this.withKubeTimeout(this.opts.kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name}`);
    } catch (e) {
      return this.kubeFailure(e, doing, "read");
    }
    const plan = planCommand(cluster, ccmd, ctx);
    if (plan.action === "refuse") return { ok: false, refused: true, code: plan.code, message: plan.message };
    if (plan.action === "none") return { ok: true, sentence: plan.sentence, data: resultData(cluster, false) };
    let after: Cluster;
    try {
      after = await this.withKubeTimeout(this.opts.kube.patchCluster(rt.ref, plan.patch, `${describeCommand(cmd)} of ${rt.who}: patching`), `patching Cluster ${rt.ref.namespace}/${rt.ref.name}`);
    } catch (e) {
      return this.kubeFailure(e, doing, "patch");
    }
    // Not observed from here: the watch delivers this object in order with the others.
    const check = planCommand(after, ccmd, ctx);
    if (check.action !== "none") {
      return { ok: false, refused: false, code: "agent.patch_not_effective", message: `${doing}: the patch was accepted but the Cluster still does not match (${check.action === "refuse" ? check.message : check.sentence})` };
    }
    return { ok: true, sentence: plan.sentence, data: resultData(after, true) };
  }

  /** Rejoin of a diverged member: as many re-clone steps as fit before the command's deadline (reclone.ts). */
  private reclone(rt: MemberRuntime, epoch: number, primaryMember: string, deadlineMs: number): Promise<RecloneOutcome> {
    return runReclone({
      who: rt.who,
      federation: rt.fed.name,
      member: rt.cfg.name,
      ref: rt.ref,
      epoch,
      primary: rt.fed.topologyNames?.[primaryMember] ?? primaryMember,
      primaryMember,
      // Answer before the coordinator stops waiting for this attempt (it then repeats the command).
      answerByMs: deadlineMs - Math.min(1_000, Math.max(0, (deadlineMs - this.now()) / 5)),
      kube: this.opts.kube,
      kubeCall: (p, doing) => this.withKubeTimeout(p, doing),
      store: () => (this.recloneStore ??= openStateStore(this.opts.bus, recloneRecordSchema, { scope: "*.reclone.*" }).catch((e: unknown) => {
        this.recloneStore = undefined;
        throw e;
      })),
      lastSample: () => rt.sampler.lastSample,
      log: rt.log,
    });
  }

  private kubeFailure(e: unknown, doing: string, operation: "read" | "patch"): { ok: false; refused: boolean; code: string; message: string } {
    const code = e instanceof PgfedError ? e.code : "kube.unreachable";
    if (code !== "cnpg.invalid_cluster") this.metrics.kubeErrors.inc({ region: this.region, operation });
    return { ok: false, refused: false, code, message: `${doing}: ${errorMessage(e)}` };
  }

  /** Runs `fn` after every earlier write to this member's Cluster has finished. */
  private serialized<T>(rt: MemberRuntime, fn: () => Promise<T>): Promise<T> {
    const run = rt.lock.then(fn, fn);
    rt.lock = run.catch(() => undefined);
    return run;
  }

  // ---- self-fencing ----------------------------------------------------------------------------

  /** Ensures the member is fenced (all instances) through the local Kubernetes API. */
  private selfFence(rt: MemberRuntime, reason: FenceReason): Promise<FenceOutcome> {
    return this.serialized(rt, async () => {
      const c = await this.withKubeTimeout(this.opts.kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name} to fence it`);
      if (isFencedForSure(c)) return { patched: false, atMs: this.now() };
      if (clusterRole(c) !== "primary") return { patched: false, atMs: this.now(), note: `${rt.who} is no longer the primary cluster (spec.replica.primary is ${c.spec.replica?.primary ?? "unset"})` };
      const atMs = await this.patchFence(rt, `fencing ${rt.who} after losing its primary lease (${reason}):`, reason);
      return { patched: true, atMs };
    });
  }

  /** Patches the fence of all instances through the local Kubernetes API, counts it, and checks it took; the time it was accepted. */
  private async patchFence(rt: MemberRuntime, doing: string, reason: string): Promise<number> {
    let after: Cluster;
    try {
      after = await this.withKubeTimeout(this.opts.kube.patchCluster(rt.ref, fencePatch(["*"]), doing), `patching Cluster ${rt.ref.namespace}/${rt.ref.name}`);
    } catch (e) {
      this.metrics.kubeErrors.inc({ region: this.region, operation: "patch" });
      throw e;
    }
    const atMs = this.now();
    this.metrics.fences.inc({ ...rt.labels, reason });
    if (!isFullyFenced(after)) throw new PgfedError("agent.patch_not_effective", `fencing ${rt.who}: the patch was accepted but the Cluster is still not fenced`);
    return atMs;
  }

  /** Publishes self-fence reports as audit records once the bus takes them (deterministic ids). */
  private flushReports(): void {
    if (this.reporting || this.reports.length === 0 || this.stopped) return;
    this.reporting = (async () => {
      while (this.reports.length > 0 && !this.stopped) {
        const r = this.reports[0];
        if (!r) break;
        try {
          const msg = makeMessage("audit", {
            federation: r.federation,
            member: r.member,
            epoch: this.epochs.current(r.federation),
            source: this.source,
            id: `agent.${this.region}.${r.idKind}.${r.member}.${r.fencedAtMs}`,
            at: new Date(this.now()),
            data: {
              actor: this.source,
              action: r.action,
              reason: r.reason,
              numbers: r.numbers,
              from: r.from,
              description: r.sentence,
            },
          });
          await this.opts.bus.publish(msg);
          this.reports.shift();
          this.log.info({ federation: r.federation, member: r.member, action: r.action }, `reported ${r.action} of ${r.federation}/${r.member} on the audit stream`);
        } catch (e) {
          this.publishFailed("audit", `${r.action} report of ${r.federation}/${r.member}`, e);
          break; // the next heartbeat or reconnect tries again
        }
      }
    })().finally(() => {
      this.reporting = undefined;
    });
  }

  // ---- helpers ---------------------------------------------------------------------------------

  private publishFailed(type: string, what: string, e: unknown): void {
    this.metrics.publishFailures.inc({ region: this.region, type });
    this.log.warn({ err: errorMessage(e) }, `could not publish the ${what}; it is sent again on the next pass: ${errorMessage(e)}`);
  }

  private withKubeTimeout<T>(p: Promise<T>, doing: string): Promise<T> {
    return this.bounded(p, doing, "kube.unreachable");
  }

  /** Bounds one call (Kubernetes API, KV) by the kube timeout; `code` names what did not answer. */
  private bounded<T>(p: Promise<T>, doing: string, code: string): Promise<T> {
    return orFailAfter(p, this.kubeTimeoutMs, () => new PgfedError(code, `${doing} in region ${this.region}: no answer within ${this.kubeTimeoutMs} ms`, { region: this.region }));
  }
}

// ---- pure helpers ------------------------------------------------------------------------------

function refKey(ref: ObjectRef): string {
  return `${ref.namespace}/${ref.name}`;
}

function resultData(c: Cluster, patched: boolean): Record<string, JsonValue> {
  const obs = observeCluster(c);
  return { patched, resourceVersion: c.metadata.resourceVersion ?? "", role: obs.role, fenced: obs.fenced, phase: obs.phase };
}

/** The wire lag sample of a sampler reading: LSNs as text, times in epoch ms. */
export function lagFromSample(s: MemberSample): LagSample {
  const a = s.archiver;
  const common = {
    ...(a.lastArchivedWal !== undefined ? { lastArchivedWal: a.lastArchivedWal.slice(0, 64) } : {}),
    ...(a.lastArchivedAtMs !== undefined && a.lastArchivedAtMs >= 0 ? { lastArchivedAtMs: a.lastArchivedAtMs } : {}),
    archiveFailedCount: a.failedCount,
    ...(a.lastFailedAtMs !== undefined && a.lastFailedAtMs >= 0 ? { lastFailedAtMs: a.lastFailedAtMs } : {}),
    segmentsReady: a.readySegments,
    ...(s.timeline > 0 ? { timeline: s.timeline } : {}),
    sampledAtMs: Math.max(0, Math.floor(s.atMs)),
  };
  if (s.role === "primary") return { role: "primary", currentLsn: formatLsn(s.currentLsn), inRecovery: false, nextXid: s.nextXid.toString(), runningXids: s.runningXids, ...common };
  return {
    role: "replica",
    ...(s.receiveLsn !== undefined ? { receivedLsn: formatLsn(s.receiveLsn) } : {}),
    ...(s.replayLsn !== undefined ? { replayedLsn: formatLsn(s.replayLsn) } : {}),
    inRecovery: true,
    ...common,
  };
}

/** Durable consumer name: readable when it fits in 64 characters, hashed otherwise. */
export function consumerName(agentId: string, federation: string, member: string): string {
  const plain = `agent_${agentId}_${federation}_${member}`;
  if (plain.length <= 64) return plain;
  const hash = createHash("sha256").update(plain).digest("hex").slice(0, 16);
  return `agent_${agentId.slice(0, 20)}_${hash}`;
}

/** Result envelope id: derived from the command id, so a repeated answer is stored once. */
export function resultId(commandId: string): string {
  const plain = `res.${commandId}`;
  return plain.length <= 128 ? plain : `res.${createHash("sha256").update(commandId).digest("hex")}`;
}

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** Resolves with the promise's value, or undefined when it takes longer than `ms`. */
