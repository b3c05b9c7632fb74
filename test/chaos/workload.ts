/**
 * The chaos suite's workload, running all the time:
 * - writers through libpq itself (psql) with a multi-host connection string and
 *   `target_session_attrs=read-write`, as applications connect to a federation without a stable
 *   writer endpoint; each records every row whose INSERT was acknowledged, and by which server;
 * - a probe that tries a real INSERT on every member every 100 ms and records the server's own
 *   clock for each accepted one (all lab servers share this machine's clock), so that two members
 *   accepting writes at the same moment is seen in server time, not in client latency.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { PgConnectionInfo } from "../../src/lab/cnpg/instance.js";
import { pgBin } from "../../src/lab/proc.js";

export const ROWS = "chaos_rows";
export const PROBE = "chaos_probe";

export async function createTables(conn: PgConnectionInfo): Promise<void> {
  const c = new pg.Client({ ...conn, connectionTimeoutMillis: 2_000 });
  await c.connect();
  try {
    await c.query(`CREATE TABLE IF NOT EXISTS ${ROWS} (writer text NOT NULL, seq bigint NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (writer, seq))`);
    await c.query(`CREATE TABLE IF NOT EXISTS ${PROBE} (id bigserial PRIMARY KEY, member text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  } finally {
    await c.end();
  }
}

export interface AckedRow {
  writer: string;
  seq: number;
  /** Port of the server that acknowledged it (which member). */
  port: number;
  atMs: number;
}

/** How long one INSERT may take before the writer gives up on its connection (the row is then in doubt). */
const STATEMENT_BUDGET_MS = 3_000;

/** One writer: a psql process fed one INSERT at a time; a new psql (libpq picks the read-write host again) whenever it dies or keeps failing. */
export class LibpqWriter {
  readonly acked: AckedRow[] = [];
  readonly inDoubt = new Set<number>();
  attempts = 0;
  failures = 0;
  connects = 0;
  private running = true;
  private seq = 0;
  private readonly loop: Promise<void>;

  constructor(
    readonly name: string,
    private readonly conninfo: () => string,
    private readonly pauseMs = 20,
  ) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (this.running) {
      await this.session();
      if (this.running) await sleep(100);
    }
  }

  /** One psql process: INSERTs until it exits, hangs or fails three times in a row. */
  private async session(): Promise<void> {
    this.connects++;
    const child: ChildProcess = spawn(pgBin("psql"), ["-X", "-A", "-t", "-q", "-F", ",", "-v", "ON_ERROR_STOP=0", this.conninfo()], { stdio: ["pipe", "pipe", "pipe"] });
    child.stderr?.resume();
    child.stdin?.on("error", () => undefined);
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const exited = new Promise<void>((resolve) => child.once("close", () => resolve()));
    // Lines queue up: readline may emit several at once, before anyone waits for the next.
    const queued: string[] = [];
    let gone = false;
    let wake: (() => void) | undefined;
    lines.on("line", (l) => {
      queued.push(l);
      wake?.();
    });
    void exited.then(() => {
      gone = true;
      wake?.();
    });
    const next = async (timeoutMs: number): Promise<string | undefined> => {
      if (queued.length === 0 && !gone) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, timeoutMs);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = undefined;
      }
      return queued.shift();
    };
    let failedInARow = 0;
    try {
      while (this.running && child.exitCode === null && failedInARow < 3) {
        const seq = ++this.seq;
        this.attempts++;
        child.stdin?.write(`INSERT INTO ${ROWS} (writer, seq) VALUES ('${this.name}', ${seq}) RETURNING seq, inet_server_port();\n\\echo @ ${seq}\n`);
        const deadline = Date.now() + STATEMENT_BUDGET_MS;
        let row: AckedRow | undefined;
        let done = false;
        while (!done) {
          const line = await next(Math.max(1, deadline - Date.now()));
          if (line === undefined) break;
          if (line === `@ ${seq}`) done = true;
          else {
            const m = /^(\d+),(\d+)$/.exec(line);
            if (m && Number(m[1]) === seq) row = { writer: this.name, seq, port: Number(m[2]), atMs: Date.now() };
          }
        }
        if (row) {
          this.acked.push(row);
          failedInARow = 0;
        } else {
          this.failures++;
          failedInARow++;
          // No answer at all: the outcome is unknown; an answer without the row: refused (read-only, …).
          if (!done) {
            this.inDoubt.add(seq);
            break;
          }
        }
        await sleep(this.pauseMs);
      }
    } finally {
      lines.close();
      if (child.exitCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

export interface ProbeWrite {
  member: string;
  ok: boolean;
  /** Server time of an accepted write; client time of a refused one. */
  atMs: number;
}

/** Tries an INSERT on every member every `everyMs`, each on its own kept connection. */
export class WriteProbe {
  readonly writes: ProbeWrite[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  constructor(members: { name: string; conn: () => PgConnectionInfo }[], everyMs = 100) {
    this.loops = members.map((m) => this.loopOf(m.name, m.conn, everyMs));
  }

  private async loopOf(member: string, conn: () => PgConnectionInfo, everyMs: number): Promise<void> {
    let client: pg.Client | undefined;
    while (this.running) {
      const t = Date.now();
      try {
        if (!client) {
          const c = new pg.Client({ ...conn(), connectionTimeoutMillis: 500, query_timeout: 1_000 });
          c.on("error", () => undefined);
          client = c;
          await c.connect();
        }
        const r = await client.query<{ at: number }>(`INSERT INTO ${PROBE} (member) VALUES ($1) RETURNING (extract(epoch FROM at) * 1000)::float8 AS at`, [member]);
        this.writes.push({ member, ok: true, atMs: Number(r.rows[0]?.at) });
      } catch {
        this.writes.push({ member, ok: false, atMs: Date.now() });
        await client?.end().catch(() => undefined);
        client = undefined;
      }
      await sleep(Math.max(0, everyMs - (Date.now() - t)));
    }
    await client?.end().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** The rows of `writer`s present on `conn`'s member. */
export async function presentRows(conn: PgConnectionInfo): Promise<Set<string>> {
  const c = new pg.Client({ ...conn, connectionTimeoutMillis: 2_000, statement_timeout: 10_000 });
  c.on("error", () => undefined);
  await c.connect();
  try {
    const r = await c.query<{ k: string }>(`SELECT writer || ':' || seq AS k FROM ${ROWS}`).catch((e: unknown) => {
      // The table itself lost (created after the last WAL the new primary got): every row is.
      if ((e as { code?: string }).code === "42P01") return { rows: [] };
      throw e;
    });
    return new Set(r.rows.map((x) => x.k));
  } finally {
    await c.end().catch(() => undefined);
  }
}
