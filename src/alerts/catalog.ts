/**
 * The alert catalog: every alert pgfed raises (itself, through its engine) or Prometheus raises
 * (from deploy/prometheus/pgfed-rules.yml, generated from this file) is described here once: its
 * severity, how long the condition must hold, the PromQL, and the texts on-call reads.
 *
 * Texts are templates with `{name}` placeholders (`{name|fallback}` when the value may be missing):
 * a label (federation, member, region, kind) or a value (a number from the observation, or from
 * PromQL when Prometheus evaluates the rule). The same template renders in TypeScript
 * (`renderTemplate`) and as a Go template for Prometheus (`toGoTemplate`); the promtool tests
 * generated from `rule-tests.ts` prove both render the same sentence.
 */

export const ALERT_NAMES = [
  "PgfedRPOBudgetWarning",
  "PgfedRPOBudgetExceeded",
  "PgfedWALArchivingFailing",
  "PgfedReplicaStalled",
  "PgfedMemberUnreachable",
  "PgfedAgentDown",
  "PgfedFailoverAwaitingApproval",
  "PgfedSplitBrainSuspected",
  "PgfedOperationFailed",
  "PgfedNoPrimary",
  "PgfedCoordinatorLeaderless",
  "PgfedTopologyChangedOutside",
  "PgfedCommandRejected",
  "PgfedBusPermissionDenied",
] as const;

export type AlertName = (typeof ALERT_NAMES)[number];

/** `page` wakes someone up; `critical` needs action today; `warning` is a heads-up. */
export type Severity = "warning" | "critical" | "page";

/** How a number is shown: whole seconds/counts (`printf "%.0f"`), or bytes (`humanize1024`, e.g. 16Mi). */
export type ValueFormat = "seconds" | "count" | "bytes";

export interface AlertValue {
  /**
   * Where Prometheus finds the number: `$value` (the alert expression's value) or a PromQL query
   * in which `"{label}"` stands for the alert's label value, e.g. `pgfed_rpo_budget_seconds{federation="{federation}"}`.
   */
  promql: string;
  format: ValueFormat;
}

export interface AlertDefinition {
  name: AlertName;
  severity: Severity;
  /** Labels that tell two instances of the alert apart (besides alertname). */
  keyLabels: readonly string[];
  /**
   * Further labels of the expression's series that the texts show (Prometheus: `$labels.<name>`);
   * pgfed's engine receives them as labels of the observation too, so both carry the same labels.
   */
  infoLabels?: readonly string[];
  /** The condition must hold this long before the alert fires (Prometheus `for:`). */
  forMs: number;
  /** A firing alert must be clear this long before it resolves (Prometheus `keep_firing_for:`). */
  clearForMs: number;
  /** PromQL over pgfed's metrics; its value is `$value` in the templates. */
  expr: string;
  values: Readonly<Record<string, AlertValue>>;
  summary: string;
  description: string;
  /** The `pgfed` command on-call runs first. */
  command: string;
  /** For docs and the README table. */
  whenFires: string;
  whatToDo: string;
}

const SEC = 1_000;

/** Default base of `runbook_url`; the anchor is the alert name in lower case. */
export const DEFAULT_RUNBOOK_BASE_URL = "docs/alerts.md";

const FED_Q = (metric: string): string => `${metric}{federation="{federation}"}`;
const MEMBER_Q = (metric: string): string => `${metric}{federation="{federation}",member="{member}"}`;

