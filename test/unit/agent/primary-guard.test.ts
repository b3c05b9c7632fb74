import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { PrimaryGuard, type FenceReason, type LeaseOps, type SelfFenceReport } from "../../../src/agent/index.js";
import { LeaseLostError, isExpired, type AcquireResult, type HeldLease, type Lease } from "../../../src/bus/index.js";
import { waitFor } from "../../../src/lab/proc.js";
import { silentLogger } from "../../../src/log.js";

const TTL = 600;
const MARGIN = 200; // fence lead = 100 ms
const KEY = "primary.orders";
const ME = "agent:eu/pg-eu";

/** LeaseStore semantics in memory; `partitioned` makes every call hang for a while and fail, like a lost bus. */
class FakeLeases implements LeaseOps {
  readonly clock = (): number => Date.now();
  value: Lease | undefined;
  revision = 0;
  partitioned = false;

  private async gate(): Promise<void> {
    if (this.partitioned) {
      await sleep(TTL * 2);
      throw new Error("timeout (bus unreachable)");
    }
  }

  async acquire(key: string, holder: string, ttlMs: number, opts: { newTerm?: boolean } = {}): Promise<AcquireResult> {
    await this.gate();
    const now = this.clock();
    const cur = this.value;
    if (cur && cur.holder !== holder && !isExpired(cur, now)) return { ok: false, current: cur, revision: this.revision };
    const ours = cur?.holder === holder && !isExpired(cur, now);
    const term = cur === undefined ? 1 : ours && !opts.newTerm ? cur.term : cur.term + 1;
    return { ok: true, held: this.write(key, { holder, expiresAtMs: now + ttlMs, renewedAtMs: now, term }) };
  }

  async renew(held: HeldLease, ttlMs: number): Promise<HeldLease> {
    await this.gate();
    const now = this.clock();
    if (isExpired(held.lease, now)) throw new LeaseLostError(held.key, held.lease.holder, "expired");
    if (held.revision !== this.revision) throw new LeaseLostError(held.key, held.lease.holder, "taken", this.value);
    return this.write(held.key, { ...held.lease, expiresAtMs: now + ttlMs, renewedAtMs: now });
  }

  async release(held: HeldLease): Promise<boolean> {
    await this.gate();
    if (held.revision !== this.revision) return false;
    this.write(held.key, { ...held.lease, expiresAtMs: 0 });
    return true;
  }

  /** Another agent writes the lease. */
  takeAs(holder: string, ttlMs = TTL): void {
    const now = this.clock();
    this.write(KEY, { holder, expiresAtMs: now + ttlMs, renewedAtMs: now, term: (this.value?.term ?? 0) + 1 });
  }

  private write(key: string, lease: Lease): HeldLease {
    this.value = lease;
    this.revision++;
    return { key, lease, revision: this.revision };
  }
}

interface Harness {
  guard: PrimaryGuard;
  leases: FakeLeases;
  fences: Array<{ reason: FenceReason; atMs: number }>;
  reports: SelfFenceReport[];
}

const guards: PrimaryGuard[] = [];
afterEach(async () => {
  for (const g of guards.splice(0)) await g.stop();
});

function harness(leases = new FakeLeases()): Harness {
  const fences: Harness["fences"] = [];
  const reports: SelfFenceReport[] = [];
  const guard = new PrimaryGuard({
    federation: "orders",
    member: "pg-eu",
    who: "orders/pg-eu",
    key: KEY,
    holder: ME,
    leaseTtlMs: TTL,
    clockSkewMarginMs: MARGIN,
    leases,
    log: silentLogger(),
    fence: async (reason) => {
      const atMs = Date.now();
      fences.push({ reason, atMs });
      return { patched: true, atMs };
    },
    onFenced: (r) => reports.push(r),
  });
  guards.push(guard);
  return { guard, leases, fences, reports };
}

