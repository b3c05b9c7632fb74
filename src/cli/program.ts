/**
 * The `pgfed` command. Each sub-command lives in its own file and registers itself here; this
 * file only wires them together and maps failures to the documented exit codes.
 */
import { Command, CommanderError } from "commander";
import { ConfigError, loadConfig } from "../config.js";
import { errorMessage, PgfedError } from "../errors.js";
import { CliExit, EXIT } from "./exit-codes.js";
import { registerLabCommand } from "./lab.js";
import { registerMachinesCommand } from "./machines.js";
import { registerNatsCommands } from "./nats.js";
import { registerOpsCommands } from "./ops.js";
import { registerRunbookCommand } from "./runbook.js";
import { registerRunCommand } from "./run.js";
import { VERSION } from "./version.js";

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

export function buildProgram(io: CliIo = defaultIo): Command {
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
      const cfg = await loadConfig(file);
      const members = cfg.federations.reduce((n, f) => n + f.members.length, 0);
      io.out(`${file}: ok (${cfg.federations.length} federation(s), ${members} member(s), ${cfg.regions.length} region(s))\n`);
    });

  registerMachinesCommand(program, io);
  registerLabCommand(program, io);
  registerNatsCommands(program, io);
  registerOpsCommands(program, io);
  registerRunbookCommand(program, io);
  registerRunCommand(program);
  return program;
}

/** Runs the CLI and returns the exit code; never throws. */
export async function runCli(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const program = buildProgram(io);
  try {
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
