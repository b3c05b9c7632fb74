/**
 * The primary lease of one member (safety rule 3) and the fence that backs it.
 *
 * While the member is observed as the unfenced primary cluster, the guard holds
 * `primary.<federation>` in `pgfed_leases` as `agent:<region>/<member>`, renewing it every ttl/3.
 * It gives the lease up when the member stops being that (demoted, fenced, deleted).
 *
 * The coordinator promotes another member only once the lease is past `expiresAtMs` plus the
 * clock-skew margin by ITS clock. Whoever holds the lease wrote `expiresAtMs` from its own clock,
 * so with clocks at most `clockSkewMarginMs` apart the coordinator may act as early as our own
 * `expiresAtMs`: the fence must be COMPLETE by then. The guard therefore starts fencing when less
 * than `fenceLeadMs` (default clockSkewMargin/2, at most ttl/2) of validity remains and no renewal
 * succeeded since: the fence patch, the operator's reaction and Postgres' fast shutdown get
 * `fenceLeadMs` in the worst skew and `fenceLeadMs + clockSkewMarginMs` with synchronized clocks.
 * A timer does this, not the renewal loop: a renewal stuck on a partitioned bus must not delay it.
 *
 * It also fences (the local primary is stale) when a renewal finds the lease taken or expired,
 * when another holder keeps it while our member is primary, and when the bus never let it take
 * the lease: those decisions and their sentences are in fencing.ts; this file runs the loop.
 * It never unfences: after a self-fence the coordinator decides (the fence is reported as audit).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { LeaseLostError, isExpired, type HeldLease, type Lease, type LeaseStore } from "../bus/index.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { leaseExpiringFence, leaseHeldElsewhereFence, leaseLostFence, leaseUnreachableFence, type FenceDecision, type FenceOutcome, type FenceReason } from "./fencing.js";

export type GuardState = "idle" | "acquiring" | "held" | "held-elsewhere" | "fencing" | "fenced";

/** What the agent reports on the audit stream after a self-fence. */
export interface SelfFenceReport {
  federation: string;
  member: string;
  holder: string;
  reason: FenceReason;
  /** One sentence with the numbers. */
  sentence: string;
  numbers: Record<string, number | string | boolean | null>;
  fencedAtMs: number;
}

export interface GuardStatus {
  state: GuardState;
  holder: string;
  term?: number;
  expiresAtMs?: number;
  renewedAtMs?: number;
  /** The other holder while `held-elsewhere`. */
  otherHolder?: string;
  lastError?: string;
  lastFence?: SelfFenceReport;
}

/** The lease operations the guard uses (a LeaseStore; a fake in unit tests). */
export type LeaseOps = Pick<LeaseStore, "acquire" | "renew" | "release" | "clock">;

export interface PrimaryGuardOptions {
  federation: string;
  member: string;
  /** "orders/pg-eu" */
  who: string;
  key: string;
  holder: string;
  leaseTtlMs: number;
  clockSkewMarginMs: number;
  fenceLeadMs?: number;
  leases: LeaseOps;
  log: Logger;
  /** The federation's epoch for the fence log lines (the agent's newest seen). */
  epoch?: () => number;
  /** Ensures the member is fenced through the local Kubernetes API; throws when it could not. */
  fence(reason: FenceReason): Promise<FenceOutcome>;
  onFenced(report: SelfFenceReport): void;
  onHeld?(held: boolean): void;
}

export class PrimaryGuard {
  private wanted = false;
  private wantedSince = 0;
  private held: HeldLease | undefined;
  private everHeld = false;
  private lostBefore = false;
  private other: Lease | undefined;
  private state: GuardState = "idle";
  private lastError: string | undefined;
  private lastFence: SelfFenceReport | undefined;
  private fenceTimer: NodeJS.Timeout | undefined;
  private loop: Promise<void> | undefined;
  private wake = new AbortController();
  private fencing: Promise<void> | undefined;
  private afterFence = false;
  private stopped = false;
  private releaseOnStop = false;
  readonly fenceLeadMs: number;
  readonly renewEveryMs: number;