describe("PrimaryGuard", () => {
  it("holds and renews the lease while the member is the unfenced primary, and releases it when it is not", async () => {
    const h = harness();
    h.guard.setWanted(true);
    await waitFor("lease held", () => h.leases.value?.holder === ME, 2_000, 5);
    const first = h.leases.value?.renewedAtMs ?? 0;
    await sleep(TTL * 1.5);
    expect(h.leases.value?.renewedAtMs).toBeGreaterThan(first);
    expect(h.leases.value?.term).toBe(1);
    expect(h.guard.status().state).toBe("held");
    h.guard.setWanted(false);
    await waitFor("lease released", () => h.leases.value?.expiresAtMs === 0, 2_000, 5);
    expect(h.fences).toEqual([]);
    expect(h.guard.status().state).toBe("idle");
  });

  it("does not release the lease on stop: a restarted agent takes its own lease back with the same term", async () => {
    const h = harness();
    h.guard.setWanted(true);
    await waitFor("lease held", () => h.guard.status().state === "held", 2_000, 5);
    await h.guard.stop();
    expect(isExpired(h.leases.value as Lease, Date.now())).toBe(false);
    const again = harness(h.leases);
    again.guard.setWanted(true);
    await waitFor("lease held by the restarted guard", () => again.guard.status().state === "held", 2_000, 5);
    expect(h.leases.value?.term).toBe(1);
  });

  it("fences before the lease expires when renewals stop getting through, and waits for the fence to be observed", async () => {
    const h = harness();
    h.guard.setWanted(true);
    await waitFor("lease held", () => h.guard.status().state === "held", 2_000, 5);
    h.leases.partitioned = true;
    const expiresAt = h.leases.value?.expiresAtMs ?? 0;
    await waitFor("a self-fence", () => h.fences.length > 0, TTL * 3, 5);
    const fence = h.fences[0];
    expect(fence?.reason).toBe("lease_expiring");
    // Started when about fenceLeadMs (100 ms) of validity remained, never after expiry.
    expect(fence?.atMs).toBeLessThan(expiresAt);
    expect(fence?.atMs).toBeGreaterThanOrEqual(expiresAt - 150);
    await waitFor("the report", () => h.reports.length === 1, 1_000, 5);
    expect(h.reports[0]?.numbers).toMatchObject({ leaseExpiresAtMs: expiresAt, leaseTtlMs: TTL, clockSkewMarginMs: MARGIN, fenceLeadMs: 100 });
    expect(h.guard.status().state).toBe("fenced");

    // An observation read before the fence landed must not restart the guard.
    h.guard.setWanted(true);
    h.leases.partitioned = false;
    await sleep(TTL);
    expect(h.leases.value?.expiresAtMs).toBe(expiresAt);
    // The fence is observed; later the coordinator unfences: guarded again, with a new term.
    h.guard.setWanted(false);
    h.guard.setWanted(true);
    await waitFor("lease taken again", () => h.leases.value?.holder === ME && (h.leases.value?.expiresAtMs ?? 0) > expiresAt, 2_000, 5);
    expect(h.leases.value?.term).toBe(2);
    expect(h.fences).toHaveLength(1);
  });

  it("fences at once when a renewal finds the lease taken by another holder", async () => {
    const h = harness();
    h.guard.setWanted(true);
    await waitFor("lease held", () => h.guard.status().state === "held", 2_000, 5);
    h.leases.takeAs("agent:us/pg-us");
    await waitFor("a self-fence", () => h.fences.length > 0, TTL, 5);
    expect(h.fences[0]?.reason).toBe("lease_taken");
  });

  it("waits out another holder's lease that is not renewed (the old primary's), then takes it", async () => {
    const h = harness();
    h.leases.takeAs("agent:us/pg-us", TTL);
    h.guard.setWanted(true);
    await waitFor("held elsewhere", () => h.guard.status().state === "held-elsewhere", 1_000, 5);
    expect(h.guard.status().otherHolder).toBe("agent:us/pg-us");
    await waitFor("lease taken after it lapsed", () => h.leases.value?.holder === ME, TTL * 3, 5);
    expect(h.fences).toEqual([]);
  });

  it("fences a primary whose lease another holder keeps renewing: the local primary is stale", async () => {
    const h = harness();
    h.leases.takeAs("agent:us/pg-us", TTL);
    const renewer = setInterval(() => {
      const v = h.leases.value;
      if (v) h.leases.value = { ...v, renewedAtMs: Date.now(), expiresAtMs: Date.now() + TTL };
    }, 50);
    try {
      h.guard.setWanted(true);
      await waitFor("a self-fence", () => h.fences.length > 0, TTL * 3, 5);
      expect(h.fences[0]?.reason).toBe("lease_held_elsewhere");
      expect(h.reports[0]?.sentence).toMatch(/agent:us\/pg-us holds the primary lease of orders .* keeps renewing it/);
    } finally {
      clearInterval(renewer);
    }
  });

  it("fences a primary it could never take the lease for, because the bus is unreachable", async () => {
    const h = harness();
    h.leases.partitioned = true;
    const t0 = Date.now();
    h.guard.setWanted(true);
    await waitFor("a self-fence", () => h.fences.length > 0, TTL * 6, 5);
    expect(h.fences[0]?.reason).toBe("lease_unreachable");
    expect((h.fences[0]?.atMs ?? 0) - t0).toBeGreaterThanOrEqual(TTL - 100);
  });
});
