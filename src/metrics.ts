/**
 * The shared prom-client registry factory and pgfed's exposure metrics. Every process builds its
 * own Registry (never the prom-client global) so tests and several roles in one process (the lab)
 * do not collide; other modules add their metrics to the same registry.
 */
// Imports no room, so that every room may import it: src/wal/monitor.ts sets these gauges from its evaluations.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export { Registry };

export interface RegistryOptions {
  /** Process metrics (CPU, memory, event loop lag); off in tests. */
  defaultMetrics?: boolean;
}

export function createRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry });
  return registry;
}

const FED = ["federation"] as const;
const MEMBER = ["federation", "member", "region"] as const;

export type MemberLabels = Record<(typeof MEMBER)[number], string>;

export interface PgfedMetrics {
  readonly registry: Registry;
  exposureSeconds: Gauge<"federation">;
  exposureBytes: Gauge<"federation">;
  worstCaseExposureSeconds: Gauge<"federation">;
  worstCaseExposureBytes: Gauge<"federation">;
  rpoBudgetSeconds: Gauge<"federation">;
  replicaLagSeconds: Gauge<"federation" | "member" | "region">;
  replicaLagBytes: Gauge<"federation" | "member" | "region">;
  replicaStalled: Gauge<"federation" | "member" | "region">;
  archiveLastSuccessTimestampSeconds: Gauge<"federation" | "member" | "region">;
  archiveFailuresTotal: Counter<"federation" | "member" | "region">;
  archiveFailing: Gauge<"federation" | "member" | "region">;
  archiveReadySegments: Gauge<"federation" | "member" | "region">;
  walSwitchNudgesTotal: Counter<"federation" | "member" | "region">;
  sampleErrorsTotal: Counter<"federation" | "member" | "region">;
  sampleDurationSeconds: Histogram<"federation" | "member" | "region">;
  memberUp: Gauge<"federation" | "member" | "region">;
}

/** pgfed's exposure metrics, registered on `registry` (a fresh one when omitted). */
export function createMetrics(registry: Registry = createRegistry()): PgfedMetrics {
  const reg = [registry];
  const fedGauge = (name: string, help: string) => new Gauge({ name, help, labelNames: FED, registers: reg });
  const memberGauge = (name: string, help: string) => new Gauge({ name, help, labelNames: MEMBER, registers: reg });
  const memberCounter = (name: string, help: string) => new Counter({ name, help, labelNames: MEMBER, registers: reg });
  return {
    registry,
    exposureSeconds: fedGauge("pgfed_exposure_seconds", "Age of the oldest committed WAL on the primary that no replica could recover now (0 when everything is safe)."),
    exposureBytes: fedGauge("pgfed_exposure_bytes", "Bytes of WAL on the primary beyond the furthest position any replica could recover."),
    worstCaseExposureSeconds: fedGauge(
      "pgfed_worst_case_exposure_seconds",
      "Exposure if the primary vanished now: the last known exposure plus the time since the last good sample. Gates automatic failover.",
    ),
    worstCaseExposureBytes: fedGauge("pgfed_worst_case_exposure_bytes", "Exposure in bytes at the last good sample of the primary."),
    rpoBudgetSeconds: fedGauge("pgfed_rpo_budget_seconds", "The most exposure the federation accepts (config)."),
    replicaLagSeconds: memberGauge("pgfed_replica_lag_seconds", "How long ago the primary first wrote WAL this replica cannot recover yet."),
    replicaLagBytes: memberGauge("pgfed_replica_lag_bytes", "Bytes of primary WAL this replica cannot recover yet (received or archived)."),
    replicaStalled: memberGauge("pgfed_replica_stalled", "1 when the replica's received/replayed position has not moved for several samples while the primary's has."),
    archiveLastSuccessTimestampSeconds: memberGauge("pgfed_archive_last_success_timestamp_seconds", "Unix time of the member's last successful archive_command (pg_stat_archiver)."),
    archiveFailuresTotal: memberCounter("pgfed_archive_failures_total", "Failed archive_command runs seen on the member (increase of pg_stat_archiver.failed_count)."),
    archiveFailing: memberGauge("pgfed_archive_failing", "1 when the member's archiver is failing: failures rising, last failure newer than last success."),
    archiveReadySegments: memberGauge("pgfed_archive_ready_segments", "WAL segments waiting for archive_command (.ready files)."),
    walSwitchNudgesTotal: memberCounter("pgfed_wal_switch_nudges_total", "pg_switch_wal() calls pgfed made so the archiver ships a partial segment."),
    sampleErrorsTotal: memberCounter("pgfed_sample_errors_total", "Samples of the member that failed (connect, query or parse)."),
    sampleDurationSeconds: new Histogram({
      name: "pgfed_sample_duration_seconds",
      help: "Time to take one sample of a member (one round trip).",
      labelNames: MEMBER,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: reg,
    }),
    memberUp: memberGauge("pgfed_member_up", "1 when the last sample of the member succeeded."),
  };
}
