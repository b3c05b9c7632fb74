/**
 * Every API route as one table row: method, path, who may call it, the zod schemas of its
 * parameters, query and body, what it answers, and the handler. The server registers the rows;
 * the OpenAPI document is generated from the same rows, so the two cannot drift apart.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import type { ActionResult, CoordinatorService, FederationView, OperationView, RequestContext } from "./contract.js";
import type { Registry } from "prom-client";
import { ApiError } from "./errors.js";
import { isFinishedState } from "./operation-states.js";
import type { Role } from "./auth.js";
import {
  approveBody,
  auditList,
  auditQuery,
  dryRunQuery,
  failoverBody,
  federationApproveBody,
  evacuateBody,
  evacuationView,
  federationHistory,
  federationList,
  federationView,
  federationOrPlan,
  fedParams,
  memberParams,
  operationParams,
  operationQuery,
  operationView,
  planView,
  reasonBody,
  regionParams,
  resolveBody,
  runbookQuery,
  statusBody,
  switchoverBody,
} from "./schemas.js";

export type Access = "public" | Role;

/** A federation's runbook as Markdown or HTML, for `server` (the API's address as the client reached it). */
export type RunbookRenderer = (federation: FederationView, format: "markdown" | "html", server: string) => string;

export interface ResponseDoc {
  description: string;
  /** A named schema (components.schemas) or an inline zod schema. */
  schema?: z.ZodType;
  contentType?: string;
}

export interface HandlerContext<P, Q, B> {
  service: CoordinatorService;
  metricsRegistry: Registry | undefined;
  /** Renders a federation's runbook (ApiServerOptions.renderRunbook); undefined when none was given. */
  renderRunbook: RunbookRenderer | undefined;
  params: P;
  query: Q;
  body: B;
  /** Who asked (the token's name); "anonymous" on public routes. */
  requestedBy: string;
  idempotencyKey: string | undefined;
  req: FastifyRequest;
  reply: FastifyReply;
}

/** What a handler answers: a JSON body with a status, or `undefined` when it wrote the reply itself (SSE, /metrics). */
export type HandlerResult = { status: number; body: unknown; headers?: Record<string, string> } | undefined;

export interface RouteDef<P = unknown, Q = unknown, B = unknown> {
  method: "GET" | "POST";
  /** fastify syntax: `/v1/federations/:name`. */
  path: string;
  operationId: string;
  summary: string;
  access: Access;
  /**
   * A Kubernetes probe target: answered without a client certificate even under mutual TLS,
   * because kubelet's httpGet probes cannot present one (they reveal only liveness/leadership).
   */
  probe?: true;
  /** Served only by the leader (followers redirect or answer 503). */
  leaderOnly: boolean;
  params?: z.ZodType<P>;
  query?: z.ZodType<Q>;
  body?: z.ZodType<B>;
  responses: Record<number, ResponseDoc>;
  handler: (ctx: HandlerContext<P, Q, B>) => Promise<HandlerResult>;
}

// The params/query/body types are checked where each route is written (`route()` below) and
// erased in the table.
export type AnyRoute = RouteDef<never, never, never>;

function route<P, Q, B>(def: RouteDef<P, Q, B>): AnyRoute {
  return def as unknown as AnyRoute;
}

function isFinished(op: OperationView): boolean {
  return isFinishedState(op.state);
}

const ERRORS: Record<number, ResponseDoc> = {
  400: { description: "Invalid request; `field` names what is wrong.", schema: statusBody },
  401: { description: "No or unknown bearer token.", schema: statusBody },
  403: { description: "The token's role may not do this.", schema: statusBody },
  404: { description: "Unknown federation, member or operation.", schema: statusBody },
  429: { description: "Too many failed authentications from this client address: refused, even with a right token, until `Retry-After` seconds have passed.", schema: statusBody },
  503: { description: "This coordinator is not the leader (`leader` names it, or a 307 redirect to it), or NATS did not answer a read (`Unavailable`: try again).", schema: statusBody },
};
const MUTATION_ERRORS: Record<number, ResponseDoc> = {
  ...ERRORS,
  307: { description: "Redirect to the leader's API." },
  409: { description: "Conflicts with an operation in flight or a stale state.", schema: statusBody },
  413: { description: "Body larger than the limit.", schema: statusBody },
  415: { description: "Body is not application/json.", schema: statusBody },
  422: { description: "Refused by a safety precondition; `message` says which, with its numbers.", schema: statusBody },
};
const ACTION_RESPONSES: Record<number, ResponseDoc> = {
  200: { description: "`?dryRun=true`: the plan; nothing was changed.", schema: planView },
  202: { description: "The operation was started (or, for a repeated `Idempotency-Key`, the same operation). `Location` points at it.", schema: operationView },
  ...MUTATION_ERRORS,
};

