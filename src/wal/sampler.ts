/**
 * One sampler per member: reads the member's WAL positions and archiver state over `pg` in ONE
 * round trip (a single SELECT that works on a primary and on a replica), parses the row with zod
 * at the edge (LSN text → bigint, int8/numeric text → number, NULL → undefined) and keeps the
 * primary's (atMs, lsn) history for the exposure estimator.
 *
 * It never throws from `sample()` and never leaves a rejection unhandled: a member that cannot be
 * reached, or answers with a row pgfed does not understand, is put in the `unreachable` state with
 * the error, and the next sample tries again.
 *
 * Least-privileged role: pg_monitor + EXECUTE on pg_switch_wal() (deploy/postgres/monitoring-role.sql).
 */
import pg from "pg";
import { z } from "zod";
import { PgfedError, errorMessage, wrapError } from "../errors.js";
import { silentLogger, type Logger } from "../log.js";
import { LsnHistory } from "./history.js";
import { parseLsn, type Lsn } from "./lsn.js";
import { credentialSourceSchema, pgSslOptions, resolveCredential, type CredentialSource, type ResolveOptions, type TlsConfig } from "./credentials.js";

// ---------------------------------------------------------------------------------------------
// What a sample says

export interface ArchiverStats {
  archivedCount: number;
  lastArchivedWal: string | undefined;
  lastArchivedAtMs: number | undefined;
  failedCount: number;
  lastFailedWal: string | undefined;
  lastFailedAtMs: number | undefined;
  /** `.ready` files in pg_wal/archive_status: completed segments waiting for archive_command. */
  readySegments: number;
  /** Modification time of the oldest `.ready` file: when the oldest waiting segment was completed. */
  oldestReadyAtMs: number | undefined;
}

/** One row of pg_stat_replication: a standby streaming from this primary. */
export interface StandbyStats {
  applicationName: string;
  state: string | undefined;
  clientAddr: string | undefined;
  sentLsn: Lsn | undefined;
  writeLsn: Lsn | undefined;
  flushLsn: Lsn | undefined;
  replayLsn: Lsn | undefined;
  replyAtMs: number | undefined;
}

/** pg_stat_wal_receiver on a replica (absent when no WAL receiver runs, e.g. archive-only). */
export interface WalReceiverStats {
  status: string;
  flushedLsn: Lsn | undefined;
  latestEndLsn: Lsn | undefined;
  receivedTimeline: number | undefined;
  senderHost: string | undefined;
  senderPort: number | undefined;
  lastMsgReceiptAtMs: number | undefined;
}

interface SampleCommon {
  federation: string;
  member: string;
  region: string | undefined;
  /** Local clock just before the query was sent (history.ts: the reading is no older than this). */
  atMs: number;
  /** Round trip time of the sample query. */
  durationMs: number;
  /** The server's clock_timestamp() (clock skew diagnostics). */
  serverNowMs: number;
  /** Primary: the timeline it writes. Replica: the newest of its restartpoint's, its streamed WAL's and its restored WAL's (a lower bound of the one it replays). */
  timeline: number;
  archiver: ArchiverStats;
}

export interface PrimarySample extends SampleCommon {
  role: "primary";
  /** pg_current_wal_lsn(): the position written so far. */
  currentLsn: Lsn;
  /**
   * Next transaction id to be assigned and how many transactions hold one, both read BEFORE the
   * LSN: when neither changed between two samples, the WAL written in between holds no commit
   * (only records such as the bgwriter's running-xacts snapshot), so it is no committed data at risk.
   */
  nextXid: bigint;
  runningXids: number;
  standbys: StandbyStats[];
}

export interface ReplicaSample extends SampleCommon {
  role: "replica";
  /** pg_last_wal_receive_lsn(): streamed and flushed here (undefined when never streaming). */
  receiveLsn: Lsn | undefined;
  /** pg_last_wal_replay_lsn(): replayed here (from the stream or the archive). */
  replayLsn: Lsn | undefined;
  lastReplayAtMs: number | undefined;
  walReceiver: WalReceiverStats | undefined;
}

export type MemberSample = PrimarySample | ReplicaSample;

export type MemberState =
  | { status: "unknown" }
  | { status: "up"; sample: MemberSample }
  | {
      status: "unreachable";
      error: PgfedError;
      /** When the first failing sample of this run was attempted. */
      sinceMs: number;
      consecutiveFailures: number;
      lastSample: MemberSample | undefined;
    };

export type SampleOutcome = { ok: true; sample: MemberSample } | { ok: false; error: PgfedError };

