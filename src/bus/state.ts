/**
 * Durable state in the KV bucket `pgfed_state` (rule 5): JSON values checked by a zod schema the
 * caller supplies, written with compare-and-swap on the revision.
 *
 * Keys are NATS subjects, so dots make a hierarchy that can be watched with wildcards:
 *   <federation>                        the federation's record (epoch, designated primary, operation)
 *   <federation>.snapshot.<machine>     one xstate snapshot per actor
 * One key per actor keeps values small and lets actors persist without contending for the
 * federation's revision. A store is opened for one key `scope` (a KV filter, `*` by default =
 * federation records) with one schema; a second store on `*.snapshot.*` holds snapshots.
 * Schemas should be plain (no transforms) so a value read back equals the value written.
 */
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import { JetStreamApiError, StorageType } from "@nats-io/jetstream";
import type { QueuedIterator } from "@nats-io/transport-node";
import type { z } from "zod";
import { PgfedError, errorMessage, wrapError } from "../errors.js";
import type { Bus } from "./bus.js";
import { describeIssues } from "./messages.js";
import { checkName, subjectMatches } from "./subjects.js";

export const STATE_BUCKET = "pgfed_state";

/** Revision mismatch on a compare-and-swap write: someone else wrote first. Re-read and retry. */
export class StaleRevisionError extends PgfedError {
  constructor(
    readonly key: string,
    readonly expectedRevision: number,
    bucket: string,
    cause?: unknown,
  ) {
    super(
      "bus.stale_revision",
      expectedRevision === 0
        ? `while creating ${bucket}/${key}: it already exists`
        : `while updating ${bucket}/${key} at revision ${expectedRevision}: the value has changed since (stale revision)`,
      { key, expectedRevision, bucket },
      { cause },
    );
    this.name = "StaleRevisionError";
  }
}

/** A stored value does not match the schema (never silently replaced). */
export class InvalidStateError extends PgfedError {
  constructor(
    readonly key: string,
    readonly revision: number,
    bucket: string,
    problem: string,
  ) {
    super("bus.invalid_state", `${bucket}/${key} at revision ${revision} holds an invalid value: ${problem}`, { key, revision, bucket });
    this.name = "InvalidStateError";
  }
}

export function isStaleRevision(e: unknown): boolean {
  return e instanceof JetStreamApiError && (e.code === 10071 || e.code === 10164);
}

export const stateKeys = {
  federation: (federation: string): string => checkName("federation", federation),
  snapshot: (federation: string, machine: string): string => `${checkName("federation", federation)}.snapshot.${checkName("machine", machine)}`,
  /** Scope of federation records. */
  federations: "*",
  /** Scope of all snapshots. */
  snapshots: "*.snapshot.*",
  snapshotsOf: (federation: string): string => `${checkName("federation", federation)}.snapshot.*`,
};

export interface StateEntry<T> {
  key: string;
  value: T;
  revision: number;
  updatedAt: Date;
}

/** One change seen by watch(): a value, a deletion, or a value the schema refused. */
export type StateChange<T> =
  | { kind: "put"; key: string; revision: number; value: T }
  | { kind: "delete"; key: string; revision: number }
  | { kind: "invalid"; key: string; revision: number; error: InvalidStateError };

export interface StateStoreOptions {
  bucket?: string;
  /** Values kept per key (1–5). */
  history?: number;
  /** KV filter of the keys this store owns; default `*` (federation records). */
  scope?: string;
}

export interface ModifyOptions {
  /** CAS conflicts retried before giving up with StaleRevisionError (default 5). */
  retries?: number;
}

export interface StateWatch {
  stop(): Promise<void>;
}

