/**
 * A small RBAC authorizer: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (as
 * `kubectl kustomize` renders them from deploy/) decide each request of an identity that has no
 * `allow` table of its own. Rules match by apiGroups, resources (`plural`, `plural/sub`, `*`,
 * `*\/sub`), verbs and resourceNames, as the real evaluation does
 * (pkg/apis/rbac/v1/evaluation_helpers.go in kubernetes/kubernetes): a rule with resourceNames
 * never matches a request without a name (create, list, watch of a collection), which is why
 * `create` cannot be restricted by name on a real cluster either.
 * Subjects: ServiceAccount (user `system:serviceaccount:<ns>:<name>`), User and Group.
 * Left out: aggregated ClusterRoles, nonResourceURLs, impersonation.
 */
import { isRecord } from "./types.js";

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

export interface Subject {
  kind: "ServiceAccount" | "User" | "Group";
  name: string;
  namespace?: string;
}

/** What an authorizer sees of one request (the real server's authorizer.Attributes). */
export interface RequestAttributes {
  user: string;
  groups: readonly string[];
  verb: string;
  apiGroup: string;
  resource: string;
  subresource?: string;
  /** Absent for cluster-scoped requests. */
  namespace?: string;
  /** Absent for create and for collection requests (list, watch, deletecollection). */
  name?: string;
}

interface RoleDef {
  kind: "Role" | "ClusterRole";
  name: string;
  namespace?: string;
  rules: PolicyRule[];
}

interface BindingDef {
  kind: "RoleBinding" | "ClusterRoleBinding";
  name: string;
  namespace?: string;
  roleRef: { kind: "Role" | "ClusterRole"; name: string };
  subjects: Subject[];
}

export class RbacError extends Error {}

/** The user name Kubernetes gives a ServiceAccount's token. */
export function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

/** The groups a ServiceAccount's token carries besides system:authenticated. */
export function serviceAccountGroups(namespace: string): string[] {
  return ["system:serviceaccounts", `system:serviceaccounts:${namespace}`, "system:authenticated"];
}

function strings(v: unknown, where: string, required: boolean): string[] | undefined {
  if (v === undefined || v === null) {
    if (required) throw new RbacError(`${where}: required`);
    return undefined;
  }
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new RbacError(`${where}: must be a list of strings`);
  return v;
}

function parseRule(r: unknown, where: string): PolicyRule {
  if (!isRecord(r)) throw new RbacError(`${where}: must be an object`);
  if (r.nonResourceURLs !== undefined) throw new RbacError(`${where}.nonResourceURLs: not supported by the lab's API server`);
  const names = strings(r.resourceNames, `${where}.resourceNames`, false);
  return {
    apiGroups: strings(r.apiGroups, `${where}.apiGroups`, true) ?? [],
    resources: strings(r.resources, `${where}.resources`, true) ?? [],
    verbs: strings(r.verbs, `${where}.verbs`, true) ?? [],
    ...(names && names.length > 0 ? { resourceNames: names } : {}),
  };
}

/** The RBAC objects among `objects` (others are ignored); a malformed RBAC object is an error naming it. */
export class RbacPolicy {
  private readonly roles: RoleDef[] = [];
  private readonly bindings: BindingDef[] = [];

  constructor(objects: readonly unknown[]) {
    for (const o of objects) {
      if (!isRecord(o) || o.apiVersion !== "rbac.authorization.k8s.io/v1") continue;
      const kind = o.kind;
      const meta = isRecord(o.metadata) ? o.metadata : {};
      const name = typeof meta.name === "string" ? meta.name : "";
      const namespace = typeof meta.namespace === "string" && meta.namespace !== "" ? meta.namespace : undefined;
      const where = `${String(kind)} ${namespace ? `${namespace}/` : ""}${name}`;
      if (name === "") throw new RbacError(`${where}: metadata.name is required`);
      if (kind === "Role" || kind === "ClusterRole") {
        if (kind === "Role" && !namespace) throw new RbacError(`${where}: a Role needs metadata.namespace`);
        const rules = Array.isArray(o.rules) ? o.rules.map((r, i) => parseRule(r, `${where} rules[${i}]`)) : [];
        this.roles.push({ kind, name, ...(kind === "Role" && namespace ? { namespace } : {}), rules });
      } else if (kind === "RoleBinding" || kind === "ClusterRoleBinding") {
        if (kind === "RoleBinding" && !namespace) throw new RbacError(`${where}: a RoleBinding needs metadata.namespace`);
        const ref = o.roleRef;
        if (!isRecord(ref) || (ref.kind !== "Role" && ref.kind !== "ClusterRole") || typeof ref.name !== "string") throw new RbacError(`${where}.roleRef: needs kind Role or ClusterRole and a name`);
        if (kind === "ClusterRoleBinding" && ref.kind === "Role") throw new RbacError(`${where}.roleRef: a ClusterRoleBinding can only refer to a ClusterRole`);
        const subjects = (Array.isArray(o.subjects) ? o.subjects : []).map((s: unknown, i): Subject => {
          if (!isRecord(s) || (s.kind !== "ServiceAccount" && s.kind !== "User" && s.kind !== "Group") || typeof s.name !== "string")
            throw new RbacError(`${where} subjects[${i}]: needs kind ServiceAccount, User or Group and a name`);
          if (s.kind === "ServiceAccount" && typeof s.namespace !== "string") throw new RbacError(`${where} subjects[${i}]: a ServiceAccount subject needs a namespace`);
          return { kind: s.kind, name: s.name, ...(typeof s.namespace === "string" ? { namespace: s.namespace } : {}) };
        });
        this.bindings.push({ kind, name, ...(kind === "RoleBinding" && namespace ? { namespace } : {}), roleRef: { kind: ref.kind, name: ref.name }, subjects });
      }
    }
  }

  /** Whether some binding that applies to the request's namespace grants it to the user or one of its groups. */
  allows(a: RequestAttributes): boolean {
    return this.bindings.some((b) => {
      if (b.kind === "RoleBinding" && b.namespace !== a.namespace) return false;
      if (!b.subjects.some((s) => subjectMatches(s, a))) return false;
      const role = this.roles.find((r) => r.kind === b.roleRef.kind && r.name === b.roleRef.name && (r.kind === "ClusterRole" || r.namespace === b.namespace));
      return role?.rules.some((rule) => ruleAllows(rule, a)) ?? false;
    });
  }
}

function subjectMatches(s: Subject, a: RequestAttributes): boolean {
  if (s.kind === "User") return s.name === a.user;
  if (s.kind === "Group") return a.groups.includes(s.name);
  return a.user === serviceAccountUser(s.namespace ?? "", s.name);
}

export function ruleAllows(rule: PolicyRule, a: RequestAttributes): boolean {
  if (!rule.verbs.includes("*") && !rule.verbs.includes(a.verb)) return false;
  if (!rule.apiGroups.includes("*") && !rule.apiGroups.includes(a.apiGroup)) return false;
  const full = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const resourceOk = rule.resources.some((r) => r === "*" || r === full || (a.subresource !== undefined && r === `*/${a.subresource}`));
  if (!resourceOk) return false;
  if (!rule.resourceNames) return true;
  return a.name !== undefined && rule.resourceNames.includes(a.name);
}
