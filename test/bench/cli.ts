/**
 * How long pgfed takes to answer, against a bare Node start in the same run (issue 17's targets:
 * `pgfed version` ≤ 2× `node -e 0`, `pgfed status demo` against the lab ≤ 3×, a coordinator
 * process from start to leader with its API serving ≤ 1 s).
 *
 * Each command is spawned the way a user runs it (`node bin/pgfed.js …`, the installed bin, which
 * runs the compiled dist/) on the Node that runs the benchmark, RUNS times after one warm-up run;
 * the figures are medians and the ratio to `node -e 0`. `status demo` asks the API of a 2-region
 * `pgfed lab` running in its own process. The coordinator figure spawns `pgfed run --roles
 * coordinator` on the lab's config (after the lab's own coordinator stored the federation and
 * stopped) and polls GET /v1/federations/demo every 5 ms until it answers
 * 200: the process is the leader and its API serves.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { tokenLine } from "../../src/api/auth.js";
import { labControlPlane } from "../../src/cli/lab-plane.js";
import { labConfigDocument, startLab, type Lab } from "../../src/lab/lab.js";
import { freePort, signalTree, spawnManaged, waitFor } from "../../src/lab/proc.js";
import { LAB_FEDERATION } from "../../src/lab/lab.js";
import { silentLogger } from "../../src/log.js";
import { percentile } from "../integration/wal/fixtures.js";
import type { BenchCase, Figure } from "./run.js";

const RUNS = 9;
const COORDINATOR_RUNS = 5;

/** One run of `node args…`: its wall time. Asynchronous: the lab's API answers from this process. */
function timeOnce(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PGFED_LOG_LEVEL: "error", ...env } });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => {
      const ms = performance.now() - started;
      if (code === 0) resolve(ms);
      else reject(new Error(`node ${args.join(" ")} exited ${String(code)}: ${stderr.slice(0, 300)}`));
    });
  });
}

async function medianMs(args: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const ms = await timeOnce(args, env);
    if (i > 0) times.push(ms);
  }
  return percentile(times, 50);
}

