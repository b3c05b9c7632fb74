/**
 * run() hands back a child's whole output. It resolves on "close" (all pipes drained), not on
 * "exit", which Node can emit while output is still in the pipe: pg_controldata's output once
 * arrived empty that way in CI, and its fields were "missing".
 */
import { describe, expect, it } from "vitest";
import { run } from "../../../src/lab/proc.js";

describe("run()", () => {
  it("returns every byte a child wrote before it exited, also when the child exits at once", async () => {
    // A short output written by a process that exits right after (as pg_controldata does), many
    // times concurrently so that exits and reads interleave; and one far larger than a pipe holds.
    const short = await Promise.all(Array.from({ length: 200 }, () => run("sh", ["-c", "head -c 3000 /dev/zero | tr '\\0' x; exec true"])));
    expect(short.map((r) => r.stdout.length).filter((n) => n !== 3000)).toEqual([]);
    const script = "process.stdout.write('o'.repeat(4_000_000)); process.stderr.write('e'.repeat(1_000_000));";
    const big = await run(process.execPath, ["-e", script]);
    expect([big.stdout.length, big.stderr.length]).toEqual([4_000_000, 1_000_000]);
  });
});
