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

  it("runs `node bin/pgfed.js` (stack traces mapped to the TypeScript) as a non-root user", () => {
    expect(instructions("ENTRYPOINT")).toEqual(['ENTRYPOINT ["node", "--enable-source-maps", "bin/pgfed.js"]']);
    expect(existsSync(join(REPO, "bin/pgfed.js"))).toBe(true);
    const users = instructions("USER");
    expect(users.length).toBeGreaterThan(0);
    expect(users[users.length - 1]).not.toMatch(/^USER (root|0)(:|$)/);
  });

  it("compiles in a build stage and runs compiled JavaScript on production dependencies only", () => {
    expect(text).toMatch(/^RUN node scripts\/build\.js$/m);
    expect(text).toMatch(/npm ci --omit=dev/);
    const runtime = text.slice(text.indexOf("AS runtime"));
    const copies = runtime.split("\n").filter((l) => l.startsWith("COPY "));
    // The runtime stage holds bin/, dist/ (from the build stage), package.json and node_modules: no sources.
    expect(copies.some((c) => c.includes("--from=build") && c.includes("/src/dist ./dist"))).toBe(true);
    expect(copies.some((c) => / bin \.\/bin$/.test(c))).toBe(true);
    for (const c of copies) expect(c, c).not.toMatch(/ (src|machines) \.\/(src|machines)$/);
    for (const dir of ["bin", "src", "machines", "scripts/build.js"]) expect(existsSync(join(REPO, dir)), dir).toBe(true);
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    // Nothing compiles at run time: tsx and esbuild are development dependencies.
    for (const dev of ["tsx", "esbuild", "typescript"]) {
      expect(pkg.dependencies[dev], dev).toBeUndefined();
      expect(pkg.devDependencies[dev], dev).toBeDefined();
    }
  });

  it("says plainly that CI does not build it", () => {
    expect(text).toMatch(/NOT built in CI/);
  });
});
