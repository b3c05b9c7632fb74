/**
 * The region agent (DESIGN.md, "Processes"): one per region, for the federation members whose
 * CNPG Clusters live there. It
 *   1. watches the member Clusters and publishes an observation on every change (unchanged ones
 *      are skipped), re-reads every member each heartbeat so an API that stopped answering is
 *      reported as `reachable: false` (cluster-watch.ts), and publishes a heartbeat per federation;
 *   2. samples each member's Postgres every sample interval and publishes the lag sample;
 *   3. executes the commands for its members (one durable consumer per member), "ensure"-style,
 *      refusing commands from an older epoch or past their deadline, and answers with a result
 *      (command-handler.ts, commands.ts);
 *   4. holds the federation's primary lease for a member that is the unfenced primary and fences
 *      that primary itself when it can no longer vouch for it (primary-guard.ts, fencing.ts);
 *   5. fences a member that is an unfenced primary by its spec while the coordinator's federation
 *      record designates another member (a former primary whose region came back), before it
 *      publishes anything or guards a lease at start, and again after a reconnect, on every record
 *      change and every observation (fencing.ts, federation-records.ts);
 *   6. reports every fence it applies on the audit stream (fence-reports.ts) and counts what it
 *      does (metrics.ts).
 * This file is the lifecycle and the wiring. Nothing here may crash the process: every async path
 * ends in a catch that logs; stop() is bounded.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Registry } from "prom-client";
import { checkName, leaseKeys, makeMessage, type Bus, type DataOf, type LagSample, type LeaseStore, type Observation } from "../bus/index.js";
import type { FederationConfig, MemberConfig, Config } from "../config.js";
import { PgfedError, errorMessage } from "../errors.js";
import type { RegionClient } from "../kube/region.js";
import type { Logger } from "../log.js";
import { createRegistry } from "../metrics.js";
import type { SecretResolver } from "../wal/credentials.js";
import { formatLsn } from "../wal/lsn.js";
import { MemberSampler, targetFromMemberConfig, type MemberSample } from "../wal/sampler.js";
import { ClusterWatcher } from "./cluster-watch.js";
import { CommandAuthenticator } from "./command-auth.js";
import { CommandHandler } from "./command-handler.js";
import { EpochTracker, type EpochMark } from "./epochs.js";
import { FederationRecords } from "./federation-records.js";
import { FenceReports } from "./fence-reports.js";
import { selfFence, sweepAfterRecordChange, sweepAtStart, sweepMembers, type FenceContext, type StartupSweepStatus } from "./fencing.js";
import { LatestPublisher } from "./latest-publisher.js";
import { createAgentMetrics, type AgentMetrics } from "./metrics.js";
import { clip } from "./observation.js";
import { PrimaryGuard, type GuardStatus } from "./primary-guard.js";
import type { AgentFederation, AgentRuntime, LagStatus, LastCommand, MemberRuntime } from "./runtime.js";
import { WriteLock } from "./write-lock.js";
import { orFailAfter, withTimeout } from "../timeout.js";

// ---- options and status ------------------------------------------------------------------------

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
   * its designated primary for the fence sweep (fencing.ts). Default true; false also turns
   * the sweep off.
   */
  watchStateEpochs?: boolean;
  /** Bound on one Kubernetes API call (reads, patches). Default max(2 s, heartbeat interval). */
  kubeTimeoutMs?: number;
  /** Start the self-fence when less than this much lease validity remains. Default clockSkewMargin/2. */
  fenceLeadMs?: number;
  /**
   * Public nkeys of the coordinators whose signed commands this agent executes (`bus.coordinatorKeys`,
   * command-auth.ts). Empty or omitted: commands are not checked (a warning at start).
   */
  coordinatorKeys?: readonly string[];
}

