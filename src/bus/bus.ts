/**
 * The NATS connection every pgfed process shares: JetStream publish with msgID dedup, consumers
 * that never crash on bad input (rule 6; their delivery loop is consumer.ts), reconnect forever
 * with backoff, and a hook to re-read state after a reconnect.
 *
 * While disconnected, `publish` waits for the connection and retries with the same msgID (so a
 * publish that did land is not stored twice), up to `publishTimeoutMs` (10 s, less than the 2 min
 * duplicate window). At most `maxPendingPublishes` publishes may wait; beyond that, and past the
 * deadline, it throws a `PgfedError` (`bus.publish_backlog_full`, `bus.publish_failed`) and the
 * caller re-derives what to send: observations and lag samples are level-triggered and simply
 * sent again on the next pass; commands and audit records come from persisted state and are
 * re-sent with the same deterministic id. Nothing is buffered beyond the caller's own await.
 */
import { jetstream, jetstreamManager, AckPolicy, DeliverPolicy, JetStreamApiError, ReplayPolicy, RetentionPolicy, StorageType, DiscardPolicy } from "@nats-io/jetstream";
import type { ConsumerConfig, JetStreamClient, JetStreamManager, JsMsg, StreamConfig } from "@nats-io/jetstream";
import { connect, nanos, nkeyAuthenticator, ClosedConnectionError, DrainingConnectionError, PermissionViolationError, type NatsConnection, type Status } from "@nats-io/transport-node";
import type { Registry } from "prom-client";
import { setTimeout as sleep } from "node:timers/promises";
import { PgfedError, errorMessage, wrapError } from "../errors.js";
import type { Logger } from "../log.js";
import { CONSUMER_DEFAULTS, ConsumerLoop, type BusSubscription, type ConsumerHost, type DeadLetterHandler, type MessageHandler, type SubscribeOptions } from "./consumer.js";
import { envelopeSchema, describeIssues, parseEnvelope, subjectOf, InvalidMessageError, type BusMessage, type DeadLetter } from "./messages.js";
import { BusMetrics } from "./metrics.js";
import { DEFAULT_STREAM, checkFilter, checkName, subjects, type DeadLetterReason, type StreamSettings } from "./subjects.js";
import { withTimeout } from "../timeout.js";
import { signEnvelope } from "./command-proof.js";
import type { BusIdentity } from "./identity.js";
import { inboxPrefixFor } from "./permissions.js";

export type { BusSubscription, DeadLetterHandler, MessageHandler, MessageMeta, SubscribeOptions } from "./consumer.js";
export { RefusedMessageError } from "./consumer.js";

export interface ConnectBusOptions {
  /** `nats://host:port` URLs; more than one for a cluster. */
  servers: string | string[];
  /** Connection name shown by the server (`pgfed-agent-eu-west`, `pgfed-coordinator-1`). */
  name: string;
  log: Logger;
  /** Registry for the bus counters; prom-client's global one when omitted. */
  metrics?: Registry;
  /** Overrides of the stream settings (defaults: subjects.ts DEFAULT_STREAM). */
  stream?: Partial<StreamSettings>;
  /** How long one publish may wait for the connection and the ack, retries included. */
  publishTimeoutMs?: number;
  /** Publishes allowed to wait at once; the next one fails with `bus.publish_backlog_full`. */
  maxPendingPublishes?: number;
  /** Timeout of one JetStream API request (publish ack, KV get/put, consumer info). */
  requestTimeoutMs?: number;
  /** Reconnect delay grows from min to max with the length of the outage; jitter is added. */
  reconnectDelayMs?: { min: number; max: number };
  /** Client pings; a dead peer is noticed after about 2 intervals. */
  pingIntervalMs?: number;
  /** Called after each reconnect, once the stream has been checked again. */
  onReconnect?: () => void | Promise<void>;
  /**
   * This process's NATS identity (identity.ts): authenticates the connection with its nkey, gives
   * it a private inbox prefix, and signs every command it publishes. Without one the connection is
   * anonymous (a server without authorization: tests, a development NATS).
   */
  identity?: BusIdentity;
  /** TLS towards the servers: the CA that signed their certificates, and a client certificate if the servers ask for one. */
  tls?: BusTls;
  /**
   * Create or update the stream when it differs (default true: coordinators). Agents pass false:
   * their permissions only let them read its configuration, so they wait for a coordinator to create it.
   */
  manageStream?: boolean;
}

