#!/usr/bin/env node
import { setLabControlPlane } from "./lab.js";
import { runCli } from "./program.js";

// `pgfed lab` runs agents, a coordinator and the API over its regions; they load only when it starts.
setLabControlPlane(async (lab, io) => (await import("./lab-plane.js")).labControlPlane(lab, io));
const code = await runCli(process.argv.slice(2));
// Exit once output is flushed: a finished command must not wait on idle sockets or timers.
process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
