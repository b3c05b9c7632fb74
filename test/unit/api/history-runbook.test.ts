/**
 * The status page's two read routes: a federation's last hour of exposure and lag (the
 * coordinator's bounded ring, coordinator/history.ts) and its runbook as Markdown or HTML.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FederationHistory, HISTORY_POINTS, HISTORY_RESOLUTION_MS } from "../../../src/coordinator/history.js";
import { OPERATOR_TOKEN, VIEWER_TOKEN, startHarness, type Harness } from "./helpers.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

const get = (path: string, token = VIEWER_TOKEN) => fetch(`${h.api.url}${path}`, { headers: { authorization: `Bearer ${token}` } });

describe("GET /v1/federations/{name}/history", () => {
  it("answers the coordinator's history, columnar, to a read-only token", async () => {
    const res = await get("/v1/federations/orders/history");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { federation: string; resolutionSeconds: number; at: number[]; exposureSeconds: (number | null)[]; members: { name: string; lagSeconds: (number | null)[] }[] };
    expect(body.federation).toBe("orders");
    expect(body.resolutionSeconds).toBe(HISTORY_RESOLUTION_MS / 1000);
    expect(body.at.length).toBe(1);
    expect(body.exposureSeconds.length).toBe(1);
    const fed = h.fake.feds.get("orders");
    expect(body.members.map((m) => m.name)).toEqual(fed?.members.map((m) => m.name));
    expect(body.exposureSeconds[0]).toBeCloseTo(fed?.exposure?.seconds ?? Number.NaN, 3);
  });

  it("is 404 for an unknown federation and 401 without a token", async () => {
    expect((await get("/v1/federations/nope/history")).status).toBe(404);
    expect((await fetch(`${h.api.url}/v1/federations/orders/history`)).status).toBe(401);
  });
});

describe("GET /v1/federations/{name}/runbook", () => {
  it("renders Markdown by default and a standalone, escaped HTML page with ?format=html", async () => {
    const md = await get("/v1/federations/orders/runbook");
    expect(md.status).toBe(200);
    expect(md.headers.get("content-type")).toContain("text/markdown");
    const text = await md.text();
    expect(text).toMatch(/^# /);
    expect(text).toContain("pgfed switchover orders");
    // The commands name the API as the client reached it.
    expect(text).toContain(h.api.url);
    const html = await get("/v1/federations/orders/runbook?format=html", OPERATOR_TOKEN);
    expect(html.headers.get("content-type")).toContain("text/html");
    expect(await html.text()).toMatch(/^<!doctype html>/i);
  });

  it("refuses an unknown format naming the field", async () => {
    const res = await get("/v1/federations/orders/runbook?format=pdf");
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toContain("format");
  });
});

describe("FederationHistory", () => {
  it("keeps one point per resolution step and at most an hour of them, oldest first", () => {
    const hist = new FederationHistory("f", ["a", "b"]);
    const t0 = 1_000_000;
    let recorded = 0;
    // 2 hours of 1 s passes.
    for (let s = 0; s < 7_200; s++) {
      const atMs = t0 + s * 1_000;
      if (!hist.due(atMs)) continue;
      hist.record({ atMs, exposureSeconds: s, worstCaseSeconds: s + 1, lagSeconds: new Map([["a", null], ["b", s / 2]]) });
      recorded++;
    }
    expect(recorded).toBe(7_200 / (HISTORY_RESOLUTION_MS / 1000));
    const v = hist.view();
    expect(v.at.length).toBe(HISTORY_POINTS);
    expect(v.at[0]).toBeLessThan(v.at[1] ?? 0);
    // The newest point is the last pass recorded; the oldest one hour before it.
    const newest = v.at.at(-1) ?? 0;
    expect(newest - (v.at[0] ?? 0)).toBe(((HISTORY_POINTS - 1) * HISTORY_RESOLUTION_MS) / 1000);
    expect(v.members.find((m) => m.name === "a")?.lagSeconds.every((x) => x === null)).toBe(true);
    expect(v.members.find((m) => m.name === "b")?.lagSeconds.at(-1)).toBe((v.exposureSeconds.at(-1) ?? 0) / 2);
    // NaN and Infinity become null, never a number.
    const odd = new FederationHistory("g", ["a"]);
    odd.record({ atMs: t0, exposureSeconds: Number.NaN, worstCaseSeconds: Number.POSITIVE_INFINITY, lagSeconds: new Map() });
    expect(odd.view()).toMatchObject({ exposureSeconds: [null], worstCaseSeconds: [null], members: [{ name: "a", lagSeconds: [null] }] });
  });
});