/** Start of `pgfed run --roles coordinator` to the first 200 from its API for the lab's federation. */
async function coordinatorStartMs(lab: Lab, dir: string): Promise<number> {
  const token = "bench-token-0123456789abcdef0123456789abcdef";
  const tokens = join(dir, "tokens");
  await writeFile(tokens, `${tokenLine("bench", "operator", token)}\n`);
  const config = join(dir, "pgfed.json");
  await writeFile(config, JSON.stringify({ ...labConfigDocument(lab), api: { listen: "127.0.0.1:0", tokensFrom: tokens } }));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/v1/federations/${LAB_FEDERATION}`;
  const started = performance.now();
  const child = spawn(process.execPath, ["bin/pgfed.js", "run", "--config", config, "--roles", "coordinator", "--api-listen", `127.0.0.1:${port}`], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, PGFED_LOG_LEVEL: "error" },
  });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once("close", () => r()));
  try {
    for (;;) {
      const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, redirect: "manual" }).catch(() => undefined);
      if (res?.status === 200) return performance.now() - started;
      if (child.exitCode !== null) throw new Error(`pgfed run exited ${child.exitCode}: ${stderr.slice(-500)}`);
      if (performance.now() - started > 30_000) throw new Error(`no leader with its API serving after 30 s: ${stderr.slice(-500)}`);
      await sleep(5);
    }
  } finally {
    // SIGTERM: the coordinator releases its lease on the way out, so the next run starts clean.
    if (child.pid !== undefined && child.exitCode === null) child.kill("SIGTERM");
    await Promise.race([exited, sleep(25_000)]);
    if (child.pid !== undefined && child.exitCode === null) signalTree(child.pid, "SIGKILL");
  }
}

export const cliBench: BenchCase = {
  name: "cli",
  description: `CLI and coordinator start: medians of ${RUNS} runs (after one warm-up) of \`node bin/pgfed.js\` version, --help and \`status demo\` against a 2-region lab, against \`node -e 0\`; ${COORDINATOR_RUNS} coordinator processes from start to leader with the API serving`,
  async run(log) {
    log(`Node ${process.version}`);
    const built = spawnSync(process.execPath, ["scripts/build.js", "--if-changed"], { stdio: "inherit" });
    if (built.status !== 0) throw new Error("scripts/build.js failed");
    const bare = await medianMs(["-e", "0"]);
    const version = await medianMs(["bin/pgfed.js", "version"]);
    const help = await medianMs(["bin/pgfed.js", "--help"]);
    const figures: Figure[] = [
      { name: "node -e 0", value: bare, unit: "ms", note: process.version },
      { name: "pgfed version", value: version, unit: "ms", note: `${(version / bare).toFixed(2)}× node (target ≤ 2×)` },
      { name: "pgfed --help", value: help, unit: "ms", note: `${(help / bare).toFixed(2)}× node` },
    ];

    const dir = await mkdtemp(join(tmpdir(), "pgfed-bench-cli-"));
    await chmod(dir, 0o755); // Postgres runs as the postgres user
    try {
      // `pgfed status demo` against a lab in its own process, as a user runs them.
      log("starting `pgfed lab` (2 regions) in its own process");
      const labDir = join(dir, "lab-process");
      const labProc = spawnManaged(process.execPath, ["bin/pgfed.js", "lab", "--dir", labDir], { name: "bench-lab", logFile: join(dir, "lab-process.log") });
      try {
        const info = await waitFor(
          "the lab's API in lab.json",
          async () => {
            const text = await readFile(join(labDir, "lab.json"), "utf8").catch(() => "");
            const extra = text ? (JSON.parse(text) as { extra?: { api?: string; token?: string } }).extra : undefined;
            return extra?.api && extra.token ? { api: extra.api, token: extra.token } : undefined;
          },
          120_000,
          100,
        );
        const env = { PGFED_SERVER: info.api, PGFED_TOKEN: info.token };
        const status = await medianMs(["bin/pgfed.js", "status", LAB_FEDERATION], env);
        const statusJson = await medianMs(["bin/pgfed.js", "status", LAB_FEDERATION, "-o", "json"], env);
        const bareAgain = await medianMs(["-e", "0"]);
        figures.push(
          { name: "pgfed status demo", value: status, unit: "ms", note: `${(status / bareAgain).toFixed(2)}× node -e 0 (${bareAgain.toFixed(0)} ms meanwhile; target ≤ 3×)` },
          { name: "pgfed status demo -o json", value: statusJson, unit: "ms", note: `${(statusJson / bareAgain).toFixed(2)}× node` },
        );
      } finally {
        await labProc.stop("SIGINT", 30_000);
      }

      log("starting a 2-region lab in this process for the coordinator runs");
      const lab = await startLab({ dir: join(dir, "lab"), regions: 2, log: silentLogger() });
      try {
        // The lab's own coordinator stores the federation in KV and releases its lease on stop: each
        // process below is a coordinator restarted after a crash, loading that state (a federation
        // never seen before waits one lease TTL for its members' first reports instead).
        const plane = await labControlPlane(lab, { out: () => undefined, err: () => undefined });
        await plane.stop();
        const starts: number[] = [];
        for (let i = 0; i < COORDINATOR_RUNS; i++) {
          starts.push(await coordinatorStartMs(lab, dir));
          log(`coordinator run ${i + 1}: leader with its API serving after ${starts.at(-1)?.toFixed(0)} ms`);
        }
        const median = percentile(starts, 50);
        figures.push({ name: "coordinator start → leader + API", value: median, unit: "ms", note: `median of ${COORDINATOR_RUNS}, max ${Math.max(...starts).toFixed(0)} ms; 1 federation (target ≤ 1000 ms)` });
      } finally {
        await lab.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return figures;
  },
};
