/**
 * The bus's Prometheus counters. The registry is injectable so tests (and two buses in one
 * process) do not collide: a counter already registered under the same name is reused.
 */
import { Counter, Gauge, register as globalRegistry, type Registry } from "prom-client";

export class BusMetrics {
  readonly published: Counter<"type">;
  readonly duplicates: Counter<"type">;
  readonly publishFailures: Counter<"reason">;
  readonly deadLetters: Counter<"reason">;
  readonly handlerErrors: Counter<"consumer">;
  readonly reconnects: Counter;
  readonly disconnects: Counter;
  readonly connected: Gauge;
  readonly leaseLosses: Counter<"key">;
  readonly permissionViolations: Counter<"operation">;
  readonly commandsRejected: Counter<"reason">;

  constructor(readonly registry: Registry = globalRegistry) {
    this.published = counter(registry, "pgfed_bus_published_total", "Messages stored by JetStream (duplicates excluded)", ["type"]);
    this.duplicates = counter(registry, "pgfed_bus_duplicates_total", "Publishes JetStream dropped as duplicates of an earlier msgID", ["type"]);
    this.publishFailures = counter(registry, "pgfed_bus_publish_failures_total", "Publishes that failed after retrying (the caller must re-derive)", ["reason"]);
    this.deadLetters = counter(registry, "pgfed_bus_dead_letters_total", "Messages moved to pgfed.dlq.<reason> instead of being handled", ["reason"]);
    this.handlerErrors = counter(registry, "pgfed_bus_handler_errors_total", "Handler failures (the message is redelivered later, up to the limit)", ["consumer"]);
    this.reconnects = counter(registry, "pgfed_bus_reconnects_total", "Reconnections to NATS after a disconnect", []);
    this.disconnects = counter(registry, "pgfed_bus_disconnects_total", "Disconnections from NATS", []);
    this.leaseLosses = counter(registry, "pgfed_bus_lease_losses_total", "Leases this process held and lost (expired or taken)", ["key"]);
    this.permissionViolations = counter(registry, "pgfed_bus_permission_violations_total", "Publishes or subscriptions of this process the NATS server refused for lack of permission", ["operation"]);
    this.commandsRejected = counter(registry, "pgfed_bus_commands_rejected_total", "Commands an agent refused because their proof of sender failed (unsigned, untrusted or not lease holder, bad signature); dead-lettered", ["reason"]);
    this.connected = gauge(registry, "pgfed_bus_connected", "1 while connected to NATS");
  }
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}

function gauge(registry: Registry, name: string, help: string): Gauge {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Gauge) return existing;
  return new Gauge({ name, help, registers: [registry] });
}
