/**
 * pgfed's configuration: YAML as in DESIGN.md, parsed with zod at the edge. Every error names its
 * path (`federations[0].members[1].region: unknown region "eu-wst"`), and a config with any error
 * is refused whole: nothing starts on a half-valid config.
 */
import { readFile } from "node:fs/promises";
import { parseDocument } from "yaml";
import { z } from "zod";
import { defaultTimeouts } from "../machines/index.js";
import { parseDurationMs } from "./duration.js";
import { ConfigError, PgfedError, type ConfigProblem } from "./errors.js";

export { ConfigError, type ConfigProblem };

/** zod schema for a duration given as text ("30s") or as a number of milliseconds. */
export const durationMs = z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
  if (typeof v === "number") return v;
  try {
    return parseDurationMs(v);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

/** Names that end up in NATS subjects, KV keys and Kubernetes names: DNS-label-like. */
const name = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be lower-case letters, digits and '-', starting and ending with a letter or digit")
  .max(63);

const secretSource = z.union([
  z.strictObject({ env: z.string().min(1) }),
  z.strictObject({ file: z.string().min(1) }),
  z.strictObject({ value: z.string() }),
]);

const postgresConn = z.strictObject({
  /** Kubernetes secret (in the member's namespace) with `username` and `password` keys, as CNPG makes them. */
  secretRef: z.string().min(1).optional(),
  /** Direct connection (the lab, or a monitoring endpoint reachable from the agent). */
  host: z.string().min(1).optional(),
  port: z.number().int().min(1).max(65535).optional(),
  user: z.string().min(1).optional(),
  database: z.string().min(1).default("postgres"),
  password: secretSource.optional(),
  sslmode: z.enum(["disable", "prefer", "require", "verify-ca", "verify-full"]).default("prefer"),
  sslRootCert: z.string().optional(),
});

const member = z.strictObject({
  name,
  region: name,
  namespace: name,
  cluster: name,
  postgres: postgresConn.default({ database: "postgres", sslmode: "prefer" }),
});

const fraction = z.number().gt(0).lt(1);

const federation = z.strictObject({
  name,
  rpo: z
    .strictObject({
      budget: durationMs.default(30_000),
      warnAt: fraction.default(0.5),
      /** Un-archived WAL older than this triggers pg_switch_wal(); default one third of the budget. */
      walSwitchAfter: durationMs.optional(),
    })
    .default({ budget: 30_000, warnAt: 0.5 }),
  failover: z
    .strictObject({
      mode: z.enum(["automatic", "manual"]).default("manual"),
      leaseTtl: durationMs.default(10_000),
      clockSkewMargin: durationMs.default(2_000),
    })
    .default({ mode: "manual", leaseTtl: 10_000, clockSkewMargin: 2_000 }),
  // The machine's timeouts are the defaults: one clock per step (machines/federation-timeouts.ts).
  switchover: z
    .strictObject({
      tokenTimeout: durationMs.default(defaultTimeouts.tokenMs),
      promoteTimeout: durationMs.default(defaultTimeouts.promoteMs),
    })
    .default({ tokenTimeout: defaultTimeouts.tokenMs, promoteTimeout: defaultTimeouts.promoteMs }),
  sampleInterval: durationMs.default(1_000),
  members: z.array(member).min(2, "a federation needs at least two members"),
});

const region = z.strictObject({
  name,
  kubeconfig: z
    .strictObject({
      path: z.string().min(1).optional(),
      context: z.string().min(1).optional(),
    })
    .default({}),
});

const alertTargets = z.strictObject({
  alertmanager: z.strictObject({ url: z.url() }).optional(),
  pagerduty: z.strictObject({ routingKey: secretSource, url: z.url().optional() }).optional(),
  webhook: z.strictObject({ url: z.url(), headers: z.record(z.string(), z.string()).optional() }).optional(),
  /**
   * Absolute URL of the published docs/alerts.md: the `runbook_url` of the alerts the coordinator
   * pushes is this plus `#<alert name>` (default: the relative "docs/alerts.md", which only works
   * inside the repository). Use the same base as deploy/prometheus/runbook-base-url.
   */
  runbookBaseUrl: z.url({ protocol: /^https?$/ }).optional(),
});

const configSchema = z.strictObject({
  federations: z.array(federation).min(1, "at least one federation is required"),
  regions: z.array(region).min(1, "at least one region is required"),
  // Security model: docs/operations.md ("Security model") and src/bus/identity.ts.
  bus: z.strictObject({
    servers: z.array(z.string().min(1)).min(1),
    /** CA of the NATS servers' certificates (and a client certificate if the servers require one). */
    tls: z.strictObject({ caFile: z.string().min(1), certFile: z.string().min(1).optional(), keyFile: z.string().min(1).optional() }).optional(),
    /** This process's nkey user seed file; PGFED_NATS_IDENTITY_FILE overrides it (each pod mounts its own Secret). */
    identityFile: z.string().min(1).optional(),
    /** Public nkeys of the coordinators whose signed commands agents execute; empty: commands are not checked. */
    /** Replicas of the JetStream stream and KV buckets: 3 on a NATS cluster across three sites (docs/operations.md, NATS topology). */
    replicas: z.number().int().min(1).max(5).default(1),
    coordinatorKeys: z.array(z.string().regex(/^U[A-Z2-7]{55}$/, 'not a public user nkey ("U" and 55 characters of A-Z, 2-7)')).default([]),
  }),
  api: z
    .strictObject({
      listen: z.string().regex(/^[^:]+:\d+$/, "must be host:port").default("127.0.0.1:8080"),
      tokensFrom: z.string().optional(),
      tls: z.strictObject({ cert: z.string(), key: z.string(), clientCa: z.string().optional() }).optional(),
    })
    .default({ listen: "127.0.0.1:8080" }),
  alerts: alertTargets.default({}),
});

export type Config = z.infer<typeof configSchema>;
export type FederationConfig = Config["federations"][number];
export type MemberConfig = FederationConfig["members"][number];

/** `["federations", 0, "members", 1, "region"]` → `federations[0].members[1].region`. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else out += out === "" ? String(p) : `.${String(p)}`;
  }
  return out === "" ? "(root)" : out;
}

/** Checks across entries that a schema cannot express. */
function crossCheck(cfg: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const tls = cfg.bus.tls;
  if (tls && (tls.certFile === undefined) !== (tls.keyFile === undefined)) problems.push({ path: "bus.tls", message: "certFile and keyFile go together (a client certificate needs its key)" });
  const regionNames = new Set<string>();
  cfg.regions.forEach((r, i) => {
    if (regionNames.has(r.name)) problems.push({ path: `regions[${i}].name`, message: `duplicate region "${r.name}"` });
    regionNames.add(r.name);
  });
  const fedNames = new Set<string>();
  // A Cluster object (region/namespace/cluster) can belong to one federation only.
  const clusterOwner = new Map<string, string>();
  cfg.federations.forEach((f, fi) => {
    if (fedNames.has(f.name)) problems.push({ path: `federations[${fi}].name`, message: `duplicate federation "${f.name}"` });
    fedNames.add(f.name);
    const memberNames = new Set<string>();
    f.members.forEach((m, mi) => {
      const at = `federations[${fi}].members[${mi}]`;
      if (!regionNames.has(m.region)) {
        const known = [...regionNames].map((n) => `"${n}"`).join(", ");
        problems.push({ path: `${at}.region`, message: `unknown region "${m.region}" (known: ${known})` });
      }
      if (memberNames.has(m.name)) problems.push({ path: `${at}.name`, message: `duplicate member "${m.name}" in federation "${f.name}"` });
      memberNames.add(m.name);
      const key = `${m.region}/${m.namespace}/${m.cluster}`;
      const owner = clusterOwner.get(key);
      if (owner !== undefined) problems.push({ path: `${at}.cluster`, message: `cluster ${key} is already a member of ${owner}` });
      else clusterOwner.set(key, `federation "${f.name}"`);
      if (m.postgres.secretRef === undefined && m.postgres.host === undefined)
        problems.push({ path: `${at}.postgres`, message: "needs secretRef (Kubernetes secret) or host (direct connection)" });
    });
    if (f.rpo.walSwitchAfter !== undefined && f.rpo.walSwitchAfter >= f.rpo.budget)
      problems.push({ path: `federations[${fi}].rpo.walSwitchAfter`, message: "must be shorter than the budget" });
  });
  return problems;
}


/** Parses an already-loaded value (from YAML or JSON); throws ConfigError listing every problem. */
export function parseConfig(raw: unknown, source = "(inline)"): Config {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.map((i) => ({ path: formatPath(i.path), message: i.message })),
    );
  }
  const problems = crossCheck(result.data);
  if (problems.length > 0) throw new ConfigError(source, problems);
  return result.data;
}

export function parseConfigText(text: string, source = "(inline)"): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({ path: e.linePos ? `line ${e.linePos[0].line}` : "(yaml)", message: e.message.split("\n")[0] ?? e.message })),
    );
  }
  return parseConfig(doc.toJS(), source);
}

export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new PgfedError("config.unreadable", `cannot read config ${file}: ${(e as Error).message}`);
  }
  return parseConfigText(text, file);
}

/** Default WAL-switch threshold: one third of the RPO budget (DESIGN.md, enforcement). */
export function walSwitchAfterMs(f: FederationConfig): number {
  return f.rpo.walSwitchAfter ?? Math.floor(f.rpo.budget / 3);
}
