import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfigText, walSwitchAfterMs } from "../../../src/config.js";
import { formatDurationMs, parseDurationMs } from "../../../src/duration.js";

const example = readFileSync(new URL("../../../deploy/examples/pgfed.yaml", import.meta.url), "utf8");

function problemsOf(text: string): string[] {
  try {
    parseConfigText(text, "test.yaml");
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.path}: ${p.message}`);
    throw e;
  }
  return [];
}

describe("config", () => {
  it("accepts the documented example and parses durations at the edge", () => {
    const cfg = parseConfigText(example);
    const orders = cfg.federations[0]!;
    expect(orders.rpo.budget).toBe(30_000);
    expect(orders.failover).toEqual({ mode: "automatic", leaseTtl: 10_000, clockSkewMargin: 2_000 });
    expect(orders.sampleInterval).toBe(1_000);
    expect(walSwitchAfterMs(orders)).toBe(10_000);
  });

  it("takes an absolute http(s) alerts.runbookBaseUrl and names the path of any other", () => {
    const withBase = (v: string) => example.replace("alerts: { alertmanager: { url: http://alertmanager:9093 } }", `alerts: { alertmanager: { url: http://alertmanager:9093 }, runbookBaseUrl: "${v}" }`);
    expect(parseConfigText(withBase("https://docs.example.com/pgfed/alerts.md")).alerts.runbookBaseUrl).toBe("https://docs.example.com/pgfed/alerts.md");
    expect(problemsOf(withBase("docs/alerts.md")).some((p) => p.startsWith("alerts.runbookBaseUrl:"))).toBe(true);
    expect(problemsOf(withBase("ftp://docs.example.com/alerts.md")).some((p) => p.startsWith("alerts.runbookBaseUrl:"))).toBe(true);
  });

  it("names the path of an unknown region", () => {
    const bad = example.replace("region: us-east, namespace", "region: eu-wst, namespace");
    expect(problemsOf(bad)).toContain('federations[0].members[1].region: unknown region "eu-wst" (known: "eu-west", "us-east")');
  });

  it("names the path of a bad duration", () => {
    const bad = example.replace("budget: 30s", "budget: 30 seconds");
    expect(problemsOf(bad)).toEqual([expect.stringMatching(/^federations\[0\]\.rpo\.budget: invalid duration "30 seconds"/)]);
  });

  it("refuses duplicate members, federations and shared clusters", () => {
    const dupMember = example.replace("name: pg-us, region", "name: pg-eu, region");
    expect(problemsOf(dupMember)).toContain('federations[0].members[1].name: duplicate member "pg-eu" in federation "orders"');
    const twoFeds = example.replace("regions:", example.slice(example.indexOf("  - name: orders"), example.indexOf("regions:")) + "regions:");
    const problems = problemsOf(twoFeds);
    expect(problems).toContain('federations[1].name: duplicate federation "orders"');
    expect(problems).toContain('federations[1].members[0].cluster: cluster eu-west/db/pg-eu is already a member of federation "orders"');
  });

  it("refuses unknown keys and a federation of one", () => {
    expect(problemsOf(example.replace("rpo: {", "rop: {"))).toContain('federations[0]: Unrecognized key: "rop"');
    const one = example.replace(/ {6}- \{ name: pg-us.*\n/, "");
    expect(problemsOf(one)).toContain("federations[0].members: a federation needs at least two members");
  });

  it("reports YAML syntax errors with a line", () => {
    expect(problemsOf("federations: [\n")[0]).toMatch(/^line \d+: /);
  });
});

describe("durations", () => {
  it("parses and formats", () => {
    expect(parseDurationMs("1m30s")).toBe(90_000);
    expect(parseDurationMs("250ms")).toBe(250);
    expect(() => parseDurationMs("5 minutes")).toThrow(/invalid duration/);
    expect(formatDurationMs(41_000)).toBe("41.0s");
    expect(formatDurationMs(245_000)).toBe("4m05s");
  });
});
