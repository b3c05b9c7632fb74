/**
 * Layer 1 of the CNPG stand-in: real Postgres instances driven directly, through the steps CNPG
 * takes in a planned switchover (CNPG.md), without any Kubernetes API in between.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { databaseClusterState, decodeToken, encodeToken, tokenFromControlData } from "../../../src/cnpg/index.js";
import { descendants, isAlive, run, waitFor } from "../../../src/lab/proc.js";
import { archiveFile, listArchive } from "../../../src/lab/cnpg/archive.js";
import { PgInstance, type WalSource } from "../../../src/lab/cnpg/instance.js";
import { checkPromotionToken, replicaControlPoint } from "../../../src/lab/cnpg/promotion.js";
import { ROWS_TABLE, createRowsTable, startRowWriter } from "../../../src/lab/cnpg/writer.js";
import { postgresDescendants, replayedTimeline, rowIds } from "../../support/postgres.js";

let labDir: string;
const instances: PgInstance[] = [];

async function open(name: string): Promise<PgInstance> {
  const inst = await PgInstance.open({ name: `db/${name}`, clusterName: name, dir: join(labDir, "r", "db", name), archiveDir: join(labDir, "r", "db", name, "archive") });
  instances.push(inst);
  return inst;
}

beforeAll(async () => {
  labDir = await mkdtemp(join(tmpdir(), "pgfed-l1-"));
  await chmod(labDir, 0o755);
});

afterAll(async () => {
  for (const i of instances) await i.stop(10_000).catch(() => i.kill());
  const left = postgresDescendants();
  await rm(labDir, { recursive: true, force: true });
  expect(left).toEqual([]);
});

describe("archive scripts", () => {
  it("archives atomically, accepts the same content again and refuses different content", async () => {
    const inst = await open("arch");
    const src = join(labDir, "seg");
    await writeFile(src, "one");
    const script = join(inst.dir, "archive-wal.sh");
    await archiveFile(script, inst.archiveDir, src, "000000010000000000000001");
    await archiveFile(script, inst.archiveDir, src, "000000010000000000000001");
    await writeFile(src, "two");
    await expect(archiveFile(script, inst.archiveDir, src, "000000010000000000000001")).rejects.toThrow(/different content/);
    expect(await listArchive(inst.archiveDir)).toEqual(["000000010000000000000001"]);
    expect(await readFile(join(inst.archiveDir, "000000010000000000000001"), "utf8")).toBe("one");
  });

  it("restores <walfile>.partial when <walfile> is absent", async () => {
    const inst = await open("arch");
    await writeFile(join(inst.archiveDir, "000000010000000000000002.partial"), "partial");
    const dst = join(labDir, "restored");
    await run(join(inst.dir, "restore-wal.sh"), [inst.archiveDir, "000000010000000000000002", dst]);
    expect(await readFile(dst, "utf8")).toBe("partial");
    await expect(run(join(inst.dir, "restore-wal.sh"), [inst.archiveDir, "000000010000000000000009", dst])).rejects.toThrow();
  });
});

describe.each([
  { mode: "archive + streaming", streaming: true },
  { mode: "archive only", streaming: false },
])("planned switchover by hand ($mode)", ({ mode, streaming }) => {
  it("demotes A with a token, promotes B only at the token's REDO point, and A follows B's new timeline", async () => {
    const suffix = streaming ? "s" : "a";
    const a = await open(`a-${suffix}`);
    const b = await open(`b-${suffix}`);
    await a.initdb();
    await a.configure({ kind: "primary" }, { archive_timeout: "1s" });
    await a.start();
    await createRowsTable(a.connection);
    const sourceA: WalSource = { archiveDir: a.archiveDir, ...(streaming ? { streaming: { ...a.connection, user: "streaming_replica" } } : {}) };
    await b.cloneFrom({ ...a.connection, user: "streaming_replica" });
    await b.configure({ kind: "replica", source: sourceA }, { archive_timeout: "1s" });
    await b.start();
    expect((await b.probe()).inRecovery).toBe(true);
    expect((await b.probe()).walReceiverUp).toBe(streaming);

    let target = a.connection;
    const writer = startRowWriter(() => target, 2);
    await waitFor("rows on A", () => writer.committedCount > 50, 20_000);

    const t0 = Date.now();
    await a.stop();
    const cd = await a.controlData();
    expect(databaseClusterState(cd)).toBe("shut down");
    const content = tokenFromControlData(cd, "pgfed-lab-1.0");
    await a.archivePartialSegment(content.redoWalFile);
    const token = decodeToken(encodeToken(content));
    const tToken = Date.now();
    expect(await listArchive(a.archiveDir)).toContain(`${content.redoWalFile}.partial`);

    // A wrong token (REDO behind B's restartpoint) is fatal; one from another system too.
    const behind = { ...token, redoLsn: 1n };
    await b.checkpoint();
    expect(checkPromotionToken(behind, replicaControlPoint(await b.controlData())).verdict).toBe("fatal");
    expect(checkPromotionToken({ ...token, systemId: "1" }, replicaControlPoint(await b.controlData())).verdict).toBe("fatal");

    const verdict = await waitFor(
      "B to replay up to the token",
      async () => {
        await b.checkpoint();
        const v = checkPromotionToken(token, replicaControlPoint(await b.controlData()));
        if (v.verdict === "fatal") throw new Error(v.reason);
        return v.verdict === "promote" ? v : undefined;
      },
      30_000,
      100,
    );
    expect(verdict.verdict).toBe("promote");
    const tReplayed = Date.now();
    await b.promote();
    target = b.connection;
    const tPromoted = Date.now();
    const probeB = await b.probe();
    expect(probeB.inRecovery).toBe(false);
    expect(probeB.timelineID).toBe(token.timeline + 1);

    const sourceB: WalSource = { archiveDir: b.archiveDir, ...(streaming ? { streaming: { ...b.connection, user: "streaming_replica" } } : {}) };
    await a.configure({ kind: "replica", source: sourceB }, { archive_timeout: "1s" });
    await a.start();
    const afterPromotion = writer.committedCount;
    await waitFor("writes on B", () => writer.committedCount > afterPromotion + 20, 10_000);
    const report = await writer.stop();
    const last = report.committed[report.committed.length - 1] ?? 0;
    await waitFor(
      "A to receive B's newest row",
      async () => (await rowIds(a)).has(last),
      30_000,
      100,
    );
    await waitFor("A to replay B's new timeline", async () => (await replayedTimeline(a)) === token.timeline + 1, 30_000, 100);
    const tFollowing = Date.now();
    const onB = await rowIds(b);
    const lost = report.committed.filter((id) => !onB.has(id));
    expect(lost).toEqual([]);
    expect((await a.probe()).inRecovery).toBe(true);
    console.log(
      `[layer 1, ${mode}] token after ${tToken - t0} ms, B replayed to token after ${tReplayed - tToken} ms, promote ${tPromoted - tReplayed} ms, ` +
        `A following after ${tFollowing - tPromoted} ms; writes unavailable at most ${report.maxGapMs} ms; ${report.committed.length} rows committed, ${report.inDoubt.length} in doubt`,
    );
    await a.stop();
    await b.stop();
  });
});

describe("disaster controls", () => {
  it("kill() SIGKILLs the postmaster and every child; start() recovers the data", async () => {
    const c = await open("k");
    await c.initdb();
    await c.configure({ kind: "primary" });
    await c.start();
    await createRowsTable(c.connection);
    await c.query(`INSERT INTO ${ROWS_TABLE} (id) VALUES (1)`);
    const pid = c.pid ?? 0;
    const children = descendants(pid);
    expect(children.length).toBeGreaterThan(3);
    await c.kill();
    expect(c.running).toBe(false);
    for (const p of [pid, ...children]) expect(isAlive(p)).toBe(false);
    await c.start();
    expect(await rowIds(c)).toEqual(new Set([1]));
    await c.stop();
  });

  it("a start that runs while a kill is finishing keeps track of the new postmaster (found by the chaos suite)", async () => {
    const c = await open("kr");
    await c.initdb();
    await c.configure({ kind: "primary" });
    await c.start();
    // A reconcile pass starting the instance again the moment the old postmaster is gone, before
    // kill() has returned (a CNPG instance restarting a crashed Postgres): the kill must not then
    // forget the new process, or a later kill (a lost region) would leave it serving.
    let restarted: Promise<void> | undefined;
    // The old process's exit, as the operator's pass sees it: registered first, so it runs before kill() resumes.
    const old = (c as unknown as { proc: { exited: Promise<unknown> } }).proc;
    void old.exited.then(() => (restarted = c.start()));
    await c.kill();
    await restarted;
    expect(restarted).toBeDefined();
    const newPid = c.pid ?? 0;
    expect(c.running).toBe(true);
    expect(isAlive(newPid)).toBe(true);
    await c.kill();
    expect(isAlive(newPid)).toBe(false);
  });
});
