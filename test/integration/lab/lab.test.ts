/**
 * The lab as a user meets it: started, looked at with kubectl and psql, a region killed and
 * restored, stopped — and nothing left running, also after the lab process itself was SIGKILLed.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { callLab, type LabInfo } from "../../../src/lab/control.js";
import { LAB_NAMESPACE, startLab, type Lab } from "../../../src/lab/lab.js";
import { descendants, isAlive, run, waitFor } from "../../../src/lab/proc.js";

const dirs: string[] = [];
let lab: Lab | undefined;

afterAll(async () => {
  await lab?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function writable(psql: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: psql, connectionTimeoutMillis: 1_000 });
  try {
    await c.connect();
    const r = await c.query<{ r: boolean }>("select pg_is_in_recovery() as r");
    return r.rows[0]?.r === false;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

describe("pgfed lab", () => {
  it("starts two regions that kubectl and psql can use, survives kill/restore of a region, and stops everything", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgfed-lab-"));
    dirs.push(dir);
    const t0 = Date.now();
    const steps: string[] = [];
    lab = await startLab({ dir, regions: 2, onProgress: (l) => steps.push(l) });
    console.log(`lab ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (${steps.length} steps)`);
    expect(steps[0]).toMatch(/NATS/);

    const { stdout } = await run("kubectl", ["--kubeconfig", lab.kubeconfigPath, "--context", "us-east", "get", "clusters.postgresql.cnpg.io", "-n", LAB_NAMESPACE, "-o", "json"]);
    const list = JSON.parse(stdout) as { items: { metadata: { name: string }; status: { phase: string } }[] };
    expect(list.items.map((i) => [i.metadata.name, i.status.phase])).toEqual([["pg-us", "Cluster in healthy state"]]);
    expect(await writable(lab.psql("pg-eu"))).toBe(true);
    expect(await writable(lab.psql("pg-us"))).toBe(false);

    const euPid = lab.regionOfMember("pg-eu").operator.instance(LAB_NAMESPACE, "pg-eu")?.pid;
    expect(euPid).toBeDefined();
    const children = descendants(euPid as number);
    await lab.killRegion("eu-west");
    expect([euPid as number, ...children].filter(isAlive)).toEqual([]);
    expect(lab.nats.pids).toHaveLength(1); // one NATS server for the whole lab (natsCluster: false)
    await expect(run("kubectl", ["--kubeconfig", lab.kubeconfigPath, "--context", "eu-west", "get", "clusters.postgresql.cnpg.io", "-n", LAB_NAMESPACE], { timeoutMs: 20_000 })).rejects.toThrow();
    expect((await lab.status()).find((m) => m.member === "pg-eu")).toMatchObject({ running: false, condition: "killed" });

    await lab.restoreRegion("eu-west");
    await waitFor("pg-eu writable again", () => writable(lab?.psql("pg-eu") ?? ""), 30_000, 200);

    expect(lab.nats.pids).toHaveLength(1);
    const pids = [...lab.nats.pids, ...[...lab.regions.values()].map((r) => r.operator.instance(LAB_NAMESPACE, r.member.cluster)?.pid ?? 0)];
    await lab.stop();
    lab = undefined;
    expect(pids.filter(isAlive)).toEqual([]);
    expect(existsSync(join(dir, "lab.pid"))).toBe(false);
  });

  it("cleans up after a lab process that was SIGKILLed, and answers its control commands while it runs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgfed-lab-"));
    dirs.push(dir);
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "lab", "--dir", dir], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PGFED_LOG_LEVEL: "error" } });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    try {
      await waitFor("the lab to be ready", () => existsSync(join(dir, "lab.json")), 90_000, 200);
      const status = (await callLab(dir, "status")) as { members: { member: string; role: string }[] };
      expect(status.members.map((m) => [m.member, m.role])).toEqual([
        ["pg-eu", "primary"],
        ["pg-us", "replica"],
      ]);
      const info = JSON.parse(readFileSync(join(dir, "lab.json"), "utf8")) as LabInfo;
      expect(info.members.map((m) => m.member)).toEqual(["pg-eu", "pg-us"]);
    } finally {
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    }
    const rec = JSON.parse(readFileSync(join(dir, "lab.pid"), "utf8")) as { pids: number[] };
    const orphans = rec.pids.filter(isAlive);
    expect(orphans.length).toBeGreaterThan(0);

    lab = await startLab({ dir, regions: 2 });
    expect(orphans.filter(isAlive)).toEqual([]);
    await lab.stop();
    lab = undefined;
    expect(out).toContain("ready in");
  });
});
