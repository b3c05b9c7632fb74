/**
 * `pgfed run`: the long-running process of a deployment (deploy/kubernetes runs it with
 * `--roles agent --regions <region>` or `--roles coordinator`). It loads and checks the config,
 * connects to NATS (retrying while NATS is down), starts an agent per listed region and/or the
 * coordinator with its HTTP API and /metrics, and stops all of it on SIGINT/SIGTERM, bounded.
 */
import { randomBytes } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { agentMembersFromConfig, startAgent, type Agent } from "../agent/agent.js";
import { loadTokenFile, type TokenEntry } from "../api/auth.js";
import { startHealthListener } from "../api/health.js";
import { startApiServer, type ApiServer } from "../api/server.js";
import { busSecurity, connectBus, openLeases, type Bus, type LeaseStore } from "../bus/index.js";
import { loadConfig, type Config } from "../config.js";
import { startCoordinator, type Coordinator, type RegionClusterAccess } from "../coordinator/index.js";
import { errorMessage, PgfedError } from "../errors.js";
import type { ObjectRef } from "../kube/region.js";
import type { Cluster, MergePatch } from "../cnpg/index.js";
import { createLogger, type Logger } from "../log.js";
import { createRegistry, type Registry } from "../metrics.js";
import { CliExit, EXIT } from "./exit-codes.js";
import { renderRunbook } from "./runbook-document.js";
import { ROLES, type RunOptions, type RunRole } from "./run-command.js";

/** How long after the API serves the coordinator loads the Kubernetes client (coordinatorRegionClients). */
const KUBE_CLIENT_LOAD_DELAY_MS = 1_000;

/** host:port or [v6]:port, as --api-listen, api.listen and --metrics-listen take them. */
const HOST_PORT = /^[^:]+:\d+$|^\[[^\]]+\]:\d+$/;

/** Below the manifests' terminationGracePeriodSeconds (30 s). */
const STOP_BUDGET_MS = 25_000;

function parseList(value: string, what: string): string[] {
  const items = value
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (items.length === 0) throw new CliExit(EXIT.usage, `${what} must name at least one entry`);
  return [...new Set(items)];
}

function parseRoles(value: string): Set<RunRole> {
  const roles = parseList(value, "--roles");
  const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (bad.length > 0) throw new CliExit(EXIT.usage, `--roles: unknown role ${bad.map((r) => `"${r}"`).join(", ")} (roles: ${ROLES.join(", ")})`);
  return new Set(roles as RunRole[]);
}

async function readConfig(file: string): Promise<Config> {
  try {
    return await loadConfig(file);
  } catch (e) {
    if (e instanceof PgfedError && e.code === "config.unreadable") throw new CliExit(EXIT.refused, e.message);
    throw e;
  }
}

function agentRegions(config: Config, value: string | undefined): string[] {
  const known = config.regions.map((r) => r.name);
  if (value === undefined) return known;
  const regions = parseList(value, "--regions");
  const bad = regions.filter((r) => !known.includes(r));
  if (bad.length > 0) throw new CliExit(EXIT.refused, `--regions: unknown region ${bad.map((r) => `"${r}"`).join(", ")} (regions in the config: ${known.join(", ")})`);
  return regions;
}

/** A subject-safe coordinator id; the random part keeps two processes on one host apart. */
function coordinatorId(given: string | undefined): string {
  if (given !== undefined) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(given)) throw new CliExit(EXIT.usage, `--id: letters, digits, "-" and "_" only, at most 64, not "${given}"`);
    return given;
  }
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 55) || "pgfed";
  return `${host}-${randomBytes(3).toString("hex")}`;
}

/** The API URL other coordinators can reach: a wildcard listen address becomes this host's first external IPv4 (the pod IP). */
function advertisedUrl(apiUrl: string, listen: string, given: string | undefined): string {
  if (given) return given.replace(/\/+$/, "");
  const host = /^(.*):\d+$/.exec(listen)?.[1] ?? "";
  if (host !== "0.0.0.0" && host !== "::" && host !== "[::]") return apiUrl;
  const ip = Object.values(networkInterfaces())
    .flat()
    .find((i) => i !== undefined && i.family === "IPv4" && !i.internal)?.address;
  return ip ? apiUrl.replace("://127.0.0.1:", `://${ip}:`) : apiUrl;
}

async function readTokens(path: string): Promise<TokenEntry[]> {
  try {
    return await loadTokenFile(path);
  } catch (e) {
    throw new CliExit(EXIT.refused, `api.tokensFrom: ${errorMessage(e)}`);
  }
}