export interface BusTls {
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

export interface PublishAck {
  stream: string;
  seq: number;
  /** True when JetStream already held a message with this id (within the duplicate window). */
  duplicate: boolean;
}


export interface Bus {
  readonly name: string;
  /** Version the server reported at connect, e.g. "2.9.10". */
  readonly serverVersion: string;
  /** True when the server is at least 2.10 (per-key TTL, multi-filter consumers still unused). */
  readonly modernServer: boolean;
  readonly connected: boolean;
  readonly stream: StreamSettings;
  readonly log: Logger;
  readonly metrics: BusMetrics;
  /** For state.ts and lease.ts; others should not need them. */
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly requestTimeoutMs: number;
  /** The identity this connection authenticated with (and signs commands with), if any. */
  readonly identity: BusIdentity | undefined;
  /** Validates and stores a message in JetStream; msgID = `msg.id`. See the module comment. */
  publish(msg: BusMessage): Promise<PublishAck>;
  /** Delivers every message matching `filter` (one NATS filter under `pgfed.`) to `handler`. */
  subscribe(filter: string, handler: MessageHandler, opts?: SubscribeOptions): Promise<BusSubscription>;
  /** Reads `pgfed.dlq.>` (for the CLI and tests). */
  subscribeDeadLetters(handler: DeadLetterHandler, opts?: Omit<SubscribeOptions, "deadLetters">): Promise<BusSubscription>;
  /**
   * The newest message stored on `subject` (one exact subject), parsed like a delivered one
   * (`message` undefined when it does not parse: it was dead-lettered when delivered), or
   * undefined when the subject holds none.
   */
  lastMessage(subject: string): Promise<{ message: BusMessage | undefined; storedAtMs: number; seq: number } | undefined>;
  /** Registers a hook run after each reconnect (re-read state, re-publish observations). */
  onReconnect(fn: () => void | Promise<void>): () => void;
  /** Resolves when connected, or throws `bus.disconnected` after `timeoutMs`. */
  waitConnected(timeoutMs: number): Promise<void>;
  /** Stops the subscriptions, flushes, and closes the connection. */
  close(): Promise<void>;
}

const DEFAULTS = {
  publishTimeoutMs: 10_000,
  maxPendingPublishes: 1_000,
  requestTimeoutMs: 5_000,
  reconnectDelayMs: { min: 250, max: 5_000 },
  pingIntervalMs: 10_000,
};

/** Connects, checks the server, ensures the stream, and starts watching the connection. */
export async function connectBus(opts: ConnectBusOptions): Promise<Bus> {
  const log = opts.log.child({ component: "bus", connection: opts.name });
  const stream: StreamSettings = { ...DEFAULT_STREAM, ...opts.stream };
  const publishTimeoutMs = opts.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs;
  if (publishTimeoutMs >= stream.duplicateWindowMs) {
    throw new PgfedError("bus.bad_options", `publishTimeoutMs (${publishTimeoutMs}) must be shorter than the duplicate window (${stream.duplicateWindowMs} ms), or retries could store a message twice`);
  }
  const delays = opts.reconnectDelayMs ?? DEFAULTS.reconnectDelayMs;
  const backoff = new OutageBackoff(delays.min, delays.max);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: opts.servers,
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectDelayHandler: () => backoff.nextDelayMs(),
      pingInterval: opts.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
      maxPingOut: 2,
      timeout: opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
      ...(opts.identity ? { authenticator: nkeyAuthenticator(() => (opts.identity as BusIdentity).seed()), inboxPrefix: inboxPrefixFor(opts.identity.publicKey) } : {}),
      ...(opts.tls ? { tls: { ...(opts.tls.caFile ? { caFile: opts.tls.caFile } : {}), ...(opts.tls.certFile ? { certFile: opts.tls.certFile } : {}), ...(opts.tls.keyFile ? { keyFile: opts.tls.keyFile } : {}) } } : {}),
    });
  } catch (e) {
    throw wrapError("bus.connect_failed", `while connecting to NATS at ${[opts.servers].flat().join(", ")} as ${opts.name}`, e);
  }
  const bus = new NatsBus(nc, log, stream, new BusMetrics(opts.metrics), backoff, {
    name: opts.name,
    publishTimeoutMs,
    maxPendingPublishes: opts.maxPendingPublishes ?? DEFAULTS.maxPendingPublishes,
    requestTimeoutMs: opts.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    manageStream: opts.manageStream ?? true,
    replicasGiven: opts.stream?.replicas !== undefined,
    identity: opts.identity,
  });
  if (opts.onReconnect) bus.onReconnect(opts.onReconnect);
  try {
    await bus.start();
  } catch (e) {
    await nc.close().catch(() => undefined);
    throw e;
  }
  return bus;
}

