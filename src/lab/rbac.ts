/**
 * The lab's Kubernetes identities and their rights: each region's API stand-in authenticates the
 * agent and the coordinators as the ServiceAccounts a deployment gives them and authorizes them
 * with deploy/kubernetes/member-rbac/role.yaml, its `set-by-overlay` names filled in the way a
 * region's overlay fills them (the member Clusters and monitoring Secrets of that region). A verb
 * the Role lacks is a 403 in the lab, exactly as on a real cluster.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { PgfedError } from "../errors.js";
import { packageRoot } from "../version.js";
import { RbacPolicy, serviceAccountGroups, serviceAccountUser, type TokenIdentity } from "./kube-api/index.js";

export const MEMBER_RBAC_FILE = "deploy/kubernetes/member-rbac/role.yaml";
export const PGFED_NAMESPACE = "pgfed";
const PLACEHOLDER = "set-by-overlay";

/** The repository's deploy/ file, under the package root (src/version.ts: sources and bundles alike). */
export function deployFile(rel: string = MEMBER_RBAC_FILE): string {
  const candidate = join(packageRoot(), rel);
  if (!existsSync(candidate)) throw new PgfedError("lab.no_deploy_rbac", `${candidate} was not found: the lab authorizes its agents and coordinators with it (an install without deploy/, such as the container image, cannot run the lab)`);
  return candidate;
}

export function readRbacDocuments(text: string, where: string): Record<string, unknown>[] {
  return parseAllDocuments(text).map((doc, i) => {
    if (doc.errors.length > 0) throw new PgfedError("lab.invalid_rbac", `${where} document ${i}: ${doc.errors.map((e) => e.message).join("; ")}`);
    const v: unknown = doc.toJS();
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new PgfedError("lab.invalid_rbac", `${where} document ${i}: not an object`);
    return v as Record<string, unknown>;
  });
}

export interface RegionRbacNames {
  /** The namespace of the region's members. */
  namespace: string;
  /** The member Cluster names of the region. */
  clusters: string[];
  /** Their postgres.secretRef names. */
  secrets: string[];
}

/**
 * What a region's overlay does to the member-rbac base: the namespace set, each `set-by-overlay`
 * replaced by the names of the rule's resource (a rule left with no names is dropped, never
 * widened to every object).
 */
export function overlayRbac(docs: readonly Record<string, unknown>[], names: RegionRbacNames): Record<string, unknown>[] {
  return docs.map((d) => {
    const metadata = { ...(d.metadata as Record<string, unknown> | undefined), namespace: names.namespace };
    if (d.kind !== "Role" || !Array.isArray(d.rules)) return { ...d, metadata };
    const rules = (d.rules as Record<string, unknown>[]).flatMap((r) => {
      const rn = r.resourceNames;
      if (!Array.isArray(rn) || !rn.includes(PLACEHOLDER)) return [r];
      const resources = Array.isArray(r.resources) ? r.resources : [];
      const filled = resources.includes("clusters") ? names.clusters : resources.includes("secrets") ? names.secrets : [];
      return filled.length > 0 ? [{ ...r, resourceNames: [...filled] }] : [];
    });
    return { ...d, metadata, rules };
  });
}

export interface RegionIdentities {
  rbac: RbacPolicy;
  tokens: Record<string, TokenIdentity>;
  agentToken: string;
  coordinatorToken: string;
}

/** The agent's and the coordinators' tokens in one region, authorized by the deploy/ Roles only. */
export function regionIdentities(names: RegionRbacNames, tokens: { agent: string; coordinator: string }, rbacText = readFileSync(deployFile(), "utf8")): RegionIdentities {
  const rbac = new RbacPolicy(overlayRbac(readRbacDocuments(rbacText, MEMBER_RBAC_FILE), names));
  const sa = (name: string): TokenIdentity => ({ name: serviceAccountUser(PGFED_NAMESPACE, name), groups: serviceAccountGroups(PGFED_NAMESPACE) });
  return {
    rbac,
    tokens: { [tokens.agent]: sa("pgfed-agent"), [tokens.coordinator]: sa("pgfed-coordinator") },
    agentToken: tokens.agent,
    coordinatorToken: tokens.coordinator,
  };
}
