/**
 * Layer 2 of the CNPG stand-in: two regions (two Kubernetes API stand-ins), one operator each,
 * driven only through @kubernetes/client-node with the merge patches CNPG.md lists, over real
 * Postgres. Proves what pgfed relies on: token-checked switchover with zero loss, refused tokens,
 * failover without a token, fencing, kill and restart, and CNPG 1.30's strictness: no demotion
 * token without a clean shutdown, tokens cleared, the #11074 token-loss fault, CNPG's reading of
 * the fencing annotation, a stale timelineID on replica clusters.
 */
import { chmod, readFile, readdir } from "node:fs/promises";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NS, StandIns, type Region } from "./harness.js";
import { CONDITIONS, PHASES, PROMOTION_TOKEN_MISMATCH_REASON, REPLICA_PROMOTION_IN_PROGRESS_REASON, databaseClusterState, decodeToken, encodeToken, type Cluster, type Condition } from "../../../src/cnpg/index.js";
import type { PgInstance } from "../../../src/lab/cnpg/instance.js";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../../src/lab/cnpg/writer.js";
import { descendants, isAlive, waitFor } from "../../../src/lab/proc.js";
import { formatLsn } from "../../../src/wal/lsn.js";
import { createLogger, silentLogger } from "../../../src/log.js";
import { clusterManifest as topologyManifest, healthy } from "../../support/cnpg-cluster.js";
import { replayedTimeline, rowIds } from "../../support/postgres.js";

// Short CNPG retry intervals (CNPG: 10 s each; defaults.test.ts shows those).
const TIMING = { pollIntervalMs: 100, promotionRetryMs: 250, demotionRetryMs: 300 } as const;
const FENCE = "cnpg.io/fencedInstances";

const h = new StandIns({ prefix: "pgfed-l2-", timing: TIMING, log: testLog() });
const api = (region: Region) => h.api(region);
const operator = (region: Region) => h.operator(region);
const instanceOf = (region: Region, name: string): PgInstance => h.instanceOf(region, name);
const getCluster = (region: Region, name: string): Promise<Cluster> => h.getCluster(region, name);
const waitCluster = (region: Region, name: string, what: string, ok: (c: Cluster) => boolean, timeoutMs?: number): Promise<Cluster> => h.waitCluster(region, name, what, ok, timeoutMs);
const patch = (region: Region, name: string, body: object): Promise<void> => h.patch(region, name, body);
const timings: string[] = [];

const condition = (c: Cluster, type: string): Condition | undefined => c.status?.conditions?.find((k) => k.type === type);

/** A demotion that completed after `before` was read: a new ReplicaClusterSwitch=True (not the one of an earlier demotion). */
const demotionCompletedSince = (before: Cluster) => (c: Cluster): boolean => {
  const done = condition(c, CONDITIONS.replicaClusterSwitch);
  return c.status?.switchReplicaClusterStatus?.inProgress === false && done?.status === "True" && done.lastTransitionTime !== condition(before, CONDITIONS.replicaClusterSwitch)?.lastTransitionTime;
};

/** Operator logs on stdout when LAB_CNPG_TEST_LOG names a level (debug, info…). */
function testLog() {
  const level = process.env.LAB_CNPG_TEST_LOG;
  return level ? createLogger({ level, pretty: false }) : silentLogger();
}

/** A member of a two-cluster topology; `streaming` adds connectionParameters to the external clusters. */
function clusterManifest(name: string, primary: string, source: string, members: string[], opts: { streaming: boolean; replica: boolean }): object {
  return topologyManifest(name, primary, source, members, { ...opts, namespace: NS, instances: 3, barman: true });
}

async function createPair(eu: string, us: string, streaming: boolean): Promise<void> {
  const members = [eu, us];
  await api("eu").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: clusterManifest(eu, eu, us, members, { streaming, replica: false }) });
  await waitCluster("eu", eu, "healthy", healthy);
  await api("us").createNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", body: clusterManifest(us, eu, eu, members, { streaming, replica: true }) });
  await waitCluster("us", us, "healthy", healthy);
}

/** One past the highest row id, so a new writer does not spend its time on taken ids. */
async function nextRowId(inst: PgInstance): Promise<number> {
  const rows = await inst.query<{ n: string }>(`SELECT coalesce(max(id), 0) + 1 AS n FROM ${ROWS_TABLE}`);
  return Number(rows[0]?.n ?? 1);
}

