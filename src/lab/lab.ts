/**
 * The local lab: one NATS server with JetStream, and per region a Kubernetes API stand-in (HTTPS)
 * plus a CNPG operator stand-in running real Postgres, wired as one CNPG distributed topology —
 * federation `demo`, primary in the first region, replica clusters (archive + streaming) in the
 * others. Everything runs on 127.0.0.1 with free ports and is stopped by PID (lab.pid lets the
 * next start clean up after a crash).
 */
import { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { CNPG_GROUP, CNPG_PLURAL, CNPG_VERSION, PHASES, safeParseCluster, type Cluster } from "../cnpg/index.js";
import type { Config } from "../config.js";
import { parseConfig } from "../config.js";
import { PgfedError } from "../errors.js";
import { silentLogger, type Logger } from "../log.js";
import { startCnpgOperator, type CnpgFault, type CnpgOperator } from "./cnpg/operator.js";
import { ExternalClusterRegistry } from "./cnpg/registry.js";
import { startKubeApi, writeKubeconfig, type KubeApiServer, type RequestAttributes } from "./kube-api/index.js";
import { regionIdentities } from "./rbac.js";
import { z } from "zod";
import { connectBus, openLeases, openStateStore, type BusIdentity } from "../bus/index.js";
import { makeLabBusSecurity, type LabBusSecurity } from "./bus-security.js";
import { startNatsCluster, type NatsCluster } from "./nats.js";
import { descendants, isAlive, postgresUser, signalTree, waitFor } from "./proc.js";

export const LAB_NAMESPACE = "db";
const AGENT_KUBECONFIG = "kubeconfig-agent";
const COORDINATOR_KUBECONFIG = "kubeconfig-coordinator";
export const LAB_FEDERATION = "demo";

/** Region names and member names of the lab, in order; the first region holds the primary. */
export const LAB_REGIONS = [
  { region: "eu-west", member: "pg-eu" },
  { region: "us-east", member: "pg-us" },
  { region: "ap-south", member: "pg-ap" },
] as const;

export interface LabOptions {
  /** Lab directory (data, archives, kubeconfig, logs, pid file). */
  dir: string;
  regions?: 2 | 3;
  log?: Logger;
  /** One line per step while the lab starts. */
  onProgress?: (line: string) => void;
  /** `archive_timeout` of the members (lab default 5s). */
  archiveTimeout?: string;
  /** Operator reconcile interval (real CNPG: on events + requeue ~10 s; lab: 100 ms). */
  operatorPollMs?: number;
  /** false: replica clusters restore from the archive only (no connectionParameters, no streaming). Default true. */
  streaming?: boolean;
  /** Promotion token re-check interval of the CNPG stand-in (default CNPG's 10 s). */
  promotionRetryMs?: number;
  /** Demotion token retry interval while a demotion waits for a clean shutdown (default CNPG's 10 s). */
  demotionRetryMs?: number;
  /** `operatorVersion` the stand-in writes into demotion tokens (default LAB_OPERATOR_VERSION). */
  operatorVersion?: string;
  /**
   * true: one NATS server per region (a witness with two regions), routed, JetStream R3, and a lost
   * region loses its NATS server too. Default false: one NATS server for the whole lab. Not the
   * default yet: with servers SIGKILLed, JetStream's RAFT re-elections (4-9 s on 2.9) still stall
   * switchovers under load (docs/operations.md, "NATS topology").
   */
  natsCluster?: boolean;
}

export interface LabMember {
  name: string;
  region: string;
  namespace: string;
  cluster: string;
}

export interface LabRegion {
  name: string;
  member: LabMember;
  kubeApi: KubeApiServer;
  operator: CnpgOperator;
  kubeConfig: KubeConfig;
  /** The agent's and the coordinators' bearer tokens in this region (ServiceAccounts pgfed-agent and pgfed-coordinator, authorized by deploy/'s Roles). */
  kubeTokens: { agent: string; coordinator: string };
  /** The last resource requests of the agent's and coordinators' identities (not the admin's), with the verdict. */
  kubeRequests: KubeRequestRecord[];
  /** What the disaster controls did to it. */
  condition: "up" | "killed" | "partitioned";
}

export interface KubeRequestRecord extends RequestAttributes {
  allowed: boolean;
}

/** How many requests LabRegion.kubeRequests keeps. */
const KUBE_REQUEST_LOG = 20_000;

export interface LabMemberStatus {
  member: string;
  region: string;
  role: "primary" | "replica" | "unknown";
  phase: string;
  running: boolean;
  psql: string;
  timeline?: number;
  condition: LabRegion["condition"];
}

export class Lab {
  readonly dir: string;
  /** The admin's kubeconfig (people, kubectl, the CNPG stand-in): every right. */
  readonly kubeconfigPath: string;
  /** The agents' kubeconfig: a context per region with that region's pgfed-agent token (the config's regions use it). */
  readonly agentKubeconfigPath: string;
  /** The coordinators' kubeconfig (`--regions-kubeconfig`): a context per region with that region's pgfed-coordinator token. */
  readonly coordinatorKubeconfigPath: string;
  readonly config: Config;
  private stopped = false;

  constructor(
    dir: string,
    /** One nats-server per region (and a witness with two regions), routed, JetStream R3. */
    readonly nats: NatsCluster,
    readonly regions: Map<string, LabRegion>,
    readonly token: string,
    private readonly log: Logger,
    /** The NATS CA, identities and authorization (bus-security.ts). */
    readonly busSecurity: LabBusSecurity,
  ) {
    this.dir = dir;
    this.kubeconfigPath = join(dir, "kubeconfig");
    this.agentKubeconfigPath = join(dir, AGENT_KUBECONFIG);
    this.coordinatorKubeconfigPath = join(dir, COORDINATOR_KUBECONFIG);
    this.config = labConfig(this);
  }

  /**
   * What connectBus needs to connect as `who`: "coordinator" (coordinator 1, or `n`) or a region's
   * agent. Only these identities can connect to the lab's NATS.
   */
  busConnection(who: string, n = 1): { servers: string[]; tls: { caFile: string }; identity: BusIdentity; identityFile: string } {
    const sec = this.busSecurity;
    const file = who === "coordinator" ? sec.coordinatorFiles[(n - 1) % sec.coordinatorFiles.length] : sec.agentFiles.get(who);
    if (!file) throw new PgfedError("lab.unknown_region", `no NATS identity for "${who}" (lab regions: ${[...this.regions.keys()].join(", ")})`);
    return { servers: this.nats.urls, tls: { caFile: sec.caFile }, identity: sec.identity(file), identityFile: file };
  }

  /** connectBus's servers, TLS and identity for `who` (see busConnection): a test's own reader connects as coordinator 2. */
  busOptions(who: string, n = 1): { servers: string[]; tls: { caFile: string }; identity: BusIdentity } {
    const { servers, tls, identity } = this.busConnection(who, n);
    return { servers, tls, identity };
  }

  get members(): LabMember[] {
    return [...this.regions.values()].map((r) => r.member);
  }

  region(name: string): LabRegion {
    const r = this.regions.get(name);
    if (!r) throw new PgfedError("lab.unknown_region", `unknown region "${name}" (lab regions: ${[...this.regions.keys()].join(", ")})`);
    return r;
  }

  regionOfMember(member: string): LabRegion {
    const r = [...this.regions.values()].find((x) => x.member.name === member);
    if (!r) throw new PgfedError("lab.unknown_member", `unknown member "${member}"`);
    return r;
  }

  /** psql connection string of a member's instance. */
  psql(member: string): string {
    const r = this.regionOfMember(member);
    return r.operator.instance(LAB_NAMESPACE, r.member.cluster)?.psql ?? "(not running)";
  }

  async getCluster(member: string): Promise<Cluster> {
    const r = this.regionOfMember(member);
    const raw = r.kubeApi.store.read("clusters", { namespace: LAB_NAMESPACE, name: r.member.cluster });
    const parsed = safeParseCluster(raw);
    if (!parsed.ok) throw parsed.error;
    return parsed.cluster;
  }

  async status(): Promise<LabMemberStatus[]> {
    const out: LabMemberStatus[] = [];
    for (const r of this.regions.values()) {
      const inst = r.operator.instance(LAB_NAMESPACE, r.member.cluster);
      let role: LabMemberStatus["role"] = "unknown";
      let phase = "(no object)";
      let timeline: number | undefined;
      try {
        const c = await this.getCluster(r.member.name);
        const rep = c.spec.replica;
        role = rep?.primary === undefined ? "primary" : rep.primary === (rep.self ?? c.metadata.name) ? "primary" : "replica";
        phase = c.status?.phase ?? "(no status)";
        timeline = c.status?.timelineID;
      } catch {
        // keep unknown
      }
      out.push({
        member: r.member.name,
        region: r.name,
        role,
        phase,
        running: inst?.running === true,
        psql: inst?.psql ?? "(not running)",
        condition: r.condition,
        ...(timeline !== undefined ? { timeline } : {}),
      });
    }
    return out;
  }

  /** A lost region: Postgres SIGKILLed (postmaster and every child) and held down, kube-api refusing connections. */
  async killRegion(name: string): Promise<void> {
    const r = this.region(name);
    await r.operator.killInstance(LAB_NAMESPACE, r.member.cluster, { hold: true });
    await r.kubeApi.faults.set({ partitioned: true });
    if (this.nats.sites.includes(name)) await this.nats.server(name).kill();
    r.condition = "killed";
    this.log.warn({ region: name }, `region ${name} killed: Postgres SIGKILLed, Kubernetes API refusing connections${this.nats.sites.includes(name) ? ", its NATS server SIGKILLed" : ""}`);
  }

  /** Arms a fault in the CNPG stand-in of `member`'s region for that member's Cluster (fires once; see CnpgOperator.injectFault). */
  injectFault(member: string, fault: CnpgFault): void {
    const r = this.regionOfMember(member);
    r.operator.injectFault(r.member.namespace, r.member.cluster, fault);
    this.log.warn({ member, fault }, `fault ${fault} armed for ${member}'s next demotion`);
  }

  /** A partitioned region: its kube-api refuses connections; Postgres keeps running and serving. */
  async partitionRegion(name: string): Promise<void> {
    const r = this.region(name);
    await r.kubeApi.faults.set({ partitioned: true });
    r.condition = "partitioned";
    this.log.warn({ region: name }, `region ${name} partitioned: Kubernetes API refusing connections, Postgres still running`);
  }

  /**
   * Brings a killed or partitioned region back in this order: its Kubernetes API answers, then
   * `beforeInstance` runs (the control plane starts the region's agent, whose fence sweep fences a
   * former primary the federation record no longer designates), then the CNPG stand-in restarts
   * the instance, reading the Cluster first like CNPG's instance manager: a fenced Cluster keeps
   * Postgres stopped. Restarting first would let a former primary take writes from a spec that
   * still names it primary (CNPG cannot fence across regions, CNPG.md). When `beforeInstance`
   * fails the instance stays down (the region's API stays up) and the error is thrown.
   */
  async restoreRegion(name: string, opts: { beforeInstance?: () => Promise<void> } = {}): Promise<void> {
    const r = this.region(name);
    const t0 = Date.now();
    await r.kubeApi.faults.clear();
    // Its NATS server rejoins the cluster (same store: JetStream catches the replicas up) before the agent connects.
    const site = this.nats.sites.includes(name) ? this.nats.server(name) : undefined;
    if (site && !site.running) await site.restart();
    const apiMs = Date.now() - t0;
    await opts.beforeInstance?.();
    const beforeMs = Date.now() - t0;
    if (r.condition === "killed") await r.operator.restartInstance(LAB_NAMESPACE, r.member.cluster);
    r.condition = "up";
    this.log.info({ region: name, apiMs, beforeInstanceMs: beforeMs, totalMs: Date.now() - t0 }, `region ${name} restored: Kubernetes API answering after ${apiMs} ms, agent ready after ${beforeMs} ms, instance restarted (or kept stopped if fenced) after ${Date.now() - t0} ms`);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const r of this.regions.values()) {
      await r.operator.stop().catch(() => r.operator.stop({ kill: true }));
      await r.kubeApi.stop();
    }
    await this.nats.stop();
    await rm(join(this.dir, PID_FILE), { force: true });
  }
}

