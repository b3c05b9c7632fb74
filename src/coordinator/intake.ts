/**
 * The leader's bus intake: one ordered consumer on `pgfed.*.>` (every federation's subjects; one
 * wildcard filter, which nats-server 2.9 accepts) routing each message to the runtime of its
 * federation. One consumer per federation cost the NATS server a pull loop and heartbeats each
 * (1000 federations: 1000 consumers) and the coordinator a delivery loop and buffers each.
 * Delivery order is the stream's, as before; a federation receives what is stored after it
 * registers (the per-federation consumers were `deliverNew` at the runtime's start, the same).
 * Messages of federations nobody registered (not configured, or not loaded yet) are dropped.
 */
import { filters, parseSubject, type Bus, type BusMessage, type BusSubscription, type DeadLetter } from "../bus/index.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";

export type FederationHandler = (msg: BusMessage) => void;

/** A command an agent refused because its proof of sender failed (agent/command-auth.ts), as its dead letter tells. */
export interface RejectedCommand {
  member: string;
  /** The agent's reason ("unsigned", "untrusted_signer", "bad_signature", "not_lease_holder"), from the dead letter's `refusal`. */
  reason: string;
  /** "unsigned: refusing …" — the agent's reason and sentence. */
  error: string;
  streamSeq: number;
  atMs: number;
}
export type RejectionHandler = (r: RejectedCommand) => void;

/** What a FederationRuntime needs of the intake. */
export interface FederationIntakeLike {
  /** Routes the federation's messages to `handler` (and its rejected commands to `onRejected`) from now on; returns the unregister function. */
  register(federation: string, handler: FederationHandler, onRejected?: RejectionHandler): () => void;
}

/** The federation and member of an `unauthenticated` dead letter (a command that failed its proof), or undefined. */
export function rejectedCommandOf(dl: DeadLetter, storedAtMs: number): { federation: string; rejected: RejectedCommand } | undefined {
  if (dl.reason !== "unauthenticated") return undefined;
  const s = parseSubject(dl.subject);
  if (s?.kind !== "member" || s.channel !== "cmd") return undefined;
  // Older agents wrote the reason only as the error's first word ("unsigned: refusing …").
  const reason = dl.refusal ?? (dl.error.indexOf(":") > 0 ? dl.error.slice(0, dl.error.indexOf(":")) : "unknown");
  return { federation: s.federation, rejected: { member: s.member, reason, error: dl.error, streamSeq: dl.streamSeq, atMs: storedAtMs } };
}

export class FederationIntake implements FederationIntakeLike {
  private readonly routes = new Map<string, FederationHandler>();
  private readonly rejections = new Map<string, RejectionHandler>();
  private subscription: BusSubscription | undefined;
  /** Messages handed to a runtime / dropped (no runtime registered for their federation). */
  routed = 0;
  dropped = 0;

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  /** Opens the shared consumer (new messages only). Throws `bus.subscribe_failed` when NATS refuses. */
  async start(): Promise<void> {
    if (this.subscription) return;
    this.subscription = await this.bus.subscribe(filters.allFederations(), (msg) => this.route(msg), {
      deliverNew: true,
      deadLetters: true,
      onDeadLetter: (dl, meta) => {
        const r = rejectedCommandOf(dl, meta.storedAt.getTime());
        if (r) this.rejections.get(r.federation)?.(r.rejected);
      },
    });
  }

  register(federation: string, handler: FederationHandler, onRejected?: RejectionHandler): () => void {
    this.routes.set(federation, handler);
    if (onRejected) this.rejections.set(federation, onRejected);
    return () => {
      if (this.routes.get(federation) === handler) this.routes.delete(federation);
      if (this.rejections.get(federation) === onRejected) this.rejections.delete(federation);
    };
  }

  /** Registered federations (for tests and logs). */
  get size(): number {
    return this.routes.size;
  }

  route(msg: BusMessage): void {
    const handler = this.routes.get(msg.federation);
    if (!handler) {
      this.dropped++;
      return;
    }
    this.routed++;
    try {
      handler(msg);
    } catch (e) {
      // A runtime's bug must not stall every other federation's intake.
      this.log.error({ federation: msg.federation, err: errorMessage(e) }, `the runtime of ${msg.federation} failed on a ${msg.type} message: ${errorMessage(e)}`);
    }
  }

  async stop(): Promise<void> {
    const sub = this.subscription;
    this.subscription = undefined;
    this.routes.clear();
    this.rejections.clear();
    await sub?.stop();
  }
}
