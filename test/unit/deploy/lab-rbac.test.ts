/**
 * The lab authorizes its agents and coordinators with deploy/kubernetes/member-rbac, filled in the
 * way an overlay fills it (src/lab/rbac.ts). For every region of the example, what the lab builds
 * from the base must equal the Roles `kubectl kustomize` renders from that region's overlay: the
 * lab then enforces exactly what a real install grants.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfigText } from "../../../src/config.js";
import { MEMBER_RBAC_FILE, deployFile, overlayRbac, readRbacDocuments } from "../../../src/lab/rbac.js";
import { REGIONS, REPO, arrayAt, kubectlAvailable, ofKind, render, type KubeObject } from "./helpers.js";

const hasKubectl = await kubectlAvailable();
if (!hasKubectl) console.warn("SKIPPED test/unit/deploy/lab-rbac.test.ts: kubectl is not installed (apt-get install kubernetes-client)");

const rulesOf = (roles: readonly unknown[]): unknown =>
  roles
    .map((r) => ({ name: (r as KubeObject).metadata.name, namespace: (r as KubeObject).metadata.namespace, rules: arrayAt(r, "rules") }))
    .sort((a, b) => a.name.localeCompare(b.name));

describe.skipIf(!hasKubectl)("the lab's RBAC", () => {
  const config = parseConfigText(readFileSync(join(REPO, "deploy/cnpg/pgfed.yaml"), "utf8"), "deploy/cnpg/pgfed.yaml");

  it("finds deploy/kubernetes/member-rbac/role.yaml from its own module", () => {
    expect(deployFile()).toBe(join(REPO, MEMBER_RBAC_FILE));
  });

  it.each(REGIONS)("builds for %s the Roles and RoleBindings that region's overlay renders", async (region) => {
    const members = config.federations.flatMap((f) => f.members).filter((m) => m.region === region);
    const lab = overlayRbac(readRbacDocuments(readFileSync(deployFile(), "utf8"), MEMBER_RBAC_FILE), {
      namespace: "db",
      clusters: members.map((m) => m.cluster),
      secrets: members.flatMap((m) => (m.postgres.secretRef ? [m.postgres.secretRef] : [])),
    });
    const rendered = await render(`deploy/kubernetes/overlays/${region}`);
    expect(rulesOf(lab.filter((o) => o.kind === "Role"))).toEqual(rulesOf(ofKind(rendered, "Role")));
    const bindings = (objs: readonly unknown[]) => objs.map((b) => ({ roleRef: (b as KubeObject).roleRef, subjects: (b as KubeObject).subjects, namespace: (b as KubeObject).metadata.namespace }));
    expect(bindings(lab.filter((o) => o.kind === "RoleBinding"))).toEqual(bindings(ofKind(rendered, "RoleBinding")));
  });

  it("drops a rule left without names instead of widening it to every object", () => {
    const lab = overlayRbac(readRbacDocuments(readFileSync(deployFile(), "utf8"), MEMBER_RBAC_FILE), { namespace: "db", clusters: ["pg-eu"], secrets: [] });
    const agent = lab.find((o) => o.kind === "Role" && (o.metadata as { name: string }).name === "pgfed-agent");
    expect(arrayAt(agent, "rules").some((r) => arrayAt(r, "resources").includes("secrets"))).toBe(false);
    for (const r of arrayAt(agent, "rules")) expect(arrayAt(r, "resourceNames")).not.toContain("set-by-overlay");
  });
});
