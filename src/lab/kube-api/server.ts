/**
 * The Kubernetes API server stand-in of one region: the REST surface client-node and kubectl use
 * (discovery, CRUD, status/scale subresources, patches, list/watch with selectors), bearer-token
 * auth, admission, and fault injection. State lives in a `KubeStore` that the lab's in-process
 * CNPG stand-in and tests use directly.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { parse as parseYaml } from "yaml";
import { wrapError } from "../../errors.js";
import type { Logger } from "../../log.js";
import { authenticate, authorize } from "./auth.js";
import type { RbacPolicy, RequestAttributes } from "./rbac.js";
import { cnpgAdmission } from "./cnpg-admission.js";
import { apiGroup, apiGroupList, apiResourceList, apiVersions, openApiV3Document, openApiV3Root, versionInfo } from "./discovery.js";
import { applyMergePatch } from "../../cnpg/index.js";
import { applyJsonPatch, parseJsonPatch, PatchError } from "./json-patch.js";
import { managerName } from "./managed-fields.js";
import { decodeObject } from "./objects.js";
import { decodeNamespace, PROTOBUF } from "./protobuf.js";
import { apiVersionOf, findResource, groupResource, type ResourceDef } from "./resources.js";
import { matchesFilter, type ObjectFilter } from "./selectors.js";
import { KubeStore, type FieldValidation, type PatchType, type WriteOptions } from "./store.js";
import { tableOf, wantsTable, type IncludeObject } from "./table.js";
import {
  badRequest,
  expired,
  invalid,
  failure,
  forbidden,
  injectedFault,
  internalError,
  KubeApiError,
  methodNotAllowed,
  pathNotFound,
  tooLarge,
  unsupportedMediaType,
  type KubeStatus,
} from "./status.js";
import { ensureCertificates } from "./tls.js";
import { isRecord, type AdmissionHook, type Faults, type KubeObject, type StoreEvent, type TokenIdentity } from "./types.js";

export interface KubeApiOptions {
  region: string;
  /** Listen address; the lab always uses 127.0.0.1. */
  host?: string;
  /** 0 or absent: a free port. */
  port?: number;
  /** HTTPS with a generated CA (`<dir>/ca.crt`, `server.crt`, `server.key`); plain HTTP without. */
  tls?: { dir: string };
  /** Bearer token → identity and permissions. */
  tokens: Record<string, TokenIdentity>;
  /** Decides the requests of identities without an `allow` table (Roles and bindings, e.g. rendered from deploy/). */
  rbac?: RbacPolicy;
  /** Called for every resource request once it is authorized or refused (tests record what a client calls). */
  onRequest?: (a: RequestAttributes, allowed: boolean) => void;
  /**
   * Identity of requests without an Authorization header (the real server's anonymous auth);
   * absent: they get 401. kubectl never sends credentials to an http:// server, so a plain-http
   * lab region that kubectl should use needs this (or TLS).
   */
  anonymous?: TokenIdentity;
  /** Validating admission; absent: the CNPG rules for clusters (`cnpgAdmission`); false: none. */
  admission?: AdmissionHook | false;
  /** Events kept for watch resumption (default 1000). */
  watchHistory?: number;
  /** Period of BOOKMARK events on watches that allow them (default 10 s). */
  bookmarkIntervalMs?: number;
  /** Namespaces that exist from the start, besides default, kube-system and kube-public. */
  namespaces?: string[];
  logger?: Logger;
}

export interface FaultSwitch {
  /** The faults in force now. */
  get(): Faults;
  /** Merges `f` into the faults in force; resolves once the listener state matches `partitioned`. */
  set(f: Faults): Promise<void>;
  /** Removes every fault (and reopens the listener after a partition). */
  clear(): Promise<void>;
}

export interface KubeApiServer {
  readonly region: string;
  readonly url: string;
  readonly port: number;
  /** The CA to trust for an https server. */
  readonly caFile: string | undefined;
  /** The in-process API: the same objects, resourceVersions and events the HTTP clients see. */
  readonly store: KubeStore;
  readonly faults: FaultSwitch;
  stop(): Promise<void>;
}

