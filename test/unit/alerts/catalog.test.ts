import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ALERT_NAMES, ALERTS, alertsMarkdownTable, docsLinks, humanize1024, renderAnnotations, runbookUrl, toGoTemplate } from "../../../src/alerts/catalog.js";
import { generatedFiles, REPO_ROOT, runbookBaseUrl } from "../../../src/alerts/generate.js";
import { ALL_PGFED_METRICS, metricsInExpr, PGFED_METRIC_NAMES } from "../../../src/alerts/metric-names.js";
import { prometheusRuleGroups, promDuration } from "../../../src/alerts/rules.js";
import { createContextAlertMetrics, createCoordinatorMetrics } from "../../../src/coordinator/metrics.js";
import { createMetrics, createRegistry } from "../../../src/metrics.js";

describe("alert catalog", () => {
  it("has the fourteen alerts, each with severity, texts, a command and a runbook anchor", () => {
    expect(ALERT_NAMES).toHaveLength(14);
    for (const name of ALERT_NAMES) {
      const a = ALERTS[name];
      expect(a.name).toBe(name);
      expect(["warning", "critical", "page"]).toContain(a.severity);
      expect(a.command, `${name}: a pgfed or kubectl command`).toMatch(/^(pgfed|kubectl) /);
      expect(runbookUrl(name, "https://example.org/alerts.md")).toBe(`https://example.org/alerts.md#${name.toLowerCase()}`);
      // Every placeholder is a key label, a declared value, or has a fallback.
      for (const text of [a.summary, a.description, a.command])
        for (const m of text.matchAll(/\{([a-z_]+)(\|[^}]*)?\}/g)) {
          const known = a.keyLabels.includes(m[1] ?? "") || a.infoLabels?.includes(m[1] ?? "") === true || (m[1] ?? "") in a.values || m[2] !== undefined;
          expect(known, `${name}: {${m[1]}}`).toBe(true);
        }
    }
  });

  it("renders the summary with the numbers, as on-call reads it", () => {
    const a = renderAnnotations(ALERTS.PgfedRPOBudgetExceeded, { federation: "orders" }, { exposure_s: 41.3, budget_s: 30, exposure_bytes: 3 * 1024 ** 3 });
    expect(a.summary).toBe("orders: exposure 41 s exceeds the RPO budget of 30 s");
    expect(a.description.startsWith("3GiB of committed WAL")).toBe(true);
    expect(renderAnnotations(ALERTS.PgfedNoPrimary, { federation: "orders" }, { target: "pg-us" }).command).toBe("pgfed failover orders --to pg-us");
  });

  it("humanize1024 matches Prometheus' humanize1024", () => {
    expect([0, 1, 1000, 1500, 1024 ** 2 * 16, 1024 ** 3 * 1.5].map(humanize1024)).toEqual(["0", "1", "1000", "1.465ki", "16Mi", "1.5Gi"]);
  });

  it("turns templates into Go templates for Prometheus", () => {
    expect(toGoTemplate(ALERTS.PgfedSplitBrainSuspected.summary, ALERTS.PgfedSplitBrainSuspected)).toBe(
      '{{ $labels.federation }}: {{ $value | printf "%.0f" }} members report themselves writable primaries',
    );
    expect(toGoTemplate(ALERTS.PgfedNoPrimary.command, ALERTS.PgfedNoPrimary)).toBe("pgfed failover {{ $labels.federation }} --to <member>");
  });

  it("split brain: the command is CNPG's fencing annotation for the member that is not the designated primary", () => {
    const def = ALERTS.PgfedSplitBrainSuspected;
    expect(renderAnnotations(def, { federation: "orders" }, { primaries: 2, region: "us-east", cluster: "pg-us", namespace: "db" }).command).toBe(
      `kubectl --context us-east annotate clusters.postgresql.cnpg.io pg-us -n db cnpg.io/fencedInstances='["*"]' --overwrite`,
    );
    expect(toGoTemplate(def.command, def)).toBe(`kubectl --context <region> annotate clusters.postgresql.cnpg.io <cluster> -n <namespace> cnpg.io/fencedInstances='["*"]' --overwrite`);
  });

  it("README table lists every alert with when it fires and what to do", () => {
    const table = alertsMarkdownTable();
    const lines = table.trimEnd().split("\n");
    expect(lines[0]).toBe("| alert | severity | when it fires | what to do |");
    expect(lines).toHaveLength(16);
    expect(lines[3]).toContain("[PgfedRPOBudgetExceeded](docs/alerts.md#pgfedrpobudgetexceeded) | page | exposure > the RPO budget for 10 s |");
    expect(table).toContain("Start with `pgfed approve <op>`");
  });

  it("topology changed outside: critical, keyed by federation and member, names the manager and says to resume", () => {
    const def = ALERTS.PgfedTopologyChangedOutside;
    expect([def.severity, def.keyLabels, def.infoLabels, def.forMs, def.clearForMs]).toEqual(["critical", ["federation", "member"], ["manager"], 0, 0]);
    const a = renderAnnotations(def, { federation: "orders", member: "pg-us", manager: "argocd-controller" }, {});
    expect(a.summary).toBe('orders/pg-us: spec.replica.primary was changed by field manager "argocd-controller", not by pgfed; automation of orders is paused');
    expect(a.description).toContain("paused automation for orders");
    expect(a.command).toBe("pgfed resume orders");
    expect(a.runbook_url).toBe("docs/alerts.md#pgfedtopologychangedoutside");
    // The manager is a label of the series, not a key: Prometheus prints it from $labels too.
    expect(toGoTemplate(def.summary, def)).toBe(
      '{{ $labels.federation }}/{{ $labels.member }}: spec.replica.primary was changed by field manager "{{ $labels.manager }}", not by pgfed; automation of {{ $labels.federation }} is paused',
    );
    for (const field of ["spec.replica.primary", "spec.replica.source", "spec.replica.promotionToken", "cnpg.io/fencedInstances", "pgfed resume <federation>"]) expect(def.whatToDo).toContain(field);
  });

  it("links to other docs are relative to the runbook's folder: docs/ from the README, none inside docs/alerts.md", () => {
    const link = "[GitOps and other writers](docs/operations.md#gitops-and-other-writers)";
    expect(ALERTS.PgfedTopologyChangedOutside.whatToDo).toContain(link);
    expect(docsLinks(link)).toBe(link);
    expect(docsLinks(link, "")).toBe("[GitOps and other writers](operations.md#gitops-and-other-writers)");
    expect(docsLinks(link, "https://example.org/pgfed/docs/alerts.md")).toBe("[GitOps and other writers](https://example.org/pgfed/docs/operations.md#gitops-and-other-writers)");
    expect(alertsMarkdownTable()).toContain("](docs/operations.md#gitops-and-other-writers)");
    expect(alertsMarkdownTable("")).toContain("](operations.md#gitops-and-other-writers)");
  });
});

