/**
 * The `pgfed` command. Each sub-command lives in its own file and registers itself here; this
 * file only wires them together and maps failures to the documented exit codes.
 *
 * A command loads only its own group: `COMMAND_GROUPS` names which file registers which
 * top-level commands, and `buildProgram` imports just the group the first argument names (all of
 * them for `--help`, `help`, completion or an unknown word). `pgfed version` thus never loads the
 * Kubernetes client, NATS, fastify, zod or the lab (issue 17: on-call runs these under stress, and
 * every module costs start-up time). test/unit/cli/program.test.ts checks the table against what
 * each group registers.
 */
import { Command, CommanderError } from "commander";
import { ConfigError, errorMessage, PgfedError } from "../errors.js";
import { VERSION } from "../version.js";
import { CliExit, EXIT } from "./exit-codes.js";

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

const defaultIo: CliIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

const EXIT_HELP = `
Exit codes:
  0   done
  1   unexpected error (e.g. the API or NATS unreachable)
  2   refused by a precondition (invalid config or request, safety check failed)
  3   the operation failed
  4   timed out waiting
  64  usage error`;

type Register = (program: Command, io: CliIo) => void;

/** Which file registers which top-level commands; each group is imported only when needed. */
export const COMMAND_GROUPS: readonly { commands: readonly string[]; load: () => Promise<Register> }[] = [
  { commands: ["machines"], load: async () => (await import("./machines.js")).registerMachinesCommand },
  { commands: ["lab"], load: async () => (await import("./lab.js")).registerLabCommand },
  { commands: ["nats"], load: async () => (await import("./nats.js")).registerNatsCommands },
  {
    commands: ["status", "switchover", "failover", "rejoin", "pause", "resume", "resolve", "approve", "audit"],
    load: async () => (await import("./ops.js")).registerOpsCommands,
  },
  { commands: ["evacuate"], load: async () => (await import("./evacuate.js")).registerEvacuateCommand },
  { commands: ["runbook"], load: async () => (await import("./runbook.js")).registerRunbookCommand },
  { commands: ["run"], load: async () => (await import("./run-command.js")).registerRunCommand },
  { commands: ["kubeconfig"], load: async () => (await import("./kubeconfig.js")).addKubeconfigCommand },
  { commands: ["completion"], load: async () => (await import("./completion.js")).registerCompletionCommand },
];

/** The commands defined here, needing no group. */
export const CORE_COMMANDS: readonly string[] = ["version", "config"];

/** The groups `argv` needs: the one its first word names, or every group when that word names none. */
function groupsFor(argv: readonly string[]): (typeof COMMAND_GROUPS)[number][] {
  const first = argv[0];
  if (first !== undefined && CORE_COMMANDS.includes(first)) return [];
  const named = COMMAND_GROUPS.find((g) => first !== undefined && g.commands.includes(first));
  return named ? [named] : [...COMMAND_GROUPS];
}

/** The program with the commands `argv` needs (every command when `argv` is not given). */
export async function buildProgram(io: CliIo = defaultIo, argv?: readonly string[]): Promise<Command> {
  const program = new Command("pgfed")
    .description("Multi-cluster replica federation controller for CloudNativePG: switchover, RPO-gated failover, lag alerts")
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .addHelpText("after", EXIT_HELP)
    .exitOverride()
    .showHelpAfterError("(run `pgfed --help` for usage)");

  program
    .command("version")
    .description("print the pgfed version")
    .action(() => io.out(`pgfed ${VERSION}\n`));

  const config = program.command("config").description("work with pgfed configuration files");
  config
    .command("check")
    .argument("<file>", "YAML config file")
    .description("validate a config file; every problem is printed with its path")
    .action(async (file: string) => {
      const { loadConfig } = await import("../config.js");
      const cfg = await loadConfig(file);
      const members = cfg.federations.reduce((n, f) => n + f.members.length, 0);
      io.out(`${file}: ok (${cfg.federations.length} federation(s), ${members} member(s), ${cfg.regions.length} region(s))\n`);
    });

  const groups = argv === undefined ? COMMAND_GROUPS : groupsFor(argv);
  for (const register of await Promise.all(groups.map((g) => g.load()))) register(program, io);
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  try {
    const program = await buildProgram(io, argv);
    await program.parseAsync(argv, { from: "user" });
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.code === "commander.help") return EXIT.ok;
      return EXIT.usage;
    }
    if (e instanceof CliExit) {
      if (e.message) io.err(`${e.message}\n`);
      return e.exitCode;
    }
    if (e instanceof ConfigError) {
      io.err(`${e.message}\n`);
      return EXIT.refused;
    }
    if (e instanceof PgfedError) {
      io.err(`error (${e.code}): ${e.message}\n`);
      return e.code.endsWith("timeout") ? EXIT.timedOut : EXIT.error;
    }
    io.err(`error: ${errorMessage(e)}\n`);
    return EXIT.error;
  }
}