async function inRecovery(inst: PgInstance): Promise<boolean> {
  const rows = await inst.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r");
  return rows[0]?.r === true;
}

function acceptsTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * The planned switchover of CNPG.md with the raw patches: demote `from`, wait for its token,
 * promote `to` with it. Writes run throughout; returns after asserting zero committed rows lost.
 */
async function switchover(label: string, from: { region: Region; name: string }, to: { region: Region; name: string }): Promise<string> {
  const fromInst = instanceOf(from.region, from.name);
  const toInst = instanceOf(to.region, to.name);
  let target = fromInst.connection;
  const writer = startRowWriter(() => target, 2, { firstId: await nextRowId(fromInst) });
  await waitFor("rows before the switchover", () => writer.committedCount > 50, 20_000);

  const t0 = Date.now();
  // 1. Demote: follow the new primary, dropping any leftover token in the same patch.
  await patch(from.region, from.name, { spec: { replica: { primary: to.name, promotionToken: null } } });
  const demoted = await waitCluster(from.region, from.name, "demotion token published", (c) => (c.status?.demotionToken ?? "") !== "" && c.status?.switchReplicaClusterStatus?.inProgress !== true && c.status?.conditions?.some((k) => k.type === "ReplicaClusterSwitch" && k.status === "True") === true);
  const token = demoted.status?.demotionToken ?? "";
  const tToken = Date.now();
  // 3. Promote with the token, in one patch.
  await patch(to.region, to.name, { spec: { replica: { primary: to.name, promotionToken: token } } });
  const promoted = await waitCluster(to.region, to.name, "promoted with the token", (c) => c.status?.lastPromotionToken === token && healthy(c));
  target = toInst.connection;
  const tPromoted = Date.now();
  const decoded = decodeToken(token);
  expect(promoted.status?.timelineID).toBe(decoded.timeline + 1);
  expect(await inRecovery(toInst)).toBe(false);

  const afterPromotion = writer.committedCount;
  await waitFor("writes on the new primary", () => writer.committedCount > afterPromotion + 30, 20_000);
  const report = await writer.stop();
  const tWritesBack = report.maxGapStartedAt + report.maxGapMs;

  // 5. The old primary follows the new timeline and receives the new rows.
  await waitCluster(from.region, from.name, "running as a replica", healthy);
  const last = report.committed[report.committed.length - 1] ?? 0;
  await waitFor(`${from.name} to receive row ${last}`, async () => (await rowIds(fromInst)).has(last), 30_000, 50);
  await waitFor(`${from.name} to replay timeline ${decoded.timeline + 1}`, async () => (await replayedTimeline(fromInst)) === decoded.timeline + 1, 30_000, 100);
  const tFollowing = Date.now();
  expect(await inRecovery(fromInst)).toBe(true);
  // CNPG moves timelineID only from an instance out of recovery: the demoted side keeps its old one.
  const after = await getCluster(from.region, from.name);
  expect(after.status?.timelineID).toBe(decoded.timeline);
  expect(after.metadata.annotations?.[FENCE]).toBeUndefined();
  expect(after.status?.conditions?.map((k) => k.type)).not.toContain(CONDITIONS.designatedPrimaryTransition);
  expect(after.status?.conditions?.map((k) => k.type)).not.toContain(CONDITIONS.replicaClusterFencing);

  const onNew = await rowIds(toInst);
  expect(report.committed.filter((id) => !onNew.has(id))).toEqual([]);
  timings.push(
    `[${label}] demotion+token ${tToken - t0} ms, promote (patch→lastPromotionToken) ${tPromoted - tToken} ms, ` +
      `writes unavailable ${report.maxGapMs} ms (back ${tWritesBack - t0} ms after the demote patch), old primary on the new timeline ${tFollowing - tPromoted} ms after promotion; ` +
      `${report.committed.length} rows committed, 0 lost, ${report.inDoubt.length} in doubt`,
  );
  return token;
}

beforeAll(async () => {
  await h.start();
});

afterAll(async () => {
  if (timings.length > 0) console.log(`measured step times:\n  ${timings.join("\n  ")}`);
  await h.stop();
});

