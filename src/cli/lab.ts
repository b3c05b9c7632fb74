import type { Command } from "commander";
import { resolve } from "node:path";
import type { RegionAction } from "../lab/control.js";
import type { Lab, LabMemberStatus } from "../lab/lab.js";
import { CliExit, EXIT } from "./exit-codes.js";
import { output, outputFormat, OUTPUT_FORMATS } from "./output.js";
import type { CliIo } from "./program.js";

const ACTIONS = ["start", "status", "kill-region", "partition-region", "restore-region", "stop"] as const;
type Action = (typeof ACTIONS)[number];

/** Hook for the control plane (agents, coordinator, API) the lab runs on top of its regions. */
export type ControlPlaneStarter = (
  lab: Lab,
  io: CliIo,
) => Promise<{ stop: () => Promise<void>; info: () => Record<string, string>; regionChanged?: (action: RegionAction, region: string) => Promise<void> }>;

/** Hook set by main.ts; unset in tests that run the lab's regions only. */
let controlPlane: ControlPlaneStarter | undefined;
export function setLabControlPlane(starter: ControlPlaneStarter): void {
  controlPlane = starter;
}

export function registerLabCommand(program: Command, io: CliIo): void {
  program
    .command("lab")
    .description("run pgfed on this machine: regions with a Kubernetes API and CNPG stand-in over real Postgres, and NATS")
    .argument("[action]", `one of: ${ACTIONS.join(", ")}`, "start")
    .argument("[region]", "region for kill-region, partition-region, restore-region")
    .option("--regions <n>", "number of regions (2 or 3)", "2")
    .option("--dir <dir>", "lab directory (data, archives, kubeconfig, logs)", ".lab")
    .option("-o, --output <format>", `status: ${OUTPUT_FORMATS.join(", ")}`, "table")
    .option("--nats-cluster", "one NATS server per region (a witness with 2 regions), JetStream R3; kill-region also kills that region's server (experimental)")
    .addHelpText(
      "after",
      `
Examples:
  pgfed lab                         start a 2-region lab and keep it running (Ctrl-C stops it)
  pgfed lab status                  members, roles, timelines, region states
  pgfed lab kill-region eu-west     SIGKILL the region's Postgres and take its Kubernetes API down
  pgfed lab partition-region eu-west  Kubernetes API refuses connections; Postgres keeps serving
  pgfed lab restore-region eu-west  bring it back
  pgfed lab stop                    stop everything the lab started`,
    )
    .action(async (action: string, region: string | undefined, opts: { regions: string; dir: string; natsCluster?: boolean; output: string }) => {
      if (!(ACTIONS as readonly string[]).includes(action)) throw new CliExit(EXIT.usage, `unknown lab action "${action}" (one of: ${ACTIONS.join(", ")})`);
      outputFormat(opts.output);
      const dir = resolve(opts.dir);
      const a = action as Action;
      // The lab itself (Postgres, NATS, the stand-ins) is imported only to start one.
      if (a === "start") return (await import("./lab-run.js")).runLab(dir, opts.regions, io, opts.natsCluster === true, controlPlane);
      const { callLab, formatLabStatus } = await import("../lab/control.js");
      if (a === "status") {
        const body = (await callLab(dir, "status")) as { members: LabMemberStatus[]; extra: Record<string, string> };
        output(io, opts.output, body, () => formatLabStatus(body.members).trimEnd());
        return;
      }
      if ((a === "kill-region" || a === "partition-region" || a === "restore-region") && !region) throw new CliExit(EXIT.usage, `pgfed lab ${a} needs a region`);
      const body = (await callLab(dir, a, region)) as { done: string };
      io.out(`${body.done}\n`);
    });
}