/** Opens (creating if needed) the bucket and returns a store for `scope` typed by `schema`. */
export async function openStateStore<T>(bus: Bus, schema: z.ZodType<T>, opts: StateStoreOptions = {}): Promise<StateStore<T>> {
  const bucket = opts.bucket ?? STATE_BUCKET;
  const history = opts.history ?? 5;
  if (!Number.isInteger(history) || history < 1 || history > 5) throw new PgfedError("bus.bad_options", `state history must be 1..5, not ${history}`);
  try {
    // As many replicas as the stream (bus.replicas): a bucket that lives on one server dies with that server's site.
    const kv = await new Kvm(bus.js).create(bucket, { history, storage: StorageType.File, replicas: bus.stream.replicas, timeout: bus.requestTimeoutMs, description: "pgfed durable state: federation records and actor snapshots" });
    return new StateStore<T>(kv, bucket, schema, opts.scope ?? stateKeys.federations, bus);
  } catch (e) {
    throw wrapError("bus.kv_failed", `while opening KV bucket ${bucket}`, e);
  }
}

export class StateStore<T> {
  constructor(
    private readonly kv: KV,
    readonly bucket: string,
    private readonly schema: z.ZodType<T>,
    readonly scope: string,
    private readonly bus: Bus,
  ) {}

  /** The current value, or undefined when absent or deleted. Throws InvalidStateError on a bad value. */
  async get(key: string): Promise<StateEntry<T> | undefined> {
    this.checkKey(key);
    let e: KvEntry | null;
    try {
      e = await this.kv.get(key);
    } catch (err) {
      throw wrapError("bus.kv_failed", `while reading ${this.bucket}/${key}`, err);
    }
    if (!e || e.operation !== "PUT") return undefined;
    return { key, value: this.decode(key, e.revision, e.value), revision: e.revision, updatedAt: e.created };
  }

  /** Writes `value` only if the key does not exist; returns the revision. Exists → StaleRevisionError. */
  async create(key: string, value: T): Promise<number> {
    this.checkKey(key);
    const data = this.encode(key, value);
    try {
      return await this.kv.create(key, data);
    } catch (err) {
      if (isStaleRevision(err)) throw new StaleRevisionError(key, 0, this.bucket, err);
      throw wrapError("bus.kv_failed", `while creating ${this.bucket}/${key}`, err);
    }
  }

  /** Writes `value` only if the key is still at `expectedRevision` (CAS); returns the new revision. */
  async update(key: string, value: T, expectedRevision: number): Promise<number> {
    this.checkKey(key);
    if (!Number.isInteger(expectedRevision) || expectedRevision < 1) {
      throw new PgfedError("bus.bad_revision", `while updating ${this.bucket}/${key}: revision must be a positive integer, not ${expectedRevision}`);
    }
    const data = this.encode(key, value);
    try {
      return await this.kv.update(key, data, expectedRevision);
    } catch (err) {
      if (isStaleRevision(err)) throw new StaleRevisionError(key, expectedRevision, this.bucket, err);
      throw wrapError("bus.kv_failed", `while updating ${this.bucket}/${key} at revision ${expectedRevision}`, err);
    }
  }

  /**
   * Read-modify-write with CAS retry. `fn` gets the current value (undefined when absent) and
   * returns the new value, or undefined to leave it unchanged. It may run several times.
   * Returns the entry as stored (or as found when unchanged; undefined when absent and unchanged).
   */
  async modify(key: string, fn: (current: T | undefined, entry: StateEntry<T> | undefined) => T | undefined | Promise<T | undefined>, opts: ModifyOptions = {}): Promise<StateEntry<T> | undefined> {
    const retries = opts.retries ?? 5;
    for (let attempt = 0; ; attempt++) {
      const current = await this.get(key);
      const next = await fn(current?.value, current);
      if (next === undefined) return current;
      try {
        const revision = current ? await this.update(key, next, current.revision) : await this.create(key, next);
        return { key, value: next, revision, updatedAt: new Date() };
      } catch (e) {
        if (!(e instanceof StaleRevisionError) || attempt >= retries) throw e;
        this.bus.log.debug({ key, attempt }, `CAS conflict on ${this.bucket}/${key}; re-reading (attempt ${attempt + 1} of ${retries})`);
      }
    }
  }

