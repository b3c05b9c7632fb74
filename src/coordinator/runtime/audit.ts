/**
 * The audit trail of one federation (safety rule 4): every record goes to the bus subject
 * `pgfed.<federation>.audit`, in order, retried a few times; a failure to store one is logged,
 * never thrown at the step that wrote it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { makeMessage, subjects, type Bus, type BusMessage } from "../../bus/index.js";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import { ServiceError, type AuditEntry } from "../../api/contract.js";

export type AuditNumbers = Record<string, number | string | boolean | null>;

/** Longest `reason` / `description` stored; the bus message schema bounds the record. */
const MAX_TEXT = 4_000;
const PUBLISH_ATTEMPTS = 5;

export class AuditTrail {
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly p: {
      federation: string;
      source: string;
      bus: Bus;
      log: Logger;
      /** The epoch a record without one is written at (the machine's current epoch). */
      epoch: () => number;
      stopped: () => boolean;
    },
  ) {}

  /** Queues one record; `member` and `operationId` null when it concerns neither. */
  write(action: string, description: string, reason: string, numbers: AuditNumbers, operationId: string | null, member: string | null, epoch?: number): void {
    if (this.p.stopped()) return;
    let msg: BusMessage;
    try {
      msg = makeMessage("audit", {
        federation: this.p.federation,
        ...(member ? { member } : {}),
        epoch: epoch ?? this.p.epoch(),
        source: this.p.source,
        data: {
          actor: this.p.source,
          action,
          reason: reason.slice(0, MAX_TEXT),
          numbers,
          description: description.slice(0, MAX_TEXT),
          ...(operationId ? { operationId } : {}),
        },
      });
    } catch (e) {
      this.p.log.error({ err: errorMessage(e) }, `cannot build the audit record ${action} for ${this.p.federation}: ${errorMessage(e)}`);
      return;
    }
    this.chain = this.chain.then(async () => {
      for (let attempt = 0; attempt < PUBLISH_ATTEMPTS && !this.p.stopped(); attempt++) {
        try {
          await this.p.bus.publish(msg);
          return;
        } catch (e) {
          this.p.log.warn({ err: errorMessage(e) }, `audit record ${action} of ${this.p.federation} not stored yet (attempt ${attempt + 1}): ${errorMessage(e)}`);
        }
      }
    });
  }

  /** Resolves once every record queued so far is stored or given up. */
  drained(): Promise<void> {
    return this.chain;
  }
}

/** An audit message from the bus as the API shows it. */
export function auditEntryOf(msg: BusMessage): AuditEntry | undefined {
  if (msg.type !== "audit") return undefined;
  return {
    at: msg.at,
    federation: msg.federation,
    member: msg.member ?? null,
    epoch: msg.epoch,
    actor: msg.data.actor,
    action: msg.data.action,
    reason: msg.data.reason,
    description: msg.data.description,
    numbers: { ...msg.data.numbers },
    operationId: msg.data.operationId ?? null,
  };
}

/** How long a read of the trail may take before it is reported unavailable. */
const READ_BUDGET_MS = 5_000;

/**
 * The audit trail of `federation` from the stream, up to its newest record (oldest first, the
 * newest `limit`). A read that cannot reach the newest record is an error (`unavailable`, 503),
 * never a shorter or empty trail: found by the chaos suite, where a read right after NATS was
 * SIGKILLed and restarted answered an empty trail with 200.
 */
export async function readAuditTrail(bus: Bus, federation: string, opts: { sinceMs?: number; limit?: number }): Promise<AuditEntry[]> {
  const subject = subjects.audit(federation);
  let lastSeq: number;
  try {
    lastSeq = (await bus.lastMessage(subject))?.seq ?? 0;
  } catch (e) {
    throw new ServiceError("unavailable", `cannot read the audit trail of ${federation} from NATS: ${errorMessage(e)}; try again`);
  }
  if (lastSeq === 0) return [];
  const out: AuditEntry[] = [];
  let done: () => void = () => undefined;
  const finished = new Promise<boolean>((r) => (done = () => r(true)));
  const sub = await bus
    .subscribe(
      subject,
      (msg, meta) => {
        const e = auditEntryOf(msg);
        if (e && (opts.sinceMs === undefined || Date.parse(e.at) >= opts.sinceMs)) out.push(e);
        if (meta.streamSeq >= lastSeq) done();
      },
      { deadLetters: false },
    )
    .catch((e: unknown) => {
      throw new ServiceError("unavailable", `cannot read the audit trail of ${federation} from NATS: ${errorMessage(e)}; try again`);
    });
  const complete = await Promise.race([finished, sleep(READ_BUDGET_MS).then(() => false)]);
  await sub.stop();
  if (!complete) throw new ServiceError("unavailable", `read ${out.length} audit record(s) of ${federation} but not the newest (stream sequence ${lastSeq}) within ${READ_BUDGET_MS / 1000} s; try again`);
  return out.slice(-(opts.limit ?? 1_000));
}

