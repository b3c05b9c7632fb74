/**
 * The lab's CNPG operator stand-in for one region: it watches `clusters.postgresql.cnpg.io`
 * through the region's Kubernetes API (a real @kubernetes/client-node client, so the API stand-in
 * is exercised exactly as pgfed's kube code exercises it) and drives one real Postgres instance
 * per Cluster, following CNPG.md so that pgfed cannot tell it from CNPG.
 *
 * Reconcile is level-triggered, one step per pass, like CNPG's `replicaclusterswitch` package:
 * read the object, compare the spec with the instance on disk and in memory, take one step,
 * record it in status; every step is safe to repeat after a crash. Passes for one Cluster are
 * serialized; a bad object sets a phase and a reason and never throws out of the loop.
 *
 * Simplifications (none visible through the API): one Postgres instance per Cluster whatever
 * `spec.instances` says (status reports spec.instances, readyInstances is 0 or 1, the instance is
 * always `<cluster>-1`); no Services, Pods or Secrets; the object store is a local directory.
 * Real CNPG reconciles on watch events and requeues about every 10 s; this one lists every
 * `pollIntervalMs` (lab default 100 ms), which is the same level-triggered contract, reacts
 * within one interval and needs no watch-reconnection logic. The two waits CNPG times itself keep
 * CNPG's 10 s by default: the demotion token retry (operator) and the promotion token re-check
 * (instance manager); both are options so tests can shorten them.
 *
 * Each pass plays both CNPG actors for the Cluster: first the operator's replica cluster switch
 * (pkg/reconciler/replicaclusterswitch), then the instance manager's part (fencing, designated
 * primary transition, start, promotion token check; internal/management/controller).
 */
