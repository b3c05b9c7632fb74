#!/usr/bin/env node
import { setLabControlPlane } from "./lab.js";
import { labControlPlane } from "./lab-plane.js";
import { runCli } from "./program.js";

// `pgfed lab` runs agents, a coordinator and the API over its regions.
setLabControlPlane(labControlPlane);
const code = await runCli(process.argv.slice(2));
// Exit once output is flushed: a finished command must not wait on idle sockets or timers.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
