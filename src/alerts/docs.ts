/**
 * docs/alerts.md, rendered from the catalog so the runbook, the rules and the engine never
 * disagree: one section per alert, anchored by the alert name in lower case (the `runbook_url`).
 */
import { ALERT_NAMES, ALERTS, alertsMarkdownTable, docsLinks, type AlertDefinition } from "./catalog.js";
import { promDuration } from "./rules.js";

/** A template as a reader sees it: `{federation}` → `<federation>`, fallbacks as written. */
function placeholders(template: string): string {
  return template.replace(/\{([a-z_]+)(?:\|([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => fallback ?? `<${name}>`);
}

function section(def: AlertDefinition): string {
  const anchor = def.name.toLowerCase();
  const hysteresis =
    `fires after the condition held for ${promDuration(def.forMs)}` +
    (def.clearForMs > 0 ? `, resolves after it was clear for ${promDuration(def.clearForMs)}` : ", resolves as soon as it is clear");
  return [
    `<a id="${anchor}"></a>`,
    `## ${def.name}`,
    "",
    `**Severity:** ${def.severity} · **Labels:** ${["alertname", ...def.keyLabels, ...(def.infoLabels ?? []), "severity"].join(", ")} · ${hysteresis}`,
    "",
    `**When it fires:** ${def.whenFires}.`,
    "",
    `**Summary:** ${placeholders(def.summary)}`,
    "",
    `**What it means:** ${placeholders(def.description)}`,
    "",
    `**What to do:** ${docsLinks(def.whatToDo, "")}`,
    "",
    "**Run first:**",
    "",
    "```sh",
    placeholders(def.command),
    "```",
    "",
    "**Rule:**",
    "",
    "```promql",
    def.expr,
    "```",
    "",
  ].join("\n");
}

export function renderAlertsDoc(): string {
  return [
    "# pgfed alerts",
    "",
    "<!-- Generated from src/alerts/catalog.ts by `npx tsx src/alerts/generate.ts`; do not edit by hand. -->",
    "",
    "pgfed raises these alerts itself (the coordinator's alert engine, pushed to Alertmanager,",
    "PagerDuty or a webhook) and ships the same alerts as Prometheus rules",
    "(`deploy/prometheus/pgfed-rules.yml`, or `pgfed-prometheusrule.yaml` for the prometheus-operator).",
    "Every alert carries the labels `alertname`, `severity` (`page`, `critical`, `warning`) and",
    "`federation`, `member`, `region` where they apply, and the annotations `summary` (with the numbers),",
    "`description`, `command` (the command to run first) and `runbook_url` (a section below).",
    "In the Prometheus rules the `runbook_url` is absolute: the URL in `deploy/prometheus/runbook-base-url`",
    "(where you publish this page; replace the example's and regenerate) plus the alert's anchor, so links",
    "in PagerDuty or Slack work. The alerts the coordinator pushes itself carry the relative",
    "`docs/alerts.md#<anchor>`.",
    "",
    alertsMarkdownTable("").trimEnd(),
    "",
    "## How pgfed delivers alerts",
    "",
    "- **Who raises them.** The leading coordinator only: after every evaluation pass of a federation",
    "  (4 per second; once a second for a healthy federation with no new input) it observes every alert instance and feeds its alert engine; a coordinator that",
    "  steps down forgets its alerts, stops re-sending them and clears its exposure gauges. Hysteresis is",
    "  the catalog's below, overridable per alert. `PgfedCoordinatorLeaderless` and `PgfedBusPermissionDenied` are raised by Prometheus",
    "  only (a coordinator without the lease is the one that must not judge; every process counts its own refused publishes). pgfed's own alerts carry no",
    "  `job` label; the same alerts from Prometheus do, so Alertmanager shows them as separate alerts —",
    "  route or inhibit one source if you run both.",
    "- **Hysteresis.** A condition must hold for the alert's `for` time (and at least two samples) before",
    "  it fires, and a firing alert must be clear for its `keep_firing_for` time before it resolves, so",
    "  an exposure that goes up and down on an idle database does not flap. An idle primary has zero",
    "  exposure however old its last archived segment is: it raises nothing.",
    "- **Never blocking.** Raising an alert appends to an in-memory queue per notifier and returns; a",
    "  worker delivers in order with exponential backoff and jitter (0.5 s doubling up to 30 s, 6 attempts;",
    "  429, 5xx and network errors are retried, other 4xx are not).",
    "- **Bounded queue.** Each notifier keeps at most 1000 deliveries. When a receiver is down long enough",
    "  for the queue to fill, the *oldest* delivery is dropped and counted in",
    "  `pgfed_alert_notifications_dropped_total{notifier}`; firing alerts are re-sent anyway.",
    "  Delivery is visible in `pgfed_alert_notifications_total{notifier,result}` (result = success, retry,",
    "  failed) and `pgfed_alert_queue_depth{notifier}`.",
    "- **Alertmanager** (API v2): firing alerts are re-sent every minute with `endsAt` four minutes ahead,",
    "  so Alertmanager resolves them by itself if pgfed goes away; a resolved alert is sent with `endsAt`",
    "  = the time its condition cleared.",
    "- **PagerDuty** (Events API v2): `dedup_key` is a hash of the alert name and labels, the same for every",
    "  re-send of one alert instance (firing alerts are re-sent every 5 minutes); resolving sends",
    "  `event_action: resolve` with that key. Severity",
    "  `page` → `critical`, `critical` → `error`, `warning` → `warning`. The routing key is read from an",
    "  environment variable, a file or the config (`alerts.pagerduty.routingKey: {env|file|value}`).",
    "- **Webhook:** the alert as JSON plus a Slack-compatible `text` line.",
    "- **Silences:** pgfed does not implement silencing. Silence pgfed's alerts in Alertmanager like any",
    "  other alert (`amtool silence add alertname=PgfedReplicaStalled federation=orders`); deliveries to",
    "  PagerDuty and webhooks are not silenced by pgfed — route through Alertmanager if you need silences.",
    "- **Inhibition (suggested Alertmanager config):** let `PgfedRPOBudgetExceeded` inhibit",
    "  `PgfedRPOBudgetWarning` for the same `federation`, and `PgfedNoPrimary` inhibit `PgfedMemberUnreachable`.",
    "",
    ...ALERT_NAMES.map((n) => section(ALERTS[n])),
  ].join("\n");
}
