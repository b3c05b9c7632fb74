/**
 * The agent of the primary's region crashes (no lease release) while that region's Kubernetes API
 * and Postgres keep running. (a) The coordinator corroborates through eu-west's Kubernetes API that
 * pg-eu is still the healthy unfenced primary: no failover, PgfedAgentDown instead, resolved when
 * the agent is back. (b) With the agent still down, pg-eu's Postgres dies (the API stays up): the
 * coordinator fences pg-eu through that API itself and fails over. A probe writes to both members
 * every ~50 ms: at no moment do two members accept writes.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isFullyFenced } from "../../src/cnpg/index.js";
import { LAB_NAMESPACE } from "../../src/lab/lab.js";
import { FED, createProbeTable, federation, finished, overlappingWrites, startE2E, startWriteProbe, waitUntil, type E2E, type ProbeResult } from "./fixture.js";

const PROBE_TABLE = "pgfed_probe";
const MEMBERS = ["pg-eu", "pg-us"] as const;


let e: E2E;

beforeAll(async () => {
  e = await startE2E("agent-crash");
  await createProbeTable(e, PROBE_TABLE);
});

afterAll(async () => {
  await e?.stop();
});


/** The lab's federation with pg-eu as its primary, and a probe writing to both members every 50 ms that pg-eu has already accepted. */
async function probeWithPgEuPrimary() {
  const cfg = e.plane.config.federations[0];
  if (!cfg) throw new Error("no federation in the lab config");
  const before = federation(e);
  expect(before.designatedPrimary).toBe("pg-eu");
  const probe = startWriteProbe(e, PROBE_TABLE, MEMBERS, 50);
  await waitUntil("the probe to write on pg-eu", 10_000, () => probe.results.filter((r) => r.ok && r.member === "pg-eu").length > 20);
  return { cfg, before, probe };
}

const agentDownAlert = () => e.plane.coordinator.alerting.active().find((a) => a.name === "PgfedAgentDown");

/** As the lab's kill-region does it: cut from the bus first, so that stopping cannot release the primary lease. */
async function crashAgent(region: string): Promise<void> {
  await e.plane.partitionAgentFromBus(region);
  await e.plane.stopAgent(region);
}

