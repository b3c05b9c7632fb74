/**
 * Scenario 3: the primary's agent is cut off from NATS while its Postgres keeps serving. The agent
 * cannot renew the primary lease and fences its own primary BEFORE the coordinator, once the lease
 * is past its expiry plus the clock-skew margin, promotes the replica. A probe writes to both
 * members every ~50 ms: at no moment do two members accept writes.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectionOf, createProbeTable, federation, finished, overlappingWrites, query, startE2E, startWriteProbe, waitUntil, type E2E } from "./fixture.js";

const PROBE_TABLE = "pgfed_probe";
const MEMBERS = ["pg-eu", "pg-us"] as const;


let e: E2E;

beforeAll(async () => {
  e = await startE2E("partition");
  await createProbeTable(e, PROBE_TABLE);
});

afterAll(async () => {
  await e?.stop();
});


describe("partition of the primary's agent from the bus", () => {
  it("fences the primary before promoting the replica: never two writable primaries", async () => {
    const cfg = e.plane.config.federations[0];
    if (!cfg) throw new Error("no federation in the lab config");
    const before = federation(e);
    expect(before.designatedPrimary).toBe("pg-eu");
    await waitUntil("pg-us to have replayed the probe table", 10_000, async () => {
      try {
        return (await query(connectionOf(e.lab, "pg-us"), `SELECT 1 FROM ${PROBE_TABLE} LIMIT 1`)) !== undefined;
      } catch {
        return false;
      }
    }, 100);

    const probe = startWriteProbe(e, PROBE_TABLE, MEMBERS, 50);
    await waitUntil("the probe to write on pg-eu", 10_000, () => probe.results.filter((r) => r.ok && r.member === "pg-eu").length > 20);
    const t0 = Date.now();
    await e.plane.partitionAgentFromBus("eu-west");

    let opId: string | null = null;
    await waitUntil("a probe write to succeed on pg-us", 30_000, () => {
      opId ??= federation(e).operation?.id ?? null;
      return probe.results.some((r) => r.ok && r.member === "pg-us" && r.startMs >= t0);
    });
    await sleep(1_000); // keep probing the old primary after the promotion
    await probe.stop();

    const results = probe.results;
    const euOk = results.filter((r) => r.ok && r.member === "pg-eu");
    const usOk = results.filter((r) => r.ok && r.member === "pg-us");
    const lastEuOk = euOk[euOk.length - 1];
    const firstUsOk = usOk[0];
    if (!lastEuOk || !firstUsOk) throw new Error("the probe saw no write on one of the members");
    const firstEuFail = results.find((r) => r.member === "pg-eu" && !r.ok && r.startMs > lastEuOk.startMs);
    const overlaps = overlappingWrites(results);

    const fenceMs = (firstEuFail?.startMs ?? lastEuOk.endMs) - t0;
    const failoverMs = firstUsOk.endMs - t0;
    const guard = e.plane.agents.get("eu-west")?.status().members.find((m) => m.member === "pg-eu")?.lease;

    opId ??= federation(e).operation?.id ?? null;
    const op = opId ? await finished(e, opId, 30_000) : undefined;
    const after = federation(e);

    // Rows the old primary acknowledged that the new one does not have (async streaming).
    const onUs = new Set((await query<{ id: string }>(connectionOf(e.lab, "pg-us"), `SELECT id FROM ${PROBE_TABLE} WHERE member = 'pg-eu'`)).map((r) => Number(r.id)));
    const lost = euOk.filter((r) => r.id !== undefined && !onUs.has(r.id));

    console.log(
      `partition of the primary's agent from NATS: fence time (partition -> pg-eu refuses writes) ${(fenceMs / 1000).toFixed(2)} s; ` +
        `failover time (partition -> pg-us writable) ${(failoverMs / 1000).toFixed(2)} s; gap between the last write on pg-eu and the first on pg-us ${((firstUsOk.startMs - lastEuOk.endMs) / 1000).toFixed(2)} s; ` +
        `${results.length} probe attempts, ${overlaps.length} overlapping writable moments; ${lost.length} of ${euOk.length} probe rows acknowledged by pg-eu missing on pg-us; ` +
        `agent's self-fence: ${guard?.lastFence?.reason ?? "none"} (${guard?.lastFence ? `fence ${String(guard.lastFence.numbers.fenceMs)} ms, margin left ${String(guard.lastFence.numbers.marginLeftMs)} ms` : "-"}); ` +
        `lease ttl ${cfg.failover.leaseTtl} ms, clock-skew margin ${cfg.failover.clockSkewMargin} ms; epoch ${before.epoch} -> ${after.epoch}`,
    );

    expect(overlaps).toEqual([]);
    expect(lastEuOk.endMs).toBeLessThan(firstUsOk.startMs);
    expect(guard?.lastFence?.reason).toBe("lease_expiring");
    expect(op?.kind).toBe("failover");
    expect(op?.automatic).toBe(true);
    expect(op?.state, op?.lastDecision).toBe("completed");
    expect(after.designatedPrimary).toBe("pg-us");
    expect(after.epoch).toBe(before.epoch + 1);
    expect(failoverMs).toBeLessThanOrEqual(cfg.failover.leaseTtl + cfg.failover.clockSkewMargin + 3_000);
  });
});
