/**
 * The status page's files on the API listener: built by scripts/build.js (vitest's global setup
 * runs it), served without a token (they hold no data) with a policy that allows this origin only.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { registerStatusPage } from "../../../src/api/ui.js";
import { startHarness, type Harness } from "./helpers.js";

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(async () => {
  await h.close();
});

describe("the status page", () => {
  it("serves its HTML at / and its script and style under /ui, same-origin only, without a token", async () => {
    const page = await fetch(`${h.api.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    const csp = page.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(page.headers.get("x-frame-options")).toBe("DENY");
    const html = await page.text();
    expect(html).toContain('<script type="module" src="/ui/main.js"></script>');
    // Nothing from elsewhere: every src/href is a path on this origin.
    expect([...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).every((u) => u?.startsWith("/"))).toBe(true);
    const js = await fetch(`${h.api.url}/ui/main.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toContain("text/javascript");
    const code = await js.text();
    expect(code.length).toBeGreaterThan(10_000);
    expect(code).not.toMatch(/https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.[a-z]{2,}\//i);
    expect((await fetch(`${h.api.url}/ui/main.css`)).headers.get("content-type")).toContain("text/css");
    expect((await fetch(`${h.api.url}/ui/nope.js`)).status).toBe(404);
    expect((await fetch(`${h.api.url}/ui/..%2Fpackage.json`)).status).toBe(404);
  });

  it("says how to build it when it is not built, and the API keeps working", async () => {
    const empty = mkdtempSync(join(tmpdir(), "pgfed-ui-"));
    const app = Fastify();
    registerStatusPage(app, empty);
    try {
      const res = await app.inject({ method: "GET", url: "/" });
      expect(res.statusCode).toBe(503);
      expect(res.body).toContain("npm run build");
    } finally {
      await app.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
