/**
 * `npm run test:chaos`: chaos runs until the time is up (default 30 min), each with a new seed
 * unless `--seed N` replays one. Prints each run's lines, a summary table at the end, and writes
 * every report as JSON to chaos-results/. Exit 1 when any invariant failed.
 *
 *   npm run test:chaos                      about 30 minutes of new seeds
 *   npm run test:chaos -- --seed 1234       replay one run (same topology, choices and delays)
 *   npm run test:chaos -- --minutes 10 --episodes 8 --regions 3
 */
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { silentLogger } from "../../src/log.js";
import { stopOnSignals } from "../../src/lab/proc.js";
import { runChaos, type ChaosReport } from "./chaos.js";
import { summaryTable } from "./summary.js";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    minutes: { type: "string", default: "30" },
    episodes: { type: "string", default: "10" },
    regions: { type: "string" },
    out: { type: "string", default: "chaos-results" },
  },
});
const fixedSeed = values.seed !== undefined ? Number(values.seed) : undefined;
if (fixedSeed !== undefined && !Number.isInteger(fixedSeed)) throw new Error(`--seed must be an integer, not "${values.seed}"`);
const regions = values.regions === undefined ? undefined : Number(values.regions);
if (regions !== undefined && regions !== 2 && regions !== 3) throw new Error(`--regions must be 2 or 3, not "${values.regions}"`);
const budgetMs = Number(values.minutes) * 60_000;
const episodes = Number(values.episodes);

const reports: ChaosReport[] = [];
const t0 = Date.now();
let dir: string | undefined;
// Ctrl-C: every process the run started is stopped by PID (src/lab/proc.ts); the directory stays for a look.
stopOnSignals(async () => {
  if (dir) console.log(`interrupted; the run's directory stays for inspection: ${dir}`);
});
await mkdir(values.out, { recursive: true });
do {
  const seed = fixedSeed ?? Math.floor(Math.random() * 2 ** 31);
  console.log(`chaos run with seed ${seed} (replay: npm run test:chaos -- --seed ${seed})`);
  dir = await mkdtemp(join(tmpdir(), `pgfed-chaos-${seed}-`));
  await chmod(dir, 0o755);
  const left = budgetMs - (Date.now() - t0);
  const report = await runChaos({ seed, dir, log: silentLogger(), episodes, budgetMs: fixedSeed !== undefined ? undefined : Math.max(60_000, left - 120_000), ...(regions ? { regions } : {}), onLine: (l) => console.log(l) });
  reports.push(report);
  await writeFile(join(values.out, `seed-${seed}.json`), `${JSON.stringify(report, null, 2)}\n`);
  if (report.violations.length === 0) await rm(dir, { recursive: true, force: true });
  else console.log(`kept the run's directory for inspection: ${dir}`);
  for (const v of report.violations) console.log(`seed ${seed}: invariant ${v.invariant} at ${v.step}: ${v.detail}\n  last audit:\n    ${v.lastAudit.join("\n    ")}`);
} while (fixedSeed === undefined && Date.now() - t0 < budgetMs - 240_000);
console.log(summaryTable(reports));
await writeFile(join(values.out, "summary.json"), `${JSON.stringify(reports.map(({ episodes: _e, ...r }) => r), null, 2)}\n`);
process.exit(reports.some((r) => r.violations.length > 0) ? 1 : 0);
