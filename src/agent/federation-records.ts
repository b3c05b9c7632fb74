/**
 * The coordinator's federation records (KV `pgfed_state`, key `<federation>`) as the agent follows
 * them: each one raises its federation's epoch (epochs.ts), and what the agent knows of it is what
 * the fence sweep judges the members against (fencing.ts). Read once at start and after every
 * reconnect, watched in between.
 */
import { z } from "zod";
import { InvalidStateError, describeIssues, openStateStore, type Bus, type StateStore, type StateWatch } from "../bus/index.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { EpochTracker } from "./epochs.js";

/** The store is opened for the epoch only; the sweep reads the rest through sweepRecordSchema. */
const federationRecordSchema = z.looseObject({ epoch: z.number().int().nonnegative() });

/**
 * The fields of the coordinator's federation record (src/coordinator/record.ts) the sweep decides
 * on; the rest (snapshot, steps) is not needed here and may change without touching the agent.
 */
export const sweepRecordSchema = z.looseObject({
  epoch: z.number().int().nonnegative(),
  designatedPrimary: z.string().nullable(),
  operationId: z.string().nullable().optional(),
  operations: z.array(z.looseObject({ id: z.string(), kind: z.string(), target: z.string().nullable() })).optional(),
});
export type SweepRecord = z.infer<typeof sweepRecordSchema>;

/** What the agent knows of one federation's record: a usable record, none, or why it cannot be used. */
export type RecordKnowledge =
  | { kind: "record"; record: SweepRecord; revision: number }
  | { kind: "absent" }
  | { kind: "invalid"; revision: number; problem: string };

export function recordKnowledge(value: unknown, revision: number): RecordKnowledge {
  const parsed = sweepRecordSchema.safeParse(value);
  if (parsed.success) return { kind: "record", record: parsed.data, revision };
  return { kind: "invalid", revision, problem: describeIssues(parsed.error.issues) };
}

export interface FederationRecordsOptions {
  bus: Bus;
  federations: readonly string[];
  epochs: EpochTracker;
  log: Logger;
  /** Bounds one KV call (the agent's kube timeout). */
  bounded: <T>(p: Promise<T>, doing: string, code: string) => Promise<T>;
  /** A watch delivered a change of `federation`'s record: the fence sweep judges its members again. */
  onChange: (federation: string) => void;
}

export class FederationRecords {
  /** Absent key: not read yet. */
  private readonly known = new Map<string, RecordKnowledge>();
  private readonly watches: StateWatch[] = [];
  private store: StateStore<z.infer<typeof federationRecordSchema>> | undefined;
  private followed = false;

  constructor(private readonly opts: FederationRecordsOptions) {}

  /** What is known of `federation`'s record; undefined when it was never read. */
  get(federation: string): RecordKnowledge | undefined {
    return this.known.get(federation);
  }

  /** True once every federation's record is watched. */
  get watching(): boolean {
    return this.followed;
  }

  /** Watches every federation's record; when KV does not answer, logs and leaves it to the caller to try again. */
  async watch(): Promise<void> {
    const { federations, log } = this.opts;
    const watches: StateWatch[] = [];
    try {
      const store = await this.openStore();
      for (const fed of federations) {
        const w = await store.watch(
          (change) => {
            if (change.kind === "put") this.note(fed, recordKnowledge(change.value, change.revision), change.value.epoch);
            else if (change.kind === "delete") this.note(fed, { kind: "absent" });
            else this.note(fed, { kind: "invalid", revision: change.revision, problem: change.error.message });
            this.opts.onChange(fed);
          },
          { key: fed },
        );
        watches.push(w);
      }
      this.watches.push(...watches);
      this.followed = true;
    } catch (e) {
      await Promise.all(watches.map((w) => w.stop().catch(() => undefined)));
      log.warn({ err: errorMessage(e) }, `not following the federation records in the KV state yet (commands still raise epochs; retried with the fence sweep): ${errorMessage(e)}`);
    }
  }

  /** One read of every federation record; ok when KV answered for all (an invalid value is an answer). */
  async read(): Promise<{ ok: true } | { ok: false; error: string }> {
    try {
      const store = await this.openStore();
      for (const fed of this.opts.federations) {
        try {
          const entry = await this.opts.bounded(store.get(fed), `reading the federation record of ${fed}`, "bus.kv_failed");
          if (entry) this.note(fed, recordKnowledge(entry.value, entry.revision), entry.value.epoch);
          else this.note(fed, { kind: "absent" });
        } catch (e) {
          if (!(e instanceof InvalidStateError)) throw e;
          this.note(fed, { kind: "invalid", revision: e.revision, problem: e.message });
        }
      }
      return { ok: true };
    } catch (e) {
      return { ok: false, error: errorMessage(e) };
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.watches.map((w) => w.stop().catch(() => undefined)));
  }

  private async openStore(): Promise<StateStore<z.infer<typeof federationRecordSchema>>> {
    this.store ??= await this.opts.bounded(openStateStore(this.opts.bus, federationRecordSchema, { scope: "*" }), "opening the KV state bucket", "bus.kv_failed");
    return this.store;
  }

  /** Raises the epoch from a record and keeps what the sweep needs of it; says when it becomes unusable. */
  private note(fed: string, k: RecordKnowledge, epoch?: number): void {
    const { epochs, log } = this.opts;
    if (epoch !== undefined && k.kind !== "absent" && epochs.note(fed, epoch, "state", `revision ${k.revision}`)) {
      log.info({ federation: fed, epoch }, `${fed} is at epoch ${epoch} per the coordinator's record (revision ${k.revision})`);
    }
    const before = this.known.get(fed);
    // A read that raced with a newer watch delivery must not put an older record back.
    if (k.kind !== "absent" && before !== undefined && before.kind !== "absent" && k.revision < before.revision) return;
    this.known.set(fed, k);
    if (k.kind === "invalid" && before?.kind !== "invalid") {
      log.warn({ federation: fed }, `the federation record of ${fed} is not usable (revision ${k.revision}): ${k.problem}; no member is fenced on its account`);
    }
  }
}