const PID_FILE = "lab.pid";

/** What lab.pid records: the lab process and every server it started, to clean up after a crash. */
interface PidRecord {
  labPid: number;
  dir: string;
  pids: number[];
}

/** True when `pid` runs a command line that mentions the lab directory (so it is really ours). */
function belongsToLab(pid: number, dir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").includes(dir);
  } catch {
    return false;
  }
}

/**
 * Cleans up after a lab process that died without stopping its servers. Refuses when another lab
 * is still running on this directory. Only PIDs whose command line names this lab dir are killed.
 */
export async function cleanupStaleLab(dir: string, log: Logger = silentLogger()): Promise<number> {
  const file = join(dir, PID_FILE);
  if (!existsSync(file)) return 0;
  let rec: PidRecord;
  try {
    rec = JSON.parse(readFileSync(file, "utf8")) as PidRecord;
  } catch {
    await rm(file, { force: true });
    return 0;
  }
  if (rec.labPid !== process.pid && isAlive(rec.labPid) && belongsToLabProcess(rec.labPid)) {
    throw new PgfedError("lab.already_running", `a lab is already running in ${dir} (pid ${rec.labPid}); stop it with \`pgfed lab stop --dir ${dir}\``);
  }
  let killed = 0;
  for (const pid of rec.pids) {
    if (isAlive(pid) && belongsToLab(pid, dir)) {
      signalTree(pid, "SIGKILL");
      killed++;
    }
  }
  await waitFor("stale lab processes to exit", () => rec.pids.every((p) => !isAlive(p) || !belongsToLab(p, dir)), 10_000).catch(() => undefined);
  await rm(file, { force: true });
  if (killed > 0) log.warn({ dir, killed }, `cleaned up ${killed} process(es) left by a lab that did not stop`);
  return killed;
}

