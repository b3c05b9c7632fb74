/**
 * The chaos suite's world: a lab (real Postgres and NATS, the Kubernetes API and CNPG stand-ins)
 * with pgfed's control plane as real processes — `pgfed run` for each region's agent and for two
 * coordinators — so a kill is a real SIGKILL. Every process reaches NATS, and each coordinator
 * each region's Kubernetes API, through its own link (src/lab/link.ts): a region's partition cuts
 * its agent off the bus and the coordinators off its API, while clients in the region (the
 * workload) still reach its Postgres, as in a real split between regions.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { tokenLine } from "../../src/api/auth.js";
import { ApiClient } from "../../src/cli/client.js";
import type { FederationView } from "../../src/coordinator/index.js";
import { writeKubeconfig } from "../../src/lab/kube-api/kubeconfig.js";
import { LAB_FEDERATION, LAB_NAMESPACE, labConfigDocument, startLab, type Lab } from "../../src/lab/lab.js";
import { startLink, type Link } from "../../src/lab/link.js";
import { freePort, spawnManaged, waitFor, type ManagedProcess } from "../../src/lab/proc.js";
import type { Logger } from "../../src/log.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const PGFED = join(ROOT, "bin/pgfed.js");
export const COORDINATORS = ["c1", "c2"] as const;
export type CoordinatorName = (typeof COORDINATORS)[number];

export interface WorldOptions {
  dir: string;
  regions: 2 | 3;
  streaming: boolean;
  log: Logger;
  onProgress?: (line: string) => void;
}

interface Proc {
  name: string;
  args: string[];
  logFile: string;
  proc: ManagedProcess | undefined;
}

export class World {
  private readonly procs = new Map<string, Proc>();
  /** How many times each process was started (for its log marker). */
  private readonly starts = new Map<string, number>();

  private constructor(
    readonly opts: WorldOptions,
    readonly lab: Lab,
    readonly token: string,
    /** Per process name: its link to NATS. */
    /** Per process, one link to each NATS server (its servers list names them all). */
    readonly natsLinks: Map<string, Link[]>,
    /** Per coordinator, per region: its link to that region's Kubernetes API. */
    readonly kubeLinks: Map<string, Map<string, Link>>,
    readonly apiUrls: Map<CoordinatorName, string>,
  ) {}

  static async start(opts: WorldOptions): Promise<World> {
    const lab = await startLab({ dir: join(opts.dir, "lab"), regions: opts.regions, streaming: opts.streaming, log: opts.log, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) });
    const natsLinks = new Map<string, Link[]>();
    const kubeLinks = new Map<string, Map<string, Link>>();
    const apiUrls = new Map<CoordinatorName, string>();
    const token = randomBytes(24).toString("hex");
    let world: World | undefined;
    try {
      const natsPorts = lab.nats.urls.map((u) => Number(new URL(u).port));
      const linkAll = (): Promise<Link[]> => Promise.all(natsPorts.map((port) => startLink({ host: "127.0.0.1", port }, "nats")));
      const regions = [...lab.regions.keys()];
      const tokensFile = join(opts.dir, "tokens");
      await writeFile(tokensFile, `${tokenLine("chaos", "operator", token)}\n`, { mode: 0o600 });
      await mkdir(join(opts.dir, "logs"), { recursive: true });
      const base = labConfigDocument(lab);
      const procs: { name: string; args: string[] }[] = [];
      for (const region of regions) {
        const name = `agent-${region}`;
        const links = await linkAll();
        natsLinks.set(name, links);
        const file = join(opts.dir, `${name}.yaml`);
        // Each process its own NATS identity (the lab's server refuses anyone else); everything else of bus as the lab's config.
        await writeFile(file, stringify({ ...base, bus: { ...base.bus, servers: links.map((l) => l.url), identityFile: lab.busConnection(region).identityFile } }));
        procs.push({ name, args: ["run", "--config", file, "--roles", "agent", "--regions", region] });
      }
      for (const [i, c] of COORDINATORS.entries()) {
        const links = await linkAll();
        natsLinks.set(c, links);
        const perRegion = new Map<string, Link>();
        const entries = [];
        for (const region of regions) {
          const api = lab.region(region).kubeApi;
          const u = new URL(api.url);
          const kl = await startLink({ host: u.hostname, port: Number(u.port) }, u.protocol.replace(":", ""));
          perRegion.set(region, kl);
          entries.push({ name: region, url: kl.url, token: lab.token, ...(api.caFile ? { caFile: api.caFile } : {}) });
        }
        kubeLinks.set(c, perRegion);
        const kubeconfig = join(opts.dir, `${c}.kubeconfig`);
        await writeKubeconfig(kubeconfig, entries);
        const port = await freePort();
        apiUrls.set(c, `http://127.0.0.1:${port}`);
        const file = join(opts.dir, `${c}.yaml`);
        await writeFile(file, stringify({ ...base, bus: { ...base.bus, servers: links.map((l) => l.url), identityFile: lab.busConnection("coordinator", i + 1).identityFile }, api: { listen: `127.0.0.1:${port}`, tokensFrom: tokensFile } }));
        procs.push({ name: c, args: ["run", "--config", file, "--roles", "coordinator", "--id", c, "--regions-kubeconfig", kubeconfig] });
      }
      const w = new World(opts, lab, token, natsLinks, kubeLinks, apiUrls);
      world = w;
      for (const p of procs) w.procs.set(p.name, { ...p, logFile: join(opts.dir, "logs", `${p.name}.log`), proc: undefined });
      // Agents first (their start-up sweep), then both coordinators at once.
      await Promise.all(regions.map((r) => w.startProcess(`agent-${r}`)));
      await Promise.all(COORDINATORS.map((c) => w.startProcess(c)));
      await waitFor("a coordinator to lead with pg-eu primary and lag figures for every replica", async () => {
        const f = await world?.federation().catch(() => undefined);
        const replicas = f?.members.filter((m) => m.name !== f.designatedPrimary) ?? [];
        return f?.designatedPrimary === "pg-eu" && replicas.length > 0 && replicas.every((m) => m.lagSeconds !== null);
      }, 90_000, 250);
      return world;
    } catch (e) {
      if (world) await world.stop();
      else {
        for (const l of [...natsLinks.values()].flat()) await l.close();
        await lab.stop();
      }
      throw e;
    }
  }

  get regions(): string[] {
    return [...this.lab.regions.keys()];
  }

  get members(): string[] {
    return this.lab.members.map((m) => m.name);
  }

  regionOf(member: string): string {
    return this.lab.regionOfMember(member).name;
  }

  running(name: string): boolean {
    return this.procs.get(name)?.proc?.running ?? false;
  }

  /** Starts `pgfed run` for `name` and resolves once it says it is ready (an agent: after its fence sweep). */
  async startProcess(name: string): Promise<void> {
    const p = this.procs.get(name);
    if (!p) throw new Error(`no process ${name}`);
    if (p.proc?.running) return;
    const n = (this.starts.get(name) ?? 0) + 1;
    this.starts.set(name, n);
    const marker = `--- chaos: start ${n} of ${name} at ${new Date().toISOString()}`;
    await writeFile(p.logFile, `${marker}\n`, { flag: "a" });
    p.proc = spawnManaged(process.execPath, [PGFED, ...p.args], { name, cwd: ROOT, logFile: p.logFile, env: { PGFED_LOG_LEVEL: "info", NO_COLOR: "1" } });
    const proc = p.proc;
    await waitFor(`${name} to be ready (log ${p.logFile})`, async () => {
      if (!proc.running) throw new Error(`${name} exited while starting; see ${p.logFile}`);
      const text = await readFile(p.logFile, "utf8");
      return text.slice(text.lastIndexOf(marker)).includes("pgfed run ready");
    }, 60_000, 100);
  }

  /** SIGKILL, no goodbye: leases stay until they expire. */
  async killProcess(name: string): Promise<void> {
    await this.procs.get(name)?.proc?.kill();
  }

  /** The coordinator that holds the lease now, if any answers. */
  async leader(): Promise<CoordinatorName | undefined> {
    for (const c of COORDINATORS) {
      if (!this.running(c)) continue;
      const res = await fetch(`${this.apiUrls.get(c)}/readyz`, { signal: AbortSignal.timeout(1_000) }).catch(() => undefined);
      if (res?.ok) {
        const body = (await res.json().catch(() => ({}))) as { leader?: boolean; role?: string };
        if (body.leader === true || body.role === "leader") return c;
      }
    }
    return undefined;
  }

  /** An API client on a running coordinator (a follower redirects to the leader). */
  client(prefer?: CoordinatorName): ApiClient {
    const c = prefer && this.running(prefer) ? prefer : (COORDINATORS.find((x) => this.running(x)) ?? "c1");
    return new ApiClient({ server: this.apiUrls.get(c) as string, token: this.token, source: "chaos" });
  }

  async federation(): Promise<FederationView> {
    let last: unknown;
    for (const c of COORDINATORS) {
      if (!this.running(c)) continue;
      try {
        return await this.client(c).federation(LAB_FEDERATION);
      } catch (e) {
        last = e;
      }
    }
    throw last instanceof Error ? last : new Error("no coordinator answers");
  }

  /** A lost region: Postgres SIGKILLed and held down, its API refusing, its agent SIGKILLed. */
  async loseRegion(region: string): Promise<void> {
    await this.lab.killRegion(region);
    await this.killProcess(`agent-${region}`);
  }

  /** A region cut off: its agent off the bus, every coordinator off its API; Postgres serves its clients. */
  partitionRegion(region: string): void {
    for (const l of this.natsLinks.get(`agent-${region}`) ?? []) l.partition();
    for (const links of this.kubeLinks.values()) links.get(region)?.partition();
  }

  healRegion(region: string): void {
    for (const l of this.natsLinks.get(`agent-${region}`) ?? []) l.heal();
    for (const links of this.kubeLinks.values()) links.get(region)?.heal();
  }

  /** Brings a lost region back as `pgfed lab restore-region` does: API, agent (fence sweep), instance. */
  async restoreRegion(region: string): Promise<void> {
    await this.lab.restoreRegion(region, { beforeInstance: () => this.startProcess(`agent-${region}`) });
  }

  archiveDir(member: string): string {
    const r = this.lab.regionOfMember(member);
    const inst = r.operator.instance(LAB_NAMESPACE, r.member.cluster);
    if (!inst) throw new Error(`no instance for ${member}`);
    return inst.archiveDir;
  }

  /** The last lines of every process log (for a failure report). */
  async tails(lines = 15): Promise<string> {
    const out: string[] = [];
    for (const p of this.procs.values()) {
      const text = await readFile(p.logFile, "utf8").catch(() => "");
      out.push(`== ${p.name} (${p.logFile})`, ...text.trimEnd().split("\n").slice(-lines));
    }
    return out.join("\n");
  }

  /** PIDs of every process this world started that is still alive. */
  livePids(): number[] {
    return [...this.procs.values()].flatMap((p) => (p.proc?.running ? [p.proc.pid] : []));
  }

  async stop(): Promise<void> {
    await Promise.all([...this.procs.values()].map(async (p) => p.proc?.stop("SIGTERM", 15_000)));
    for (const l of [...this.natsLinks.values()].flat()) await l.close();
    for (const m of this.kubeLinks.values()) for (const l of m.values()) await l.close();
    await this.lab.stop();
  }
}
