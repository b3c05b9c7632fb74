/**
 * Rejoin of a diverged former primary: pg-eu's region is lost, pgfed fails over to pg-us; the
 * region comes back and pg-eu is fenced and marked diverged. An operator asks for the rejoin (a
 * dry run first changes nothing), approves it, and pg-eu is re-cloned from pg-us: deleted with its
 * volumes, created again as a replica cluster with a fresh archive path, following pg-us. A planned
 * switchover back to pg-eu then loses no committed row, which only a real replica can do.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, openStateStore, stateKeys, type Bus } from "../../src/bus/index.js";
import { federationRecordSchema } from "../../src/coordinator/index.js";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { LAB_NAMESPACE } from "../../src/lab/lab.js";
import { FED, connectionOf, federation, finished, query, startE2E, storyOf, waitUntil, writable, type E2E } from "./fixture.js";

let e: E2E;
let bus: Bus;

beforeAll(async () => {
  e = await startE2E("rejoin");
  bus = await connectBus({ ...e.lab.busOptions("coordinator", 2), name: "e2e-rejoin", log: e.log });
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
});

afterAll(async () => {
  await bus?.close().catch(() => undefined);
  await e?.stop();
});

async function kvRevision(): Promise<number | undefined> {
  const store = await openStateStore(bus, federationRecordSchema);
  return (await store.get(stateKeys.federation(FED)))?.revision;
}

const who = { requestedBy: "e2e", reason: "rejoin pg-eu after the failover" };

describe("rejoin of a diverged former primary", () => {
  it("fails over away from pg-eu and marks it diverged when its region comes back", async () => {
    const writer = startRowWriter(() => connectionOf(e.lab, "pg-eu"), 2);
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
    await e.plane.partitionAgentFromBus("eu-west");
    await e.lab.killRegion("eu-west");
    await writer.stop();
    await e.plane.stopAgent("eu-west");
    await waitUntil("the failover to pg-us to complete", 60_000, () => {
      const f = federation(e);
      return f.designatedPrimary === "pg-us" && f.operation === null;
    }, 100);
    await e.plane.startAgent("eu-west");
    await e.lab.restoreRegion("eu-west");
    await waitUntil("pg-eu to be fenced and marked diverged", 60_000, () => {
      const f = federation(e);
      return f.diverged.includes("pg-eu") && f.members.find((m) => m.name === "pg-eu")?.fenced === true;
    }, 100);
    expect(federation(e).members.find((m) => m.name === "pg-eu")?.state).toBe("diverged");
  });

  it("a dry run of the rejoin changes nothing", async () => {
    const before = await kvRevision();
    const c0 = await e.lab.getCluster("pg-eu");
    const res = await e.plane.coordinator.rejoin(FED, { member: "pg-eu" }, who, { dryRun: true });
    expect(res.kind).toBe("plan");
    if (res.kind === "plan") expect(res.plan.allowed, res.plan.refusal ?? "").toBe(true);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await kvRevision()).toBe(before);
    const c1 = await e.lab.getCluster("pg-eu");
    expect(c1.metadata.uid).toBe(c0.metadata.uid);
    expect(federation(e).diverged).toEqual(["pg-eu"]);
  });

  it("refuses to rejoin the designated primary or a member that is not diverged", async () => {
    await expect(e.plane.coordinator.rejoin(FED, { member: "pg-us" }, who, { dryRun: false })).rejects.toThrow(/pg-us to demo: it is the designated primary/);
  });

  it("re-clones pg-eu as a replica cluster of pg-us with a fresh archive, keeping the old archive", async () => {
    const old = await e.lab.getCluster("pg-eu");
    await query(connectionOf(e.lab, "pg-us"), `TRUNCATE ${ROWS_TABLE}`); // the writer numbers its rows from 1
    const writer = startRowWriter(() => connectionOf(e.lab, "pg-us"), 2);
    await waitUntil("the writer to commit on pg-us", 10_000, () => writer.committedCount > 20);
    const t0 = Date.now();
    const res = await e.plane.coordinator.rejoin(FED, { member: "pg-eu" }, who, { dryRun: false });
    if (res.kind !== "operation") throw new Error("expected an operation");
    expect(res.operation.state).toBe("awaitingApproval");
    // It discards pg-eu's diverged writes: nothing happens until a person approves.
    await new Promise((r) => setTimeout(r, 500));
    expect((await e.lab.getCluster("pg-eu")).metadata.uid).toBe(old.metadata.uid);
    await e.plane.coordinator.approve(res.operation.id, {}, { requestedBy: "alice", reason: "pg-eu's diverged writes are salvaged from its archive" }, { dryRun: false });
    const op = await finished(e, res.operation.id, 90_000);
    const rejoinMs = Date.now() - t0;
    expect(op.state, op.lastDecision).toBe("completed");

    const f = federation(e);
    expect(f.diverged).toEqual([]);
    expect(f.designatedPrimary).toBe("pg-us");
    const c = await e.lab.getCluster("pg-eu");
    expect(c.metadata.uid).not.toBe(old.metadata.uid);
    expect(c.spec.replica?.primary).toBe("pg-us");
    expect(c.spec.replica?.promotionToken).toBeUndefined();
    expect(c.spec.bootstrap?.pg_basebackup?.source).toBe("pg-us");
    expect(c.metadata.annotations?.["cnpg.io/fencedInstances"]).toBeUndefined();
    expect(c.metadata.annotations?.["pgfed.io/recloned-for-epoch"]).toBe(String(f.epoch));
    const serverName = (c.spec.plugins?.[0] as { parameters?: { serverName?: string } } | undefined)?.parameters?.serverName;
    expect(serverName).toBe(`pg-eu-e${f.epoch}`);
    await waitUntil("the member machine to leave diverged", 10_000, () => federation(e).members.find((m) => m.name === "pg-eu")?.state === "replica", 100);

    // The stand-in archives under the new server name; the old archive (diverged WAL) is still there.
    const inst = e.lab.regionOfMember("pg-eu").operator.instance(LAB_NAMESPACE, "pg-eu");
    expect(inst?.archiveDir.endsWith(join("archive", `pg-eu-e${f.epoch}`))).toBe(true);
    expect(existsSync(join(inst?.dir ?? "/nonexistent", "archive", "pg-eu"))).toBe(true);

    // pg-eu receives new writes from pg-us.
    const report = await writer.stop();
    const last = report.committed[report.committed.length - 1] ?? 0;
    await waitUntil("pg-eu to replay pg-us's last committed row", 30_000, async () => {
      try {
        const r = await query<{ rec: boolean; n: string }>(connectionOf(e.lab, "pg-eu"), `SELECT pg_is_in_recovery() AS rec, (SELECT count(*) FROM ${ROWS_TABLE} WHERE id = ${last}) AS n`);
        return r[0]?.rec === true && r[0].n === "1";
      } catch {
        return false;
      }
    }, 200);
    expect(await writable(connectionOf(e.lab, "pg-eu"))).toBe(false);

    const audit = await e.plane.coordinator.audit(FED, {});
    const rec = audit.find((a) => a.operationId === op.id && a.action === "rejoin.recloned");
    expect(rec, JSON.stringify(storyOf(audit, op.id))).toBeDefined();
    expect(rec?.numbers.keptArchive).toBe("pg-eu");
    // The writer ran on pg-eu before its region was lost: some figure of what it held is recorded.
    expect(rec?.numbers.divergedLsn ?? rec?.numbers.lastKnownLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(rec?.numbers.newArchive).toBe(`pg-eu-e${f.epoch}`);
    // The other member's externalClusters entry for pg-eu reads the new archive path, not the diverged one.
    const us = await e.lab.getCluster("pg-us");
    const usEntry = us.spec.externalClusters?.find((x) => x.name === "pg-eu");
    expect((usEntry?.plugin as { parameters?: { serverName?: string } } | undefined)?.parameters?.serverName).toBe(`pg-eu-e${f.epoch}`);
    expect(us.spec.externalClusters?.find((x) => x.name === "pg-us")?.plugin).toMatchObject({ parameters: { serverName: "pg-us" } });
    expect(rec?.numbers.retargeted).toBe("pg-us");
    expect(rec?.reason).toContain(`pg-us now reads pg-eu's archive under pg-eu-e${f.epoch}`);
    console.log(
      `rejoin of pg-eu: request to completed ${(rejoinMs / 1000).toFixed(2)} s (operation ${op.durationSeconds?.toFixed(2) ?? "?"} s incl. approval, re-clone ${String(rec?.numbers.durationSeconds)} s); ` +
        `discarded: ${rec?.reason ?? "?"}; agent figures: WAL ${String(rec?.numbers.divergedLsn)} on timeline ${String(rec?.numbers.divergedTimeline)}, coordinator's last sample ${String(rec?.numbers.lastKnownLsn)} (${String(rec?.numbers.lastKnownRole)}, timeline ${String(rec?.numbers.lastKnownTimeline)}), ` +
        `last archived ${String(rec?.numbers.divergedLastArchivedWal)}; old archive kept as ${String(rec?.numbers.keptArchive)}, new ${String(rec?.numbers.newArchive)}; now on timeline ${String(rec?.numbers.timeline)}`,
    );
  });

  it("did the re-clone as the agent's own ServiceAccount under deploy/'s Roles, with no request refused", () => {
    const agent = "system:serviceaccount:pgfed:pgfed-agent";
    const eu = e.lab.region("eu-west").kubeRequests;
    const byAgent = eu.filter((r) => r.user === agent && r.resource === "clusters");
    expect(byAgent.some((r) => r.verb === "delete" && r.name === "pg-eu" && r.allowed)).toBe(true);
    expect(byAgent.some((r) => r.verb === "create" && r.allowed)).toBe(true);
    const refused = [...e.lab.regions.values()].flatMap((r) => r.kubeRequests.filter((x) => !x.allowed).map((x) => `${r.name}: ${x.user} ${x.verb} ${x.resource} ${x.name ?? ""}`));
    expect(refused).toEqual([]);
    console.log(`rejoin e2e: ${[...e.lab.regions.values()].reduce((n, r) => n + r.kubeRequests.length, 0)} Kubernetes requests by the agents and the coordinator, all allowed by deploy/kubernetes/member-rbac`);
  });

  it("a rejoined pg-eu takes a planned switchover back with zero committed rows lost", async () => {
    await query(connectionOf(e.lab, "pg-us"), `TRUNCATE ${ROWS_TABLE}`);
    const writer = startRowWriter(() => connectionOf(e.lab, federation(e).designatedPrimary ?? "pg-us"), 2);
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
    const before = federation(e);
    await waitUntil("a lag figure for pg-eu", 20_000, () => federation(e).members.find((m) => m.name === "pg-eu")?.lagSeconds !== null, 100);
    const res = await e.plane.coordinator.switchover(FED, { target: "pg-eu" }, { requestedBy: "e2e", reason: "back to pg-eu after its rejoin" }, { dryRun: false });
    if (res.kind !== "operation") throw new Error("expected an operation");
    const op = await finished(e, res.operation.id, 90_000);
    expect(op.state, op.lastDecision).toBe("completed");
    await waitUntil("commits on pg-eu", 20_000, () => federation(e).designatedPrimary === "pg-eu");
    const settled = writer.committedCount;
    await waitUntil("more commits after the switchover", 20_000, () => writer.committedCount > settled + 20);
    const report = await writer.stop();
    const rows = await query<{ id: string }>(connectionOf(e.lab, "pg-eu"), `SELECT id FROM ${ROWS_TABLE}`);
    const present = new Set(rows.map((r) => Number(r.id)));
    const lost = report.committed.filter((id) => !present.has(id));
    expect(lost).toEqual([]);
    expect(federation(e).epoch).toBe(before.epoch + 1);
    // pg-us now follows pg-eu and restores its WAL from pg-eu's new archive, never the diverged one.
    const restore = await query<{ restore_command: string }>(connectionOf(e.lab, "pg-us"), "SHOW restore_command");
    expect(restore[0]?.restore_command).toContain(join("archive", `pg-eu-e${before.epoch}`));
    console.log(`switchover back to the rejoined pg-eu: ${op.durationSeconds?.toFixed(2) ?? "?"} s, ${report.committed.length} rows committed, ${lost.length} lost, write unavailability ${(report.maxGapMs / 1000).toFixed(2)} s`);
  });
});
