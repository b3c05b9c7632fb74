/**
 * docs/operations.md names files of deploy/ in its commands and tables; each must exist (with
 * `$r` expanded over the shipped regions), and the quick start names every shipped region.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REGIONS, REPO } from "./helpers.js";

const docs = readFileSync(join(REPO, "docs/operations.md"), "utf8");

describe("docs/operations.md and deploy/", () => {
  it("names only deploy/ paths that exist", () => {
    const paths = new Set<string>();
    // Not test/unit/deploy/…, and not kubectl's `deploy/<Deployment name>`.
    for (const m of docs.matchAll(/(?<![\w/])deploy\/[A-Za-z0-9_./$*-]+[A-Za-z0-9_$*-]/g)) {
      const p = m[0];
      if (p.includes("*") || p.startsWith("deploy/pgfed-")) continue;
      for (const r of p.includes("$r") ? REGIONS : [""]) paths.add(p.replaceAll("$r", r));
    }
    expect(paths.size).toBeGreaterThan(20);
    const missing = [...paths].filter((p) => !existsSync(join(REPO, p)));
    expect(missing).toEqual([]);
  });

  it("runs the quick start over every shipped region", () => {
    const lists = [...docs.matchAll(/^REGIONS="([^"]+)"$/gm)].map((m) => (m[1] ?? "").split(" ").sort());
    expect(lists.length).toBeGreaterThanOrEqual(2);
    for (const l of lists) expect(l).toEqual([...REGIONS].sort());
    // No step of the quick start needs kustomize flags any more.
    expect(docs).not.toMatch(/kubectl kustomize --load-restrictor/);
  });
});
