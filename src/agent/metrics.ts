/**
 * The agent's metrics. Several agents may share one registry (the lab runs one per region in one
 * process), so a metric already registered under the same name is reused; every series carries
 * the region.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export type CommandOutcome = "ok" | "refused" | "failed";

export interface AgentMetrics {
  commands: Counter<"region" | "federation" | "member" | "kind" | "result">;
  commandSeconds: Histogram<"region" | "kind">;
  observations: Counter<"region" | "federation" | "member" | "trigger">;
  observationsSkipped: Counter<"region" | "federation" | "member">;
  lagSamples: Counter<"region" | "federation" | "member" | "outcome">;
  heartbeats: Counter<"region" | "federation">;
  fences: Counter<"region" | "federation" | "member" | "reason">;
  kubeErrors: Counter<"region" | "operation">;
  publishFailures: Counter<"region" | "type">;
  leaseHeld: Gauge<"region" | "federation" | "member">;
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  return new Counter({ name, help, labelNames, registers: [registry] });
}

function gauge<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Gauge<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Gauge) return existing;
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

function histogram<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[], buckets: number[]): Histogram<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Histogram) return existing;
  return new Histogram({ name, help, labelNames, buckets, registers: [registry] });
}

export function createAgentMetrics(registry: Registry): AgentMetrics {
  const member = ["region", "federation", "member"] as const;
  return {
    commands: counter(registry, "pgfed_agent_commands_total", "Commands the agent executed, by kind and result (ok, refused: stale epoch / expired deadline / unsafe, failed).", [...member, "kind", "result"]),
    commandSeconds: histogram(registry, "pgfed_agent_command_duration_seconds", "Time from receiving a command to publishing its result.", ["region", "kind"], [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]),
    observations: counter(registry, "pgfed_agent_observations_published_total", "Observations of member Clusters published (trigger: change or heartbeat).", [...member, "trigger"]),
    observationsSkipped: counter(registry, "pgfed_agent_observations_skipped_total", "Watch events that changed nothing the coordinator sees, so no observation was published.", member),
    lagSamples: counter(registry, "pgfed_agent_lag_samples_total", "WAL samples published (outcome ok, or error when Postgres could not be sampled).", [...member, "outcome"]),
    heartbeats: counter(registry, "pgfed_agent_heartbeats_total", "Heartbeats published.", ["region", "federation"]),
    fences: counter(registry, "pgfed_agent_fences_total", "Primaries the agent fenced itself (reason: lease_expiring, lease_taken, lease_held_elsewhere, lease_unreachable; superseded: the federation record designates another member).", [...member, "reason"]),
    kubeErrors: counter(registry, "pgfed_agent_kube_errors_total", "Failed Kubernetes API calls (operation: read, watch, patch, secret).", ["region", "operation"]),
    publishFailures: counter(registry, "pgfed_agent_publish_failures_total", "Bus publishes that failed (the agent re-derives and sends again).", ["region", "type"]),
    leaseHeld: gauge(registry, "pgfed_agent_primary_lease_held", "1 while the agent holds the federation's primary lease for this member.", member),
  };
}