import { dirname, join } from "node:path";
import { ApiException, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import {
  CNPG_GROUP,
  CNPG_PLURAL,
  CNPG_VERSION,
  CONDITIONS,
  type Cluster,
  type Condition,
  type DemotionToken,
  type ExternalCluster,
  type MergePatch,
  PHASES,
  PROMOTION_TOKEN_MISMATCH_REASON,
  REPLICA_PROMOTION_IN_PROGRESS_REASON,
  SERVER_NAME,
  archiveServerName,
  entryArchiveServerName,
  clusterRole,
  conditionIs,
  databaseClusterState,
  decodeToken,
  encodeToken,
  getCondition,
  safeParseCluster,
  selfName,
  specPromotionToken,
  tokenFromControlData,
  unfencePatch,
} from "../../cnpg/index.js";
import { PgfedError, errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import { silentLogger } from "../../log.js";
import { type InstanceProbe, type InstanceRole, PgInstance, checkParameters } from "./instance.js";
import { FENCE_ALL, fenceAllPatch, isInstanceFenced } from "./fencing.js";
import { type TokenVerdict, checkPromotionToken, replicaControlPoint } from "./promotion.js";
import { type ExternalClusterEndpoint, ExternalClusterRegistry } from "./registry.js";

export const LAB_OPERATOR_VERSION = "pgfed-lab-1.0";
/** CNPG's instance manager re-checks an unmet promotion token after 10 s (internal/management/controller/instance_controller.go). */
export const CNPG_PROMOTION_RETRY_MS = 10_000;
/** CNPG's operator retries the demotion token every 10 s while Postgres is not shut down (pkg/reconciler/replicaclusterswitch/reconciler.go). */
export const CNPG_DEMOTION_RETRY_MS = 10_000;
/** Faults the lab can inject into the stand-in (`injectFault`). */
export type CnpgFault = "tokenLoss";
const MERGE_PATCH = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

export interface CnpgOperatorOptions {
  region: string;
  /** The region's API, as a client sees it (one KubeConfig per region: it is mutable). */
  kube: KubeConfig;
  /** Lab data directory; instances live in `<dataDir>/<region>/<namespace>/<cluster>/`. */
  dataDir: string;
  /** How often every Cluster is listed and reconciled. Real CNPG: on events, requeue ~10 s. Lab default 100 ms. */
  pollIntervalMs?: number;
  /** Re-check interval while a promotion token is not reached yet. Default CNPG's 10 s (CNPG_PROMOTION_RETRY_MS); a new token is checked at once. */
  promotionRetryMs?: number;
  /** Retry interval while a demotion waits for a clean shutdown. Default CNPG's 10 s (CNPG_DEMOTION_RETRY_MS). */
  demotionRetryMs?: number;
  /** `operatorVersion` written into demotion tokens. */
  operatorVersion?: string;
  /** Shared by the lab's operators: how a replica finds its source in another region (registry.ts). */
  registry: ExternalClusterRegistry;
  log?: Logger;
}

export interface CnpgOperator {
  readonly region: string;
  /** The instance of a Cluster, once the operator created it. */
  instance(namespace: string, name: string): PgInstance | undefined;
  /**
   * SIGKILLs the instance (postmaster and every child). With `hold` (default) the operator leaves
   * it down until `restartInstance`, like a lost node; without, it restarts it on the next pass.
   */
  killInstance(namespace: string, name: string, opts?: { hold?: boolean }): Promise<void>;
  /**
   * Clears a hold and restarts the instance (fast shutdown first when it is running) through a
   * reconcile pass, which reads the Cluster first like CNPG's instance manager: a fenced Cluster
   * (or an API that does not answer) keeps Postgres stopped.
   */
  restartInstance(namespace: string, name: string): Promise<void>;
  /** Reconciles now instead of at the next poll; resolves when the passes ran. */
  reconcileNow(): Promise<void>;
  /**
   * Arms a fault for the next demotion of `namespace/name` (the Cluster need not exist yet); it
   * fires once. "tokenLoss": CNPG #11074 (fixed in 1.28.4, 1.29.2, 1.30.0) — the cleanup after
   * publishing the token fails once, and the requeued pass writes the empty "unchanged" token back:
   * the demotion completes with `status.demotionToken` absent.
   */
  injectFault(namespace: string, name: string, fault: CnpgFault): void;
  /** Stops reconciling and stops every Postgres it started (fast shutdown, or SIGKILL with `kill`). */
  stop(opts?: { kill?: boolean }): Promise<void>;
}

/** What one Cluster's reconcile keeps between passes (everything else is read again each pass). */
interface Managed {
  namespace: string;
  name: string;
  key: string;
  /** metadata.uid of the object this state belongs to: a new uid is a new Cluster under the same name. */
  uid: string | undefined;
  instance: PgInstance | undefined;
  registeredAs: string | undefined;
  /** Fingerprint of the configuration the running instance was started with. */
  startedWith: string | undefined;
  held: boolean;
  /** A promotion token this replica refused for good (fatal); a different token is checked again. */
  refusedToken: string | undefined;
  /** The promotion token checked last, and when it is checked again (a new token is checked at once). */
  checkedToken: string | undefined;
  nextTokenCheckAt: number;
  /** When the operator tries the demotion token again after pg_controldata said "not shut down". */
  nextDemotionCheckAt: number;
  inFlight: Promise<void> | undefined;
  again: boolean;
  lastError: string | undefined;
  lastWarning: string | undefined;
}

interface StepOutcome {
  phase?: string;
  phaseReason?: string;
  /** Status fields this step sets (merged over the computed ones). */
  status?: Record<string, unknown>;
  ready?: boolean;
  /** The step changed something: run the next pass at once instead of after the poll interval. */
  requeue?: boolean;
  /** Leave phase and phaseReason as they are: CNPG returns from this pass before registering a phase. */
  keepPhase?: boolean;
}

/** State of an injected tokenLoss fault: armed, then (after the failed cleanup) about to wipe the token. */
type TokenLossState = "armed" | "wipeNext";

/** What a Cluster's reconcile state starts as, and is reset to when the Cluster is replaced. */
function freshState(): Pick<Managed, "uid" | "instance" | "registeredAs" | "startedWith" | "held" | "refusedToken" | "checkedToken" | "nextTokenCheckAt" | "nextDemotionCheckAt" | "lastError" | "lastWarning"> {
  return { uid: undefined, instance: undefined, registeredAs: undefined, startedWith: undefined, held: false, refusedToken: undefined, checkedToken: undefined, nextTokenCheckAt: 0, nextDemotionCheckAt: 0, lastError: undefined, lastWarning: undefined };
}

export async function startCnpgOperator(opts: CnpgOperatorOptions): Promise<CnpgOperator> {
  const op = new Operator(opts);
  op.start();
  return op;
}

class Operator implements CnpgOperator {
  readonly region: string;
  private readonly api: CustomObjectsApi;
  private readonly dataDir: string;
  private readonly pollIntervalMs: number;
  private readonly promotionRetryMs: number;
  private readonly demotionRetryMs: number;
  private readonly operatorVersion: string;
  private readonly faults = new Map<string, TokenLossState>();
  private readonly registry: ExternalClusterRegistry;
  private readonly log: Logger;
  private readonly clusters = new Map<string, Managed>();
  private stopping = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private listFailing = false;

  constructor(opts: CnpgOperatorOptions) {
    this.region = opts.region;
    this.api = opts.kube.makeApiClient(CustomObjectsApi);
    this.dataDir = opts.dataDir;
    this.pollIntervalMs = opts.pollIntervalMs ?? 100;
    this.promotionRetryMs = opts.promotionRetryMs ?? CNPG_PROMOTION_RETRY_MS;
    this.demotionRetryMs = opts.demotionRetryMs ?? CNPG_DEMOTION_RETRY_MS;
    this.operatorVersion = opts.operatorVersion ?? LAB_OPERATOR_VERSION;
    this.registry = opts.registry;
    this.log = (opts.log ?? silentLogger()).child({ region: opts.region, component: "cnpg-operator" });
  }

  start(): void {
    this.loop = this.run().catch((e: unknown) => this.log.fatal({ err: errorMessage(e) }, `the operator loop of ${this.region} stopped: ${errorMessage(e)}`));
  }

  instance(namespace: string, name: string): PgInstance | undefined {
    return this.clusters.get(`${namespace}/${name}`)?.instance;
  }

  async killInstance(namespace: string, name: string, opts: { hold?: boolean } = {}): Promise<void> {
    const m = this.clusters.get(`${namespace}/${name}`);
    if (!m?.instance) throw new PgfedError("lab.no_instance", `cannot kill ${namespace}/${name} in ${this.region}: the operator runs no instance for it`);
    m.held = opts.hold ?? true;
    await m.inFlight;
    await m.instance.kill();
    m.startedWith = undefined;
    this.log.warn({ cluster: m.key }, `killed the instance of ${m.key} (postmaster and every child)${m.held ? "; held down until restarted" : ""}`);
  }

  async restartInstance(namespace: string, name: string): Promise<void> {
    const m = this.clusters.get(`${namespace}/${name}`);
    if (!m?.instance) throw new PgfedError("lab.no_instance", `cannot restart ${namespace}/${name} in ${this.region}: the operator runs no instance for it`);
    // A pass in flight may have read the Cluster before it was fenced (the region's agent fences it
    // just before the lab restarts the instance): it must end while the hold still applies, or it
    // would start the former primary from that stale read. Passes started after this read the
    // object as it is now. (Found by test/e2e/failover.test.ts: Postgres briefly ran crash recovery.)
    while (m.inFlight) await m.inFlight;
    m.held = false;
    await m.instance.stop();
    m.startedWith = undefined;
    await this.reconcileNow();
  }

  async reconcileNow(): Promise<void> {
    await this.pass();
  }

  injectFault(namespace: string, name: string, fault: CnpgFault): void {
    if (fault !== "tokenLoss") throw new PgfedError("lab.unknown_fault", `cannot inject fault ${JSON.stringify(fault)} into ${namespace}/${name} in ${this.region}: the CNPG stand-in knows only "tokenLoss"`);
    this.faults.set(`${namespace}/${name}`, "armed");
    this.log.warn({ cluster: `${namespace}/${name}` }, `fault armed for ${namespace}/${name}: its next demotion loses its token (CNPG #11074)`);
  }

  async stop(opts: { kill?: boolean } = {}): Promise<void> {
    this.stopping = true;
    this.wake?.();
    await this.loop;
    await Promise.all([...this.clusters.values()].flatMap((m) => (m.inFlight ? [m.inFlight] : [])));
    for (const m of this.clusters.values()) {
      if (!m.instance) continue;
      if (opts.kill) await m.instance.kill();
      else await m.instance.stop(30_000).catch(() => m.instance?.kill());
      // Stays registered: a stopped region's clusters are unreachable, not gone (running() says so).
    }
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      await this.pass();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.pollIntervalMs);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** One listing; schedules a reconcile for every Cluster seen and tears down the ones gone. */
  private async pass(): Promise<void> {
    if (this.stopping) return;
    let items: unknown[];
    try {
      const list: unknown = await this.api.listClusterCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL });
      items = isRecord(list) && Array.isArray(list.items) ? (list.items as unknown[]) : [];
      if (this.listFailing) this.log.info("the Kubernetes API answers again");
      this.listFailing = false;
    } catch (e) {
      // The API is unreachable: keep every instance as it is (a real operator cannot act either).
      if (!this.listFailing) this.log.warn({ err: errorMessage(e) }, "cannot list Clusters; leaving instances as they are");
      this.listFailing = true;
      return;
    }
    const seen = new Set<string>();
    const runs: Promise<void>[] = [];
    for (const item of items) {
      const meta = isRecord(item) && isRecord(item.metadata) ? item.metadata : undefined;
      const name = typeof meta?.name === "string" ? meta.name : undefined;
      const namespace = typeof meta?.namespace === "string" ? meta.namespace : "default";
      if (!name) continue;
      const key = `${namespace}/${name}`;
      seen.add(key);
      let m = this.clusters.get(key);
      if (!m) {
        m = { namespace, name, key, ...freshState(), inFlight: undefined, again: false };
        this.clusters.set(key, m);
      }
      runs.push(this.schedule(m));
    }
    for (const m of [...this.clusters.values()]) {
      if (!seen.has(m.key) && !m.inFlight) runs.push(this.teardown(m));
    }
    await Promise.all(runs);
  }

  /** Serializes passes per Cluster: a request during a pass runs one more pass after it. */
  private schedule(m: Managed): Promise<void> {
    if (m.inFlight) {
      m.again = true;
      return m.inFlight;
    }
    const go = async () => {
      do {
        m.again = false;
        try {
          await this.reconcile(m);
        } catch (e) {
          // Never out of the loop: the next pass tries again.
          this.noteError(m, `while reconciling ${m.key}: ${errorMessage(e)}`);
        }
      } while (m.again && !this.stopping);
    };
    m.inFlight = go().finally(() => {
      m.inFlight = undefined;
    });
    return m.inFlight;
  }

  /** The Cluster was deleted: CNPG deletes its pods and volumes (the object store stays). */
  private async teardown(m: Managed): Promise<void> {
    this.clusters.delete(m.key);
    if (m.registeredAs) this.registry.unregister(m.registeredAs, { region: this.region, namespace: m.namespace, cluster: m.name });
    if (m.instance) {
      this.log.info({ cluster: m.key }, `Cluster ${m.key} was deleted: stopping its instance and removing its data directory`);
      await m.instance.destroy().catch((e: unknown) => this.log.error({ cluster: m.key, err: errorMessage(e) }, `while deleting ${m.key}`));
    }
  }

  /**
   * The Cluster was deleted and created again between two listings (a rejoin's re-clone): what the
   * old one had goes first, as Kubernetes' garbage collector deletes its pods and volumes before a
   * foreground deletion completes. The old archive directory stays, like an object store.
   */
  private async replaced(m: Managed, uid: string): Promise<void> {
    this.log.info({ cluster: m.key }, `Cluster ${m.key} was deleted and created again (uid ${m.uid ?? "?"} → ${uid}): removing the old instance's data directory; its archive stays`);
    if (m.registeredAs) this.registry.unregister(m.registeredAs, { region: this.region, namespace: m.namespace, cluster: m.name });
    const old = m.instance;
    Object.assign(m, { ...freshState(), uid: m.uid });
    await old?.destroy();
  }

  private async reconcile(m: Managed): Promise<void> {
    let raw: unknown;
    try {
      raw = await this.api.getNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, namespace: m.namespace, plural: CNPG_PLURAL, name: m.name });
    } catch (e) {
      if (e instanceof ApiException && e.code === 404) return this.teardown(m);
      this.log.debug({ cluster: m.key, err: errorMessage(e) }, `cannot read ${m.key}`);
      return;
    }
    const uid = isRecord(raw) && isRecord(raw.metadata) && typeof raw.metadata.uid === "string" ? raw.metadata.uid : undefined;
    if (uid !== undefined && m.uid !== uid) {
      if (m.uid !== undefined) await this.replaced(m, uid);
      m.uid = uid;
    }
    const parsed = safeParseCluster(raw);
    if (!parsed.ok) {
      this.noteError(m, parsed.error.message);
      const rawStatus = isRecord(raw) && isRecord(raw.status) ? raw.status : {};
      await this.writeStatus(m, undefined, { phase: PHASES.unrecoverable, phaseReason: parsed.error.message, ready: false }, rawStatus);
      return;
    }
    const c = parsed.cluster;
    let outcome: StepOutcome;
    try {
      outcome = await this.step(m, c);
      m.lastError = undefined;
    } catch (e) {
      const reason = errorMessage(e);
      this.noteError(m, reason);
      outcome = { phase: PHASES.waitingForInstances, phaseReason: reason, ready: false };
    }
    if (outcome.requeue) m.again = true;
    try {
      await this.writeStatus(m, c, outcome, c.status ?? {});
    } catch (e) {
      this.log.warn({ cluster: m.key, err: errorMessage(e) }, `while writing the status of ${m.key}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The steps. Each returns after at most one change; the status written after it tells the next
  // pass (and pgfed) where things stand.
  // ---------------------------------------------------------------------------------------------

  private async step(m: Managed, c: Cluster): Promise<StepOutcome> {
    const params = c.spec.postgresql?.parameters ?? {};
    const problems = checkParameters(params);
    if (problems.length > 0) return { phase: PHASES.unrecoverable, phaseReason: `invalid spec.postgresql.parameters: ${problems.join("; ")}`, ready: false };
    const inst = await this.ensureInstance(m, c);
    // CNPG's reading: an annotation that does not parse fences nothing (api/v1/cluster_funcs.go).
    const fenced = isInstanceFenced(c, podName(m));
    const disk = inst.diskRole;
    if (disk === undefined) return this.bootstrap(m, c, inst, fenced);

    const operator = clusterRole(c) === "replica" ? await this.reconcileReplicaSwitch(m, c, inst, fenced, disk) : undefined;
    if (operator?.acted) return operator.outcome;
    const own = await this.instanceManager(m, c, inst, fenced, disk, params);
    // A demotion waiting for a clean shutdown returns before CNPG registers any phase.
    return operator?.outcome.keepPhase ? { ...own, keepPhase: true } : own;
  }

  /**
   * The instance manager's part, after the operator's: fencing stops Postgres and keeps it stopped
   * (so a crashed data directory is never recovered), a fenced former primary becomes a designated
   * primary on disk, then start/restart and the promotion (internal/management/controller/instance_controller.go).
   */
  private async instanceManager(m: Managed, c: Cluster, inst: PgInstance, fenced: boolean, disk: "primary" | "replica", params: Readonly<Record<string, string>>): Promise<StepOutcome> {
    const desired = clusterRole(c);
    if (fenced || m.held) {
      const down: StepOutcome = { phase: PHASES.waitingForInstances, phaseReason: fenced ? `Instance ${podName(m)} is fenced` : `Instance ${podName(m)} is not running`, ready: false };
      if (inst.running) {
        this.log.info({ cluster: m.key }, `${fenced ? "fencing" : "holding down"} ${m.key}: fast shutdown of its instance`);
        await inst.stop();
        m.startedWith = undefined;
        return { ...down, requeue: true };
      }
      // A held instance is a lost node: no instance manager runs to do anything.
      if (fenced && !m.held && desired === "replica" && conditionIs(c, CONDITIONS.designatedPrimaryTransition, "False")) return { ...down, ...(await this.designatedPrimaryTransition(m, c, inst, params)) };
      return down;
    }

    const role = this.roleFor(c, disk);
    const fingerprint = JSON.stringify({ role, params });
    if (inst.running && m.startedWith !== fingerprint) {
      this.log.info({ cluster: m.key }, `restarting ${m.key} to apply a new configuration`);
      await inst.stop();
    }
    if (!inst.running) {
      // As CNPG's instance manager at pod start: Postgres starts with the role its data directory
      // has (a crashed primary runs crash recovery here), even when the spec now says replica.
      await this.withStep(`while starting ${m.key}`, async () => {
        await inst.configure(role, params);
        m.startedWith = fingerprint;
        await inst.start();
      });
      this.log.info({ cluster: m.key, port: inst.port }, `started ${m.key} as ${role.kind === "primary" ? "a primary" : "a replica"}`);
    }

    if (desired === "primary" && disk === "replica") return this.promote(m, c, inst, params);
    return {};
  }

  private async ensureInstance(m: Managed, c: Cluster): Promise<PgInstance> {
    if (!m.instance) {
      const dir = join(this.dataDir, this.region, m.namespace, m.name);
      m.instance = await PgInstance.open({ name: m.key, clusterName: m.name, dir, archiveDir: join(dir, "archive", archiveServerName(c)), log: this.log });
    }
    const self = selfName(c);
    if (m.registeredAs !== self) {
      if (m.registeredAs) this.registry.unregister(m.registeredAs, { region: this.region, namespace: m.namespace, cluster: m.name });
      const inst = m.instance;
      const endpoint: ExternalClusterEndpoint = {
        region: this.region,
        namespace: m.namespace,
        cluster: m.name,
        archiveDir: inst.archiveDir,
        archiveRoot: dirname(inst.archiveDir),
        connection: inst.connection,
        running: () => inst.running,
      };
      this.registry.register(self, endpoint);
      m.registeredAs = self;
    }
    return m.instance;
  }

  /** The instance's settings for the role its data directory has (a replica follows spec.replica.source). */
  private roleFor(c: Cluster, disk: "primary" | "replica"): InstanceRole {
    if (disk === "primary") return { kind: "primary" };
    const sourceName = c.spec.replica?.source;
    if (!sourceName) throw new PgfedError("lab.no_source", `while configuring ${clusterKey(c)} as a replica: spec.replica.source is not set`);
    const { ext, endpoint } = this.resolveSource(c, sourceName);
    const cp = ext.connectionParameters;
    return {
      kind: "replica",
      source: {
        archiveDir: sourceArchiveDir(c, ext, endpoint),
        // Streaming only when the entry says how to connect; otherwise archive-only (CNPG.md).
        ...(cp ? { streaming: { ...endpoint.connection, user: cp.user ?? "streaming_replica", database: cp.dbname ?? "postgres" } } : {}),
      },
    };
  }

  private resolveSource(c: Cluster, sourceName: string): { ext: ExternalCluster; endpoint: ExternalClusterEndpoint } {
    const ext = (c.spec.externalClusters ?? []).find((e) => e.name === sourceName);
    const doing = `while resolving the source ${JSON.stringify(sourceName)} of ${clusterKey(c)}`;
    if (!ext) throw new PgfedError("lab.no_source", `${doing}: spec.externalClusters has no entry by that name`);
    const endpoint = this.registry.resolve(ext);
    if (!endpoint) throw new PgfedError("lab.source_unknown", `${doing}: no lab operator runs a cluster by that name`);
    return { ext, endpoint };
  }

  private async bootstrap(m: Managed, c: Cluster, inst: PgInstance, fenced: boolean): Promise<StepOutcome> {
    const b = c.spec.bootstrap;
    const cloneSource = b?.pg_basebackup?.source ?? b?.recovery?.source;
    const desired = clusterRole(c);
    if (fenced) return { phase: desired === "primary" ? PHASES.settingUpPrimary : PHASES.creatingReplica, phaseReason: `Instance ${m.name}-1 is fenced`, ready: false };
    if (cloneSource === undefined) {
      if (desired === "replica") {
        return { phase: PHASES.unrecoverable, phaseReason: "a replica cluster needs spec.bootstrap.pg_basebackup or spec.bootstrap.recovery with a source", ready: false };
      }
      await this.writeStatus(m, c, { phase: PHASES.settingUpPrimary, phaseReason: "Running initdb", ready: false }, c.status ?? {});
      this.log.info({ cluster: m.key }, `bootstrapping ${m.key} with initdb`);
      await inst.initdb();
      return { phase: PHASES.settingUpPrimary, ready: false, requeue: true };
    }
    const { endpoint } = this.resolveSource(c, cloneSource);
    if (!endpoint.running()) {
      return { phase: PHASES.creatingReplica, phaseReason: `waiting for external cluster ${cloneSource} to run before cloning it`, ready: false };
    }
    await this.writeStatus(m, c, { phase: PHASES.creatingReplica, phaseReason: `Cloning from ${cloneSource} with pg_basebackup`, ready: false }, c.status ?? {});
    this.log.info({ cluster: m.key, source: cloneSource }, `bootstrapping ${m.key} with pg_basebackup from ${cloneSource}`);
    await inst.cloneFrom({ ...endpoint.connection, user: "streaming_replica" });
    // The clone is a standby until the role step says otherwise.
    await inst.configure(desired === "replica" ? this.roleFor(c, "replica") : { kind: "primary" }, c.spec.postgresql?.parameters ?? {});
    return { phase: PHASES.creatingReplica, ready: false, requeue: true };
  }

  // ---------------------------------------------------------------------------------------------
  // The demotion, as CNPG's pkg/reconciler/replicaclusterswitch/reconciler.go drives it, one step
  // per pass, its progress kept in status conditions: fence and ask for the transition
  // (DesignatedPrimaryTransition=False); the instance manager stops Postgres and writes the standby
  // configuration (=True); the operator reads the token from pg_controldata of the cleanly shut
  // down data directory, archives the shutdown segment as .partial, publishes the token, unfences
  // and marks the switch completed. Without a clean shutdown there is no token, ever.
  // ---------------------------------------------------------------------------------------------

  /** The operator's part on a replica Cluster; `acted`: it took this pass's step (the instance manager's part waits). */
  private async reconcileReplicaSwitch(m: Managed, c: Cluster, inst: PgInstance, fenced: boolean, disk: "primary" | "replica"): Promise<{ acted: boolean; outcome: StepOutcome } | undefined> {
    const transition = getCondition(c, CONDITIONS.designatedPrimaryTransition)?.status;
    if (transition === "True") return this.reconcileDemotionToken(m, c, inst);
    // Requested: waiting for the instance manager.
    if (transition === "False") return undefined;
    if (!reportsAsPrimary(m, inst, fenced, disk)) return undefined;
    return { acted: true, outcome: await this.startTransition(m, c) };
  }

  private async startTransition(m: Managed, c: Cluster): Promise<StepOutcome> {
    const doing = `while fencing primary cluster ${m.key} to demote it`;
    let patch: MergePatch | undefined;
    try {
      patch = fenceAllPatch(c);
    } catch (e) {
      // CNPG's reconcile fails here and retries; nothing is fenced, nothing changes in status.
      this.warnOnce(m, `${doing}: ${errorMessage(e)}`);
      return { keepPhase: true };
    }
    const fence = patch;
    if (fence) await this.withStep(doing, () => this.patchObject(m, fence));
    this.log.info({ cluster: m.key }, `demoting ${m.key}: spec.replica.primary is now ${c.spec.replica?.primary}; ${fence ? "fenced" : "already fenced"}, starting the replica cluster transition`);
    let conditions = c.status?.conditions ?? [];
    conditions = withCondition(conditions, { type: CONDITIONS.designatedPrimaryTransition, status: "False", ...TRANSITION_REQUESTED });
    // Recorded even when the Cluster was fenced already: cleanup lifts any "*" fencing (reconciler.go).
    conditions = withCondition(conditions, { type: CONDITIONS.replicaClusterFencing, status: "True", ...TRANSITION_REQUESTED });
    conditions = withCondition(conditions, { type: CONDITIONS.replicaClusterSwitch, status: "False", ...SWITCH_STARTING });
    return { keepPhase: true, requeue: true, status: { conditions, switchReplicaClusterStatus: { ...c.status?.switchReplicaClusterStatus, inProgress: true } } };
  }

  /**
   * The instance manager's half (instance_controller.go reconcileDesignatedPrimary): the fenced
   * former primary's data directory gets the standby configuration, whether or not it was shut
   * down cleanly, and the transition is reported done.
   */
  private async designatedPrimaryTransition(m: Managed, c: Cluster, inst: PgInstance, params: Readonly<Record<string, string>>): Promise<StepOutcome> {
    await this.withStep(`while demoting ${m.key}: writing the designated primary's standby configuration`, () => inst.configure(this.roleFor(c, "replica"), params));
    m.startedWith = undefined;
    this.log.info({ cluster: m.key }, `demoting ${m.key}: data directory configured as a standby of ${c.spec.replica?.source}`);
    return { requeue: true, status: { conditions: withCondition(c.status?.conditions ?? [], { type: CONDITIONS.designatedPrimaryTransition, status: "True", ...TRANSITION_COMPLETED }) } };
  }

  /** reconciler.go reconcileDemotionToken: token (or a retry every demotionRetryMs), then cleanup. */
  private async reconcileDemotionToken(m: Managed, c: Cluster, inst: PgInstance): Promise<{ acted: boolean; outcome: StepOutcome }> {
    const doing = `while demoting ${m.key}`;
    if (Date.now() < m.nextDemotionCheckAt) return { acted: false, outcome: { keepPhase: true } };
    const generated = await this.generateDemotionToken(m, c, inst);
    if (generated === undefined) {
      m.nextDemotionCheckAt = Date.now() + this.demotionRetryMs;
      return { acted: false, outcome: { keepPhase: true } };
    }
    m.nextDemotionCheckAt = 0;
    const stored = c.status?.demotionToken ?? "";
    const fault = this.faults.get(m.key);
    // "" means "stored token is current": the #11074 fix skips it; the injected fault writes it back.
    const write = fault === "wipeNext" ? generated !== stored : generated !== "" && generated !== stored;
    if (write) {
      await this.withStep(`${doing}: setting the demotion token`, () => this.patchStatus(m, { demotionToken: generated === "" ? null : generated }));
      if (generated === "") this.log.warn({ cluster: m.key }, `demoting ${m.key}: wrote the empty demotion token back (injected fault tokenLoss, CNPG #11074)`);
      else this.log.info({ cluster: m.key }, `demoting ${m.key}: shutdown segment archived as .partial; demotion token published`);
    }
    if (fault === "wipeNext") this.faults.delete(m.key);
    if (fault === "armed") {
      this.faults.set(m.key, "wipeNext");
      this.log.error({ cluster: m.key }, `${doing}: while cleaning up demotion transition metadata: the patch failed (injected fault tokenLoss); retrying`);
      return { acted: true, outcome: { keepPhase: true, requeue: true } };
    }
    return { acted: true, outcome: await this.cleanupTransitionMetadata(m, c) };
  }

  /**
   * pkg/reconciler/replicaclusterswitch/shutdown_wal.go: undefined while pg_controldata does not say
   * "shut down" (or "shut down in recovery"); "" when the stored token is already this one;
   * otherwise the new token, once the segment holding the shutdown checkpoint is archived as .partial.
   */
  private async generateDemotionToken(m: Managed, c: Cluster, inst: PgInstance): Promise<string | undefined> {
    const doing = `while demoting ${m.key}`;
    const cd = await this.withStep(`${doing}: reading pg_controldata`, () => inst.controlData());
    const state = databaseClusterState(cd);
    if (!isShutDown(state)) {
      this.warnOnce(m, `demoting ${m.key}: no demotion token while pg_controldata says "${state}" (not shut down cleanly); retrying every ${this.demotionRetryMs} ms`);
      return undefined;
    }
    const content = await this.withStep(`${doing}: building the demotion token`, async () => tokenFromControlData(cd, this.operatorVersion));
    const token = encodeToken(content);
    if (token === (c.status?.demotionToken ?? "")) return "";
    await this.withStep(`${doing}: archiving the shutdown checkpoint's WAL file`, () => inst.archivePartialSegment(content.redoWalFile));
    return token;
  }

  /** reconciler.go cleanupTransitionMetadata: unfence (only "*" fencing, only if the demotion recorded fencing), mark completed. */
  private async cleanupTransitionMetadata(m: Managed, c: Cluster): Promise<StepOutcome> {
    const unfence = conditionIs(c, CONDITIONS.replicaClusterFencing, "True") && isInstanceFenced(c, FENCE_ALL);
    if (unfence) await this.withStep(`while demoting ${m.key}: unfencing`, () => this.patchObject(m, unfencePatch()));
    this.log.info({ cluster: m.key }, `demoted ${m.key}: ${unfence ? "unfenced, " : ""}completed the replica cluster transition`);
    let conditions = withoutCondition(c.status?.conditions ?? [], CONDITIONS.designatedPrimaryTransition);
    conditions = withoutCondition(conditions, CONDITIONS.replicaClusterFencing);
    conditions = withCondition(conditions, { type: CONDITIONS.replicaClusterSwitch, status: "True", ...SWITCH_COMPLETED });
    return { keepPhase: true, requeue: true, status: { conditions, switchReplicaClusterStatus: { ...c.status?.switchReplicaClusterStatus, inProgress: false } } };
  }

  /**
   * CNPG.md step 4 (with a token) or the failover path (without one). A token is checked only while
   * it differs from status.lastPromotionToken (api/v1/cluster_funcs.go ShouldPromoteFromReplicaCluster);
   * a new token at once, an unmet one again every promotionRetryMs (instance_controller.go).
   */
  private async promote(m: Managed, c: Cluster, inst: PgInstance, params: Readonly<Record<string, string>>): Promise<StepOutcome> {
    const doing = `while promoting ${m.key}`;
    const token = specPromotionToken(c);
    const check = token !== undefined && token !== c.status?.lastPromotionToken;
    if (check) {
      if (m.refusedToken === token) return { phase: PHASES.unrecoverable, phaseReason: PROMOTION_TOKEN_MISMATCH_REASON, ready: false };
      if (m.checkedToken === token && Date.now() < m.nextTokenCheckAt) return promotionWait(c);
      const verdict = await this.withStep(`${doing}: checking the promotion token`, () => checkTokenNow(inst, token));
      m.checkedToken = token;
      if (verdict.verdict === "fatal") {
        m.refusedToken = token;
        this.log.error({ cluster: m.key, why: verdict.reason }, `refusing to promote ${m.key}: ${verdict.reason}`);
        return { phase: PHASES.unrecoverable, phaseReason: PROMOTION_TOKEN_MISMATCH_REASON, ready: false };
      }
      if (verdict.verdict === "wait") {
        m.nextTokenCheckAt = Date.now() + this.promotionRetryMs;
        this.log.info({ cluster: m.key }, `not promoting ${m.key} yet: ${verdict.reason}; checking again in ${this.promotionRetryMs} ms`);
        return promotionWait(c);
      }
    }
    const t0 = Date.now();
    await this.withStep(doing, () => inst.promote());
    // Now a primary on disk; the running settings stay until the next restart (archive_mode=always
    // archives like "on" on a primary), so no restart is needed.
    await this.withStep(`${doing}: rewriting its settings as a primary`, () => inst.configure({ kind: "primary" }, params));
    m.startedWith = JSON.stringify({ role: { kind: "primary" }, params });
    m.checkedToken = undefined;
    m.nextTokenCheckAt = 0;
    this.log.info({ cluster: m.key, ms: Date.now() - t0 }, `promoted ${m.key} ${check ? "after checking its promotion token" : "without checking a token (failover)"} in ${Date.now() - t0} ms`);
    return check ? { status: { lastPromotionToken: token } } : {};
  }

  private async withStep<T>(doing: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw new PgfedError(e instanceof PgfedError ? e.code : "lab.step_failed", `${doing}: ${errorMessage(e)}`, {}, { cause: e });
    }
  }

  private async patchObject(m: Managed, body: MergePatch): Promise<void> {
    await this.api.patchNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, namespace: m.namespace, plural: CNPG_PLURAL, name: m.name, body }, MERGE_PATCH);
  }

  /** A status merge patch written at once, as CNPG's `cli.Status().Patch` in the middle of a step. */
  private async patchStatus(m: Managed, status: MergePatch): Promise<void> {
    await this.api.patchNamespacedCustomObjectStatus({ group: CNPG_GROUP, version: CNPG_VERSION, namespace: m.namespace, plural: CNPG_PLURAL, name: m.name, body: { status } }, MERGE_PATCH);
  }

  // ---------------------------------------------------------------------------------------------
  // Status: phase, conditions and the fields pgfed reads, written only when something changed.
  // ---------------------------------------------------------------------------------------------

  /** Logs a condition that holds the Cluster back once per distinct message (it is seen every pass). */
  private warnOnce(m: Managed, message: string): void {
    if (m.lastWarning === message) return;
    m.lastWarning = message;
    this.log.warn({ cluster: m.key }, message);
  }

  /** Logs a failing step once per distinct message (reconcile retries it every pass). */
  private noteError(m: Managed, message: string): void {
    if (m.lastError === message) return;
    m.lastError = message;
    this.log.error({ cluster: m.key, err: message }, message);
  }

  private async writeStatus(m: Managed, c: Cluster | undefined, outcome: StepOutcome, old: Readonly<Record<string, unknown>>): Promise<void> {
    const inst = m.instance;
    let probe: InstanceProbe | undefined;
    if (inst?.running) {
      try {
        probe = await inst.probe();
      } catch {
        probe = undefined;
      }
    }
    const ready = outcome.ready ?? probe !== undefined;
    const keep = outcome.keepPhase === true && typeof old.phase === "string";
    const next: Record<string, unknown> = {
      phase: keep ? old.phase : (outcome.phase ?? (ready ? PHASES.healthy : PHASES.waitingForInstances)),
      phaseReason: keep ? old.phaseReason : (outcome.phaseReason ?? (ready ? "" : inst?.running ? "Instance is starting" : `Instance ${m.name}-1 is not running`)),
      instances: c?.spec.instances ?? 1,
      readyInstances: ready && probe ? 1 : 0,
      currentPrimary: `${m.name}-1`,
      targetPrimary: `${m.name}-1`,
      writeService: `${m.name}-rw`,
      // Only an instance out of recovery moves timelineID (internal/controller/cluster_status.go): stale on replica clusters.
      ...(probe && !probe.inRecovery && probe.timelineID !== 0 ? { timelineID: probe.timelineID } : {}),
      ...(probe ? { systemID: probe.systemID } : {}),
      ...(c ? clearedTokens(c) : {}),
      ...(outcome.status ?? {}),
    };
    let conditions = (next.conditions as Condition[] | undefined) ?? c?.status?.conditions ?? [];
    conditions = withCondition(conditions, {
      type: CONDITIONS.ready,
      status: ready && probe ? "True" : "False",
      reason: ready && probe ? "ClusterIsReady" : "ClusterIsNotReady",
      message: ready && probe ? "Cluster is Ready" : "Cluster Is Not Ready",
    });
    const archiving = probe && inst ? archivingCondition(probe, await inst.lastArchiveError()) : undefined;
    if (archiving) conditions = withCondition(conditions, archiving);
    next.conditions = conditions;

    const patch: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(next)) {
      if (JSON.stringify(v) !== JSON.stringify(old[k])) patch[k] = v;
    }
    if (Object.keys(patch).length === 0) return;
    await this.api.patchNamespacedCustomObjectStatus(
      // A /status patch is a patch of the whole object; the server applies only its status part.
      { group: CNPG_GROUP, version: CNPG_VERSION, namespace: m.namespace, plural: CNPG_PLURAL, name: m.name, body: { status: patch } },
      MERGE_PATCH,
    );
  }
}

