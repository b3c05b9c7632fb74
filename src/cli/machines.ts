import type { Command } from "commander";
import { CliExit, EXIT } from "./exit-codes.js";
import type { CliIo } from "./program.js";

export function registerMachinesCommand(program: Command, io: CliIo): void {
  program
    .command("machines")
    .description("print the member and federation state machines (the README embeds the mermaid form)")
    .option("--format <format>", "mermaid or json", "mermaid")
    .action(async (opts: { format: string }) => {
      const { machinesAsJson, machinesAsMermaid } = await import("../../machines/describe.js");
      if (opts.format === "mermaid") io.out(machinesAsMermaid());
      else if (opts.format === "json") io.out(`${JSON.stringify(machinesAsJson(), null, 2)}\n`);
      else throw new CliExit(EXIT.usage, `unknown --format "${opts.format}" (mermaid or json)`);
    });
}
