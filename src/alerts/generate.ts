/**
 * Writes the files rendered from the alert catalog: `npx tsx src/alerts/generate.ts [--check]`.
 * With --check it writes nothing and exits 1 when a committed file differs (CI).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { renderAlertsDoc } from "./docs.js";
import { renderRuleTests } from "./rule-tests.js";
import { renderPrometheusRule, renderRulesFile } from "./rules.js";

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Repository-relative path → content, for every generated file. */
export function generatedFiles(): Record<string, string> {
  return {
    "deploy/prometheus/pgfed-rules.yml": renderRulesFile(),
    "deploy/prometheus/pgfed-prometheusrule.yaml": renderPrometheusRule(),
    "deploy/prometheus/pgfed-rules.test.yml": renderRuleTests(),
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