  constructor(private readonly opts: PrimaryGuardOptions) {
    this.renewEveryMs = Math.max(10, Math.floor(opts.leaseTtlMs / 3));
    // Must stay shorter than the gap between the last renewal and expiry minus one renewal period.
    this.fenceLeadMs = Math.min(opts.fenceLeadMs ?? Math.floor(opts.clockSkewMarginMs / 2), Math.floor(opts.leaseTtlMs / 2));
  }

  private get clock(): () => number {
    return this.opts.leases.clock;
  }

  status(): GuardStatus {
    const l = this.held?.lease;
    return {
      state: this.state,
      holder: this.opts.holder,
      ...(l ? { term: l.term, expiresAtMs: l.expiresAtMs, renewedAtMs: l.renewedAtMs } : {}),
      ...(this.state === "held-elsewhere" && this.other ? { otherHolder: this.other.holder } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(this.lastFence ? { lastFence: this.lastFence } : {}),
    };
  }

  /** Called with every observation: should the member hold the primary lease? Idempotent. */
  setWanted(wanted: boolean): void {
    if (this.stopped) return;
    // After a self-fence, wait for an observation that shows it (fenced, or no longer primary)
    // before guarding again: an observation read before the fence landed must not restart it.
    if (!wanted) this.afterFence = false;
    if (this.afterFence || this.fencing !== undefined) return;
    if (wanted === this.wanted) return;
    this.wanted = wanted;
    if (wanted) {
      this.wantedSince = this.clock();
      this.everHeld = false;
      this.other = undefined;
      this.state = "acquiring";
      if (this.wake.signal.aborted) this.wake = new AbortController();
      this.ensureLoop();
    } else {
      this.wake.abort();
      this.clearTimer();
    }
  }

  /**
   * Stops guarding. The lease is NOT released: a restarted agent (same holder) takes its own valid
   * lease back with the same term, and a primary nobody watches must not look free any sooner
   * than its lease says. `release: true` gives it up (tests, decommissioning).
   */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.releaseOnStop = opts.release === true;
    this.stopped = true;
    this.wanted = false;
    this.wake.abort();
    this.clearTimer();
    await this.loop;
    await this.fencing;
  }

  private ensureLoop(): void {
    if (this.loop) return;
    this.loop = this.run()
      .catch((e: unknown) => this.opts.log.error({ err: errorMessage(e) }, `the lease loop of ${this.opts.who} failed: ${errorMessage(e)}`))
      .finally(() => {
        this.loop = undefined;
        // Wanted again while the loop was winding down (releasing): start over.
        if (this.wanted && !this.stopped && this.fencing === undefined) {
          if (this.wake.signal.aborted) this.wake = new AbortController();
          this.ensureLoop();
        }
      });
  }

  private async run(): Promise<void> {
    while (this.wanted && !this.stopped && this.fencing === undefined) {
      const started = this.clock();
      await this.tick();
      const wait = Math.max(0, this.renewEveryMs - (this.clock() - started));
      if (this.wanted && this.fencing === undefined) await sleep(wait, undefined, { signal: this.wake.signal }).catch(() => undefined);
    }
    // Not wanted any more (demoted, fenced, stopped): give the lease up if we still hold it.
    const held = this.held;
    if (!held || this.fencing !== undefined || this.wanted) return;
    if (this.stopped && !this.releaseOnStop) {
      this.opts.log.info({ term: held.lease.term }, `stopped guarding ${this.opts.who}; its primary lease (term ${held.lease.term}) lapses at ${new Date(held.lease.expiresAtMs).toISOString()} unless a restarted agent renews it`);
      return;
    }
    this.held = undefined;
    this.clearTimer();
    this.opts.onHeld?.(false);
    if (this.state === "held" || this.state === "acquiring" || this.state === "held-elsewhere") this.state = "idle";
    try {
      const released = await this.opts.leases.release(held);
      this.opts.log.info(
        { term: held.lease.term },
        released
          ? `released the primary lease of ${this.opts.who} (term ${held.lease.term}): it is no longer the unfenced primary`
          : `the primary lease of ${this.opts.who} had already changed; nothing to release`,
      );
    } catch (e) {
      this.opts.log.warn({ err: errorMessage(e) }, `could not release the primary lease of ${this.opts.who}; it lapses at ${new Date(held.lease.expiresAtMs).toISOString()}: ${errorMessage(e)}`);
    }
  }

