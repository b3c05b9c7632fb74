/**
 * promtool unit tests for the rules (deploy/prometheus/pgfed-rules.test.yml), written as data so
 * the expected annotations are rendered by pgfed's own template renderer: `promtool test rules`
 * passing proves the Go templates in the rules print the same sentences as the engine does.
 * Each alert has a case where it fires and one where it must not; the idle primary with an old
 * archive must raise nothing at all.
 */
import { stringify } from "yaml";
import { ALERT_NAMES, ALERTS, DEFAULT_RUNBOOK_BASE_URL, renderAnnotations, type AlertName, type AlertValues, type Labels } from "./catalog.js";

const TARGET = { job: "pgfed", instance: "pgfed-0:9187" };
const ORDERS = { federation: "orders" };
const BILLING = { federation: "billing" };
const PAYMENTS = { federation: "payments" };
const EU = { federation: "orders", member: "pg-eu", region: "eu-west" };
const US = { federation: "orders", member: "pg-us", region: "us-east" };

interface Series {
  metric: string;
  labels: Labels;
  values: string;
}

interface Expect {
  alert: AlertName;
  evalAt: string;
  /** Instances expected to fire at `evalAt` (exactly these); empty = must not fire. */
  firing: { labels: Labels; values: AlertValues }[];
}

export interface RuleTestCase {
  name: string;
  series: Series[];
  expect: Expect[];
}

const s = (metric: string, labels: Labels, values: string): Series => ({ metric, labels, values });
const none = (alert: AlertName, evalAt: string): Expect => ({ alert, evalAt, firing: [] });

/** 5 s between samples in every case (`interval`). */
export const RULE_TEST_INTERVAL = "5s";