describe("Prometheus rules", () => {
  const rulesText = readFileSync(join(REPO_ROOT, "deploy/prometheus/pgfed-rules.yml"), "utf8");
  const operatorText = readFileSync(join(REPO_ROOT, "deploy/prometheus/pgfed-prometheusrule.yaml"), "utf8");

  it("the committed generated files are up to date (npx tsx src/alerts/generate.ts)", () => {
    for (const [path, content] of Object.entries(generatedFiles())) expect(readFileSync(join(REPO_ROOT, path), "utf8"), path).toBe(content);
  });

  it("the PrometheusRule holds exactly the rules of pgfed-rules.yml", () => {
    const rules = parse(rulesText) as { groups: unknown };
    const operator = parse(operatorText) as { apiVersion: string; kind: string; metadata: { name: string }; spec: { groups: unknown } };
    expect(operator.apiVersion).toBe("monitoring.coreos.com/v1");
    expect(operator.kind).toBe("PrometheusRule");
    expect(operator.spec.groups).toEqual(rules.groups);
    expect(rules.groups).toEqual(prometheusRuleGroups(runbookBaseUrl()));
  });

  it("every rule has for:, severity, summary, description, command and runbook_url", () => {
    const [group] = prometheusRuleGroups();
    expect(group?.rules.map((r) => r.alert)).toEqual([...ALERT_NAMES]);
    for (const r of group?.rules ?? []) {
      expect(r.for).toMatch(/^\d+[sm]/);
      expect(Object.keys(r.annotations).sort()).toEqual(["command", "description", "runbook_url", "summary"]);
      expect(r.labels.severity).toBe(ALERTS[r.alert as (typeof ALERT_NAMES)[number]].severity);
    }
    expect([0, 10_000, 60_000, 90_000].map(promDuration)).toEqual(["0s", "10s", "1m", "1m30s"]);
  });

  it("rules reference only known pgfed metrics", () => {
    for (const name of ALERT_NAMES) {
      const def = ALERTS[name];
      const exprs = [def.expr, ...Object.values(def.values).map((v) => v.promql)];
      for (const e of exprs) for (const m of metricsInExpr(e)) expect(ALL_PGFED_METRICS.has(m), `${name}: ${m}`).toBe(true);
    }
  });

  it("the exposure metrics the rules use are the ones src/metrics.ts registers", async () => {
    const registered = new Set((await createMetrics().registry.getMetricsAsJSON()).map((m) => m.name));
    for (const m of PGFED_METRIC_NAMES.exposure) expect(registered, m).toContain(m);
  });

  it("the coordinator metrics the rules use are the ones src/coordinator/metrics.ts registers", async () => {
    const registry = createRegistry();
    createCoordinatorMetrics(registry);
    createContextAlertMetrics(registry);
    const registered = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    for (const m of PGFED_METRIC_NAMES.coordinator) expect(registered, m).toContain(m);
  });
});
