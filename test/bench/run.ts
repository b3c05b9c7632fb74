/**
 * `npm run bench`: runs each benchmark case and prints its figures. A case is a file in
 * test/bench/ exporting a `BenchCase`; register it in CASES below. `npm run bench -- sampler`
 * runs only the named cases.
 */
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { errorMessage } from "../../src/errors.js";
import { cliBench } from "./cli.js";
import { coordinatorBench } from "./coordinator.js";
import { samplerBench } from "./sampler.js";

export interface Figure {
  name: string;
  value: number | string;
  unit?: string;
  /** One line saying how it was measured or what it means. */
  note?: string;
}

export interface BenchCase {
  name: string;
  /** What the case measures and how it simulates the load, printed before its figures. */
  description: string;
  run(log: (line: string) => void): Promise<Figure[]>;
}

/** Every case `npm run bench` knows, in the order they run. */
export const CASES: readonly BenchCase[] = [samplerBench, coordinatorBench, cliBench];

function printFigures(figures: Figure[]): void {
  const width = Math.max(...figures.map((f) => f.name.length));
  for (const f of figures) {
    const value = typeof f.value === "number" ? formatNumber(f.value) : f.value;
    console.log(`  ${f.name.padEnd(width)}  ${value}${f.unit ? ` ${f.unit}` : ""}${f.note ? `   (${f.note})` : ""}`);
  }
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

async function main(): Promise<number> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !CASES.some((c) => c.name === w));
  if (unknown.length > 0) {
    console.error(`unknown bench case(s): ${unknown.join(", ")}; known: ${CASES.map((c) => c.name).join(", ")}`);
    return 64;
  }
  let failed = 0;
  for (const c of CASES.filter((c) => wanted.length === 0 || wanted.includes(c.name))) {
    console.log(`\n== ${c.name}: ${c.description}`);
    const started = performance.now();
    try {
      const figures = await c.run((line) => console.log(`  · ${line}`));
      console.log(`-- ${c.name} figures (${((performance.now() - started) / 1000).toFixed(1)} s):`);
      printFigures(figures);
    } catch (e) {
      failed++;
      console.error(`!! ${c.name} failed after ${((performance.now() - started) / 1000).toFixed(1)} s: ${errorMessage(e)}`);
    }
  }
  return failed === 0 ? 0 : 1;
}

// Only when run as the entry point, so cases can import the types above without running main.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const code = await main();
  // Cases stop their servers by PID; a client socket or timer left in this process must not keep
  // `npm run bench` waiting once the figures are printed.
  process.stdout.write("", () => process.exit(code));
}
