/**
 * The rules' runbook_urls are absolute, from deploy/prometheus/runbook-base-url: a relative path is
 * a broken link in PagerDuty or Slack. A malformed base is refused, naming the file.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { describe, expect, it } from "vitest";
import { ALERT_NAMES } from "../../../src/alerts/catalog.js";
import { REPO_ROOT, RUNBOOK_BASE_FILE, generatedFiles, parseRunbookBaseUrl, runbookBaseUrl } from "../../../src/alerts/generate.js";

function runbookUrls(text: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === "object" && v !== null) {
      for (const [k, x] of Object.entries(v)) {
        if (k === "runbook_url" && typeof x === "string") out.push(x);
        else walk(x);
      }
    }
  };
  for (const d of parseAllDocuments(text)) walk(d.toJS());
  return out;
}

describe("runbook_url in the shipped rules", () => {
  it("is the configured absolute base plus the alert's anchor, in the rules, the PrometheusRule and the promtool tests", () => {
    const base = runbookBaseUrl();
    expect(base).toMatch(/^https:\/\//);
    for (const file of ["deploy/prometheus/pgfed-rules.yml", "deploy/prometheus/pgfed-prometheusrule.yaml", "deploy/prometheus/pgfed-rules.test.yml"]) {
      const urls = runbookUrls(readFileSync(join(REPO_ROOT, file), "utf8"));
      expect(urls.length, file).toBeGreaterThanOrEqual(file.endsWith("test.yml") ? 1 : ALERT_NAMES.length);
      for (const u of urls) expect(u, file).toMatch(new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}#pgfed[a-z]+$`));
    }
  });

  it("follows the base: another base renders other URLs, and the committed files match the committed base", () => {
    const other = generatedFiles("https://wiki.example.org/oncall/pgfed-alerts.md");
    expect(runbookUrls(other["deploy/prometheus/pgfed-rules.yml"] ?? "")).toContain("https://wiki.example.org/oncall/pgfed-alerts.md#pgfedrpobudgetexceeded");
    for (const [path, content] of Object.entries(generatedFiles())) expect(readFileSync(join(REPO_ROOT, path), "utf8"), path).toBe(content);
  });

  it("refuses a base that is relative, has a fragment, or is not one line, naming the file", () => {
    expect(parseRunbookBaseUrl("# comment\nhttps://x.example/alerts.md\n")).toBe("https://x.example/alerts.md");
    expect(() => parseRunbookBaseUrl("docs/alerts.md\n")).toThrow(`${RUNBOOK_BASE_FILE}: "docs/alerts.md" is not an absolute http(s) URL`);
    expect(() => parseRunbookBaseUrl("https://x.example/alerts.md#top\n")).toThrow(/without a query or fragment/);
    expect(() => parseRunbookBaseUrl("# only comments\n")).toThrow(/exactly one line .* found 0/);
    expect(() => parseRunbookBaseUrl("https://a.example/x\nhttps://b.example/y\n")).toThrow(/found 2/);
  });
});
