/**
 * Real Postgres for the WAL tests, built on the lab's PgInstance: a primary (initdb) and a replica
 * (pg_basebackup + restore_command from the primary's archive dir, + streaming when asked), the
 * least-privileged monitoring role, and a writer that remembers when each row committed.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { PgInstance } from "../../../src/lab/cnpg/instance.js";
import { listArchive } from "../../../src/lab/cnpg/archive.js";
import { chownToPostgres } from "../../../src/lab/cnpg/archive.js";
import { pgBin, run, waitFor } from "../../../src/lab/proc.js";
import { parseLsn, type Lsn } from "../../../src/wal/lsn.js";
import { MemberSampler, type SamplerOptions } from "../../../src/wal/sampler.js";
import { parseWalFileName } from "../../../src/wal/walfile.js";

export const MONITOR_ROLE = "pgfed_monitor";
const ROLE_SQL = resolve(import.meta.dirname, "../../../deploy/postgres/monitoring-role.sql");

export interface Pair {
  dir: string;
  primary: PgInstance;
  replica: PgInstance;
  streaming: boolean;
  /** Stops both instances (by PID) and removes their files. */
  destroy(): Promise<void>;
}

/** Every instance a test file started, to stop in afterAll whatever happened. */
export const started = new Set<PgInstance>();

export async function stopAll(): Promise<void> {
  for (const i of started) {
    await i.kill().catch(() => undefined);
    started.delete(i);
  }
}

/** A primary and a replica of it; `archiveTimeout` like "2s"; the monitoring role created from deploy/. */
export async function startPair(opts: { archiveTimeout: string; streaming: boolean; parameters?: Record<string, string> }): Promise<Pair> {
  const dir = await mkdtemp(join(tmpdir(), "pgfed-wal-"));
  await chownToPostgres(dir);
  const params = { archive_timeout: opts.archiveTimeout, ...(opts.parameters ?? {}) };
  const primary = await PgInstance.open({ name: "db/pg-eu", dir: join(dir, "eu"), archiveDir: join(dir, "archive-eu"), clusterName: "pg-eu" });
  await primary.initdb();
  await primary.configure({ kind: "primary" }, params);
  started.add(primary);
  await primary.start();
  await createMonitoringRole(primary);
  await primary.query("CREATE TABLE rows (id bigint PRIMARY KEY, at_ms float8 NOT NULL, payload text)");
  const replica = await PgInstance.open({ name: "db/pg-us", dir: join(dir, "us"), archiveDir: join(dir, "archive-us"), clusterName: "pg-us" });
  await replica.cloneFrom(primary.connection);
  await replica.configure({ kind: "replica", source: { archiveDir: primary.archiveDir, ...(opts.streaming ? { streaming: primary.connection } : {}) } }, params);
  started.add(replica);
  await replica.start();
  return {
    dir,
    primary,
    replica,
    streaming: opts.streaming,
    async destroy() {
      for (const i of [primary, replica]) {
        await i.kill();
        started.delete(i);
      }
      // An archive_command child forked during the kill may still write a file: retry on ENOTEMPTY.
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    },
  };
}

/** Runs deploy/postgres/monitoring-role.sql with psql, exactly as an operator would. */
export async function createMonitoringRole(inst: PgInstance): Promise<void> {
  const c = inst.connection;
  await run(pgBin("psql"), ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", c.host, "-p", String(c.port), "-U", c.user, "-d", c.database, "-f", ROLE_SQL], { timeoutMs: 30_000 });
}

/** A sampler logging in as the monitoring role (trust auth on loopback in the lab). */
export function monitorSampler(inst: PgInstance, member: string, region: string, opts: SamplerOptions = {}): MemberSampler {
  return new MemberSampler({ federation: "orders", member, region, host: "127.0.0.1", port: inst.port, user: MONITOR_ROLE, password: { value: "unused-with-trust" } }, opts);
}

export interface Commit {
  id: number;
  /** clock_timestamp() after the insert, just before the commit record (epoch ms). */
  atMs: number;
  /**
   * When the client had the commit's acknowledgement (Date.now(), same host clock). The commit
   * record was written between atMs and ackMs: on a loaded machine the backend can be descheduled
   * between the two, so atMs alone can precede the commit by several milliseconds.
   */
  ackMs: number;
}

export interface Writer {
  readonly commits: Commit[];
  stop(): Promise<Commit[]>;
}

/** Inserts numbered rows one transaction each, `pauseMs` apart; keeps the acknowledged ones. */
export function startWriter(inst: PgInstance, pauseMs = 10): Writer {
  const commits: Commit[] = [];
  let stopping = false;
  const loop = async () => {
    const client = new pg.Client({ ...inst.connection, connectionTimeoutMillis: 2_000 });
    client.on("error", () => undefined);
    try {
      await client.connect();
      for (let id = 1; !stopping; id++) {
        // The time is read in RETURNING, after the row's WAL record, so it is as close to the commit
        // as SQL can get (a VALUES expression ran before the insert and overstated the loss).
        const res = await client.query<{ at_ms: number }>(
          "INSERT INTO rows (id, at_ms, payload) VALUES ($1, 0, repeat('x', 200)) RETURNING extract(epoch FROM clock_timestamp()) * 1000 AS at_ms",
          [id],
        );
        const ackMs = Date.now();
        const at = res.rows[0]?.at_ms;
        if (at !== undefined) commits.push({ id, atMs: Number(at), ackMs });
        if (pauseMs > 0) await sleep(pauseMs);
      }
    } catch {
      // The primary was killed: the commits acknowledged so far are what we know.
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const running = loop();
  return {
    commits,
    async stop() {
      stopping = true;
      await running;
      return commits;
    },
  };
}

/** End of the last complete segment in an archive directory (what an archive-only replica can reach). */
export async function archiveEnd(dir: string): Promise<Lsn | undefined> {
  let end: Lsn | undefined;
  for (const name of await listArchive(dir)) {
    if (!/^[0-9A-F]{24}$/.test(name)) continue;
    const info = parseWalFileName(name);
    if (info.kind === "segment" && (end === undefined || info.endLsn > end)) end = info.endLsn;
  }
  return end;
}

export async function replayLsn(inst: PgInstance): Promise<Lsn | undefined> {
  const rows = await inst.query<{ lsn: string | null }>("SELECT greatest(pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn())::text AS lsn");
  const t = rows[0]?.lsn;
  return t ? parseLsn(t) : undefined;
}

/** Waits until the replica has replayed everything in the primary's archive (it promotes with all of it). */
export async function waitForArchiveReplayed(pair: Pair, timeoutMs = 30_000): Promise<void> {
  const end = await archiveEnd(pair.primary.archiveDir);
  if (end === undefined) return;
  await waitFor(`replica to replay the archive up to ${end}`, async () => ((await replayLsn(pair.replica)) ?? 0n) >= end, timeoutMs, 100);
}

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}