  private async tick(): Promise<void> {
    const { leases, key, holder, leaseTtlMs, who } = this.opts;
    try {
      if (this.held) {
        const renewed = await leases.renew(this.held, leaseTtlMs);
        if (this.fencing !== undefined || !this.wanted) {
          // Renewed after the fence started or after the member stopped being primary: keep it
          // only long enough for run() to release it.
          if (!this.wanted && this.fencing === undefined) this.held = renewed;
          return;
        }
        this.hold(renewed);
        this.lastError = undefined;
        return;
      }
      const r = await leases.acquire(key, holder, leaseTtlMs, { newTerm: this.lostBefore });
      if (this.fencing !== undefined) return;
      if (r.ok) {
        if (!this.wanted) {
          this.held = r.held; // released by run() right away
          return;
        }
        this.hold(r.held);
        this.everHeld = true;
        this.lostBefore = false;
        this.other = undefined;
        this.lastError = undefined;
        this.opts.onHeld?.(true);
        this.opts.log.info({ term: r.held.lease.term }, `holding the primary lease of ${who} as ${holder} (term ${r.held.lease.term}, ttl ${leaseTtlMs} ms)`);
        return;
      }
      this.lastError = undefined;
      this.onHeldElsewhere(r.current);
    } catch (e) {
      if (e instanceof LeaseLostError) {
        const prev = this.held;
        this.held = undefined;
        this.lostBefore = true;
        this.opts.onHeld?.(false);
        if (!this.wanted || this.fencing !== undefined) return;
        this.startFence(leaseLostFence(holder, e.current), prev);
        return;
      }
      this.lastError = errorMessage(e);
      this.opts.log.warn({ err: this.lastError }, `could not ${this.held ? "renew" : "take"} the primary lease of ${who}: ${this.lastError}`);
      if (!this.held && this.wanted) {
        const fence = leaseUnreachableFence({ who, holder, everHeld: this.everHeld, primaryForMs: this.clock() - this.wantedSince, leaseTtlMs, fenceLeadMs: this.fenceLeadMs });
        if (fence) this.startFence(fence, undefined);
      }
    }
  }

  private onHeldElsewhere(cur: Lease): void {
    const now = this.clock();
    const prev = this.other;
    this.other = cur;
    this.state = "held-elsewhere";
    const { federation, holder, who } = this.opts;
    const fence = leaseHeldElsewhereFence({ federation, holder, who, current: cur, previous: prev, everHeld: this.everHeld, nowMs: now });
    if (fence) {
      this.startFence(fence, undefined);
      return;
    }
    if (!isExpired(cur, now) && (!prev || prev.holder !== cur.holder)) {
      this.opts.log.info({ otherHolder: cur.holder, term: cur.term }, `${this.opts.who} is primary but ${cur.holder} holds the primary lease (term ${cur.term}, expires ${new Date(cur.expiresAtMs).toISOString()}); waiting for it to be released or to lapse`);
    }
  }

  private hold(held: HeldLease): void {
    this.held = held;
    this.state = "held";
    this.clearTimer();
    const fenceAt = held.lease.expiresAtMs - this.fenceLeadMs;
    const lease = held.lease;
    this.fenceTimer = setTimeout(() => {
      this.fenceTimer = undefined;
      // Still the same lease: no renewal succeeded since it was written.
      if (this.held?.lease !== lease || !this.wanted || this.fencing !== undefined) return;
      this.startFence(leaseExpiringFence({ holder: this.opts.holder, federation: this.opts.federation, lease, nowMs: this.clock() }), held);
    }, Math.max(0, fenceAt - this.clock()));
  }

