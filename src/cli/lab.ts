import type { Command } from "commander";
import { resolve } from "node:path";
import { createLogger } from "../log.js";
import { callLab, formatLabStatus, startLabControl, type RegionAction } from "../lab/control.js";
import { startLab, type Lab, type LabMemberStatus } from "../lab/lab.js";
import { stopOnSignals } from "../lab/proc.js";
import { CliExit, EXIT } from "./exit-codes.js";
import type { CliIo } from "./program.js";

const ACTIONS = ["start", "status", "kill-region", "partition-region", "restore-region", "stop"] as const;
type Action = (typeof ACTIONS)[number];

/** Hook for the control plane (agents, coordinator, API) the lab runs on top of its regions. */
export type ControlPlaneStarter = (
  lab: Lab,
  io: CliIo,
) => Promise<{ stop: () => Promise<void>; info: () => Record<string, string>; regionChanged?: (action: RegionAction, region: string) => Promise<void> }>;

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
    .action(async (action: string, region: string | undefined, opts: { regions: string; dir: string; natsCluster?: boolean }) => {
      if (!(ACTIONS as readonly string[]).includes(action)) throw new CliExit(EXIT.usage, `unknown lab action "${action}" (one of: ${ACTIONS.join(", ")})`);
      const dir = resolve(opts.dir);
      const a = action as Action;
      if (a === "start") return runLab(dir, opts.regions, io, opts.natsCluster === true);
      if (a === "status") {
        const body = (await callLab(dir, "status")) as { members: LabMemberStatus[]; extra: Record<string, string> };
        io.out(formatLabStatus(body.members));
        return;
      }
      if ((a === "kill-region" || a === "partition-region" || a === "restore-region") && !region) throw new CliExit(EXIT.usage, `pgfed lab ${a} needs a region`);
      const body = (await callLab(dir, a, region)) as { done: string };
      io.out(`${body.done}\n`);
    });
}

async function runLab(dir: string, regionsArg: string, io: CliIo, natsCluster: boolean): Promise<void> {
  const regions = Number(regionsArg);
  if (regions !== 2 && regions !== 3) throw new CliExit(EXIT.usage, `--regions must be 2 or 3, not "${regionsArg}"`);
  const log = createLogger({ level: process.env.PGFED_LOG_LEVEL ?? "warn" });
  const t0 = Date.now();
  const step = (line: string) => io.err(`[lab ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);
  const lab = await startLab({ dir, regions, log, onProgress: step, natsCluster });
  let plane: Awaited<ReturnType<ControlPlaneStarter>> | undefined;
  let stopping: Promise<void> | undefined;
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stopAll = () =>
    (stopping ??= (async () => {
      step("stopping");
      await control?.close();
      await plane?.stop().catch(() => undefined);
      await lab.stop();
      step("stopped; nothing left running");
      resolveDone();
    })());
  stopOnSignals(stopAll);
  let control: Awaited<ReturnType<typeof startLabControl>> | undefined;
  try {
    if (controlPlane) {
      step("starting agents and the coordinator");
      plane = await controlPlane(lab, io);
    }
    control = await startLabControl(
      lab,
      () => void stopAll(),
      () => plane?.info() ?? {},
      async (action, region) => plane?.regionChanged?.(action, region),
    );
  } catch (e) {
    await stopAll();
    throw e;
  }
  step(`ready in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  io.out(labBanner(lab, plane?.info() ?? {}));
  await done;
}

function labBanner(lab: Lab, extra: Record<string, string>): string {
  const ctx = [...lab.regions.keys()];
  const first = ctx[0] ?? "eu-west";
  const lines = [
    "",
    `pgfed lab is running (federation "demo", ${ctx.length} regions). Ctrl-C or \`pgfed lab stop\` stops it.`,
    "",
    `kubeconfig: ${lab.kubeconfigPath}   contexts: ${ctx.join(", ")}`,
    `NATS:       ${lab.nats.urls.join(", ")} (${lab.nats.sites.length > 1 ? `one server per region${lab.nats.sites.includes("witness") ? " and a witness" : ""}; JetStream R3` : "one server"}; TLS, nkey identities)`,
    ...Object.entries(extra).map(([k, v]) => `${`${k}:`.padEnd(11)} ${v}`),
    "",
    "members:",
    ...lab.members.map((m) => `  ${m.name.padEnd(6)} ${m.region.padEnd(9)} psql ${lab.psql(m.name)}`),
    "",
    "try:",
    `  kubectl --kubeconfig ${lab.kubeconfigPath} --context ${first} get clusters.postgresql.cnpg.io -n db`,
    `  psql ${lab.psql(lab.members[0]?.name ?? "pg-eu")} -c 'select pg_is_in_recovery()'`,
    "  npm run pgfed -- lab status",
    `  npm run pgfed -- lab kill-region ${first}`,
    "",
  ];
  return `${lines.join("\n")}\n`;
}