export const RULE_TEST_CASES: RuleTestCase[] = [
  {
    name: "exposure past the warn fraction warns (default fraction 0.5 when not exported) but does not page",
    series: [
      s("pgfed_exposure_seconds", ORDERS, "16x40"),
      s("pgfed_rpo_budget_seconds", ORDERS, "30x40"),
      s("pgfed_rpo_warn_fraction", ORDERS, "0.5x40"),
      s("pgfed_exposure_seconds", BILLING, "20x40"),
      s("pgfed_rpo_budget_seconds", BILLING, "30x40"),
      s("pgfed_exposure_seconds", PAYMENTS, "20x40"),
      s("pgfed_rpo_budget_seconds", PAYMENTS, "30x40"),
      s("pgfed_rpo_warn_fraction", PAYMENTS, "0.8x40"),
    ],
    expect: [
      none("PgfedRPOBudgetWarning", "25s"),
      {
        alert: "PgfedRPOBudgetWarning",
        evalAt: "1m",
        firing: [
          { labels: ORDERS, values: { exposure_s: 16, budget_s: 30, warn_pct: 50 } },
          { labels: BILLING, values: { exposure_s: 20, budget_s: 30, warn_pct: 50 } },
        ],
      },
      none("PgfedRPOBudgetExceeded", "1m"),
    ],
  },
  {
    name: "exposure over the budget pages after 10 s; equal to the budget does not",
    series: [
      s("pgfed_exposure_seconds", ORDERS, "41x40"),
      s("pgfed_exposure_bytes", ORDERS, "16777216x40"),
      s("pgfed_rpo_budget_seconds", ORDERS, "30x40"),
      s("pgfed_exposure_seconds", BILLING, "30x40"),
      s("pgfed_rpo_budget_seconds", BILLING, "30x40"),
    ],
    expect: [
      none("PgfedRPOBudgetExceeded", "5s"),
      {
        alert: "PgfedRPOBudgetExceeded",
        evalAt: "30s",
        firing: [{ labels: ORDERS, values: { exposure_s: 41, budget_s: 30, exposure_bytes: 16777216 } }],
      },
    ],
  },
  {
    name: "a 5 s spike of exposure over the budget does not page",
    series: [s("pgfed_exposure_seconds", ORDERS, "41 41 0x40"), s("pgfed_rpo_budget_seconds", ORDERS, "30x40")],
    expect: [none("PgfedRPOBudgetExceeded", "10s"), none("PgfedRPOBudgetExceeded", "1m")],
  },
  {
    name: "an idle primary with an old archive raises nothing",
    series: [
      s("pgfed_exposure_seconds", ORDERS, "0x200"),
      s("pgfed_exposure_bytes", ORDERS, "0x200"),
      s("pgfed_worst_case_exposure_seconds", ORDERS, "1x200"),
      s("pgfed_rpo_budget_seconds", ORDERS, "30x200"),
      s("pgfed_rpo_warn_fraction", ORDERS, "0.5x200"),
      // Last archived segment at Unix time 1: far older than any budget.
      s("pgfed_archive_last_success_timestamp_seconds", EU, "1x200"),
      s("pgfed_archive_failing", EU, "0x200"),
      s("pgfed_member_up", EU, "1x200"),
      s("pgfed_member_up", US, "1x200"),
      s("pgfed_replica_lag_seconds", US, "0x200"),
      s("pgfed_replica_lag_bytes", US, "0x200"),
      s("pgfed_replica_stalled", US, "0x200"),
      s("pgfed_sample_errors_total", EU, "0x200"),
      s("pgfed_primaries_writable", ORDERS, "1x200"),
      s("pgfed_failover_awaiting_approval", ORDERS, "0x200"),
      s("pgfed_operations_failed_total", { ...ORDERS, kind: "switchover" }, "0x200"),
      s("pgfed_coordinator_leader", {}, "1x200"),
    ],
    expect: ALERT_NAMES.map((a) => none(a, "15m")),
  },
  {
    name: "WAL archiving failing for 1 m fires; a 15 s blip does not",
    series: [
      s("pgfed_archive_failing", EU, "1x40"),
      s("pgfed_archive_last_success_timestamp_seconds", EU, "0x40"),
      s("pgfed_archive_failing", US, "1 1 1 0x40"),
      s("pgfed_archive_last_success_timestamp_seconds", US, "0x40"),
    ],
    expect: [
      none("PgfedWALArchivingFailing", "30s"),
      { alert: "PgfedWALArchivingFailing", evalAt: "2m", firing: [{ labels: EU, values: { archive_age_s: 120 } }] },
    ],
  },
  {
    name: "a replica that stopped advancing for 1 m fires",
    series: [
      s("pgfed_replica_stalled", US, "1x40"),
      s("pgfed_replica_lag_seconds", US, "95x40"),
      s("pgfed_replica_lag_bytes", US, "16777216x40"),
      s("pgfed_replica_stalled", EU, "0x40"),
    ],
    expect: [
      none("PgfedReplicaStalled", "30s"),
      { alert: "PgfedReplicaStalled", evalAt: "2m", firing: [{ labels: US, values: { lag_s: 95, lag_bytes: 16777216 } }] },
    ],
  },
  {
    name: "a member that cannot be sampled for 30 s fires; a 10 s gap does not",
    series: [
      s("pgfed_member_up", US, "0x40"),
      s("pgfed_sample_errors_total", US, "0+1x40"),
      s("pgfed_member_up", EU, "1 0 0 1x40"),
      s("pgfed_sample_errors_total", EU, "0 1 2 2x40"),
    ],
    expect: [
      none("PgfedMemberUnreachable", "20s"),
      { alert: "PgfedMemberUnreachable", evalAt: "2m", firing: [{ labels: US, values: { errors: 24 } }] },
    ],
  },
  {
    name: "a silent agent beside a healthy primary fires at once and resolves when the agent is back",
    series: [s("pgfed_agent_silent_seconds", EU, "_ _ 12 13 14 stale _x20")],
    expect: [
      none("PgfedAgentDown", "5s"),
      { alert: "PgfedAgentDown", evalAt: "10s", firing: [{ labels: EU, values: { silent_s: 12 } }] },
      none("PgfedAgentDown", "1m"),
    ],
  },
  {
    name: "a failover waiting for approval pages at once",
    series: [
      s("pgfed_failover_awaiting_approval", ORDERS, "0 0 1x20"),
      s("pgfed_worst_case_exposure_seconds", ORDERS, "41x20"),
      s("pgfed_rpo_budget_seconds", ORDERS, "30x20"),
      s("pgfed_failover_awaiting_approval", BILLING, "0x20"),
    ],
    expect: [
      none("PgfedFailoverAwaitingApproval", "5s"),
      { alert: "PgfedFailoverAwaitingApproval", evalAt: "10s", firing: [{ labels: ORDERS, values: { worst_case_s: 41, budget_s: 30 } }] },
    ],
  },
  {
    name: "two writable primaries page at once; one is normal",
    series: [s("pgfed_primaries_writable", ORDERS, "2x20"), s("pgfed_primaries_writable", BILLING, "1x20"), s("pgfed_coordinator_leader", {}, "1x20")],
    expect: [
      { alert: "PgfedSplitBrainSuspected", evalAt: "0s", firing: [{ labels: ORDERS, values: { primaries: 2 } }] },
      none("PgfedNoPrimary", "1m"),
    ],
  },
  {
    name: "no writable primary for 30 s pages",
    series: [
      s("pgfed_primaries_writable", ORDERS, "0x20"),
      s("pgfed_worst_case_exposure_seconds", ORDERS, "12x20"),
      s("pgfed_primaries_writable", BILLING, "1 0 1x20"),
    ],
    expect: [
      none("PgfedNoPrimary", "20s"),
      { alert: "PgfedNoPrimary", evalAt: "1m", firing: [{ labels: ORDERS, values: { worst_case_s: 12 } }] },
      none("PgfedSplitBrainSuspected", "1m"),
    ],
  },
  {
    name: "a failed operation fires for 15 minutes",
    series: [
      s("pgfed_operations_failed_total", { ...ORDERS, kind: "failover" }, "0x5 1x400"),
      s("pgfed_operations_failed_total", { ...ORDERS, kind: "switchover" }, "0x400"),
    ],
    expect: [
      { alert: "PgfedOperationFailed", evalAt: "1m", firing: [{ labels: { ...ORDERS, kind: "failover" }, values: { failures: 1 } }] },
      none("PgfedOperationFailed", "30m"),
    ],
  },
  {
    name: "a topology changed by another field manager fires at once, names the manager, and resolves when the operator resumes",
    series: [
      s("pgfed_topology_changed_outside", { federation: "orders", member: "pg-us", manager: "argocd-controller" }, "_ _ 1x4 stale _x20"),
      s("pgfed_topology_changed_outside", { federation: "billing", member: "pg-eu", manager: "kubectl-edit" }, "_x20"),
    ],
    expect: [
      none("PgfedTopologyChangedOutside", "5s"),
      {
        alert: "PgfedTopologyChangedOutside",
        evalAt: "10s",
        firing: [{ labels: { federation: "orders", member: "pg-us", manager: "argocd-controller" }, values: {} }],
      },
      none("PgfedTopologyChangedOutside", "1m"),
    ],
  },
  {
    name: "no coordinator leader for 30 s fires, also when no coordinator reports at all",
    series: [s("pgfed_coordinator_leader", { instance: "a" }, "1 1 0x40"), s("pgfed_coordinator_leader", { instance: "b" }, "0x40")],
    expect: [
      none("PgfedCoordinatorLeaderless", "30s"),
      { alert: "PgfedCoordinatorLeaderless", evalAt: "1m", firing: [{ labels: {}, values: { coordinators: 2 } }] },
    ],
  },
  {
    name: "a command refused for its proof of sender fires at once for that member, summed over reasons, for 15 minutes",
    series: [
      s("pgfed_commands_rejected_total", { ...ORDERS, member: "pg-us", reason: "unsigned" }, "0x20 1x400"),
      s("pgfed_commands_rejected_total", { ...ORDERS, member: "pg-us", reason: "bad_signature" }, "0x20 1x400"),
      s("pgfed_commands_rejected_total", { ...ORDERS, member: "pg-eu", reason: "unsigned" }, "0x400"),
    ],
    expect: [
      none("PgfedCommandRejected", "1m"),
      { alert: "PgfedCommandRejected", evalAt: "7m", firing: [{ labels: { ...ORDERS, member: "pg-us" }, values: { rejected: 2 } }] },
      none("PgfedCommandRejected", "30m"),
    ],
  },
  {
    name: "a publish the NATS server refused fires per operation, summed over processes",
    series: [
      s("pgfed_bus_permission_violations_total", { instance: "agent-eu", operation: "publish" }, "0x5 1x400"),
      s("pgfed_bus_permission_violations_total", { instance: "agent-us", operation: "publish" }, "0x5 2x400"),
      s("pgfed_bus_permission_violations_total", { instance: "agent-us", operation: "subscription" }, "0x400"),
    ],
    expect: [
      { alert: "PgfedBusPermissionDenied", evalAt: "7m", firing: [{ labels: { operation: "publish" }, values: { violations: 3 } }] },
      none("PgfedBusPermissionDenied", "30m"),
    ],
  },
  {
    name: "no coordinator metrics at all is leaderless too",
    series: [s("pgfed_member_up", EU, "1x40")],
    expect: [{ alert: "PgfedCoordinatorLeaderless", evalAt: "1m", firing: [{ labels: {}, values: { coordinators: 0 } }] }],
  },
];

