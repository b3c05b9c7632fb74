/**
 * `pgfed status` after a region is lost: the lost member's last report (role, phase) is shown as
 * such — with its age — once it is older than the lease TTL, while members whose agent keeps
 * reporting stay current however long their Cluster has not changed. Real lab (2 regions, NATS,
 * Postgres), the real coordinator behind the API, the CLI in-process.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FederationView } from "../../../src/coordinator/index.js";
import { FED, startE2E, waitUntil, type E2E } from "../../e2e/fixture.js";
import { serveLabApi, type LabApi } from "../../support/lab-api.js";

const TOKEN = "staleness-viewer-token";
let e: E2E;
let lab: LabApi;

beforeAll(async () => {
  e = await startE2E("api-staleness");
  lab = await serveLabApi(e, { name: "grafana", role: "viewer", token: TOKEN });
}, 180_000);

afterAll(async () => {
  await lab?.close();
  await e?.stop();
}, 120_000);

const cli = (args: string[]) => lab.cli(args);

async function statusJson(): Promise<FederationView> {
  const r = await cli(["status", FED, "-o", "json"]);
  expect(r.code, r.err).toBe(0);
  return JSON.parse(r.out) as FederationView;
}

const member = (f: FederationView, name: string) => {
  const m = f.members.find((x) => x.name === name);
  if (!m) throw new Error(`no member ${name} in the view`);
  return m;
};

describe("pgfed status shows how old each member's last report is", () => {
  it("keeps members whose agents report current, even after more than a lease TTL without a change", async () => {
    const f = await statusJson();
    const ttl = f.failover.leaseTtlSeconds;
    // outlive one lease TTL from now: an unchanged Cluster must not look lost
    await new Promise((r) => setTimeout(r, (ttl + 1) * 1000));
    const later = await statusJson();
    for (const m of later.members) {
      expect(m.lastSeenAt, m.name).not.toBeNull();
      expect(m.observedAgoSeconds ?? Infinity, m.name).toBeLessThanOrEqual(ttl);
    }
    const r = await cli(["status", FED]);
    expect(r.out).not.toContain("unreachable?");
    expect(r.out).toMatch(/pg-eu\s+eu-west\s+primary\s+primary\s/);
  });

  it("after kill-region, shows the lost member's last report with its age once older than the lease TTL", async () => {
    const ttl = (await statusJson()).failover.leaseTtlSeconds;
    const killedAt = Date.now();
    await e.lab.killRegion("us-east");
    const waitedMs = await waitUntil("pg-us's last report older than the lease TTL", 30_000, async () => (member(await statusJson(), "pg-us").observedAgoSeconds ?? 0) > ttl, 250);
    console.log(`kill-region us-east → pg-us flagged stale after ${(waitedMs / 1000).toFixed(1)} s (lease TTL ${ttl} s)`);
    const f = await statusJson();
    const us = member(f, "pg-us");
    expect(us.reachable).toBe(false);
    // last known current when the agent found the Cluster unreadable (within a heartbeat of the kill), and no later
    const seenAt = Date.parse(us.lastSeenAt ?? "");
    expect(seenAt).toBeGreaterThanOrEqual(killedAt - 1_000);
    expect(seenAt).toBeLessThan(Date.now() - ttl * 1000);
    await new Promise((r) => setTimeout(r, 2_500)); // the agent keeps reporting "unreachable" every heartbeat
    expect(member(await statusJson(), "pg-us").lastSeenAt).toBe(us.lastSeenAt);
    expect(member(f, "pg-eu").observedAgoSeconds ?? Infinity).toBeLessThanOrEqual(ttl);
    const r = await cli(["status", FED]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/pg-us: unreachable\? last report \d+ s ago/);
    expect(r.out).toMatch(/pg-us\s+us-east\s+replica\?\s+\S+\?\s/);
    expect(r.out).not.toMatch(/pg-eu: unreachable\?/);
    for (const line of r.out.split("\n")) expect(line.length, line).toBeLessThanOrEqual(80);
  });

  it("shows the member as current again once its region is back", async () => {
    await e.lab.restoreRegion("us-east");
    const ttl = (await statusJson()).failover.leaseTtlSeconds;
    await waitUntil("pg-us reported again", 60_000, async () => {
      const us = member(await statusJson(), "pg-us");
      return us.reachable && (us.observedAgoSeconds ?? Infinity) <= ttl;
    }, 250);
    const r = await cli(["status", FED]);
    expect(r.out).not.toContain("unreachable?");
  });
});