interface ConditionInput {
  type: string;
  status: Condition["status"];
  reason: string;
  message: string;
}

/**
 * ContinuousArchiving from pg_stat_archiver: failing when the last failure is newer than the last
 * success. Messages as CNPG's instance manager writes them: a fixed text on success, the archive
 * command's own error on failure (pkg/management/postgres/webserver/local.go).
 */
function archivingCondition(p: InstanceProbe, lastError: string | undefined): ConditionInput | undefined {
  const a = p.archiver;
  const failedAt = a.lastFailedTime?.getTime() ?? 0;
  const okAt = a.lastArchivedTime?.getTime() ?? 0;
  if (a.failedCount > 0 && failedAt > okAt) {
    return { type: CONDITIONS.continuousArchiving, status: "False", reason: "ContinuousArchivingFailing", message: lastError ?? `archiving ${a.lastFailedWal ?? "WAL"} failed` };
  }
  if (a.archivedCount > 0) return { type: CONDITIONS.continuousArchiving, status: "True", reason: "ContinuousArchivingSuccess", message: "Continuous archiving is working" };
  return undefined;
}

// Condition reasons and messages of the demotion (pkg/reconciler/replicaclusterswitch/reconciler.go, conditions/conditions.go).
const TRANSITION_REQUESTED = { reason: "ReplicaClusterAfterCreation", message: "Enabled external cluster after a node was generated" } as const;
const TRANSITION_COMPLETED = { reason: "TransitionCompleted", message: "Instance Manager has completed the DesignatedPrimary transition" } as const;
const SWITCH_STARTING = { reason: "ReplicaEnabledSetTrue", message: "Starting the Replica cluster transition" } as const;
const SWITCH_COMPLETED = { reason: "ReplicaEnabledSetTrue", message: "Completed the Replica cluster transition" } as const;

