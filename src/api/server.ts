/**
 * The HTTP API server (fastify). Order of checks on every request: the client certificate under
 * mutual TLS (401), the client address's failed-authentication lockout (429), authentication
 * (401), role (403), leadership (307/503), then the body and query against the route's strict zod
 * schemas (400 naming the field), then the service. Every failure answers a Status body; no input
 * reaches a 5xx path (only the service's `not_leader` and `unavailable`, an unready /readyz, or a
 * bug does). Every 401, 403 and 429 is logged once at warn (never the token) and counted.
 */
import Fastify, { LogController, type FastifyError, type FastifyReply, type FastifyRequest } from "fastify";
import type { TLSSocket } from "node:tls";
import type { Registry } from "prom-client";
import { ServiceError, type CoordinatorService } from "./contract.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { authenticate, bearerToken, clientKey, FailedAuthLimiter, type AuthRateLimitOptions, type TokenEntry } from "./auth.js";
import { ApiError, fromServiceError, fromZodError } from "./errors.js";
import { createApiMetrics, type RefusalReason } from "./metrics.js";
import { parseListen, pem } from "./listen.js";
import { registerStatusPage } from "./ui.js";
import { buildOpenApiDocument } from "./openapi.js";
import { ROUTES, type AnyRoute, type HandlerContext, type RunbookRenderer } from "./routes.js";

export interface ApiTlsOptions {
  /** PEM text or a file path. */
  cert: string;
  key: string;
  /** CA for client certificates: when set, every client must present a certificate it signed (mutual TLS). */
  clientCa?: string;
}

export interface ApiServerOptions {
  service: CoordinatorService;
  /** `host:port`; port 0 picks a free port. */
  listen: string;
  tokens: readonly TokenEntry[];
  tls?: ApiTlsOptions;
  log: Logger;
  metricsRegistry?: Registry;
  /** Largest accepted request body (default 64 KiB → 413 above). */
  bodyLimitBytes?: number;
  /** Lockout of client addresses after failed authentications (default DEFAULT_AUTH_RATE_LIMIT); false: none (tests that fuzz tokens). */
  authRateLimit?: AuthRateLimitOptions | false;
  /** Renders GET /v1/federations/{name}/runbook (the CLI's runbook document); without it that route is 404. */
  renderRunbook?: RunbookRenderer;
}

export interface ApiServer {
  url: string;
  /** Every registered route as `METHOD /path/{param}` (the OpenAPI test compares them). */
  routes(): string[];
  close(): Promise<void>;
}

export const DEFAULT_BODY_LIMIT = 64 * 1024;

/** Reason words for fastify's own 4xx errors. */
function reasonFor(status: number): string {
  switch (status) {
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 413:
      return "PayloadTooLarge";
    case 415:
      return "UnsupportedMediaType";
    case 429:
      return "TooManyRequests";
    default:
      return "BadRequest";
  }
}

function toApiError(e: unknown, log: Logger): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof ServiceError) return fromServiceError(e);
  const fe = e as Partial<FastifyError>;
  if (typeof fe.statusCode === "number" && fe.statusCode >= 400 && fe.statusCode < 500) {
    const field = fe.code?.startsWith("FST_ERR_CTP") ? "body" : undefined;
    const msg = fe.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE" ? "body must be application/json" : errorMessage(e);
    return new ApiError(fe.statusCode, reasonFor(fe.statusCode), field && !msg.startsWith("body") ? `body: ${msg}` : msg, field);
  }
  log.error({ err: e }, `API internal error: ${errorMessage(e)}`);
  return new ApiError(500, "InternalError", `internal error: ${errorMessage(e)}`);
}

function sendError(reply: FastifyReply, err: ApiError): FastifyReply {
  for (const [k, v] of Object.entries(err.extra.headers ?? {})) void reply.header(k, v);
  return reply.code(err.status).type("application/json; charset=utf-8").send(err.body());
}

const IDEMPOTENCY_KEY_RE = /^[\x21-\x7e]{1,200}$/;