function requireFederation(service: CoordinatorService, name: string): FederationView {
  const fed = service.getFederation(name);
  if (!fed) {
    const known = service.listFederations().map((f) => f.name);
    throw new ApiError(404, "NotFound", `unknown federation "${name}" (known: ${known.join(", ") || "none"})`, "name");
  }
  return fed;
}

function requireMember(fed: FederationView, member: string, field: string): void {
  if (!fed.members.some((m) => m.name === member)) {
    throw new ApiError(404, "NotFound", `${field}: federation "${fed.name}" has no member "${member}" (members: ${fed.members.map((m) => m.name).join(", ")})`, field);
  }
}

function isDryRun(q: { dryRun?: string | undefined }): boolean {
  return q.dryRun === "true" || q.dryRun === "1";
}

function requestContext(ctx: HandlerContext<unknown, unknown, { reason?: string | undefined }>): RequestContext {
  return {
    requestedBy: ctx.requestedBy,
    reason: ctx.body.reason ?? "",
    ...(ctx.idempotencyKey !== undefined ? { idempotencyKey: ctx.idempotencyKey } : {}),
  };
}

/** Maps a service answer to HTTP: a plan → 200 (or 422 when a real request was refused), an operation → 202 + Location. */
function actionReply(result: ActionResult | { kind: "done"; federation: FederationView }, dryRun: boolean): HandlerResult {
  if (result.kind === "plan") {
    if (!dryRun && !result.plan.allowed) {
      throw new ApiError(422, "Refused", result.plan.refusal ?? "refused by a precondition", undefined, { details: { plan: result.plan } });
    }
    return { status: 200, body: result.plan };
  }
  if (result.kind === "done") return { status: 200, body: result.federation };
  const location = `/v1/operations/${encodeURIComponent(result.operation.id)}`;
  return { status: 202, body: result.operation, headers: { location } };
}

