/**
 * The federation record in KV (record.ts; safety rule 5): written after every transition with
 * compare-and-swap on its revision, in order, retried on transport failures. A stale revision
 * means another coordinator writes the federation: this one steps down for it (`onStale`).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { StaleRevisionError, type StateStore } from "../../bus/index.js";
import { PgfedError, errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { Limit } from "../limiter.js";
import type { FederationRecord } from "../record.js";

export type RecordValue = Omit<FederationRecord, "updatedAt">;

export class RecordWriter {
  /** KV revision of the record this coordinator last wrote or read. */
  revision: number | undefined;
  private chain: Promise<void> = Promise.resolve();
  private lastPersisted = "";
  private lastWrite: { updatedAt: string } | undefined;
  private stale = false;

  constructor(
    private readonly p: {
      federation: string;
      coordinatorId: string;
      store: StateStore<FederationRecord>;
      log: Logger;
      now: () => number;
      kvLimit?: Limit | undefined;
      onStale: (federation: string, why: string) => void;
      stopped: () => boolean;
    },
  ) {}

  get isStale(): boolean {
    return this.stale;
  }

  /** A KV round trip, bounded by the leader's limiter when many runtimes start at once. */
  kv<T>(fn: () => Promise<T>): Promise<T> {
    return this.p.kvLimit ? this.p.kvLimit(fn) : fn();
  }

  /** Queues a write of `value` unless it equals the last one queued; `force` writes it anyway. */
  persist(value: RecordValue, force = false): void {
    if (this.stale || this.p.stopped()) return;
    const key = JSON.stringify(value);
    if (key === this.lastPersisted && !force) return;
    this.lastPersisted = key;
    this.chain = this.chain.then(() => this.write({ ...value, updatedAt: new Date(this.p.now()).toISOString() }));
  }

  /** Resolves when everything decided so far is stored; throws once another coordinator writes the record. */
  async flushed(): Promise<void> {
    await this.chain;
    if (this.stale) throw new PgfedError("coordinator.stale", `${this.p.federation}: this coordinator is no longer the writer of the federation record`);
  }

  /**
   * The epoch rule an agent applies to a command, for what the coordinator does itself (fencing
   * through a region's Kubernetes API, fencing.ts): it acts only while the stored record still
   * names it as the writer at `epoch`. Throws (coordinator.superseded) otherwise.
   */
  async confirmWriter(epoch: number): Promise<void> {
    await this.flushed();
    const fed = this.p.federation;
    const cur = await this.kv(() => this.p.store.get(fed));
    if (cur === undefined || cur.value.leader !== this.p.coordinatorId || cur.value.epoch !== epoch) {
      throw new PgfedError(
        "coordinator.superseded",
        `${fed}: not acting at epoch ${epoch}: the stored record is at epoch ${cur?.value.epoch ?? "none"}, written by ${cur?.value.leader ?? "nobody"}`,
        { federation: fed, epoch },
      );
    }
  }

  /** Writes with CAS; retries transport failures; a stale revision means someone else writes: step down. */
  private async write(value: FederationRecord): Promise<void> {
    const fed = this.p.federation;
    for (let attempt = 0; !this.stale && !this.p.stopped(); attempt++) {
      try {
        this.lastWrite = { updatedAt: value.updatedAt };
        const rev = this.revision;
        this.revision = await this.kv(() => (rev === undefined ? this.p.store.create(fed, value) : this.p.store.update(fed, value, rev)));
        return;
      } catch (e) {
        // The store reports a CAS conflict as StaleRevisionError (state.ts), never as the raw JetStream error.
        if (e instanceof StaleRevisionError) {
          // The previous attempt may have landed with its reply lost: adopt it if it is ours.
          const cur = await this.p.store.get(fed).catch(() => undefined);
          if (cur && cur.value.leader === this.p.coordinatorId && cur.value.updatedAt === this.lastWrite?.updatedAt) {
            this.revision = cur.revision;
            return;
          }
          this.stale = true;
          const why = `the record of ${fed} changed under revision ${this.revision ?? "none"} (now ${cur?.revision ?? "?"}, written by ${cur?.value.leader ?? "?"})`;
          this.p.log.error(`stepping down for ${fed}: ${why}; another coordinator writes it`);
          this.p.onStale(fed, why);
          return;
        }
        if (attempt % 10 === 0) this.p.log.warn({ err: errorMessage(e) }, `persisting ${fed} failed (attempt ${attempt + 1}); retrying: ${errorMessage(e)}`);
        await sleep(Math.min(2_000, 200 * (attempt + 1)));
      }
    }
  }
}
