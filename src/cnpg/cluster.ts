/**
 * The CNPG `Cluster` resource as pgfed sees it (CNPG.md, "The resource"): names, the phase and
 * condition strings CNPG writes, and zod schemas for the fields pgfed reads. Every object schema is
 * loose, so fields pgfed does not know survive a parse untouched (a read-modify-write must never
 * drop what CNPG or a person put there).
 */
import { z } from "zod";
import { PgfedError } from "../errors.js";

export const CNPG_GROUP = "postgresql.cnpg.io";
export const CNPG_VERSION = "v1";
export const CNPG_API_VERSION = "postgresql.cnpg.io/v1";
export const CNPG_KIND = "Cluster";
export const CNPG_PLURAL = "clusters";
export const FENCED_INSTANCES_ANNOTATION = "cnpg.io/fencedInstances";

/** `status.phase` values that matter to pgfed, exactly as CNPG writes them. */
export const PHASES = {
  healthy: "Cluster in healthy state",
  switchover: "Switchover in progress",
  failingOver: "Failing over",
  promoting: "Promoting to primary cluster",
  unrecoverable: "Cluster is unrecoverable and needs manual intervention",
  settingUpPrimary: "Setting up primary",
  creatingReplica: "Creating a new replica",
  waitingForInstances: "Waiting for the instances to become active",
} as const;
export type Phase = (typeof PHASES)[keyof typeof PHASES];

/** `status.phaseReason` when a replica refused the demotion token it was given (fatal, nothing promoted). */
export const PROMOTION_TOKEN_MISMATCH_REASON = "Promotion token content is not correct for current instance";

/** `status.phaseReason` the operator writes with phase `Promoting to primary cluster` (CNPG internal/controller/cluster_controller.go). */
export const REPLICA_PROMOTION_IN_PROGRESS_REASON = "Replica cluster promotion in progress";

/** `status.conditions[].type` values pgfed reads. */
export const CONDITIONS = {
  ready: "Ready",
  continuousArchiving: "ContinuousArchiving",
  replicaClusterSwitch: "ReplicaClusterSwitch",
  /** Demotion bookkeeping (CNPG pkg/reconciler/replicaclusterswitch/conditions): False = asked of the instance manager, True = done; removed at the end. */
  designatedPrimaryTransition: "ReplicaClusterDesignatedPrimaryTransition",
  /** True while the demotion's own fencing is in place; removed at the end (same file). */
  replicaClusterFencing: "ReplicaClusterFencing",
} as const;

const stringMap = z.record(z.string(), z.string());

export const metadataSchema = z.looseObject({
  name: z.string().min(1),
  namespace: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().int().optional(),
  labels: stringMap.optional(),
  annotations: stringMap.optional(),
  creationTimestamp: z.string().optional(),
});

export const replicaSpecSchema = z.looseObject({
  self: z.string().optional(),
  primary: z.string().optional(),
  // Required by CNPG's CRD: a replica stanza without a source never reaches the API.
  source: z.string(),
  enabled: z.boolean().optional(),
  promotionToken: z.string().optional(),
  minApplyDelay: z.string().optional(),
});

export const externalClusterSchema = z.looseObject({
  name: z.string().min(1),
  connectionParameters: stringMap.optional(),
  barmanObjectStore: z.looseObject({}).optional(),
  plugin: z.looseObject({}).optional(),
});

export const bootstrapSchema = z.looseObject({
  initdb: z.looseObject({}).optional(),
  // Recovery may come from a backup object instead of an external cluster, so source is optional.
  recovery: z.looseObject({ source: z.string().optional() }).optional(),
  pg_basebackup: z.looseObject({ source: z.string() }).optional(),
});

export const clusterSpecSchema = z.looseObject({
  instances: z.number().int().nonnegative().optional(),
  replica: replicaSpecSchema.optional(),
  externalClusters: z.array(externalClusterSchema).optional(),
  bootstrap: bootstrapSchema.optional(),
  postgresql: z.looseObject({ parameters: stringMap.optional() }).optional(),
  backup: z.looseObject({}).optional(),
  plugins: z.array(z.looseObject({ name: z.string() })).optional(),
});

