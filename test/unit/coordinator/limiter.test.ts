/** The KV limiter the leader loads federations through: never more than `limit` calls at once, every call runs, errors free their slot. */
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { createLimiter } from "../../../src/coordinator/limiter.js";

describe("createLimiter", () => {
  it("runs every call with at most `limit` in flight", async () => {
    const l = createLimiter(4);
    let inFlight = 0;
    let most = 0;
    const done: number[] = [];
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        l.run(async () => {
          inFlight++;
          most = Math.max(most, inFlight);
          await sleep(1 + (i % 3));
          inFlight--;
          done.push(i);
          return i;
        }),
      ),
    );
    expect(most).toBe(4);
    expect(done.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(l.active).toBe(0);
    expect(l.waiting).toBe(0);
  });

  it("passes results and errors through and frees the slot of a failed call", async () => {
    const l = createLimiter(1);
    const failed = l.run(() => Promise.reject(new Error("kv down")));
    const next = l.run(() => Promise.resolve("after"));
    expect(l.waiting).toBe(1);
    await expect(failed).rejects.toThrow("kv down");
    await expect(next).resolves.toBe("after");
    expect(l.active).toBe(0);
  });

  it("refuses a limit that is not a positive integer", () => {
    expect(() => createLimiter(0)).toThrow(/positive integer/);
    expect(() => createLimiter(1.5)).toThrow(/positive integer/);
  });
});
