/**
 * Rule 6 also on failure: a test worker killed on a timeout never runs its exit handlers, so every
 * server the tests start is recorded in a PID registry (src/lab/proc.ts) and whatever is still
 * running at the end of the run is stopped here, by PID, and reported. It also brings the
 * compiled CLI (dist/) up to date first.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PID_REGISTRY_ENV, sweepPidRegistry } from "../src/lab/proc.js";

export default function setup(): () => void {
  // Tests that spawn `node bin/pgfed.js` run the compiled dist/: rebuild it when a source changed,
  // also when vitest runs without `npm test`'s setup (a single file during development).
  const built = spawnSync(process.execPath, ["scripts/build.js", "--if-changed"], { stdio: "inherit" });
  if (built.status !== 0) throw new Error("scripts/build.js failed: the compiled CLI in dist/ is not current");
  const dir = mkdtempSync(join(tmpdir(), "pgfed-pids-"));
  const file = join(dir, "pids.jsonl");
  process.env[PID_REGISTRY_ENV] = file;
  return () => {
    const swept = sweepPidRegistry(file);
    if (swept > 0) console.warn(`global teardown: stopped ${swept} server process(es) a failed test left running`);
    rmSync(dir, { recursive: true, force: true });
  };
}
