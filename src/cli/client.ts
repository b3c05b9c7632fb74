/**
 * The CLI's API client. Where it finds the server and token, first match wins (like kubectl):
 * `--server`/`--token`, then PGFED_SERVER/PGFED_TOKEN, then ~/.config/pgfed/config.yaml
 * (`{server, token}`; $XDG_CONFIG_HOME respected), then a running lab's `./.lab/lab.json`
 * (`extra.api`, `extra.token`), so the README tour needs no flags. For an HTTPS API with a private
 * CA or mutual TLS: `--ca`/`--cert`/`--key` (PEM files), else PGFED_CA/PGFED_CERT/PGFED_KEY, else
 * `ca`/`cert`/`key` in the same config.yaml.
 */
import { readFileSync } from "node:fs";
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import { homedir } from "node:os";
import { join } from "node:path";
import type { AuditEntry, FederationView, OperationView, PlanView } from "../api/contract.js";
import { isFinishedState } from "../api/operation-states.js";
import { takeSseEvents } from "../api/sse.js";
import { errorMessage, PgfedError } from "../errors.js";
import { loadYaml } from "./output.js";

/** PEM file paths for an HTTPS API: the CA to trust, and a client certificate for mutual TLS. */
export interface TlsFiles {
  ca?: string;
  cert?: string;
  key?: string;
}

export interface ApiTarget {
  server: string;
  token: string | undefined;
  /** Where the server came from (for error messages). */
  source: string;
  tls?: TlsFiles;
}

export interface TargetInputs {
  server?: string | undefined;
  token?: string | undefined;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  env?: NodeJS.ProcessEnv;
  home?: string;
  cwd?: string;
}

/** JSON (lab.json, most configs) without loading the YAML parser, which costs ~25 ms of start-up. */
function parseJsonOrYaml(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return loadYaml().parse(text) as unknown;
  }
}

function readJsonOrYaml(path: string): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  try {
    const v: unknown = parseJsonOrYaml(text);
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : undefined;
  } catch (e) {
    throw new PgfedError("cli.config_invalid", `cannot parse ${path}: ${errorMessage(e)}`);
  }
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

/** Resolves the API server and token; throws a message listing every place it looked. */
export function resolveTarget(inputs: TargetInputs = {}): ApiTarget {
  const env = inputs.env ?? process.env;
  const configDir = str(env.XDG_CONFIG_HOME) ?? join(inputs.home ?? homedir(), ".config");
  const configPath = join(configDir, "pgfed", "config.yaml");
  const labPath = join(inputs.cwd ?? process.cwd(), ".lab", "lab.json");
  const config = readJsonOrYaml(configPath);
  const sources: { name: string; server: string | undefined; token: string | undefined }[] = [
    { name: "--server", server: str(inputs.server), token: str(inputs.token) },
    { name: "PGFED_SERVER", server: str(env.PGFED_SERVER), token: str(env.PGFED_TOKEN) },
    { name: configPath, server: str(config?.server), token: str(config?.token) },
  ];
  const server = sources.find((s) => s.server !== undefined);
  const token = sources.find((s) => s.token !== undefined)?.token;
  const tls: TlsFiles = {};
  for (const k of ["ca", "cert", "key"] as const) {
    const v = str(inputs[k]) ?? str(env[`PGFED_${k.toUpperCase()}`]) ?? str(config?.[k]);
    if (v !== undefined) tls[k] = v;
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new PgfedError("cli.tls_incomplete", `a client certificate needs both --cert and --key (or PGFED_CERT and PGFED_KEY); only ${tls.cert ? "cert" : "key"} was given`);
  }
  const withTls = Object.keys(tls).length > 0 ? { tls } : {};
  if (server?.server) return { server: server.server.replace(/\/+$/, ""), token, source: server.name, ...withTls };
  // A running lab: both from its file, never its token for another server.
  const lab = readJsonOrYaml(labPath);
  const extra = lab?.extra as Record<string, unknown> | undefined;
  const labServer = str(extra?.api);
  if (labServer) return { server: labServer.replace(/\/+$/, ""), token: token ?? str(extra?.token), source: labPath };
  throw new PgfedError(
    "cli.no_server",
    [
      "no pgfed API server configured. pgfed looked, in this order, at:",
      "  --server              not given",
      "  PGFED_SERVER          not set",
      `  ${configPath}  ${config === undefined ? "not found" : "has no server"}`,
      `  ${labPath}  ${lab === undefined ? "not found (no lab started in this directory)" : "has no API (is the lab still starting?)"}`,
      "Point pgfed at a coordinator's API with one of:",
      "  pgfed status --server https://pgfed.example:8080 --token …",
      "  export PGFED_SERVER=https://pgfed.example:8080 PGFED_TOKEN=…",
      `  write "server: https://pgfed.example:8080" and "token: …" to ${configPath}`,
      "or start a lab in this directory: npm run lab",
    ].join("\n"),
  );
}

