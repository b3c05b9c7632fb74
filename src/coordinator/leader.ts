/**
 * Who leads, as a follower sees it: the holder of the coordinator lease (KV `pgfed_leases`,
 * key `coordinator`) and the API address that coordinator advertised (KV `pgfed_coordinators`,
 * key = coordinator id). Followers use it to answer `/readyz` and to redirect API calls (307).
 * Read by polling, so it survives reconnects without watch bookkeeping; a lease past its expiry
 * (or released) means "no leader known".
 */
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { isExpired, leaseKeys, openStateStore, type Bus, type LeaseStore, type StateStore } from "../bus/index.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";

export const COORDINATORS_BUCKET = "pgfed_coordinators";
export const COORDINATOR_HOLDER_PREFIX = "coordinator:";

const advertSchema = z.object({
  id: z.string().min(1).max(64),
  apiUrl: z.string().min(1).max(2048).nullable(),
  updatedAtMs: z.number().int().nonnegative(),
});
export type CoordinatorAdvert = z.infer<typeof advertSchema>;

export interface KnownLeader {
  id: string;
  apiUrl: string | null;
  /** The lease's expiry as written by the leader; past it, the leader is no longer known. */
  expiresAtMs: number;
}

export interface LeaderDirectoryOptions {
  bus: Bus;
  leases: LeaseStore;
  /** This coordinator's id (its advert key). */
  id: string;
  log: Logger;
  pollMs: number;
  now: () => number;
}

export class LeaderDirectory {
  private store: StateStore<CoordinatorAdvert> | undefined;
  private current: KnownLeader | undefined;
  private apiUrl: string | null = null;
  private running = false;
  private loopDone: Promise<void> = Promise.resolve();
  private readonly stopSignal = new AbortController();
  private lastError = "";
  private advertised = false;

  constructor(private readonly opts: LeaderDirectoryOptions) {}

  async start(apiUrl: string | null): Promise<void> {
    this.apiUrl = apiUrl;
    this.store = await openStateStore(this.opts.bus, advertSchema, { bucket: COORDINATORS_BUCKET, history: 1, scope: "*" });
    await this.advertise(apiUrl).catch((e: unknown) => this.opts.log.warn(`could not advertise coordinator ${this.opts.id}'s API address: ${errorMessage(e)}; retrying with the next poll`));
    this.running = true;
    this.loopDone = this.loop();
  }

  /** Publishes (or re-publishes) this coordinator's API address for the followers' redirects. */
  async advertise(apiUrl: string | null): Promise<void> {
    this.apiUrl = apiUrl;
    const store = this.store;
    if (!store) return;
    const id = this.opts.id;
    this.advertised = false;
    await store.modify(id, (cur) => (cur?.apiUrl === apiUrl ? undefined : { id, apiUrl, updatedAtMs: this.opts.now() }));
    this.advertised = true;
  }

  /** The leader another coordinator holds the lease for, while that lease is unexpired. */
  known(): KnownLeader | null {
    const c = this.current;
    if (!c || c.id === this.opts.id || this.opts.now() > c.expiresAtMs) return null;
    return c;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.stopSignal.abort();
    await this.loopDone;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      await this.poll();
      await sleep(this.opts.pollMs, undefined, { signal: this.stopSignal.signal }).catch(() => undefined);
    }
  }

  private async poll(): Promise<void> {
    try {
      const lease = await this.opts.leases.read(leaseKeys.coordinator);
      if (!lease || isExpired(lease.lease, this.opts.now()) || !lease.lease.holder.startsWith(COORDINATOR_HOLDER_PREFIX)) {
        this.current = undefined;
      } else {
        const id = lease.lease.holder.slice(COORDINATOR_HOLDER_PREFIX.length);
        const advert = id === this.opts.id ? undefined : await this.store?.get(id);
        const apiUrl = advert?.value.apiUrl ?? null;
        if (this.current?.id !== id || this.current.apiUrl !== apiUrl) this.opts.log.info(`the coordinator leader is ${id}${apiUrl ? ` (API ${apiUrl})` : ""}`);
        this.current = { id, apiUrl, expiresAtMs: lease.lease.expiresAtMs };
      }
      // An advert lost to a bus outage at start is written again.
      if (!this.advertised) await this.advertise(this.apiUrl);
      this.lastError = "";
    } catch (e) {
      const msg = errorMessage(e);
      if (msg !== this.lastError) this.opts.log.warn(`cannot read who leads the coordinators: ${msg}`);
      this.lastError = msg;
    }
  }
}
