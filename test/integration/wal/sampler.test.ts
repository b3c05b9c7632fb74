import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { MemberSampler } from "../../../src/wal/sampler.js";
import { monitorSampler, startPair, stopAll, startWriter, type Pair } from "./fixtures.js";

let pair: Pair;
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);

beforeAll(async () => {
  process.on("unhandledRejection", onUnhandled);
  pair = await startPair({ archiveTimeout: "2s", streaming: true });
});

afterAll(async () => {
  process.off("unhandledRejection", onUnhandled);
  await pair?.destroy().catch(() => undefined);
  await stopAll();
});

describe("MemberSampler on real Postgres, as the least-privileged role of deploy/postgres/monitoring-role.sql", () => {
  it("reads a primary in one round trip: position, timeline, archiver, waiting segments, streaming standbys", async () => {
    const s = monitorSampler(pair.primary, "pg-eu", "eu-west");
    try {
      const w = startWriter(pair.primary, 5);
      await sleep(300);
      await w.stop();
      const out = await s.sample();
      if (!out.ok) throw out.error;
      expect(s.stats).toEqual({ samples: 1, errors: 0, queries: 1 });
      const p = out.sample;
      if (p.role !== "primary") throw new Error(`expected a primary sample, got ${p.role}`);
      expect(p.timeline).toBe(1);
      expect(p.currentLsn).toBeGreaterThan(0n);
      expect(p.nextXid).toBeGreaterThan(700n);
      expect(p.archiver.archivedCount).toBeGreaterThanOrEqual(1);
      expect(p.archiver.readySegments).toBeGreaterThanOrEqual(0);
      expect(p.standbys).toEqual([expect.objectContaining({ applicationName: "pg-us", state: "streaming" })]);
      expect(p.standbys[0]?.flushLsn).toBeGreaterThan(0n);
      expect(s.history.latest()?.lsn).toBe(p.currentLsn);
    } finally {
      await s.close();
    }
  });

  it("reads a replica: received and replayed positions and its WAL receiver", async () => {
    const s = monitorSampler(pair.replica, "pg-us", "us-east");
    try {
      const out = await s.sample();
      if (!out.ok) throw out.error;
      const r = out.sample;
      if (r.role !== "replica") throw new Error(`expected a replica sample, got ${r.role}`);
      expect(r.receiveLsn).toBeGreaterThan(0n);
      expect(r.replayLsn).toBeGreaterThan(0n);
      expect(r.walReceiver).toMatchObject({ status: "streaming", senderHost: "127.0.0.1", senderPort: pair.primary.port, receivedTimeline: 1 });
      expect(s.history.size).toBe(0);
    } finally {
      await s.close();
    }
  });

  it("can switch WAL with only the EXECUTE grant on pg_switch_wal", async () => {
    const s = monitorSampler(pair.primary, "pg-eu", "eu-west");
    try {
      await pair.primary.query("INSERT INTO rows VALUES (1000000, 0, 'switch me')");
      const before = await s.sample();
      const { switchLsn } = await s.switchWal();
      expect(before.ok && before.sample.role === "primary" && switchLsn >= before.sample.currentLsn).toBe(true);
    } finally {
      await s.close();
    }
  });

  it("gives a clear error, not a crash, for a role without pg_monitor", async () => {
    await pair.primary.query("DROP ROLE IF EXISTS plain; CREATE ROLE plain LOGIN");
    const s = new MemberSampler({ federation: "orders", member: "pg-eu", host: "127.0.0.1", port: pair.primary.port, user: "plain" });
    try {
      const out = await s.sample();
      expect(out.ok).toBe(false);
      expect(s.state.status === "unreachable" && s.state.error.message).toMatch(/sampling pg-eu of orders at 127\.0\.0\.1:\d+: permission denied for function pg_ls_(archive_statusdir|waldir)/);
    } finally {
      await s.close();
    }
  });

  it("reports a killed member unreachable with the error and recovers when it is back, with no unhandled rejection", async () => {
    const s = monitorSampler(pair.replica, "pg-us", "us-east");
    try {
      expect((await s.sample()).ok).toBe(true);
      await pair.replica.kill();
      // The pooled connection dies under the sampler; the next samples fail cleanly.
      for (let i = 0; i < 3; i++) expect((await s.sample()).ok).toBe(false);
      expect(s.state).toMatchObject({ status: "unreachable", consecutiveFailures: 3 });
      expect(s.lastSample?.role).toBe("replica");
      await pair.replica.start();
      const back = await s.sample();
      expect(back.ok).toBe(true);
      expect(s.state.status).toBe("up");
      expect(unhandled).toEqual([]);
    } finally {
      await s.close();
    }
  });
});