// ---------------------------------------------------------------------------------------------
// The query and its parser

/**
 * Every function that fails during recovery sits behind a CASE on pg_is_in_recovery(), so the same
 * statement serves both roles and a role change between two samples costs nothing extra.
 */
const SAMPLE_SQL = `
SELECT
  r.in_recovery,
  pg_snapshot_xmax(r.snap)::text AS next_xid,
  (SELECT count(*) FROM pg_snapshot_xip(r.snap)) AS running_xids,
  CASE WHEN r.in_recovery THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
  -- On a replica: the restartpoint's timeline (what CNPG reads, pkg/management/postgres/probes.go
  -- fillStatusFromReplica), or the streamed WAL's when newer, or that of the newest segment it
  -- restored from an archive (kept in pg_wal under its name, timeline first; pg_monitor may list
  -- it): the restartpoint lags a timeline switch by up to checkpoint_timeout, and "is it following
  -- the primary?" must not wait that long. A replica past a timeline's fork point never restores
  -- that timeline's segments, so a diverged one still reads as the old timeline.
  CASE WHEN r.in_recovery THEN greatest((SELECT timeline_id FROM pg_control_checkpoint()),
                                        (SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'),
                                        (SELECT ('x' || substr(max(name), 1, 8))::bit(32)::int FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'))
       ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline,
  CASE WHEN r.in_recovery THEN pg_last_wal_receive_lsn()::text END AS receive_lsn,
  CASE WHEN r.in_recovery THEN pg_last_wal_replay_lsn()::text END AS replay_lsn,
  extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000 AS last_replay_ms,
  extract(epoch FROM clock_timestamp()) * 1000 AS server_now_ms,
  a.archived_count, a.last_archived_wal, extract(epoch FROM a.last_archived_time) * 1000 AS last_archived_ms,
  a.failed_count, a.last_failed_wal, extract(epoch FROM a.last_failed_time) * 1000 AS last_failed_ms,
  s.ready_count, extract(epoch FROM s.oldest_ready) * 1000 AS oldest_ready_ms,
  (SELECT coalesce(json_agg(json_build_object(
      'application_name', application_name, 'state', state, 'client_addr', client_addr,
      'sent_lsn', sent_lsn, 'write_lsn', write_lsn, 'flush_lsn', flush_lsn, 'replay_lsn', replay_lsn,
      'reply_ms', extract(epoch FROM reply_time) * 1000)), '[]'::json)
     FROM pg_stat_replication) AS standbys,
  (SELECT json_build_object(
      'status', status, 'flushed_lsn', flushed_lsn, 'latest_end_lsn', latest_end_lsn,
      'received_tli', received_tli, 'sender_host', sender_host, 'sender_port', sender_port,
      'last_msg_receipt_ms', extract(epoch FROM last_msg_receipt_time) * 1000)
     FROM pg_stat_wal_receiver) AS wal_receiver
FROM (SELECT pg_is_in_recovery() AS in_recovery,
             -- In FROM, so the snapshot is taken before the target list reads the LSN.
             CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_snapshot() END AS snap OFFSET 0) r,
     pg_stat_archiver a,
     (SELECT count(*) AS ready_count, min(modification) AS oldest_ready
        FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') s`;

const lsn = z.string().transform((text, ctx) => {
  try {
    return parseLsn(text);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: errorMessage(e) });
    return z.NEVER;
  }
});
const optLsn = lsn.nullish().transform((v) => v ?? undefined);
const optText = z
  .string()
  .nullish()
  .transform((v) => v ?? undefined);
/** pg sends int8 and numeric as text, json numbers as numbers. */
const numberLike = z.union([z.number(), z.string().regex(/^-?\d+(\.\d+)?$/, "expected a number")]).transform((v) => Number(v));
const count = numberLike.pipe(z.number().int().nonnegative());
const optEpochMs = numberLike
  .nullish()
  .transform((v) => (v === null || v === undefined ? undefined : Math.floor(v)));

const standbySchema = z.object({
  application_name: z.string(),
  state: optText,
  client_addr: optText,
  sent_lsn: optLsn,
  write_lsn: optLsn,
  flush_lsn: optLsn,
  replay_lsn: optLsn,
  reply_ms: optEpochMs,
});

const walReceiverSchema = z.object({
  status: z.string(),
  flushed_lsn: optLsn,
  latest_end_lsn: optLsn,
  received_tli: z.number().int().nullish(),
  sender_host: optText,
  sender_port: z.number().int().nullish(),
  last_msg_receipt_ms: optEpochMs,
});

