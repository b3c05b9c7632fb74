/**
 * Leases in the KV bucket `pgfed_leases`, built on values with expiry times plus compare-and-swap
 * (nats-server 2.9 ignores per-key TTL, STACK.md):
 *
 *   key `coordinator`            which coordinator leads
 *   key `primary.<federation>`   which agent holds the federation's primary (rule 3)
 *
 * value `{ holder, expiresAtMs, renewedAtMs, term }`. The holder writes expiry times from its own
 * clock; a reader judges them with `isExpired(lease, now, clockSkewMarginMs)` so that a holder
 * whose clock runs behind is not declared dead early. `term` grows each time the lease changes
 * hands or is taken again after expiring: a fencing token for whoever acts under the lease.
 * The holder considers the lease lost at its own `expiresAtMs` unless a renewal succeeded
 * before; `LeaseKeeper` reports that moment (`lostAt`) so an agent can fence its primary.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { PgfedError, errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import type { Bus } from "./bus.js";
import { checkName } from "./subjects.js";
import { StaleRevisionError, openStateStore, type StateStore } from "./state.js";

export const LEASE_BUCKET = "pgfed_leases";

export const leaseSchema = z.object({
  holder: z.string().min(1).max(256),
  expiresAtMs: z.number().int().nonnegative(),
  renewedAtMs: z.number().int().nonnegative(),
  term: z.number().int().nonnegative(),
  /** The holder's public nkey (identity.ts), when it has one: agents check a command's signer against the coordinator lease's. */
  holderKey: z.string().regex(/^U[A-Z2-7]{55}$/).optional(),
});
export type Lease = z.infer<typeof leaseSchema>;

export const leaseKeys = {
  coordinator: "coordinator",
  primary: (federation: string): string => `primary.${checkName("federation", federation)}`,
};

/** A lease this process holds: what it wrote and at which revision (for the next CAS). */
export interface HeldLease {
  key: string;
  lease: Lease;
  revision: number;
}

export type AcquireResult = { ok: true; held: HeldLease } | { ok: false; current: Lease; revision: number };

/** True when the lease is over for a reader whose clock may differ from the holder's by `marginMs`. */
export function isExpired(lease: Lease, nowMs: number, marginMs = 0): boolean {
  return nowMs > lease.expiresAtMs + marginMs;
}

export class LeaseLostError extends PgfedError {
  constructor(
    readonly key: string,
    readonly holder: string,
    why: string,
    readonly current?: Lease,
  ) {
    super("bus.lease_lost", `lease ${key} is no longer held by ${holder}: ${why}`, { key, holder, ...(current ? { current } : {}) });
    this.name = "LeaseLostError";
  }
}

export interface LeaseStoreOptions {
  bucket?: string;
  /** Milliseconds since the epoch; injectable for tests. */
  clock?: () => number;
  /** Margin another holder's lease must be past its expiry before this process takes it. */
  takeoverMarginMs?: number;
}

export async function openLeases(bus: Bus, opts: LeaseStoreOptions = {}): Promise<LeaseStore> {
  const store = await openStateStore(bus, leaseSchema, { bucket: opts.bucket ?? LEASE_BUCKET, history: 1, scope: ">" });
  return new LeaseStore(store, opts.clock ?? Date.now, opts.takeoverMarginMs ?? 0);
}

export class LeaseStore {
  constructor(
    private readonly store: StateStore<Lease>,
    readonly clock: () => number,
    private readonly takeoverMarginMs: number,
  ) {}

  /** The lease as stored, or undefined when never taken. */
  async read(key: string): Promise<{ lease: Lease; revision: number } | undefined> {
    const e = await this.store.get(key);
    return e ? { lease: e.value, revision: e.revision } : undefined;
  }