function belongsToLabProcess(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmd.includes("lab") || cmd.includes("vitest");
  } catch {
    return false;
  }
}

/** Records the lab's own PID and its servers' PIDs (postmasters, nats-server) in lab.pid. */
export async function writePidFile(lab: Lab): Promise<void> {
  const pids = [...lab.nats.pids];
  for (const r of lab.regions.values()) {
    const p = r.operator.instance(LAB_NAMESPACE, r.member.cluster)?.pid;
    if (p !== undefined) pids.push(p, ...descendants(p));
  }
  const rec: PidRecord = { labPid: process.pid, dir: lab.dir, pids };
  await writeFile(join(lab.dir, PID_FILE), `${JSON.stringify(rec)}\n`);
}

function clusterManifest(member: LabMember, primary: LabMember, all: LabMember[], archiveTimeout: string, source: LabMember, streaming: boolean): object {
  const isPrimary = member.name === primary.name;
  return {
    apiVersion: `${CNPG_GROUP}/${CNPG_VERSION}`,
    kind: "Cluster",
    metadata: { name: member.cluster, namespace: member.namespace, labels: { "pgfed.io/federation": LAB_FEDERATION } },
    spec: {
      instances: 1,
      postgresql: { parameters: { archive_timeout: archiveTimeout } },
      bootstrap: isPrimary ? { initdb: { database: "app", owner: "app" } } : { pg_basebackup: { source: source.name } },
      replica: { self: member.name, primary: primary.name, source: source.name },
      // The WAL archive, as the Barman Cloud plugin declares it (the stand-in archives into a local
      // directory named after the server name, which defaults to the Cluster's name; a rejoin sets a fresh one).
      plugins: [{ name: "barman-cloud.cloudnative-pg.io", isWALArchiver: true, parameters: { barmanObjectName: "lab-archive" } }],
      // Each entry names the member's archive as a replica reads it (plugin + serverName, as real CNPG
      // needs for archive replay); the stand-in restores from the directory that server name names.
      externalClusters: all.map((m) => ({
        name: m.name,
        plugin: { name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: "lab-archive", serverName: m.cluster } },
        ...(streaming ? { connectionParameters: { host: `${m.cluster}-rw.${m.namespace}.svc`, user: "streaming_replica", dbname: "postgres", sslmode: "disable" } } : {}),
      })),
    },
  };
}