/** Parses "2.9.10" (or "2.10.0-beta.1") into numbers; unknown parts are 0. */
export function parseVersion(v: string): [number, number, number] {
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(v.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
}

export function versionAtLeast(v: string, major: number, minor: number): boolean {
  const [a, b] = parseVersion(v);
  return a > major || (a === major && b >= minor);
}

/** Reconnect delay that grows with the length of the outage, plus jitter (stateless per attempt). */
class OutageBackoff {
  private downSince: number | undefined;
  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
  ) {}
  disconnected(): void {
    this.downSince ??= Date.now();
  }
  reconnected(): void {
    this.downSince = undefined;
  }
  nextDelayMs(): number {
    const down = this.downSince === undefined ? 0 : Date.now() - this.downSince;
    const base = Math.min(this.maxMs, Math.max(this.minMs, down / 4));
    return Math.round(base + Math.random() * base * 0.2);
  }
}

interface BusSettings {
  name: string;
  manageStream: boolean;
  replicasGiven: boolean;
  identity: BusIdentity | undefined;
  publishTimeoutMs: number;
  maxPendingPublishes: number;
  requestTimeoutMs: number;
}

class NatsBus implements Bus, ConsumerHost {
  readonly js: JetStreamClient;
  readonly name: string;
  readonly requestTimeoutMs: number;
  readonly identity: BusIdentity | undefined;
  serverVersion = "unknown";
  modernServer = false;
  connected = true;
  private jsm: JetStreamManager | undefined;
  private pending = 0;
  private closing = false;
  private readonly reconnectHooks = new Set<() => void | Promise<void>>();
  private readonly subscriptions = new Set<ConsumerLoop>();
  private connectionWaiters: Array<() => void> = [];
  private statusLoop: Promise<void> | undefined;

  constructor(
    readonly nc: NatsConnection,
    readonly log: Logger,
    readonly stream: StreamSettings,
    readonly metrics: BusMetrics,
    private readonly backoff: OutageBackoff,
    private readonly settings: BusSettings,
  ) {
    this.name = settings.name;
    this.requestTimeoutMs = settings.requestTimeoutMs;
    this.identity = settings.identity;
    this.js = jetstream(nc, { timeout: settings.requestTimeoutMs });
  }

  async start(): Promise<void> {
    const info = this.nc.info;
    this.serverVersion = info?.version ?? "unknown";
    this.modernServer = versionAtLeast(this.serverVersion, 2, 10);
    if (info && !info.jetstream) {
      throw new PgfedError("bus.no_jetstream", `NATS server ${this.nc.getServer()} (${this.serverVersion}) does not have JetStream enabled; start it with -js`);
    }
    if (!this.modernServer) {
      this.log.warn(
        { serverVersion: this.serverVersion },
        `NATS server ${this.serverVersion} is older than 2.10: per-message and per-key TTLs are ignored there, so leases carry their own expiry times (compare-and-swap on the value), and consumers use one filter subject each`,
      );
    } else {
      this.log.info({ serverVersion: this.serverVersion }, `connected to NATS ${this.serverVersion}`);
    }
    this.metrics.connected.set(1);
    this.statusLoop = this.watchStatus();
    await this.ensureStream();
  }