/** The stand-in's only instance. */
function podName(m: Managed): string {
  return `${m.name}-1`;
}

/**
 * Whether CNPG would see a primary instance (reconciler.go containsPrimaryInstance): a running one
 * reports `NOT pg_is_in_recovery()`; a fenced one reports the role on disk
 * (pkg/management/postgres/probes.go); a held one (lost node) reports nothing; an unfenced one not
 * running yet is first started by its instance manager.
 */
function reportsAsPrimary(m: Managed, inst: PgInstance, fenced: boolean, disk: "primary" | "replica"): boolean {
  return disk === "primary" && !m.held && (inst.running || fenced);
}

/** pkg/utils/parser.go PgDataState.IsShutdown. */
function isShutDown(state: string): boolean {
  return state === "shut down" || state === "shut down in recovery";
}

/**
 * internal/controller/cluster_status.go: lastPromotionToken is emptied once the spec has no token
 * (only with a replica stanza), demotionToken on a primary; empty + omitempty = the field removed.
 */
function clearedTokens(c: Cluster): Record<string, null> {
  const out: Record<string, null> = {};
  if (c.spec.replica !== undefined && specPromotionToken(c) === undefined && c.status?.lastPromotionToken !== undefined) out.lastPromotionToken = null;
  if (clusterRole(c) === "primary" && c.status?.demotionToken !== undefined) out.demotionToken = null;
  return out;
}