  /**
   * Takes the lease when it is absent, expired (plus the takeover margin for another holder's),
   * or already ours. Ours and still valid keeps the term unless `newTerm`; anything else bumps it.
   * A lost race returns `{ ok: false }` with the winner's lease.
   */
  async acquire(key: string, holder: string, ttlMs: number, opts: { newTerm?: boolean; holderKey?: string | undefined } = {}): Promise<AcquireResult> {
    checkTtl(ttlMs);
    const cur = await this.store.get(key);
    const now = this.clock();
    const fresh = (term: number): Lease => ({ holder, expiresAtMs: now + ttlMs, renewedAtMs: now, term, ...(opts.holderKey ? { holderKey: opts.holderKey } : {}) });
    try {
      if (!cur) {
        const lease = fresh(1);
        return { ok: true, held: { key, lease, revision: await this.store.create(key, lease) } };
      }
      const ours = cur.value.holder === holder;
      const free = ours ? isExpired(cur.value, now) : isExpired(cur.value, now, this.takeoverMarginMs);
      if (!ours && !free) return { ok: false, current: cur.value, revision: cur.revision };
      const lease = fresh(ours && !free && !opts.newTerm ? cur.value.term : cur.value.term + 1);
      return { ok: true, held: { key, lease, revision: await this.store.update(key, lease, cur.revision) } };
    } catch (e) {
      if (!(e instanceof StaleRevisionError)) throw e;
      const winner = await this.store.get(key);
      if (!winner) throw e;
      return { ok: false, current: winner.value, revision: winner.revision };
    }
  }

  /**
   * Extends a held lease by `ttlMs` from now (CAS on the revision held). Throws LeaseLostError
   * when it expired before the renewal or someone else wrote it since.
   */
  async renew(held: HeldLease, ttlMs: number): Promise<HeldLease> {
    checkTtl(ttlMs);
    const now = this.clock();
    if (isExpired(held.lease, now)) throw new LeaseLostError(held.key, held.lease.holder, `it expired ${now - held.lease.expiresAtMs} ms before the renewal`);
    const lease: Lease = { ...held.lease, expiresAtMs: now + ttlMs, renewedAtMs: now };
    try {
      return { key: held.key, lease, revision: await this.store.update(held.key, lease, held.revision) };
    } catch (e) {
      if (!(e instanceof StaleRevisionError)) throw e;
      const cur = await this.store.get(held.key);
      // Our own earlier renewal may have landed while its reply was lost: same holder and term.
      if (cur && cur.value.holder === held.lease.holder && cur.value.term === held.lease.term && !isExpired(cur.value, now)) {
        return { key: held.key, lease, revision: await this.store.update(held.key, lease, cur.revision) };
      }
      throw new LeaseLostError(held.key, held.lease.holder, cur ? `now held by ${cur.value.holder} (term ${cur.value.term})` : "it was deleted", cur?.value);
    }
  }

  /** Gives the lease up (expiry set to 0, term kept so terms stay monotonic). False if already lost. */
  async release(held: HeldLease): Promise<boolean> {
    const lease: Lease = { ...held.lease, expiresAtMs: 0 };
    try {
      await this.store.update(held.key, lease, held.revision);
      return true;
    } catch (e) {
      if (e instanceof StaleRevisionError) return false;
      throw e;
    }
  }
}

function checkTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new PgfedError("bus.bad_options", `lease TTL must be a positive number of milliseconds, not ${ttlMs}`);
}

export type LeaseLossReason = "expired" | "taken" | "stopped";

export interface LeaseKeeperOptions {
  leases: LeaseStore;
  key: string;
  holder: string;
  /** Written into the lease (Lease.holderKey). */
  holderKey?: string | undefined;
  ttlMs: number;
  log: Logger;
  /** Default ttlMs / 3. */
  renewEveryMs?: number;
  onAcquired?: (held: HeldLease) => void;
  /** `lostAt`: the local time from which the lease could no longer be relied on. */
  onLost?: (info: { key: string; lostAt: number; reason: LeaseLossReason; error?: string }) => void;
  /** Counts losses in pgfed_bus_lease_losses_total when given. */
  bus?: Bus;
}

/**
 * Keeps acquiring/renewing a lease every ttl/3. Reports `lost` at the held lease's expiry when
 * no renewal succeeded before (bus unreachable) or at once when another holder took it.
 */
