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
 * (pkg/reconciler/replicaclusterswitch; replica-switch.ts), then the instance manager's part
 * (fencing, designated primary transition, start, promotion token check;
 * internal/management/controller; promotion.ts); status.ts writes what the pass found.
 */
import { dirname, join } from "node:path";
import { ApiException, CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import {
  CNPG_GROUP,
  CNPG_PLURAL,
  CNPG_VERSION,
  CONDITIONS,
  type Cluster,
  type ExternalCluster,
  type MergePatch,
  PHASES,
  SERVER_NAME,
  archiveServerName,
  entryArchiveServerName,
  clusterRole,
  conditionIs,
  safeParseCluster,
  selfName,
} from "../../cnpg/index.js";
import { PgfedError, errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import { silentLogger } from "../../log.js";
import { type InstanceRole, PgInstance, checkParameters } from "./instance.js";
import { isInstanceFenced } from "./fencing.js";
import { type PromotionOperator, promote } from "./promotion.js";
import { type ExternalClusterEndpoint, ExternalClusterRegistry } from "./registry.js";
import { type SwitchOperator, type TokenLossState, designatedPrimaryTransition, reconcileReplicaSwitch } from "./replica-switch.js";
import { type ClusterRef, writeStatus } from "./status.js";
import { type StepOutcome, withStep } from "./step.js";

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
  private readonly faults = new Map<string, TokenLossState>();
  private readonly registry: ExternalClusterRegistry;
  private readonly log: Logger;
  /** What the demotion, the promotion and the status writing (replica-switch.ts, promotion.ts, status.ts) may use of this operator. */
  private readonly steps: SwitchOperator & PromotionOperator;
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
    this.registry = opts.registry;
    this.log = (opts.log ?? silentLogger()).child({ region: opts.region, component: "cnpg-operator" });
    this.steps = {
      log: this.log,
      promotionRetryMs: opts.promotionRetryMs ?? CNPG_PROMOTION_RETRY_MS,
      demotionRetryMs: opts.demotionRetryMs ?? CNPG_DEMOTION_RETRY_MS,
      operatorVersion: opts.operatorVersion ?? LAB_OPERATOR_VERSION,
      faults: this.faults,
      patchObject: (m, body) => this.patchObject(m, body),
      patchStatus: (m, status) => this.patchStatus(m, status),
      replicaRole: (c) => this.roleFor(c, "replica"),
    };
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
    // A lost node dies at once: SIGKILL before the pass in flight ends, or that pass, seeing the
    // hold, would shut Postgres down cleanly (a kinder end than a crash: CNPG could then demote it).
    await m.instance.kill();
    await m.inFlight;
    // A start that checked the hold just before it was set is killed too.
    if (m.instance.running) await m.instance.kill();
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
      await writeStatus(this.steps, m, undefined, { phase: PHASES.unrecoverable, phaseReason: parsed.error.message, ready: false }, rawStatus);
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
      await writeStatus(this.steps, m, c, outcome, c.status ?? {});
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

    const operator = clusterRole(c) === "replica" ? await reconcileReplicaSwitch(this.steps, m, c, inst, fenced, disk) : undefined;
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
      if (fenced && !m.held && desired === "replica" && conditionIs(c, CONDITIONS.designatedPrimaryTransition, "False")) return { ...down, ...(await designatedPrimaryTransition(this.steps, m, c, inst, params)) };
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
      await withStep(`while starting ${m.key}`, async () => {
        await inst.configure(role, params);
        m.startedWith = fingerprint;
        await inst.start();
      });
      this.log.info({ cluster: m.key, port: inst.port }, `started ${m.key} as ${role.kind === "primary" ? "a primary" : "a replica"}`);
    }

    if (desired === "primary" && disk === "replica") return promote(this.steps, m, c, inst, params);
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
      await writeStatus(this.steps, m, c, { phase: PHASES.settingUpPrimary, phaseReason: "Running initdb", ready: false }, c.status ?? {});
      this.log.info({ cluster: m.key }, `bootstrapping ${m.key} with initdb`);
      await inst.initdb();
      return { phase: PHASES.settingUpPrimary, ready: false, requeue: true };
    }
    const { endpoint } = this.resolveSource(c, cloneSource);
    if (!endpoint.running()) {
      return { phase: PHASES.creatingReplica, phaseReason: `waiting for external cluster ${cloneSource} to run before cloning it`, ready: false };
    }
    await writeStatus(this.steps, m, c, { phase: PHASES.creatingReplica, phaseReason: `Cloning from ${cloneSource} with pg_basebackup`, ready: false }, c.status ?? {});
    this.log.info({ cluster: m.key, source: cloneSource }, `bootstrapping ${m.key} with pg_basebackup from ${cloneSource}`);
    await inst.cloneFrom({ ...endpoint.connection, user: "streaming_replica" });
    // The clone is a standby until the role step says otherwise.
    await inst.configure(desired === "replica" ? this.roleFor(c, "replica") : { kind: "primary" }, c.spec.postgresql?.parameters ?? {});
    return { phase: PHASES.creatingReplica, ready: false, requeue: true };
  }

  private async patchObject(m: ClusterRef, body: MergePatch): Promise<void> {
    await this.api.patchNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, namespace: m.namespace, plural: CNPG_PLURAL, name: m.name, body }, MERGE_PATCH);
  }

  /** A status merge patch, as CNPG's `cli.Status().Patch` (also in the middle of a step). */
  private async patchStatus(m: ClusterRef, status: Readonly<Record<string, unknown>>): Promise<void> {
    // A /status patch is a patch of the whole object; the server applies only its status part.
    await this.api.patchNamespacedCustomObjectStatus({ group: CNPG_GROUP, version: CNPG_VERSION, namespace: m.namespace, plural: CNPG_PLURAL, name: m.name, body: { status } }, MERGE_PATCH);
  }

  /** Logs a failing step once per distinct message (reconcile retries it every pass). */
  private noteError(m: Managed, message: string): void {
    if (m.lastError === message) return;
    m.lastError = message;
    this.log.error({ cluster: m.key, err: message }, message);
  }
}

/** The stand-in's only instance. */
function podName(m: Managed): string {
  return `${m.name}-1`;
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
