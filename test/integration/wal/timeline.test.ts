/**
 * The replica's sampled timeline on real Postgres (src/wal/sampler.ts): a cascading standby whose
 * upstream is promoted streams the new timeline at once, while its restartpoint (what CNPG reads,
 * pg_control_checkpoint()) stays on the old one until its next checkpoint_timeout. The sample must
 * say the new one, or every follower would look "not following" for minutes after a promotion.
 * The same for a replica that restores from the archive only (no wal receiver at all): the
 * segments it restored are kept in pg_wal under their own names, the newest timeline first.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PgInstance } from "../../../src/lab/cnpg/instance.js";
import { waitFor } from "../../../src/lab/proc.js";
import { monitorSampler, startPair, startWriter, started, stopAll, type Pair } from "./fixtures.js";

let pair: Pair;
let cascade: PgInstance;
const params = { archive_timeout: "60s", checkpoint_timeout: "1h" };

beforeAll(async () => {
  pair = await startPair({ archiveTimeout: "60s", streaming: true, parameters: params });
  // pg-ap streams from pg-us (a cascading standby), so it follows pg-us when pg-us is promoted.
  cascade = await PgInstance.open({ name: "db/pg-ap", dir: join(pair.dir, "ap"), archiveDir: join(pair.dir, "archive-ap"), clusterName: "pg-ap" });
  await cascade.cloneFrom(pair.replica.connection);
  await cascade.configure({ kind: "replica", source: { archiveDir: pair.replica.archiveDir, streaming: pair.replica.connection } }, params);
  started.add(cascade);
  await cascade.start();
}, 120_000);

afterAll(async () => {
  await cascade?.kill().catch(() => undefined);
  await pair?.destroy().catch(() => undefined);
  await stopAll();
});

describe("the sampled timeline of a replica", () => {
  it("is the streamed WAL's right after its upstream is promoted, before any restartpoint", async () => {
    const s = monitorSampler(cascade, "pg-ap", "ap-south");
    try {
      const before = await s.sample();
      if (!before.ok) throw before.error;
      expect(before.sample).toMatchObject({ role: "replica", timeline: 1 });

      await pair.primary.kill();
      await pair.replica.promote();
      const w = startWriter(pair.replica, 5);
      try {
        await waitFor(
          "pg-ap to stream timeline 2",
          async () => (await cascade.query<{ tli: number | null }>("SELECT received_tli AS tli FROM pg_stat_wal_receiver WHERE status = 'streaming'"))[0]?.tli === 2,
          30_000,
          100,
        );
      } finally {
        await w.stop();
      }
      const checkpoint = await cascade.query<{ tli: number }>("SELECT timeline_id AS tli FROM pg_control_checkpoint()");
      // What CNPG would report: still the old timeline (no restartpoint for an hour).
      expect(checkpoint[0]?.tli).toBe(1);
      const after = await s.sample();
      if (!after.ok) throw after.error;
      expect(after.sample).toMatchObject({ role: "replica", timeline: 2 });
      const ps = monitorSampler(pair.replica, "pg-us", "us-east");
      const primary = await ps.sample().finally(() => ps.close());
      expect(primary.ok && primary.sample.role === "primary" && primary.sample.timeline).toBe(2);
    } finally {
      await s.close();
    }
  }, 120_000);

  it("is the restored WAL's for an archive-only replica repointed to a promoted member's archive, before any restartpoint", async () => {
    const p = await startPair({ archiveTimeout: "1s", streaming: false, parameters: params });
    const third = await PgInstance.open({ name: "db/pg-sa", dir: join(p.dir, "sa"), archiveDir: join(p.dir, "archive-sa"), clusterName: "pg-sa" });
    const s = monitorSampler(third, "pg-sa", "sa-east");
    try {
      await third.cloneFrom(p.primary.connection);
      await third.configure({ kind: "replica", source: { archiveDir: p.primary.archiveDir } }, params);
      started.add(third);
      await third.start();
      await p.primary.kill();
      await p.replica.promote();
      await p.replica.query("INSERT INTO rows (id, at_ms) VALUES (2, 0)");
      await p.replica.query("SELECT pg_switch_wal()");
      // What pgfed has CNPG do after a failover: the replica now restores from the new primary's archive.
      await third.configure({ kind: "replica", source: { archiveDir: p.replica.archiveDir } }, params);
      await third.restart();
      await waitFor("pg-sa to restore the row written on timeline 2", async () => (await third.query<{ n: string }>("SELECT count(*) AS n FROM rows WHERE id = 2"))[0]?.n === "1", 60_000, 200);
      const receiver = await third.query("SELECT 1 FROM pg_stat_wal_receiver");
      expect(receiver).toHaveLength(0);
      const checkpoint = await third.query<{ tli: number }>("SELECT timeline_id AS tli FROM pg_control_checkpoint()");
      expect(checkpoint[0]?.tli).toBe(1);
      const after = await s.sample();
      if (!after.ok) throw after.error;
      expect(after.sample).toMatchObject({ role: "replica", timeline: 2 });
    } finally {
      await s.close();
      await third.kill().catch(() => undefined);
      started.delete(third);
      await p.destroy().catch(() => undefined);
    }
  }, 120_000);
});
