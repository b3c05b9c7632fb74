/**
 * `pgfed kubeconfig coordinator REGION[=CONTEXT]…`: the kubeconfig the coordinators need to reach
 * every region's Kubernetes API (`pgfed run --regions-kubeconfig`, Secret
 * pgfed-regions-kubeconfig). For each region it reads, through the caller's own kubeconfig context,
 * the token of the ServiceAccount pgfed-coordinator from its Secret `pgfed-coordinator-token`
 * (type kubernetes.io/service-account-token, deploy/kubernetes/base), and writes one cluster, user
 * and context per region, each context named as the region. That ServiceAccount may only get and
 * patch the member Clusters (deploy/kubernetes/member-rbac). Nothing is written when a region fails.
 */
import type { Command } from "commander";
import { CliExit, EXIT } from "./exit-codes.js";
import type { CliIo } from "./program.js";

const stdio: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

const collect = (v: string, prev: string[]): string[] => [...prev, v];

interface KubeconfigOptions {
  kubeconfig?: string;
  namespace: string;
  secret: string;
  server: string[];
  output?: string;
}

/** `REGION[=CONTEXT]` → region and context (the context defaults to the region's name). */
function parseRegion(arg: string): { region: string; context: string } {
  const eq = arg.indexOf("=");
  const region = eq < 0 ? arg : arg.slice(0, eq);
  const context = eq < 0 ? arg : arg.slice(eq + 1);
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(region)) throw new CliExit(EXIT.usage, `"${arg}": the region must be a name like eu-west (REGION or REGION=CONTEXT)`);
  if (context === "") throw new CliExit(EXIT.usage, `"${arg}": the context after = is empty`);
  return { region, context };
}

function parseServers(values: readonly string[], regions: ReadonlySet<string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const v of values) {
    const eq = v.indexOf("=");
    const region = v.slice(0, eq);
    const url = v.slice(eq + 1);
    if (eq <= 0 || !/^https:\/\/\S+$/.test(url)) throw new CliExit(EXIT.usage, `--server ${v}: expected REGION=https://host[:port]`);
    if (!regions.has(region)) throw new CliExit(EXIT.usage, `--server ${v}: region "${region}" is not among the regions given (${[...regions].join(", ")})`);
    out.set(region, url);
  }
  return out;
}

/** Registers `pgfed kubeconfig coordinator`; `io` as program.ts's command groups get it (default: stdout/stderr). */
export function addKubeconfigCommand(program: Command, io: CliIo = stdio): void {
  const kubeconfig = program.command("kubeconfig").description("kubeconfigs pgfed's processes need");
  kubeconfig
    .command("coordinator")
    .argument("<region...>", "REGION or REGION=CONTEXT: every region of the config, read through CONTEXT of your kubeconfig (default: a context named as the region)")
    .option("--kubeconfig <file>", "your kubeconfig, with a context per region (default: $KUBECONFIG or ~/.kube/config)")
    .option("--namespace <ns>", "pgfed's namespace in every region", "pgfed")
    .option("--secret <name>", "the ServiceAccount token Secret of pgfed-coordinator", "pgfed-coordinator-token")
    .option("--server <region=url>", "the API server URL the coordinators reach REGION at, when it differs from your kubeconfig's (repeat)", collect, [])
    .option("-o, --output <file>", "write the kubeconfig here (mode 0600, never overwritten) instead of stdout")
    .description("build the coordinators' kubeconfig: one context per region with the token of ServiceAccount pgfed-coordinator there (get/patch of the member Clusters only)")
    .addHelpText(
      "after",
      "\nThen, in every region that runs coordinators:\n  kubectl -n pgfed create secret generic pgfed-regions-kubeconfig --from-file=kubeconfig=<file>\n(docs/operations.md, \"Kubernetes credentials\")",
    )
    .action(async (args: string[], opts: KubeconfigOptions) => {
      const regions = args.map(parseRegion);
      const names = new Set(regions.map((r) => r.region));
      if (names.size !== regions.length) throw new CliExit(EXIT.usage, `each region once: ${args.join(" ")}`);
      const servers = parseServers(opts.server, names);
      const [{ existsSync }, { writeFile }, { stringify }, { buildCoordinatorKubeconfig }] = await Promise.all([
        import("node:fs"),
        import("node:fs/promises"),
        import("yaml"),
        import("./kubeconfig-build.js"),
      ]);
      if (opts.output !== undefined && existsSync(opts.output)) throw new CliExit(EXIT.refused, `${opts.output} exists; pgfed never overwrites a kubeconfig (remove it first)`);
      const doc = await buildCoordinatorKubeconfig({ regions, servers, namespace: opts.namespace, secret: opts.secret, ...(opts.kubeconfig !== undefined ? { kubeconfig: opts.kubeconfig } : {}) });
      const text = `# pgfed coordinators: one context per region (pgfed kubeconfig coordinator ${args.join(" ")})\n${stringify(doc)}`;
      if (opts.output === undefined) io.out(text);
      else {
        await writeFile(opts.output, text, { mode: 0o600, flag: "wx" });
        io.err(`wrote ${opts.output}: contexts ${regions.map((r) => r.region).join(", ")}\n`);
      }
    });
}
