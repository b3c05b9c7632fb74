import { describe, expect, it, vi } from "vitest";

// Wraps node:crypto's timingSafeEqual to see how tokens are compared (the behaviour is unchanged).
const compared = vi.hoisted(() => ({ calls: [] as [number, number][] }));
vi.mock("node:crypto", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:crypto")>();
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      compared.calls.push([a.byteLength, b.byteLength]);
      return real.timingSafeEqual(a, b);
    },
  };
});

const { authenticate, clientKey, FailedAuthLimiter, hashToken, parseTokenFile, tokenLine } = await import("../../../src/api/auth.js");

const RIGHT = "3f5e0c2a9b7d4e61a8c0f2b4d6e8a0c1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3";
const TOKENS = parseTokenFile([tokenLine("alice", "operator", RIGHT), tokenLine("victor", "viewer", "viewer-token-2"), tokenLine("grafana", "viewer", "viewer-token-3")].join("\n"));

describe("tokens are stored hashed", () => {
  it("writes a token-file line that holds the SHA-256 of the token, never the token", () => {
    const line = tokenLine("alice", "operator", RIGHT);
    expect(line).toBe(`alice operator sha256:${hashToken(RIGHT).toString("hex")}`);
    expect(line).not.toContain(RIGHT);
    expect(line).not.toContain(RIGHT.slice(0, 16));
  });

  it("refuses a token file that holds a plain token instead of its hash", () => {
    expect(() => parseTokenFile(`alice operator ${RIGHT}`)).toThrow(/tokens:1: expected "<name> <viewer\|operator> sha256:<64 hex digits>"/);
    expect(() => parseTokenFile(`alice operator sha256:${"ab".repeat(31)}`)).toThrow(/tokens:1/);
  });
});

describe("tokens are compared in constant time", () => {
  it("finds the right token and compares it with every entry, 32 bytes against 32 bytes", () => {
    compared.calls = [];
    expect(authenticate(TOKENS, RIGHT)?.name).toBe("alice");
    // The match is the first entry; the others are compared all the same (no early exit).
    expect(compared.calls).toEqual([
      [32, 32],
      [32, 32],
      [32, 32],
    ]);
    expect(authenticate(TOKENS, "viewer-token-3")).toMatchObject({ name: "grafana", role: "viewer" });
  });

  const lengths = [0, 1, 31, 32, 33, 63, RIGHT.length, RIGHT.length + 1, 4096];
  for (const n of lengths) {
    it(`refuses a wrong token of ${n} characters, comparing fixed-length hashes with every entry`, () => {
      const wrong = n === RIGHT.length ? `${RIGHT.slice(0, -1)}0` : "x".repeat(n);
      compared.calls = [];
      expect(authenticate(TOKENS, wrong)).toBeUndefined();
      expect(compared.calls).toEqual(TOKENS.map(() => [32, 32]));
    });
  }

  it("refuses a prefix and an extension of the right token", () => {
    expect(authenticate(TOKENS, RIGHT.slice(0, 63))).toBeUndefined();
    expect(authenticate(TOKENS, `${RIGHT}0`)).toBeUndefined();
    expect(authenticate(TOKENS, RIGHT.toUpperCase())).toBeUndefined();
  });
});

describe("the failed-authentication lockout", () => {
  const clock = () => {
    const c = { t: 1_000_000, now: () => c.t };
    return c;
  };

  it("locks a client out for the window at its 10th failure within 60 s, and only that client", () => {
    const c = clock();
    const l = new FailedAuthLimiter({ now: c.now });
    for (let i = 1; i <= 9; i++) {
      expect(l.recordFailure("10.0.0.1")).toBe(false);
      c.t += 1_000;
    }
    expect(l.lockedForMs("10.0.0.1")).toBe(0);
    expect(l.recordFailure("10.0.0.1")).toBe(true);
    expect(l.lockedForMs("10.0.0.1")).toBe(60_000);
    expect(l.lockedForMs("10.0.0.2")).toBe(0);
    c.t += 59_999;
    expect(l.lockedForMs("10.0.0.1")).toBe(1);
    c.t += 1;
    expect(l.lockedForMs("10.0.0.1")).toBe(0);
    // The lockout starts a fresh count.
    expect(l.recordFailure("10.0.0.1")).toBe(false);
  });

  it("does not count failures older than the window", () => {
    const c = clock();
    const l = new FailedAuthLimiter({ now: c.now });
    for (let i = 0; i < 30; i++) {
      expect(l.recordFailure("10.0.0.1")).toBe(false);
      c.t += 6_667; // 9 intervals last 60.003 s: never 10 failures within 60 s
    }
    expect(l.lockedForMs("10.0.0.1")).toBe(0);
  });

  it("tracks at most maxClients clients, forgetting the one whose last failure is oldest", () => {
    const c = clock();
    const l = new FailedAuthLimiter({ now: c.now, maxFailures: 3, maxClients: 3 });
    for (let i = 0; i < 3; i++) l.recordFailure("a"); // a locked out
    expect(l.lockedForMs("a")).toBe(60_000);
    l.recordFailure("b");
    l.recordFailure("c");
    expect(l.trackedClients).toBe(3);
    l.recordFailure("b"); // b is now the newest: order a, c, b
    l.recordFailure("d");
    expect(l.trackedClients).toBe(3);
    expect(l.lockedForMs("a")).toBe(0); // forgotten
    expect(l.recordFailure("b")).toBe(true); // b kept its count
    for (let i = 0; i < 10_000; i++) l.recordFailure(`10.1.${i >> 8}.${i & 255}`);
    expect(l.trackedClients).toBe(3);
  });

  it("keys IPv4 by address (also IPv4-mapped) and IPv6 by its /64", () => {
    expect(clientKey("192.0.2.7")).toBe("192.0.2.7");
    expect(clientKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(clientKey("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8:1:2::9")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:DB8:0001:0002:ffff::1%eth0")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
    expect(clientKey(undefined)).toBe("unknown");
  });
});
