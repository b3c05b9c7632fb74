#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `node scripts/build.js`; `npm run lab`, `npm test` and
// the container image build it). For an edit-run loop on the TypeScript itself: `npm run pgfed -- …`.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";

const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
if (major < 22 || (major === 22 && minor < 19)) {
  // An older Node on PATH (e.g. Debian's): use the Node 24 that scripts/setup.sh installed for
  // `npm run lab` / `npm test`, if there is one, so `npx pgfed …` works where the lab does.
  const node24 = new URL("../.tools/node24/node_modules/node/bin/node", import.meta.url);
  if (!existsSync(node24)) {
    process.stderr.write(`pgfed needs Node.js 22.19 or newer; this is ${process.version} (${process.execPath}). Install Node 24, or run \`npm run lab\` once here (it installs Node 24 into .tools/node24, which pgfed then uses).\n`);
    process.exit(1);
  }
  const child = spawn(node24.pathname, [...process.execArgv, new URL(import.meta.url).pathname, ...process.argv.slice(2)], { stdio: "inherit" });
  // Ctrl-C reaches both processes (one process group): this one waits for the child to stop.
  process.on("SIGINT", () => undefined);
  for (const sig of ["SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
  child.on("exit", (code, signal) => {
    if (signal) {
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
} else {
  const main = new URL("../dist/main.js", import.meta.url);
  if (!existsSync(main)) {
    process.stderr.write(`pgfed is not built: ${main.pathname} is missing. Build it with: npm run build\n`);
    process.exit(1);
  }
  await import(main.href);
}