  /** Creates the stream, or updates it when its limits differ from ours ("ensure", not "do"). */
  private async ensureStream(): Promise<void> {
    const s = this.stream;
    const want: Partial<StreamConfig> & { name: string } = {
      name: s.name,
      subjects: ["pgfed.>"],
      description: "pgfed: observations, lag samples, commands, results, heartbeats, audit, dead letters",
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(s.maxAgeMs),
      max_bytes: s.maxBytes,
      duplicate_window: nanos(s.duplicateWindowMs),
      num_replicas: s.replicas,
    };
    const doing = `while ensuring JetStream stream ${s.name} on ${this.nc.getServer()}`;
    try {
      this.jsm ??= await jetstreamManager(this.nc, { timeout: this.requestTimeoutMs });
      const jsm = this.jsm;
      const current = await jsm.streams.info(s.name).catch((e: unknown) => {
        if (e instanceof JetStreamApiError && e.code === 10059) return undefined;
        throw e;
      });
      if (!this.settings.manageStream) {
        if (!current) throw new PgfedError("bus.stream_missing", `stream ${s.name} does not exist on ${this.nc.getServer()} yet; a coordinator creates it (this process may not)`);
        return;
      }
      if (!current) {
        await jsm.streams.add(want);
        this.log.info({ stream: s.name }, `created stream ${s.name} (subjects pgfed.>, max age ${s.maxAgeMs} ms)`);
        return;
      }
      const c = current.config;
      // Replicas change only when this process was told a number (bus.replicas): a reader with the defaults must not shrink an R3 stream.
      if (!this.settings.replicasGiven) want.num_replicas = c.num_replicas;
      const differs =
        c.max_age !== want.max_age ||
        c.max_bytes !== want.max_bytes ||
        c.duplicate_window !== want.duplicate_window ||
        c.num_replicas !== want.num_replicas ||
        c.subjects.join(",") !== "pgfed.>";
      if (differs) {
        const { name: _name, retention: _r, storage: _s, ...updatable } = want;
        await jsm.streams.update(s.name, { ...c, ...updatable });
        this.log.info({ stream: s.name }, `updated stream ${s.name} limits`);
      }
    } catch (e) {
      throw wrapError("bus.stream_failed", doing, e);
    }
  }

  private async watchStatus(): Promise<void> {
    for await (const st of this.nc.status()) this.onStatus(st);
  }

  private onStatus(st: Status): void {
    switch (st.type) {
      case "disconnect":
        this.connected = false;
        this.backoff.disconnected();
        this.metrics.disconnects.inc();
        this.metrics.connected.set(0);
        if (!this.closing) this.log.warn({ server: st.server }, `disconnected from NATS ${st.server}; reconnecting with backoff`);
        break;
      case "reconnect":
        this.connected = true;
        this.backoff.reconnected();
        this.metrics.reconnects.inc();
        this.metrics.connected.set(1);
        this.log.info({ server: st.server }, `reconnected to NATS ${st.server}`);
        for (const w of this.connectionWaiters.splice(0)) w();
        void this.afterReconnect();
        break;
      case "reconnecting":
        this.log.debug("reconnecting to NATS");
        break;
      case "error":
        if (st.error instanceof PermissionViolationError) {
          this.metrics.permissionViolations.inc({ operation: st.error.operation });
          this.log.error({ operation: st.error.operation, subject: st.error.subject }, `the NATS server refused ${st.error.operation === "publish" ? "a publish to" : "a subscription to"} ${st.error.subject} as ${this.name}: not permitted for this identity`);
        } else this.log.error({ err: st.error }, `NATS connection error: ${st.error.message}`);
        break;
      case "staleConnection":
        this.log.warn("NATS connection is stale (pings unanswered); reconnecting");
        break;
      case "ldm":
        this.log.warn({ server: st.server }, `NATS server ${st.server} entered lame duck mode; will move to another server`);
        break;
      case "slowConsumer":
        this.log.warn({ pending: st.pending }, "NATS subscription is a slow consumer");
        break;
      case "close":
        this.connected = false;
        this.metrics.connected.set(0);
        this.log.info("NATS connection closed");
        break;
      default:
        break;
    }
  }

