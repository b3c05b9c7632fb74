/**
 * Approving from the status page (headless Chromium, three regions): a failover beyond a 2 s
 * budget waits for approval; the page shows the loss from the approval's dry run, refuses an
 * accepted loss that does not cover it in the API's words, and an approval that covers it lets
 * the failover finish.
 */
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTokenFile, tokenLine } from "../../src/api/auth.js";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import { renderRunbook } from "../../src/cli/runbook-document.js";
import type { Config } from "../../src/config.js";
import { launchChromium } from "../support/browser.js";
import { FED, federation, startE2E, waitUntil, type E2E } from "./fixture.js";

const OPERATOR = "page-approver-token-0123456789";
const ARTIFACTS = join(import.meta.dirname, "..", "..", "test-artifacts", "status-page");
const tinyBudget = (c: Config): Config => ({ ...c, federations: c.federations.map((f) => ({ ...f, rpo: { ...f.rpo, budget: 2_000, walSwitchAfter: undefined } })) });

let e: E2E;
let api: ApiServer;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  e = await startE2E("status-page-approval", { regions: 3, config: tinyBudget });
  api = await startApiServer({ service: e.plane.coordinator, listen: "127.0.0.1:0", tokens: parseTokenFile(tokenLine("oncall", "operator", OPERATOR)), log: e.log, renderRunbook });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await api?.close();
  await e?.stop();
}, 120_000);

describe("approving a failover from the status page", () => {
  it("shows the loss, refuses too little in the API's words, and approves", async () => {
    await e.plane.partitionAgentFromBus("eu-west");
    await e.lab.killRegion("eu-west");
    await e.plane.stopAgent("eu-west");
    await waitUntil("the failover to wait for approval", 60_000, () => federation(e).operation?.state === "awaitingApproval", 100);
    const op = federation(e).operation;
    if (!op) throw new Error("no operation");

    await page.goto(`${api.url}/`);
    await page.getByLabel("API token").fill(OPERATOR);
    await page.getByRole("button", { name: "Use this token" }).click();
    await page.goto(`${api.url}/#/f/${FED}`);
    const form = page.locator("form", { has: page.getByRole("heading", { name: /^Approve failover/ }) });
    await form.waitFor({ timeout: 20_000 });
    // The approval's dry run: its expected loss is on the page before anything is approved.
    await form.locator("[data-plan]").waitFor({ timeout: 20_000 });
    expect(await form.locator("[data-plan]").textContent()).toMatch(/expected data loss \d/);
    await page.screenshot({ path: join(ARTIFACTS, "approval.png"), fullPage: true });

    await page.getByLabel("Data loss you accept (covers the worst case above)").fill("1s");
    await page.getByLabel("Reason", { exact: true }).fill("status page: too little");
    await form.getByRole("button", { name: /^Approve, accepting/ }).click();
    await expect.poll(async () => form.getByRole("alert").textContent(), { timeout: 15_000 }).toMatch(/cover/);
    expect(federation(e).designatedPrimary).toBe("pg-eu");

    await page.getByLabel("Data loss you accept (covers the worst case above)").fill("600s");
    await page.getByLabel("Reason", { exact: true }).fill("status page: eu-west is gone, accept the loss");
    await form.getByRole("button", { name: /^Approve, accepting 600s/ }).click();
    await waitUntil("the failover to finish", 60_000, () => federation(e).operation === null || federation(e).designatedPrimary !== "pg-eu", 100);
    await waitUntil("a new designated primary", 60_000, () => federation(e).designatedPrimary !== "pg-eu", 100);
    const audit = await e.plane.coordinator.audit(FED, {});
    expect(audit.some((a) => a.operationId === op.id && a.action === "request.approve" && a.numbers.acceptedLossSeconds === 600)).toBe(true);
    await expect.poll(async () => page.locator(".operation .badge").first().textContent(), { timeout: 30_000 }).toBe("completed");
  });
});
