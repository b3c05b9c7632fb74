/** The rules files checked and unit-tested by the real promtool (Prometheus 2.42). */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { ALERT_NAMES } from "../../../src/alerts/catalog.js";
import { REPO_ROOT } from "../../../src/alerts/generate.js";
import { run } from "../../../src/lab/proc.js";

const PROM_DIR = join(REPO_ROOT, "deploy/prometheus");
const tmp = mkdtempSync(join(tmpdir(), "pgfed-promtool-"));

afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("promtool", () => {
  it("check rules: pgfed-rules.yml is valid and has one rule per catalog alert", async () => {
    const { stdout } = await run("/usr/bin/promtool", ["check", "rules", join(PROM_DIR, "pgfed-rules.yml")], { timeoutMs: 30_000 });
    expect(stdout).toContain(`SUCCESS: ${ALERT_NAMES.length} rules found`);
  });

  it("check rules: the PrometheusRule's spec is valid Prometheus rules too", async () => {
    const rule = parse(readFileSync(join(PROM_DIR, "pgfed-prometheusrule.yaml"), "utf8")) as { spec: { groups: unknown } };
    const file = join(tmp, "from-prometheusrule.yml");
    writeFileSync(file, stringify({ groups: rule.spec.groups }));
    const { stdout } = await run("/usr/bin/promtool", ["check", "rules", file], { timeoutMs: 30_000 });
    expect(stdout).toContain(`SUCCESS: ${ALERT_NAMES.length} rules found`);
  });

  it("test rules: every alert fires when it should and not otherwise, idle primary with an old archive included", async () => {
    const { stdout } = await run("/usr/bin/promtool", ["test", "rules", "pgfed-rules.test.yml"], { cwd: PROM_DIR, timeoutMs: 60_000 });
    expect(stdout).toContain("SUCCESS");
  });

  it("test rules fails when an expectation is wrong (the tests can fail)", async () => {
    const tests = readFileSync(join(PROM_DIR, "pgfed-rules.test.yml"), "utf8").replace("exposure 41 s exceeds", "exposure 42 s exceeds");
    writeFileSync(join(tmp, "pgfed-rules.yml"), readFileSync(join(PROM_DIR, "pgfed-rules.yml")));
    writeFileSync(join(tmp, "broken.test.yml"), tests);
    await expect(run("/usr/bin/promtool", ["test", "rules", "broken.test.yml"], { cwd: tmp, timeoutMs: 60_000 })).rejects.toThrow(/FAILED/);
  });
});