/**
 * The coordinator's own client per region: it reads (and if need be fences) a silent primary's
 * Cluster there before failing over. A region whose kubeconfig cannot be loaded is left out with a
 * warning; the coordinator then names it at start as one it cannot corroborate through.
 *
 * The Kubernetes client costs ~0.5 s to load, and the coordinator needs it only once a region has
 * been silent for a lease TTL: `load()` is called after the API serves, and a probe that comes
 * sooner waits for it.
 */
export function coordinatorRegionClients(config: Config, log: Logger, regionsKubeconfig: string | undefined): { access: Map<string, RegionClusterAccess>; load: () => Promise<void> } {
  const access = new Map<string, RegionClusterAccess>();
  const blind = (region: string, e: unknown) =>
    log.warn({ region }, `coordinator: cannot load the kubeconfig of region ${region} (${errorMessage(e)}); a silent primary there is judged by its lease alone`);
  let loaded: Promise<Map<string, RegionClusterAccess>> | undefined;
  const load = () =>
    (loaded ??= import("../kube/region.js").then(({ RegionClient }) => {
      const clients = new Map<string, RegionClusterAccess>();
      for (const r of config.regions) {
        // The agents of the kustomize layout use their pod's service account (no kubeconfig in the
        // shared config); the coordinator reaches every region, so it gets its own file, one context per region.
        const path = regionsKubeconfig ?? r.kubeconfig.path;
        const context = r.kubeconfig.context ?? (regionsKubeconfig ? r.name : undefined);
        if (!access.has(r.name)) continue;
        try {
          clients.set(r.name, new RegionClient({ region: r.name, ...(path ? { kubeconfigPath: path } : {}), ...(context ? { context } : {}), log }));
        } catch (e) {
          // From now on the corroborator finds no client for the region, as if it had none from the start.
          access.delete(r.name);
          blind(r.name, e);
        }
      }
      return clients;
    }));
  const client = async (region: string): Promise<RegionClusterAccess> => {
    const c = (await load()).get(region);
    if (!c) throw new PgfedError("coordinator.no_kubeconfig", `no Kubernetes client for region ${region}: its kubeconfig could not be loaded (see the warning at start)`);
    return c;
  };
  for (const r of config.regions) {
    // An unreadable kubeconfig file is known at once, without the client: that region has no access.
    const path = regionsKubeconfig ?? r.kubeconfig.path;
    if (path !== undefined) {
      try {
        accessSync(path, constants.R_OK);
      } catch (e) {
        blind(r.name, e);
        continue;
      }
    }
    access.set(r.name, {
      getCluster: async (ref: ObjectRef): Promise<Cluster> => (await client(r.name)).getCluster(ref),
      patchCluster: async (ref: ObjectRef, patch: MergePatch, doing?: string): Promise<Cluster> => (await client(r.name)).patchCluster(ref, patch, doing),
    });
  }
  return { access, load: async () => void (await load()) };
}

async function connectWithRetry(config: Config, name: string, log: Logger, registry: Registry, signal: AbortSignal, manageStream: boolean): Promise<{ bus: Bus; leases: LeaseStore | undefined }> {
  const servers = config.bus.servers.join(", ");
  let security: ReturnType<typeof busSecurity>;
  try {
    security = busSecurity(config.bus);
  } catch (e) {
    throw new CliExit(EXIT.refused, `bus.identityFile: ${errorMessage(e)}`);
  }
  if (!security.identity) log.warn("bus.identityFile is not set: connecting to NATS without an identity; a NATS server with authorization refuses it, and this process cannot sign commands (docs/operations.md, Security model)");
  let delayMs = 500;
  for (let attempt = 1; ; attempt++) {
    let bus: Bus | undefined;
    try {
      bus = await connectBus({ servers: config.bus.servers, name, log, metrics: registry, manageStream, stream: { replicas: config.bus.replicas }, ...security });
      // An agent may not create the KV buckets either: wait for a coordinator to have made them.
      const leases = manageStream ? undefined : await openLeases(bus);
      return { bus, leases };
    } catch (e) {
      await bus?.close().catch(() => undefined);
      if (signal.aborted) throw e;
      log.warn({ attempt }, `NATS at ${servers} is not reachable (${errorMessage(e)}); retrying in ${(delayMs / 1000).toFixed(1)} s`);
      await sleep(delayMs, undefined, { signal }).catch(() => undefined);
      if (signal.aborted) throw new PgfedError("run.stopped", `stopped while waiting for NATS at ${servers}`);
      delayMs = Math.min(delayMs * 2, 15_000);
    }
  }
}

