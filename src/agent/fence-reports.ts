/**
 * The audit records of the fences the agent applies itself (fencing.ts): queued until the bus
 * takes them, with deterministic ids so a report sent twice is stored once; what the bus refuses
 * is sent again on the next heartbeat or reconnect.
 */
import { makeMessage, type Bus } from "../bus/index.js";
import type { Logger } from "../log.js";
import type { EpochTracker } from "./epochs.js";

/** What the agent reports on the audit stream after fencing a member itself (self-fence or sweep). */
export interface FenceReport {
  federation: string;
  member: string;
  /** Audit action: `primary.self_fenced` (lease guard) or `primary.superseded_fenced` (sweep). */
  action: string;
  /** Part of the deterministic audit id. */
  idKind: string;
  from: string;
  reason: string;
  sentence: string;
  numbers: Record<string, number | string | boolean | null>;
  fencedAtMs: number;
}

export interface FenceReportsOptions {
  bus: Bus;
  region: string;
  /** `agent:<region>`: actor and source of the audit records. */
  source: string;
  epochs: EpochTracker;
  log: Logger;
  /** Aborted when the agent stops: nothing more is sent. */
  stopSignal: AbortSignal;
  now: () => number;
  publishFailed: (type: string, what: string, e: unknown) => void;
}

export class FenceReports {
  private readonly queue: FenceReport[] = [];
  private flushing: Promise<void> | undefined;

  constructor(private readonly opts: FenceReportsOptions) {}

  /** Reports waiting for the bus. */
  get pending(): number {
    return this.queue.length;
  }

  /** Queues a report and sends it right away if the bus takes it. */
  add(report: FenceReport): void {
    this.queue.push(report);
    this.flush();
  }

  /** Publishes the queued reports as audit records, oldest first, until the bus refuses one. */
  flush(): void {
    const { bus, region, source, epochs, log, stopSignal } = this.opts;
    if (this.flushing || this.queue.length === 0 || stopSignal.aborted) return;
    this.flushing = (async () => {
      while (this.queue.length > 0 && !stopSignal.aborted) {
        const r = this.queue[0];
        if (!r) break;
        try {
          const msg = makeMessage("audit", {
            federation: r.federation,
            member: r.member,
            epoch: epochs.current(r.federation),
            source,
            id: `agent.${region}.${r.idKind}.${r.member}.${r.fencedAtMs}`,
            at: new Date(this.opts.now()),
            data: {
              actor: source,
              action: r.action,
              reason: r.reason,
              numbers: r.numbers,
              from: r.from,
              description: r.sentence,
            },
          });
          await bus.publish(msg);
          this.queue.shift();
          log.info({ federation: r.federation, member: r.member, action: r.action }, `reported ${r.action} of ${r.federation}/${r.member} on the audit stream`);
        } catch (e) {
          this.opts.publishFailed("audit", `${r.action} report of ${r.federation}/${r.member}`, e);
          break; // the next heartbeat or reconnect tries again
        }
      }
    })().finally(() => {
      this.flushing = undefined;
    });
  }
}
