/**
 * No secret in any log line: a lab whose logger writes JSON lines to a file (debug level), a
 * planned switchover through the API, requests with right, wrong and missing tokens (enough wrong
 * ones to lock the address out), then every line of that file and of every process log the lab
 * wrote under its directory (NATS, Postgres) is searched for the API tokens, the Kubernetes bearer
 * token, nkey seeds and private keys.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTokenFile, tokenLine } from "../../src/api/auth.js";
import { startApiServer, type ApiServer } from "../../src/api/server.js";
import type { OperationView } from "../../src/api/contract.js";
import { createLogger } from "../../src/log.js";
import { FED, federation, startE2E, type E2E } from "./fixture.js";

const NKEY_SEED = /S[ACNOUX][A-Z2-7]{56}/;

let e: E2E;
let api: ApiServer;
let logDir = "";
const logFile = (): string => join(logDir, "pgfed.jsonl");
const operatorToken = randomBytes(32).toString("hex");
const viewerToken = randomBytes(32).toString("hex");
const wrongTokens = Array.from({ length: 10 }, () => randomBytes(32).toString("hex"));

beforeAll(async () => {
  logDir = await mkdtemp(join(tmpdir(), "pgfed-e2e-logs-"));
  const log = createLogger({ level: "debug", pretty: false, destination: pino.destination({ dest: logFile(), sync: true }) });
  e = await startE2E("no-secrets", { log });
  const tokens = parseTokenFile([tokenLine("oncall", "operator", operatorToken), tokenLine("grafana", "viewer", viewerToken)].join("\n"));
  api = await startApiServer({ service: e.plane.coordinator, listen: "127.0.0.1:0", tokens, log, metricsRegistry: e.plane.coordinator.metrics.registry });
});

afterAll(async () => {
  await api?.close();
  await e?.stop();
  await rm(logDir, { recursive: true, force: true });
});

async function call(method: "GET" | "POST", path: string, token: string | null, body?: unknown): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { ...(token !== null ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

/** Every `*.log` file under `dir`, at any depth. */
async function processLogs(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((d) => d.isFile() && d.name.endsWith(".log")).map((d) => join(d.parentPath, d.name));
}

/** The secrets found in `lines`, as `<what> in <file>:<line>`. */
function secretsIn(lines: { file: string; n: number; text: string }[], secrets: Record<string, string>): string[] {
  const found: string[] = [];
  for (const l of lines) {
    for (const [what, value] of Object.entries(secrets)) if (l.text.includes(value)) found.push(`${what} in ${l.file}:${l.n}`);
    if (NKEY_SEED.test(l.text)) found.push(`an nkey seed in ${l.file}:${l.n}`);
    if (l.text.includes("-----BEGIN")) found.push(`PEM text in ${l.file}:${l.n}`);
  }
  return found;
}

describe("no secret in any log line", () => {
  it("after a switchover through the API and right, wrong and missing tokens", async () => {
    expect((await call("GET", `/v1/federations/${FED}`, viewerToken)).status).toBe(200);
    expect((await call("POST", `/v1/federations/${FED}/switchover?dryRun=true`, viewerToken, { target: "pg-us" })).status).toBe(403);
    expect((await call("GET", `/v1/federations/${FED}`, null)).status).toBe(401);

    const started = await call("POST", `/v1/federations/${FED}/switchover`, operatorToken, { target: "pg-us", reason: "no-secrets e2e" });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    let op = started.body as unknown as OperationView;
    for (let i = 0; i < 12 && op.finishedAt === null; i++) op = (await call("GET", `/v1/operations/${op.id}?wait=10s&afterSteps=${op.steps.length}`, viewerToken)).body as unknown as OperationView;
    expect(op.state, op.lastDecision).toBe("completed");
    expect(federation(e).designatedPrimary).toBe("pg-us");

    // A positive control: secret-shaped text handed to the lab's logger reaches the file redacted.
    const probeSeed = `SU${"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".repeat(2).slice(0, 56)}`;
    e.log.error({ err: new Error(`connect postgres://pgfed:probe-pw@pg-eu/app with ${probeSeed}`), tls: { key: "-----BEGIN PRIVATE KEY-----\nMIIprobe\n-----END PRIVATE KEY-----" } }, "redaction probe");

    for (const t of wrongTokens) expect((await call("GET", `/v1/federations/${FED}`, t)).status).toBe(401);
    const limited = await call("GET", `/v1/federations/${FED}`, operatorToken);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);

    const files = [logFile(), ...(await processLogs(e.dir))];
    const lines = (await Promise.all(files.map(async (file) => (await readFile(file, "utf8")).split("\n").map((text, i) => ({ file, n: i + 1, text }))))).flat().filter((l) => l.text !== "");
    const own = lines.filter((l) => l.file === logFile()).map((l) => JSON.parse(l.text) as { msg: string; event?: string; reason?: string; err?: { stack?: string } });

    // The scan read something worth reading: the lab's own lines, NATS's and each Postgres's log.
    expect(own.length, "lines in the lab's log").toBeGreaterThan(150);
    expect(files.some((f) => f.endsWith("nats-server.log"))).toBe(true);
    expect(files.filter((f) => f.endsWith("postgres.log")).length).toBeGreaterThanOrEqual(2);
    const reasons = new Set(own.filter((l) => l.event === "api.refused").map((l) => l.reason));
    expect([...reasons].sort()).toEqual(["insufficient_role", "missing_token", "rate_limited", "unknown_token"]);
    const probe = own.find((l) => l.msg === "redaction probe");
    expect(probe?.err?.stack).toContain("postgres://pgfed:***@pg-eu/app with [redacted nkey seed]");
    // The scan finds what it looks for.
    expect(secretsIn([{ file: "x", n: 1, text: `Bearer ${operatorToken} ${probeSeed} -----BEGIN` }], { operatorToken })).toHaveLength(3);

    const secrets = { operatorToken, viewerToken, kubeToken: e.lab.token, "probe password": "probe-pw", ...Object.fromEntries(wrongTokens.map((t, i) => [`wrong token ${i}`, t])) };
    expect(secretsIn(lines, secrets)).toEqual([]);
  });
});
