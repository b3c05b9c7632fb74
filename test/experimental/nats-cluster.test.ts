/**
 * NOT PART OF `npm test` YET (`npm run test:nats-cluster` runs it): the acceptance test of the NATS
 * cluster (issue #15, item 4). Where it stands: the switchover with the leader's NATS server
 * SIGKILLed completes, 0 rows lost (8.6-13.7 s); the region-loss failover, with the primary put
 * beside JetStream's meta leader on purpose (the worst case), meets its 14 s bound: 11.7-13.1 s in
 * 3 of 3 runs. Its margin is under a second (a silent primary is confirmed at the first check after
 * lease + margin, not at that instant), too little for a loaded 2-core CI machine; tightening that
 * check comes before this joins `npm test` and the cluster becomes the lab's default.
 *
 * The control plane on a NATS cluster (issue: survive losing a region's NATS): one nats-server
 * per region, JetStream stream and KV buckets with three replicas. Three regions:
 * - the NATS server the coordinator leader is connected to is SIGKILLed in the middle of a
 *   switchover: the coordinator moves to another server and the switchover completes, 0 rows lost;
 * - the primary's region is lost whole (Postgres, Kubernetes API, agent and its NATS server):
 *   automatic failover within leaseTtl + clockSkewMargin + 1 s.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, type Bus } from "../../src/bus/index.js";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../src/lab/cnpg/writer.js";
import { FED, connectionOf, federation, finished, query, startE2E, waitUntil, writable, type E2E } from "../e2e/fixture.js";

let e: E2E;
let reader: Bus;

beforeAll(async () => {
  e = await startE2E("nats-cluster", { regions: 3, natsCluster: true });
  reader = await connectBus({ ...e.lab.busOptions("coordinator", 2), name: "e2e-nats-cluster", log: e.log });
  await createRowsTable(connectionOf(e.lab, "pg-eu"));
}, 180_000);

afterAll(async () => {
  await reader?.close();
  await e?.stop();
});

/** The site whose NATS server listens on `hostPort` ("127.0.0.1:4222"). */
function siteOf(hostPort: string): string {
  const site = e.lab.nats.sites.find((s) => new URL(e.lab.nats.server(s).url).port === hostPort.split(":").pop());
  if (!site) throw new Error(`no lab NATS server on ${hostPort}`);
  return site;
}