/** The API's Status error body. */
export interface StatusBody {
  kind: "Status";
  code: number;
  reason: string;
  message: string;
  field?: string;
  leader?: string;
  details?: { plan?: PlanView } & Record<string, unknown>;
}

/** A non-2xx answer from the API. */
export class ApiCallError extends PgfedError {
  constructor(
    readonly status: number,
    readonly body: StatusBody,
  ) {
    super(`api.${body.reason || status}`, body.message, { status, field: body.field });
  }
}

function isStatus(v: unknown): v is StatusBody {
  return typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "Status" && typeof (v as { message?: unknown }).message === "string";
}

export type ActionAnswer = { kind: "plan"; plan: PlanView } | { kind: "operation"; operation: OperationView } | { kind: "federation"; federation: FederationView };

/** fetch() over node:https with a private CA and/or a client certificate (global fetch takes no TLS options). */
function fetchWithTls(url: string, init: { method: string; headers: Record<string, string>; signal?: AbortSignal }, pem: { ca?: string; cert?: string; key?: string }): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: init.method, headers: init.headers, ...pem, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
      const headers = new Headers();
      for (const [k, v] of Object.entries(res.headers)) for (const x of Array.isArray(v) ? v : v === undefined ? [] : [v]) headers.append(k, x);
      const status = res.statusCode ?? 502;
      const body = status === 204 || status === 304 ? null : (Readable.toWeb(res) as unknown as ReadableStream<Uint8Array>);
      resolve(new Response(body, { status, headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

// node:http and node:https as CommonJS modules: importing them as ES modules evaluates every
// export, and node:http's lazy WebSocket/EventSource exports load undici (~15 ms per command).
const { request: httpRequest } = process.getBuiltinModule("node:http");
const { request: httpsRequest } = process.getBuiltinModule("node:https");

/**
 * One request over node:http / node:https, the whole body as text. The CLI's plain requests use
 * this, not fetch(): Node loads fetch's implementation (undici) on first use, which costs a
 * command ~20 ms of start-up (issue 17). The event stream (followSse) keeps fetch.
 */
function requestText(
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string },
  pem: { ca?: string; cert?: string; key?: string } | undefined,
): Promise<{ status: number; headers: IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const https = url.startsWith("https:");
    const options = { method: init.method, headers: init.headers, ...(https && pem ? pem : {}) };
    const onResponse = (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => resolve({ status: res.statusCode ?? 502, headers: res.headers, text: Buffer.concat(chunks).toString("utf8") }));
    };
    const req = https ? httpsRequest(url, options, onResponse) : httpRequest(url, options, onResponse);
    req.on("error", reject);
    req.end(init.body);
  });
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new PgfedError("cli.tls_unreadable", `cannot read the ${what} ${path}: ${errorMessage(e)}`);
  }
}

export class ApiClient {
  /** PEM contents of target.tls, read once. */
  private readonly pem: { ca?: string; cert?: string; key?: string } | undefined;

  constructor(readonly target: ApiTarget) {
    const t = target.tls;
    this.pem = t
      ? {
          ...(t.ca ? { ca: readPem(t.ca, "CA certificate (--ca)") } : {}),
          ...(t.cert ? { cert: readPem(t.cert, "client certificate (--cert)") } : {}),
          ...(t.key ? { key: readPem(t.key, "client key (--key)") } : {}),
        }
      : undefined;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { accept: "application/json", ...(this.target.token ? { authorization: `Bearer ${this.target.token}` } : {}), ...extra };
  }

