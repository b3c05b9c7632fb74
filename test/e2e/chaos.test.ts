/**
 * The short chaos run of `npm test` and CI: fixed seeds, so a landing is reproducible (replay one
 * with `npm run test:chaos -- --seed N`). One three-region and one two-region run; each prints its
 * lines and the summary table, and fails on any invariant (test/chaos/invariants.ts) with the
 * seed, the step and the last audit lines. The long run (`npm run test:chaos`) draws new seeds.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runChaos } from "../chaos/chaos.js";
import { summaryTable } from "../chaos/summary.js";
import { testLogger } from "./fixture.js";

const RUNS = [
  { seed: 20261204, regions: 3 as const, streaming: true, episodes: 6 },
  { seed: 1337, regions: 2 as const, streaming: false, episodes: 4 },
];

describe("chaos, short run (fixed seeds)", () => {
  for (const run of RUNS) {
    it(`seed ${run.seed}: ${run.regions} regions, ${run.streaming ? "streaming" : "archive-only"}, ${run.episodes} episodes keep every invariant`, async () => {
      const dir = await mkdtemp(join(tmpdir(), `pgfed-chaos-${run.seed}-`));
      await chmod(dir, 0o755);
      const lines: string[] = [];
      try {
        const report = await runChaos({ ...run, dir, log: testLogger(), onLine: (l) => lines.push(l) });
        console.log([...lines, summaryTable([report])].join("\n"));
        const failures = report.violations.map((v) => `seed ${run.seed}: invariant ${v.invariant} at ${v.step}: ${v.detail}\n  last audit:\n    ${v.lastAudit.join("\n    ")}`);
        expect(failures).toEqual([]);
        expect(report.episodes.length).toBe(run.episodes);
        expect(report.rows.acknowledged).toBeGreaterThan(100);
      } catch (e) {
        console.log(lines.join("\n"));
        throw e;
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }, 300_000);
  }
});