export class LeaseKeeper {
  private current: HeldLease | undefined;
  private lost: number | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private readonly stopSignal = new AbortController();
  private generation = 0;
  private readonly log: Logger;
  private readonly renewEveryMs: number;

  constructor(private readonly opts: LeaseKeeperOptions) {
    this.log = opts.log.child({ lease: opts.key, holder: opts.holder });
    this.renewEveryMs = opts.renewEveryMs ?? Math.max(10, Math.floor(opts.ttlMs / 3));
  }

  /** The lease while held (and not locally expired). */
  get held(): HeldLease | undefined {
    return this.current;
  }

  /** When the lease was last lost, until it is acquired again. */
  get lostAt(): number | undefined {
    return this.lost;
  }

  isHolder(nowMs = this.opts.leases.clock()): boolean {
    return this.current !== undefined && !isExpired(this.current.lease, nowMs);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Stops renewing; releases the lease unless `release: false`. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopSignal.abort();
    await this.loopDone;
    const held = this.current;
    if (held && opts.release !== false) {
      await this.opts.leases.release(held).catch((e: unknown) => this.log.warn({ err: e }, `could not release lease ${held.key}: ${errorMessage(e)}`));
    }
    if (held) this.markLost("stopped", this.opts.leases.clock());
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const started = this.opts.leases.clock();
      await this.tick();
      const wait = Math.max(0, this.renewEveryMs - (this.opts.leases.clock() - started));
      await sleep(wait, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
    }
  }

  private async tick(): Promise<void> {
    const gen = this.generation;
    const { leases, key, holder, ttlMs } = this.opts;
    try {
      if (this.current) {
        const renewed = await leases.renew(this.current, ttlMs);
        if (gen !== this.generation || !this.running) return; // lost (expired) while the renewal was in flight
        this.hold(renewed);
        return;
      }
      const r = await leases.acquire(key, holder, ttlMs, { newTerm: this.lost !== undefined, holderKey: this.opts.holderKey });
      if (gen !== this.generation || !this.running) return;
      if (!r.ok) {
        this.log.debug({ current: r.current }, `lease ${key} is held by ${r.current.holder} (term ${r.current.term})`);
        return;
      }
      this.hold(r.held);
      this.lost = undefined;
      this.log.info({ term: r.held.lease.term }, `acquired lease ${key} as ${holder} (term ${r.held.lease.term}, ttl ${ttlMs} ms)`);
      this.opts.onAcquired?.(r.held);
    } catch (e) {
      if (e instanceof LeaseLostError) {
        if (gen === this.generation) this.markLost(e.current ? "taken" : "expired", this.opts.leases.clock(), e.message);
        return;
      }
      // The bus is unreachable or slow: keep trying; the expiry timer decides when it is lost.
      this.log.warn({ err: e }, `could not ${this.current ? "renew" : "acquire"} lease ${key}: ${errorMessage(e)}`);
    }
  }

  private hold(held: HeldLease): void {
    this.current = held;
    clearTimeout(this.expiryTimer);
    const gen = this.generation;
    const delay = Math.max(0, held.lease.expiresAtMs - this.opts.leases.clock());
    this.expiryTimer = setTimeout(() => {
      if (gen === this.generation && this.current) this.markLost("expired", held.lease.expiresAtMs, `not renewed before it expired (ttl ${this.opts.ttlMs} ms)`);
    }, delay);
  }

  private markLost(reason: LeaseLossReason, at: number, error?: string): void {
    if (!this.current) return;
    this.generation++;
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const key = this.current.key;
    this.current = undefined;
    this.lost = at;
    if (reason !== "stopped") {
      this.opts.bus?.metrics.leaseLosses.inc({ key });
      this.log.warn({ reason, lostAt: at }, `lost lease ${key} (${reason})${error ? `: ${error}` : ""}`);
    } else {
      this.log.info(`gave up lease ${key}`);
    }
    this.opts.onLost?.({ key, lostAt: at, reason, ...(error ? { error } : {}) });
  }
}