export const conditionSchema = z.looseObject({
  type: z.string().min(1),
  status: z.enum(["True", "False", "Unknown"]),
  reason: z.string().optional(),
  message: z.string().optional(),
  lastTransitionTime: z.string().optional(),
});

export const clusterStatusSchema = z.looseObject({
  phase: z.string().optional(),
  phaseReason: z.string().optional(),
  currentPrimary: z.string().optional(),
  targetPrimary: z.string().optional(),
  timelineID: z.number().int().optional(),
  systemID: z.string().optional(),
  instances: z.number().int().optional(),
  readyInstances: z.number().int().optional(),
  conditions: z.array(conditionSchema).optional(),
  demotionToken: z.string().optional(),
  lastPromotionToken: z.string().optional(),
  switchReplicaClusterStatus: z.looseObject({ inProgress: z.boolean().optional() }).optional(),
  writeService: z.string().optional(),
});

export const clusterSchema = z.looseObject({
  // Items of a list response and watch events carry these; when present they must say Cluster.
  apiVersion: z.literal(CNPG_API_VERSION).optional(),
  kind: z.literal(CNPG_KIND).optional(),
  metadata: metadataSchema,
  spec: clusterSpecSchema,
  // A Cluster the operator has not reconciled yet has no status.
  status: clusterStatusSchema.optional(),
});

export type Cluster = z.infer<typeof clusterSchema>;
export type ClusterMetadata = z.infer<typeof metadataSchema>;
export type ClusterSpec = z.infer<typeof clusterSpecSchema>;
export type ReplicaSpec = z.infer<typeof replicaSpecSchema>;
export type ExternalCluster = z.infer<typeof externalClusterSchema>;
export type ClusterStatus = z.infer<typeof clusterStatusSchema>;
export type Condition = z.infer<typeof conditionSchema>;
export type ConditionStatus = Condition["status"];

export type SafeParseClusterResult = { ok: true; cluster: Cluster } | { ok: false; error: PgfedError };

/** Parses an object read from the Kubernetes API; throws `cnpg.invalid_cluster` naming each bad path. */
export function parseCluster(obj: unknown): Cluster {
  const result = safeParseCluster(obj);
  if (!result.ok) throw result.error;
  return result.cluster;
}

/** Like parseCluster, but returns the error instead of throwing (for watch loops that must not crash). */
export function safeParseCluster(obj: unknown): SafeParseClusterResult {
  const result = clusterSchema.safeParse(obj);
  if (result.success) return { ok: true, cluster: result.data };
  const problems = result.error.issues.map(describeIssue);
  const name = objectName(obj);
  const what = name === undefined ? "CNPG Cluster" : `CNPG Cluster ${name}`;
  return {
    ok: false,
    error: new PgfedError("cnpg.invalid_cluster", `invalid ${what}: ${problems.join("; ")}`, { cluster: name, problems }),
  };
}

/** "spec.replica.primary: expected string, received number" — zod's text without its generic prefix. */
function describeIssue(issue: z.core.$ZodIssue): string {
  const message = issue.message
    .replace(/^Invalid (input|option|value): /, "")
    .replace(/^expected (.+), received undefined$/, "required (expected $1)");
  return `${formatPath(issue.path)}: ${message}`;
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "(root)";
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out === "" ? String(segment) : `.${String(segment)}`;
  }
  return out;
}

/** `namespace/name` of a rejected object when it has one, so the error says which member is wrong. */
function objectName(obj: unknown): string | undefined {
  if (typeof obj !== "object" || obj === null) return undefined;
  const metadata: unknown = (obj as { metadata?: unknown }).metadata;
  if (typeof metadata !== "object" || metadata === null) return undefined;
  const { name, namespace } = metadata as { name?: unknown; namespace?: unknown };
  if (typeof name !== "string") return undefined;
  return typeof namespace === "string" ? `${namespace}/${name}` : name;
}
