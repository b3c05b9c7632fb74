/**
 * Writes the files rendered from the alert catalog: `npx tsx src/alerts/generate.ts [--check]`.
 * With --check it writes nothing and exits 1 when a committed file differs (CI). The rules'
 * `runbook_url`s are absolute, from the base in deploy/prometheus/runbook-base-url (where your copy
 * of docs/alerts.md is published): links in PagerDuty or Slack must work outside the repository.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderAlertsDoc } from "./docs.js";
import { renderRuleTests } from "./rule-tests.js";
import { renderPrometheusRule, renderRulesFile } from "./rules.js";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const RUNBOOK_BASE_FILE = "deploy/prometheus/runbook-base-url";

/** The one non-comment line of deploy/prometheus/runbook-base-url: an absolute http(s) URL of docs/alerts.md. */
export function parseRunbookBaseUrl(text: string, where = RUNBOOK_BASE_FILE): string {
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const url = lines[0];
  if (lines.length !== 1 || url === undefined) throw new Error(`${where}: expected exactly one line with the URL of docs/alerts.md, found ${lines.length}`);
  if (!/^https?:\/\/[^\s#?]+$/.test(url)) throw new Error(`${where}: "${url}" is not an absolute http(s) URL without a query or fragment (the alert's anchor is appended)`);
  return url;
}

export function runbookBaseUrl(root: string = REPO_ROOT): string {
  return parseRunbookBaseUrl(readFileSync(join(root, RUNBOOK_BASE_FILE), "utf8"));
}

/** Repository-relative path → content, for every generated file. */
export function generatedFiles(base: string = runbookBaseUrl()): Record<string, string> {
  return {
    "deploy/prometheus/pgfed-rules.yml": renderRulesFile(base),
    "deploy/prometheus/pgfed-prometheusrule.yaml": renderPrometheusRule(base),
    "deploy/prometheus/pgfed-rules.test.yml": renderRuleTests("pgfed-rules.yml", base),
    "docs/alerts.md": renderAlertsDoc(),
  };
}

function main(argv: string[]): number {
  const check = argv.includes("--check");
  let stale = 0;
  for (const [path, content] of Object.entries(generatedFiles())) {
    const file = join(REPO_ROOT, path);
    let current: string | undefined;
    try {
      current = readFileSync(file, "utf8");
    } catch {
      current = undefined;
    }
    if (current === content) continue;
    if (check) {
      process.stderr.write(`${path} is out of date; run npx tsx src/alerts/generate.ts\n`);
      stale++;
    } else {
      writeFileSync(file, content);
      process.stdout.write(`wrote ${path}\n`);
    }
  }
  return stale > 0 ? 1 : 0;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) process.exitCode = main(process.argv.slice(2));