/** The pgfed config that drives the lab (what `pgfed run --config` would read). */
function labConfig(lab: Lab): Config {
  return parseConfig(labConfigDocument(lab), "lab");
}

/** The lab's config as a config file would hold it (durations as text), e.g. to write it for `pgfed run`. */
export function labConfigDocument(lab: Lab) {
  return {
    federations: [
      {
        name: LAB_FEDERATION,
        rpo: { budget: "30s", warnAt: 0.5 },
        // On a NATS cluster a lease must outlast a RAFT re-election (4-9 s on nats-server 2.9) or a renewal waiting on it fences the primary.
        failover: { mode: "automatic", leaseTtl: lab.nats.sites.length > 1 ? "12s" : "5s", clockSkewMargin: "1s" },
        switchover: { tokenTimeout: "60s", promoteTimeout: "60s" },
        sampleInterval: "1s",
        members: [...lab.regions.values()].map((r) => {
          const inst = r.operator.instance(LAB_NAMESPACE, r.member.cluster);
          return {
            ...r.member,
            postgres: { host: "127.0.0.1", port: inst?.port ?? 5432, user: "postgres", database: "postgres", sslmode: "disable" },
          };
        }),
      },
    ],
    // The agents' own credentials: the lab's API servers authorize them with deploy/'s Roles.
    regions: [...lab.regions.values()].map((r) => ({ name: r.name, kubeconfig: { path: lab.agentKubeconfigPath, context: r.name } })),
    // The config names coordinator 1's identity; every other process is given its own (PGFED_NATS_IDENTITY_FILE, lab.busConnection).
    bus: { servers: lab.nats.urls, replicas: labReplicas(lab.nats.sites), tls: { caFile: lab.busSecurity.caFile }, identityFile: lab.busSecurity.coordinatorFiles[0], coordinatorKeys: lab.busSecurity.coordinatorKeys },
    api: { listen: "127.0.0.1:0" },
  };
}