/**
 * Waiting for a promotion token: the operator registers `Promoting to primary cluster` with its
 * reason unless the phase is already that or unrecoverable (internal/controller/cluster_controller.go);
 * the instance manager sets the phase only, so a reason already there stays.
 */
function promotionWait(c: Cluster): StepOutcome {
  const phase = c.status?.phase;
  const keepReason = phase === PHASES.promoting || phase === PHASES.unrecoverable;
  return { phase: PHASES.promoting, phaseReason: keepReason ? (c.status?.phaseReason ?? "") : REPLICA_PROMOTION_IN_PROGRESS_REASON, ready: false };
}

/**
 * internal/management/controller/instance_token.go: restartpoint, then compare with pg_controldata.
 * A token that does not decode is not a verification error there: it is retried, never fatal.
 */
async function checkTokenNow(inst: PgInstance, token: string): Promise<TokenVerdict> {
  let decoded: DemotionToken;
  try {
    decoded = decodeToken(token);
  } catch (e) {
    return { verdict: "wait", reason: `while decoding the promotion token: ${errorMessage(e)}` };
  }
  await inst.checkpoint();
  return checkPromotionToken(decoded, replicaControlPoint(await inst.controlData()));
}

function withoutCondition(conds: readonly Condition[], type: string): Condition[] {
  return conds.filter((c) => c.type !== type);
}