export const ROUTES: AnyRoute[] = [
  route({
    method: "GET",
    path: "/healthz",
    operationId: "healthz",
    summary: "Liveness: the process answers. No authentication.",
    access: "public",
    probe: true,
    leaderOnly: false,
    responses: { 200: { description: "Alive.", schema: z.object({ ok: z.literal(true) }) } },
    handler: async () => ({ status: 200, body: { ok: true } }),
  }),
  route({
    method: "GET",
    path: "/readyz",
    operationId: "readyz",
    summary: "Readiness: this coordinator is the leader or knows the leader. No authentication.",
    access: "public",
    probe: true,
    leaderOnly: false,
    responses: {
      200: { description: "Ready.", schema: z.object({ ready: z.literal(true), leader: z.boolean(), leaderId: z.string().nullable() }) },
      503: { description: "No leader known.", schema: statusBody },
    },
    handler: async ({ service }) => {
      const leader = service.isLeader();
      const known = service.leader();
      if (!leader && !known) throw new ApiError(503, "NotReady", "no coordinator leader is known yet");
      return { status: 200, body: { ready: true, leader, leaderId: known?.id ?? null } };
    },
  }),
  route({
    method: "GET",
    path: "/metrics",
    operationId: "metrics",
    summary: "Prometheus metrics (text exposition format). No authentication.",
    access: "public",
    leaderOnly: false,
    responses: { 200: { description: "Metrics.", contentType: "text/plain", schema: z.string() } },
    handler: async ({ metricsRegistry, reply }) => {
      const text = metricsRegistry ? await metricsRegistry.metrics() : "";
      await reply
        .code(200)
        .header("content-type", metricsRegistry?.contentType ?? "text/plain; version=0.0.4; charset=utf-8")
        .send(text);
      return undefined;
    },
  }),
  route({
    method: "GET",
    path: "/v1/federations",
    operationId: "listFederations",
    summary: "All federations with their members, exposure and the operation in flight.",
    access: "viewer",
    leaderOnly: true,
    responses: { 200: { description: "Federations.", schema: federationList }, ...ERRORS },
    handler: async ({ service }) => ({ status: 200, body: { items: service.listFederations() } }),
  }),
  route({
    method: "GET",
    path: "/v1/federations/:name",
    operationId: "getFederation",
    summary: "One federation.",
    access: "viewer",
    leaderOnly: true,
    params: fedParams,
    responses: { 200: { description: "The federation.", schema: federationView }, ...ERRORS },
    handler: async ({ service, params }) => ({ status: 200, body: requireFederation(service, params.name) }),
  }),
  route({
    method: "POST",
    path: "/v1/federations/:name/switchover",
    operationId: "switchover",
    summary: "Planned switchover to `target` with zero data loss (the CNPG demotion token checks it).",
    access: "operator",
    leaderOnly: true,
    params: fedParams,
    query: dryRunQuery,
    body: switchoverBody,
    responses: ACTION_RESPONSES,
    handler: async (ctx) => {
      const fed = requireFederation(ctx.service, ctx.params.name);
      requireMember(fed, ctx.body.target, "body.target");
      const dryRun = isDryRun(ctx.query);
      return actionReply(await ctx.service.switchover(fed.name, { target: ctx.body.target }, requestContext(ctx), { dryRun }), dryRun);
    },
  }),
  route({
    method: "POST",
    path: "/v1/federations/:name/failover",
    operationId: "failover",
    summary: "Unplanned failover, gated by fencing or lease expiry and by the RPO budget (or the loss the operator accepts).",
    access: "operator",
    leaderOnly: true,
    params: fedParams,
    query: dryRunQuery,
    body: failoverBody,
    responses: ACTION_RESPONSES,
    handler: async (ctx) => {
      const fed = requireFederation(ctx.service, ctx.params.name);
      if (ctx.body.target !== undefined) requireMember(fed, ctx.body.target, "body.target");
      const dryRun = isDryRun(ctx.query);
      const args = {
        ...(ctx.body.target !== undefined ? { target: ctx.body.target } : {}),
        ...(ctx.body.acceptDataLoss !== undefined ? { acceptDataLossSeconds: ctx.body.acceptDataLoss } : {}),
      };
      return actionReply(await ctx.service.failover(fed.name, args, requestContext(ctx), { dryRun }), dryRun);
    },
  }),
  route({
    method: "POST",
    path: "/v1/federations/:name/members/:member/rejoin",
    operationId: "rejoin",
    summary: "Rejoin a former primary (fenced, diverged) as a replica of the current primary.",
    access: "operator",
    leaderOnly: true,
    params: memberParams,
    query: dryRunQuery,
    body: reasonBody,
    responses: ACTION_RESPONSES,
    handler: async (ctx) => {
      const fed = requireFederation(ctx.service, ctx.params.name);
      requireMember(fed, ctx.params.member, "member");
      const dryRun = isDryRun(ctx.query);
      return actionReply(await ctx.service.rejoin(fed.name, { member: ctx.params.member }, requestContext(ctx), { dryRun }), dryRun);
    },
  }),
  ...(["pause", "resume"] as const).map((verb) =>
    route({
      method: "POST",
      path: `/v1/federations/:name/${verb}`,
      operationId: verb,
      summary: verb === "pause" ? "Stop automatic actions (failover, WAL switch nudges) for this federation; observation continues." : "Resume automatic actions.",
      access: "operator",
      leaderOnly: true,
      params: fedParams,
      query: dryRunQuery,
      body: reasonBody,
      responses: {
        200: { description: "The federation after the change, or with `?dryRun=true` the plan.", schema: federationOrPlan },
        ...MUTATION_ERRORS,
      },
      handler: async (ctx) => {
        const fed = requireFederation(ctx.service, ctx.params.name);
        const dryRun = isDryRun(ctx.query);
        const result = await ctx.service[verb](fed.name, requestContext(ctx), { dryRun });
        return actionReply(result, dryRun);
      },
    }),
  ),
  route({
    method: "POST",
    path: "/v1/federations/:name/resolve",
    operationId: "resolve",
    summary:
      "End operatorRequired (a failed operation, or no primary at start) once the Clusters are fixed by hand: name the designated primary (epoch + 1 when it changes). Refused unless that member is observed as the one unfenced primary cluster.",
    access: "operator",
    leaderOnly: true,
    params: fedParams,
    query: dryRunQuery,
    body: resolveBody,
    responses: {
      200: { description: "The federation after the change, or with `?dryRun=true` the plan.", schema: federationOrPlan },
      ...MUTATION_ERRORS,
    },
    handler: async (ctx) => {
      const fed = requireFederation(ctx.service, ctx.params.name);
      requireMember(fed, ctx.body.primary, "body.primary");
      const dryRun = isDryRun(ctx.query);
      return actionReply(await ctx.service.resolve(fed.name, { primary: ctx.body.primary }, requestContext(ctx), { dryRun }), dryRun);
    },
  }),
  route({
    method: "POST",
    path: "/v1/operations/:id/approve",
    operationId: "approveOperation",
    summary: "Approve an operation that awaits approval (a failover beyond the RPO budget), optionally accepting a data loss.",
    access: "operator",
    leaderOnly: true,
    params: operationParams,
    query: dryRunQuery,
    body: approveBody,
    responses: ACTION_RESPONSES,
    handler: async (ctx) => {
      const op = ctx.service.getOperation(ctx.params.id);
      if (!op) throw new ApiError(404, "NotFound", `unknown operation "${ctx.params.id}"`, "id");
      const dryRun = isDryRun(ctx.query);
      const args = ctx.body.acceptDataLoss !== undefined ? { acceptDataLossSeconds: ctx.body.acceptDataLoss } : {};
      return actionReply(await ctx.service.approve(op.id, args, requestContext(ctx), { dryRun }), dryRun);
    },
  }),
  route({
    method: "POST",
    path: "/v1/federations/:name/approve",
    operationId: "approveFederationOperation",
    summary: "Same as POST /v1/operations/{id}/approve, with the operation id in the body.",
    access: "operator",
    leaderOnly: true,
    params: fedParams,
    query: dryRunQuery,
    body: federationApproveBody,
    responses: ACTION_RESPONSES,
    handler: async (ctx) => {
      const fed = requireFederation(ctx.service, ctx.params.name);
      const op = ctx.service.getOperation(ctx.body.operation);
      if (!op || op.federation !== fed.name) {
        throw new ApiError(404, "NotFound", `body.operation: federation "${fed.name}" has no operation "${ctx.body.operation}"`, "body.operation");
      }
      const dryRun = isDryRun(ctx.query);
      const args = ctx.body.acceptDataLoss !== undefined ? { acceptDataLossSeconds: ctx.body.acceptDataLoss } : {};
      return actionReply(await ctx.service.approve(op.id, args, requestContext(ctx), { dryRun }), dryRun);
    },
  }),
  route({
    method: "GET",
    path: "/v1/operations/:id",
    operationId: "getOperation",
    summary: "One operation. `?wait=30s` long-polls until it changes (a new step or state) or finishes.",
    access: "viewer",
    leaderOnly: true,
    params: operationParams,
    query: operationQuery,
    responses: { 200: { description: "The operation.", schema: operationView }, ...ERRORS },
    handler: async ({ service, params, query }) => {
      const current = service.getOperation(params.id);
      if (!current) throw new ApiError(404, "NotFound", `unknown operation "${params.id}"`, "id");
      if (query.wait === undefined || isFinished(current)) return { status: 200, body: current };
      const op = await service.waitOperation(params.id, { timeoutMs: query.wait, ...(query.afterSteps !== undefined ? { afterSteps: query.afterSteps } : {}) });
      return { status: 200, body: op ?? current };
    },
  }),
  route({
    method: "GET",
    path: "/v1/operations/:id/events",
    operationId: "watchOperation",
    summary: "Server-Sent Events: one `operation` event per change (the first is the current state), then `end` when it finishes.",
    access: "viewer",
    leaderOnly: true,
    params: operationParams,
    responses: { 200: { description: "An event stream; each `data:` is an Operation.", contentType: "text/event-stream", schema: z.string() }, ...ERRORS },
    handler: async ({ service, params, reply }) => {
      const first = service.getOperation(params.id);
      if (!first) throw new ApiError(404, "NotFound", `unknown operation "${params.id}"`, "id");
      streamOperation(service, first, reply);
      return undefined;
    },
  }),
  route({
    method: "GET",
    path: "/v1/federations/:name/audit",
    operationId: "audit",
    summary: "The audit trail: every decision, command, result and state change, oldest first.",
    access: "viewer",
    leaderOnly: true,
    params: fedParams,
    query: auditQuery,
    responses: { 200: { description: "Audit entries.", schema: auditList }, ...ERRORS },
    handler: async ({ service, params, query }) => {
      const fed = requireFederation(service, params.name);
      const items = await service.audit(fed.name, {
        ...(query.since !== undefined ? { sinceMs: query.since } : {}),
        ...(query.limit !== undefined ? { limit: query.limit } : {}),
      });
      return { status: 200, body: { items } };
    },
  }),
  route({
    method: "POST",
    path: "/v1/regions/:region/evacuate",
    operationId: "evacuateRegion",
    summary: "Planned switchover of every federation whose designated primary is in `region` to its best eligible member elsewhere, `parallel` at a time; `?dryRun=true` answers the plan (every move with its numbers).",
    access: "operator",
    leaderOnly: true,
    params: regionParams,
    query: dryRunQuery,
    body: evacuateBody,
    responses: {
      200: { description: "`?dryRun=true`: the plan; nothing was changed.", schema: evacuationView },
      202: { description: "The evacuation was started. `Location` points at it.", schema: evacuationView },
      ...MUTATION_ERRORS,
    },
    handler: async (ctx) => {
      const dryRun = isDryRun(ctx.query);
      const view = await ctx.service.evacuate(ctx.params.region, { parallel: ctx.body.parallel, skipIneligible: ctx.body.skipIneligible }, requestContext(ctx), { dryRun });
      return dryRun ? { status: 200, body: view } : { status: 202, body: view, headers: { location: `/v1/evacuations/${encodeURIComponent(view.id)}` } };
    },
  }),
  route({
    method: "GET",
    path: "/v1/evacuations/:id",
    operationId: "getEvacuation",
    summary: "A region's evacuation: every move with its state, operation and numbers (kept by the leader in memory; the last 20 finished ones).",
    access: "viewer",
    leaderOnly: true,
    params: operationParams,
    responses: { 200: { description: "The evacuation.", schema: evacuationView }, ...ERRORS },
    handler: async ({ service, params }) => {
      const view = service.getEvacuation(params.id);
      if (!view) throw new ApiError(404, "NotFound", `unknown evacuation "${params.id}" (the leader keeps running ones and the last 20 finished; a new leader knows none)`, "id");
      return { status: 200, body: view };
    },
  }),
  route({
    method: "GET",
    path: "/v1/federations/:name/history",
    operationId: "getFederationHistory",
    summary: "The last hour of the federation's exposure and each member's lag, one point per resolutionSeconds (the status page's chart).",
    access: "viewer",
    leaderOnly: true,
    params: fedParams,
    responses: { 200: { description: "The history, columnar, oldest first.", schema: federationHistory }, ...ERRORS },
    handler: async ({ service, params }) => {
      const fed = requireFederation(service, params.name);
      const history = service.getHistory(fed.name);
      if (!history) throw new ApiError(404, "NotFound", `no history for federation "${fed.name}" yet`, "name");
      return { status: 200, body: history };
    },
  }),
  route({
    method: "GET",
    path: "/v1/federations/:name/runbook",
    operationId: "getRunbook",
    summary: "The federation's DR runbook from live state (as `pgfed runbook`): Markdown, or a standalone HTML page with `?format=html`.",
    access: "viewer",
    leaderOnly: true,
    params: fedParams,
    query: runbookQuery,
    responses: { 200: { description: "The runbook.", contentType: "text/markdown", schema: z.string() }, ...ERRORS },
    handler: async ({ service, renderRunbook, params, query, req, reply }) => {
      const fed = requireFederation(service, params.name);
      if (!renderRunbook) throw new ApiError(404, "NotFound", "this API serves no runbook (started without a runbook renderer); use pgfed runbook");
      // The commands in it name the API as this client reached it.
      const server = `${req.protocol}://${req.host}`;
      const html = query.format === "html";
      await reply
        .code(200)
        .header("content-type", html ? "text/html; charset=utf-8" : "text/markdown; charset=utf-8")
        .send(renderRunbook(fed, query.format, server));
      return undefined;
    },
  }),
];

/** Streams operation changes as SSE until the operation finishes or the client leaves. */
function streamOperation(service: CoordinatorService, first: OperationView, reply: FastifyReply): void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" });
  let seq = 0;
  let last = "";
  let closed = false;
  let unsubscribe: () => void = () => undefined;
  const heartbeat = setInterval(() => res.write(": keep-alive\n\n"), 15_000);
  heartbeat.unref();
  const close = () => {
    if (closed) return;
    closed = true;
    clearInterval(heartbeat);
    unsubscribe();
    res.end();
  };
  const send = (op: OperationView) => {
    if (closed) return;
    const data = JSON.stringify(op);
    if (data !== last) {
      last = data;
      res.write(`id: ${seq++}\nevent: operation\ndata: ${data}\n\n`);
    }
    if (isFinished(op)) {
      res.write(`event: end\ndata: ${JSON.stringify({ id: op.id, state: op.state })}\n\n`);
      close();
    }
  };
  res.on("close", close);
  send(first);
  if (closed) return;
  unsubscribe = service.watchOperation(first.id, send);
  if (closed) return unsubscribe();
  // A change between the first read and the subscription would otherwise be missed.
  const now = service.getOperation(first.id);
  if (now) send(now);
}