  private async afterReconnect(): Promise<void> {
    // Ordered consumers first (ConsumerLoop.reopenNow): the old one may have died with its server.
    for (const loop of this.subscriptions) loop.reopenNow();
    try {
      await this.ensureStream();
    } catch (e) {
      this.log.error({ err: e }, `after reconnect: ${errorMessage(e)}`);
    }
    for (const hook of this.reconnectHooks) {
      try {
        await hook();
      } catch (e) {
        this.log.error({ err: e }, `onReconnect hook failed: ${errorMessage(e)}`);
      }
    }
  }

  onReconnect(fn: () => void | Promise<void>): () => void {
    this.reconnectHooks.add(fn);
    return () => this.reconnectHooks.delete(fn);
  }

  async waitConnected(timeoutMs: number): Promise<void> {
    if (this.connected) return;
    if (this.nc.isClosed()) throw new PgfedError("bus.closed", `the NATS connection ${this.name} is closed`);
    let resolveWait: () => void = () => undefined;
    const ok = new Promise<boolean>((resolve) => {
      resolveWait = () => resolve(true);
      this.connectionWaiters.push(resolveWait);
    });
    const ac = new AbortController();
    const connected = await Promise.race([ok, sleep(timeoutMs, false, { signal: ac.signal }).catch(() => false)]);
    ac.abort();
    this.connectionWaiters = this.connectionWaiters.filter((w) => w !== resolveWait);
    if (!connected) throw new PgfedError("bus.disconnected", `still disconnected from NATS after ${timeoutMs} ms`);
  }

  // ---- publish ---------------------------------------------------------------------------------

  async publish(msg: BusMessage): Promise<PublishAck> {
    const checked = envelopeSchema.safeParse(msg);
    if (!checked.success) throw new InvalidMessageError(`refusing to publish an invalid ${String(msg.type)} message ${String(msg.id)}: ${describeIssues(checked.error.issues)}`);
    const subject = subjectOf(checked.data);
    const what = `${msg.type} ${msg.id} for ${msg.federation}${msg.member ? `/${msg.member}` : ""} on ${subject}`;
    // Commands carry their sender's signature (command-proof.ts); a re-send is signed again (same bytes: ed25519 is deterministic).
    const identity = this.identity;
    const body = checked.data.type === "command" && identity ? { ...checked.data, proof: signEnvelope(checked.data, identity) } : checked.data;
    const ack = await this.publishRaw(subject, JSON.stringify(body), msg.id, what);
    if (ack.duplicate) this.metrics.duplicates.inc({ type: msg.type });
    else this.metrics.published.inc({ type: msg.type });
    return ack;
  }

