/**
 * The status page's API client: the same routes as the CLI, with the bearer token the user gave
 * (kept in sessionStorage: this browser tab's session only). Errors carry the API's own words
 * (its Status body's message and field), shown as they are.
 */
import type { AuditEntry, FederationHistoryView, FederationView, OperationView, PlanView } from "../api/contract.js";
import { isFinishedState } from "../api/operation-states.js";
import { takeSseEvents } from "../api/sse.js";

const TOKEN_KEY = "pgfed-token";

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string): void => sessionStorage.setItem(TOKEN_KEY, t),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};

/** The Authorization header of the token given, or none. */
function auth(): Record<string, string> {
  const t = token.get();
  return t ? { authorization: `Bearer ${t}` } : {};
}

export class ApiProblem extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

async function call<T>(method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: { accept: "application/json", ...auth(), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new ApiProblem(0, `cannot reach the pgfed API: ${(e as Error).message}`);
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    parsed = text;
  }
  if (!res.ok) {
    const s = parsed as { message?: unknown; field?: unknown } | undefined;
    const message = typeof s?.message === "string" ? s.message : `HTTP ${res.status} from ${method} ${path}`;
    throw new ApiProblem(res.status, message, typeof s?.field === "string" ? s.field : undefined);
  }
  return parsed as T;
}

const enc = encodeURIComponent;

export const api = {
  federations: async (): Promise<FederationView[]> => (await call<{ items: FederationView[] }>("GET", "/v1/federations")).items,
  federation: (name: string): Promise<FederationView> => call("GET", `/v1/federations/${enc(name)}`),
  operation: (id: string): Promise<OperationView> => call("GET", `/v1/operations/${enc(id)}`),
  history: (name: string): Promise<FederationHistoryView> => call("GET", `/v1/federations/${enc(name)}/history`),
  audit: async (name: string, since = "24h"): Promise<AuditEntry[]> => (await call<{ items: AuditEntry[] }>("GET", `/v1/federations/${enc(name)}/audit?since=${enc(since)}`)).items,
  runbookHtml: async (name: string): Promise<string> => {
    const res = await fetch(`/v1/federations/${enc(name)}/runbook?format=html`, { headers: auth() });
    if (!res.ok) throw new ApiProblem(res.status, `runbook: HTTP ${res.status}`);
    return res.text();
  },
  switchoverPlan: (fed: string, target: string, reason: string): Promise<PlanView> => call("POST", `/v1/federations/${enc(fed)}/switchover?dryRun=true`, { target, reason }),
  switchover: (fed: string, target: string, reason: string): Promise<OperationView> => call("POST", `/v1/federations/${enc(fed)}/switchover`, { target, reason }),
  approvePlan: (id: string, acceptDataLoss: string | undefined, reason: string): Promise<PlanView> =>
    call("POST", `/v1/operations/${enc(id)}/approve?dryRun=true`, { ...(acceptDataLoss ? { acceptDataLoss } : {}), reason }),
  approve: (id: string, acceptDataLoss: string | undefined, reason: string): Promise<OperationView> => call("POST", `/v1/operations/${enc(id)}/approve`, { ...(acceptDataLoss ? { acceptDataLoss } : {}), reason }),
};

/**
 * Follows an operation over the API's event stream (fetch, not EventSource: EventSource cannot
 * send the Authorization header). Calls back with every change; resolves when the stream ends.
 */
export async function followOperation(id: string, onChange: (op: OperationView) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(`/v1/operations/${enc(id)}/events`, { headers: { accept: "text/event-stream", ...auth() }, signal });
  if (!res.ok || !res.body) throw new ApiProblem(res.status, `operation ${id}: HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const { events, rest } = takeSseEvents(buf + value);
    buf = rest;
    for (const { event, data } of events) {
      if (event === "operation" && data) onChange(JSON.parse(data) as OperationView);
      if (event === "end") return;
    }
  }
}

export { isFinishedState };