const MAX_BODY_BYTES = 3 * 1024 * 1024;
const JSON_PATCH = "application/json-patch+json";
const MERGE_PATCH = "application/merge-patch+json";
const STRATEGIC_PATCH = "application/strategic-merge-patch+json";
const APPLY_PATCH = "application/apply-patch+yaml";

interface Route {
  def: ResourceDef;
  namespace: string | undefined;
  name: string | undefined;
  subresource: "status" | "scale" | undefined;
  /** The deprecated `/watch/` path prefix. */
  watchPath: boolean;
}

interface OpenWatch {
  end(): void;
}

class HttpResponseError extends Error {
  constructor(readonly status: KubeStatus) {
    super(status.message);
  }
}

function mediaType(header: string | undefined): string {
  return (header ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

function sendJson(res: ServerResponse, code: number, body: unknown, extraHeaders: Record<string, string | string[]> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(code, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text), "Cache-Control": "no-cache, private", ...extraHeaders });
  res.end(text);
}

/** `Warning: 299 - "<text>"` headers, one per warning (apiserver pkg/warning). */
function warningHeaders(warnings: string[]): Record<string, string[]> {
  return warnings.length > 0 ? { Warning: warnings.map((w) => `299 - ${JSON.stringify(w)}`) } : {};
}

function sendStatus(res: ServerResponse, status: KubeStatus): void {
  const headers: Record<string, string> = {};
  if (status.details?.retryAfterSeconds) headers["Retry-After"] = String(status.details.retryAfterSeconds);
  sendJson(res, status.code, status, headers);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > MAX_BODY_BYTES) throw tooLarge(MAX_BODY_BYTES);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