export const ALERTS: Readonly<Record<AlertName, AlertDefinition>> = {
  PgfedRPOBudgetWarning: {
    name: "PgfedRPOBudgetWarning",
    severity: "warning",
    keyLabels: ["federation"],
    forMs: 30 * SEC,
    clearForMs: 30 * SEC,
    // Default warn fraction 0.5 when the coordinator does not export pgfed_rpo_warn_fraction.
    expr: "pgfed_exposure_seconds >= pgfed_rpo_budget_seconds * (pgfed_rpo_warn_fraction or pgfed_rpo_budget_seconds * 0 + 0.5)",
    values: {
      exposure_s: { promql: "$value", format: "seconds" },
      budget_s: { promql: FED_Q("pgfed_rpo_budget_seconds"), format: "seconds" },
      warn_pct: {
        promql: `100 * (${FED_Q("pgfed_rpo_warn_fraction")} or ${FED_Q("pgfed_rpo_budget_seconds")} * 0 + 0.5)`,
        format: "count",
      },
    },
    summary: "{federation}: exposure {exposure_s} s has passed {warn_pct}% of the RPO budget of {budget_s} s",
    description:
      "Committed WAL on the primary of {federation} that no replica could recover is {exposure_s} s old. If the primary were lost now, up to {exposure_s} s of commits would be lost; the budget is {budget_s} s.",
    command: "pgfed status {federation}",
    whenFires: "exposure ≥ the warn fraction (`rpo.warnAt`, default 0.5) of the RPO budget for 30 s",
    whatToDo:
      "Find the member that holds back the safe position (`pgfed status` shows lag per member and the archive age). Check the WAL archive (object store reachable, `archive_command` succeeding) and the replicas' network. Nothing is lost yet.",
  },
  PgfedRPOBudgetExceeded: {
    name: "PgfedRPOBudgetExceeded",
    severity: "page",
    keyLabels: ["federation"],
    forMs: 10 * SEC,
    clearForMs: 30 * SEC,
    expr: "pgfed_exposure_seconds > pgfed_rpo_budget_seconds",
    values: {
      exposure_s: { promql: "$value", format: "seconds" },
      budget_s: { promql: FED_Q("pgfed_rpo_budget_seconds"), format: "seconds" },
      exposure_bytes: { promql: FED_Q("pgfed_exposure_bytes"), format: "bytes" },
    },
    summary: "{federation}: exposure {exposure_s} s exceeds the RPO budget of {budget_s} s",
    description:
      "{exposure_bytes}B of committed WAL on the primary of {federation}, the oldest written {exposure_s} s ago, is on no replica and not in the archive. Losing the primary now loses more than the budget, so automatic failover would wait for approval.",
    command: "pgfed status {federation}",
    whenFires: "exposure > the RPO budget for 10 s",
    whatToDo:
      "Restore archiving or replication first (see PgfedWALArchivingFailing and PgfedReplicaStalled). Do not fail over unless the primary is really lost: a failover now loses more than the budget. If it is lost, decide with the figure from `pgfed status` and approve explicitly.",
  },
  PgfedWALArchivingFailing: {
    name: "PgfedWALArchivingFailing",
    severity: "critical",
    keyLabels: ["federation", "member", "region"],
    forMs: 60 * SEC,
    clearForMs: 60 * SEC,
    expr: "pgfed_archive_failing == 1",
    values: {
      archive_age_s: { promql: `time() - ${MEMBER_Q("pgfed_archive_last_success_timestamp_seconds")}`, format: "seconds" },
    },
    summary: "{federation}/{member}: WAL archiving is failing; the last successful archive was {archive_age_s} s ago",
    description:
      "archive_command of {member} in {region} fails (pg_stat_archiver failures rising, last failure newer than last success). WAL piles up on the primary and replicas fed from the archive fall behind.",
    command: "pgfed status {federation}",
    whenFires: "the member's archiver has been failing for 1 m (`pgfed_archive_failing` = 1)",
    whatToDo:
      "Read the Postgres log of the member for the archive_command error (credentials, bucket, network, full disk). Fix it; pgfed resolves the alert once archiving succeeds for 1 m. Watch the disk of the primary: unarchived WAL is kept.",
  },
  PgfedReplicaStalled: {
    name: "PgfedReplicaStalled",
    severity: "warning",
    keyLabels: ["federation", "member", "region"],
    forMs: 60 * SEC,
    clearForMs: 60 * SEC,
    expr: "pgfed_replica_stalled == 1",
    values: {
      lag_s: { promql: MEMBER_Q("pgfed_replica_lag_seconds"), format: "seconds" },
      lag_bytes: { promql: MEMBER_Q("pgfed_replica_lag_bytes"), format: "bytes" },
    },
    summary: "{federation}/{member}: replica is not advancing; it lags {lag_s} s ({lag_bytes}B) behind the primary",
    description:
      "The received/replayed position of {member} in {region} has not moved for several samples while the primary's has. It cannot be promoted without loss and does not protect the primary's WAL.",
    command: "pgfed status {federation}",
    whenFires: "the replica's position has not moved for 1 m while the primary's has (`pgfed_replica_stalled` = 1)",
    whatToDo:
      "Check the replica cluster in its region (`kubectl cnpg status`): streaming connection, restore_command errors, replay conflicts, disk. It is not a failover target until it catches up.",
  },
  PgfedMemberUnreachable: {
    name: "PgfedMemberUnreachable",
    severity: "critical",
    keyLabels: ["federation", "member", "region"],
    forMs: 30 * SEC,
    clearForMs: 30 * SEC,
    expr: "pgfed_member_up == 0",
    values: {
      errors: { promql: `round(increase(${MEMBER_Q("pgfed_sample_errors_total")}[5m]))`, format: "count" },
    },
    summary: "{federation}/{member} in {region} is unreachable: {errors} failed samples in the last 5 minutes",
    description:
      "pgfed cannot sample {member} in {region} (connect, query or Kubernetes API failures). If it is the primary, exposure is frozen at its last value and the worst case grows with time.",
    command: "pgfed status {federation}",
    whenFires: "the member's samples have failed for 30 s (`pgfed_member_up` = 0)",
    whatToDo:
      "Check the region: its Kubernetes API, the pgfed agent there, the member's Postgres. If the primary's region is lost, `pgfed status` shows the worst-case loss; failover follows the federation's mode (automatic within the budget, otherwise approval).",
  },
  PgfedAgentDown: {
    name: "PgfedAgentDown",
    severity: "critical",
    keyLabels: ["federation", "member", "region"],
    // The condition already includes a lease TTL of silence; an agent restart shorter than that raises nothing.
    forMs: 0,
    clearForMs: 0,
    expr: "pgfed_agent_silent_seconds > 0",
    values: { silent_s: { promql: "$value", format: "seconds" } },
    summary: "{federation}/{member}: the pgfed agent of {region} has been silent for {silent_s} s while {member} still serves as primary; no failover",
    description:
      "No heartbeat or observation comes from the agent of {region}, and the primary lease of {member} has lapsed, but {region}'s Kubernetes API shows {member} as the healthy, unfenced primary. pgfed does not fail over (that would make two writable primaries). Until the agent is back nothing renews the lease, nobody fences {member} if {region} is cut off, and its lag and exposure are not measured.",
    command: "pgfed status {federation}",
    whenFires: "the agent of the primary's region has been silent for longer than the lease TTL while that region's Kubernetes API, read by the coordinator, shows the primary healthy and unfenced (failover held back)",
    whatToDo:
      "Bring the agent of that region back (its pod, its NATS connection, its logs). The alert resolves as soon as the agent is heard again. If the primary's Postgres fails meanwhile, the coordinator fences it through the region's Kubernetes API and fails over; if that API stops answering too, the region counts as lost and the lease decides.",
  },
  PgfedFailoverAwaitingApproval: {
    name: "PgfedFailoverAwaitingApproval",
    severity: "page",
    keyLabels: ["federation"],
    forMs: 0,
    clearForMs: 0,
    expr: "pgfed_failover_awaiting_approval == 1",
    values: {
      worst_case_s: { promql: FED_Q("pgfed_worst_case_exposure_seconds"), format: "seconds" },
      budget_s: { promql: FED_Q("pgfed_rpo_budget_seconds"), format: "seconds" },
    },
    summary: "{federation}: failover waits for an operator; worst-case loss {worst_case_s} s (RPO budget {budget_s} s)",
    description:
      "The primary of {federation} is lost and pgfed will not promote on its own (manual mode, or the worst-case loss of {worst_case_s} s is beyond the budget of {budget_s} s). Writes are down until someone decides.",
    command: "pgfed approve {operation|<op>}",
    whenFires: "a failover operation is waiting for approval",
    whatToDo:
      "Confirm the old primary is really gone or fenced (`pgfed status`). Accept the loss shown and approve the operation, or bring the old primary back. The approval and the figure go to the audit trail.",
  },
  PgfedSplitBrainSuspected: {
    name: "PgfedSplitBrainSuspected",
    severity: "page",
    keyLabels: ["federation"],
    forMs: 0,
    clearForMs: 10 * SEC,
    expr: "pgfed_primaries_writable > 1",
    values: { primaries: { promql: "$value", format: "count" } },
    summary: "{federation}: {primaries} members report themselves writable primaries",
    description:
      "More than one member of {federation} accepts writes. Clients writing to both create diverging histories that cannot be merged.",
    // CNPG fencing (what pgfed's agents do themselves): the Postgres of every instance stops accepting writes.
    command: `kubectl --context {region|<region>} annotate clusters.postgresql.cnpg.io {cluster|<cluster>} -n {namespace|<namespace>} cnpg.io/fencedInstances='["*"]' --overwrite`,
    whenFires: "two or more members report themselves writable primaries",
    whatToDo:
      "Find the member that is not the designated primary of the current epoch (`pgfed status`) and fence it at once. Then find out which writes reached it; they are not on the designated primary.",
  },
  PgfedOperationFailed: {
    name: "PgfedOperationFailed",
    severity: "critical",
    keyLabels: ["federation", "kind"],
    forMs: 0,
    clearForMs: 0,
    expr: "increase(pgfed_operations_failed_total[15m]) > 0",
    values: { failures: { promql: "$value", format: "count" } },
    summary: "{federation}: {failures} {kind} operation(s) failed in the last 15 minutes",
    description:
      "A {kind} operation on {federation} ended in failure. The audit trail has the step it failed at and why; the federation may be half-way (e.g. old primary demoted, target not promoted).",
    command: "pgfed status {federation}",
    whenFires: "a switchover, failover or rejoin operation failed in the last 15 minutes",
    whatToDo:
      "Read the failed step in `pgfed status` (and the audit stream). Fix the cause and re-run the operation: every step is idempotent and resumes where it stopped. If the federation waits in `operatorRequired` (a failure after the promote, never undone), fix the Clusters by hand so that one member is the unfenced primary, then `pgfed resolve <federation> --primary <member>`.",
  },
  PgfedNoPrimary: {
    name: "PgfedNoPrimary",
    severity: "page",
    keyLabels: ["federation"],
    forMs: 30 * SEC,
    clearForMs: 10 * SEC,
    expr: "pgfed_primaries_writable == 0",
    values: { worst_case_s: { promql: FED_Q("pgfed_worst_case_exposure_seconds"), format: "seconds" } },
    summary: "{federation}: no member is a writable primary; worst-case loss so far {worst_case_s} s",
    description: "No member of {federation} accepts writes: the application is down for writes.",
    command: "pgfed failover {federation} --to {target|<member>}",
    whenFires: "no member has reported itself a writable primary for 30 s",
    whatToDo:
      "If a switchover or failover is running, let it finish (`pgfed status`). Otherwise check the designated primary; if its region is lost, fail over to the member with the least lag.",
  },
  PgfedCoordinatorLeaderless: {
    name: "PgfedCoordinatorLeaderless",
    severity: "critical",
    keyLabels: [],
    forMs: 30 * SEC,
    clearForMs: 10 * SEC,
    expr: "sum(pgfed_coordinator_leader) < 1 or absent(pgfed_coordinator_leader)",
    values: { coordinators: { promql: "count(pgfed_coordinator_leader) or vector(0)", format: "count" } },
    summary: "no pgfed coordinator is leader ({coordinators} coordinator instances reporting)",
    description:
      "No coordinator holds the leadership: nothing evaluates the RPO, raises alerts from pgfed itself or fails over. Agents keep fencing primaries that lose their lease.",
    command: "pgfed status",
    whenFires: "no coordinator instance has been leader for 30 s (raised by Prometheus only)",
    whatToDo:
      "Check the coordinator pods and their connection to NATS (leader election runs through the bus). A coordinator that cannot reach the bus cannot lead.",
  },
  PgfedTopologyChangedOutside: {
    name: "PgfedTopologyChangedOutside",
    severity: "critical",
    keyLabels: ["federation", "member"],
    infoLabels: ["manager"],
    // The federation machine keeps the alert in its context until an operator resumes: no hysteresis needed.
    forMs: 0,
    clearForMs: 0,
    expr: "pgfed_topology_changed_outside == 1",
    values: {},
    summary: '{federation}/{member}: spec.replica.primary was changed by field manager "{manager}", not by pgfed; automation of {federation} is paused',
    description:
      'Someone other than pgfed (field manager "{manager}": a person with kubectl, Argo CD, Flux) changed spec.replica.primary of the CNPG Cluster of {member} to a member that is not the designated primary. pgfed does not fight the change: it paused automation for {federation} (no automatic failover, no WAL switch, no repair of the topology) until an operator resumes it. Operator requests still run.',
    command: "pgfed resume {federation}",
    whenFires:
      "a field manager other than `pgfed` changed a member Cluster's `spec.replica.primary` to anything but the designated primary, and automation of the federation is paused (`pgfed_topology_changed_outside` = 1)",
    whatToDo:
      "Find who made the change: the field manager named in the alert (`kubectl get cluster -o yaml --show-managed-fields`; the audit stream has `topology.changed_outside` with the old and new value). Decide whether the change stands, then make the topology consistent: every member names one and the same primary (`pgfed resolve <federation> --primary <member>` if that primary changed). Then `pgfed resume <federation>`, which clears the alert. Configure the GitOps tool to ignore `spec.replica.primary`, `spec.replica.source`, `spec.replica.promotionToken` and the `cnpg.io/fencedInstances` annotation, or it undoes every switchover ([GitOps and other writers](docs/operations.md#gitops-and-other-writers)).",
  },
  PgfedCommandRejected: {
    name: "PgfedCommandRejected",
    severity: "page",
    keyLabels: ["federation", "member"],
    forMs: 0,
    clearForMs: 0,
    expr: "sum by (federation, member) (increase(pgfed_commands_rejected_total[15m])) > 0",
    values: { rejected: { promql: "$value", format: "count" } },
    summary: "{federation}/{member}: {rejected} command(s) refused by the agent in the last 15 minutes: their proof of sender failed",
    description:
      "The agent serving {member} received a command that was not signed by the leading coordinator (unsigned, signed by a key outside bus.coordinatorKeys, altered after signing, or signed by a coordinator that does not hold the coordinator lease) and refused it. Nothing was executed. Someone who can publish on NATS is trying to command an agent, or a coordinator is misconfigured.",
    command: "pgfed audit {federation} --since 1h",
    whenFires: "an agent refused a command to a member because its proof of sender failed, in the last 15 minutes",
    whatToDo:
      "Read the rejected command in the audit trail (`command.rejected`: reason, stream sequence) and the dead letter on `pgfed.dlq.unauthenticated` (it holds the whole message, with its `source` and signer). `unsigned` or `untrusted_signer`: someone with NATS credentials that allow publishing commands is not a pgfed coordinator: find the connection in the NATS server's logs and revoke that identity. `not_lease_holder`: a coordinator that does not lead sent it (check for a coordinator with a stale view). `bad_signature`: a command was altered in transit or forged. Rotate the affected identities ([Security model](docs/operations.md#security-model)).",
  },
  PgfedBusPermissionDenied: {
    name: "PgfedBusPermissionDenied",
    severity: "critical",
    keyLabels: ["operation"],
    forMs: 0,
    clearForMs: 0,
    expr: "sum by (operation) (increase(pgfed_bus_permission_violations_total[15m])) > 0",
    values: { violations: { promql: "$value", format: "count" } },
    summary: "the NATS server refused {violations} {operation}(s) of pgfed processes in the last 15 minutes for lack of permission",
    description:
      "A pgfed process (agent or coordinator) tried to {operation} on a subject its NATS identity may not use, and the server refused it. Either the server's authorization does not match the config (a member added to the config but not to the agent's permissions) or a process runs with the wrong identity.",
    command: "kubectl logs -l app.kubernetes.io/name=pgfed --since=15m | grep 'not permitted for this identity'",
    whenFires: "the NATS server refused a publish or subscription of a pgfed process in the last 15 minutes (raised by Prometheus only)",
    whatToDo:
      "The process's log names the subject and its identity. Render the authorization again from the current config (`pgfed nats authorization`), reload the NATS servers, and check that each pod mounts its own identity ([Security model](docs/operations.md#security-model)).",
  },
};

