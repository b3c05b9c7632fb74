#!/usr/bin/env node
import { runCli } from "./program.js";

const code = await runCli(process.argv.slice(2));
// Exit once output is flushed: a finished command must not wait on idle sockets or timers.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
