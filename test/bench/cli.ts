/**
 * How long the `pgfed` command takes to answer, against a bare Node start in the same run.
 *
 * Each command is spawned the way a user runs it (`node bin/pgfed.js …`, the installed bin) on the
 * Node that runs the benchmark, RUNS times after one warm-up run (which fills tsx's compile cache,
 * as any second use of the CLI finds it); the figures are medians and the ratio to `node -e 0`.
 */
import { spawnSync } from "node:child_process";
import { performance } from "node:perf_hooks";
import { percentile } from "../integration/wal/fixtures.js";
import type { BenchCase, Figure } from "./run.js";

const RUNS = 7;

function medianMs(args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const started = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, PGFED_LOG_LEVEL: "error" } });
    const ms = performance.now() - started;
    if (r.status !== 0) throw new Error(`node ${args.join(" ")} exited ${String(r.status)}: ${r.stderr.toString().slice(0, 300)}`);
    if (i > 0) times.push(ms);
  }
  return percentile(times, 50);
}

export const cliBench: BenchCase = {
  name: "cli",
  description: `CLI start: median of ${RUNS} runs (after one warm-up) of \`node bin/pgfed.js version\` and \`help\`, against \`node -e 0\``,
  run(log) {
    log(`Node ${process.version}`);
    const bare = medianMs(["-e", "0"]);
    const version = medianMs(["bin/pgfed.js", "version"]);
    const help = medianMs(["bin/pgfed.js", "--help"]);
    const figures: Figure[] = [
      { name: "node -e 0", value: bare, unit: "ms", note: process.version },
      { name: "pgfed version", value: version, unit: "ms", note: `${(version / bare).toFixed(1)}× node` },
      { name: "pgfed --help", value: help, unit: "ms", note: `${(help / bare).toFixed(1)}× node` },
    ];
    return Promise.resolve(figures);
  },
};