/**
 * One NATS server per region, and a witness when there are two: JetStream needs a majority of
 * three to tell the loss of one site from a partition (docs/operations.md, NATS topology).
 */
export function natsSites(regions: readonly string[]): string[] {
  return regions.length >= 3 ? [...regions] : [...regions, ...Array.from({ length: 3 - regions.length }, (_, i) => (i === 0 ? "witness" : `witness-${i + 1}`))];
}

/** Replicas of the stream and buckets: three, one per site (fewer only on fewer servers). */
function labReplicas(sites: readonly string[]): number {
  return Math.min(3, sites.length);
}

/** Connects once as coordinator 1 to create the stream and the KV buckets, then hangs up. */
async function bootstrapBus(urls: string[], replicas: number, security: LabBusSecurity, log: Logger): Promise<void> {
  const file = security.coordinatorFiles[0] as string;
  const bus = await connectBus({ servers: urls, name: "pgfed-lab-bootstrap", log, tls: { caFile: security.caFile }, identity: security.identity(file), stream: { replicas } });
  try {
    await openLeases(bus);
    await openStateStore(bus, z.unknown());
  } finally {
    await bus.close();
  }
}

async function waitHealthy(api: CustomObjectsApi, m: LabMember, timeoutMs: number): Promise<void> {
  let last = "(none)";
  await waitFor(
    `Cluster ${m.namespace}/${m.cluster} in ${m.region} to be healthy`,
    async () => {
      const raw: unknown = await api.getNamespacedCustomObject({ group: CNPG_GROUP, version: CNPG_VERSION, plural: CNPG_PLURAL, namespace: m.namespace, name: m.cluster });
      const parsed = safeParseCluster(raw);
      if (!parsed.ok) return false;
      last = `${parsed.cluster.status?.phase ?? "(no phase)"}${parsed.cluster.status?.phaseReason ? `: ${parsed.cluster.status.phaseReason}` : ""}`;
      return parsed.cluster.status?.phase === PHASES.healthy && parsed.cluster.status.readyInstances === 1;
    },
    timeoutMs,
    100,
  ).catch((e: unknown) => {
    throw new PgfedError("lab.start_failed", `${(e as Error).message} (last phase: ${last})`);
  });
}

