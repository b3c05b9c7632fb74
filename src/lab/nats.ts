/**
 * The lab's NATS server: one nats-server process with JetStream, on 127.0.0.1 and a free port,
 * its store in a directory the caller owns so a restart keeps the streams and KV buckets.
 * Stopped by its PID (never by name).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { PgfedError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { freePort, spawnManaged, waitFor, type ManagedProcess } from "./proc.js";

export const NATS_SERVER_BIN = process.env.PGFED_NATS_SERVER ?? "/usr/sbin/nats-server";

export interface StartNatsOptions {
  /** Directory for the JetStream store (`-sd`) and the server's log file. Created if missing. */
  dir: string;
  /** Client port; a free one when omitted. Kept across restarts. */
  port?: number;
  /** HTTP monitoring port (/varz, /jsz, /healthz); a free one when omitted, `false` for none. */
  monitorPort?: number | false;
  log?: Logger;
  /** Server name shown in logs and /varz. */
  name?: string;
  /** How long to wait for the server to accept clients with JetStream on. */
  startTimeoutMs?: number;
  /**
   * Server settings written to a config file (`-c`, JSON is valid nats-server config): the lab's
   * `tls` and `authorization` blocks (lab.ts). Ports, store and name stay on the command line.
   */
  settings?: Record<string, unknown>;
}

export interface NatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** Monitoring port, or undefined when disabled. */
  readonly monitorPort: number | undefined;
  /** PID of the current process (changes after restart()). */
  readonly pid: number;
  readonly storeDir: string;
  readonly logFile: string;
  readonly running: boolean;
  /** SIGTERM (JetStream flushes its store), SIGKILL after a grace period. */
  stop(): Promise<void>;
  /** SIGKILL: a lost region or a crashed server. */
  kill(): Promise<void>;
  /** Stops the server if it runs, then starts it again on the same port and store. */
  restart(): Promise<void>;
}