export type Labels = Readonly<Record<string, string>>;
export type AlertValues = Readonly<Record<string, number | string>>;

export function runbookUrl(name: AlertName, baseUrl: string = DEFAULT_RUNBOOK_BASE_URL): string {
  return `${baseUrl}#${name.toLowerCase()}`;
}

const PLACEHOLDER = /\{([a-z_]+)(?:\|([^}]*))?\}/g;
const BYTE_PREFIXES = ["", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];

/** Go's `%.4g` for the magnitudes we show (below 10 000): 4 significant digits, no trailing zeros. */
function fourSignificant(v: number): string {
  return String(Number(v.toPrecision(4)));
}

/** Prometheus' `humanize1024`: 16777216 → "16Mi", 1500 → "1.465ki". */
export function humanize1024(v: number): string {
  if (Math.abs(v) <= 1) return fourSignificant(v);
  let i = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && i < BYTE_PREFIXES.length - 1) {
    x /= 1024;
    i++;
  }
  return `${fourSignificant(x)}${BYTE_PREFIXES[i] ?? ""}`;
}

export function formatValue(v: number | string, format: ValueFormat | undefined): string {
  if (typeof v === "string") return v;
  if (!Number.isFinite(v)) return String(v);
  if (format === "bytes") return humanize1024(v);
  return String(Math.round(v));
}

