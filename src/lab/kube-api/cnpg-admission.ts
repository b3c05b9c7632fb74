/**
 * The validating admission of CNPG's webhook `vcluster.cnpg.io` (internal/webhook/v1/
 * cluster_webhook.go in CNPG) for the fields of a distributed topology: spec.replica,
 * spec.externalClusters and spec.bootstrap. The default hook of the lab's API server: a refusal
 * is the webhook's 422 Invalid Status, its causes the webhook's field errors with CNPG's own
 * field paths (CNPG names the replica stanza by its Go field, `spec.replicaCluster.*`, and the
 * source `spec.replicaCluster.primaryServerName`), its message prefixed as the API server does.
 *
 * Simplified: only these rules are checked (not storage, images, Postgres parameters, …), and
 * CNPG's defaulting webhook is not run; where a rule depends on it (a missing bootstrap is
 * defaulted to initdb before validation), the rule sees the defaulted value.
 */
import { clusterRole, safeParseCluster, tryDecodeToken, type Cluster, type ExternalCluster } from "../../cnpg/index.js";
import { isRecord, type AdmissionCause, type AdmissionDenial, type AdmissionHook, type AdmissionOperation, type KubeObject } from "./types.js";

/** The name CNPG registers its validating webhook under (its kubebuilder marker). */
export const CNPG_VALIDATING_WEBHOOK = "vcluster.cnpg.io";

/** Go's rendering of a bad value in field.Invalid: strings quoted, numbers and booleans bare. */
function goValue(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  return JSON.stringify(v) ?? "null";
}

function fieldInvalid(field: string, value: unknown, detail: string): AdmissionCause {
  return { field, reason: "FieldValueInvalid", message: `Invalid value: ${goValue(value)}: ${detail}` };
}

function fieldRequired(field: string, detail: string): AdmissionCause {
  return { field, reason: "FieldValueRequired", message: `Required value: ${detail}` };
}

function fieldForbidden(field: string, detail: string): AdmissionCause {
  return { field, reason: "FieldValueForbidden", message: `Forbidden: ${detail}` };
}

/** Cluster.ExternalCluster (api/v1/cluster_funcs.go): the entry of that name. */
function externalCluster(c: Cluster, name: string): ExternalCluster | undefined {
  return (c.spec.externalClusters ?? []).find((e) => e.name === name);
}

/** The connection methods CNPG accepts for an external cluster: connectionParameters, barmanObjectStore, plugin. */
function hasConnectionMethod(e: ExternalCluster | undefined): boolean {
  return e !== undefined && (e.connectionParameters != null || e.barmanObjectStore != null || e.plugin != null);
}

const isReplica = (c: Cluster): boolean => clusterRole(c) === "replica";

/** The bootstrap CNPG validates: its defaulter makes a missing one initdb (api/v1/cluster_defaults.go). */
function bootstrapOf(c: Cluster): NonNullable<Cluster["spec"]["bootstrap"]> {
  const b = c.spec.bootstrap ?? {};
  return b.initdb === undefined && b.recovery === undefined && b.pg_basebackup === undefined ? { ...b, initdb: {} } : b;
}

/** validateBootstrapMethod: at most one of initdb, recovery, pg_basebackup. */
export function validateBootstrapMethod(c: Cluster): AdmissionCause[] {
  const b = c.spec.bootstrap;
  if (!b) return [];
  const methods = [b.initdb, b.recovery, b.pg_basebackup].filter((m) => m !== undefined).length;
  return methods > 1 ? [fieldForbidden("spec.bootstrap", "Only one bootstrap method can be specified at a time")] : [];
}

/** validateBootstrapPgBaseBackupSource: pg_basebackup clones an external cluster that is listed. */
export function validateBootstrapPgBaseBackupSource(c: Cluster): AdmissionCause[] {
  const source = c.spec.bootstrap?.pg_basebackup?.source;
  if (source === undefined || externalCluster(c, source)) return [];
  return [fieldInvalid("spec.bootstrap.pg_basebackup.source", source, `External cluster ${source} not found`)];
}