  /** Publishes with msgID dedup, retrying through disconnects until the deadline. */
  private async publishRaw(subject: string, payload: string, msgID: string, what: string): Promise<PublishAck> {
    if (this.closing || this.nc.isClosed()) {
      this.metrics.publishFailures.inc({ reason: "closed" });
      throw new PgfedError("bus.closed", `while publishing ${what}: the bus is closed`);
    }
    if (this.pending >= this.settings.maxPendingPublishes) {
      this.metrics.publishFailures.inc({ reason: "backlog_full" });
      throw new PgfedError("bus.publish_backlog_full", `while publishing ${what}: ${this.pending} publishes are already waiting for NATS (limit ${this.settings.maxPendingPublishes}); re-derive and send later`);
    }
    this.pending++;
    const deadline = Date.now() + this.settings.publishTimeoutMs;
    let attempts = 0;
    let lastError: unknown;
    try {
      while (Date.now() < deadline) {
        attempts++;
        if (!this.connected) {
          try {
            await this.waitConnected(deadline - Date.now());
          } catch (e) {
            lastError = e;
            break;
          }
        }
        const timeout = Math.max(100, Math.min(this.requestTimeoutMs, deadline - Date.now()));
        try {
          const pa = await this.js.publish(subject, payload, { msgID, timeout });
          if (attempts > 1) this.log.info({ subject, msgID, attempts }, `published ${what} after ${attempts} attempts`);
          return { stream: pa.stream, seq: pa.seq, duplicate: pa.duplicate };
        } catch (e) {
          lastError = e;
          if (!isRetriable(e)) break;
          // A short pause so a refused request (no responders while JetStream recovers) is not spun on.
          if (this.connected) await sleep(Math.min(200, Math.max(0, deadline - Date.now())));
        }
      }
    } finally {
      this.pending--;
    }
    const timedOut = lastError === undefined || isRetriable(lastError) || (lastError instanceof PgfedError && lastError.code === "bus.disconnected");
    const reason = timedOut ? "timeout" : "refused";
    this.metrics.publishFailures.inc({ reason });
    const why = lastError === undefined ? "no attempt finished" : errorMessage(lastError);
    throw new PgfedError(
      "bus.publish_failed",
      `while publishing ${what}: ${reason === "timeout" ? `not acknowledged within ${this.settings.publishTimeoutMs} ms (${attempts} attempts${this.connected ? "" : ", disconnected from NATS"})` : "refused by JetStream"}: ${why}`,
      { subject, msgID, attempts },
      { cause: lastError },
    );
  }

  // ---- subscribe -------------------------------------------------------------------------------

  async subscribe(filter: string, handler: MessageHandler, opts: SubscribeOptions = {}): Promise<BusSubscription> {
    checkFilter(filter);
    const loop = await this.openConsumer(filter, opts, "envelope");
    loop.handleEnvelope = handler;
    loop.run();
    return loop;
  }

  async subscribeDeadLetters(handler: DeadLetterHandler, opts: Omit<SubscribeOptions, "deadLetters"> = {}): Promise<BusSubscription> {
    const loop = await this.openConsumer("pgfed.dlq.>", { ...opts, deadLetters: false }, "deadLetter");
    loop.handleDeadLetter = handler;
    loop.run();
    return loop;
  }