export interface MemberStatus {
  federation: string;
  member: string;
  namespace: string;
  cluster: string;
  observation: Observation | undefined;
  observedAtMs: number | undefined;
  lag: LagStatus | undefined;
  lease: GuardStatus;
  lastCommand: LastCommand | undefined;
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
  readonly startedAtMs: number;
  private readonly source: string;
  private readonly log: Logger;
  private readonly metrics: AgentMetrics;
  private readonly now: () => number;
  private readonly heartbeatIntervalMs: number;
  private readonly kubeTimeoutMs: number;
  private readonly epochs = new EpochTracker();
  private readonly members: MemberRuntime[] = [];
  private readonly federations: string[];
  private readonly heartbeats = new Map<string, LatestPublisher<DataOf<"heartbeat">>>();
  private readonly loops: Promise<void>[] = [];
  private readonly stopSignal = new AbortController();
  /** What every part shares (runtime.ts). */
  private readonly runtime: AgentRuntime;
  private readonly records: FederationRecords;
  private readonly reports: FenceReports;
  private readonly fence: FenceContext;
  private readonly commands: CommandHandler;
  private readonly clusters: ClusterWatcher;
  private heartbeatRunning = false;
  private unhookReconnect: (() => void) | undefined;
  private stopping: Promise<void> | undefined;

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
    this.federations = [...new Set(opts.members.map((m) => m.federation.name))];
    this.runtime = {
      agentId: this.agentId,
      region: this.region,
      source: this.source,
      startedAtMs: this.startedAtMs,
      kube: opts.kube,
      bus: opts.bus,
      log: this.log,
      metrics: this.metrics,
      epochs: this.epochs,
      commandAuth: new CommandAuthenticator(opts.coordinatorKeys ?? [], opts.leases),
      members: this.members,
      stopSignal: this.stopSignal.signal,
      loops: this.loops,
      now: () => this.now(),
      kubeCall: (p, doing) => this.bounded(p, doing, "kube.unreachable"),
      bounded: (p, doing, code) => this.bounded(p, doing, code),
      publishFailed: (type, what, e) => this.publishFailed(type, what, e),
    };
    this.records = new FederationRecords({ ...this.runtime, federations: this.federations, onChange: (fed) => sweepAfterRecordChange(this.fence, fed) });
    this.reports = new FenceReports(this.runtime);
    this.fence = {
      ...this.runtime,
      records: this.records,
      reports: this.reports,
      sweepEnabled: opts.watchStateEpochs !== false,
      sweep: { status: { state: "pending", fenced: [] }, retrying: false },
    };
    this.commands = new CommandHandler(this.runtime);
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
    this.clusters = new ClusterWatcher(this.runtime, this.fence);
  }

  private memberRuntime(fed: AgentFederation, m: MemberConfig): MemberRuntime {
    const who = `${fed.name}/${m.name}`;
    const labels = { region: this.region, federation: fed.name, member: m.name };
    const log = this.log.child({ federation: fed.name, member: m.name });
    const resolver: SecretResolver = this.opts.secretResolver ?? {
      readSecretKey: async (ref) => {
        try {
          return await this.runtime.kubeCall(this.opts.kube.readSecretKey({ namespace: ref.namespace ?? m.namespace, name: ref.name }, ref.key), `reading Secret ${ref.namespace ?? m.namespace}/${ref.name}`);
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
      epoch: () => this.epochs.current(fed.name),
      fence: (reason) => selfFence(this.fence, rt, reason),
      onFenced: (report) => this.reports.add({ ...report, from: report.holder, action: "primary.self_fenced", idKind: "self-fence" }),
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
        ({ obs, trigger }) => this.clusters.publish(rt, obs, trigger),
        (e) => this.publishFailed("observation", `observation of ${who}`, e),
      ),
      lags: new LatestPublisher(
        (sample) => this.publishLag(rt, sample),
        (e) => this.publishFailed("lag", `lag sample of ${who}`, e),
      ),
      lag: undefined,
      sampler,
      guard,
      lock: new WriteLock(),
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
    await sweepAtStart(this.fence);
    if (this.opts.watchStateEpochs !== false) await this.records.watch();
    for (const rt of this.members) rt.subscription = await this.commands.subscribe(rt);
    this.clusters.start();
    this.loops.push(this.heartbeatLoop());
    for (const rt of this.members) this.loops.push(this.sampleLoop(rt));
    const names = this.members.map((m) => m.who).join(", ");
    this.log.info({ members: this.members.length }, `agent ${this.agentId} serves ${names || "no members"} in region ${this.region}`);
    if (!this.runtime.commandAuth.enforcing) this.log.warn("commands are NOT authenticated: bus.coordinatorKeys is empty, so this agent executes any well-formed command that reaches it (docs/operations.md, Security model)");
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
      bound("the Cluster watches", this.clusters.stop()),
      bound("the command consumers", Promise.all(this.members.map((m) => (m.subscription ? m.subscription.stop().catch(() => undefined) : Promise.resolve())))),
      bound("the state watches", this.records.stop()),
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
    const sweep = this.fence.sweep.status;
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
      startupSweep: { ...sweep, fenced: [...sweep.fenced] },
      epochs: this.epochs.snapshot(),
      pendingReports: this.reports.pending,
    };
  }

  private async afterReconnect(): Promise<void> {
    if (this.stopped) return;
    // The record may have moved on while we were cut off (a failover): judge the members again
    // before re-publishing what we see.
    if (this.opts.watchStateEpochs !== false && (await this.records.read()).ok) {
      if (!this.records.watching) await this.records.watch();
      await sweepMembers(this.fence, "reconnect");
    }
    // Whatever was lost while disconnected is re-derived: current observations, then reports.
    for (const rt of this.members) if (rt.observation) this.clusters.offer(rt, rt.observation, "heartbeat");
    this.reports.flush();
  }

  // ---- heartbeat -------------------------------------------------------------------------------

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
      await Promise.all(this.members.map((rt) => this.clusters.readMember(rt)));
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
      this.reports.flush();
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

  // ---- shared with the parts (runtime.ts) -------------------------------------------------------

  private publishFailed(type: string, what: string, e: unknown): void {
    this.metrics.publishFailures.inc({ region: this.region, type });
    this.log.warn({ err: errorMessage(e) }, `could not publish the ${what}; it is sent again on the next pass: ${errorMessage(e)}`);
  }

  /** Bounds one call (Kubernetes API, KV) by the kube timeout; `code` names what did not answer. */
  private bounded<T>(p: Promise<T>, doing: string, code: string): Promise<T> {
    return orFailAfter(p, this.kubeTimeoutMs, () => new PgfedError(code, `${doing} in region ${this.region}: no answer within ${this.kubeTimeoutMs} ms`, { region: this.region }));
  }
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
