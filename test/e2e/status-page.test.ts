/**
 * The status page in real headless Chromium (Debian's, driven by playwright-core) over a
 * three-region lab: it loads the lab's federation, shows a switchover started from the CLI step by
 * step while it runs, runs a dry run and a switchover with an operator token, refuses them with a
 * read-only one in the API's words, and refuses a wrong token. Screenshots go to
 * test-artifacts/status-page/.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTokenFile, tokenLine } from "../../src/api/auth.js";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import { runCli } from "../../src/cli/program.js";
import { renderRunbook } from "../../src/cli/runbook-document.js";
import { launchChromium } from "../support/browser.js";
import { FED, startE2E, waitUntil, type E2E } from "./fixture.js";

const OPERATOR = "page-operator-token-0123456789";
const VIEWER = "page-viewer-token-0123456789";
const ARTIFACTS = join(import.meta.dirname, "..", "..", "test-artifacts", "status-page");

let e: E2E;
let api: ApiServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  e = await startE2E("status-page", { regions: 3 });
  const tokens = parseTokenFile(`${tokenLine("oncall", "operator", OPERATOR)}\n${tokenLine("viewer", "viewer", VIEWER)}\n`);
  api = await startApiServer({ service: e.plane.coordinator, listen: "127.0.0.1:0", tokens, log: e.log, renderRunbook });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await api?.close();
  await e?.stop();
}, 120_000);

async function signIn(token: string): Promise<void> {
  await page.goto(`${api.url}/`);
  await page.evaluate(() => sessionStorage.clear());
  await page.goto(`${api.url}/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Use this token" }).click();
}

const cli = async (args: string[]): Promise<{ code: number; out: string; err: string }> => {
  let out = "";
  let err = "";
  // As a script runs it: no terminal (the ops commands read isTTY, env and cwd from the io when given).
  const io = { out: (t: string) => (out += t), err: (t: string) => (err += t), isTTY: false, env: {}, cwd: e.dir };
  const code = await runCli([...args, "--server", api.url, "--token", OPERATOR], io);
  return { code, out, err };
};

describe("the status page in Chromium", () => {
  it("refuses a wrong token with the API's words and asks again", async () => {
    await signIn("not-a-token");
    await expect.poll(async () => page.getByRole("alert").textContent(), { timeout: 10_000 }).toContain("unknown token");
    expect(await page.getByLabel("API token").isVisible()).toBe(true);
  });

  it("loads the lab's federation: overview, members, chart", async () => {
    const t0 = Date.now();
    await signIn(VIEWER);
    const row = page.locator('tr[data-federation="demo"]');
    await row.waitFor({ timeout: 15_000 });
    const loadMs = Date.now() - t0;
    console.log(`status page: sign-in to overview shown in ${loadMs} ms`);
    expect(await row.textContent()).toContain("pg-eu (eu-west)");
    await page.screenshot({ path: join(ARTIFACTS, "overview.png") });
    await row.getByRole("link", { name: FED }).click();
    await page.locator('tr[data-member="pg-ap"]').waitFor({ timeout: 15_000 });
    expect(await page.locator("tr[data-member]").count()).toBe(3);
    await page.locator(".chart-box canvas").waitFor({ timeout: 15_000 });
    await page.screenshot({ path: join(ARTIFACTS, "federation.png"), fullPage: true });
  });

  it("refuses a dry run to a read-only token, as the API words it", async () => {
    await page.getByLabel("Promote").selectOption("pg-us");
    await page.getByLabel("Reason (recorded in the audit trail)").fill("status page test");
    await page.getByRole("button", { name: "Dry run" }).click();
    await expect.poll(async () => page.getByRole("alert").textContent(), { timeout: 10_000 }).toContain('token "viewer" has role viewer');
    expect(e.plane.coordinator.getFederation(FED)?.designatedPrimary).toBe("pg-eu");
  });

  it("shows a switchover started from the CLI step by step while it runs", async () => {
    // Slow Kubernetes APIs (0.6 s a request) stretch the switchover over several of the page's
    // 2 s polls, so it is seen running; it still completes.
    const regions = ["eu-west", "us-east", "ap-south"];
    for (const r of regions) await e.lab.region(r).kubeApi.faults.set({ latencyMs: 600 });
    const seen: { steps: number; state: string | null }[] = [];
    let polling = true;
    const watcher = (async () => {
      while (polling) {
        const steps = await page.locator(".operation li[data-step]").count();
        const state = await page
          .locator(".operation .badge")
          .first()
          .textContent({ timeout: 200 })
          .catch(() => null);
        seen.push({ steps, state });
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    try {
      const r = await cli(["switchover", FED, "--to", "pg-us", "--yes", "--no-wait", "--reason", "status page: live steps"]);
      expect(r.code, r.err).toBe(0);
      // The README's picture: the page mid-switchover (1280×800).
      await expect.poll(async () => (await page.locator(".operation .badge").first().textContent({ timeout: 200 }).catch(() => null)) === "running" && (await page.locator(".operation li[data-step]").count()) >= 2, { timeout: 60_000, interval: 50 }).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, "readme.png"), fullPage: true, clip: { x: 0, y: 0, width: 1280, height: 1120 } });
      await expect.poll(async () => page.locator(".operation .badge").first().textContent(), { timeout: 90_000, interval: 100 }).toBe("completed");
    } finally {
      polling = false;
      await watcher;
      for (const r of regions) await e.lab.region(r).kubeApi.faults.set({ latencyMs: undefined });
    }
    // Steps appeared one by one while it was still running, then it completed with all of them.
    const final = await page.locator(".operation li[data-step]").count();
    expect(final).toBeGreaterThanOrEqual(4);
    expect(seen.some((s) => s.state === "running" && s.steps > 0 && s.steps < final)).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, "switchover-live.png"), fullPage: true });
  });

  it("runs a dry run, then a switchover with a typed confirmation, with an operator token", async () => {
    await signIn(OPERATOR);
    await page.goto(`${api.url}/#/f/${FED}`);
    await page.getByLabel("Promote").waitFor({ timeout: 15_000 });
    await page.getByLabel("Promote").selectOption("pg-ap");
    await page.getByLabel("Reason (recorded in the audit trail)").fill("status page: planned move to ap-south");
    await page.getByRole("button", { name: "Dry run" }).click();
    await page.locator('[data-plan="allowed"]').waitFor({ timeout: 15_000 });
    expect(await page.locator('[data-plan="allowed"]').textContent()).toContain("plan: switchover demo → pg-ap: allowed");
    const go = page.getByRole("button", { name: "Switch over to pg-ap" });
    expect(await go.isDisabled()).toBe(true);
    await page.getByLabel(/Type demo to switch over/).fill("dem");
    expect(await go.isDisabled()).toBe(true);
    await page.getByLabel(/Type demo to switch over/).fill(FED);
    await page.screenshot({ path: join(ARTIFACTS, "dry-run.png"), fullPage: true });
    await go.click();
    await waitUntil("pg-ap to be the designated primary", 60_000, () => e.plane.coordinator.getFederation(FED)?.designatedPrimary === "pg-ap");
    await expect.poll(async () => page.locator(".operation .badge").first().textContent(), { timeout: 30_000 }).toBe("completed");
    // Finished: the page offers the next switchover again.
    await page.getByRole("button", { name: "Dry run" }).waitFor({ timeout: 15_000 });
    const audit = await cli(["audit", FED, "-o", "json"]);
    expect(audit.out).toContain("status page: planned move to ap-south");
    await page.screenshot({ path: join(ARTIFACTS, "switchover-from-page.png"), fullPage: true });
  });

  it("is usable from the keyboard alone: Tab reaches the dry run, Enter runs it", async () => {
    await page.goto(`${api.url}/#/f/${FED}`);
    await page.getByLabel("Promote").waitFor({ timeout: 15_000 });
    await page.locator("body").focus();
    let reached = false;
    for (let i = 0; i < 80 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = (await page.evaluate("document.activeElement && document.activeElement.id")) === "dry-run";
    }
    expect(reached).toBe(true);
    // A reason first, as a keyboard user would type it (Shift+Tab back to the field).
    await page.keyboard.press("Shift+Tab");
    await page.keyboard.type("keyboard only");
    await page.keyboard.press("Tab");
    await page.keyboard.press("Enter");
    await page.locator("[data-plan]").waitFor({ timeout: 15_000 });
  });

  it("is usable at phone width", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.locator('tr[data-member="pg-eu"]').waitFor({ timeout: 15_000 });
    await page.locator(".chart-box canvas").waitFor({ timeout: 15_000 });
    // Nothing wider than the screen but the scrolling tables.
    const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth"));
    expect(overflow).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(ARTIFACTS, "phone.png"), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
  });
});
