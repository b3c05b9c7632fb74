/**
 * The validating admission CNPG's webhook applies to `Cluster` writes in a distributed topology
 * (CNPG.md), as the default hook of the lab's API server. Refusals name the field, as the real
 * webhook's `field.Invalid` errors do; nothing is stored when any rule fails.
 *
 * Simplified: only the replica-topology rules pgfed can trip are checked (plus the shape that
 * CNPG's CRD schema enforces for the fields read here); the rest of CNPG's validation (storage,
 * bootstrap methods, Postgres parameters, …) is not.
 */
import {
  designatedPrimary,
  safeParseCluster,
  selfName,
  specPromotionToken,
  switchInProgress,
  tryDecodeToken,
  type Cluster,
} from "../../cnpg/index.js";
import { isRecord, type AdmissionCause, type AdmissionHook, type KubeObject } from "./types.js";

/** The CRD schema's refusals, as "path: problem" fields (the API server would answer 422 too). */
function schemaCauses(obj: KubeObject): { cluster?: Cluster; causes: AdmissionCause[] } {
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

function listedIn(c: Cluster, name: string): boolean {
  return (c.spec.externalClusters ?? []).some((e) => e.name === name);
}

/** Rules on one Cluster object, independent of its previous state. */
export function validateReplicaTopology(c: Cluster): AdmissionCause[] {
  const replica = c.spec.replica;
  if (replica === undefined) return [];
  const causes: AdmissionCause[] = [];
  const primary = designatedPrimary(c);
  const self = selfName(c);

  if (replica.enabled !== undefined && primary !== undefined) {
    causes.push({ field: "spec.replica.enabled", message: `Invalid value: ${String(replica.enabled)}: replica.enabled cannot be used together with replica.primary` });
  }
  if (!listedIn(c, replica.source)) {
    causes.push({ field: "spec.replica.source", message: `Invalid value: "${replica.source}": external cluster "${replica.source}" not found in spec.externalClusters` });
  }
  if (primary !== undefined || (replica.self !== undefined && replica.self !== "")) {
    if (!listedIn(c, self)) {
      causes.push({ field: "spec.replica.self", message: `Invalid value: "${self}": self field "${self}" needs to be listed in spec.externalClusters` });
    }
  }
  if (primary !== undefined && !listedIn(c, primary)) {
    causes.push({ field: "spec.replica.primary", message: `Invalid value: "${primary}": primary field "${primary}" needs to be listed in spec.externalClusters` });
  }

  const token = specPromotionToken(c);
  if (token !== undefined) {
    if (primary !== self) {
      causes.push({ field: "spec.replica.promotionToken", message: "Invalid value: promotionToken is only allowed when the cluster is (becoming) the primary: replica.primary must equal replica.self" });
    }
    if (replica.minApplyDelay !== undefined && replica.minApplyDelay !== "") {
      causes.push({ field: "spec.replica.minApplyDelay", message: `Invalid value: "${replica.minApplyDelay}": minApplyDelay cannot be used together with promotionToken` });
    }
    const decoded = tryDecodeToken(token);
    if (!decoded.ok) causes.push({ field: "spec.replica.promotionToken", message: `Invalid value: invalid promotionToken format: ${decoded.error.message}` });
  }
  return causes;
}

/** A role change (spec.replica.primary) while CNPG is still switching the replica cluster. */
export function validateRoleChange(next: Cluster, old: Cluster, oldSwitchInProgress: boolean = switchInProgress(old)): AdmissionCause[] {
  if (designatedPrimary(next) === designatedPrimary(old) || !oldSwitchInProgress) return [];
  return [
    {
      field: "spec.replica.primary",
      message: `Invalid value: "${designatedPrimary(next) ?? ""}": cannot change the primary while a replica cluster switch is in progress (status.switchReplicaClusterStatus.inProgress is true)`,
    },
  ];
}

/** The default admission hook: CNPG's rules for `clusters`, nothing for other resources. */
export const cnpgAdmission: AdmissionHook = (op, resource, newObj, oldObj) => {
  if (resource !== "clusters") return [];
  // Status is the operator's (written through /status): a write of the spec is judged on the spec.
  const next = schemaCauses({ ...newObj, status: undefined });
  if (!next.cluster) return next.causes;
  const causes = validateReplicaTopology(next.cluster);
  if (op === "UPDATE" && oldObj) {
    const full = safeParseCluster(oldObj);
    const old = full.ok ? full : safeParseCluster({ ...oldObj, status: undefined });
    if (old.ok) causes.push(...validateRoleChange(next.cluster, old.cluster, full.ok ? switchInProgress(full.cluster) : plainSwitchInProgress(oldObj)));
  }
  return causes;
};

/** `status.switchReplicaClusterStatus.inProgress` of an object whose status does not parse. */
function plainSwitchInProgress(obj: KubeObject): boolean {
  const status = obj.status;
  if (!isRecord(status) || !isRecord(status.switchReplicaClusterStatus)) return false;
  return status.switchReplicaClusterStatus.inProgress === true;
}