/** Renders a catalog template with an alert instance's labels and values; unknown names print `?`. */
export function renderTemplate(template: string, def: AlertDefinition, labels: Labels, values: AlertValues): string {
  return template.replace(PLACEHOLDER, (_m, name: string, fallback: string | undefined) => {
    const label = labels[name];
    if (label !== undefined) return label;
    const value = values[name];
    if (value !== undefined) return formatValue(value, def.values[name]?.format);
    return fallback ?? "?";
  });
}

function goString(s: string): string {
  return JSON.stringify(s);
}

function goValue(value: AlertValue): string {
  const fmt = value.format === "bytes" ? "humanize1024" : 'printf "%.0f"';
  if (value.promql === "$value") return `{{ $value | ${fmt} }}`;
  const args: string[] = [];
  const format = value.promql.replace(/"\{([a-z_]+)\}"/g, (_m, label: string) => {
    args.push(`$labels.${label}`);
    return "%q";
  });
  const query = args.length === 0 ? `query ${goString(format)}` : `printf ${goString(format)} ${args.join(" ")} | query`;
  return `{{ with ${query} }}{{ . | first | value | ${fmt} }}{{ else }}?{{ end }}`;
}

/** The same template as a Prometheus (Go text/template) annotation. */
export function toGoTemplate(template: string, def: AlertDefinition): string {
  return template.replace(PLACEHOLDER, (_m, name: string, fallback: string | undefined) => {
    const value = def.values[name];
    if (value !== undefined) return goValue(value);
    if (def.keyLabels.includes(name) || def.infoLabels?.includes(name) === true) return `{{ $labels.${name} }}`;
    return fallback ?? "?";
  });
}

