/**
 * The Prometheus side of the catalog: the rule group Prometheus evaluates (deploy/prometheus/
 * pgfed-rules.yml) and the same group as a prometheus-operator PrometheusRule
 * (pgfed-prometheusrule.yaml). Both are rendered from `ALERTS` by `generate.ts`; a unit test
 * checks the committed files equal what this module renders.
 */
import { stringify } from "yaml";
import { ALERT_NAMES, ALERTS, DEFAULT_RUNBOOK_BASE_URL, runbookUrl, toGoTemplate } from "./catalog.js";

export interface PrometheusAlertingRule {
  alert: string;
  expr: string;
  for: string;
  keep_firing_for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface PrometheusRuleGroup {
  name: string;
  rules: PrometheusAlertingRule[];
}

/** Milliseconds as a Prometheus duration: 0s, 10s, 1m, 1m30s. */
export function promDuration(ms: number): string {
  const s = Math.round(ms / 1_000);
  if (s === 0) return "0s";
  const m = Math.floor(s / 60);
  const rest = s % 60;
  if (m === 0) return `${rest}s`;
  return rest === 0 ? `${m}m` : `${m}m${rest}s`;
}

export function prometheusRuleGroups(runbookBaseUrl: string = DEFAULT_RUNBOOK_BASE_URL): PrometheusRuleGroup[] {
  return [
    {
      name: "pgfed",
      rules: ALERT_NAMES.map((name) => {
        const def = ALERTS[name];
        return {
          alert: name,
          expr: def.expr,
          for: promDuration(def.forMs),
          ...(def.clearForMs > 0 ? { keep_firing_for: promDuration(def.clearForMs) } : {}),
          labels: { severity: def.severity },
          annotations: {
            summary: toGoTemplate(def.summary, def),
            description: toGoTemplate(def.description, def),
            command: toGoTemplate(def.command, def),
            runbook_url: runbookUrl(name, runbookBaseUrl),
          },
        };
      }),
    },
  ];
}

const HEADER = (what: string): string =>
  `# ${what}\n# Generated from src/alerts/catalog.ts by \`npx tsx src/alerts/generate.ts\`; do not edit by hand.\n`;

export function renderRulesFile(runbookBaseUrl?: string): string {
  return HEADER("pgfed alerting rules for Prometheus (rule_files).") + stringify({ groups: prometheusRuleGroups(runbookBaseUrl) }, { lineWidth: 0 });
}

export function renderPrometheusRule(runbookBaseUrl?: string): string {
  const doc = {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: {
      name: "pgfed",
      // Match your Prometheus' ruleSelector (kube-prometheus-stack selects on `release: <name>`).
      labels: { "app.kubernetes.io/name": "pgfed", "app.kubernetes.io/component": "alerting" },
    },
    spec: { groups: prometheusRuleGroups(runbookBaseUrl) },
  };
  return HEADER("pgfed alerting rules as a prometheus-operator PrometheusRule (same rules as pgfed-rules.yml).") + stringify(doc, { lineWidth: 0 });
}