  async lastMessage(subject: string): Promise<{ message: BusMessage | undefined; storedAtMs: number; seq: number } | undefined> {
    this.jsm ??= await jetstreamManager(this.nc, { timeout: this.requestTimeoutMs });
    let m;
    try {
      m = await this.jsm.streams.getMessage(this.stream.name, { last_by_subj: subject });
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === 10037) return undefined; // no message found
      throw wrapError("bus.read_failed", `while reading the last message on ${subject}`, e);
    }
    if (!m) return undefined;
    const parsed = parseEnvelope(m.data);
    const message = parsed.ok && subjectOf(parsed.message) === m.subject ? parsed.message : undefined;
    return { message, storedAtMs: m.time.getTime(), seq: m.seq };
  }

  private async openConsumer(filter: string, opts: SubscribeOptions, kind: "envelope" | "deadLetter"): Promise<ConsumerLoop> {
    if (this.closing) throw new PgfedError("bus.closed", `cannot subscribe to ${filter}: the bus is closing`);
    const deliver = opts.startSeq !== undefined ? DeliverPolicy.StartSequence : opts.deliverNew ? DeliverPolicy.New : DeliverPolicy.All;
    const doing = `while opening ${opts.durable ? `durable consumer ${opts.durable}` : "an ordered consumer"} on ${filter}`;
    try {
      if (opts.durable === undefined) {
        const ordered = (startSeq: number | undefined) =>
          this.js.consumers.get(this.stream.name, {
            filter_subjects: filter,
            ...(startSeq !== undefined ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: startSeq } : { deliver_policy: deliver }),
          });
        const consumer = await ordered(opts.startSeq);
        // Re-opened after the last delivered message, or as first opened when none was delivered yet.
        return new ConsumerLoop(this, consumer, `ordered:${filter}`, false, filter, opts, kind, (from) => ordered(from ?? opts.startSeq));
      }
      const durable = checkName("consumer", opts.durable);
      this.jsm ??= await jetstreamManager(this.nc, { timeout: this.requestTimeoutMs });
      const existing = await this.jsm.consumers.info(this.stream.name, durable).catch((e: unknown) => {
        if (e instanceof JetStreamApiError && e.code === 10014) return undefined;
        throw e;
      });
      if (existing) {
        if (existing.config.filter_subject !== filter) {
          throw new PgfedError(
            "bus.consumer_conflict",
            `durable consumer ${durable} exists with filter ${existing.config.filter_subject ?? "(none)"}, not ${filter}; use another name or delete it`,
            { durable, filter },
          );
        }
      } else {
        const cfg: Partial<ConsumerConfig> = {
          durable_name: durable,
          filter_subject: filter,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: deliver,
          replay_policy: ReplayPolicy.Instant,
          // One spare delivery beyond ours, in case dead-lettering the failed message itself failed.
          max_deliver: (opts.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver) + 1,
          ack_wait: nanos(opts.ackWaitMs ?? CONSUMER_DEFAULTS.ackWaitMs),
          max_ack_pending: 1_000,
          ...(opts.startSeq !== undefined ? { opt_start_seq: opts.startSeq } : {}),
        };
        await this.jsm.consumers.add(this.stream.name, cfg);
        this.log.info({ durable, filter }, `created durable consumer ${durable} on ${filter}`);
      }
      const consumer = await this.js.consumers.get(this.stream.name, durable);
      return new ConsumerLoop(this, consumer, durable, true, filter, opts, kind);
    } catch (e) {
      if (e instanceof PgfedError) throw e;
      throw wrapError("bus.subscribe_failed", doing, e);
    }
  }

  /** Used by ConsumerLoop: stores a dead letter (deduplicated per stream sequence and reason). */
  async deadLetter(m: JsMsg, reason: DeadLetterReason, error: string, consumer: string, refusal?: string): Promise<void> {
    const record: DeadLetter = {
      reason,
      ...(refusal !== undefined ? { refusal } : {}),
      error,
      subject: m.subject,
      streamSeq: m.seq,
      consumer,
      at: new Date().toISOString(),
      payloadBase64: Buffer.from(m.data).toString("base64"),
    };
    await this.publishRaw(subjects.deadLetter(reason), JSON.stringify(record), `dlq.${this.stream.name}.${m.seq}.${reason}`, `dead letter for ${m.subject} #${m.seq}`);
    this.metrics.deadLetters.inc({ reason });
  }

  track(loop: ConsumerLoop, on: boolean): void {
    if (on) this.subscriptions.add(loop);
    else this.subscriptions.delete(loop);
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    const graceMs = Math.max(1_000, this.requestTimeoutMs);
    // Bounded: while disconnected, nothing can be drained, and close() must still return.
    await withTimeout(Promise.all([...this.subscriptions].map((s) => s.stop())), graceMs);
    if (!this.nc.isClosed()) {
      const drained = this.connected
        ? await withTimeout(
            this.nc.drain().then(() => true),
            graceMs,
          ).catch((e: unknown) => {
            this.log.warn({ err: e }, `while draining the NATS connection: ${errorMessage(e)}`);
            return false;
          })
        : false;
      if (!drained && !this.nc.isClosed()) await this.nc.close().catch(() => undefined);
    }
    await withTimeout(this.statusLoop ?? Promise.resolve(), graceMs).catch(() => undefined);
    this.metrics.connected.set(0);
  }

  get isClosing(): boolean {
    return this.closing;
  }
}

/** Whether a failed publish attempt is worth another one before the deadline. */
function isRetriable(e: unknown): boolean {
  if (e instanceof ClosedConnectionError || e instanceof DrainingConnectionError) return false;
  if (e instanceof PgfedError) return false;
  // The server answered: only "temporarily unavailable" (JetStream recovering) is worth a retry.
  if (e instanceof JetStreamApiError) return e.status === 503;
  return true; // timeouts, no responders, connection errors
}
