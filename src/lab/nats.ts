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
