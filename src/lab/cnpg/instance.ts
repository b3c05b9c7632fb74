/**
 * One real Postgres 15 instance: what a CNPG pod's instance manager does for the lab's CNPG
 * stand-in. The postmaster is our direct child (`postgres -D`), so we own its PID and stop it by
 * PID; it runs as the `postgres` user when we are root, on 127.0.0.1 and a port fixed for its life.
 */
import { existsSync } from "node:fs";
import { appendFile, chmod, mkdir, mkdtemp, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { PgfedError, errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import { silentLogger } from "../../log.js";
import { type ManagedProcess, freePort, pgBin, run, spawnManaged } from "../proc.js";
import { ARCHIVE_ERROR_FILE, archiveFile, chownToPostgres, ensureArchiveDir, writeArchiveScripts } from "./archive.js";

/** How a client reaches an instance (the lab prints these as psql strings). */
export interface PgConnectionInfo {
  host: string;
  port: number;
  user: string;
  database: string;
}

/** Where a replica gets WAL from: always the source's archive, plus streaming when given. */
export interface WalSource {
  /** The source cluster's archive directory; restore_command reads it. */
  archiveDir: string;
  /** Streaming connection (primary_conninfo); absent → archive-only replica. */
  streaming?: PgConnectionInfo;
}

export type InstanceRole = { kind: "primary" } | { kind: "replica"; source: WalSource };

export interface PgInstanceOptions {
  /** `<namespace>/<cluster>`, used in every error and log line. */
  name: string;
  /** Base directory of this instance: `<labDir>/<region>/<namespace>/<cluster>`. */
  dir: string;
  /** This cluster's own archive (its object store path). */
  archiveDir: string;
  /** `cluster_name` and the streaming application_name. */
  clusterName: string;
  port?: number;
  log?: Logger;
}

export interface ArchiverStats {
  archivedCount: number;
  failedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: Date | null;
  lastFailedWal: string | null;
  lastFailedTime: Date | null;
}

/** What the operator reads from a running instance on every pass. */
export interface InstanceProbe {
  inRecovery: boolean;
  timelineID: number;
  systemID: string;
  archiver: ArchiverStats;
  /** The standby's WAL receiver is streaming (false on a primary or an archive-only replica). */
  walReceiverUp: boolean;
}

/** Settings the lab uses unless spec.postgresql.parameters overrides them. */
export const LAB_DEFAULT_PARAMETERS: Readonly<Record<string, string>> = {
  archive_timeout: "5s",
  shared_buffers: "16MB",
  max_connections: "50",
  wal_keep_size: "128MB",
  max_wal_senders: "10",
  max_replication_slots: "10",
  log_line_prefix: "%m [%p] ",
  log_checkpoints: "on",
};

/** Settings CNPG owns: spec.postgresql.parameters cannot change them (CNPG's webhook refuses them). */
export const FIXED_PARAMETERS: ReadonlySet<string> = new Set([
  "listen_addresses",
  "port",
  "unix_socket_directories",
  "data_directory",
  "hba_file",
  "ident_file",
  "config_file",
  "archive_mode",
  "archive_command",
  "restore_command",
  "primary_conninfo",
  "primary_slot_name",
  "recovery_target_timeline",
  "hot_standby",
  "wal_level",
  "wal_log_hints",
  "cluster_name",
  "wal_retrieve_retry_interval",
]);

const PARAMETER_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;
const SAFE_PATH = /^[A-Za-z0-9_./+-]+$/;
const CONF_FILE = "cnpg.conf";
const INCLUDE_LINE = `include '${CONF_FILE}'`;
// A unix socket path must fit in sockaddr_un (107 bytes) including ".s.PGSQL.<port>".
const MAX_SOCKET_DIR = 80;

/** Checks spec.postgresql.parameters names; returns the problems (empty when fine). */
export function checkParameters(params: Readonly<Record<string, string>>): string[] {
  const problems: string[] = [];
  for (const [k, v] of Object.entries(params)) {
    if (!PARAMETER_NAME.test(k)) problems.push(`parameter name ${JSON.stringify(k)} is not a simple identifier`);
    if (/[\n\r\0]/.test(v)) problems.push(`parameter ${k} has a line break or NUL in its value`);
  }
  return problems;
}

function confValue(v: string): string {
  return `'${v.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

function conninfo(c: PgConnectionInfo, applicationName: string): string {
  const q = (v: string) => `'${v.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
  return `host=${q(c.host)} port=${c.port} user=${q(c.user)} dbname=${q(c.database)} application_name=${q(applicationName)} connect_timeout=2`;
}

/** The port this instance used before when it is still free (psql strings survive a lab restart), else a new one. */
async function stablePort(file: string): Promise<number> {
  try {
    const previous = Number((await readFile(file, "utf8")).trim());
    if (Number.isInteger(previous) && previous > 0 && (await portIsFree(previous))) return previous;
  } catch {
    // first start
  }
  const port = await freePort();
  await writeFile(file, `${port}\n`);
  return port;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

export class PgInstance {
  readonly name: string;
  readonly dir: string;
  readonly pgdata: string;
  readonly archiveDir: string;
  readonly clusterName: string;
  readonly port: number;
  readonly socketDir: string;
  readonly logFile: string;
  private readonly log: Logger;
  private proc: ManagedProcess | undefined;
  private client: pg.Client | undefined;
  private clientConnecting: Promise<pg.Client> | undefined;
  private scripts: { archiveScript: string; restoreScript: string } | undefined;

  private constructor(opts: PgInstanceOptions & { port: number; socketDir: string }) {
    this.name = opts.name;
    this.dir = opts.dir;
    this.pgdata = join(opts.dir, "pgdata");
    this.archiveDir = opts.archiveDir;
    this.clusterName = opts.clusterName;
    this.port = opts.port;
    this.socketDir = opts.socketDir;
    this.logFile = join(opts.dir, "postgres.log");
    this.log = opts.log ?? silentLogger();
  }

  /** Prepares the instance directory, archive and scripts; does not start anything. */
  static async open(opts: PgInstanceOptions): Promise<PgInstance> {
    for (const [what, p] of [
      ["instance directory", opts.dir],
      ["archive directory", opts.archiveDir],
    ] as const) {
      // Paths go unquoted into archive_command/restore_command lines run by /bin/sh.
      if (!SAFE_PATH.test(p)) throw new PgfedError("lab.bad_path", `while preparing ${opts.name}: ${what} ${JSON.stringify(p)} has characters the archive scripts cannot take`);
    }
    await mkdir(opts.dir, { recursive: true, mode: 0o755 });
    await chownToPostgres(opts.dir);
    await ensureArchiveDir(opts.archiveDir);
    let socketDir = join(opts.dir, "run");
    if (socketDir.length > MAX_SOCKET_DIR) socketDir = await mkdtemp(join(tmpdir(), "pgfed-sock-"));
    else await mkdir(socketDir, { recursive: true });
    await chmod(socketDir, 0o755);
    await chownToPostgres(socketDir);
    const port = opts.port ?? (await stablePort(join(opts.dir, "port")));
    const inst = new PgInstance({ ...opts, port, socketDir });
    inst.scripts = await writeArchiveScripts(opts.dir);
    return inst;
  }

  /** Connection info for clients (trust auth on 127.0.0.1 in the lab). */
  get connection(): PgConnectionInfo {
    return { host: "127.0.0.1", port: this.port, user: "postgres", database: "postgres" };
  }

  /** `psql` connection string for people. */
  get psql(): string {
    const c = this.connection;
    return `postgresql://${c.user}@${c.host}:${c.port}/${c.database}`;
  }

  get running(): boolean {
    return this.proc?.running === true;
  }

  /** PID of the postmaster while running. */
  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  /** A data directory exists (bootstrap done). */
  get bootstrapped(): boolean {
    return existsSync(join(this.pgdata, "PG_VERSION"));
  }

  /** The role the data directory is set up for: standby.signal present → replica. */
  get diskRole(): "primary" | "replica" | undefined {
    if (!this.bootstrapped) return undefined;
    return existsSync(join(this.pgdata, "standby.signal")) ? "replica" : "primary";
  }

  /** `initdb` a fresh primary: trust auth on 127.0.0.1, a replication entry, a streaming_replica role. */
  async initdb(): Promise<void> {
    const step = `while running initdb for ${this.name}`;
    try {
      await run(pgBin("initdb"), ["-D", this.pgdata, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], {
        asPostgres: true,
        env: { LC_ALL: "C" },
        timeoutMs: 60_000,
      });
      await this.writeHba();
      // Single-user mode creates the replication role without starting a server.
      await run(pgBin("postgres"), ["--single", "-D", this.pgdata, "-c", "archive_mode=off", "postgres"], {
        asPostgres: true,
        input: "CREATE ROLE streaming_replica LOGIN REPLICATION;\n",
        timeoutMs: 30_000,
      });
    } catch (e) {
      throw new PgfedError("lab.bootstrap_failed", `${step}: ${errorMessage(e)}`, { cluster: this.name }, { cause: e });
    }
  }

  /** Clones the data directory from a running instance with pg_basebackup (a replica cluster's bootstrap). */
  async cloneFrom(source: PgConnectionInfo): Promise<void> {
    try {
      await rm(this.pgdata, { recursive: true, force: true });
      await run(
        pgBin("pg_basebackup"),
        ["-h", source.host, "-p", String(source.port), "-U", source.user, "-d", `dbname=${source.database}`, "-D", this.pgdata, "-X", "stream", "-c", "fast", "--no-sync"],
        { asPostgres: true, timeoutMs: 120_000 },
      );
      await this.writeHba();
    } catch (e) {
      throw new PgfedError(
        "lab.bootstrap_failed",
        `while cloning ${this.name} from ${source.host}:${source.port} with pg_basebackup: ${errorMessage(e)}`,
        { cluster: this.name },
        { cause: e },
      );
    }
  }

  private async writeHba(): Promise<void> {
    const hba = [
      "# Written by the pgfed lab's CNPG stand-in: trust on loopback only.",
      "local all all trust",
      "local replication all trust",
      "host all all 127.0.0.1/32 trust",
      "host replication all 127.0.0.1/32 trust",
      "",
    ].join("\n");
    const path = join(this.pgdata, "pg_hba.conf");
    await writeFile(path, hba);
    await chownToPostgres(path);
  }

  /**
   * Writes the settings for `role` (cnpg.conf, included last by postgresql.conf) and creates or
   * removes standby.signal. Takes effect at the next start. Parameters are applied in this order,
   * last wins: lab defaults, spec.postgresql.parameters, the settings CNPG fixes.
   */
  async configure(role: InstanceRole, parameters: Readonly<Record<string, string>> = {}): Promise<void> {
    const problems = checkParameters(parameters);
    if (problems.length > 0) throw new PgfedError("lab.bad_parameters", `while configuring ${this.name}: ${problems.join("; ")}`, { cluster: this.name, problems });
    const scripts = this.requireScripts();
    const settings: Record<string, string> = { ...LAB_DEFAULT_PARAMETERS };
    for (const [k, v] of Object.entries(parameters)) {
      if (FIXED_PARAMETERS.has(k.toLowerCase())) {
        this.log.warn({ cluster: this.name, parameter: k }, `ignoring spec.postgresql.parameters.${k}: CNPG manages it`);
        continue;
      }
      settings[k] = v;
    }
    Object.assign(settings, {
      listen_addresses: "127.0.0.1",
      port: String(this.port),
      unix_socket_directories: this.socketDir,
      cluster_name: this.clusterName,
      wal_level: "replica",
      hot_standby: "on",
      wal_log_hints: "on",
      wal_retrieve_retry_interval: "1s",
      recovery_target_timeline: "latest",
      // Replica clusters archive what they receive into their own archive (CNPG.md, "Archiving").
      archive_mode: role.kind === "replica" ? "always" : "on",
      archive_command: `${scripts.archiveScript} ${this.archiveDir} %p %f`,
      restore_command: role.kind === "replica" ? `${scripts.restoreScript} ${role.source.archiveDir} %f %p` : "",
      primary_conninfo: role.kind === "replica" && role.source.streaming ? conninfo(role.source.streaming, this.clusterName) : "",
    });
    if (role.kind === "replica" && !SAFE_PATH.test(role.source.archiveDir)) {
      throw new PgfedError("lab.bad_path", `while configuring ${this.name}: source archive ${JSON.stringify(role.source.archiveDir)} has characters the restore script cannot take`);
    }
    const lines = ["# Written by the pgfed lab's CNPG stand-in at every start; do not edit.", ...Object.entries(settings).map(([k, v]) => `${k} = ${confValue(v)}`), ""];
    const confPath = join(this.pgdata, CONF_FILE);
    await writeFile(confPath, lines.join("\n"));
    await chownToPostgres(confPath);
    const mainConf = join(this.pgdata, "postgresql.conf");
    const text = await readFile(mainConf, "utf8");
    if (!text.split("\n").includes(INCLUDE_LINE)) await appendFile(mainConf, `\n${INCLUDE_LINE}\n`);
    const signal = join(this.pgdata, "standby.signal");
    if (role.kind === "replica") {
      await writeFile(signal, "");
      await chownToPostgres(signal);
    } else if (existsSync(signal)) {
      await unlink(signal);
    }
  }

  private requireScripts(): { archiveScript: string; restoreScript: string } {
    if (!this.scripts) throw new PgfedError("lab.not_open", `instance ${this.name} was not opened`);
    return this.scripts;
  }

  /** Starts the postmaster and waits until it accepts connections (a standby: once consistent). */
  async start(readyTimeoutMs = 60_000): Promise<void> {
    if (this.running) return;
    if (!this.bootstrapped) throw new PgfedError("lab.not_bootstrapped", `while starting ${this.name}: no data directory at ${this.pgdata}`);
    const proc = spawnManaged(pgBin("postgres"), ["-D", this.pgdata], { asPostgres: true, logFile: this.logFile, name: `postgres ${this.name}`, env: { LC_ALL: "C" } });
    this.proc = proc;
    this.log.debug({ cluster: this.name, pid: proc.pid, port: this.port }, "postgres started");
    const until = Date.now() + readyTimeoutMs;
    for (;;) {
      if (!proc.running) {
        this.forget(proc);
        throw new PgfedError("lab.start_failed", `while starting ${this.name}: postgres exited during startup; log tail:\n${await this.logTail()}`, { cluster: this.name });
      }
      try {
        await this.query("SELECT 1");
        return;
      } catch (e) {
        if (Date.now() > until) {
          throw new PgfedError("lab.start_failed", `while starting ${this.name}: not accepting connections after ${readyTimeoutMs} ms (${errorMessage(e)})`, { cluster: this.name });
        }
      }
      await sleep(50);
    }
  }

  /** Clean fast shutdown (SIGINT: shutdown checkpoint, archiver drained); SIGKILLs the tree after the grace time. */
  async stop(graceMs = 60_000): Promise<void> {
    await this.closeClient();
    const proc = this.proc;
    if (!proc) return;
    await proc.stop("SIGINT", graceMs);
    this.forget(proc);
  }

  /**
   * Drops the handle of a process that is gone, unless a start() that ran meanwhile already
   * replaced it: that postmaster must stay known, or a later kill would leave it serving (found by
   * the chaos suite: a "lost" region's primary kept taking writes after a crash restart).
   */
  private forget(proc: ManagedProcess): void {
    if (this.proc === proc) this.proc = undefined;
  }

  /** SIGKILLs the postmaster and every descendant at once (a lost node or region). */
  async kill(): Promise<void> {
    await this.closeClient();
    const proc = this.proc;
    if (!proc) return;
    await proc.kill();
    this.forget(proc);
  }

  async restart(readyTimeoutMs = 60_000): Promise<void> {
    await this.stop();
    await this.start(readyTimeoutMs);
  }

  /** Stops the instance and removes its data directory (keeps the archive). */
  async destroy(): Promise<void> {
    await this.stop();
    await rm(this.pgdata, { recursive: true, force: true });
  }

  /** Runs one statement on a cached connection (reopened after any failure). */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    const client = await this.getClient();
    try {
      const res = await client.query<R>(sql, params);
      return res.rows;
    } catch (e) {
      // After a failure the connection may be dead (shutdown, crash): start over next time.
      if (!(e instanceof pg.DatabaseError) || this.client !== client) await this.closeClient();
      throw e;
    }
  }

  private async getClient(): Promise<pg.Client> {
    if (this.client) return this.client;
    if (this.clientConnecting) return this.clientConnecting;
    const c = this.connection;
    const client = new pg.Client({ host: c.host, port: c.port, user: c.user, database: c.database, connectionTimeoutMillis: 2_000, application_name: "cnpg-lab-operator" });
    client.on("error", () => {
      if (this.client === client) this.client = undefined;
    });
    this.clientConnecting = client
      .connect()
      .then(() => {
        this.client = client;
        return client;
      })
      .catch(async (e: unknown) => {
        await client.end().catch(() => undefined);
        throw e;
      })
      .finally(() => {
        this.clientConnecting = undefined;
      });
    return this.clientConnecting;
  }

  private async closeClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) await client.end().catch(() => undefined);
  }

  /** Reads the role, timeline, system id and archiver statistics in one round trip. */
  async probe(): Promise<InstanceProbe> {
    const rows = await this.query<{
      in_recovery: boolean;
      system_id: string;
      timeline: number;
      archived_count: string;
      failed_count: string;
      last_archived_wal: string | null;
      last_archived_time: Date | null;
      last_failed_wal: string | null;
      last_failed_time: Date | null;
      receiver_up: boolean;
    }>(`SELECT pg_is_in_recovery() AS in_recovery,
              (SELECT system_identifier::text FROM pg_control_system()) AS system_id,
              CASE WHEN pg_is_in_recovery()
                   THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'),
                                 (SELECT timeline_id FROM pg_control_checkpoint()))
                   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline,
              a.archived_count, a.failed_count, a.last_archived_wal, a.last_archived_time, a.last_failed_wal, a.last_failed_time,
              EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') AS receiver_up
         FROM pg_stat_archiver a`);
    const r = rows[0];
    if (!r) throw new PgfedError("lab.probe_failed", `while probing ${this.name}: no row from pg_stat_archiver`);
    return {
      inRecovery: r.in_recovery,
      timelineID: Number(r.timeline),
      systemID: r.system_id,
      walReceiverUp: r.receiver_up,
      archiver: {
        archivedCount: Number(r.archived_count),
        failedCount: Number(r.failed_count),
        lastArchivedWal: r.last_archived_wal,
        lastArchivedTime: r.last_archived_time,
        lastFailedWal: r.last_failed_wal,
        lastFailedTime: r.last_failed_time,
      },
    };
  }

  /** `pg_controldata` output (LC_ALL=C so the labels are the ones parsers expect). */
  async controlData(): Promise<string> {
    try {
      const { stdout } = await run(pgBin("pg_controldata"), ["-D", this.pgdata], { asPostgres: true, env: { LC_ALL: "C", LANG: "C" }, timeoutMs: 10_000 });
      return stdout;
    } catch (e) {
      throw new PgfedError("lab.controldata_failed", `while reading pg_controldata of ${this.name}: ${errorMessage(e)}`, { cluster: this.name }, { cause: e });
    }
  }

  /** The message of the archive command's last failure (ARCHIVE_ERROR_FILE), if it ever failed. */
  async lastArchiveError(): Promise<string | undefined> {
    try {
      const text = (await readFile(join(this.dir, ARCHIVE_ERROR_FILE), "utf8")).trim();
      return text === "" ? undefined : text;
    } catch {
      return undefined;
    }
  }

  /** CHECKPOINT (a restartpoint on a standby). */
  async checkpoint(): Promise<void> {
    await this.query("CHECKPOINT");
  }

  /** pg_promote(wait => true); resolves once the instance left recovery. */
  async promote(waitSeconds = 60): Promise<void> {
    const rows = await this.query<{ ok: boolean }>("SELECT pg_promote(true, $1) AS ok", [waitSeconds]);
    if (rows[0]?.ok !== true) throw new PgfedError("lab.promote_failed", `while promoting ${this.name}: pg_promote did not finish within ${waitSeconds} s`, { cluster: this.name });
  }

  /**
   * Uploads `pg_wal/<walFile>` to this instance's own archive as `<walFile>.partial`: the segment
   * holding a shutdown checkpoint, which the archiver never ships because it is incomplete.
   */
  async archivePartialSegment(walFile: string): Promise<string> {
    if (!/^[0-9A-F]{24}$/.test(walFile)) throw new PgfedError("lab.bad_wal_name", `while archiving the shutdown segment of ${this.name}: ${JSON.stringify(walFile)} is not a WAL file name`);
    const name = `${walFile}.partial`;
    await archiveFile(this.requireScripts().archiveScript, this.archiveDir, join(this.pgdata, "pg_wal", walFile), name);
    return name;
  }

  /** The last lines of the server log, for error messages. */
  async logTail(lines = 15): Promise<string> {
    try {
      return (await readFile(this.logFile, "utf8")).trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}