function parseJsonBody(buf: Buffer): unknown {
  if (buf.length === 0) throw badRequest("the request has no body; a JSON body is required");
  try {
    return JSON.parse(buf.toString("utf8"));
  } catch (e) {
    throw badRequest(`the request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Splits `/api/v1/...` or `/apis/<g>/<v>/...` into a resource route, or undefined. */
function parseRoute(segs: string[]): Route | undefined {
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === "api" && segs.length >= 3) {
    group = "";
    version = segs[1] ?? "";
    rest = segs.slice(2);
  } else if (segs[0] === "apis" && segs.length >= 4) {
    group = segs[1] ?? "";
    version = segs[2] ?? "";
    rest = segs.slice(3);
  } else return undefined;
  let watchPath = false;
  if (rest[0] === "watch") {
    watchPath = true;
    rest = rest.slice(1);
  }
  const inNamespace = rest[0] === "namespaces" && rest.length >= 3 && rest[2] !== "status" && rest[2] !== "finalize";
  const [plural, name, sub, extra] = inNamespace ? rest.slice(2) : rest;
  const namespace = inNamespace ? rest[1] : undefined;
  if (!plural || extra !== undefined) return undefined;
  const def = findResource(group, version, plural);
  if (!def) return undefined;
  if (inNamespace && !def.namespaced) return undefined;
  if (!inNamespace && def.namespaced && name !== undefined) return undefined;
  if (sub !== undefined && !(def.subresources as string[]).includes(sub)) return undefined;
  return { def, namespace, name, subresource: sub as Route["subresource"], watchPath };
}

function isWatch(q: URLSearchParams, route: Route): boolean {
  const w = q.get("watch");
  return route.watchPath || w === "true" || w === "1";
}

/** Scale subresource of a Cluster: replicas = spec.instances. */
function scaleOf(obj: KubeObject): Record<string, unknown> {
  const spec = isRecord(obj.spec) ? obj.spec : {};
  const status = isRecord(obj.status) ? obj.status : {};
  const meta: Record<string, unknown> = { name: obj.metadata.name, uid: obj.metadata.uid, resourceVersion: obj.metadata.resourceVersion, creationTimestamp: obj.metadata.creationTimestamp };
  if (obj.metadata.namespace) meta.namespace = obj.metadata.namespace;
  return {
    kind: "Scale",
    apiVersion: "autoscaling/v1",
    metadata: meta,
    spec: { replicas: typeof spec.instances === "number" ? spec.instances : 0 },
    status: { replicas: typeof status.instances === "number" ? status.instances : 0, selector: `cnpg.io/cluster=${obj.metadata.name}` },
  };
}

class FaultController implements FaultSwitch {
  private current: Faults = {};

  constructor(
    private readonly onDropWatches: () => void,
    private readonly onPartition: (on: boolean) => Promise<void>,
    private readonly logger: Logger | undefined,
  ) {}

  get(): Faults {
    return { ...this.current };
  }

  async set(f: Faults): Promise<void> {
    const { dropWatches, ...rest } = f;
    this.current = { ...this.current, ...rest };
    for (const k of Object.keys(this.current) as Array<keyof Faults>) if (this.current[k] === undefined) delete this.current[k];
    this.logger?.info({ faults: this.current, dropWatches: dropWatches === true }, "fault injection changed");
    if (dropWatches) this.onDropWatches();
    await this.onPartition(this.current.partitioned === true);
  }

  async clear(): Promise<void> {
    this.current = {};
    this.logger?.info("fault injection cleared");
    await this.onPartition(false);
  }

  /** Delay and maybe an injected error for one request. */
  async beforeRequest(): Promise<KubeStatus | undefined> {
    const { latencyMs, errorRate, errorStatus } = this.current;
    if (latencyMs && latencyMs > 0) await sleep(latencyMs);
    if (errorRate && errorRate > 0 && Math.random() < errorRate) return injectedFault(errorStatus ?? 503);
    return undefined;
  }
}

/** Starts the API server of one region. */
export async function startKubeApi(opts: KubeApiOptions): Promise<KubeApiServer> {
  const host = opts.host ?? "127.0.0.1";
  const logger = opts.logger?.child({ region: opts.region, component: "kube-api" });
  const admission = opts.admission === false ? undefined : (opts.admission ?? cnpgAdmission);
  const store = new KubeStore({ watchHistory: opts.watchHistory ?? 1000, admission, logger });
  for (const ns of new Set(["default", "kube-system", "kube-public", ...(opts.namespaces ?? [])])) {
    store.create("namespaces", { metadata: { name: ns } }, { skipAdmission: true, fieldManager: "kube-apiserver" });
  }
  const bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 10_000;

  let server: Server;
  let caFile: string | undefined;
  if (opts.tls) {
    const files = await ensureCertificates(opts.tls.dir, opts.region, host);
    caFile = files.caFile;
    const [cert, key] = await Promise.all([readFile(files.certFile), readFile(files.keyFile)]);
    server = createHttpsServer({ cert, key });
  } else server = createHttpServer();
  server.keepAliveTimeout = 30_000;

  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\n\r\n");
    else socket.destroy();
  });

  const watches = new Set<OpenWatch>();
  let listening = false;
  let stopped = false;
  let port = opts.port ?? 0;

  const listen = async (): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(wrapError("lab.kube_api_listen", `while starting the API server of region ${opts.region} on ${host}:${port}`, e));
      server.once("error", onError);
      server.listen(port, host, () => {
        server.off("error", onError);
        resolve();
      });
    });
    const addr = server.address();
    if (addr && typeof addr === "object") port = addr.port;
    listening = true;
  };

  const closeListener = async (): Promise<void> => {
    if (!listening) return;
    listening = false;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const w of [...watches]) w.end();
    for (const s of sockets) s.destroy();
    server.closeAllConnections();
    await closed;
  };

  const faults = new FaultController(
    () => {
      for (const w of [...watches]) w.end();
    },
    async (on) => {
      if (stopped) return;
      if (on) await closeListener();
      else if (!listening) await listen();
    },
    logger,
  );

  const serverAddress = () => `${host}:${port}`;

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const method = req.method ?? "GET";
    const url = new URL(req.url ?? "/", "http://placeholder");
    res.on("finish", () => logger?.debug({ method, path: url.pathname, status: res.statusCode, ms: Date.now() - started }, "request"));
    try {
      const body = method === "POST" || method === "PUT" || method === "PATCH" || method === "DELETE" ? await readBody(req) : Buffer.alloc(0);
      const fault = await faults.beforeRequest();
      if (fault) throw new HttpResponseError(fault);
      await route(req, res, method, url, body);
    } catch (e) {
      if (e instanceof KubeApiError || e instanceof HttpResponseError) sendStatus(res, e.status);
      else {
        logger?.error({ err: e, method, path: url.pathname }, "request failed unexpectedly");
        sendStatus(res, internalError(e instanceof Error ? e.message : String(e)).status);
      }
    }
  };

  const route = async (req: IncomingMessage, res: ServerResponse, method: string, url: URL, body: Buffer): Promise<void> => {
    const path = url.pathname.replace(/\/+$/, "") || "/";
    if (path === "/healthz" || path === "/livez" || path === "/readyz") {
      res.writeHead(200, { "Content-Type": "text/plain" }).end("ok");
      return;
    }
    if (path === "/version") return sendJson(res, 200, versionInfo());
    const id = authenticate(req.headers, opts.tokens, opts.anonymous);
    let segs: string[];
    try {
      segs = path.split("/").filter((s) => s !== "").map(decodeURIComponent);
    } catch {
      throw badRequest(`the path ${path} is not correctly escaped`);
    }
    if (method === "GET") {
      const doc = discovery(segs);
      if (doc) return sendJson(res, 200, doc);
    }
    const r = parseRoute(segs);
    if (!r) {
      if (method !== "GET" && discovery(segs)) throw methodNotAllowed();
      throw pathNotFound();
    }
    return resourceRequest(id, req, res, method, url.searchParams, body, r);
  };

  const discovery = (segs: string[]): Record<string, unknown> | undefined => {
    const p = segs.join("/");
    if (p === "api") return apiVersions(serverAddress());
    if (p === "apis") return apiGroupList();
    if (segs[0] === "api" && segs.length === 2) return apiResourceList("", segs[1] ?? "");
    if (segs[0] === "apis" && segs.length === 2) return apiGroup(segs[1] ?? "");
    if (segs[0] === "apis" && segs.length === 3) return apiResourceList(segs[1] ?? "", segs[2] ?? "");
    if (p === "openapi/v3") return openApiV3Root();
    if (segs[0] === "openapi" && segs[1] === "v3" && segs[2] === "api" && segs.length === 4) return openApiV3Document("", segs[3] ?? "");
    if (segs[0] === "openapi" && segs[1] === "v3" && segs[2] === "apis" && segs.length === 5) return openApiV3Document(segs[3] ?? "", segs[4] ?? "");
    return undefined;
  };

  const resourceRequest = async (id: TokenIdentity, req: IncomingMessage, res: ServerResponse, method: string, q: URLSearchParams, rawBody: Buffer, r: Route): Promise<void> => {
    const { def, namespace, name, subresource } = r;
    const contentType = req.headers["content-type"];
    const gr = groupResource(def);
    const verb = verbOf(method, r, q);
    if (!verb) throw methodNotAllowed();
    // The name is part of the attributes only when the path names the object, as on a real server (so resourceNames never match a create or a list).
    const attrs: RequestAttributes = {
      user: id.name,
      groups: id.groups ?? [],
      verb,
      apiGroup: gr.group,
      resource: def.name,
      ...(subresource ? { subresource } : {}),
      ...(namespace !== undefined ? { namespace } : {}),
      ...(name !== undefined ? { name } : {}),
    };
    const allowed = authorize(id, attrs, opts.rbac);
    opts.onRequest?.(attrs, allowed);
    if (!allowed) throw forbidden(id.name, verb, gr, subresource, namespace, name);
    const warnings: string[] = [];
    const wo: WriteOptions = {
      dryRun: q.getAll("dryRun").includes("All"),
      fieldManager: managerName(q.get("fieldManager"), req.headers["user-agent"]),
      fieldValidation: fieldValidationOf(q),
      warnings,
    };
    checkFieldManager(q.get("fieldManager"), verb);
    const ref = { namespace, name: name ?? "" };
    const table = wantsTable(req.headers.accept) && subresource === undefined;
    const include = includeObjectOf(q);
    const send = (code: number, body: unknown) => sendJson(res, code, body, warningHeaders(warnings));

    switch (verb) {
      case "get": {
        const obj = store.read(def.name, ref);
        if (table) return sendJson(res, 200, tableOf(def, [obj], { resourceVersion: obj.metadata.resourceVersion ?? "", include }));
        return sendJson(res, 200, subresource === "scale" ? scaleOf(obj) : obj);
      }
      case "list":
      case "watch": {
        const filter = store.filterFor(def.name, { namespace, labelSelector: q.get("labelSelector") ?? "", fieldSelector: q.get("fieldSelector") ?? "" });
        if (verb === "watch") {
          if (name !== undefined) filter.fields.push({ field: "metadata.name", op: "eq", value: name });
          return serveWatch(res, def, filter, q, table ? include : undefined);
        }
        const limit = Number(q.get("limit") ?? "0");
        const list = store.listFiltered(def.name, filter, Number.isInteger(limit) && limit > 0 ? limit : undefined, q.get("continue") ?? undefined);
        if (table) return sendJson(res, 200, tableOf(def, list.items, { resourceVersion: list.resourceVersion, include, ...(list.continue ? { continueToken: list.continue } : {}) }));
        const metadata: Record<string, unknown> = { resourceVersion: list.resourceVersion };
        if (list.continue) metadata.continue = list.continue;
        if (list.remainingItemCount !== undefined) metadata.remainingItemCount = list.remainingItemCount;
        return sendJson(res, 200, { kind: def.listKind, apiVersion: apiVersionOf(def), metadata, items: list.items });
      }
      case "create": {
        const obj = decodeObject(createBody(def, contentType, rawBody), def);
        if (def.namespaced) {
          if (obj.metadata.namespace && obj.metadata.namespace !== namespace) throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
          obj.metadata.namespace = namespace;
        }
        return send(201, store.create(def.name, obj, wo));
      }
      case "update": {
        requireJson(contentType);
        const input = parseJsonBody(rawBody);
        if (subresource === "scale") return sendJson(res, 200, updateScale(def, ref, input, wo));
        const obj = decodeObject(input, def);
        if (obj.metadata.name !== name) throw badRequest(`the name of the object (${obj.metadata.name ?? ""}) does not match the name on the URL (${name ?? ""})`);
        if (def.namespaced) {
          if (obj.metadata.namespace && obj.metadata.namespace !== namespace) throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
          obj.metadata.namespace = namespace;
        }
        return send(200, subresource === "status" ? store.replaceStatus(def.name, obj, wo) : store.update(def.name, obj, wo));
      }
      case "patch": {
        const type = patchTypeOf(def, contentType, subresource);
        if (type === "apply") return applyRequest(res, def, ref, q, rawBody, subresource === "status" ? subresource : undefined, wo);
        if (q.get("force") !== null) throw patchOptionsInvalid([{ field: "force", reason: "FieldValueForbidden", message: "Forbidden: may not be specified for non-apply patch" }]);
        const patch = parseJsonBody(rawBody);
        if (subresource === "scale") {
          const current = scaleOf(store.read(def.name, ref));
          let next: unknown;
          try {
            next = type === "merge" ? applyMergePatch(current, patch) : applyJsonPatch(current, parseJsonPatch(patch));
          } catch (e) {
            if (e instanceof PatchError) throw e.kind === "malformed" ? badRequest(e.message) : new KubeApiError(failure(422, "Invalid", e.message));
            throw e;
          }
          return sendJson(res, 200, updateScale(def, ref, next, wo));
        }
        return send(200, store.patch(def.name, ref, patch, type, { ...wo, ...(subresource === "status" ? { subresource } : {}) }));
      }
      case "delete": {
        const opts = rawBody.length > 0 ? parseJsonBody(rawBody) : {};
        const pre = isRecord(opts) && isRecord(opts.preconditions) ? opts.preconditions : {};
        const preconditions: { uid?: string; resourceVersion?: string } = {};
        if (typeof pre.uid === "string") preconditions.uid = pre.uid;
        if (typeof pre.resourceVersion === "string") preconditions.resourceVersion = pre.resourceVersion;
        if (isRecord(opts) && Array.isArray(opts.dryRun) && opts.dryRun.includes("All")) wo.dryRun = true;
        const deleted = store.delete(def.name, ref, { ...wo, preconditions });
        return sendJson(res, deleted.metadata.deletionTimestamp ? 202 : 200, deleted);
      }
      case "deletecollection": {
        const filter = store.filterFor(def.name, { namespace, labelSelector: q.get("labelSelector") ?? "", fieldSelector: q.get("fieldSelector") ?? "" });
        const items = store.deleteCollection(def.name, filter, wo);
        return sendJson(res, 200, { kind: def.listKind, apiVersion: apiVersionOf(def), metadata: { resourceVersion: String(store.resourceVersion) }, items });
      }
      default:
        throw methodNotAllowed();
    }
  };

  /** Server-side apply: PATCH with application/apply-patch+yaml (YAML or JSON body). */
  const applyRequest = (res: ServerResponse, def: ResourceDef, ref: { namespace: string | undefined; name: string }, q: URLSearchParams, rawBody: Buffer, subresource: "status" | undefined, wo: WriteOptions): void => {
    const fieldManager = q.get("fieldManager");
    if (!fieldManager) throw patchOptionsInvalid([{ field: "fieldManager", reason: "FieldValueRequired", message: "Required value: is required for apply patch" }]);
    const force = q.get("force");
    if (force !== null && force !== "true" && force !== "false") throw badRequest(`force: Invalid value: "${force}": must be true or false`);
    let config: unknown;
    try {
      config = parseYaml(rawBody.toString("utf8"));
    } catch (e) {
      throw badRequest(`error decoding YAML: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!isRecord(config)) throw badRequest("error decoding YAML: the apply configuration must be an object");
    const existed = store.get(def.name, ref) !== undefined;
    const out = store.apply(def.name, ref, config, { ...wo, fieldManager, force: force === "true", ...(subresource ? { subresource } : {}) });
    sendJson(res, existed ? 200 : 201, out, warningHeaders(wo.warnings ?? []));
  };

  const updateScale = (def: ResourceDef, ref: { namespace: string | undefined; name: string }, input: unknown, wo: WriteOptions): Record<string, unknown> => {
    if (!isRecord(input) || !isRecord(input.spec) || typeof input.spec.replicas !== "number" || !Number.isInteger(input.spec.replicas) || input.spec.replicas < 0) {
      throw new KubeApiError(failure(422, "Invalid", `Scale.autoscaling "${ref.name}" is invalid: spec.replicas: Invalid value: must be a non-negative integer`, { name: ref.name, kind: "Scale", causes: [{ reason: "FieldValueInvalid", message: "Invalid value: must be a non-negative integer", field: "spec.replicas" }] }));
    }
    const meta = isRecord(input.metadata) ? input.metadata : {};
    const patch: Record<string, unknown> = { spec: { instances: input.spec.replicas } };
    if (typeof meta.resourceVersion === "string" && meta.resourceVersion) patch.metadata = { resourceVersion: meta.resourceVersion };
    return scaleOf(store.patch(def.name, ref, patch, "merge", wo));
  };

  const serveWatch = (res: ServerResponse, def: ResourceDef, filter: ObjectFilter, q: URLSearchParams, tableInclude: IncludeObject | undefined): void => {
    const rvParam = q.get("resourceVersion") ?? "";
    let since: number | undefined;
    if (rvParam !== "" && rvParam !== "0") {
      since = Number(rvParam);
      if (!Number.isInteger(since) || since < 0) throw badRequest(`resourceVersion: Invalid value: "${rvParam}": must be a non-negative integer`);
    }
    const timeoutSeconds = Number(q.get("timeoutSeconds") ?? "0");
    const bookmarks = q.get("allowWatchBookmarks") === "true";
    const sendInitialEvents = q.get("sendInitialEvents") === "true";
    const apiVersion = apiVersionOf(def);

    res.writeHead(200, { "Content-Type": "application/json", "Cache-Control": "no-cache, private", "Transfer-Encoding": "chunked" });
    res.flushHeaders();
    const timers: NodeJS.Timeout[] = [];
    let unsubscribe: () => void = () => undefined;
    const watch: OpenWatch = {
      end: () => {
        cleanup();
        if (!res.writableEnded) res.end();
      },
    };
    const cleanup = () => {
      for (const t of timers) clearTimeout(t);
      unsubscribe();
      watches.delete(watch);
    };
    let columnsSent = false;
    const write = (type: string, object: unknown) => {
      if (res.writableEnded || res.destroyed) return;
      let out = object;
      // Watches asked for as Table get each object as a one-row Table, columns in the first only.
      if (tableInclude && type !== "ERROR" && type !== "BOOKMARK") {
        out = tableOf(def, [object as KubeObject], { resourceVersion: (object as KubeObject).metadata.resourceVersion ?? "", include: tableInclude, withColumns: !columnsSent });
        columnsSent = true;
      }
      res.write(`${JSON.stringify({ type, object: out })}\n`);
    };
    const bookmark = (annotations?: Record<string, string>) =>
      write("BOOKMARK", { kind: def.kind, apiVersion, metadata: { resourceVersion: String(store.resourceVersion), ...(annotations ? { annotations } : {}) } });
    const deliver = (e: StoreEvent) => {
      if (e.resource !== def.name) return;
      const now = matchesFilter(filter, e.object);
      if (e.type === "MODIFIED") {
        const before = e.oldObject ? matchesFilter(filter, e.oldObject) : false;
        if (now && before) write("MODIFIED", e.object);
        else if (now) write("ADDED", e.object);
        else if (before) write("DELETED", e.object);
      } else if (now) write(e.type, e.object);
    };

    if (since !== undefined) {
      const past = store.eventsSince(since);
      if (!past) {
        write("ERROR", expired(since, store.oldestResumableVersion));
        res.end();
        return;
      }
      for (const e of past) deliver(e);
    } else {
      for (const obj of store.listFiltered(def.name, filter).items) write("ADDED", obj);
      if (sendInitialEvents && bookmarks) bookmark({ "k8s.io/initial-events-end": "true" });
    }
    unsubscribe = store.subscribeShared(deliver);
    watches.add(watch);
    res.on("close", cleanup);
    const lifetimes = [timeoutSeconds > 0 ? timeoutSeconds * 1000 : 0, faults.get().watchLifetimeMs ?? 0].filter((ms) => ms > 0);
    if (lifetimes.length > 0) timers.push(setTimeout(() => watch.end(), Math.min(...lifetimes)));
    if (bookmarks) {
      const tick = () => {
        bookmark();
        timers.push(setTimeout(tick, bookmarkIntervalMs));
      };
      timers.push(setTimeout(tick, bookmarkIntervalMs));
    }
  };

  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e: unknown) => {
      logger?.error({ err: e }, "request handler failed");
      if (!res.headersSent) sendStatus(res, internalError("request handler failed").status);
      else res.destroy();
    });
  });

  await listen();
  const scheme = opts.tls ? "https" : "http";
  logger?.info({ url: `${scheme}://${host}:${port}` }, "kube API stand-in listening");

  return {
    region: opts.region,
    get url() {
      return `${scheme}://${host}:${port}`;
    },
    get port() {
      return port;
    },
    caFile,
    store,
    faults,
    async stop() {
      if (stopped) return;
      stopped = true;
      await closeListener();
      for (const w of [...watches]) w.end();
      logger?.info("kube API stand-in stopped");
    },
  };

  function requireJson(contentType: string | undefined): void {
    const t = mediaType(contentType);
    if (t !== "" && t !== "application/json" && t !== "*/*") throw unsupportedMediaType(t, ["application/json"]);
  }

  /** A create body: JSON, or protobuf for a Namespace (what kubectl create namespace may send). */
  function createBody(def: ResourceDef, contentType: string | undefined, rawBody: Buffer): unknown {
    const t = mediaType(contentType);
    if (t === PROTOBUF) {
      if (def.name !== "namespaces") throw unsupportedMediaType(t, ["application/json", "application/yaml"]);
      return decodeNamespace(rawBody);
    }
    if (t === "application/yaml") {
      try {
        return parseYaml(rawBody.toString("utf8")) as unknown;
      } catch (e) {
        throw badRequest(`error decoding YAML: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    requireJson(contentType);
    return parseJsonBody(rawBody);
  }

  function patchTypeOf(def: ResourceDef, contentType: string | undefined, subresource: string | undefined): PatchType | "apply" {
    const t = mediaType(contentType);
    const accepted = [JSON_PATCH, MERGE_PATCH, ...(def.strategicMerge ? [STRATEGIC_PATCH] : []), APPLY_PATCH];
    if (t === JSON_PATCH) return "json";
    if (t === MERGE_PATCH) return "merge";
    // Core types: strategic merge patches are handled as JSON merge patches (no list merge keys).
    if (t === STRATEGIC_PATCH && def.strategicMerge) return "merge";
    if (t === APPLY_PATCH && subresource !== "scale") return "apply";
    throw unsupportedMediaType(t, accepted);
  }
}

/** The fieldValidation parameter: Warn when absent, as the API server defaults it. */
function fieldValidationOf(q: URLSearchParams): FieldValidation {
  const v = q.get("fieldValidation");
  if (v === null || v === "" || v === "Warn") return "Warn";
  if (v === "Strict" || v === "Ignore") return v;
  throw badRequest(`fieldValidation: Invalid value: "${v}": must be one of Ignore, Warn, Strict`);
}

/** ValidateFieldManager: printable, at most 128 characters (apimachinery meta/v1/validation). */
function checkFieldManager(fieldManager: string | null, verb: string): void {
  if (!fieldManager || !["create", "update", "patch"].includes(verb)) return;
  if (fieldManager.length > 128) throw patchOptionsInvalid([{ field: "fieldManager", message: `Too long: may not be more than 128 bytes`, reason: "FieldValueTooLong" }]);
}

/** 422 on the request's options, as the API server names them (`PatchOptions.meta.k8s.io "" is invalid`). */
function patchOptionsInvalid(fields: Array<{ field: string; message: string; reason: string }>): KubeApiError {
  return invalid("PatchOptions", "meta.k8s.io", "", fields);
}

function includeObjectOf(q: URLSearchParams): IncludeObject {
  const v = q.get("includeObject");
  return v === "None" || v === "Object" ? v : "Metadata";
}

function verbOf(method: string, r: Route, q: URLSearchParams): string | undefined {
  const hasName = r.name !== undefined;
  switch (method) {
    case "GET":
      if (hasName) return r.watchPath || q.get("watch") === "true" || q.get("watch") === "1" ? "watch" : "get";
      return isWatch(q, r) ? "watch" : "list";
    case "POST":
      return hasName ? undefined : "create";
    case "PUT":
      return hasName ? "update" : undefined;
    case "PATCH":
      return hasName ? "patch" : undefined;
    case "DELETE":
      return r.subresource ? undefined : hasName ? "delete" : "deletecollection";
    default:
      return undefined;
  }
}

