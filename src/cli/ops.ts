/**
 * The on-call commands: status, switchover, failover, rejoin, pause, resume, approve, audit. They
 * talk to the pgfed API (client.ts); the progress lines are the coordinator's own decisions
 * (`lastDecision`, STYLE.md), so the CLI and the API say the same sentence.
 */
import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import type { FederationView, OperationView, PlanView } from "../api/contract.js";
import { formatDurationMs, parseDurationMs } from "../duration.js";
import { ApiCallError, ApiClient, isFinishedState, resolveTarget, type ActionAnswer } from "./client.js";
import { CliExit, EXIT, type ExitCode } from "./exit-codes.js";
import { output, outputFormat, OUTPUT_FORMATS } from "./output.js";
import type { CliIo } from "./program.js";

/** What the ops commands need beyond CliIo; tests pass these, the real CLI uses the process's terminal. */
export interface TtyIo {
  isTTY: boolean;
  confirm: (question: string) => Promise<boolean>;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export function ttyOf(io: CliIo): TtyIo {
  const given = io as CliIo & Partial<TtyIo>;
  return {
    isTTY: given.isTTY ?? (process.stdout.isTTY === true && process.stdin.isTTY === true),
    confirm:
      given.confirm ??
      (async (q) => {
        const rl = createInterface({ input: process.stdin, output: process.stderr });
        try {
          return /^y(es)?$/i.test((await rl.question(`${q} [y/N] `)).trim());
        } finally {
          rl.close();
        }
      }),
    env: given.env ?? process.env,
    cwd: given.cwd ?? process.cwd(),
  };
}

interface ConnOpts {
  server?: string;
  token?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

export function clientFor(opts: ConnOpts, tty: TtyIo): ApiClient {
  return new ApiClient(resolveTarget({ server: opts.server, token: opts.token, ca: opts.ca, cert: opts.cert, key: opts.key, env: tty.env, cwd: tty.cwd }));
}

/** API refusals and rejections end with exit 2 and the API's message (naming the field). */
export async function withApiErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiCallError) {
      const field = e.body.field ? ` (${e.body.field})` : "";
      const plan = e.body.details?.plan;
      const extra = plan ? `\n${formatPlan(plan)}` : "";
      if (e.status >= 500) throw new CliExit(EXIT.error, `error: ${e.body.message}${field}`);
      throw new CliExit(EXIT.refused, `refused (${e.status} ${e.body.reason}): ${e.body.message}${field}${extra}`);
    }
    throw e;
  }
}

/** How to reach the API: server, token, and for HTTPS a private CA and a client certificate. */
export const connOptions = (cmd: Command): Command =>
  cmd
    .option("--server <url>", "pgfed API URL (env PGFED_SERVER; ~/.config/pgfed/config.yaml; ./.lab/lab.json)")
    .option("--token <token>", "API bearer token (env PGFED_TOKEN)")
    .option("--ca <file>", "PEM CA certificate to trust for an https:// API (env PGFED_CA)")
    .option("--cert <file>", "PEM client certificate for an API with mutual TLS (env PGFED_CERT)")
    .option("--key <file>", "PEM key of --cert (env PGFED_KEY)");

// ---------- formatting (80 columns) ----------