function selector(x: Series): string {
  const labels: Record<string, string> = { ...TARGET, ...x.labels };
  const inner = Object.entries(labels)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(",");
  return `${x.metric}{${inner}}`;
}

/** Alert labels Prometheus produces: the expression's labels (with the scrape target's) and severity. */
function expectedLabels(alert: AlertName, labels: Labels): Record<string, string> {
  const def = ALERTS[alert];
  // Aggregations (sum/absent, `sum by (…)`) drop every label they do not keep.
  const aggregated = def.keyLabels.length === 0 || /\b(?:sum|count|min|max|avg) by\b/.test(def.expr);
  const target = aggregated ? {} : TARGET;
  return { ...target, ...labels, severity: def.severity };
}

export function renderRuleTests(rulesFile = "pgfed-rules.yml", runbookBaseUrl: string = DEFAULT_RUNBOOK_BASE_URL): string {
  const doc = {
    rule_files: [rulesFile],
    evaluation_interval: RULE_TEST_INTERVAL,
    tests: RULE_TEST_CASES.map((c) => ({
      name: c.name,
      interval: RULE_TEST_INTERVAL,
      input_series: c.series.map((x) => ({ series: selector(x), values: x.values })),
      alert_rule_test: c.expect.map((e) => ({
        eval_time: e.evalAt,
        alertname: e.alert,
        exp_alerts: e.firing.map((f) => ({
          exp_labels: expectedLabels(e.alert, f.labels),
          exp_annotations: { ...renderAnnotations(ALERTS[e.alert], f.labels, f.values, runbookBaseUrl) },
        })),
      })),
    })),
  };
  return (
    "# promtool unit tests for pgfed-rules.yml: `promtool test rules pgfed-rules.test.yml`.\n" +
    "# Generated from src/alerts/rule-tests.ts by `npx tsx src/alerts/generate.ts`; do not edit by hand.\n" +
    stringify(doc, { lineWidth: 0 })
  );
}
