#!/usr/bin/env node
// The compiled pgfed: src/cli/main.ts bundled by esbuild into dist/ (and the status page into dist/ui) (ES modules, one chunk per
// lazily imported command group, npm packages left as imports from node_modules), with source
// maps. `bin/pgfed.js` runs dist/main.js. Rebuilt by scripts/setup.sh when any source changed
// (dist/.build-stamp holds the hash of the inputs); plain JavaScript so it needs no tsx.
// Usage: node scripts/build.js [--if-changed]
import { createHash } from "node:crypto";
import { copyFileSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(fileURLToPath(import.meta.url), "..", "..");
const out = join(root, "dist");
const stampFile = join(out, ".build-stamp");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const BUNDLED = ["commander"];
const INPUTS = ["src", "machines", "package.json", "package-lock.json", "scripts/build.js"];

function files(path) {
  const full = join(root, path);
  if (!existsSync(full)) return [];
  if (!statSync(full).isDirectory()) return [path];
  return readdirSync(full, { withFileTypes: true })
    .flatMap((e) => files(join(path, e.name)))
    .sort();
}

/** A hash of every input's path and content: a change anywhere rebuilds. */
function inputsHash() {
  const h = createHash("sha256");
  for (const f of INPUTS.flatMap(files)) h.update(`${relative(root, join(root, f))}\0`).update(readFileSync(join(root, f))).update("\0");
  return h.digest("hex");
}

const ifChanged = process.argv.includes("--if-changed");
const hash = inputsHash();
if (ifChanged && existsSync(stampFile) && readFileSync(stampFile, "utf8").trim() === hash) process.exit(0);

const started = performance.now();
const { build } = await import("esbuild");
rmSync(out, { recursive: true, force: true });
const result = await build({
  absWorkingDir: root,
  entryPoints: ["src/cli/main.ts"],
  outdir: "dist",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node22",
  // npm packages stay imports from node_modules, except the few every command loads, which are
  // bundled: one file parses faster than a package's many (commander: ~10 ms less per command).
  external: Object.keys(pkg.dependencies ?? {}).filter((name) => !BUNDLED.includes(name)),
  sourcemap: true,
  chunkNames: "chunks/[name]-[hash]",
  logLevel: "warning",
  metafile: true,
});
// The status page (src/ui): one browser bundle with its CSS, and the HTML that loads them; the API
// serves dist/ui at / (src/api/ui.ts).
const ui = await build({
  absWorkingDir: root,
  entryPoints: ["src/ui/main.tsx"],
  outdir: "dist/ui",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["chrome120", "firefox120", "safari17"],
  jsx: "automatic",
  jsxImportSource: "preact",
  minify: true,
  sourcemap: true,
  logLevel: "warning",
  metafile: true,
});
copyFileSync(join(root, "src/ui/index.html"), join(out, "ui", "index.html"));
writeFileSync(stampFile, `${hash}\n`);
const outputs = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith(".js"));
const bytes = outputs.reduce((n, [, o]) => n + o.bytes, 0);
const page = Object.entries(ui.metafile.outputs).filter(([f]) => !f.endsWith(".map"));
const pageBytes = page.reduce((n, [, o]) => n + o.bytes, 0);
console.error(
  `build: dist/ (${outputs.length} files, ${(bytes / 1024).toFixed(0)} KiB) and the status page dist/ui (${page.map(([f, o]) => `${f.split("/").pop()} ${(o.bytes / 1024).toFixed(0)} KiB`).join(", ")}; ${(pageBytes / 1024).toFixed(0)} KiB) in ${(performance.now() - started).toFixed(0)} ms`,
);