/** Resolves at the first SIGINT/SIGTERM; a second one exits at once. */
function waitForSignal(onFirst: () => void): { signalled: Promise<NodeJS.Signals>; dispose: () => void } {
  let first: NodeJS.Signals | undefined;
  let resolve: (sig: NodeJS.Signals) => void = () => undefined;
  const signalled = new Promise<NodeJS.Signals>((r) => (resolve = r));
  const handler = (sig: NodeJS.Signals) => {
    if (first) process.exit(sig === "SIGINT" ? 130 : 143);
    first = sig;
    onFirst();
    resolve(sig);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return {
    signalled,
    dispose: () => {
      process.off("SIGINT", handler);
      process.off("SIGTERM", handler);
    },
  };
}

export async function runPgfed(opts: RunOptions): Promise<void> {
  const roles = parseRoles(opts.roles);
  const config = await readConfig(opts.config);
  const regions = roles.has("agent") ? agentRegions(config, opts.regions) : [];
  const id = coordinatorId(opts.id);
  const listen = opts.apiListen ?? config.api.listen;
  if (!HOST_PORT.test(listen)) throw new CliExit(EXIT.usage, `--api-listen must be host:port, not "${listen}"`);
  if (opts.metricsListen !== undefined && !HOST_PORT.test(opts.metricsListen)) throw new CliExit(EXIT.usage, `--metrics-listen must be host:port, not "${opts.metricsListen}"`);
  const tokens = roles.has("coordinator") && config.api.tokensFrom ? await readTokens(config.api.tokensFrom) : [];

  const log = createLogger({ level: process.env.PGFED_LOG_LEVEL ?? "info" });
  const t0 = Date.now();
  const members = config.federations.reduce((n, f) => n + f.members.length, 0);
  log.info(`loaded config ${opts.config}: ${config.federations.length} federation(s), ${members} member(s), ${config.regions.length} region(s); roles ${[...roles].join(", ")}`);
  if (roles.has("coordinator") && !config.api.tokensFrom) log.warn("api.tokensFrom is not set: the API refuses every /v1 call (401); see docs/api.md for the token file");

  const abort = new AbortController();
  const { signalled, dispose } = waitForSignal(() => abort.abort());
  const registry = createRegistry({ defaultMetrics: true });
  const stops: { what: string; stop: () => Promise<void> }[] = [];
  const stopAll = async (): Promise<void> => {
    const s0 = Date.now();
    const run = (async () => {
      for (const s of stops.reverse()) await s.stop().catch((e: unknown) => log.warn(`while stopping ${s.what}: ${errorMessage(e)}`));
    })();
    const finished = await Promise.race([run.then(() => true), sleep(STOP_BUDGET_MS).then(() => false)]);
    if (finished) log.info(`pgfed run stopped in ${Date.now() - s0} ms`);
    else log.warn(`pgfed run did not stop within ${STOP_BUDGET_MS} ms; exiting anyway`);
  };

  try {
    const busName = `pgfed-${roles.has("coordinator") ? `coordinator-${id}` : `agent-${regions.join("-")}`}`.slice(0, 100);
    // Alive before NATS answers: /healthz 200 and /readyz 503 on the API (or --metrics-listen) address
    // until the process serves, so that a NATS outage is not turned into a crash loop by the liveness probe.
    let agentsStarted = false;
    const probeListen = roles.has("coordinator") ? listen : opts.metricsListen;
    const probes = probeListen
      ? await startHealthListener({
          listen: probeListen,
          waitingFor: () => `NATS at ${config.bus.servers.join(", ")}`,
          ready: () => !roles.has("coordinator") && agentsStarted,
          registry,
          ...(roles.has("coordinator") && config.api.tls ? { tls: config.api.tls } : {}),
        })
      : undefined;
    let probesOpen = probes !== undefined;
    const closeProbes = async (): Promise<void> => {
      if (!probesOpen) return;
      probesOpen = false;
      await probes?.close();
    };
    stops.push({ what: "the probe listener", stop: closeProbes });
    if (probes) log.info(`probes at ${probes.url}/healthz and /readyz (not ready until ${roles.has("coordinator") ? "the API serves" : "the agents started"})`);
    // Port 0 (tests): the API takes over the probe listener's port.
    const apiListen = probes && /:0$/.test(listen) && roles.has("coordinator") ? listen.replace(/:0$/, `:${new URL(probes.url).port}`) : listen;
    const { bus, leases: agentLeases } = await connectWithRetry(config, busName, log, registry, abort.signal, roles.has("coordinator"));
    stops.push({ what: "the NATS connection", stop: () => bus.close() });
    log.info(`connected to NATS at ${config.bus.servers.join(", ")} as ${busName}${bus.identity ? ` (identity ${bus.identity.publicKey})` : ""}`);

    if (regions.length > 0) {
      const leases = agentLeases ?? (await openLeases(bus));
      for (const region of regions) {
        if (abort.signal.aborted) break;
        const cfg = config.regions.find((r) => r.name === region);
        const { RegionClient } = await import("../kube/region.js");
        const kube = new RegionClient({
          region,
          ...(cfg?.kubeconfig.path ? { kubeconfigPath: cfg.kubeconfig.path } : {}),
          ...(cfg?.kubeconfig.context ? { context: cfg.kubeconfig.context } : {}),
          log,
        });
        const agentMembers = agentMembersFromConfig(config, region);
        const agent: Agent = await startAgent({ agentId: region, region, kube, bus, leases, members: agentMembers, log, registry, coordinatorKeys: config.bus.coordinatorKeys });
        stops.push({ what: `the agent of ${region}`, stop: () => agent.stop() });
        const creds = cfg?.kubeconfig.path || cfg?.kubeconfig.context ? `kubeconfig ${cfg.kubeconfig.path ?? "(default)"} context ${cfg.kubeconfig.context ?? "(current)"}` : "default credentials (in-cluster or $KUBECONFIG)";
        log.info(`agent of region ${region} started: ${agentMembers.length} member(s), ${creds}`);
      }
    }

    let coordinator: Coordinator | undefined;
    let api: ApiServer | undefined;
    if (roles.has("coordinator") && !abort.signal.aborted) {
      const regionKube = coordinatorRegionClients(config, log, opts.regionsKubeconfig ?? (process.env.PGFED_REGIONS_KUBECONFIG || undefined));
      const c = await startCoordinator({ config, bus, log, id, registry, regionKube: regionKube.access });
      coordinator = c;
      stops.push({ what: `coordinator ${id}`, stop: () => c.stop() });
      log.info(`coordinator ${id} started; competing for the coordinator lease`);
      await closeProbes();
      const server = await startApiServer({ service: c, listen: apiListen, tokens, ...(config.api.tls ? { tls: config.api.tls } : {}), log, metricsRegistry: registry, renderRunbook });
      api = server;
      stops.push({ what: "the API", stop: () => server.close() });
      const advertised = advertisedUrl(server.url, listen, opts.advertiseUrl ?? process.env.PGFED_ADVERTISE_URL);
      await c.setApiUrl(advertised);
      log.info(`API serving ${server.url} (advertised to other coordinators as ${advertised}) with ${tokens.length} token(s), /metrics included`);
      // Once it leads (or follows), has loaded its federations and serves: the Kubernetes client for
      // corroboration. Loading it blocks the event loop for ~0.5 s, so not during the start itself;
      // a probe that comes sooner (a region silent for a lease TTL) waits for it.
      setTimeout(() => {
        regionKube.load().catch((e: unknown) => log.error(`coordinator: cannot load the Kubernetes client: ${errorMessage(e)}; silent primaries are judged by their leases alone`));
      }, KUBE_CLIENT_LOAD_DELAY_MS).unref();
    } else if (probes) {
      agentsStarted = !abort.signal.aborted;
      log.info(`metrics at ${probes.url}/metrics; /readyz ${agentsStarted ? "200" : "503"}`);
    }

    if (!abort.signal.aborted) {
      log.info(`pgfed run ready in ${Date.now() - t0} ms: ${[regions.length > 0 ? `agents for ${regions.join(", ")}` : "", coordinator ? `coordinator ${id}${api ? ` at ${api.url}` : ""}` : ""].filter((s) => s !== "").join("; ")}`);
    }
    const sig = await signalled;
    log.info(`${sig} received: stopping`);
  } catch (e) {
    if (abort.signal.aborted) log.info(`stopped while starting (${errorMessage(e)})`);
    else {
      await stopAll();
      dispose();
      throw e;
    }
  }
  await stopAll();
  dispose();
}
