/**
 * Every pgfed metric the alert rules and the Grafana dashboard may use, by the module that
 * exports it. Tests check that rules and panels reference nothing else (a renamed metric would
 * otherwise leave an alert that can never fire).
 */
export const PGFED_METRIC_NAMES = {
  /** src/metrics.ts (exposure and sampling). */
  exposure: [
    "pgfed_exposure_seconds",
    "pgfed_exposure_bytes",
    "pgfed_worst_case_exposure_seconds",
    "pgfed_worst_case_exposure_bytes",
    "pgfed_rpo_budget_seconds",
    "pgfed_replica_lag_seconds",
    "pgfed_replica_lag_bytes",
    "pgfed_replica_stalled",
    "pgfed_archive_last_success_timestamp_seconds",
    "pgfed_archive_failures_total",
    "pgfed_archive_failing",
    "pgfed_archive_ready_segments",
    "pgfed_wal_switch_nudges_total",
    "pgfed_sample_errors_total",
    "pgfed_sample_duration_seconds",
    "pgfed_member_up",
  ],
  /** The coordinator (federation state, operations, leadership). */
  coordinator: [
    "pgfed_failover_awaiting_approval",
    "pgfed_primaries_writable",
    "pgfed_operations_failed_total",
    "pgfed_operations_total",
    "pgfed_operation_duration_seconds",
    "pgfed_coordinator_leader",
    "pgfed_rpo_warn_fraction",
    "pgfed_agent_silent_seconds",
    "pgfed_topology_changed_outside",
    "pgfed_commands_rejected_total",
  ],
  /** src/bus/metrics.ts (every process's NATS connection). */
  bus: ["pgfed_bus_permission_violations_total", "pgfed_bus_commands_rejected_total"],
  /** src/alerts/notifiers.ts (alert delivery). */
  alerts: ["pgfed_alert_notifications_total", "pgfed_alert_queue_depth", "pgfed_alert_notifications_dropped_total"],
} as const;

export const ALL_PGFED_METRICS: ReadonlySet<string> = new Set(Object.values(PGFED_METRIC_NAMES).flat());

/** pgfed metric names referenced in a PromQL expression (histogram/summary suffixes removed). */
export function metricsInExpr(expr: string): string[] {
  const names = expr.match(/\bpgfed_[a-z0-9_]+/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, "")))];
}