export interface RenderedAnnotations {
  summary: string;
  description: string;
  command: string;
  runbook_url: string;
}

export function renderAnnotations(def: AlertDefinition, labels: Labels, values: AlertValues, runbookBaseUrl?: string): RenderedAnnotations {
  return {
    summary: renderTemplate(def.summary, def, labels, values),
    description: renderTemplate(def.description, def, labels, values),
    command: renderTemplate(def.command, def, labels, values),
    runbook_url: runbookUrl(def.name, runbookBaseUrl),
  };
}

/**
 * Markdown links in catalog texts name repository paths (`](docs/operations.md#…)`); shown next to
 * the runbook they become relative to its folder: `docs/` from the README, none inside docs/alerts.md.
 */
export function docsLinks(text: string, runbookBaseUrl: string = DEFAULT_RUNBOOK_BASE_URL): string {
  const folder = runbookBaseUrl.slice(0, runbookBaseUrl.lastIndexOf("/") + 1);
  return text.replace(/\]\(docs\//g, `](${folder}`);
}

function escapeCell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** The README "Alerts" table: name (linked to its runbook section), when it fires, what to do. */
export function alertsMarkdownTable(runbookBaseUrl: string = DEFAULT_RUNBOOK_BASE_URL): string {
  const rows = ALERT_NAMES.map((n) => {
    const a = ALERTS[n];
    const command = a.command.replace(/\{([a-z_]+)(?:\|([^}]*))?\}/g, (_m, name: string, fallback: string | undefined) => fallback ?? `<${name}>`);
    return `| [${a.name}](${runbookUrl(a.name, runbookBaseUrl)}) | ${a.severity} | ${escapeCell(a.whenFires)} | ${escapeCell(docsLinks(a.whatToDo, runbookBaseUrl))} Start with \`${escapeCell(command)}\`. |`;
  });
  return ["| alert | severity | when it fires | what to do |", "|---|---|---|---|", ...rows].join("\n") + "\n";
}