/** Sets a condition like meta.SetStatusCondition: lastTransitionTime changes only when status does. */
function withCondition(conds: readonly Condition[], next: ConditionInput): Condition[] {
  const old = conds.find((c) => c.type === next.type);
  const lastTransitionTime = old && old.status === next.status && old.lastTransitionTime ? old.lastTransitionTime : new Date().toISOString().replace(/\.\d+Z$/, "Z");
  const cond: Condition = { ...next, lastTransitionTime };
  if (old && old.status === cond.status && old.reason === cond.reason && old.message === cond.message) return [...conds];
  return old ? conds.map((c) => (c.type === next.type ? cond : c)) : [...conds, cond];
}

function clusterKey(c: Cluster): string {
  return `${c.metadata.namespace ?? "default"}/${c.metadata.name}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Where a replica restores its source's WAL from: as in real CNPG, the archive server name its own
 * externalClusters entry names (so an entry left on an old server name reads the old path). An
 * entry without an explicit server name reads the source's current archive (a lab simplification:
 * the plugin's default is not modelled).
 */
function sourceArchiveDir(c: Cluster, ext: ExternalCluster, endpoint: ExternalClusterEndpoint): string {
  const serverName = entryArchiveServerName(ext);
  if (serverName === undefined || serverName === null) return endpoint.archiveDir;
  if (!SERVER_NAME.test(serverName)) {
    throw new PgfedError("lab.bad_server_name", `while resolving the source ${JSON.stringify(ext.name)} of ${clusterKey(c)}: archive server name ${JSON.stringify(serverName)} is not a valid object-store server name`);
  }
  return join(endpoint.archiveRoot, serverName);
}
