import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { isAlive, PID_REGISTRY_ENV, spawnManaged, sweepPidRegistry, waitFor } from "../../../src/lab/proc.js";

const dir = mkdtempSync(join(tmpdir(), "pgfed-reg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("PID registry", () => {
  it("records started servers and the sweep stops only those still running the same command", async () => {
    const file = join(dir, "pids.jsonl");
    const saved = process.env[PID_REGISTRY_ENV];
    process.env[PID_REGISTRY_ENV] = file;
    const child = spawnManaged("sleep", ["300"], { name: "sleeper" });
    process.env[PID_REGISTRY_ENV] = saved;
    await waitFor("the registry line", () => readFileSync(file, "utf8").includes(`"pid":${child.pid}`), 5_000);
    // A record whose command line no longer matches (a reused PID) must be left alone.
    writeFileSync(file, `${readFileSync(file, "utf8")}${JSON.stringify({ pid: process.pid, cmdline: "not-this-process" })}\n`);

    expect(sweepPidRegistry(file)).toBe(1);
    await waitFor("the sleeper to die", () => !isAlive(child.pid), 5_000);
    expect(isAlive(process.pid)).toBe(true);
    expect(sweepPidRegistry(file)).toBe(0);
  });
});
