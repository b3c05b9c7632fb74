/**
 * Regenerates the generated parts of README.md (state-machine diagrams, alerts table) from the
 * code. `npm run docs` writes them; `--check` exits 1 when the README copy is stale (the unit test
 * test/unit/docs/readme.test.ts does the same check inside `npm test`).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { alertsMarkdownTable } from "../src/alerts/catalog.js";
import { machineAsMermaid } from "../machines/describe.js";
import { federationMachine } from "../machines/federation.js";
import { memberMachine } from "../machines/member.js";

export const README = new URL("../README.md", import.meta.url);

export function generatedSections(): Record<string, string> {
  return {
    machines: [
      "#### Member (one CNPG Cluster as pgfed sees it) — `machines/member.ts`",
      "",
      "```mermaid",
      machineAsMermaid(memberMachine).trim(),
      "```",
      "",
      "#### Federation (designated primary, epoch, the one operation in flight) — `machines/federation.ts`",
      "",
      "```mermaid",
      machineAsMermaid(federationMachine).trim(),
      "```",
    ].join("\n"),
    alerts: alertsMarkdownTable().trim(),
  };
}

/** Replaces the text between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`. */
export function renderReadme(text: string): string {
  let out = text;
  for (const [name, body] of Object.entries(generatedSections())) {
    const begin = `<!-- generated:${name} -->`;
    const end = `<!-- /generated:${name} -->`;
    const i = out.indexOf(begin);
    const j = out.indexOf(end);
    if (i < 0 || j < i) throw new Error(`README.md has no ${begin} … ${end} block`);
    out = `${out.slice(0, i + begin.length)}\n${body}\n${out.slice(j)}`;
  }
  return out;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop() ?? "")) {
  const current = readFileSync(README, "utf8");
  const next = renderReadme(current);
  if (process.argv.includes("--check")) {
    if (next !== current) {
      process.stderr.write("README.md generated sections are stale: run `npm run docs`\n");
      process.exit(1);
    }
  } else if (next !== current) {
    writeFileSync(README, next);
    process.stdout.write("README.md updated\n");
  }
}
