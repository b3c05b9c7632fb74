/**
 * The `pgfed run` command line. Its implementation (src/cli/run.ts: agents, coordinator, API,
 * NATS, the Kubernetes client) is imported only when the command runs, so `pgfed --help` and the
 * other commands do not pay for it.
 */
import type { Command } from "commander";

export const ROLES = ["agent", "coordinator"] as const;
export type RunRole = (typeof ROLES)[number];

export interface RunOptions {
  config: string;
  roles: string;
  regions?: string;
  apiListen?: string;
  advertiseUrl?: string;
  metricsListen?: string;
  id?: string;
  regionsKubeconfig?: string;
}

export function registerRunCommand(program: Command): void {
  program
    .command("run")
    .description("run pgfed's agents and/or coordinator (with the HTTP API and /metrics) until SIGINT/SIGTERM")
    .requiredOption("--config <file>", "YAML config file")
    .option("--roles <roles>", `comma-separated roles: ${ROLES.join(", ")}`, "agent,coordinator")
    .option("--regions <regions>", "comma-separated regions to run agents for (default: every region in the config)")
    .option("--api-listen <host:port>", "the API's listen address (overrides api.listen)")
    .option("--advertise-url <url>", "the API address other coordinators redirect to (default: $PGFED_ADVERTISE_URL, else derived from the listen address)")
    .option("--metrics-listen <host:port>", "without the coordinator role: serve /metrics, /healthz and /readyz here (from the start, before NATS answers)")
    .option("--id <id>", "coordinator id (default: host name and a random suffix)")
    .option("--regions-kubeconfig <file>", "coordinator: a kubeconfig with one context per region (named as the region unless regions[].kubeconfig.context says otherwise), to corroborate a silent primary (default: $PGFED_REGIONS_KUBECONFIG, else regions[].kubeconfig)")
    .addHelpText(
      "after",
      `
Examples:
  pgfed run --config pgfed.yaml                                   agents for every region and a coordinator
  pgfed run --config pgfed.yaml --roles agent --regions eu-west   the agent of one region
  pgfed run --config pgfed.yaml --roles coordinator --api-listen 0.0.0.0:8080`,
    )
    .action(async (opts: RunOptions) => (await import("./run.js")).runPgfed(opts));
}
