/** `-o table|wide|json|yaml` for every read command: one parser, one printer. */
import { createRequire } from "node:module";
import { CliExit, EXIT } from "./exit-codes.js";
import type { CliIo } from "./program.js";

/** The YAML library, loaded on first use: it costs ~25 ms of start-up that most commands do not need. */
export function loadYaml(): typeof import("yaml") {
  return createRequire(import.meta.url)("yaml") as typeof import("yaml");
}

export const OUTPUT_FORMATS = ["table", "wide", "json", "yaml"] as const;

/** Checks -o before anything is asked of the API: a typo changes nothing and costs no request. */
export function outputFormat(format: string | undefined): (typeof OUTPUT_FORMATS)[number] {
  if (format === undefined) return "table";
  if ((OUTPUT_FORMATS as readonly string[]).includes(format)) return format as (typeof OUTPUT_FORMATS)[number];
  throw new CliExit(EXIT.usage, `-o must be one of ${OUTPUT_FORMATS.join(", ")}, not "${format}"`);
}

/** json and yaml print the API's objects as they are; table and wide are for people. */
export function output(io: CliIo, format: string | undefined, value: unknown, text: (wide: boolean) => string): void {
  const f = outputFormat(format);
  if (f === "json") io.out(`${JSON.stringify(value, null, 2)}\n`);
  else if (f === "yaml") io.out(loadYaml().stringify(value));
  else io.out(`${text(f === "wide")}\n`);
}
