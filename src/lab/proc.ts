/**
 * Processes the lab and the tests start: postgres, nats-server, prometheus, alertmanager.
 * Rule 6: everything runs on 127.0.0.1 with a free port and is stopped by its PID (and its
 * descendants' PIDs), also on failure and Ctrl-C. Nothing is ever killed by name.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync, createWriteStream, readFileSync, readdirSync, statSync, type WriteStream } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { PgfedError } from "../errors.js";

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface UserIds {
  uid: number;
  gid: number;
  home: string;
}

let cachedPostgresUser: UserIds | null | undefined;

/** Postgres refuses to run as root: when we are root, lab servers run as the `postgres` user. */
export function postgresUser(): UserIds | null {
  if (cachedPostgresUser !== undefined) return cachedPostgresUser;
  cachedPostgresUser = null;
  if (process.getuid?.() === 0) {
    const line = readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .find((l) => l.startsWith("postgres:"));
    if (!line) throw new PgfedError("lab.no_postgres_user", "running as root but there is no `postgres` user to run Postgres as (install the postgresql package)");
    const f = line.split(":");
    cachedPostgresUser = { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "/var/lib/postgresql" };
  }
  return cachedPostgresUser;
}

/** PIDs of every descendant of `pid` (children, grandchildren, …), read from /proc. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // comm may contain spaces and parentheses: ppid is the 2nd field after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ppid = Number(rest[1]);
    const list = parentOf.get(ppid) ?? [];
    list.push(Number(entry));
    parentOf.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift() as number;
    for (const c of parentOf.get(p) ?? []) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** True when `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Sends `signal` to `pid` and all its descendants (each postgres child is its own process group). */
export function signalTree(pid: number, signal: NodeJS.Signals): number[] {
  const all = [...descendants(pid), pid];
  for (const p of all) {
    try {
      process.kill(p, signal);
    } catch {
      // already gone
    }
  }
  return all;
}

/** SIGKILLs a process tree and waits until none of its PIDs is alive (zombies count as dead). */
export async function killTree(pid: number, timeoutMs = 5_000): Promise<void> {
  const pids = signalTree(pid, "SIGKILL");
  const until = Date.now() + timeoutMs;
  while (pids.some(isAlive) && Date.now() < until) await sleep(20);
}

export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** Run as the postgres user when we are root. */
  asPostgres?: boolean;
  /** Append stdout and stderr to this file. */
  logFile?: string;
  /** Name used in errors and logs. */
  name: string;
}

/** A child process pgfed started and will stop by PID. */
export class ManagedProcess {
  readonly pid: number;
  readonly name: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly log: WriteStream | undefined;

  constructor(
    readonly child: ChildProcess,
    opts: SpawnOptions,
  ) {
    if (child.pid === undefined) throw new PgfedError("lab.spawn_failed", `could not start ${opts.name}`);
    this.pid = child.pid;
    this.name = opts.name;
    if (opts.logFile) {
      this.log = createWriteStream(opts.logFile, { flags: "a" });
      child.stdout?.pipe(this.log, { end: false });
      child.stderr?.pipe(this.log, { end: false });
    } else {
      child.stdout?.resume();
      child.stderr?.resume();
    }
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        tracked.delete(this);
        resolve(this.exitInfo);
      });
    });
    tracked.add(this);
    recordPid(this.pid);
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Sends `signal`, waits up to `graceMs`, then SIGKILLs the whole tree. */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<void> {
    if (!this.running) return this.closeLog();
    try {
      process.kill(this.pid, signal);
    } catch {
      // gone
    }
    const done = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
    if (!done) {
      await killTree(this.pid);
      await Promise.race([this.exited, sleep(2_000)]);
    }
    this.closeLog();
  }

  /** SIGKILLs the process and every descendant at once (a lost region). */
  async kill(): Promise<void> {
    await killTree(this.pid);
    await Promise.race([this.exited, sleep(3_000)]);
    this.closeLog();
  }

  private closeLog(): void {
    this.log?.end();
  }
}

const tracked = new Set<ManagedProcess>();