export const fmtSec = (s: number | null | undefined): string => (s === null || s === undefined ? "-" : formatDurationMs(s * 1000));
function fmtBytes(b: number | null | undefined): string {
  if (b === null || b === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = b;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i] ?? "B"}`;
}
/** Age in whole seconds ("12 s"): how long ago a report arrived. */
const fmtAgo = (s: number | null): string => (s === null ? "-" : `${Math.round(s)} s`);
const cut = (s: string, n: number): string => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);

export function table(rows: string[][]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ").trimEnd()).join("\n");
}

/** Word-wraps `text` to `width` columns, continuation lines indented by `indent`. */
export function wrap(text: string, width: number, indent: string): string {
  const words = text.split(/\s+/).filter(Boolean);
  const lines: string[] = [];
  let line = "";
  for (const w of words) {
    if (line !== "" && line.length + 1 + w.length > width) {
      lines.push(line);
      line = indent + w;
    } else line = line === "" ? w : `${line} ${w}`;
  }
  if (line !== "") lines.push(line);
  return lines.join("\n");
}

/** The federation as a table; `wide` adds the Cluster, timeline, lag in bytes, reachability and report age. */
export function formatFederation(f: FederationView, wide = false): string {
  const exp = f.exposure;
  const head = [
    `federation ${f.name}   epoch ${f.epoch}   primary ${f.designatedPrimary ?? "(none)"}   failover ${f.mode}${f.paused ? " (PAUSED)" : ""}`,
    exp
      ? `exposure ${fmtSec(exp.seconds)} (${fmtBytes(exp.bytes)}), worst case ${fmtSec(exp.worstCaseSeconds)} / budget ${fmtSec(f.rpo.budgetSeconds)} [${exp.level}]`
      : `exposure unknown / budget ${fmtSec(f.rpo.budgetSeconds)}`,
  ];
  const rows = [["MEMBER", "REGION", "ROLE", "STATE", "PHASE", "LAG", "LOSS", ...(wide ? ["CLUSTER", "TL", "LAG BYTES", "REACHABLE", "SEEN"] : [])]];
  const stale: string[] = [];
  const lost: string[] = [];
  for (const m of f.members) {
    const base = m.fenced ? `${m.state},fenced` : m.diverged && m.state !== "diverged" ? `${m.state},diverged` : m.state;
    // "*": not following the primary (its lag grows, it is no switchover target); the reason goes below the table.
    const state = m.following === false ? `${base}*` : base;
    if (m.following === false) lost.push(wrap(`* ${m.name} is NOT FOLLOWING the primary: ${m.notFollowing ?? "no reason given"}`, 80, "  "));
    // A report older than the lease TTL may describe a member that is gone: say so instead of showing it as current.
    const old = m.observedAgoSeconds !== null && m.observedAgoSeconds > f.failover.leaseTtlSeconds;
    if (old) stale.push(wrap(`${m.name}: unreachable? last report ${fmtAgo(m.observedAgoSeconds)} ago (lease TTL ${fmtSec(f.failover.leaseTtlSeconds)}); its role, state and phase are from that report`, 80, "  "));
    const extra = wide ? [`${m.namespace}/${m.cluster}`, m.timeline === null ? "-" : String(m.timeline), m.role === "primary" ? "-" : fmtBytes(m.lagBytes), m.reachable ? "yes" : "NO", fmtAgo(m.observedAgoSeconds)] : [];
    rows.push([m.name, m.region, old ? `${m.role}?` : m.role, old ? `${state}?` : state, wide ? m.phase : cut(m.phase, 24), m.role === "primary" ? "-" : fmtSec(m.lagSeconds), m.role === "primary" ? "-" : fmtSec(m.lossIfPromotedSeconds), ...extra]);
  }
  const tail: string[] = [...stale, ...lost];
  if (f.operation && !isFinishedState(f.operation.state)) tail.push(wrap(`operation ${f.operation.id}: ${f.operation.kind} → ${f.operation.target ?? "?"} (${f.operation.state}, step ${f.operation.step})`, 80, "  "));
  for (const a of f.alerts) tail.push(wrap(`alert ${a.name}: ${a.reason}`, 80, "  "));
  if (f.diverged.length > 0) tail.push(`diverged: ${f.diverged.join(", ")} (pgfed rejoin ${f.name} <member>)`);
  tail.push(wrap(`last decision: ${f.lastDecision}`, 80, "  "));
  return [...head, "", table(rows), "", ...tail].join("\n");
}

export function formatPlan(p: PlanView): string {
  const lines = [`plan: ${p.kind} ${p.federation}${p.target ? ` → ${p.target}` : ""}: ${p.allowed ? "allowed" : "REFUSED"}`];
  if (p.refusal) lines.push(wrap(`  refusal: ${p.refusal}`, 80, "    "));
  if (p.preconditions.length > 0) lines.push("preconditions:");
  for (const c of p.preconditions) {
    const nums = Object.entries(c.numbers).map(([k, v]) => `${k}=${v}`);
    lines.push(wrap(`  ${c.ok ? "✓" : "✗"} ${c.name}: ${c.detail}${nums.length ? ` (${nums.join(", ")})` : ""}`, 80, "      "));
  }
  if (p.steps.length > 0) lines.push("steps:");
  p.steps.forEach((s, i) => lines.push(wrap(`  ${i + 1}. ${s.step}: ${s.description}`, 80, "       ")));
  lines.push(`expected data loss: ${fmtSec(p.expectedDataLoss.seconds)} (${fmtBytes(p.expectedDataLoss.bytes)})`);
  lines.push(`expected duration:  ${fmtSec(p.expectedDurationSeconds)}`);
  lines.push("nothing was changed (dry run)");
  return lines.join("\n");
}

/** "switchover orders pg-eu → pg-us"; a rejoin moves no role, so it names its member and the primary it clones from. */
function operationTitle(op: Pick<OperationView, "kind" | "federation" | "from" | "target">, withFrom: boolean): string {
  if (op.kind === "rejoin") return `rejoin ${op.federation} ${op.target ?? "?"}${op.from ? ` (from ${op.from})` : ""}`;
  return `${op.kind} ${op.federation}${withFrom && op.from ? ` ${op.from}` : ""} → ${op.target ?? "?"}`;
}

export function formatSummary(op: OperationView): string {
  const epoch = op.epochAfter !== null && op.epochAfter !== op.epochBefore ? `epoch ${op.epochBefore} → ${op.epochAfter}` : `epoch ${op.epochBefore}`;
  const head =
    op.state === "completed"
      ? `${operationTitle(op, false)} completed`
      : `${operationTitle(op, false)} ${op.state.toUpperCase()} at step ${op.step}`;
  return [
    head,
    `  duration ${fmtSec(op.durationSeconds)}, data loss ${fmtSec(op.dataLossSeconds)}${op.acceptedLossSeconds !== null ? ` (accepted ${fmtSec(op.acceptedLossSeconds)})` : ""}, ${epoch}`,
    wrap(`  ${op.lastDecision}`, 80, "  "),
  ].join("\n");
}

// ---------- waiting ----------

const SPIN = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/** Follows an operation to its end and returns the exit code it means. */
export async function waitForOperation(client: ApiClient, first: OperationView, io: CliIo, tty: boolean, timeoutMs: number, format?: string): Promise<ExitCode> {
  const t0 = Date.now();
  const el = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  let printedSteps = 0;
  let lastDecision = "";
  let hinted = false;
  let current = first;
  let stepStart = Date.now();
  let frame = 0;
  const clear = () => (tty ? "\r\x1b[K" : "");
  const liveLine = () => {
    const head = `${SPIN[frame++ % SPIN.length] ?? "-"} ${current.step} ${((Date.now() - stepStart) / 1000).toFixed(1)}s `;
    return `${clear()}${head}${cut(current.lastDecision, Math.max(10, 79 - head.length))}`;
  };
  const show = (op: OperationView) => {
    current = op;
    for (const s of op.steps.slice(printedSteps)) {
      if (tty) io.err(`${clear()}✓ ${s.step.padEnd(12)} ${el().padStart(7)}  ${cut(s.description, 56)}\n`);
      else io.err(`[${el().padStart(7)}] ${wrap(`${s.step}: ${s.description}`, 68, "           ")}\n`);
      stepStart = Date.now();
    }
    if (op.lastDecision !== lastDecision && op.steps.at(-1)?.description !== op.lastDecision && !tty) io.err(`[${el().padStart(7)}] ${wrap(op.lastDecision, 68, "           ")}\n`);
    printedSteps = op.steps.length;
    lastDecision = op.lastDecision;
    if ((op.state === "awaitingApproval" || op.state === "operatorRequired") && !hinted) {
      hinted = true;
      const hint = op.state === "awaitingApproval" ? `waiting for approval: pgfed approve ${op.id} --accept-data-loss <duration>` : `a person must act: ${op.lastDecision}; once the Clusters are fixed: pgfed resolve ${op.federation} --primary <member>`;
      io.err(`${clear()}${wrap(hint, 80, "  ")}\n`);
    }
    if (tty) io.err(liveLine());
  };
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const spinner = tty ? setInterval(() => io.err(liveLine()), 100) : undefined;
  let final: OperationView | undefined;
  try {
    show(first);
    final = isFinishedState(first.state) ? first : await client.follow(first.id, show, controller.signal);
  } catch (e) {
    if (!controller.signal.aborted) throw e;
  } finally {
    clearTimeout(timer);
    if (spinner) clearInterval(spinner);
    if (tty) io.err(clear());
  }
  if (!final || !isFinishedState(final.state)) {
    throw new CliExit(
      EXIT.timedOut,
      `gave up waiting after ${formatDurationMs(timeoutMs)}; operation ${first.id} continues (${current.state}, step ${current.step}).\nFollow it with: pgfed status ${first.federation}`,
    );
  }
  const done = final;
  output(io, format, done, () => formatSummary(done));
  if (final.state === "completed" || final.state === "resolved") return EXIT.ok;
  if (final.state === "refused") return EXIT.refused;
  return EXIT.failed;
}

// ---------- the action commands ----------

interface ActionOpts extends ConnOpts {
  dryRun?: boolean;
  yes?: boolean;
  wait?: boolean;
  timeout: string;
  reason?: string;
  idempotencyKey?: string;
  output?: string;
}

function durationOpt(name: string, v: string): number {
  try {
    return parseDurationMs(v);
  } catch (e) {
    throw new CliExit(EXIT.usage, `${name}: ${(e as Error).message}`);
  }
}

const actionOptions = (cmd: Command, destructive: boolean): Command => {
  connOptions(cmd)
    .option("--reason <text>", "why (recorded in the audit trail)")
    .option("--dry-run", "print the plan (preconditions with their numbers, steps, expected loss and duration); change nothing")
    .option("--wait", "follow the operation to its end (default on a terminal)")
    .option("--no-wait", "return once the operation has started")
    .option("--timeout <duration>", "give up waiting after this long (exit 4)", "10m")
    .option("--idempotency-key <key>", "repeat a request safely: the same key returns the same operation")
    .option("-o, --output <format>", `${OUTPUT_FORMATS.join(", ")}: the plan, the operation or its end (progress stays on stderr)`, "table");
  if (destructive) cmd.option("-y, --yes", "do not ask for confirmation");
  return cmd;
};

async function runAction(
  io: CliIo,
  opts: ActionOpts,
  req: { path: string; body: Record<string, unknown>; confirm?: string },
  rc: { code: ExitCode },
): Promise<void> {
  const tty = ttyOf(io);
  const timeoutMs = durationOpt("--timeout", opts.timeout);
  outputFormat(opts.output);
  const client = clientFor(opts, tty);
  const body = { ...req.body, ...(opts.reason !== undefined ? { reason: opts.reason } : {}) };
  const dryRun = opts.dryRun === true;
  if (!dryRun && req.confirm && !opts.yes) {
    if (!tty.isTTY) throw new CliExit(EXIT.usage, `not a terminal, so no one can confirm "${req.confirm}": pass --yes (or --dry-run to see the plan)`);
    if (!(await tty.confirm(`${req.confirm}?`))) throw new CliExit(EXIT.refused, "not confirmed; nothing was changed");
  }
  const answer: ActionAnswer = await withApiErrors(() => client.action(req.path, body, { dryRun, ...(opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {}) }));
  if (answer.kind === "plan") {
    const plan = answer.plan;
    output(io, opts.output, plan, () => formatPlan(plan));
    rc.code = answer.plan.allowed ? EXIT.ok : EXIT.refused;
    return;
  }
  if (answer.kind === "federation") {
    const fed = answer.federation;
    output(io, opts.output, fed, (wide) => formatFederation(fed, wide));
    return;
  }
  const op = answer.operation;
  const wait = opts.wait ?? tty.isTTY;
  const machine = opts.output === "json" || opts.output === "yaml";
  if (machine && !wait) {
    output(io, opts.output, op, () => "");
    return;
  }
  (machine ? io.err : io.out)(`operation ${op.id}: ${operationTitle(op, true)} (${op.state}), requested by ${op.requestedBy}\n`);
  if (!wait) {
    const approve = op.state === "awaitingApproval" ? `approve it: pgfed approve ${op.id}${op.kind === "failover" ? " --accept-data-loss <duration>" : ""}; ` : "";
    io.out(`${wrap(op.lastDecision, 80, "  ")}\n${wrap(`${approve}follow it: pgfed status ${op.federation} (or GET /v1/operations/${op.id})`, 80, "  ")}\n`);
    return;
  }
  rc.code = await withApiErrors(() => waitForOperation(client, op, io, tty.isTTY, timeoutMs, opts.output));
}

export function registerOpsCommands(program: Command, io: CliIo): void {
  // Exit codes other than 0 without an error message (a refused dry run, a failed operation).
  const rc: { code: ExitCode } = { code: EXIT.ok };
  const finish = () => {
    if (rc.code !== 0) throw new CliExit(rc.code, "");
  };
  const enc = encodeURIComponent;

  connOptions(program.command("status").description("federations as pgfed sees them: roles, states, lag, exposure vs budget"))
    .argument("[federation]", "one federation (default: all)")
    .option("-o, --output <format>", OUTPUT_FORMATS.join(", "), "table")
    .action(async (fed: string | undefined, opts: ConnOpts & { output: string }) => {
      outputFormat(opts.output);
      const client = clientFor(opts, ttyOf(io));
      const feds = await withApiErrors(async () => (fed ? [await client.federation(fed)] : await client.federations()));
      output(io, opts.output, fed ? feds[0] : feds, (wide) => feds.map((f) => formatFederation(f, wide)).join("\n\n"));
    });

  actionOptions(program.command("switchover").description("planned switchover to another member, with zero data loss"), true)
    .argument("<federation>")
    .requiredOption("--to <member>", "the member to promote")
    .action(async (fed: string, opts: ActionOpts & { to: string }) => {
      await runAction(io, opts, { path: `/v1/federations/${enc(fed)}/switchover`, body: { target: opts.to }, confirm: `switch over ${fed} to ${opts.to}` }, rc);
      finish();
    });

  actionOptions(program.command("failover").description("unplanned failover, gated by fencing/lease expiry and the RPO budget"), true)
    .argument("<federation>")
    .option("--to <member>", "the member to promote (default: the one with the least loss)")
    .option("--accept-data-loss <duration>", "accept up to this much data loss (e.g. 30s) beyond the budget")
    .action(async (fed: string, opts: ActionOpts & { to?: string; acceptDataLoss?: string }) => {
      if (opts.acceptDataLoss !== undefined) durationOpt("--accept-data-loss", opts.acceptDataLoss);
      const body = { ...(opts.to ? { target: opts.to } : {}), ...(opts.acceptDataLoss !== undefined ? { acceptDataLoss: opts.acceptDataLoss } : {}) };
      await runAction(io, opts, { path: `/v1/federations/${enc(fed)}/failover`, body, confirm: `fail over ${fed}${opts.to ? ` to ${opts.to}` : ""}, possibly losing data` }, rc);
      finish();
    });

  actionOptions(program.command("rejoin").description("bring a former primary back as a replica of the current primary"), true)
    .argument("<federation>")
    .argument("<member>")
    .action(async (fed: string, member: string, opts: ActionOpts) => {
      await runAction(io, opts, { path: `/v1/federations/${enc(fed)}/members/${enc(member)}/rejoin`, body: {}, confirm: `rejoin ${member} to ${fed} (its diverged data is discarded)` }, rc);
      finish();
    });

  for (const verb of ["pause", "resume"] as const) {
    actionOptions(program.command(verb).description(verb === "pause" ? "stop automatic actions (failover, WAL switch) for a federation" : "resume automatic actions"), false)
      .argument("<federation>")
      .action(async (fed: string, opts: ActionOpts) => {
        await runAction(io, opts, { path: `/v1/federations/${enc(fed)}/${verb}`, body: {} }, rc);
        finish();
      });
  }

  actionOptions(program.command("resolve").description("end operatorRequired once the Clusters are fixed by hand: name the designated primary"), true)
    .argument("<federation>")
    .requiredOption("--primary <member>", "the member to designate: it must be the one unfenced primary cluster")
    .action(async (fed: string, opts: ActionOpts & { primary: string }) => {
      await runAction(io, opts, { path: `/v1/federations/${enc(fed)}/resolve`, body: { primary: opts.primary }, confirm: `designate ${opts.primary} as the primary of ${fed} and let automation continue` }, rc);
      finish();
    });

  actionOptions(program.command("approve").description("approve an operation awaiting approval (a failover beyond the budget)"), false)
    .argument("<operation>", "operation id")
    .option("--accept-data-loss <duration>", "the data loss you accept (e.g. 45s); must cover the worst-case estimate")
    .action(async (id: string, opts: ActionOpts & { acceptDataLoss?: string }) => {
      if (opts.acceptDataLoss !== undefined) durationOpt("--accept-data-loss", opts.acceptDataLoss);
      const body = opts.acceptDataLoss !== undefined ? { acceptDataLoss: opts.acceptDataLoss } : {};
      await runAction(io, opts, { path: `/v1/operations/${enc(id)}/approve`, body }, rc);
      finish();
    });

  connOptions(program.command("audit").description("the audit trail of a federation: who asked what, why, and the numbers"))
    .argument("<federation>")
    .option("--since <when>", "a duration back from now (1h) or an ISO time", "24h")
    .option("--limit <n>", "at most this many entries (the newest)")
    .option("-o, --output <format>", OUTPUT_FORMATS.join(", "), "table")
    .action(async (fed: string, opts: ConnOpts & { since: string; limit?: string; output: string }) => {
      outputFormat(opts.output);
      const limit = opts.limit === undefined ? undefined : Number(opts.limit);
      if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new CliExit(EXIT.usage, `--limit must be a positive whole number, not "${opts.limit}"`);
      const client = clientFor(opts, ttyOf(io));
      const entries = await withApiErrors(() => client.audit(fed, { since: opts.since, ...(limit !== undefined ? { limit } : {}) }));
      output(io, opts.output, entries, () => {
        if (entries.length === 0) return `no audit entries for ${fed} since ${opts.since}`;
        return entries
          .map((e) => {
            const nums = Object.entries(e.numbers).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
            const head = `${e.at.replace("T", " ").replace(/\.\d+Z$/, "Z")}  e${e.epoch}  ${e.actor}  ${e.action}${e.member ? ` ${e.member}` : ""}${e.operationId ? ` [${e.operationId}]` : ""}`;
            const body = [e.description, e.reason ? `reason: ${e.reason}` : "", nums.length ? `(${nums.join(", ")})` : ""].filter(Boolean).join(" ");
            return `${head}\n${wrap(`    ${body}`, 80, "    ")}`;
          })
          .join("\n");
      });
    });
}
