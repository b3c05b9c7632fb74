/**
 * Rule 6 also on failure: a test worker killed on a timeout never runs its exit handlers, so every
 * server the tests start is recorded in a PID registry (src/lab/proc.ts) and whatever is still
 * running at the end of the run is stopped here, by PID, and reported.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PID_REGISTRY_ENV, sweepPidRegistry } from "../src/lab/proc.js";

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), "pgfed-pids-"));
  const file = join(dir, "pids.jsonl");
  process.env[PID_REGISTRY_ENV] = file;
  return () => {
    const swept = sweepPidRegistry(file);
    if (swept > 0) console.warn(`global teardown: stopped ${swept} server process(es) a failed test left running`);
    rmSync(dir, { recursive: true, force: true });
  };
}
