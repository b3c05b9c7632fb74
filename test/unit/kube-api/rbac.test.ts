/**
 * The lab's RBAC authorizer (src/lab/kube-api/rbac.ts) decides as Kubernetes' RBAC does
 * (pkg/apis/rbac/v1/evaluation_helpers.go): verbs, groups, resources with subresources, names only
 * on named requests, Role bindings only in their namespace, ClusterRoles through either binding,
 * ServiceAccount/User/Group subjects. A malformed RBAC object is refused, naming it.
 */
import { describe, expect, it } from "vitest";
import { RbacError, RbacPolicy, serviceAccountGroups, serviceAccountUser, type RequestAttributes } from "../../../src/lab/kube-api/rbac.js";

const SA = serviceAccountUser("pgfed", "pgfed-agent");
const req = (a: Partial<RequestAttributes>): RequestAttributes => ({ user: SA, groups: serviceAccountGroups("pgfed"), verb: "get", apiGroup: "postgresql.cnpg.io", resource: "clusters", namespace: "db", name: "pg-eu", ...a });
const role = (name: string, rules: unknown[], namespace = "db") => ({ apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name, namespace }, rules });
const binding = (name: string, roleRef: { kind: string; name: string }, subjects: unknown[], namespace = "db") => ({
  apiVersion: "rbac.authorization.k8s.io/v1",
  kind: "RoleBinding",
  metadata: { name, namespace },
  roleRef: { apiGroup: "rbac.authorization.k8s.io", ...roleRef },
  subjects,
});
const saSubject = { kind: "ServiceAccount", name: "pgfed-agent", namespace: "pgfed" };

describe("the lab's RBAC", () => {
  const policy = new RbacPolicy([
    role("agent", [
      { apiGroups: ["postgresql.cnpg.io"], resources: ["clusters"], verbs: ["list", "watch", "create"] },
      { apiGroups: ["postgresql.cnpg.io"], resources: ["clusters"], verbs: ["get", "patch", "delete"], resourceNames: ["pg-eu"] },
      { apiGroups: ["postgresql.cnpg.io"], resources: ["*/status"], verbs: ["get"] },
    ]),
    binding("agent", { kind: "Role", name: "agent" }, [saSubject]),
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRole", metadata: { name: "secret-reader" }, rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get"] }] },
    binding("readers", { kind: "ClusterRole", name: "secret-reader" }, [{ kind: "Group", name: "system:serviceaccounts:pgfed" }]),
    { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "ignored" } },
  ]);

  it("allows the named verbs on the named object, and names never match a nameless request", () => {
    expect(policy.allows(req({}))).toBe(true);
    expect(policy.allows(req({ verb: "delete" }))).toBe(true);
    expect(policy.allows(req({ name: "pg-us" }))).toBe(false);
    expect(policy.allows(req({ verb: "create", name: undefined }))).toBe(true);
    expect(policy.allows(req({ verb: "list", name: undefined }))).toBe(true);
    expect(policy.allows(req({ verb: "update" }))).toBe(false);
    expect(policy.allows(req({ verb: "deletecollection", name: undefined }))).toBe(false);
  });

  it("matches subresources exactly or by */sub, and never the main resource by them", () => {
    expect(policy.allows(req({ subresource: "status", name: "pg-us" }))).toBe(true);
    expect(policy.allows(req({ subresource: "scale", name: "pg-us" }))).toBe(false);
    expect(policy.allows(req({ subresource: "status", verb: "patch" }))).toBe(false);
  });

  it("applies a RoleBinding in its namespace only, a ClusterRole through it, and Group subjects", () => {
    expect(policy.allows(req({ namespace: "default" }))).toBe(false);
    expect(policy.allows(req({ apiGroup: "", resource: "secrets", name: "x" }))).toBe(true);
    expect(policy.allows(req({ apiGroup: "", resource: "secrets", name: "x", namespace: "kube-system" }))).toBe(false);
    expect(policy.allows(req({ apiGroup: "", resource: "secrets", name: "x", user: "alice", groups: [] }))).toBe(false);
    expect(policy.allows(req({ apiGroup: "apps", resource: "clusters" }))).toBe(false);
  });

  it("tells ServiceAccounts of other namespaces and Users apart", () => {
    expect(policy.allows(req({ user: serviceAccountUser("other", "pgfed-agent"), groups: [] }))).toBe(false);
    const users = new RbacPolicy([role("r", [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }]), binding("b", { kind: "Role", name: "r" }, [{ kind: "User", name: "alice" }])]);
    expect(users.allows(req({ user: "alice", groups: [] }))).toBe(true);
    expect(users.allows(req({}))).toBe(false);
  });

  it("refuses malformed RBAC objects, naming them", () => {
    expect(() => new RbacPolicy([role("bad", [{ apiGroups: [""], resources: "secrets", verbs: ["get"] }])])).toThrow(new RbacError("Role db/bad rules[0].resources: must be a list of strings"));
    expect(() => new RbacPolicy([{ ...role("nons", []), metadata: { name: "nons" } }])).toThrow(/Role nons: a Role needs metadata.namespace/);
    expect(() => new RbacPolicy([binding("b", { kind: "Role", name: "r" }, [{ kind: "ServiceAccount", name: "x" }])])).toThrow(/RoleBinding db\/b subjects\[0\]: a ServiceAccount subject needs a namespace/);
    expect(() => new RbacPolicy([{ apiVersion: "rbac.authorization.k8s.io/v1", kind: "ClusterRoleBinding", metadata: { name: "c" }, roleRef: { kind: "Role", name: "r" }, subjects: [] }])).toThrow(/can only refer to a ClusterRole/);
    expect(() => new RbacPolicy([role("urls", [{ nonResourceURLs: ["/healthz"], verbs: ["get"] }])])).toThrow(/nonResourceURLs: not supported/);
  });
});