/**
 * When we are root, Postgres runs as the `postgres` user and must reach the lab directory: open
 * the lab dir itself (a mkdtemp dir is 0700) and name the first ancestor it cannot traverse.
 */
async function ensurePostgresCanReach(dir: string): Promise<void> {
  if (!postgresUser()) return;
  await chmod(dir, 0o755);
  for (let p = dirname(dir); ; p = dirname(p)) {
    const mode = (await stat(p)).mode;
    if ((mode & 0o001) === 0)
      throw new PgfedError(
        "lab.dir_unreachable",
        `the lab runs Postgres as the postgres user, which cannot enter ${p} (mode ${(mode & 0o777).toString(8)}); use --dir under a directory it can reach (e.g. /tmp/pgfed-lab) or chmod o+x ${p}`,
      );
    if (p === dirname(p)) return;
  }
}

/** Starts the lab; on any failure everything already started is stopped before the error is thrown. */
export async function startLab(opts: LabOptions): Promise<Lab> {
  const dir = resolve(opts.dir);
  const log = opts.log ?? silentLogger();
  const progress = opts.onProgress ?? (() => undefined);
  const count = opts.regions ?? 2;
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await ensurePostgresCanReach(dir);
  await cleanupStaleLab(dir, log);
  // Every start is a fresh lab: Postgres data or NATS state (KV epochs) left by an earlier run would not match the new clusters.
  for (const sub of ["data", "nats"]) await rm(join(dir, sub), { recursive: true, force: true });
  await writeFile(join(dir, PID_FILE), `${JSON.stringify({ labPid: process.pid, dir, pids: [] } satisfies PidRecord)}\n`);

  const started: { stop: () => Promise<void> }[] = [];
  try {
    const token = randomBytes(24).toString("hex");
    const members: LabMember[] = LAB_REGIONS.slice(0, count).map((x) => ({ name: x.member, region: x.region, namespace: LAB_NAMESPACE, cluster: x.member }));
    progress("starting NATS with JetStream (TLS, one nkey identity per process)");
    const security = await makeLabBusSecurity(
      join(dir, "nats", "security"),
      members.map((m) => ({ region: m.region, members: [{ federation: LAB_FEDERATION, member: m.name }] })),
    );
    const sites = opts.natsCluster === true ? natsSites(members.map((m) => m.region)) : ["nats"];
    const nats = await startNatsCluster({ dir: join(dir, "nats"), sites, log, settings: security.serverSettings, routeTls: security.serverTls });
    started.push(nats);
    // The stream and the KV buckets, as the first coordinator would make them: agents may only read them.
    await bootstrapBus(nats.urls, labReplicas(sites), security, log);
    const primary = members[0] as LabMember;
    const registry = new ExternalClusterRegistry();
    const kubeApis = new Map<string, KubeApiServer>();
    const kubeTokens = new Map<string, { agent: string; coordinator: string }>();
    const kubeRequests = new Map<string, KubeRequestRecord[]>();
    for (const m of members) {
      progress(`starting Kubernetes API for region ${m.region}`);
      const ids = regionIdentities(
        { namespace: m.namespace, clusters: [m.cluster], secrets: [] },
        { agent: randomBytes(24).toString("hex"), coordinator: randomBytes(24).toString("hex") },
      );
      const requests: KubeRequestRecord[] = [];
      const api = await startKubeApi({
        region: m.region,
        tls: { dir: join(dir, "tls") },
        tokens: { [token]: { name: "lab-admin", allow: [{ verbs: "*", resources: "*" }] }, ...ids.tokens },
        rbac: ids.rbac,
        onRequest: (a, allowed) => {
          if (a.user === "lab-admin") return;
          requests.push({ ...a, allowed });
          if (requests.length > KUBE_REQUEST_LOG) requests.splice(0, requests.length - KUBE_REQUEST_LOG);
          if (!allowed) log.warn({ region: m.region, user: a.user, verb: a.verb, resource: a.resource, name: a.name }, "Kubernetes API request forbidden by deploy/'s RBAC");
        },
        namespaces: [LAB_NAMESPACE],
        logger: log.child({ region: m.region, component: "kube-api" }),
      });
      started.push(api);
      kubeApis.set(m.region, api);
      kubeTokens.set(m.region, { agent: ids.agentToken, coordinator: ids.coordinatorToken });
      kubeRequests.set(m.region, requests);
    }
    const kubeconfigPath = join(dir, "kubeconfig");
    const entries = (who: "admin" | "agent" | "coordinator") =>
      members.map((m) => {
        const api = kubeApis.get(m.region) as KubeApiServer;
        const t = kubeTokens.get(m.region) as { agent: string; coordinator: string };
        return { name: m.region, url: api.url, token: who === "admin" ? token : t[who], ...(api.caFile ? { caFile: api.caFile } : {}) };
      });
    await writeKubeconfig(kubeconfigPath, entries("admin"));
    await writeKubeconfig(join(dir, AGENT_KUBECONFIG), entries("agent"));
    await writeKubeconfig(join(dir, COORDINATOR_KUBECONFIG), entries("coordinator"));

    const regions = new Map<string, LabRegion>();
    for (const m of members) {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfigPath);
      kc.setCurrentContext(m.region);
      const operator = await startCnpgOperator({
        region: m.region,
        kube: kc,
        dataDir: join(dir, "data"),
        registry,
        log: log.child({ region: m.region, component: "cnpg" }),
        ...(opts.operatorPollMs !== undefined ? { pollIntervalMs: opts.operatorPollMs } : {}),
        ...(opts.promotionRetryMs !== undefined ? { promotionRetryMs: opts.promotionRetryMs } : {}),
        ...(opts.demotionRetryMs !== undefined ? { demotionRetryMs: opts.demotionRetryMs } : {}),
        ...(opts.operatorVersion !== undefined ? { operatorVersion: opts.operatorVersion } : {}),
      });
      started.push(operator);
      regions.set(m.region, {
        name: m.region,
        member: m,
        kubeApi: kubeApis.get(m.region) as KubeApiServer,
        operator,
        kubeConfig: kc,
        kubeTokens: kubeTokens.get(m.region) as { agent: string; coordinator: string },
        kubeRequests: kubeRequests.get(m.region) ?? [],
        condition: "up",
      });
    }

    const archiveTimeout = opts.archiveTimeout ?? "5s";
    for (const m of members) {
      const r = regions.get(m.region) as LabRegion;
      const api = r.kubeConfig.makeApiClient(CustomObjectsApi);
      progress(m === primary ? `creating primary cluster ${m.name} in ${m.region} (initdb)` : `creating replica cluster ${m.name} in ${m.region} (base backup from ${primary.name})`);
      await api.createNamespacedCustomObject({
        group: CNPG_GROUP,
        version: CNPG_VERSION,
        plural: CNPG_PLURAL,
        namespace: m.namespace,
        // CNPG.md: the primary's source is whom it follows after a demotion, never itself.
        body: clusterManifest(m, primary, members, archiveTimeout, m === primary ? (members.find((x) => x !== primary) ?? primary) : primary, opts.streaming ?? true),
      });
      await waitHealthy(api, m, 90_000);
    }

    const lab = new Lab(dir, nats, regions, token, log, security);
    await writePidFile(lab);
    return lab;
  } catch (e) {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    await rm(join(dir, PID_FILE), { force: true });
    throw e;
  }
}