describe("a crashed agent beside a primary that still serves", () => {
  it("(a) does not fail over: the primary's Kubernetes API shows it healthy; PgfedAgentDown fires and resolves when the agent is back", async () => {
    const { cfg, before, probe } = await probeWithPgEuPrimary();

    const t0 = Date.now();
    await crashAgent("eu-west");
    const holdMs = cfg.failover.leaseTtl + cfg.failover.clockSkewMargin + 5_000;
    let sawOperation: string | null = null;
    let alertAfterMs: number | undefined;
    while (Date.now() - t0 < holdMs) {
      const f = federation(e);
      sawOperation ??= f.operation?.id ?? null;
      if (alertAfterMs === undefined && agentDownAlert()) alertAfterMs = Date.now() - t0;
      await sleep(100);
    }
    await probe.stop();
    const after = federation(e);
    const alert = agentDownAlert();
    const audit = await e.plane.coordinator.audit(FED, { sinceMs: t0 });
    const withheld = audit.filter((a) => a.action === "failover.withheld");
    const rounds = new Map<number, ProbeResult[]>();
    for (const r of probe.results) rounds.set(r.round, [...(rounds.get(r.round) ?? []), r]);
    // A round's writes start in the same instant but each reads the clock itself, so a round can
    // straddle t0 by a millisecond: judge whole rounds, those that started entirely after the crash.
    for (const [round, rs] of rounds) if (rs.some((r) => r.startMs < t0)) rounds.delete(round);
    const notExactlyOne = [...rounds.values()].filter((rs) => rs.filter((r) => r.ok).length !== 1 || !rs.some((r) => r.ok && r.member === "pg-eu"));
    const firstFailure = notExactlyOne[0]?.map((r) => `${r.member} ${r.ok ? "ok" : r.error ?? "failed"}`).join(", ");

    console.log(
      `agent of eu-west crashed, Postgres and Kubernetes API up: ${(holdMs / 1000).toFixed(1)} s watched (lease ttl ${cfg.failover.leaseTtl} ms + margin ${cfg.failover.clockSkewMargin} ms + 5 s); ` +
        `PgfedAgentDown after ${alertAfterMs === undefined ? "never" : `${(alertAfterMs / 1000).toFixed(2)} s`}; ${rounds.size} probe rounds, ${notExactlyOne.length} without exactly pg-eu writable` +
        `${firstFailure ? ` (first: ${firstFailure})` : ""}; operation ${sawOperation ?? "none"}; epoch ${before.epoch} -> ${after.epoch}; decision: ${withheld[0]?.description ?? "(none audited)"}`,
    );
    expect(sawOperation).toBeNull();
    expect(after.epoch).toBe(before.epoch);
    expect(after.designatedPrimary).toBe("pg-eu");
    expect(notExactlyOne).toEqual([]);
    expect(overlappingWrites(probe.results).length).toBe(0);
    expect(alert?.labels).toMatchObject({ federation: FED, member: "pg-eu", region: "eu-west" });
    expect(withheld[0]?.description).toMatch(new RegExp(`^not failing over ${FED} from pg-eu: agent of eu-west silent \\d+\\.\\d s, but pg-eu is the healthy unfenced primary per eu-west's Kubernetes API$`));
    expect(withheld).toHaveLength(1);

    // The agent comes back: the alert resolves, nothing else changed.
    const t1 = Date.now();
    await e.plane.startAgent("eu-west");
    const resolvedMs = await waitUntil("PgfedAgentDown to resolve", 15_000, () => agentDownAlert() === undefined, 100);
    await sleep(1_000);
    const back = federation(e);
    const backAudit = await e.plane.coordinator.audit(FED, { sinceMs: t1 });
    console.log(`agent of eu-west restarted: PgfedAgentDown resolved after ${(resolvedMs / 1000).toFixed(2)} s; ${backAudit.find((a) => a.action === "agent.back")?.description ?? "(no agent.back audit)"}`);
    expect(back.operation).toBeNull();
    expect(back.epoch).toBe(before.epoch);
    expect(back.designatedPrimary).toBe("pg-eu");
    expect(back.members.find((m) => m.name === "pg-eu")).toMatchObject({ role: "primary", fenced: false, reachable: true });
    expect(backAudit.some((a) => a.action === "agent.back")).toBe(true);
  });

  it("(b) when the primary's Postgres dies too, fences it through its Kubernetes API and fails over: never two writable primaries", async () => {
    const { cfg, before, probe } = await probeWithPgEuPrimary();

    await crashAgent("eu-west");
    await waitUntil("the coordinator to hold the failover back (PgfedAgentDown)", 20_000, () => agentDownAlert() !== undefined, 100);
    expect(federation(e).operation).toBeNull();

    const tKill = Date.now();
    await e.lab.regionOfMember("pg-eu").operator.killInstance(LAB_NAMESPACE, "pg-eu", { hold: true });
    let opId: string | null = null;
    const toWritable = await waitUntil("a probe write to succeed on pg-us", 30_000, () => {
      opId ??= federation(e).operation?.id ?? null;
      return probe.results.some((r) => r.ok && r.member === "pg-us" && r.startMs >= tKill);
    });
    await sleep(1_000); // keep probing both after the promotion
    await probe.stop();
    opId ??= federation(e).lastDecision.match(/failover-[\w-]+/)?.[0] ?? null;
    const op = opId ? await finished(e, opId, 30_000) : undefined;
    const after = federation(e);
    const confirm = (await e.plane.coordinator.audit(FED, { sinceMs: tKill })).find((a) => a.action === "failover.confirm");
    const euCluster = await e.lab.getCluster("pg-eu");
    const overlaps = overlappingWrites(probe.results).length;
    const bound = cfg.failover.leaseTtl + cfg.failover.clockSkewMargin + 2_000;

    console.log(
      `agent of eu-west crashed, then pg-eu's Postgres killed (Kubernetes API up): kill -> pg-us writable ${(toWritable / 1000).toFixed(2)} s (bound ${bound / 1000} s); ` +
        `${probe.results.length} probe attempts, ${overlaps} overlapping writable moments; confirm: ${confirm?.description ?? "(none)"}; epoch ${before.epoch} -> ${after.epoch}`,
    );
    expect(overlaps).toBe(0);
    expect(op?.kind).toBe("failover");
    expect(op?.automatic).toBe(true);
    expect(op?.state, op?.lastDecision).toBe("completed");
    expect(confirm?.description).toBe("pg-eu confirmed down (fenced by the coordinator through eu-west's Kubernetes API)");
    expect(confirm?.numbers).toMatchObject({ fenced: true, coordinatorFenced: true, kube: "notHealthy" });
    expect(isFullyFenced(euCluster)).toBe(true);
    expect(after.designatedPrimary).toBe("pg-us");
    expect(after.epoch).toBe(before.epoch + 1);
    expect(toWritable).toBeLessThanOrEqual(bound);
  });
});
