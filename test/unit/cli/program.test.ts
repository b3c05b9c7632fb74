import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, type CliIo } from "../../../src/cli/program.js";
import { VERSION } from "../../../src/version.js";

function capture(): CliIo & { stdout: () => string; stderr: () => string } {
  let out = "";
  let err = "";
  return { out: (t) => (out += t), err: (t) => (err += t), stdout: () => out, stderr: () => err };
}

const example = readFileSync(new URL("../../../deploy/examples/pgfed.yaml", import.meta.url), "utf8");
const tmp: string[] = [];
function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tmp.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

describe("pgfed CLI basics", () => {
  it("prints its version", async () => {
    const io = capture();
    expect(await runCli(["version"], io)).toBe(0);
    expect(io.stdout()).toBe(`pgfed ${VERSION}\n`);
  });

  it("accepts a valid config and summarises it", async () => {
    const io = capture();
    const file = join(tempDir("pgfed-cli-"), "ok.yaml");
    writeFileSync(file, example);
    expect(await runCli(["config", "check", file], io)).toBe(0);
    expect(io.stdout()).toContain("ok (1 federation(s), 2 member(s), 2 region(s))");
  });

  it("refuses a broken config with exit code 2 and the path of each problem", async () => {
    const io = capture();
    const file = join(tempDir("pgfed-cli-"), "bad.yaml");
    writeFileSync(file, example.replace("region: us-east, namespace", "region: eu-wst, namespace"));
    expect(await runCli(["config", "check", file], io)).toBe(2);
    expect(io.stderr()).toContain('federations[0].members[1].region: unknown region "eu-wst"');
  });

  it("prints both machines as mermaid and json", async () => {
    const io = capture();
    expect(await runCli(["machines", "--format", "mermaid"], io)).toBe(0);
    expect(io.stdout().match(/stateDiagram-v2/g)).toHaveLength(2);
    const json = capture();
    expect(await runCli(["machines", "--format", "json"], json)).toBe(0);
    const parsed = JSON.parse(json.stdout()) as { member: { id: string }; federation: { id: string } };
    expect([parsed.member.id, parsed.federation.id]).toEqual(["member", "federation"]);
  });

  it("answers usage errors with exit code 64", async () => {
    expect(await runCli(["bogus"], capture())).toBe(64);
    expect(await runCli(["machines", "--format", "svg"], capture())).toBe(64);
    expect(await runCli(["lab", "explode"], capture())).toBe(64);
  });

  it("says clearly when no lab is running", async () => {
    const io = capture();
    const dir = tempDir("pgfed-nolab-");
    expect(await runCli(["lab", "status", "--dir", dir], io)).toBe(1);
    expect(io.stderr()).toContain(`no lab is running in ${dir}`);
  });
});
