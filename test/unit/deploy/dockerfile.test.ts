/**
 * deploy/Dockerfile is not built here (no Docker engine on these machines): these text checks keep
 * it in line with what the Kubernetes manifests and the package expect.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO } from "./helpers.js";

const text = readFileSync(join(REPO, "deploy/Dockerfile"), "utf8");
const lines = text.split("\n").filter((l) => !l.trimStart().startsWith("#"));
const instructions = (name: string): string[] => lines.filter((l) => l.startsWith(`${name} `));

describe("deploy/Dockerfile", () => {
  it("is multi-stage on node:24-bookworm-slim, a Node that package.json's engines accepts", () => {
    expect(text).toMatch(/^ARG NODE_IMAGE=node:24-bookworm-slim$/m);
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { engines?: { node?: string } };
    // Node 20 reached end of life on 2026-04-30; 22.19 is the oldest Node the current majors run on.
    expect(pkg.engines?.node).toBe(">=22.19");
    const froms = instructions("FROM");
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const f of froms) expect(f).toMatch(/^FROM \$\{NODE_IMAGE\} AS \w+$/);
  });

  it("runs `node bin/pgfed.js` as a non-root user", () => {
    expect(instructions("ENTRYPOINT")).toEqual(['ENTRYPOINT ["node", "bin/pgfed.js"]']);
    expect(existsSync(join(REPO, "bin/pgfed.js"))).toBe(true);
    const users = instructions("USER");
    expect(users.length).toBeGreaterThan(0);
    expect(users[users.length - 1]).not.toMatch(/^USER (root|0)(:|$)/);
  });

  it("installs production dependencies from the lockfile and copies every folder the CLI imports", () => {
    expect(text).toMatch(/npm ci --omit=dev/);
    for (const dir of ["bin", "src", "machines"]) {
      expect(instructions("COPY").some((c) => c.includes(` ${dir} `)), `COPY ${dir}`).toBe(true);
      expect(existsSync(join(REPO, dir))).toBe(true);
    }
    const pkg: unknown = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8"));
    // bin/pgfed.js loads TypeScript through tsx at run time, so tsx must be a production dependency.
    const deps = typeof pkg === "object" && pkg !== null && "dependencies" in pkg ? pkg.dependencies : undefined;
    expect(typeof deps === "object" && deps !== null && "tsx" in deps).toBe(true);
  });

  it("says plainly that CI does not build it", () => {
    expect(text).toMatch(/NOT built in CI/);
  });
});