export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  const log = opts.log.child({ component: "api" });
  const addrIn = parseListen(opts.listen);
  if (!addrIn) throw new ApiError(400, "BadRequest", `api.listen must be host:port, not "${opts.listen}"`);
  const { host, port } = addrIn;
  const https = opts.tls
    ? {
        cert: pem(opts.tls.cert),
        key: pem(opts.tls.key),
        // The certificate is checked per request (below), not in the handshake: kubelet's probes
        // cannot present one, and /healthz and /readyz must answer them.
        ...(opts.tls.clientCa ? { ca: pem(opts.tls.clientCa), requestCert: true, rejectUnauthorized: false } : {}),
      }
    : null;
  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT,
    exposeHeadRoutes: false,
    forceCloseConnections: true,
    https,
  });

  // JSON only (anything else is 415), with our own parser: an empty body is `{}`, and a parse error names the body.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_req, text, done) => {
    const s = typeof text === "string" ? text : text.toString("utf8");
    if (s.trim() === "") return done(null, {});
    try {
      done(null, JSON.parse(s));
    } catch (e) {
      done(new ApiError(400, "BadRequest", `body: malformed JSON (${errorMessage(e)})`, "body"), undefined);
    }
  });

  const requestedBy = new WeakMap<FastifyRequest, string>();
  const registered: string[] = [];
  const metrics = createApiMetrics(opts.metricsRegistry);
  const limiter = opts.authRateLimit === false ? undefined : new FailedAuthLimiter(opts.authRateLimit);

  /**
   * Logs and counts a refused request, in one shape: `refused <METHOD> <route> from <address>:
   * <status> <reason>[ (token "<name>")][; <n> failures within <s> s: locked out for <s> s]`.
   * The token itself is never logged, only its name once known.
   */
  const refused = (req: FastifyRequest, err: ApiError, reason: RefusalReason, extra: { tokenName?: string; lockedOutForSeconds?: number } = {}): ApiError => {
    const route = req.routeOptions.url ?? "(no route)";
    const params = req.params as Record<string, unknown> | undefined;
    const federation = route.includes(":name") && typeof params?.name === "string" ? params.name : undefined;
    if (reason === "rate_limited") metrics.authRateLimited.inc();
    else metrics.authFailures.inc({ reason });
    const who = extra.tokenName !== undefined ? ` (token "${extra.tokenName}")` : "";
    const lockout = limiter && extra.lockedOutForSeconds !== undefined ? `; ${limiter.maxFailures} failures within ${limiter.windowMs / 1000} s: locked out for ${extra.lockedOutForSeconds} s` : "";
    log.warn(
      { event: "api.refused", method: req.method, route, ...(federation !== undefined ? { federation } : {}), client: req.ip, status: err.status, reason, ...extra },
      `refused ${req.method} ${route} from ${req.ip}: ${err.status} ${reason}${who}${lockout}`,
    );
    return err;
  };

  app.setErrorHandler((err, _req, reply) => sendError(reply, toApiError(err, log)));

  // Mutual TLS: every request but the probes' needs a certificate signed by clientCa — checked
  // first, for unknown routes too, so a client without one learns nothing else.
  if (opts.tls?.clientCa) {
    const probes = new Set(ROUTES.filter((r) => r.probe).map((r) => r.path));
    app.addHook("onRequest", async (req) => {
      if (probes.has(req.url.split("?")[0] ?? "")) return;
      const socket = req.raw.socket as TLSSocket;
      if (socket.authorized) return;
      const why = socket.getPeerCertificate?.()?.subject ? `client certificate not accepted (${String(socket.authorizationError)})` : "no client certificate";
      throw refused(req, new ApiError(401, "Unauthorized", `${why}: this API requires mutual TLS with a certificate signed by api.tls.clientCa (see docs/api.md)`, "clientCertificate"), "client_certificate");
    });
  }
  app.setNotFoundHandler((req, reply) => sendError(reply, new ApiError(404, "NotFound", `no route ${req.method} ${req.url.split("?")[0] ?? ""} (see /openapi.json)`)));

  const authorize = (route: AnyRoute, req: FastifyRequest): void => {
    if (route.access === "public") {
      requestedBy.set(req, "anonymous");
      return;
    }
    const header = req.headers.authorization;
    const token = bearerToken(header);
    const client = clientKey(req.ip);
    // Before the token is looked at: while locked out, a right token is not told apart from a wrong one.
    const lockedMs = limiter?.lockedForMs(client) ?? 0;
    if (lockedMs > 0) {
      const retryAfter = Math.ceil(lockedMs / 1000);
      const name = token === undefined ? undefined : authenticate(opts.tokens, token)?.name;
      const err = new ApiError(429, "TooManyRequests", `too many failed authentications from ${req.ip}; try again in ${retryAfter} s`, "Authorization", { headers: { "retry-after": String(retryAfter) } });
      throw refused(req, err, "rate_limited", name !== undefined ? { tokenName: name } : {});
    }
    const challenge = { headers: { "www-authenticate": 'Bearer realm="pgfed"' } };
    // A presented credential that fails counts towards the lockout; a request without one tried nothing.
    const failed = (err: ApiError, reason: RefusalReason): ApiError => {
      const locked = reason !== "missing_token" && limiter?.recordFailure(client) === true;
      return refused(req, err, reason, locked && limiter ? { lockedOutForSeconds: Math.ceil(limiter.windowMs / 1000) } : {});
    };
    if (token === undefined) {
      const missing = header === undefined;
      const why = missing ? "missing Authorization header" : "Authorization header must be `Bearer <token>`";
      throw failed(new ApiError(401, "Unauthorized", `${why}; see docs/api.md for tokens`, "Authorization", challenge), missing ? "missing_token" : "malformed_header");
    }
    const who = authenticate(opts.tokens, token);
    if (!who) throw failed(new ApiError(401, "Unauthorized", "unknown token", "Authorization", challenge), "unknown_token");
    if (route.access === "operator" && who.role !== "operator") {
      const err = new ApiError(403, "Forbidden", `token "${who.name}" has role ${who.role}; ${route.method} ${route.path} needs role operator`);
      throw refused(req, err, "insufficient_role", { tokenName: who.name });
    }
    requestedBy.set(req, who.name);
  };

  const checkLeader = (req: FastifyRequest): void => {
    if (opts.service.isLeader()) return;
    const leader = opts.service.leader();
    if (leader?.apiUrl) {
      const location = `${leader.apiUrl.replace(/\/+$/, "")}${req.url}`;
      throw new ApiError(307, "NotLeader", `this coordinator is not the leader; the leader is ${leader.id} at ${leader.apiUrl}`, undefined, {
        leader: leader.id,
        headers: { location },
      });
    }
    const msg = leader ? `this coordinator is not the leader; the leader is ${leader.id} (its API address is not known)` : "this coordinator is not the leader and no leader is elected yet";
    throw new ApiError(503, "NotLeader", msg, undefined, { ...(leader ? { leader: leader.id } : {}), headers: { "retry-after": "2" } });
  };

  const parse = <T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: import("zod").ZodError } } | undefined, value: unknown, where: "body" | "query" | "path"): T => {
    if (!schema) return undefined as T;
    const r = schema.safeParse(value === undefined ? {} : value);
    if (!r.success) throw fromZodError(where, r.error);
    return r.data;
  };

  const documented = [...ROUTES];
  for (const route of documented) {
    registered.push(`${route.method} ${route.path.replace(/:(\w+)/g, "{$1}")}`);
    app.route({
      method: route.method,
      url: route.path,
      // Before the body is read: an unauthenticated caller learns nothing from body errors.
      onRequest: async (req) => {
        authorize(route, req);
        if (route.leaderOnly) checkLeader(req);
      },
      handler: async (req, reply) => {
        const ctx: HandlerContext<never, never, never> = {
          service: opts.service,
          metricsRegistry: opts.metricsRegistry,
          renderRunbook: opts.renderRunbook,
          params: parse(route.params, req.params, "path"),
          query: parse(route.query, req.query, "query"),
          body: parse(route.body, route.method === "POST" ? req.body : undefined, "body"),
          requestedBy: requestedBy.get(req) ?? "anonymous",
          idempotencyKey: idempotencyKey(req),
          req,
          reply,
        };
        const result = await route.handler(ctx);
        if (result === undefined) return reply;
        if (route.method === "POST") log.info({ requestedBy: ctx.requestedBy, route: route.operationId, status: result.status }, `${route.operationId} by ${ctx.requestedBy}: ${result.status}`);
        for (const [k, v] of Object.entries(result.headers ?? {})) void reply.header(k, v);
        return reply.code(result.status).send(result.body);
      },
    });
  }

  const openapi = buildOpenApiDocument(documented);
  registered.push("GET /openapi.json");
  app.get("/openapi.json", async () => openapi);
  // The status page's files, outside the API's routes (and its OpenAPI document).
  registerStatusPage(app);

  await app.listen({ host, port });
  const addr = app.server.address();
  const boundPort = typeof addr === "object" && addr ? addr.port : port;
  const urlHost = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  const url = `${https ? "https" : "http"}://${urlHost}:${boundPort}`;
  log.info({ url, tls: https !== null, mtls: opts.tls?.clientCa !== undefined, tokens: opts.tokens.length }, `API listening on ${url}`);
  return {
    url,
    routes: () => [...registered],
    close: async () => {
      await app.close();
    },
  };
}

function idempotencyKey(req: FastifyRequest): string | undefined {
  const raw = req.headers["idempotency-key"];
  if (raw === undefined) return undefined;
  const v = Array.isArray(raw) ? raw[0] : raw;
  if (v === undefined || !IDEMPOTENCY_KEY_RE.test(v)) {
    throw new ApiError(400, "BadRequest", "Idempotency-Key: must be 1 to 200 visible ASCII characters", "Idempotency-Key");
  }
  return v;
}