/** Starts nats-server with JetStream and waits until it accepts clients. */
export async function startNats(opts: StartNatsOptions): Promise<NatsServer> {
  mkdirSync(opts.dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const monitorPort = opts.monitorPort === false ? undefined : (opts.monitorPort ?? (await freePort()));
  const server = new LabNatsServer({
    dir: opts.dir,
    port,
    monitorPort,
    log: opts.log,
    name: opts.name ?? `pgfed-lab-${port}`,
    startTimeoutMs: opts.startTimeoutMs ?? 15_000,
    settings: opts.settings,
  });
  await server.start();
  return server;
}

interface ResolvedOptions {
  dir: string;
  port: number;
  monitorPort: number | undefined;
  log: Logger | undefined;
  name: string;
  startTimeoutMs: number;
  settings: Record<string, unknown> | undefined;
}

class LabNatsServer implements NatsServer {
  readonly url: string;
  readonly port: number;
  readonly monitorPort: number | undefined;
  readonly storeDir: string;
  readonly logFile: string;
  private proc: ManagedProcess | undefined;

  constructor(private readonly opts: ResolvedOptions) {
    this.port = opts.port;
    this.monitorPort = opts.monitorPort;
    this.url = `nats://127.0.0.1:${opts.port}`;
    this.storeDir = opts.dir;
    this.logFile = join(opts.dir, "nats-server.log");
  }

  get pid(): number {
    if (!this.proc) throw new PgfedError("lab.nats_not_started", `nats-server on port ${this.port} has not been started`);
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  async start(): Promise<void> {
    const args = ["-js", "-sd", this.storeDir, "-a", "127.0.0.1", "-p", String(this.port), "-n", this.opts.name];
    if (this.opts.settings) {
      const file = join(this.storeDir, "nats-server.json");
      writeFileSync(file, `${JSON.stringify(this.opts.settings, null, 2)}\n`, { mode: 0o600 });
      args.push("-c", file);
    }
    if (this.monitorPort !== undefined) args.push("-m", String(this.monitorPort));
    const proc = spawnManaged(NATS_SERVER_BIN, args, { name: `nats-server:${this.port}`, logFile: this.logFile });
    this.proc = proc;
    this.opts.log?.info({ pid: proc.pid, port: this.port, monitorPort: this.monitorPort, storeDir: this.storeDir }, "started nats-server");
    try {
      await waitFor(
        `nats-server on port ${this.port} to accept clients with JetStream (log: ${this.logFile})`,
        async () => {
          if (!proc.running) throw new PgfedError("lab.nats_exited", `nats-server exited while starting; see ${this.logFile}`);
          return (await readInfo(this.port)).jetstream === true;
        },
        this.opts.startTimeoutMs,
        50,
      );
    } catch (e) {
      await proc.kill();
      throw e;
    }
  }

  async stop(): Promise<void> {
    await this.proc?.stop("SIGTERM", 10_000);
    this.opts.log?.info({ port: this.port }, "stopped nats-server");
  }

  async kill(): Promise<void> {
    await this.proc?.kill();
    this.opts.log?.info({ port: this.port }, "killed nats-server (SIGKILL)");
  }

  async restart(): Promise<void> {
    if (this.running) await this.stop();
    await this.start();
  }
}

interface ServerInfoLine {
  jetstream?: boolean;
  version?: string;
}

/** Connects, reads the server's INFO line and hangs up: proof the server accepts clients. */
function readInfo(port: number, timeoutMs = 1_000): Promise<ServerInfoLine> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (err: Error | undefined, info?: ServerInfoLine) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(info ?? {});
    };
    const timer = setTimeout(() => done(new Error(`no INFO from 127.0.0.1:${port} within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf("\r\n");
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      if (!line.startsWith("INFO ")) return done(new Error(`unexpected greeting from 127.0.0.1:${port}: ${line.slice(0, 80)}`));
      try {
        done(undefined, JSON.parse(line.slice(5)) as ServerInfoLine);
      } catch (e) {
        done(new Error(`unreadable INFO from 127.0.0.1:${port}: ${errorMessage(e)}`));
      }
    });
    socket.on("error", (e) => done(e));
  });
}

// ---- a cluster ---------------------------------------------------------------------------------

export interface StartNatsClusterOptions {
  /** Each site's server keeps its store and log under `<dir>/<site>`. */
  dir: string;
  /** One server per site (the lab: one per region, plus a "witness" with two regions). */
  sites: readonly string[];
  log?: Logger;
  /** Settings for every server (tls, authorization); `cluster` is added here. */
  settings?: Record<string, unknown>;
  /** TLS of the routes between the servers (the same files as the clients' TLS in the lab). */
  routeTls?: { certFile: string; keyFile: string; caFile: string };
  startTimeoutMs?: number;
}

/** The lab's NATS: one server per site, routed to each other, JetStream clustered (R3 streams). */
export interface NatsCluster {
  readonly sites: readonly string[];
  /** Client URLs, in site order. */
  readonly urls: string[];
  /** The first site's URL (what single-server callers used). */
  readonly url: string;
  readonly pids: number[];
  server(site: string): NatsServer;
  /** Stops every server (SIGTERM). */
  stop(): Promise<void>;
  /** SIGKILLs every server: the whole control-plane bus lost. */
  kill(): Promise<void>;
  /** Stops every server still running, then starts them all again and waits for JetStream's meta leader. */
  restart(): Promise<void>;
  /** Resolves when every running server sees a JetStream meta leader (streams can be created and written). */
  waitReady(timeoutMs?: number): Promise<void>;
  /** The site whose server is JetStream's meta leader now, as a running server reports it; undefined for a standalone server or before an election. */
  metaLeaderSite(): Promise<string | undefined>;
}

const CLUSTER_NAME = "pgfed-lab";

export async function startNatsCluster(opts: StartNatsClusterOptions): Promise<NatsCluster> {
  const ports = await Promise.all(opts.sites.map(async () => ({ client: await freePort(), route: await freePort(), monitor: await freePort() })));
  const servers = new Map<string, LabNatsServer>();
  opts.sites.forEach((site, i) => {
    const p = ports[i] as { client: number; route: number; monitor: number };
    const routes = ports.filter((_, j) => j !== i).map((o) => `${opts.routeTls ? "tls" : "nats"}://127.0.0.1:${o.route}`);
    // One site: a standalone server (no cluster block, JetStream not clustered).
    const cluster: Record<string, unknown> | undefined = opts.sites.length > 1 ? { name: CLUSTER_NAME, host: "127.0.0.1", port: p.route, routes } : undefined;
    if (cluster && opts.routeTls) cluster.tls = { cert_file: opts.routeTls.certFile, key_file: opts.routeTls.keyFile, ca_file: opts.routeTls.caFile, timeout: 2 };
    const dir = join(opts.dir, site);
    mkdirSync(dir, { recursive: true });
    servers.set(
      site,
      new LabNatsServer({ dir, port: p.client, monitorPort: p.monitor, log: opts.log, name: `nats-${site}`, startTimeoutMs: opts.startTimeoutMs ?? 30_000, settings: { ...opts.settings, ...(cluster ? { cluster } : {}) } }),
    );
  });
  const c = new LabNatsCluster(opts.sites, servers, opts.log);
  try {
    // All at once: a clustered server waits for its routes before JetStream comes up.
    await Promise.all([...servers.values()].map((s) => s.start()));
    await c.waitReady(opts.startTimeoutMs ?? 30_000);
  } catch (e) {
    await Promise.all([...servers.values()].map((s) => s.kill().catch(() => undefined)));
    throw e;
  }
  return c;
}

class LabNatsCluster implements NatsCluster {
  readonly urls: string[];
  constructor(
    readonly sites: readonly string[],
    private readonly servers: Map<string, LabNatsServer>,
    private readonly log: Logger | undefined,
  ) {
    this.urls = sites.map((s) => (servers.get(s) as LabNatsServer).url);
  }

  get url(): string {
    return this.urls[0] as string;
  }

  get pids(): number[] {
    return [...this.servers.values()].filter((s) => s.running).map((s) => s.pid);
  }

  server(site: string): NatsServer {
    const s = this.servers.get(site);
    if (!s) throw new PgfedError("lab.unknown_site", `no NATS server for site "${site}" (sites: ${this.sites.join(", ")})`);
    return s;
  }

  async stop(): Promise<void> {
    await Promise.all([...this.servers.values()].map((s) => s.stop()));
  }

  async kill(): Promise<void> {
    await Promise.all([...this.servers.values()].map((s) => s.kill()));
  }

  async restart(): Promise<void> {
    await Promise.all([...this.servers.values()].map((s) => (s.running ? s.stop() : Promise.resolve())));
    await Promise.all([...this.servers.values()].map((s) => s.start()));
    await this.waitReady();
  }

  async metaLeaderSite(): Promise<string | undefined> {
    if (this.servers.size === 1) return undefined;
    for (const [, server] of this.servers) {
      if (!server.running) continue;
      const leader = await metaLeader(server.monitorPort);
      // Servers are named nats-<site> (startNatsCluster).
      if (leader !== undefined) return [...this.servers.keys()].find((site) => leader === `nats-${site}`);
    }
    return undefined;
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    if (this.servers.size === 1) return; // standalone: JetStream is up once the server answers with it (start())
    const running = [...this.servers.values()].filter((s) => s.running);
    await waitFor(
      `every NATS server (${running.map((s) => s.url).join(", ")}) to see a JetStream meta leader`,
      async () => (await Promise.all(running.map((s) => metaLeader(s.monitorPort)))).every((l) => l !== undefined),
      timeoutMs,
      100,
    );
    this.log?.info({ sites: this.sites }, `NATS cluster ready: ${running.length} of ${this.servers.size} server(s), JetStream meta leader elected`);
  }
}

/** The JetStream meta leader a server reports on /jsz, or undefined (not elected yet, or no answer). */
async function metaLeader(monitorPort: number | undefined): Promise<string | undefined> {
  if (monitorPort === undefined) return "unknown";
  try {
    const res = await fetch(`http://127.0.0.1:${monitorPort}/jsz`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { meta_cluster?: { leader?: string } };
    return body.meta_cluster?.leader || undefined;
  } catch {
    return undefined;
  }
}
