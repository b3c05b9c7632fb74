/**
 * A client that inserts numbered rows as fast as it can into whichever instance is the write
 * target: the lab's and the tests' way to prove "zero committed rows lost" across a switchover and
 * to measure how long writes were unavailable.
 */
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { PgConnectionInfo } from "./instance.js";

export const ROWS_TABLE = "pgfed_lab_rows";

export interface RowWriterReport {
  /** Ids whose COMMIT was acknowledged. */
  committed: number[];
  /** Ids whose outcome is unknown (the connection died during the statement). */
  inDoubt: number[];
  /** Failed attempts (refused, read-only, in-doubt…). */
  failures: number;
  /** Longest time between two acknowledged commits, in ms. */
  maxGapMs: number;
  /** When the longest gap started (epoch ms). */
  maxGapStartedAt: number;
  lastError: string | undefined;
}

export interface RowWriter {
  /** Ids acknowledged so far. */
  readonly committedCount: number;
  readonly lastCommittedId: number | undefined;
  stop(): Promise<RowWriterReport>;
}

export async function createRowsTable(conn: PgConnectionInfo): Promise<void> {
  const client = new pg.Client({ ...conn, connectionTimeoutMillis: 2_000 });
  await client.connect();
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS ${ROWS_TABLE} (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())`);
  } finally {
    await client.end();
  }
}

/**
 * Starts inserting ids `firstId`, `firstId + 1`… into `target()` (asked again after every
 * failure), `pauseMs` apart. Start past the ids already in the table: a taken id fails and is skipped.
 */
export function startRowWriter(target: () => PgConnectionInfo, pauseMs = 5, opts: { firstId?: number } = {}): RowWriter {
  const committed: number[] = [];
  const inDoubt: number[] = [];
  let failures = 0;
  let lastError: string | undefined;
  let nextId = opts.firstId ?? 1;
  let lastOkAt = Date.now();
  let maxGapMs = 0;
  let maxGapStartedAt = lastOkAt;
  let stopping = false;
  let client: pg.Client | undefined;

  const drop = async () => {
    const c = client;
    client = undefined;
    if (c) await c.end().catch(() => undefined);
  };

  const loop = async () => {
    while (!stopping) {
      const id = nextId;
      let sent = false;
      try {
        if (!client) {
          const c = new pg.Client({ ...target(), connectionTimeoutMillis: 1_000 });
          c.on("error", () => undefined);
          await c.connect();
          client = c;
        }
        sent = true;
        await client.query(`INSERT INTO ${ROWS_TABLE} (id) VALUES ($1)`, [id]);
        const now = Date.now();
        if (now - lastOkAt > maxGapMs) {
          maxGapMs = now - lastOkAt;
          maxGapStartedAt = lastOkAt;
        }
        lastOkAt = now;
        committed.push(id);
        nextId++;
        if (pauseMs > 0) await sleep(pauseMs);
      } catch (e) {
        failures++;
        lastError = e instanceof Error ? e.message : String(e);
        // A server error (read-only, shutting down before execution) means not committed; a dead
        // connection after sending means we cannot know, so that id is never reused.
        if (sent && !(e instanceof pg.DatabaseError && e.code === "25006")) {
          inDoubt.push(id);
          nextId++;
        }
        await drop();
        await sleep(20);
      }
    }
  };
  const running = loop();

  return {
    get committedCount() {
      return committed.length;
    },
    get lastCommittedId() {
      return committed[committed.length - 1];
    },
    async stop() {
      stopping = true;
      await running;
      await drop();
      return { committed, inDoubt, failures, maxGapMs, maxGapStartedAt, lastError };
    },
  };
}