describe("CNPG stand-in through the Kubernetes API", () => {
  it("bootstraps a primary with initdb and a replica cluster with pg_basebackup (archive + streaming)", async () => {
    await createPair("pg-eu", "pg-us", true);
    const eu = await getCluster("eu", "pg-eu");
    const us = await getCluster("us", "pg-us");
    expect(eu.status).toMatchObject({ currentPrimary: "pg-eu-1", targetPrimary: "pg-eu-1", writeService: "pg-eu-rw", instances: 3, readyInstances: 1, timelineID: 1 });
    expect(us.status?.systemID).toBe(eu.status?.systemID);
    // Never out of recovery, so CNPG never wrote a timeline for it.
    expect(us.status?.timelineID).toBeUndefined();
    expect(eu.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    expect(await inRecovery(instanceOf("us", "pg-us"))).toBe(true);
    const probe = await instanceOf("us", "pg-us").probe();
    expect(probe.walReceiverUp).toBe(true);
    await createRowsTable(instanceOf("eu", "pg-eu").connection);
  });

  it("switches over pg-eu → pg-us with the demotion token and loses no committed row", async () => {
    await switchover("streaming", { region: "eu", name: "pg-eu" }, { region: "us", name: "pg-us" });
  });

  it("waits while the token is ahead, refuses wrong tokens as unrecoverable, then promotes with the right one", async () => {
    // Switch back: demote pg-us (its spent token is removed in the same patch).
    await patch("us", "pg-us", { spec: { replica: { primary: "pg-eu", promotionToken: null } } });
    const demoted = await waitCluster("us", "pg-us", "demotion token published", (c) => (c.status?.demotionToken ?? "") !== "" && c.status?.conditions?.some((k) => k.type === "ReplicaClusterSwitch" && k.status === "True") === true && c.status?.switchReplicaClusterStatus?.inProgress === false && (c.status?.timelineID ?? 0) >= 2);
    const token = decodeToken(demoted.status?.demotionToken ?? "");
    expect(token.timeline).toBe(2);
    const eu = instanceOf("eu", "pg-eu");

    const ahead = encodeToken({ ...token, latestCheckpointREDOLocation: formatLsn(token.redoLsn + 0x10000000n) });
    await patch("eu", "pg-eu", { spec: { replica: { primary: "pg-eu", promotionToken: ahead } } });
    const waiting = await waitCluster("eu", "pg-eu", "waiting to replay up to the token", (c) => c.status?.phase === PHASES.promoting);
    expect(waiting.status?.phaseReason).toBe(REPLICA_PROMOTION_IN_PROGRESS_REASON);
    expect(await inRecovery(eu)).toBe(true);

    const behind = encodeToken({ ...token, latestCheckpointREDOLocation: "0/1000028" });
    await patch("eu", "pg-eu", { spec: { replica: { promotionToken: behind } } });
    let c = await waitCluster("eu", "pg-eu", "unrecoverable", (k) => k.status?.phase === PHASES.unrecoverable);
    expect(c.status?.phaseReason).toBe(PROMOTION_TOKEN_MISMATCH_REASON);
    expect(await inRecovery(eu)).toBe(true);

    const otherSystem = encodeToken({ ...token, databaseSystemIdentifier: "7000000000000000001" });
    await patch("eu", "pg-eu", { spec: { replica: { promotionToken: otherSystem } } });
    await new Promise((r) => setTimeout(r, 500));
    c = await waitCluster("eu", "pg-eu", "unrecoverable", (k) => k.status?.phase === PHASES.unrecoverable);
    expect(c.status?.lastPromotionToken).not.toBe(otherSystem);
    expect(await inRecovery(eu)).toBe(true);

    const right = demoted.status?.demotionToken ?? "";
    await patch("eu", "pg-eu", { spec: { replica: { promotionToken: right } } });
    c = await waitCluster("eu", "pg-eu", "promoted with the right token", (k) => k.status?.lastPromotionToken === right && healthy(k));
    expect(c.status?.timelineID).toBe(3);
    await waitCluster("us", "pg-us", "following as a replica", healthy);
    await waitFor("pg-us to replay timeline 3", async () => (await replayedTimeline(instanceOf("us", "pg-us"))) === 3, 30_000, 100);
  });

  it("clears demotionToken on a primary and lastPromotionToken once the spec drops the token (fields removed)", async () => {
    // pg-eu was demoted in the first switchover and is a primary again: its old demotion token is gone.
    await waitCluster("eu", "pg-eu", "demotion token cleared on the primary", (c) => c.status?.demotionToken === undefined);
    const before = await getCluster("eu", "pg-eu");
    expect(before.status?.lastPromotionToken).toBe(before.spec.replica?.promotionToken);
    await patch("eu", "pg-eu", { spec: { replica: { promotionToken: null } } });
    await waitCluster("eu", "pg-eu", "lastPromotionToken cleared", (c) => c.status?.lastPromotionToken === undefined);
    const raw = (await api("eu").getNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", name: "pg-eu" })) as { status: Record<string, unknown> };
    expect(Object.keys(raw.status)).not.toContain("lastPromotionToken");
    expect(Object.keys(raw.status)).not.toContain("demotionToken");
    // The replica keeps its demotion token.
    expect((await getCluster("us", "pg-us")).status?.demotionToken).toBeTruthy();
  });

  it("reads the fencing annotation as CNPG: unparseable and JSON null fence nothing", async () => {
    const eu = instanceOf("eu", "pg-eu");
    const pid = eu.pid;
    for (const value of ["not json", "null", '["pg-eu-1", 7]', '"*"']) {
      await patch("eu", "pg-eu", { metadata: { annotations: { [FENCE]: value } } });
      // Several passes: a fenced instance would stop within one.
      await new Promise((r) => setTimeout(r, 500));
      const c = await waitCluster("eu", "pg-eu", `still healthy with ${value}`, healthy);
      expect(c.metadata.annotations?.[FENCE]).toBe(value);
      expect(eu.pid).toBe(pid);
      expect(await acceptsTcp(eu.port)).toBe(true);
    }
    await patch("eu", "pg-eu", { metadata: { annotations: { [FENCE]: null } } });
  });

  it("fencing stops Postgres (connections refused) and unfencing brings it back as the spec says", async () => {
    const eu = instanceOf("eu", "pg-eu");
    await patch("eu", "pg-eu", { metadata: { annotations: { "cnpg.io/fencedInstances": '["*"]' } } });
    await waitCluster("eu", "pg-eu", "fenced, not ready", (c) => c.status?.readyInstances === 0 && c.status.conditions?.find((k) => k.type === "Ready")?.status === "False");
    expect(await acceptsTcp(eu.port)).toBe(false);
    await patch("eu", "pg-eu", { metadata: { annotations: { "cnpg.io/fencedInstances": null } } });
    await waitCluster("eu", "pg-eu", "healthy again", healthy);
    expect(await inRecovery(eu)).toBe(false);
    await eu.query(`INSERT INTO ${ROWS_TABLE} (id) VALUES (1000000)`);

    // Naming the pod fences that instance only, which is the whole cluster here.
    await patch("eu", "pg-eu", { metadata: { annotations: { "cnpg.io/fencedInstances": '["pg-eu-1"]' } } });
    await waitCluster("eu", "pg-eu", "fenced by pod name", (c) => c.status?.readyInstances === 0);
    expect(await acceptsTcp(eu.port)).toBe(false);
    await patch("eu", "pg-eu", { metadata: { annotations: { "cnpg.io/fencedInstances": null } } });
    await waitCluster("eu", "pg-eu", "healthy again", healthy);
  });

  it("killInstance SIGKILLs the postmaster and its children; restartInstance recovers", async () => {
    const eu = instanceOf("eu", "pg-eu");
    const pid = eu.pid ?? 0;
    const tree = [pid, ...descendants(pid)];
    await operator("eu").killInstance(NS, "pg-eu");
    expect(tree.filter(isAlive)).toEqual([]);
    await waitCluster("eu", "pg-eu", "not ready after the kill", (c) => c.status?.readyInstances === 0);
    await operator("eu").restartInstance(NS, "pg-eu");
    await waitCluster("eu", "pg-eu", "healthy after restart", healthy);
    expect((await rowIds(eu)).has(1000000)).toBe(true);
  });

  it("killInstance during a pass that is about to act still crashes Postgres: never a clean shutdown (a lost region gives CNPG nothing to demote)", async () => {
    const eu = instanceOf("eu", "pg-eu");
    // Slow the API so the next pass holds its read of the Cluster while the kill comes.
    await h.servers.get("eu")?.faults.set({ latencyMs: 400 });
    try {
      const pass = operator("eu").reconcileNow();
      await new Promise((r) => setTimeout(r, 600));
      await operator("eu").killInstance(NS, "pg-eu");
      await pass;
      expect(eu.running).toBe(false);
      expect(databaseClusterState(await eu.controlData())).toBe("in production");
    } finally {
      await h.servers.get("eu")?.faults.clear();
      await operator("eu").restartInstance(NS, "pg-eu");
      await waitCluster("eu", "pg-eu", "healthy after restart", healthy);
    }
  });

  it("reports ContinuousArchiving from the archiver's real results", async () => {
    const eu = instanceOf("eu", "pg-eu");
    await waitCluster("eu", "pg-eu", "archiving ok", (c) => c.status?.conditions?.find((k) => k.type === "ContinuousArchiving")?.status === "True");
    await chmod(eu.archiveDir, 0o555);
    try {
      await eu.query(`INSERT INTO ${ROWS_TABLE} (id) VALUES (1000001)`);
      await eu.query("SELECT pg_switch_wal()");
      const c = await waitCluster("eu", "pg-eu", "archiving failing", (k) => k.status?.conditions?.find((x) => x.type === "ContinuousArchiving")?.status === "False");
      const failing = c.status?.conditions?.find((x) => x.type === "ContinuousArchiving");
      expect(failing?.reason).toBe("ContinuousArchivingFailing");
      // The archive command's own error, as CNPG's wal-archive reports it.
      expect(failing?.message).toMatch(/^archive-wal: cannot copy [0-9A-F]{24} into .*Permission denied/);
    } finally {
      await chmod(eu.archiveDir, 0o755);
    }
    const ok = await waitCluster("eu", "pg-eu", "archiving ok again", (c) => c.status?.conditions?.find((k) => k.type === "ContinuousArchiving")?.status === "True");
    expect(ok.status?.conditions?.find((k) => k.type === "ContinuousArchiving")).toMatchObject({ reason: "ContinuousArchivingSuccess", message: "Continuous archiving is working" });
  });

  it("demotes a primary that crashed with its operator once the new operator restarted it unfenced (crash recovery on start), losing no committed row", async () => {
    const eu = instanceOf("eu", "pg-eu");
    const port = eu.port;
    const previousToken = (await getCluster("eu", "pg-eu")).status?.demotionToken;
    const writer = startRowWriter(() => eu.connection, 1, { firstId: await nextRowId(eu) });
    await waitFor("rows on pg-eu", () => writer.committedCount > 100, 20_000);
    // Region lost: operator and Postgres die together (SIGKILL, no shutdown checkpoint).
    await operator("eu").stop({ kill: true });
    const report = await writer.stop();
    await patch("eu", "pg-eu", { spec: { replica: { primary: "pg-us", promotionToken: null } } });
    await h.startOperator("eu");
    const demoted = await waitCluster("eu", "pg-eu", "a new demotion token", (c) => (c.status?.demotionToken ?? previousToken) !== previousToken && c.status?.switchReplicaClusterStatus?.inProgress === false);
    const token = demoted.status?.demotionToken ?? "";
    await patch("us", "pg-us", { spec: { replica: { primary: "pg-us", promotionToken: token } } });
    await waitCluster("us", "pg-us", "promoted with the token", (c) => c.status?.lastPromotionToken === token && healthy(c));
    const onUs = await rowIds(instanceOf("us", "pg-us"));
    expect(report.committed.filter((id) => !onUs.has(id))).toEqual([]);
    await waitCluster("eu", "pg-eu", "following pg-us", healthy);
    // Recovered by starting Postgres (as CNPG's instance manager does at pod start), not offline.
    expect(await readFile(instanceOf("eu", "pg-eu").logFile, "utf8")).toMatch(/automatic recovery in progress/);
    expect(instanceOf("eu", "pg-eu").port).toBe(port);
    expect(await inRecovery(instanceOf("eu", "pg-eu"))).toBe(true);
  });

  it("a completed demotion lifts fencing that was there before it (CNPG records only that it fenced, in ReplicaClusterFencing)", async () => {
    const us = instanceOf("us", "pg-us");
    // One instance fenced first: the demotion's fencing replaces it with "*", and its cleanup lifts all of it.
    await patch("us", "pg-us", { metadata: { annotations: { [FENCE]: '["pg-us-1"]' } } });
    await waitCluster("us", "pg-us", "fenced by pod name", (c) => c.status?.readyInstances === 0);
    expect(await acceptsTcp(us.port)).toBe(false);
    const before = await getCluster("us", "pg-us");
    await patch("us", "pg-us", { spec: { replica: { primary: "pg-eu", source: "pg-eu", promotionToken: null } } });
    const demoted = await waitCluster("us", "pg-us", "demotion completed", demotionCompletedSince(before));
    expect(demoted.metadata.annotations?.[FENCE]).toBeUndefined();
    expect(condition(demoted, CONDITIONS.replicaClusterSwitch)).toMatchObject({ reason: "ReplicaEnabledSetTrue", message: "Completed the Replica cluster transition" });
    const token = demoted.status?.demotionToken ?? "";
    expect(decodeToken(token).timeline).toBe(demoted.status?.timelineID);
    await patch("eu", "pg-eu", { spec: { replica: { primary: "pg-eu", promotionToken: token } } });
    await waitCluster("eu", "pg-eu", "promoted with the token", (c) => c.status?.lastPromotionToken === token && healthy(c));
    await waitCluster("us", "pg-us", "following pg-eu", healthy);
    await patch("eu", "pg-eu", { spec: { replica: { promotionToken: null } } });
  });

  it("with the tokenLoss fault (CNPG #11074) a demotion completes without its token, once", async () => {
    operator("eu").injectFault(NS, "pg-eu", "tokenLoss");
    const before = await getCluster("eu", "pg-eu");
    await patch("eu", "pg-eu", { spec: { replica: { primary: "pg-us", source: "pg-us", promotionToken: null } } });
    const lost = await waitCluster("eu", "pg-eu", "demotion completed", demotionCompletedSince(before));
    expect(lost.status?.demotionToken).toBeUndefined();
    const eu = instanceOf("eu", "pg-eu");
    expect(eu.diskRole).toBe("replica");
    await waitCluster("eu", "pg-eu", "running as a standby", healthy);
    expect(await inRecovery(eu)).toBe(true);
    // The shutdown segment was archived all the same: only the status lost the token.
    expect((await readdir(eu.archiveDir)).some((f) => f.endsWith(".partial"))).toBe(true);

    // No token to promote with: fail over to pg-us once it has replayed pg-eu's shutdown checkpoint.
    const us = instanceOf("us", "pg-us");
    const end = (await eu.query<{ lsn: string }>("SELECT pg_last_wal_replay_lsn()::text AS lsn"))[0]?.lsn ?? "";
    await waitFor(`pg-us to replay up to ${end}`, async () => (await us.query<{ ok: boolean }>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok", [end]))[0]?.ok === true, 30_000, 50);
    await patch("us", "pg-us", { spec: { replica: { primary: "pg-us", promotionToken: null } } });
    await waitCluster("us", "pg-us", "promoted without a token", (c) => healthy(c) && c.status?.demotionToken === undefined);
    expect(await inRecovery(us)).toBe(false);
    await waitCluster("eu", "pg-eu", "following pg-us", healthy);

    await switchover("after a token loss", { region: "us", name: "pg-us" }, { region: "eu", name: "pg-eu" });
    // The fault fired once: pg-eu's next demotion publishes its token (switchover() asserts it).
    await switchover("fault spent", { region: "eu", name: "pg-eu" }, { region: "us", name: "pg-us" });
  });

  it("switches over an archive-only pair, then fails back over without a token", async () => {
    await createPair("pg-eu2", "pg-us2", false);
    expect((await instanceOf("us", "pg-us2").probe()).walReceiverUp).toBe(false);
    await createRowsTable(instanceOf("eu", "pg-eu2").connection);
    await switchover("archive only", { region: "eu", name: "pg-eu2" }, { region: "us", name: "pg-us2" });

    // Unplanned failover: pg-eu2 (now a replica) is promoted at once, no token, no check.
    const t0 = Date.now();
    await patch("eu", "pg-eu2", { spec: { replica: { primary: "pg-eu2", promotionToken: null } } });
    const c = await waitCluster("eu", "pg-eu2", "promoted without a token", (k) => healthy(k) && (k.status?.timelineID ?? 0) === 3);
    expect(await inRecovery(instanceOf("eu", "pg-eu2"))).toBe(false);
    expect(c.status?.lastPromotionToken).toBeUndefined();
    timings.push(`[failover without token] patch → healthy primary on timeline 3: ${Date.now() - t0} ms`);
  });

  it("never demotes a primary that crashed and was fenced before it restarted: no token, switch in progress, still fenced", async () => {
    await createPair("pg-eu3", "pg-us3", true);
    const eu = instanceOf("eu", "pg-eu3");
    // Region lost (SIGKILL, held); when it returns pgfed fences the Cluster before the instance restarts.
    await operator("eu").killInstance(NS, "pg-eu3");
    await patch("eu", "pg-eu3", { metadata: { annotations: { [FENCE]: '["*"]' } } });
    await operator("eu").restartInstance(NS, "pg-eu3");
    const before = await waitCluster("eu", "pg-eu3", "fenced and down", (c) => c.status?.phaseReason === "Instance pg-eu3-1 is fenced");
    await patch("eu", "pg-eu3", { spec: { replica: { primary: "pg-us3", source: "pg-us3", promotionToken: null } } });
    const stuck = await waitCluster("eu", "pg-eu3", "designated primary transition done", (c) => condition(c, CONDITIONS.designatedPrimaryTransition)?.status === "True");
    expect(condition(stuck, CONDITIONS.designatedPrimaryTransition)).toMatchObject({ reason: "TransitionCompleted", message: "Instance Manager has completed the DesignatedPrimary transition" });
    expect(condition(stuck, CONDITIONS.replicaClusterFencing)).toMatchObject({ status: "True", reason: "ReplicaClusterAfterCreation" });

    // Several retries later (every 300 ms here, 10 s in CNPG): still no token, and never will be.
    await new Promise((r) => setTimeout(r, 2_000));
    const later = await getCluster("eu", "pg-eu3");
    expect(later.status?.demotionToken).toBeUndefined();
    expect(later.status?.switchReplicaClusterStatus?.inProgress).toBe(true);
    expect(condition(later, CONDITIONS.replicaClusterSwitch)).toMatchObject({ status: "False", reason: "ReplicaEnabledSetTrue", message: "Starting the Replica cluster transition" });
    expect(later.metadata.annotations?.[FENCE]).toBe('["*"]');
    expect({ phase: later.status?.phase, reason: later.status?.phaseReason }).toEqual({ phase: before.status?.phase, reason: before.status?.phaseReason });
    // A fenced instance never starts Postgres, so the crashed data directory is never recovered.
    expect(eu.running).toBe(false);
    expect(await acceptsTcp(eu.port)).toBe(false);
    expect(databaseClusterState(await eu.controlData())).toBe("in production");
    expect((await readdir(eu.archiveDir)).filter((f) => f.endsWith(".partial"))).toEqual([]);
  });

  it("puts a bad object in a phase with a reason and keeps running", async () => {
    // Admission would refuse these; objects stored behind its back (an older CRD, a bug) must not crash the operator.
    const store = h.servers.get("eu")?.store;
    if (!store) throw new Error("no eu server");
    store.create("clusters", { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata: { name: "bad", namespace: NS }, spec: { instances: "three" } }, { skipAdmission: true });
    const raw = await waitFor("bad to get a phase", async () => {
      const o: unknown = await api("eu").getNamespacedCustomObject({ group: "postgresql.cnpg.io", version: "v1", namespace: NS, plural: "clusters", name: "bad" });
      const status = (o as { status?: { phase?: string; phaseReason?: string } }).status;
      return status?.phase ? status : undefined;
    });
    expect(raw.phase).toBe(PHASES.unrecoverable);
    expect(raw.phaseReason).toMatch(/spec\.instances/);
    store.create("clusters", { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata: { name: "badparam", namespace: NS }, spec: { postgresql: { parameters: { "x;y": "1" } } } }, { skipAdmission: true });
    const bp = await waitCluster("eu", "badparam", "phase set", (k) => k.status?.phase !== undefined);
    expect(bp.status?.phase).toBe(PHASES.unrecoverable);
    expect(bp.status?.phaseReason).toMatch(/not a simple identifier/);
    await waitCluster("eu", "pg-eu", "still healthy", healthy);
  });
});