/** validateBootstrapRecoverySource: a recovery source (when set) is listed and can be read from. */
export function validateBootstrapRecoverySource(c: Cluster): AdmissionCause[] {
  const source = c.spec.bootstrap?.recovery?.source;
  if (source === undefined || source === "") return [];
  const entry = externalCluster(c, source);
  const out: AdmissionCause[] = [];
  if (!entry) out.push(fieldInvalid("spec.bootstrap.recovery.source", source, `External cluster ${source} not found`));
  // CNPG checks the (zero-valued, when missing) entry too, so a missing source gets both errors.
  if (!hasConnectionMethod(entry)) {
    out.push(fieldInvalid("spec.bootstrap.recovery.source", source, `External cluster ${source} cannot be used for recovery: missing connection parameters, Barman, or CNPG-i configuration`));
  }
  return out;
}

/** isUnsafePathComponent: names joined into file paths by the instance manager. */
function unsafePathComponent(v: string): boolean {
  return v === "." || v === ".." || /[/\\]/.test(v);
}

const PATH_COMPONENT = "cannot contain a path separator or a '..' component";

/** validateExternalClusters / validateExternalCluster: a connection method each, safe names, no duplicates. */
export function validateExternalClusters(c: Cluster): AdmissionCause[] {
  const entries = c.spec.externalClusters ?? [];
  const out: AdmissionCause[] = [];
  entries.forEach((e, i) => {
    const path = `spec.externalClusters[${i}]`;
    if (!hasConnectionMethod(e)) out.push(fieldRequired(path, "one of connectionParameters, plugin and barmanObjectStore is required"));
    if (unsafePathComponent(e.name)) out.push(fieldInvalid(`${path}.name`, e.name, PATH_COMPONENT));
    for (const sel of ["sslCert", "sslKey", "sslRootCert"] as const) {
      const ref = e[sel];
      if (!isRecord(ref)) continue;
      for (const part of ["name", "key"] as const) {
        const v = ref[part];
        if (typeof v === "string" && unsafePathComponent(v)) out.push(fieldInvalid(`${path}.${sel}.${part}`, v, PATH_COMPONENT));
      }
    }
  });
  if (new Set(entries.map((e) => e.name)).size !== entries.length) {
    out.push(fieldInvalid("spec.externalClusters", entries.map((e) => e.name), "the list of external clusters contains duplicate values"));
  }
  return out;
}

/**
 * validateReplicaMode and validateReplicaClusterExternalClusters: `enabled` excludes `primary`;
 * a replica cluster is created from pg_basebackup or recovery only; source, and self and
 * primary when set, are listed external clusters.
 */
export function validateReplicaMode(c: Cluster, op: AdmissionOperation): AdmissionCause[] {
  const replica = c.spec.replica;
  if (!replica) return [];
  const out: AdmissionCause[] = [];
  const primary = replica.primary ?? "";
  if (replica.enabled !== undefined && primary !== "") {
    out.push(fieldForbidden("spec.replicaCluster.enabled", "replica mode enabled is not compatible with the primary field"));
  }
  // CNPG applies this on creation only (an object without resourceVersion).
  const b = bootstrapOf(c);
  if (isReplica(c) && op === "CREATE" && b.pg_basebackup === undefined && b.recovery === undefined) {
    out.push(fieldInvalid("spec.replicaCluster", primary, "replica mode bootstrap is compatible only with pg_basebackup or recovery"));
  }
  if (!externalCluster(c, replica.source)) out.push(fieldInvalid("spec.replicaCluster.primaryServerName", replica.source, `External cluster ${replica.source} not found`));
  if (replica.self && !externalCluster(c, replica.self)) out.push(fieldInvalid("spec.replicaCluster.self", replica.self, `External cluster ${replica.self} not found`));
  if (primary !== "" && !externalCluster(c, primary)) out.push(fieldInvalid("spec.replicaCluster.primary", primary, `External cluster ${primary} not found`));
  return out;
}

