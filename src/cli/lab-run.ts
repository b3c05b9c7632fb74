/** `pgfed lab` (start): the lab's regions, the control plane over them, and the banner. */
import { createLogger } from "../log.js";
import { startLabControl } from "../lab/control.js";
import { startLab, type Lab } from "../lab/lab.js";
import { stopOnSignals } from "../lab/proc.js";
import { CliExit, EXIT } from "./exit-codes.js";
import type { ControlPlaneStarter } from "./lab.js";
import type { CliIo } from "./program.js";

export async function runLab(dir: string, regionsArg: string, io: CliIo, natsCluster: boolean, controlPlane: ControlPlaneStarter | undefined): Promise<void> {
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
    ...(extra.api ? [`status page: ${extra.api}/ (sign in with the token above)`] : []),
    "",
    "members:",
    ...lab.members.map((m) => `  ${m.name.padEnd(6)} ${m.region.padEnd(9)} psql ${lab.psql(m.name)}`),
    "",
    "try:",
    `  kubectl --kubeconfig ${lab.kubeconfigPath} --context ${first} get clusters.postgresql.cnpg.io -n db`,
    `  psql ${lab.psql(lab.members[0]?.name ?? "pg-eu")} -c 'select pg_is_in_recovery()'`,
    "  npx pgfed lab status",
    `  npx pgfed lab kill-region ${first}`,
    "",
  ];
  return `${lines.join("\n")}\n`;
}
