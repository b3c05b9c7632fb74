/**
 * `pgfed evacuate <region>`: move the primary of every federation out of a region, by planned
 * switchovers (the coordinator's coordinator/evacuation.ts). A dry run lists every move with its
 * numbers; the real one shows progress for the whole set and ends with a summary.
 */
import type { Command } from "commander";
import type { EvacuationMoveView, EvacuationView } from "../api/contract.js";
import { formatDurationMs, parseDurationMs } from "../duration.js";
import { CliExit, EXIT, type ExitCode } from "./exit-codes.js";
import { clientFor, connOptions, fmtSec, table, ttyOf, withApiErrors } from "./ops.js";
import { output, outputFormat, OUTPUT_FORMATS } from "./output.js";
import type { CliIo } from "./program.js";

const POLL_MS = 1_000;

export function formatEvacuation(v: EvacuationView): string {
  const rows = [["FEDERATION", "FROM", "TO", "LAG", "LOSS", "STATE", "TIME"]];
  for (const m of v.moves) rows.push([m.federation, m.from, m.target ?? "-", fmtSec(m.lagSeconds), fmtSec(m.expectedDataLossSeconds), m.state, fmtSec(m.durationSeconds)]);
  const head = v.dryRun
    ? `evacuation of region ${v.region} (dry run, ${v.parallel} at a time): ${v.moves.length} federation(s) with their primary there`
    : `evacuation ${v.id} of region ${v.region} ${v.state} (${v.parallel} at a time), requested by ${v.requestedBy}`;
  const notes = v.moves.filter((m) => m.state === "skipped" || m.state === "failed").map((m) => `  ${m.federation}: ${m.detail}`);
  const c = v.counts;
  const tail = v.dryRun
    ? `${c.planned} to move, ${c.skipped} without an eligible target; nothing was changed (dry run)`
    : `${c.completed} moved, ${c.failed} failed, ${c.skipped} skipped${c.running + c.queued > 0 ? `, ${c.running} running, ${c.queued} queued` : ""}`;
  return [head, "", v.moves.length > 0 ? table(rows) : "(no federation has its primary in this region)", ...(notes.length > 0 ? ["", ...notes] : []), "", tail].join("\n");
}

function progressLine(v: EvacuationView, elapsedMs: number): string {
  const c = v.counts;
  const total = v.moves.length - c.skipped;
  return `[${(elapsedMs / 1000).toFixed(1).padStart(6)}s] ${c.completed + c.failed}/${total} done: ${c.completed} moved, ${c.failed} failed, ${c.running} running, ${c.queued} queued`;
}

function finishedLine(m: EvacuationMoveView, elapsedMs: number): string {
  return `[${(elapsedMs / 1000).toFixed(1).padStart(6)}s] ${m.federation}: ${m.state === "completed" ? "✓" : "✗"} ${m.detail}`;
}

export function registerEvacuateCommand(program: Command, io: CliIo): void {
  connOptions(program.command("evacuate").description("planned switchover of every federation whose primary is in <region> to its best replica elsewhere"))
    .argument("<region>")
    .option("--dry-run", "list every move with its numbers; change nothing")
    .option("--parallel <n>", "switchovers at a time (1-64)", "4")
    .option("--skip-ineligible", "move the others when a federation has no eligible target (default: refuse the whole evacuation)")
    .option("--reason <text>", "why (recorded in each switchover's audit trail)")
    .option("-y, --yes", "do not ask for confirmation")
    .option("--wait", "follow the evacuation to its end (default on a terminal)")
    .option("--no-wait", "return once it has started")
    .option("--timeout <duration>", "give up waiting after this long (exit 4)", "1h")
    .option("-o, --output <format>", OUTPUT_FORMATS.join(", "), "table")
    .action(async (region: string, opts: { dryRun?: boolean; parallel: string; skipIneligible?: boolean; reason?: string; yes?: boolean; wait?: boolean; timeout: string; output: string; server?: string; token?: string; ca?: string; cert?: string; key?: string }) => {
      outputFormat(opts.output);
      const parallel = Number(opts.parallel);
      if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw new CliExit(EXIT.usage, `--parallel must be a whole number from 1 to 64, not "${opts.parallel}"`);
      let timeoutMs: number;
      try {
        timeoutMs = parseDurationMs(opts.timeout);
      } catch (e) {
        throw new CliExit(EXIT.usage, `--timeout: ${(e as Error).message}`);
      }
      const tty = ttyOf(io);
      const client = clientFor(opts, tty);
      const body = { parallel, skipIneligible: opts.skipIneligible === true, ...(opts.reason !== undefined ? { reason: opts.reason } : {}) };
      const path = `/v1/regions/${encodeURIComponent(region)}/evacuate`;
      const plan = (await withApiErrors(() => client.request<EvacuationView>("POST", `${path}?dryRun=true`, { body }))).body;
      if (opts.dryRun) {
        output(io, opts.output, plan, () => formatEvacuation(plan));
        if (plan.counts.skipped > 0 && !opts.skipIneligible) throw new CliExit(EXIT.refused, "");
        return;
      }
      if (plan.counts.planned === 0 && plan.counts.skipped === 0) {
        output(io, opts.output, plan, () => `no federation has its primary in region ${region}; nothing to do`);
        return;
      }
      if (!opts.yes) {
        if (!tty.isTTY) throw new CliExit(EXIT.usage, `not a terminal, so no one can confirm the evacuation of ${region}: pass --yes (or --dry-run to see the plan)`);
        io.err(`${formatEvacuation(plan)}\n`);
        if (!(await tty.confirm(`switch over ${plan.counts.planned} federation(s) away from ${region}?`))) throw new CliExit(EXIT.refused, "not confirmed; nothing was changed");
      }
      const started = (await withApiErrors(() => client.request<EvacuationView>("POST", path, { body }))).body;
      const wait = opts.wait ?? tty.isTTY;
      io.err(`evacuation ${started.id} of region ${region}: ${started.moves.length - started.counts.skipped} switchover(s), ${parallel} at a time, ${started.counts.skipped} skipped\n`);
      if (!wait) {
        output(io, opts.output, started, () => `follow it: GET /v1/evacuations/${started.id}, or pgfed status`);
        return;
      }
      const code = await follow(started, timeoutMs);
      if (code !== EXIT.ok) throw new CliExit(code, "");

      async function follow(first: EvacuationView, limitMs: number): Promise<ExitCode> {
        const t0 = Date.now();
        let last = first;
        const reported = new Set<string>();
        let lastLine = "";
        while (last.state === "running") {
          if (Date.now() - t0 > limitMs) {
            io.err(`gave up waiting after ${formatDurationMs(limitMs)}; evacuation ${first.id} continues\n`);
            return EXIT.timedOut;
          }
          await new Promise((r) => setTimeout(r, POLL_MS));
          last = (await withApiErrors(() => client.request<EvacuationView>("GET", `/v1/evacuations/${encodeURIComponent(first.id)}`))).body;
          for (const m of last.moves) {
            if ((m.state === "completed" || m.state === "failed") && !reported.has(m.federation)) {
              reported.add(m.federation);
              io.err(`${finishedLine(m, Date.now() - t0)}\n`);
            }
          }
          const line = progressLine(last, Date.now() - t0);
          if (line.slice(9) !== lastLine.slice(9)) io.err(`${line}\n`);
          lastLine = line;
        }
        const final = last;
        output(io, opts.output, final, () => formatEvacuation(final));
        return final.state === "completed" ? EXIT.ok : EXIT.failed;
      }
    });
}