describe("NATS as a cluster", () => {
  it("runs one server per region and keeps the stream and every KV bucket on three of them", async () => {
    expect(e.lab.nats.sites).toEqual(["eu-west", "us-east", "ap-south"]);
    const jsm = await jetstreamManager(reader.nc);
    for (const name of ["PGFED", "KV_pgfed_state", "KV_pgfed_leases", "KV_pgfed_coordinators"]) {
      const info = await jsm.streams.info(name);
      expect(info.config.num_replicas, name).toBe(3);
      expect((info.cluster?.replicas ?? []).length, name).toBe(2);
    }
  });

  it("completes a switchover with 0 rows lost when the leader's NATS server is SIGKILLed in the middle of it", async () => {
    const from = federation(e).designatedPrimary ?? "pg-eu";
    const to = "pg-ap";
    await query(connectionOf(e.lab, from), `TRUNCATE ${ROWS_TABLE}`);
    const writer = startRowWriter(() => connectionOf(e.lab, federation(e).designatedPrimary ?? from), 2);
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
    const server = e.plane.coordinatorNatsServer();
    if (!server) throw new Error("the coordinator is not connected to NATS");
    const site = siteOf(server);
    const t0 = Date.now();
    const res = await e.plane.coordinator.switchover(FED, { target: to }, { requestedBy: "e2e", reason: "switchover while the leader's NATS server dies" }, { dryRun: false });
    if (res.kind !== "operation") throw new Error("expected an operation");
    await waitUntil("the switchover to pass its first step", 10_000, () => (federation(e).operation?.step ?? "") !== "preflight");
    await e.lab.nats.server(site).kill();
    const killedAtMs = Date.now() - t0;
    const op = await finished(e, res.operation.id, 90_000);
    const doneMs = Date.now() - t0;
    await waitUntil("the writer to commit on the new primary", 20_000, () => federation(e).designatedPrimary === to && writer.committedCount > 0);
    const settled = writer.committedCount;
    await waitUntil("more commits after the switchover", 20_000, () => writer.committedCount > settled + 20);
    const report = await writer.stop();
    const rows = await query<{ id: string }>(connectionOf(e.lab, to), `SELECT id FROM ${ROWS_TABLE}`);
    const present = new Set(rows.map((r) => Number(r.id)));
    const lost = report.committed.filter((id) => !present.has(id));
    console.log(
      `switchover ${from} -> ${to} with the leader's NATS server (${site}) SIGKILLed ${killedAtMs} ms in: completed in ${(doneMs / 1000).toFixed(2)} s, ` +
        `coordinator now on ${e.plane.coordinatorNatsServer() ?? "?"}, write unavailability ${(report.maxGapMs / 1000).toFixed(2)} s, ${report.committed.length} rows committed, ${lost.length} lost`,
    );
    expect(op.state, op.lastDecision).toBe("completed");
    expect(federation(e).designatedPrimary).toBe(to);
    expect(lost).toEqual([]);
    expect(siteOf(e.plane.coordinatorNatsServer() ?? "")).not.toBe(site);
    await e.lab.nats.server(site).restart();
    await e.lab.nats.waitReady();
  });

  it("fails over within leaseTtl + clockSkewMargin + 1 s when the primary's whole region is lost, its NATS server included, and that server is JetStream's meta leader", async () => {
    const cfg = e.plane.config.federations[0];
    if (!cfg) throw new Error("no federation");
    // The worst case on purpose: the primary lives where JetStream's meta leader is, so losing the
    // region also costs JetStream its meta leader (an election of several seconds).
    const metaSite = await e.lab.nats.metaLeaderSite();
    if (!metaSite) throw new Error("no JetStream meta leader");
    const inMeta = e.lab.members.find((m) => e.lab.regionOfMember(m.name).name === metaSite)?.name;
    if (!inMeta) throw new Error(`no member in ${metaSite}`);
    if (federation(e).designatedPrimary !== inMeta) {
      const res = await e.plane.coordinator.switchover(FED, { target: inMeta }, { requestedBy: "e2e", reason: "put the primary beside the meta leader" }, { dryRun: false });
      if (res.kind !== "operation") throw new Error("expected an operation");
      const moved = await finished(e, res.operation.id, 90_000);
      expect(moved.state, moved.lastDecision).toBe("completed");
    }
    expect(await e.lab.nats.metaLeaderSite()).toBe(metaSite);
    const primary = inMeta;
    const region = metaSite;
    const epochBefore = federation(e).epoch;
    await query(connectionOf(e.lab, primary), `TRUNCATE ${ROWS_TABLE}`); // the writer numbers its rows from 1
    const writer = startRowWriter(() => connectionOf(e.lab, primary), 2);
    await waitUntil("the writer to commit", 10_000, () => writer.committedCount > 50);
    await new Promise((r) => setTimeout(r, 2_000));
    const t0 = Date.now();
    await e.plane.partitionAgentFromBus(region);
    await e.lab.killRegion(region); // Postgres, Kubernetes API and the region's NATS server
    const killMs = Date.now() - t0;
    await writer.stop();
    await e.plane.stopAgent(region);
    const others = e.lab.members.filter((m) => m.name !== primary).map((m) => m.name);
    let promoted = "";
    const toWritable = await waitUntil("another member to accept writes", 30_000, async () => {
      for (const m of others) if (await writable(connectionOf(e.lab, m))) promoted = m;
      return promoted !== "";
    });
    const opId = federation(e).operation?.id;
    const op = opId ? await finished(e, opId, 30_000) : undefined;
    const bound = cfg.failover.leaseTtl + cfg.failover.clockSkewMargin + 1_000;
    console.log(`failover after losing region ${region} with its NATS server, JetStream's meta leader: kill took ${killMs} ms; kill to ${promoted} writable ${((toWritable + killMs) / 1000).toFixed(2)} s (bound ${bound / 1000} s); epoch ${epochBefore} -> ${federation(e).epoch}`);
    expect(op?.state, op?.lastDecision).toBe("completed");
    expect(federation(e).designatedPrimary).toBe(promoted);
    expect(toWritable + killMs).toBeLessThanOrEqual(bound);
  });
});