  /**
   * One request through `send`; a follower answers 307 to the leader, which is followed (keeping
   * the token) up to 3 times. `location` reads a 307's target from an answer, undefined otherwise.
   */
  private async viaLeader<R>(
    path: string,
    init: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal },
    send: (url: string, headers: Record<string, string>, body: string | undefined) => Promise<R>,
    location: (res: R) => string | undefined,
  ): Promise<R> {
    let url = `${this.target.server}${path}`;
    const body = init.body === undefined ? undefined : JSON.stringify(init.body);
    const headers = this.headers({ ...(body !== undefined ? { "content-type": "application/json" } : {}), ...(init.headers ?? {}) });
    for (let hop = 0; hop < 4; hop++) {
      let res: R;
      try {
        res = await send(url, headers, body);
      } catch (e) {
        if (init.signal?.aborted) throw e;
        const cause = (e as { cause?: unknown }).cause;
        throw new PgfedError("api.unreachable", `cannot reach the pgfed API at ${this.target.server} (from ${this.target.source}): ${errorMessage(cause ?? e)}`);
      }
      const to = location(res);
      if (to === undefined) return res;
      url = new URL(to, url).toString();
    }
    throw new PgfedError("api.redirect_loop", `too many redirects from ${this.target.server}${path}`);
  }

  /** One streaming request (the event stream) through fetch. */
  private fetch(method: string, path: string, init: { headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
    const signal = init.signal ? { signal: init.signal } : {};
    return this.viaLeader(
      path,
      init,
      (url, headers) => (this.pem && url.startsWith("https:") ? fetchWithTls(url, { method, headers, ...signal }, this.pem) : fetch(url, { method, headers, redirect: "manual", ...signal })),
      (res) => (res.status === 307 ? (res.headers.get("location") ?? undefined) : undefined),
    );
  }

  async request<T>(method: "GET" | "POST", path: string, init: { body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: T }> {
    const res = await this.viaLeader(
      path,
      init,
      (url, headers, body) => requestText(url, { method, headers, ...(body !== undefined ? { body } : {}) }, this.pem),
      (r) => (r.status === 307 && typeof r.headers.location === "string" ? r.headers.location : undefined),
    );
    const text = res.text;
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (res.status < 200 || res.status >= 300) {
      const body: StatusBody = isStatus(parsed) ? parsed : { kind: "Status", code: res.status, reason: `HTTP${res.status}`, message: `HTTP ${res.status} from ${method} ${path}: ${text.slice(0, 200)}` };
      throw new ApiCallError(res.status, body);
    }
    return { status: res.status, body: parsed as T };
  }

  async federations(): Promise<FederationView[]> {
    return (await this.request<{ items: FederationView[] }>("GET", "/v1/federations")).body.items;
  }

  async federation(name: string): Promise<FederationView> {
    return (await this.request<FederationView>("GET", `/v1/federations/${encodeURIComponent(name)}`)).body;
  }

  async operation(id: string, wait?: { waitMs: number; afterSteps: number }): Promise<OperationView> {
    const q = wait ? `?wait=${Math.max(1, Math.round(wait.waitMs / 1000))}s&afterSteps=${wait.afterSteps}` : "";
    return (await this.request<OperationView>("GET", `/v1/operations/${encodeURIComponent(id)}${q}`)).body;
  }

  async audit(federation: string, opts: { since?: string; limit?: number }): Promise<AuditEntry[]> {
    const q = new URLSearchParams();
    if (opts.since) q.set("since", opts.since);
    if (opts.limit !== undefined) q.set("limit", String(opts.limit));
    const qs = q.toString();
    return (await this.request<{ items: AuditEntry[] }>("GET", `/v1/federations/${encodeURIComponent(federation)}/audit${qs ? `?${qs}` : ""}`)).body.items;
  }

  /** POSTs an action; the answer is a plan (dry run), an operation (202) or the federation (pause/resume). */
  async action(path: string, body: Record<string, unknown>, opts: { dryRun: boolean; idempotencyKey?: string }): Promise<ActionAnswer> {
    const headers = opts.idempotencyKey ? { "idempotency-key": opts.idempotencyKey } : undefined;
    const res = await this.request<PlanView | OperationView | FederationView>("POST", `${path}${opts.dryRun ? "?dryRun=true" : ""}`, { body, ...(headers ? { headers } : {}) });
    if (res.status === 202) return { kind: "operation", operation: res.body as OperationView };
    if (opts.dryRun || "preconditions" in res.body) return { kind: "plan", plan: res.body as PlanView };
    return { kind: "federation", federation: res.body as FederationView };
  }

  /**
   * Calls back with every change of the operation until it finishes, `signal` aborts, or the
   * stream breaks; Server-Sent Events first, long-polling when the stream is unavailable.
   */
  async follow(id: string, onChange: (op: OperationView) => void, signal: AbortSignal): Promise<OperationView | undefined> {
    let last: OperationView | undefined;
    try {
      last = await this.followSse(id, onChange, signal);
      if (last && isFinishedState(last.state)) return last;
    } catch (e) {
      if (signal.aborted) return last;
      if (e instanceof ApiCallError && e.status === 404) throw e;
    }
    // Long-poll until finished (also after a broken stream).
    while (!signal.aborted) {
      const op = await this.operation(id, { waitMs: 20_000, afterSteps: last?.steps.length ?? 0 });
      if (!last || JSON.stringify(op) !== JSON.stringify(last)) onChange(op);
      last = op;
      if (isFinishedState(op.state)) return op;
    }
    return last;
  }

  private async followSse(id: string, onChange: (op: OperationView) => void, signal: AbortSignal): Promise<OperationView | undefined> {
    const res = await this.fetch("GET", `/v1/operations/${encodeURIComponent(id)}/events`, { headers: { accept: "text/event-stream" }, signal });
    if (!res.ok || !res.body) {
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
      throw new ApiCallError(res.status, isStatus(parsed) ? parsed : { kind: "Status", code: res.status, reason: `HTTP${res.status}`, message: `HTTP ${res.status}` });
    }
    let last: OperationView | undefined;
    let buf = "";
    const decoder = new TextDecoder();
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      const { events, rest } = takeSseEvents(buf + decoder.decode(chunk, { stream: true }));
      buf = rest;
      for (const { event, data } of events) {
        if (event === "operation" && data) {
          last = JSON.parse(data) as OperationView;
          onChange(last);
        }
        if (event === "end") return last;
      }
    }
    return last;
  }
}

export { isFinishedState };