  private clearTimer(): void {
    if (this.fenceTimer) clearTimeout(this.fenceTimer);
    this.fenceTimer = undefined;
  }

  private startFence({ reason, why }: FenceDecision, lease: HeldLease | undefined): void {
    if (this.fencing !== undefined || this.stopped) return;
    const startedAtMs = this.clock();
    this.clearTimer();
    this.state = "fencing";
    const last = lease?.lease;
    if (this.held) this.opts.onHeld?.(false);
    this.held = undefined;
    this.lostBefore = true;
    this.wake.abort();
    this.opts.log.warn({ epoch: this.opts.epoch?.(), reason, leaseExpiresAtMs: last?.expiresAtMs }, `fencing ${this.opts.who} myself: ${why}`);
    this.wanted = false;
    this.afterFence = true;
    this.fencing = this.fenceUntilDone(reason, why, startedAtMs, last)
      .catch((e: unknown) => this.opts.log.error({ epoch: this.opts.epoch?.(), err: errorMessage(e) }, `fencing ${this.opts.who} failed: ${errorMessage(e)}`))
      .finally(() => {
        this.fencing = undefined;
      });
  }

  private async fenceUntilDone(reason: FenceReason, why: string, startedAtMs: number, last: Lease | undefined): Promise<void> {
    let backoffMs = 100;
    for (let attempt = 1; !this.stopped; attempt++) {
      try {
        const outcome = await this.opts.fence(reason);
        const { federation, member, holder, leaseTtlMs, clockSkewMarginMs, who } = this.opts;
        const deadline = last ? last.expiresAtMs + clockSkewMarginMs : undefined;
        const numbers: SelfFenceReport["numbers"] = {
          leaseTtlMs,
          clockSkewMarginMs,
          fenceLeadMs: this.fenceLeadMs,
          leaseTerm: last?.term ?? null,
          leaseRenewedAtMs: last?.renewedAtMs ?? null,
          leaseExpiresAtMs: last?.expiresAtMs ?? null,
          fenceStartedAtMs: startedAtMs,
          fencedAtMs: outcome.atMs,
          fenceMs: outcome.atMs - startedAtMs,
          marginLeftMs: deadline === undefined ? null : deadline - outcome.atMs,
          patched: outcome.patched,
          attempts: attempt,
        };
        const timing = last
          ? `lease expired at ${new Date(last.expiresAtMs).toISOString()} (last renewed ${new Date(last.renewedAtMs).toISOString()}), fence ${outcome.patched ? "applied" : "found in place"} at ${new Date(outcome.atMs).toISOString()}, ${deadline === undefined ? "" : `${deadline - outcome.atMs} ms before the coordinator may promote another member`}`
          : `fence ${outcome.patched ? "applied" : "found in place"} at ${new Date(outcome.atMs).toISOString()}`;
        const sentence = outcome.note
          ? `did not fence ${who}: ${outcome.note} (${why})`
          : `fenced ${who} through the local Kubernetes API because ${why}; ${timing}`;
        const report: SelfFenceReport = { federation, member, holder, reason, sentence, numbers, fencedAtMs: outcome.atMs };
        this.lastFence = report;
        this.state = outcome.note ? "idle" : "fenced";
        this.opts.log.warn({ epoch: this.opts.epoch?.(), reason, ...numbers }, sentence);
        if (!outcome.note) this.opts.onFenced(report);
        return;
      } catch (e) {
        this.lastError = errorMessage(e);
        this.opts.log.error({ epoch: this.opts.epoch?.(), err: this.lastError, attempt }, `could not fence ${this.opts.who} (attempt ${attempt}); retrying in ${backoffMs} ms: ${this.lastError}`);
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 2_000);
      }
    }
  }
}