const sampleRowSchema = z.object({
  in_recovery: z.boolean(),
  next_xid: z
    .string()
    .regex(/^\d+$/, "expected a transaction id")
    .nullish()
    .transform((v) => (v === null || v === undefined ? undefined : BigInt(v))),
  running_xids: count.nullish(),
  current_lsn: optLsn,
  timeline: z.number().int().positive(),
  receive_lsn: optLsn,
  replay_lsn: optLsn,
  last_replay_ms: optEpochMs,
  server_now_ms: numberLike,
  archived_count: count,
  last_archived_wal: optText,
  last_archived_ms: optEpochMs,
  failed_count: count,
  last_failed_wal: optText,
  last_failed_ms: optEpochMs,
  ready_count: count,
  oldest_ready_ms: optEpochMs,
  standbys: z.array(standbySchema),
  wal_receiver: walReceiverSchema.nullish(),
});

export interface SampleContext {
  federation: string;
  member: string;
  region?: string | undefined;
  atMs: number;
  durationMs: number;
}

/** Parses one result row of SAMPLE_SQL; throws `wal.bad_sample_row` naming every bad field. */
export function parseSampleRow(row: unknown, ctx: SampleContext): MemberSample {
  const parsed = sampleRowSchema.safeParse(row);
  if (!parsed.success) {
    const why = parsed.error.issues.map((i) => `${i.path.join(".") || "(row)"}: ${i.message}`).join("; ");
    throw new PgfedError("wal.bad_sample_row", `sampling ${ctx.member} of ${ctx.federation}: unexpected result row (${why})`, {
      federation: ctx.federation,
      member: ctx.member,
    });
  }
  const r = parsed.data;
  const common: SampleCommon = {
    federation: ctx.federation,
    member: ctx.member,
    region: ctx.region,
    atMs: ctx.atMs,
    durationMs: ctx.durationMs,
    serverNowMs: Math.floor(r.server_now_ms),
    timeline: r.timeline,
    archiver: {
      archivedCount: r.archived_count,
      lastArchivedWal: r.last_archived_wal,
      lastArchivedAtMs: r.last_archived_ms,
      failedCount: r.failed_count,
      lastFailedWal: r.last_failed_wal,
      lastFailedAtMs: r.last_failed_ms,
      readySegments: r.ready_count,
      oldestReadyAtMs: r.oldest_ready_ms,
    },
  };
  if (!r.in_recovery) {
    if (r.current_lsn === undefined || r.next_xid === undefined) {
      throw new PgfedError("wal.bad_sample_row", `sampling ${ctx.member} of ${ctx.federation}: a primary returned no current WAL position or transaction id`, {
        federation: ctx.federation,
        member: ctx.member,
      });
    }
    return {
      ...common,
      role: "primary",
      currentLsn: r.current_lsn,
      nextXid: r.next_xid,
      runningXids: r.running_xids ?? 0,
      standbys: r.standbys.map((s) => ({
        applicationName: s.application_name,
        state: s.state,
        clientAddr: s.client_addr,
        sentLsn: s.sent_lsn,
        writeLsn: s.write_lsn,
        flushLsn: s.flush_lsn,
        replayLsn: s.replay_lsn,
        replyAtMs: s.reply_ms,
      })),
    };
  }
  const w = r.wal_receiver;
  return {
    ...common,
    role: "replica",
    receiveLsn: r.receive_lsn,
    replayLsn: r.replay_lsn,
    lastReplayAtMs: r.last_replay_ms,
    walReceiver: w
      ? {
          status: w.status,
          flushedLsn: w.flushed_lsn,
          latestEndLsn: w.latest_end_lsn,
          receivedTimeline: w.received_tli ?? undefined,
          senderHost: w.sender_host,
          senderPort: w.sender_port ?? undefined,
          lastMsgReceiptAtMs: w.last_msg_receipt_ms,
        }
      : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Where to connect

export interface SamplerTarget {
  federation: string;
  member: string;
  region?: string | undefined;
  host: string;
  port?: number | undefined;
  database?: string | undefined;
  user: string | CredentialSource;
  password?: CredentialSource | undefined;
  tls?: TlsConfig | undefined;
  /** Default 3 s. */
  connectTimeoutMs?: number | undefined;
  /** Default 2 s; the server cancels a slower sample (statement_timeout). */
  statementTimeoutMs?: number | undefined;
  /** Default 2: one for samples, one for pg_switch_wal() while a sample is running. */
  poolMax?: number | undefined;
}

/** The `postgres` block of a member in the config (config.ts), restated so `wal` stays its own room. */
export interface MemberPostgresConfig {
  secretRef?: string | undefined;
  host?: string | undefined;
  port?: number | undefined;
  user?: string | undefined;
  database?: string | undefined;
  password?: { env: string } | { file: string } | { value: string } | undefined;
  sslmode?: "disable" | "prefer" | "require" | "verify-ca" | "verify-full" | undefined;
  sslRootCert?: string | undefined;
}

/**
 * A sampler target from a configured member. With `secretRef` (CNPG's basic-auth secret) user and
 * password come from its `username`/`password` keys; without `host` the CNPG read-write service
 * `<cluster>-rw.<namespace>.svc` is used.
 */
export function targetFromMemberConfig(
  federation: string,
  member: { name: string; region: string; namespace: string; cluster: string; postgres: MemberPostgresConfig },
): SamplerTarget {
  const p = member.postgres;
  const ref = p.secretRef;
  const user: string | CredentialSource = p.user ?? (ref ? { secretRef: { name: ref, namespace: member.namespace, key: "username" } } : "postgres");
  const password: CredentialSource | undefined = p.password ?? (ref ? { secretRef: { name: ref, namespace: member.namespace, key: "password" } } : undefined);
  return {
    federation,
    member: member.name,
    region: member.region,
    host: p.host ?? `${member.cluster}-rw.${member.namespace}.svc`,
    port: p.port,
    database: p.database,
    user,
    password,
    tls: { mode: p.sslmode ?? "prefer", ...(p.sslRootCert ? { ca: { file: p.sslRootCert } } : {}) },
  };
}

export interface SamplerOptions extends ResolveOptions {
  log?: Logger;
  /** Clock, injectable for tests. */
  now?: () => number;
  historyCapacity?: number;
}

export interface SamplerStats {
  samples: number;
  errors: number;
  /** Round trips sent to the server (queries), sample and switch alike. */
  queries: number;
}

// ---------------------------------------------------------------------------------------------
// The sampler

export class MemberSampler {
  readonly target: SamplerTarget;
  /** The primary's (atMs, lsn) readings while this member is a primary; cleared by a new timeline. */
  readonly history: LsnHistory;
  readonly stats: SamplerStats = { samples: 0, errors: 0, queries: 0 };
  #state: MemberState = { status: "unknown" };
  #pool: pg.Pool | undefined;
  #poolPlain = false;
  #inFlight: Promise<SampleOutcome> | undefined;
  #closed = false;
  readonly #opts: SamplerOptions;
  readonly #log: Logger;
  readonly #now: () => number;

  constructor(target: SamplerTarget, opts: SamplerOptions = {}) {
    if (typeof target.user !== "string") credentialSourceSchema.parse(target.user);
    if (target.password) credentialSourceSchema.parse(target.password);
    this.target = target;
    this.#opts = opts;
    this.#log = (opts.log ?? silentLogger()).child({ federation: target.federation, member: target.member });
    this.#now = opts.now ?? Date.now;
    this.history = new LsnHistory({ capacity: opts.historyCapacity });
  }

  get state(): MemberState {
    return this.#state;
  }

  /** The newest good sample, also while unreachable. */
  get lastSample(): MemberSample | undefined {
    const s = this.#state;
    return s.status === "up" ? s.sample : s.status === "unreachable" ? s.lastSample : undefined;
  }

  /** Takes one sample; concurrent callers share the one in flight. Never rejects. */
  sample(): Promise<SampleOutcome> {
    this.#inFlight ??= this.#sampleOnce().finally(() => {
      this.#inFlight = undefined;
    });
    return this.#inFlight;
  }

  /** pg_switch_wal() on this member (a primary): closes the current segment so the archiver ships it. */
  async switchWal(): Promise<{ switchLsn: Lsn }> {
    const what = `switching WAL on ${this.target.member} of ${this.target.federation}`;
    try {
      const pool = await this.#ensurePool();
      this.stats.queries++;
      const res = await pool.query<{ lsn: unknown }>("SELECT pg_switch_wal()::text AS lsn");
      const parsed = z.object({ lsn }).safeParse(res.rows[0]);
      if (!parsed.success) throw new PgfedError("wal.bad_sample_row", `${what}: unexpected result ${JSON.stringify(res.rows[0])}`);
      return { switchLsn: parsed.data.lsn };
    } catch (e) {
      throw e instanceof PgfedError ? e : wrapError("wal.switch_failed", what, e, { federation: this.target.federation, member: this.target.member });
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#inFlight;
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end().catch(() => undefined);
  }

  async #sampleOnce(): Promise<SampleOutcome> {
    const t = this.target;
    const atMs = this.#now();
    const started = performance.now();
    try {
      if (this.#closed) throw new PgfedError("wal.sampler_closed", `sampling ${t.member} of ${t.federation}: the sampler is closed`);
      const pool = await this.#ensurePool();
      this.stats.queries++;
      // Named: parsed and planned once per connection; halves the server CPU per sample (test/bench).
      const res = await pool.query({ name: "pgfed_sample", text: SAMPLE_SQL });
      const durationMs = performance.now() - started;
      if (res.rows.length !== 1) throw new PgfedError("wal.bad_sample_row", `sampling ${t.member} of ${t.federation}: expected one row, got ${res.rows.length}`);
      const sample = parseSampleRow(res.rows[0], { federation: t.federation, member: t.member, region: t.region, atMs, durationMs });
      if (sample.role === "primary") {
        const outcome = this.history.push({ atMs, lsn: sample.currentLsn, timeline: sample.timeline });
        if (outcome.startsWith("refused")) this.#log.warn({ outcome, lsn: sample.currentLsn.toString() }, `primary sample of ${t.member} not added to its history (${outcome})`);
      }
      this.stats.samples++;
      if (this.#state.status === "unreachable") {
        this.#log.info({ downForMs: atMs - this.#state.sinceMs }, `${t.member} is reachable again after ${this.#state.consecutiveFailures} failed samples`);
      }
      this.#state = { status: "up", sample };
      return { ok: true, sample };
    } catch (e) {
      this.stats.errors++;
      const error =
        e instanceof PgfedError ? e : wrapError("wal.member_unreachable", `sampling ${t.member} of ${t.federation} at ${t.host}:${t.port ?? 5432}`, e, { federation: t.federation, member: t.member });
      const prev = this.#state;
      if (prev.status !== "unreachable") this.#log.warn({ code: error.code }, error.message);
      this.#state = {
        status: "unreachable",
        error,
        sinceMs: prev.status === "unreachable" ? prev.sinceMs : atMs,
        consecutiveFailures: prev.status === "unreachable" ? prev.consecutiveFailures + 1 : 1,
        lastSample: prev.status === "up" ? prev.sample : prev.status === "unreachable" ? prev.lastSample : undefined,
      };
      if (this.#tlsMode() === "prefer" && !this.#poolPlain && /does not support SSL/i.test(errorMessage(e))) {
        // sslmode=prefer: the server said no to TLS; retry in plain TCP from the next sample on.
        this.#poolPlain = true;
        await this.#dropPool();
      }
      return { ok: false, error };
    }
  }

  #tlsMode(): string {
    return this.target.tls?.mode ?? "disable";
  }

  async #dropPool(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.end().catch(() => undefined);
  }

  async #ensurePool(): Promise<pg.Pool> {
    if (this.#pool) return this.#pool;
    const t = this.target;
    const what = `${t.member} of ${t.federation}`;
    const user = typeof t.user === "string" ? t.user : await resolveCredential(t.user, `user name of ${what}`, this.#opts);
    const ssl = this.#poolPlain ? false : await pgSslOptions(t.tls, what, this.#opts);
    const statementTimeoutMs = t.statementTimeoutMs ?? 2_000;
    const password = t.password;
    const pool = new pg.Pool({
      host: t.host,
      port: t.port ?? 5432,
      database: t.database ?? "postgres",
      user,
      // Resolved at every new connection, so a rotated secret is picked up without a restart.
      password: password ? () => resolveCredential(password, `password of ${what}`, this.#opts) : undefined,
      ssl,
      max: t.poolMax ?? 2,
      connectionTimeoutMillis: t.connectTimeoutMs ?? 3_000,
      idleTimeoutMillis: 60_000,
      statement_timeout: statementTimeoutMs,
      // Client-side bound too: a server that stopped answering (SIGSTOP, network loss) cannot cancel.
      query_timeout: statementTimeoutMs + 1_000,
      application_name: "pgfed-sampler",
      keepAlive: true,
    });
    // An idle connection dying (server killed) is reported here; without a listener it would crash the process.
    pool.on("error", (err) => this.#log.debug({ err: errorMessage(err) }, `idle connection to ${what} closed`));
    this.#pool = pool;
    return pool;
  }
}
