import { Registry, Gauge } from "prom-client";
import { tokenLine, parseTokenFile } from "../../../src/api/auth.js";
import { startApiServer, type ApiServer, type ApiServerOptions } from "../../../src/api/server.js";
import { renderRunbook } from "../../../src/cli/runbook-document.js";
import { silentLogger } from "../../../src/log.js";
import { FakeCoordinator, type FakeOptions } from "./fake-service.js";

export const OPERATOR_TOKEN = "op-secret-token-1";
export const VIEWER_TOKEN = "viewer-secret-token-2";

export const TOKEN_FILE = [
  "# name role hash",
  tokenLine("alice", "operator", OPERATOR_TOKEN),
  "",
  tokenLine("victor", "viewer", VIEWER_TOKEN),
].join("\n");

export interface Harness {
  api: ApiServer;
  fake: FakeCoordinator;
  registry: Registry;
  call(method: string, path: string, opts?: { token?: string | null; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<{ status: number; body: Record<string, unknown>; headers: Headers; text: string }>;
  close(): Promise<void>;
}

/** Puts "orders" back as it starts: pg-eu primary, no operation in flight. */
export function resetOrders(fake: FakeCoordinator): void {
  const f = fake.feds.get("orders");
  if (!f) return;
  f.designatedPrimary = "pg-eu";
  f.failover = { leaseTtlSeconds: 10, clockSkewMarginSeconds: 2 };
  for (const m of f.members) {
    m.role = m.name === "pg-eu" ? "primary" : "replica";
    m.observedAgoSeconds = 0.5;
  }
  f.operation = null;
}

/** `server.authRateLimit` defaults to none here: the fuzz tests present thousands of wrong tokens from one address. */
export async function startHarness(opts: FakeOptions = {}, server: Partial<Pick<ApiServerOptions, "authRateLimit" | "log">> = {}): Promise<Harness> {
  const fake = new FakeCoordinator(opts);
  const registry = new Registry();
  new Gauge({ name: "pgfed_test_gauge", help: "a test gauge", registers: [registry] }).set(7);
  const api = await startApiServer({ service: fake, listen: "127.0.0.1:0", tokens: parseTokenFile(TOKEN_FILE), log: server.log ?? silentLogger(), metricsRegistry: registry, authRateLimit: server.authRateLimit ?? false, renderRunbook });
  return {
    api,
    fake,
    registry,
    async call(method, path, o = {}) {
      const headers: Record<string, string> = { ...(o.headers ?? {}) };
      const token = o.token === undefined ? OPERATOR_TOKEN : o.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      let body: string | undefined;
      if (o.raw !== undefined) body = o.raw;
      else if (o.body !== undefined) body = JSON.stringify(o.body);
      if (body !== undefined && headers["content-type"] === undefined) headers["content-type"] = "application/json";
      const res = await fetch(`${api.url}${path}`, { method, headers, redirect: "manual", ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: Record<string, unknown> = {};
      try {
        parsed = JSON.parse(text) as Record<string, unknown>;
      } catch {
        // not JSON (metrics, SSE)
      }
      return { status: res.status, body: parsed, headers: res.headers, text };
    },
    async close() {
      fake.stop();
      await api.close();
    },
  };
}