/**
 * When PGFED_PID_REGISTRY names a file, every started server's PID and command line is appended
 * to it, so that the test run's global teardown can stop what a worker killed on a timeout (whose
 * exit handlers never ran) left behind — by PID, and only if the command line still matches.
 */
export const PID_REGISTRY_ENV = "PGFED_PID_REGISTRY";

export function recordPid(pid: number): void {
  const file = process.env[PID_REGISTRY_ENV];
  if (!file) return;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    appendFileSync(file, `${JSON.stringify({ pid, cmdline })}\n`);
  } catch {
    // the process is already gone: nothing to clean up later
  }
}

/** Stops every process in a PID registry that is still alive with the same command line; returns how many. */
export function sweepPidRegistry(file: string): number {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return 0;
  }
  let swept = 0;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    let rec: { pid: number; cmdline: string };
    try {
      rec = JSON.parse(line) as { pid: number; cmdline: string };
    } catch {
      continue;
    }
    let current: string;
    try {
      current = readFileSync(`/proc/${rec.pid}/cmdline`, "utf8");
    } catch {
      continue;
    }
    if (current === rec.cmdline && isAlive(rec.pid)) {
      signalTree(rec.pid, "SIGKILL");
      swept++;
    }
  }
  return swept;
}

/** Starts a tracked child process; it is SIGKILLed with its descendants if this process exits. */
export function spawnManaged(cmd: string, args: string[], opts: SpawnOptions): ManagedProcess {
  const ids = opts.asPostgres ? postgresUser() : null;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...(opts.env ?? {}) })) if (v !== undefined) env[k] = v;
  if (ids) {
    env.HOME = ids.home;
    env.USER = "postgres";
    env.LOGNAME = "postgres";
  }
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    ...(ids ? { uid: ids.uid, gid: ids.gid } : {}),
  });
  return new ManagedProcess(child, opts);
}

/** Runs a command to completion; rejects with its output when it fails. */
export async function run(
  cmd: string,
  args: string[],
  opts: { asPostgres?: boolean; env?: Record<string, string | undefined>; cwd?: string; timeoutMs?: number; input?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  const ids = opts.asPostgres ? postgresUser() : null;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...(opts.env ?? {}) })) if (v !== undefined) env[k] = v;
  if (ids) env.HOME = ids.home;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      ...(ids ? { uid: ids.uid, gid: ids.gid } : {}),
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          if (child.pid) signalTree(child.pid, "SIGKILL");
        }, opts.timeoutMs)
      : undefined;
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new PgfedError("lab.command_failed", `${cmd} could not start: ${e.message}`));
    });
    // "close", not "exit": "exit" can fire before the pipes are drained, and then stdout is cut
    // short (pg_controldata's output once arrived empty in CI).
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else
        reject(
          new PgfedError("lab.command_failed", `${cmd} ${args.join(" ")} failed (${signal ?? `exit ${code}`}): ${(stderr || stdout).trim().slice(-2000)}`),
        );
    });
  });
}

/** Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > until) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : "";
      throw new PgfedError("timeout", `timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await sleep(everyMs);
  }
}

/** Finds a Postgres binary (initdb, postgres, pg_ctl, pg_controldata, …) from the installed server. */
export function pgBin(name: string): string {
  const base = "/usr/lib/postgresql";
  let versions: string[] = [];
  try {
    versions = readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    // fall through to PATH
  }
  for (const v of versions) {
    const p = `${base}/${v}/bin/${name}`;
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // try next
    }
  }
  return name;
}

function killAllTrackedSync(): void {
  for (const p of tracked) signalTree(p.pid, "SIGKILL");
}

process.once("exit", killAllTrackedSync);

/** For long-running commands (the lab): stop everything on Ctrl-C / SIGTERM, then run `onSignal`. */
export function stopOnSignals(onSignal: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: NodeJS.Signals) => {
    if (stopping) {
      killAllTrackedSync();
      process.exit(130);
    }
    stopping = true;
    onSignal()
      .catch(() => undefined)
      .finally(() => {
        killAllTrackedSync();
        process.exit(sig === "SIGINT" ? 130 : 143);
      });
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}
