/**
 * The CLI loads only what a command needs (issue 17), runs compiled, and its shell completion
 * completes. Module loading is observed in a real `node bin/pgfed.js …` process through Node's
 * module hooks (every specifier the process resolves), on the compiled dist/ that scripts/build.js
 * makes (rebuilt here when a source changed).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMAND_GROUPS, CORE_COMMANDS, buildProgram, runCli, type CliIo } from "../../../src/cli/program.js";
import { VERSION } from "../../../src/version.js";

const REPO = join(import.meta.dirname, "..", "..", "..");
const quiet: CliIo = { out: () => undefined, err: () => undefined };
let tmp: string;
let hooks: string;

beforeAll(() => {
  const built = spawnSync(process.execPath, ["scripts/build.js", "--if-changed"], { cwd: REPO, encoding: "utf8" });
  if (built.status !== 0) throw new Error(`scripts/build.js failed: ${built.stderr}`);
  tmp = mkdtempSync(join(tmpdir(), "pgfed-startup-"));
  hooks = join(tmp, "hooks.mjs");
  // Writes every bare specifier (an npm package) the process resolves to PGFED_TRACE_FILE.
  writeFileSync(
    hooks,
    `import { registerHooks } from "node:module";
import { appendFileSync } from "node:fs";
registerHooks({ resolve(specifier, context, next) {
  if (!specifier.startsWith(".") && !specifier.startsWith("/") && !specifier.startsWith("node:") && !specifier.startsWith("file:")) appendFileSync(process.env.PGFED_TRACE_FILE, specifier + "\\n");
  return next(specifier, context);
} });
`,
  );
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The npm packages `pgfed args…` loads, and its exit code. */
function packagesLoaded(args: string[], name: string): { code: number | null; packages: Set<string>; stdout: string } {
  const trace = join(tmp, `${name}.trace`);
  writeFileSync(trace, "");
  const r = spawnSync(process.execPath, ["--import", hooks, "bin/pgfed.js", ...args], { cwd: REPO, encoding: "utf8", env: { ...process.env, PGFED_TRACE_FILE: trace, PGFED_SERVER: "", PGFED_TOKEN: "" } });
  const packages = new Set(
    readFileSync(trace, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((s) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : (s.split("/")[0] ?? s))),
  );
  return { code: r.status, packages, stdout: r.stdout };
}

const HEAVY = ["@kubernetes/client-node", "@nats-io/transport-node", "@nats-io/jetstream", "@nats-io/kv", "fastify", "pg", "pino", "prom-client"];

describe("pgfed loads only what a command needs", () => {
  it("version prints the version from the compiled build and loads no npm package but the bundled ones", () => {
    const r = packagesLoaded(["version"], "version");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`pgfed ${VERSION}\n`);
    expect([...r.packages]).toEqual([]);
  });

  it.each([
    [["--help"], "help"],
    [["status", "--help"], "status-help"],
    [["machines", "--format", "json"], "machines"],
    [["config", "check", "deploy/examples/pgfed.yaml"], "config"],
    [["status", "demo", "--server", "http://127.0.0.1:1"], "status"],
    [["completion", "bash"], "completion"],
  ])("pgfed %j loads none of the Kubernetes client, NATS, fastify, pg, pino or prom-client", (args, name) => {
    const r = packagesLoaded(args, name);
    // status against a closed port fails (exit 1) after loading everything it would load.
    expect(r.code === 0 || name === "status").toBe(true);
    for (const p of HEAVY) expect(r.packages.has(p), `${args.join(" ")} loaded ${p}`).toBe(false);
  });

  it("config check loads the config schema (zod) but version and status do not", () => {
    expect(packagesLoaded(["config", "check", "deploy/examples/pgfed.yaml"], "config-zod").packages.has("zod")).toBe(true);
    expect(packagesLoaded(["status", "demo", "--server", "http://127.0.0.1:1"], "status-zod").packages.has("zod")).toBe(false);
  });

  it("COMMAND_GROUPS names exactly the commands each group registers", async () => {
    const all = new Set<string>(CORE_COMMANDS);
    for (const group of COMMAND_GROUPS) {
      const p = new Command("pgfed");
      (await group.load())(p, quiet);
      expect(p.commands.map((c) => c.name()).sort()).toEqual([...group.commands].sort());
      for (const c of group.commands) all.add(c);
    }
    expect((await buildProgram(quiet)).commands.map((c) => c.name()).sort()).toEqual([...all].sort());
  });
});

describe("pgfed completion", () => {
  function complete(script: string, words: string[]): string[] {
    // COMP_WORDS as bash would set them for "pgfed <words…>" with the cursor on the last word.
    const quoted = words.map((w) => `'${w}'`).join(" ");
    const r = spawnSync("bash", ["-c", `source "$1"; COMP_WORDS=(pgfed ${quoted}); COMP_CWORD=${words.length}; _pgfed; printf '%s\\n' "\${COMPREPLY[@]}"`, "bash", script], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`bash: ${r.stderr}`);
    return r.stdout.split("\n").filter(Boolean);
  }

  it("completes commands, sub-commands, options and option values in bash", async () => {
    let out = "";
    expect(await runCli(["completion", "bash"], { out: (t) => (out += t), err: () => undefined })).toBe(0);
    const script = join(tmp, "pgfed.bash");
    writeFileSync(script, out);
    expect(out).toContain("complete -F _pgfed pgfed kubectl-pgfed");
    expect(complete(script, ["sw"])).toEqual(["switchover"]);
    expect(complete(script, ["config", ""])).toContain("check");
    expect(complete(script, ["nats", "i"])).toEqual(["identity"]);
    expect(complete(script, ["status", "demo", "--ou"])).toEqual(["--output"]);
    expect(complete(script, ["status", "demo", "-o", ""]).sort()).toEqual(["json", "table", "wide", "yaml"]);
    expect(complete(script, ["lab", "kill"])).toEqual(["kill-region"]);
    expect(complete(script, ["switchover", "demo", "--to", ""])).toEqual([]);
  });

  it("zsh gets the same completion through bashcompinit, and an unknown shell is a usage error", async () => {
    let out = "";
    expect(await runCli(["completion", "zsh"], { out: (t) => (out += t), err: () => undefined })).toBe(0);
    expect(out.split("\n")[0]).toBe("#compdef pgfed kubectl-pgfed");
    expect(out).toContain("bashcompinit");
    expect(await runCli(["completion", "fish"], quiet)).toBe(64);
  });
});
