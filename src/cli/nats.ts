/**
 * `pgfed nats …`: the NATS side of the security model (docs/operations.md, "Security model").
 *
 *   pgfed nats identity <file>                        a new nkey identity: seed to <file> (0600), public key to stdout
 *   pgfed nats authorization --config <file> \
 *     --coordinator <U…> [--coordinator <U…>] \
 *     --agent <region>=<U…> [--agent …]               the nats-server `authorization` block (JSON) for that config
 *
 * The authorization is derived from the config (which members each region's agent serves), so
 * re-render it and reload the NATS servers whenever members change.
 */
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import type { AgentGrant } from "../bus/index.js";
import { CliExit, EXIT } from "./exit-codes.js";
import type { CliIo } from "./program.js";

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerNatsCommands(program: Command, io: CliIo): void {
  const nats = program.command("nats").description("NATS identities and the server authorization pgfed needs");
  nats
    .command("identity")
    .argument("<file>", "where to write the seed (created with mode 0600; never overwritten)")
    .description("create an nkey identity for one pgfed process: the seed goes to <file>, its public key to stdout")
    .action(async (file: string) => {
      if (existsSync(file)) throw new CliExit(EXIT.refused, `${file} exists; pgfed never overwrites an identity (remove it first to rotate)`);
      const { createIdentity } = await import("../bus/identity.js");
      const id = createIdentity();
      await writeFile(file, `# pgfed NATS identity ${id.publicKey}\n${id.seed}\n`, { mode: 0o600, flag: "wx" });
      io.out(`${id.publicKey}\n`);
    });
  nats
    .command("authorization")
    .requiredOption("--config <file>", "pgfed config (which members each region's agent serves)")
    .option("--coordinator <publicKey>", "public nkey of a coordinator (repeat for each replica)", collect, [])
    .option("--agent <region=publicKey>", "public nkey of the agent of a region (repeat for each region)", collect, [])
    .description("print the nats-server authorization block (JSON) that gives each identity its role's subjects")
    .action(async (opts: { config: string; coordinator: string[]; agent: string[] }) => {
      const [{ loadConfig }, { natsAuthorization, publicKeyProblem }] = await Promise.all([import("../config.js"), import("../bus/index.js")]);
      const cfg = await loadConfig(opts.config);
      const bad = (what: string, key: string): CliExit => new CliExit(EXIT.usage, `${what}: ${publicKeyProblem(key) ?? "invalid"}`);
      for (const k of opts.coordinator) if (publicKeyProblem(k)) throw bad(`--coordinator ${k}`, k);
      if (opts.coordinator.length === 0) throw new CliExit(EXIT.usage, "name at least one --coordinator <publicKey>");
      const agents: AgentGrant[] = opts.agent.map((a) => {
        const eq = a.indexOf("=");
        const region = a.slice(0, eq);
        const key = a.slice(eq + 1);
        if (eq <= 0) throw new CliExit(EXIT.usage, `--agent ${a}: expected <region>=<publicKey>`);
        if (!cfg.regions.some((r) => r.name === region)) throw new CliExit(EXIT.usage, `--agent ${a}: region "${region}" is not in ${opts.config} (regions: ${cfg.regions.map((r) => r.name).join(", ")})`);
        if (publicKeyProblem(key)) throw bad(`--agent ${a}`, key);
        const members = cfg.federations.flatMap((f) => f.members.filter((m) => m.region === region).map((m) => ({ federation: f.name, member: m.name })));
        return { publicKey: key, agentId: region, region, members };
      });
      io.out(`${JSON.stringify({ authorization: natsAuthorization({ coordinators: opts.coordinator, agents }) }, null, 2)}\n`);
    });
}
