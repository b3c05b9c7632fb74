/**
 * The probe listener of a process that is alive but not serving yet: `pgfed run` opens it on the
 * API (or metrics) address before it connects to NATS, so that a NATS outage reads as "alive,
 * waiting" (/healthz 200) and not ready (/readyz 503) instead of a refused connection that the
 * liveness probe would turn into a crash loop. /metrics serves the process' registry (process
 * metrics until the roles started); everything else is 503 with Retry-After.
 * `close()` frees the address for the real server.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Registry } from "prom-client";
import { errorMessage } from "../errors.js";
import { parseListen, pem } from "./listen.js";
import type { ApiTlsOptions } from "./server.js";

export interface HealthListenerOptions {
  /** host:port, e.g. api.listen. */
  listen: string;
  /** What the process waits for, for people reading /readyz ("NATS at tls://…"). */
  waitingFor: () => string;
  /** Ready once set to true (an agent without an API: ready when its agents started). */
  ready?: () => boolean;
  registry?: Registry;
  /** The API's TLS, so that probes configured with `scheme: HTTPS` keep working. */
  tls?: ApiTlsOptions;
}

export interface HealthListener {
  readonly url: string;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

export async function startHealthListener(opts: HealthListenerOptions): Promise<HealthListener> {
  const addrIn = parseListen(opts.listen);
  if (!addrIn) throw new Error(`listen address must be host:port, not "${opts.listen}"`);
  const { host } = addrIn;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") return send(res, 405, { kind: "Status", code: 405, reason: "MethodNotAllowed", message: `${req.method ?? "?"} is not allowed while starting` });
    if (path === "/healthz") return send(res, 200, { ok: true, waitingFor: opts.ready?.() === true ? null : opts.waitingFor() });
    if (path === "/readyz") {
      if (opts.ready?.() === true) return send(res, 200, { ready: true });
      return send(res, 503, { kind: "Status", code: 503, reason: "NotReady", message: `alive, waiting for ${opts.waitingFor()}` }, { "retry-after": "2" });
    }
    if (path === "/metrics" && opts.registry) {
      const registry = opts.registry;
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (e: unknown) => send(res, 500, { kind: "Status", code: 500, reason: "InternalError", message: errorMessage(e) }),
      );
      return;
    }
    send(res, 503, { kind: "Status", code: 503, reason: "Unavailable", message: `starting: waiting for ${opts.waitingFor()}` }, { "retry-after": "2" });
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: pem(opts.tls.cert), key: pem(opts.tls.key) }, handler) : createHttpServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(addrIn.port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  const url = `${opts.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
