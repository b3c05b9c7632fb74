import type { Command } from "commander";
import { machinesAsJson, machinesAsMermaid } from "../../machines/describe.js";
import { CliExit, EXIT } from "./exit-codes.js";
import type { CliIo } from "./program.js";

export function registerMachinesCommand(program: Command, io: CliIo): void {
  program
    .command("machines")
    .description("print the member and federation state machines (the README embeds the mermaid form)")
    .option("--format <format>", "mermaid or json", "mermaid")
    .action((opts: { format: string }) => {
      if (opts.format === "mermaid") io.out(machinesAsMermaid());
      else if (opts.format === "json") io.out(`${JSON.stringify(machinesAsJson(), null, 2)}\n`);
      else throw new CliExit(EXIT.usage, `unknown --format "${opts.format}" (mermaid or json)`);
    });
}
