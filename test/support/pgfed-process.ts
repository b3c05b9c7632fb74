/** `node bin/pgfed.js …` as a child process, the way a deployment or a user runs it, with its output. */
import { spawn, type ChildProcess } from "node:child_process";

export interface PgfedProcess {
  child: ChildProcess;
  /** stdout and stderr so far, interleaved. */
  output: () => string;
  /** The exit code once its pipes are drained ("close", not "exit": no output is lost). */
  exited: Promise<number | null>;
}

/** Starts pgfed; every child goes into `children`, for the test's afterAll to stop by PID. */
export function spawnPgfed(args: string[], children: ChildProcess[], env: NodeJS.ProcessEnv = { PGFED_LOG_LEVEL: "info" }): PgfedProcess {
  const child = spawn(process.execPath, ["bin/pgfed.js", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  children.push(child);
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once("close", (code) => r(code)));
  return { child, output: () => out, exited };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
