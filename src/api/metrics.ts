/**
 * The API's Prometheus counters, on the registry the server serves at /metrics (a fresh one when
 * none is given, never the prom-client global); a counter already registered under the same name
 * is reused, so two servers over one registry do not collide.
 */
import { Counter, Registry } from "prom-client";

/** Why a request was refused before it reached the service. */
export type RefusalReason = "missing_token" | "malformed_header" | "unknown_token" | "client_certificate" | "insufficient_role" | "rate_limited";

export const AUTH_FAILURE_REASONS = ["missing_token", "malformed_header", "unknown_token", "client_certificate", "insufficient_role"] as const satisfies readonly RefusalReason[];

export interface ApiMetrics {
  authFailures: Counter<"reason">;
  authRateLimited: Counter;
}

export function createApiMetrics(registry: Registry = new Registry()): ApiMetrics {
  const authFailures = counter(
    registry,
    "pgfed_api_auth_failures_total",
    "API requests refused for authentication (401: missing_token, malformed_header, unknown_token, client_certificate) or authorization (403: insufficient_role).",
    ["reason"],
  );
  // Every reason from the start, so a rate() over it exists before the first failure.
  for (const reason of AUTH_FAILURE_REASONS) authFailures.inc({ reason }, 0);
  const authRateLimited = counter(registry, "pgfed_api_auth_rate_limited_total", "API requests refused with 429 because their client address had too many failed authentications.", []);
  return { authFailures, authRateLimited };
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  const existing = registry.getSingleMetric(name);
  if (existing instanceof Counter) return existing;
  return new Counter<L>({ name, help, labelNames, registers: [registry] });
}
