/**
 * The coordinator's metrics (names as src/alerts/metric-names.ts lists them; the alert rules read
 * them). Operation counters start at 0 per federation and kind so that `increase()` sees the first failure.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createRegistry } from "../metrics.js";

export const OPERATION_KINDS = ["switchover", "failover", "rejoin"] as const;

export interface CoordinatorMetrics {
  readonly registry: Registry;
  failoverAwaitingApproval: Gauge<"federation">;
  primariesWritable: Gauge<"federation">;
  operationsFailed: Counter<"federation" | "kind">;
  commandsRejected: Counter<"federation" | "member" | "reason">;
  operations: Counter<"federation" | "kind" | "result">;
  operationDuration: Histogram<"federation" | "kind">;
  leader: Gauge<"coordinator">;
  rpoWarnFraction: Gauge<"federation">;
  agentSilentSeconds: Gauge<"federation" | "member" | "region">;
  /** Initialises the per-federation series (counters at 0). */
  initFederation(federation: string, warnAt: number): void;
  /**
   * Removes every per-federation gauge series: a coordinator that steps down exports none, or its
   * last values (a writable count of 0 or 2, an approval awaited) would fire alerts from a follower.
   * Counters stay: they only ever grow and no rule fires on their value alone.
   */
  resetFederationGauges(): void;
}

export function createCoordinatorMetrics(registry: Registry = createRegistry()): CoordinatorMetrics {
  const registers = [registry];
  const m = {
    registry,
    failoverAwaitingApproval: new Gauge({ name: "pgfed_failover_awaiting_approval", help: "1 while an unplanned failover waits for an operator to accept the worst-case loss.", labelNames: ["federation"], registers }),
    primariesWritable: new Gauge({ name: "pgfed_primaries_writable", help: "Members observed as unfenced primary clusters (1 is healthy; 0 no writer; 2+ split brain).", labelNames: ["federation"], registers }),
    operationsFailed: new Counter({ name: "pgfed_operations_failed_total", help: "Operations that ended aborted or needing an operator.", labelNames: ["federation", "kind"], registers }),
    commandsRejected: new Counter({
      name: "pgfed_commands_rejected_total",
      help: "Commands to a member that its agent refused because their proof of sender failed (someone other than the leading coordinator sent them).",
      labelNames: ["federation", "member", "reason"],
      registers,
    }),
    operations: new Counter({ name: "pgfed_operations_total", help: "Operations by outcome.", labelNames: ["federation", "kind", "result"], registers }),
    operationDuration: new Histogram({
      name: "pgfed_operation_duration_seconds",
      help: "Duration of finished operations.",
      labelNames: ["federation", "kind"],
      buckets: [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers,
    }),
    leader: new Gauge({ name: "pgfed_coordinator_leader", help: "1 when this coordinator holds the coordinator lease.", labelNames: ["coordinator"], registers }),
    rpoWarnFraction: new Gauge({ name: "pgfed_rpo_warn_fraction", help: "Fraction of the RPO budget at which lag alerts warn (config).", labelNames: ["federation"], registers }),
    agentSilentSeconds: new Gauge({
      name: "pgfed_agent_silent_seconds",
      help: "How long the agent of the primary's region has been silent while that region's Kubernetes API shows the primary healthy and unfenced (failover held back); absent otherwise.",
      labelNames: ["federation", "member", "region"],
      registers,
    }),
    initFederation(federation: string, warnAt: number): void {
      for (const kind of OPERATION_KINDS) m.operationsFailed.inc({ federation, kind }, 0);
      m.failoverAwaitingApproval.set({ federation }, 0);
      m.rpoWarnFraction.set({ federation }, warnAt);
    },
    resetFederationGauges(): void {
      for (const g of [m.failoverAwaitingApproval, m.primariesWritable, m.rpoWarnFraction]) g.reset();
      m.agentSilentSeconds.reset();
    },
  };
  return m;
}

/**
 * Gauges of the alerts the federation machine keeps in its context, set by CoordinatorAlerting on
 * the leader only and reset when it steps down (a follower exports no series of them).
 */
export interface ContextAlertMetrics {
  topologyChangedOutside: Gauge<"federation" | "member" | "manager">;
}

export function createContextAlertMetrics(registry: Registry): ContextAlertMetrics {
  const registers = [registry];
  return {
    topologyChangedOutside: new Gauge({
      name: "pgfed_topology_changed_outside",
      help: "1 while automation of the federation is paused because a field manager other than pgfed changed the member Cluster's spec.replica.primary; absent otherwise.",
      labelNames: ["federation", "member", "manager"],
      registers,
    }),
  };
}