/** validatePromotionToken: only on a primary, never with minApplyDelay, and it must decode. */
export function validatePromotionToken(c: Cluster): AdmissionCause[] {
  const token = c.spec.replica?.promotionToken ?? "";
  if (token === "") return [];
  if (c.spec.replica?.minApplyDelay !== undefined) return [fieldInvalid("spec.replicaCluster.minApplyDelay", token, "minApplyDelay cannot be applied with a promotion token")];
  if (isReplica(c)) return [fieldInvalid("spec.replicaCluster.token", token, "promotionToken is only allowed for primary clusters")];
  const decoded = tryDecodeToken(token);
  return decoded.ok ? [] : [fieldInvalid("spec.replicaCluster.token", token, `Invalid promotionToken format: ${decoded.error.message}`)];
}

/** `status.switchReplicaClusterStatus.inProgress` of the object as sent (its status need not parse). */
function switchInProgressOf(obj: KubeObject): boolean {
  const status = obj.status;
  return isRecord(status) && isRecord(status.switchReplicaClusterStatus) && status.switchReplicaClusterStatus.inProgress === true;
}

/** validateReplicaClusterChange: the role (IsReplica) may not flip while a switch is in progress. */
export function validateReplicaClusterChange(next: Cluster, old: Cluster, nextSwitchInProgress: boolean): AdmissionCause[] {
  if (isReplica(next) === isReplica(old) || !nextSwitchInProgress) return [];
  return [fieldForbidden("spec.replica.enabled", "cannot modify the field while there is an ongoing operation to enable the replica cluster")];
}

/** The shape pgfed's parser needs, as field errors (the CRD schema refuses these first over HTTP). */
function parseCauses(obj: KubeObject): { cluster?: Cluster; causes: AdmissionCause[] } {
  const parsed = safeParseCluster(obj);
  if (parsed.ok) return { cluster: parsed.cluster, causes: [] };
  const problems = parsed.error.details.problems;
  const list = Array.isArray(problems) ? problems.filter((p): p is string => typeof p === "string") : [parsed.error.message];
  return {
    causes: list.map((p) => {
      const i = p.indexOf(": ");
      return i > 0 ? { field: p.slice(0, i), message: `Invalid value: ${p.slice(i + 2)}` } : { field: "spec", message: p };
    }),
  };
}

/** The webhook's field errors for one write (ClusterCustomValidator.validate + validateClusterChanges). */
export function cnpgValidate(op: AdmissionOperation, newObj: KubeObject, oldObj?: KubeObject): AdmissionCause[] {
  // Status is the operator's (written through /status): a write of the spec is judged on the spec.
  const next = parseCauses({ ...newObj, status: undefined });
  if (!next.cluster) return next.causes;
  const c = next.cluster;
  const causes = [
    ...validateBootstrapMethod(c),
    ...validateBootstrapPgBaseBackupSource(c),
    ...validateBootstrapRecoverySource(c),
    ...validateExternalClusters(c),
    ...validateReplicaMode(c, op),
    ...validatePromotionToken(c),
  ];
  if (op === "UPDATE" && oldObj) {
    const old = safeParseCluster({ ...oldObj, status: undefined });
    if (old.ok) causes.push(...validateReplicaClusterChange(c, old.cluster, switchInProgressOf(newObj)));
  }
  return causes;
}

/**
 * The default admission hook: CNPG's webhook for `clusters`, nothing for other resources. The
 * denial names the kind `Cluster.postgresql.cnpg.io` on creation and, as CNPG's ValidateUpdate
 * does, `Cluster.cluster.cnpg.io` on updates.
 */
export const cnpgAdmission: AdmissionHook = (op, resource, newObj, oldObj): AdmissionDenial => {
  const causes = resource === "clusters" ? cnpgValidate(op, newObj, oldObj) : [];
  return { webhook: CNPG_VALIDATING_WEBHOOK, group: op === "UPDATE" ? "cluster.cnpg.io" : "postgresql.cnpg.io", causes };
};
