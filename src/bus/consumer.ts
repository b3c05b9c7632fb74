/**
 * One consumer's delivery loop on the bus (bus.ts opens the consumer): every message is parsed,
 * then handled, dead-lettered (invalid input, or a handler that kept failing) or skipped, and
 * acked or nakked with a growing delay; nothing a message contains can stop the loop (rule 6).
 */
import type { ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import { PgfedError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { deadLetterSchema, parseEnvelope, subjectOf, type BusMessage, type DeadLetter } from "./messages.js";
import type { BusMetrics } from "./metrics.js";
import { parseSubject, type DeadLetterReason } from "./subjects.js";

export interface MessageMeta {
  subject: string;
  streamSeq: number;
  /** 1 on first delivery. */
  deliveryCount: number;
  redelivered: boolean;
  /** When JetStream stored the message. */
  storedAt: Date;
}

export type MessageHandler = (msg: BusMessage, meta: MessageMeta) => void | Promise<void>;
export type DeadLetterHandler = (dl: DeadLetter, meta: MessageMeta) => void | Promise<void>;

export interface SubscribeOptions {
  /**
   * Durable consumer name: acked delivery that resumes where it left off after a restart or a
   * reconnect (the coordinator, agents' command intake). Without it: an ordered consumer that
   * reads the stream from `startSeq` / the start / new messages, nothing acked (audit readers).
   */
  durable?: string;
  /** Only messages stored from now on (applies when the consumer is created). */
  deliverNew?: boolean;
  /** Start at this stream sequence (applies when the consumer is created). */
  startSeq?: number;
  /** Deliveries of one message before it is dead-lettered as `handler_failed` (durable only). */
  maxDeliver?: number;
  /** Redelivery when a handler neither acks nor fails in this time (durable only). */
  ackWaitMs?: number;
  /** Redelivery delay after a handler error, multiplied by the delivery count. */
  nakDelayMs?: number;
  /** Publish invalid messages to `pgfed.dlq.<reason>` (default true). */
  deadLetters?: boolean;
  /** A wide filter (`pgfed.*.>`) also matches `pgfed.dlq.*`: hand those records here instead of skipping them. */
  onDeadLetter?: DeadLetterHandler;
}

export interface BusSubscription {
  /** Consumer name (durable name, or "ordered:<filter>"). */
  readonly name: string;
  /** Stops delivery; resolves when the handler in progress has finished. */
  stop(): Promise<void>;
}

/** Consumer settings used when SubscribeOptions leaves them out. */
export const CONSUMER_DEFAULTS = {
  maxDeliver: 5,
  ackWaitMs: 30_000,
  nakDelayMs: 1_000,
};

/** What a delivery loop needs of the bus it runs on. */
export interface ConsumerHost {
  readonly log: Logger;
  readonly metrics: BusMetrics;
  readonly isClosing: boolean;
  /** Stores a dead letter (deduplicated per stream sequence and reason). */
  deadLetter(m: JsMsg, reason: DeadLetterReason, error: string, consumer: string, refusal?: string): Promise<void>;
  /** Counts the loop among the bus's subscriptions while it runs (close() stops them). */
  track(loop: ConsumerLoop, on: boolean): void;
}

/**
 * Thrown by a handler for a message it refuses on grounds that a redelivery cannot change (a
 * command whose proof of sender fails): the loop dead-letters it at once with `reason` and acks.
 */
export class RefusedMessageError extends PgfedError {
  constructor(
    readonly reason: DeadLetterReason,
    message: string,
    /** The handler's own word for why (kept in the dead letter's `refusal`). */
    readonly refusal?: string,
  ) {
    super("bus.message_refused", message, { reason, ...(refusal !== undefined ? { refusal } : {}) });
    this.name = "RefusedMessageError";
  }
}

export type ConsumerLike = { consume(opts?: { expires?: number }): Promise<ConsumerMessages> };

const CONSUME_EXPIRES_MS = 2_000;
/** Heartbeats (one per CONSUME_EXPIRES_MS / 2) an ordered consumer may miss before it is re-opened elsewhere. */
const REOPEN_AFTER_MISSED = 3;

/** One consumer's delivery loop: parse, dead-letter or handle, ack/nak. Never throws. */
export class ConsumerLoop implements BusSubscription {
  handleEnvelope: MessageHandler | undefined;
  handleDeadLetter: DeadLetterHandler | undefined;
  private messages: ConsumerMessages | undefined;
  private stopped = false;
  private done: Promise<void> = Promise.resolve();
  private readonly log: Logger;
  /** Stream sequence of the last message delivered: where a re-opened ordered consumer resumes. */
  private lastSeq: number | undefined;
  private consumer: ConsumerLike;

  /**
   * `reopen` (ordered consumers): makes a new consumer starting at a stream sequence. An ordered
   * consumer is an ephemeral, one-replica consumer on one NATS server; when that server dies, the
   * client keeps asking the dead consumer for its state and delivers nothing until the server is
   * back. The loop notices (heartbeats missed for REOPEN_AFTER_MISSED pulls, or the iterator ending)
   * and opens a new one after the last message it delivered, on a server that is up.
   */
  constructor(
    private readonly bus: ConsumerHost,
    consumer: ConsumerLike,
    readonly name: string,
    private readonly acked: boolean,
    private readonly filter: string,
    private readonly opts: SubscribeOptions,
    private readonly kind: "envelope" | "deadLetter",
    private readonly reopen?: (startSeq: number | undefined) => Promise<ConsumerLike>,
  ) {
    this.consumer = consumer;
    this.log = bus.log.child({ consumer: name });
  }

  run(): void {
    this.bus.track(this, true);
    this.done = this.loop().finally(() => this.bus.track(this, false));
  }

  private async loop(): Promise<void> {
    for (let round = 0; !this.stopped && !this.bus.isClosing; round++) {
      if (round > 0) {
        if (!this.reopen) return;
        const from = this.lastSeq === undefined ? undefined : this.lastSeq + 1;
        try {
          const next = await this.reopen(from);
          if (this.stopped) return;
          this.consumer = next;
          this.log.warn({ startSeq: from }, `consumer ${this.name} on ${this.filter} re-opened${from === undefined ? "" : ` at stream sequence ${from}`} after its server stopped answering`);
        } catch (e) {
          this.log.warn({ err: errorMessage(e) }, `could not re-open consumer ${this.name} on ${this.filter} yet: ${errorMessage(e)}; retrying in 1 s`);
          await new Promise((r) => setTimeout(r, 1_000));
          continue;
        }
      }
      await this.consumeOnce();
    }
  }

  private async consumeOnce(): Promise<void> {
    try {
      // Short pulls (idle heartbeat = expires/2): after a NATS restart the client keeps counting the lost pull as pending
      // (a recreated ordered consumer then pulls a few messages and stalls) until two heartbeats are missed; 30 s by default.
      const messages = await this.consumer.consume({ expires: CONSUME_EXPIRES_MS });
      this.messages = messages;
      // stop() may have run while this consumer was being (re)made: it closed the previous one, not this.
      if (this.stopped || this.bus.isClosing) {
        await messages.close().catch(() => undefined);
        return;
      }
      void this.watchNotifications(messages);
      for await (const m of messages) {
        if (this.stopped) break;
        try {
          await this.deliver(m);
          this.lastSeq = m.seq;
        } catch (e) {
          // A bug in this file, not bad input; log it and keep the consumer alive.
          this.log.error({ err: e, subject: m.subject, seq: m.seq }, `unexpected error delivering #${m.seq} on ${m.subject}: ${errorMessage(e)}`);
          this.nak(m, this.nakDelay(m));
        }
      }
    } catch (e) {
      if (!this.stopped && !this.bus.isClosing) this.log.error({ err: e }, `consumer ${this.name} on ${this.filter} stopped: ${errorMessage(e)}`);
    }
    // Without reopen the loop ends here; say so rather than go silent.
    if (!this.stopped && !this.bus.isClosing && !this.reopen) this.log.error(`consumer ${this.name} on ${this.filter} ended; no further messages are delivered to it`);
  }

  /**
   * After a reconnect: an ordered consumer's client asks the old consumer for its state and, while
   * that consumer's server is dead, waits for it forever with no heartbeat notification (the
   * client cancels its monitor on disconnect). Re-open it at once after the last handled message;
   * an ordered consumer is cheap to make again, and lastSeq keeps the delivery gap-free and once.
   */
  reopenNow(): void {
    if (!this.reopen || this.stopped) return;
    const messages = this.messages;
    if (!messages) return;
    this.log.info(`consumer ${this.name} on ${this.filter}: re-opening after the reconnect`);
    void messages.close().catch(() => undefined);
  }

  private async watchNotifications(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const n of messages.status()) {
        if (n.type === "heartbeats_missed") {
          this.log.debug({ count: n.count }, `consumer ${this.name}: server heartbeats missed`);
          if (this.reopen && n.count >= REOPEN_AFTER_MISSED && !this.stopped) {
            this.log.warn({ count: n.count }, `consumer ${this.name} on ${this.filter}: ${n.count} heartbeats missed; re-opening it`);
            await messages.close().catch(() => undefined);
            return;
          }
        } else if (n.type === "consumer_not_found" || n.type === "consumer_deleted" || n.type === "stream_not_found") {
          this.log.warn({ notification: n.type }, `consumer ${this.name} on ${this.filter}: ${n.type}; the client keeps retrying`);
        }
      }
    } catch {
      // the iterator ends when the consumer closes
    }
  }

  private meta(m: JsMsg): MessageMeta {
    return { subject: m.subject, streamSeq: m.seq, deliveryCount: m.info.deliveryCount, redelivered: m.redelivered, storedAt: m.time };
  }

  /** Handles one message; every path ends in ack, nak, or (ordered consumers) moving on. */
  private async deliver(m: JsMsg): Promise<void> {
    const subjectInfo = parseSubject(m.subject);
    if (this.kind === "deadLetter") return this.deliverDeadLetter(m);
    // Dead letters are not envelopes; a wide filter (pgfed.>) skips them (or hands them to onDeadLetter) instead of re-dead-lettering.
    if (subjectInfo?.kind === "deadLetter") return this.opts.onDeadLetter ? this.deliverDeadLetter(m, this.opts.onDeadLetter) : this.ack(m);

    const parsed = parseEnvelope(m.data);
    if (!parsed.ok) return this.reject(m, parsed.reason, parsed.error);
    const expected = subjectOf(parsed.message);
    if (expected !== m.subject) {
      return this.reject(m, "subject_mismatch", `envelope (${parsed.message.type} for ${parsed.message.federation}${parsed.message.member ? `/${parsed.message.member}` : ""}) belongs on ${expected}, not ${m.subject}`);
    }
    const handler = this.handleEnvelope;
    if (!handler) return this.ack(m);
    try {
      await handler(parsed.message, this.meta(m));
      this.ack(m);
    } catch (e) {
      if (e instanceof RefusedMessageError) return this.reject(m, e.reason, e.message, e.refusal);
      await this.handlerFailed(m, e, `${parsed.message.type} ${parsed.message.id}`);
    }
  }

  private async deliverDeadLetter(m: JsMsg, handler = this.handleDeadLetter): Promise<void> {
    let value: unknown;
    try {
      value = JSON.parse(Buffer.from(m.data).toString("utf8"));
    } catch {
      value = undefined;
    }
    const dl = deadLetterSchema.safeParse(value);
    if (!dl.success) {
      this.log.warn({ subject: m.subject, seq: m.seq }, `skipping unreadable dead-letter record #${m.seq}`);
      return this.ack(m);
    }
    try {
      await handler?.(dl.data, this.meta(m));
      this.ack(m);
    } catch (e) {
      await this.handlerFailed(m, e, `dead letter #${m.seq}`);
    }
  }

  /** Invalid input: record it on the dead-letter subject once, ack, go on (rule 6). */
  private async reject(m: JsMsg, reason: DeadLetterReason, error: string, refusal?: string): Promise<void> {
    if (this.opts.deadLetters === false) {
      this.bus.metrics.deadLetters.inc({ reason });
      this.log.warn({ subject: m.subject, seq: m.seq, reason }, `skipping invalid message #${m.seq} on ${m.subject}: ${error}`);
      return this.ack(m);
    }
    try {
      await this.bus.deadLetter(m, reason, error, this.name, refusal);
      this.log.warn({ subject: m.subject, seq: m.seq, reason }, `dead-lettered message #${m.seq} on ${m.subject} (${reason}): ${error}`);
      this.ack(m);
    } catch (e) {
      // Could not record it: leave it for a later delivery rather than lose it silently.
      this.log.error({ err: e, subject: m.subject, seq: m.seq }, `could not dead-letter message #${m.seq} on ${m.subject}: ${errorMessage(e)}`);
      this.nak(m, this.nakDelay(m));
    }
  }

  private async handlerFailed(m: JsMsg, e: unknown, what: string): Promise<void> {
    this.bus.metrics.handlerErrors.inc({ consumer: this.name });
    const maxDeliver = this.opts.maxDeliver ?? CONSUMER_DEFAULTS.maxDeliver;
    if (!this.acked) {
      this.log.error({ err: e, subject: m.subject, seq: m.seq }, `handler failed on ${what} (#${m.seq}, ${m.subject}); ordered consumer moves on: ${errorMessage(e)}`);
      return;
    }
    if (m.info.deliveryCount >= maxDeliver) {
      this.log.error({ err: e, subject: m.subject, seq: m.seq }, `handler failed on ${what} (#${m.seq}) ${m.info.deliveryCount} times; dead-lettering it: ${errorMessage(e)}`);
      return this.reject(m, "handler_failed", `handler failed ${m.info.deliveryCount} times on consumer ${this.name}: ${errorMessage(e)}`);
    }
    const delay = this.nakDelay(m);
    this.log.warn({ err: e, subject: m.subject, seq: m.seq, delivery: m.info.deliveryCount }, `handler failed on ${what} (#${m.seq}, delivery ${m.info.deliveryCount} of ${maxDeliver}); redelivery in ${delay} ms: ${errorMessage(e)}`);
    this.nak(m, delay);
  }

  private nakDelay(m: JsMsg): number {
    return (this.opts.nakDelayMs ?? CONSUMER_DEFAULTS.nakDelayMs) * Math.max(1, m.info.deliveryCount);
  }

  private ack(m: JsMsg): void {
    if (this.acked) m.ack();
  }

  private nak(m: JsMsg, delayMs: number): void {
    if (this.acked) m.nak(delayMs);
  }

  async stop(): Promise<void> {
    if (this.stopped) return this.done;
    this.stopped = true;
    await this.messages?.close().catch(() => undefined);
    await this.done;
  }
}
