/**
 * Refused requests (401, 403, 429): the failed-authentication lockout per client address, one
 * warn line per refusal in one shape (never the token), and the counters.
 */
import { request } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { AuthRateLimitOptions } from "../../../src/api/auth.js";
import { createLogger } from "../../../src/log.js";
import { OPERATOR_TOKEN, startHarness, VIEWER_TOKEN, type Harness } from "./helpers.js";

const WRONG = "d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5";

interface Refusal {
  level: number;
  msg: string;
  event: string;
  component: string;
  method: string;
  route: string;
  federation?: string;
  client: string;
  status: number;
  reason: string;
  tokenName?: string;
  lockedOutForSeconds?: number;
}

let h: Harness | undefined;
let lines: string[] = [];

async function start(limit: AuthRateLimitOptions): Promise<Harness> {
  lines = [];
  const log = createLogger({ level: "info", pretty: false, destination: { write: (s: string) => void lines.push(s) } });
  h = await startHarness({}, { authRateLimit: limit, log });
  return h;
}

afterEach(async () => {
  await h?.close();
  h = undefined;
});

const refusals = (): Refusal[] => lines.map((l) => JSON.parse(l) as Refusal).filter((l) => l.event === "api.refused");

/** A GET from another loopback address (127.0.0.2): another client to the server. */
function getFrom(localAddress: string, url: string, path: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { localAddress, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

async function metric(hh: Harness, name: string): Promise<number> {
  const text = (await hh.call("GET", "/metrics", { token: null })).text;
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

describe("refused requests are logged once each, in one shape, without the token", () => {
  it("logs a missing, a malformed and an unknown token (401) and a viewer's mutation (403)", async () => {
    const hh = await start({ maxFailures: 100 });
    expect((await hh.call("GET", "/v1/federations/orders", { token: null })).status).toBe(401);
    expect((await hh.call("GET", "/v1/federations", { token: null, headers: { authorization: `Basic ${WRONG}` } })).status).toBe(401);
    expect((await hh.call("GET", "/v1/operations/op-1", { token: WRONG })).status).toBe(401);
    expect((await hh.call("POST", "/v1/federations/orders/pause", { token: VIEWER_TOKEN, body: {} })).status).toBe(403);
    expect((await hh.call("GET", "/v1/federations/orders", { token: OPERATOR_TOKEN })).status).toBe(200);

    const r = refusals();
    expect(r.map((x) => [x.status, x.reason])).toEqual([
      [401, "missing_token"],
      [401, "malformed_header"],
      [401, "unknown_token"],
      [403, "insufficient_role"],
    ]);
    expect(r.map((x) => x.msg)).toEqual([
      "refused GET /v1/federations/:name from 127.0.0.1: 401 missing_token",
      "refused GET /v1/federations from 127.0.0.1: 401 malformed_header",
      "refused GET /v1/operations/:id from 127.0.0.1: 401 unknown_token",
      'refused POST /v1/federations/:name/pause from 127.0.0.1: 403 insufficient_role (token "victor")',
    ]);
    for (const x of r) expect(x).toMatchObject({ level: 40, component: "api", client: "127.0.0.1" });
    expect(r[0]?.federation).toBe("orders");
    expect(r[2]?.federation).toBeUndefined();
    expect(r[3]).toMatchObject({ method: "POST", route: "/v1/federations/:name/pause", federation: "orders", tokenName: "victor" });
    expect(r[2]?.tokenName).toBeUndefined();
    const all = lines.join("");
    for (const t of [WRONG, VIEWER_TOKEN, OPERATOR_TOKEN]) expect(all).not.toContain(t);
  });

  it("counts every refusal by reason, and each 429", async () => {
    const hh = await start({ maxFailures: 2, windowMs: 60_000 });
    expect(await metric(hh, 'pgfed_api_auth_failures_total{reason="unknown_token"}')).toBe(0);
    await hh.call("GET", "/v1/federations", { token: null });
    await hh.call("POST", "/v1/federations/orders/pause", { token: VIEWER_TOKEN, body: {} });
    await hh.call("GET", "/v1/federations", { token: WRONG });
    await hh.call("GET", "/v1/federations", { token: WRONG });
    for (let i = 0; i < 3; i++) expect((await hh.call("GET", "/v1/federations", { token: OPERATOR_TOKEN })).status).toBe(429);
    expect(await metric(hh, 'pgfed_api_auth_failures_total{reason="missing_token"}')).toBe(1);
    expect(await metric(hh, 'pgfed_api_auth_failures_total{reason="insufficient_role"}')).toBe(1);
    expect(await metric(hh, 'pgfed_api_auth_failures_total{reason="unknown_token"}')).toBe(2);
    expect(await metric(hh, 'pgfed_api_auth_failures_total{reason="malformed_header"}')).toBe(0);
    expect(await metric(hh, "pgfed_api_auth_rate_limited_total")).toBe(3);
    expect(refusals().length).toBe(7);
  });
});

describe("the failed-authentication lockout", () => {
  it("answers 429 with Retry-After after 10 failures within 60 s by default, even to the right token", async () => {
    const hh = await start({});
    for (let i = 0; i < 10; i++) expect((await hh.call("GET", "/v1/federations", { token: `${WRONG}${i}` })).status).toBe(401);
    const r = await hh.call("GET", "/v1/federations", { token: OPERATOR_TOKEN });
    expect(r.status).toBe(429);
    expect(r.body).toMatchObject({ kind: "Status", code: 429, reason: "TooManyRequests", field: "Authorization" });
    expect(r.body.message).toMatch(/^too many failed authentications from 127\.0\.0\.1; try again in 60 s$/);
    expect(r.headers.get("retry-after")).toBe("60");
    const last = refusals().slice(-2);
    expect(last[0]?.msg).toBe("refused GET /v1/federations from 127.0.0.1: 401 unknown_token; 10 failures within 60 s: locked out for 60 s");
    expect(last[0]?.lockedOutForSeconds).toBe(60);
    // The right token is named in the log line (the operator sees who is locked out), never shown.
    expect(last[1]?.msg).toBe('refused GET /v1/federations from 127.0.0.1: 429 rate_limited (token "alice")');
  });

  it("locks out only that address, leaves the public routes open, and lets it in again once the window passed", async () => {
    const hh = await start({ maxFailures: 3, windowMs: 1_000 });
    for (let i = 0; i < 3; i++) await hh.call("GET", "/v1/federations", { token: WRONG });
    expect((await hh.call("GET", "/v1/federations", { token: OPERATOR_TOKEN })).status).toBe(429);
    expect((await hh.call("POST", "/v1/federations/orders/pause?dryRun=true", { token: OPERATOR_TOKEN, body: {} })).status).toBe(429);
    expect((await hh.call("GET", "/v1/federations", { token: null })).status).toBe(429);
    expect((await hh.call("GET", "/healthz", { token: null })).status).toBe(200);
    expect((await hh.call("GET", "/metrics", { token: null })).status).toBe(200);
    expect(await getFrom("127.0.0.2", hh.api.url, "/v1/federations", OPERATOR_TOKEN)).toBe(200);
    await sleep(1_050);
    expect((await hh.call("GET", "/v1/federations", { token: OPERATOR_TOKEN })).status).toBe(200);
    // A fresh count: two more failures do not lock it out again.
    for (let i = 0; i < 2; i++) expect((await hh.call("GET", "/v1/federations", { token: WRONG })).status).toBe(401);
    expect((await hh.call("GET", "/v1/federations", { token: VIEWER_TOKEN })).status).toBe(200);
  });

  it("does not count successful requests, nor requests without a token, towards the lockout", async () => {
    const hh = await start({ maxFailures: 3, windowMs: 60_000 });
    for (let round = 0; round < 5; round++) {
      expect((await hh.call("GET", "/v1/federations", { token: VIEWER_TOKEN })).status).toBe(200);
      expect((await hh.call("GET", "/v1/federations", { token: null })).status).toBe(401);
    }
    expect((await hh.call("GET", "/v1/federations", { token: WRONG })).status).toBe(401);
    expect((await hh.call("GET", "/v1/federations", { token: WRONG })).status).toBe(401);
    for (let i = 0; i < 20; i++) expect((await hh.call("GET", "/v1/federations", { token: OPERATOR_TOKEN })).status).toBe(200);
    // A success does not forgive earlier failures: the third one locks the address out.
    expect((await hh.call("GET", "/v1/federations", { token: WRONG })).status).toBe(401);
    expect((await hh.call("GET", "/v1/federations", { token: OPERATOR_TOKEN })).status).toBe(429);
  });
});
