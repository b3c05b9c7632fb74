/** `pgfed runbook FED`: the federation's DR runbook (runbook-document.ts) from the API's live view, to stdout or a file. */
import { writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { renderHtml, renderMarkdown, rulesFrom, runbookDocument } from "./runbook-document.js";
import { clientFor, connOptions, withApiErrors } from "./ops.js";
import { CliExit, EXIT } from "./exit-codes.js";
import type { CliIo } from "./program.js";

export function registerRunbookCommand(program: Command, io: CliIo): void {
  const cmd = program
    .command("runbook")
    .description("render a federation's DR runbook from live state: topology, today's numbers, the exact commands, how to verify")
    .argument("<federation>")
    .option("--format <format>", "markdown or html", "markdown")
    .option("-o, --output <file>", "write to this file instead of stdout")
    .option("--config <file>", "read the lease TTL and clock-skew margin from this pgfed config instead of the coordinator's (e.g. a change not yet deployed)");
  connOptions(cmd).action(async (fedName: string, opts: { format: string; output?: string; config?: string; server?: string; token?: string; ca?: string; cert?: string; key?: string }) => {
    if (opts.format !== "markdown" && opts.format !== "html" && opts.format !== "md") throw new CliExit(EXIT.usage, `--format must be markdown or html, not "${opts.format}"`);
    // The runbook is a document: its -o names a file. A format word there is a slip from the read commands' -o.
    if (opts.output !== undefined && ["table", "wide", "json", "yaml"].includes(opts.output))
      throw new CliExit(EXIT.usage, `-o names the file to write for runbook, not a format ("${opts.output}"); pick the format with --format markdown|html, or pass -o ./${opts.output} for a file of that name`);
    const tty = io as CliIo & { env?: NodeJS.ProcessEnv; cwd?: string; isTTY?: boolean };
    const client = clientFor(opts, { isTTY: false, confirm: async () => false, env: tty.env ?? process.env, cwd: tty.cwd ?? process.cwd() });
    const fed = await withApiErrors(() => client.federation(fedName));
    const cfg = opts.config ? (await (await import("../config.js")).loadConfig(opts.config)).federations.find((f) => f.name === fedName) : undefined;
    if (opts.config && !cfg) throw new CliExit(EXIT.refused, `${opts.config} has no federation "${fedName}"`);
    const doc = runbookDocument({ federation: fed, rules: rulesFrom(fed, cfg, opts.config ?? ""), server: client.target.server, generatedAt: new Date() });
    const text = opts.format === "html" ? renderHtml(doc) : renderMarkdown(doc);
    if (opts.output) {
      await writeFile(opts.output, text);
      io.err(`wrote ${opts.output}\n`);
    } else io.out(text);
  });
}
