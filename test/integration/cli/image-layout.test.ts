/**
 * The container image's runtime stage without Docker (no engine on these machines), as
 * scripts/package.sh assembles it for the krew archive: the files deploy/Dockerfile copies into
 * it (package.json, bin/, the compiled dist/) and the production packages only (`npm ci
 * --omit=dev`, from npm's cache), in a directory of their own. Every compiled chunk must load
 * there, so no command needs a development package (tsx, esbuild, TypeScript) or a source file at
 * run time; the commands an image runs must work, and so must `kubectl pgfed` from the archive.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const REPO = join(import.meta.dirname, "..", "..", "..");
let out: string;
let app: string;

function node(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, args, { cwd: app, encoding: "utf8", env: { ...process.env, NODE_ENV: "production", PGFED_SERVER: "", PGFED_TOKEN: "" }, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

beforeAll(() => {
  out = mkdtempSync(join(tmpdir(), "pgfed-image-"));
  const r = spawnSync("bash", ["scripts/package.sh", out], { cwd: REPO, encoding: "utf8", timeout: 240_000 });
  if (r.status !== 0) throw new Error(`scripts/package.sh failed: ${r.stderr}`);
  app = join(out, "pgfed");
}, 300_000);
afterAll(() => {
  if (out) rmSync(out, { recursive: true, force: true });
});

describe("the image's runtime files", () => {
  it("hold no development package and no TypeScript", () => {
    const installed = readdirSync(join(app, "node_modules"));
    for (const dev of ["tsx", "esbuild", "typescript", "vitest", "eslint"]) expect(installed, dev).not.toContain(dev);
    const ts = readdirSync(join(app, "dist"), { recursive: true }).map(String).filter((f) => f.endsWith(".ts"));
    expect(ts).toEqual([]);
  });

  it("load every compiled chunk on production packages only", () => {
    const chunks = readdirSync(join(app, "dist", "chunks")).filter((f) => f.endsWith(".js"));
    expect(chunks.length).toBeGreaterThan(3);
    const script = `for (const f of ${JSON.stringify(chunks)}) await import("./dist/chunks/" + f); console.log("loaded", ${chunks.length});`;
    const r = node(["--input-type=module", "-e", script]);
    expect(r.err).toBe("");
    expect(r.out.trim()).toBe(`loaded ${chunks.length}`);
  });

  it("run the commands an image is used for", () => {
    expect(node(["bin/pgfed.js", "version"]).out).toMatch(/^pgfed \d+\.\d+\.\d+\n$/);
    const help = node(["bin/pgfed.js", "--help"]);
    expect(help.code).toBe(0);
    for (const c of ["run", "status", "switchover", "completion"]) expect(help.out).toContain(c);
    const run = node(["bin/pgfed.js", "run", "--help"]);
    expect(run.code).toBe(0);
    expect(run.out).toContain("--roles");
    cpSync(join(REPO, "deploy/examples/pgfed.yaml"), join(app, "pgfed.yaml"));
    const check = node(["bin/pgfed.js", "config", "check", "pgfed.yaml"]);
    expect(check.code, check.err).toBe(0);
    // A coordinator that cannot read its config exits 2 naming it, after loading everything it runs on.
    const bad = node(["bin/pgfed.js", "run", "--config", "missing.yaml"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("missing.yaml");
  });

  it("make a krew archive whose manifest names its checksum, and whose launcher works through a link", () => {
    const version = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;
    const archive = join(out, `pgfed-${version}.tar.gz`);
    const manifest = readFileSync(join(out, "pgfed-krew.yaml"), "utf8");
    expect(manifest).toContain(`sha256: "${createHash("sha256").update(readFileSync(archive)).digest("hex")}"`);
    expect(manifest).toContain(`version: v${version}`);
    expect(manifest).not.toContain("@");
    // kubectl runs kubectl-pgfed from PATH; krew links it into ~/.krew/bin.
    const bin = join(out, "krew-bin");
    spawnSync("mkdir", ["-p", bin]);
    spawnSync("ln", ["-s", join(app, "kubectl-pgfed"), join(bin, "kubectl-pgfed")]);
    const r = spawnSync("kubectl", ["pgfed", "version"], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ""}` } });
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe(`pgfed ${version}\n`);
  });
});