  /** Deletes the key (a delete marker); with `expectedRevision`, only if unchanged. */
  async delete(key: string, expectedRevision?: number): Promise<void> {
    this.checkKey(key);
    try {
      await this.kv.delete(key, expectedRevision === undefined ? undefined : { previousSeq: expectedRevision });
    } catch (err) {
      if (isStaleRevision(err)) throw new StaleRevisionError(key, expectedRevision ?? 0, this.bucket, err);
      throw wrapError("bus.kv_failed", `while deleting ${this.bucket}/${key}`, err);
    }
  }

  /** Keys in this store's scope that currently hold a value. */
  async keys(): Promise<string[]> {
    try {
      const it = await this.kv.keys(this.scope);
      const out: string[] = [];
      for await (const k of it) out.push(k);
      return out.sort();
    } catch (err) {
      throw wrapError("bus.kv_failed", `while listing keys ${this.scope} in ${this.bucket}`, err);
    }
  }

  /**
   * Calls `fn` for every change in scope (first the current values unless `updatesOnly`).
   * Invalid values arrive as `{ kind: "invalid" }`; errors thrown by `fn` are logged.
   * Survives reconnects (the client re-creates the underlying ordered consumer).
   */
  async watch(fn: (change: StateChange<T>) => void | Promise<void>, opts: { updatesOnly?: boolean; key?: string } = {}): Promise<StateWatch> {
    const filter = opts.key ?? this.scope;
    let it: QueuedIterator<KvEntry & { isUpdate: boolean }>;
    try {
      it = await this.kv.watch({ key: filter, ...(opts.updatesOnly ? { include: "updates" as const } : {}) });
    } catch (err) {
      throw wrapError("bus.kv_failed", `while watching ${filter} in ${this.bucket}`, err);
    }
    const loop = (async () => {
      for await (const e of it) {
        if (!subjectMatches(this.scope, e.key)) continue;
        let change: StateChange<T>;
        if (e.operation !== "PUT") change = { kind: "delete", key: e.key, revision: e.revision };
        else {
          try {
            change = { kind: "put", key: e.key, revision: e.revision, value: this.decode(e.key, e.revision, e.value) };
          } catch (err) {
            const error = err instanceof InvalidStateError ? err : new InvalidStateError(e.key, e.revision, this.bucket, errorMessage(err));
            change = { kind: "invalid", key: e.key, revision: e.revision, error };
          }
        }
        try {
          await fn(change);
        } catch (err) {
          this.bus.log.error({ err, key: e.key }, `state watcher failed on ${this.bucket}/${e.key}: ${errorMessage(err)}`);
        }
      }
    })();
    return {
      stop: async () => {
        it.stop();
        await loop.catch(() => undefined);
      },
    };
  }

  private checkKey(key: string): void {
    if (!/^[-/_=.a-zA-Z0-9]+$/.test(key) || key.startsWith(".") || key.endsWith(".") || key.includes("..")) {
      throw new PgfedError("bus.invalid_key", `invalid state key ${JSON.stringify(key)}: letters, digits, "-", "_", "/", "=" and dot-separated parts only`, { key });
    }
    if (!subjectMatches(this.scope, key)) {
      throw new PgfedError("bus.invalid_key", `state key ${JSON.stringify(key)} is outside this store's scope ${this.scope}`, { key, scope: this.scope });
    }
  }

  private encode(key: string, value: T): string {
    const ok = this.schema.safeParse(value);
    if (!ok.success) throw new InvalidStateError(key, 0, this.bucket, `refusing to write it: ${describeIssues(ok.error.issues)}`);
    return JSON.stringify(value);
  }

  private decode(key: string, revision: number, data: Uint8Array): T {
    let raw: unknown;
    try {
      raw = JSON.parse(Buffer.from(data).toString("utf8"));
    } catch (e) {
      throw new InvalidStateError(key, revision, this.bucket, `not JSON: ${errorMessage(e)}`);
    }
    const parsed = this.schema.safeParse(raw);
    if (!parsed.success) throw new InvalidStateError(key, revision, this.bucket, describeIssues(parsed.error.issues));
    return parsed.data;
  }
}
