/**
 * deploy/'s RBAC against what pgfed's code calls. Each region's overlay is rendered with the real
 * `kubectl kustomize`, its Roles and RoleBindings loaded into the lab's Kubernetes API stand-in,
 * and pgfed's own kube code (src/kube/region.ts as the agent, the coordinator's corroborator as
 * the coordinator) talks to it over HTTP with each ServiceAccount's token. Every request is
 * recorded: all must be allowed, and the Roles must grant no verb the code never used. A method
 * added to RegionClient fails this test until it is exercised here.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDocument } from "yaml";
import { fencePatch } from "../../../src/cnpg/index.js";
import { parseConfig } from "../../../src/config.js";
import { PrimaryCorroborator } from "../../../src/coordinator/corroboration.js";
import { RegionClient } from "../../../src/kube/region.js";
import { waitFor } from "../../../src/lab/proc.js";
import { RbacPolicy, serviceAccountGroups, serviceAccountUser, startKubeApi, writeKubeconfig, type KubeApiServer, type RequestAttributes } from "../../../src/lab/kube-api/index.js";
import { REGIONS, arrayAt, kubectlAvailable, ofKind, render, stringAt, type KubeObject } from "../../unit/deploy/helpers.js";
import { cluster } from "./helpers.js";

const hasKubectl = await kubectlAvailable();
if (!hasKubectl) console.warn("SKIPPED test/integration/kube-api/deploy-rbac.test.ts: kubectl is not installed (apt-get install kubernetes-client)");

const AGENT = serviceAccountUser("pgfed", "pgfed-agent");
const COORDINATOR = serviceAccountUser("pgfed", "pgfed-coordinator");
const ADMIN = "admin-token";
const NS = "db";

/** Every method of RegionClient but the constructor and its private parser: what an agent can call. */
const REGION_CLIENT_METHODS = Object.getOwnPropertyNames(RegionClient.prototype)
  .filter((n) => n !== "constructor" && n !== "parse")
  .sort();

interface Recorded extends RequestAttributes {
  allowed: boolean;
}

/** One grant as the code uses it or a Role gives it: `verb group/resource name` (`*` = no name: create or a collection). */
function grantKey(verb: string, group: string, resource: string, name: string | undefined): string {
  return `${verb} ${group}/${resource} ${name ?? "*"}`;
}

function roleGrants(role: KubeObject): Set<string> {
  const out = new Set<string>();
  for (const r of arrayAt(role, "rules")) {
    const names = arrayAt(r, "resourceNames").map(String);
    for (const verb of arrayAt(r, "verbs").map(String))
      for (const group of arrayAt(r, "apiGroups").map(String))
        for (const resource of arrayAt(r, "resources").map(String)) for (const name of names.length > 0 ? names : [undefined]) out.add(grantKey(verb, group, resource, name));
  }
  return out;
}

/** A used grant is covered by a Role grant of the same verb and resource, with the same name or no name. */
function covers(granted: Set<string>, used: string): boolean {
  if (granted.has(used)) return true;
  const [verb, gr] = used.split(" ");
  return granted.has(`${verb} ${gr} *`);
}

function roleNamed(objects: readonly KubeObject[], name: string): KubeObject {
  const r = ofKind(objects, "Role").find((o) => o.metadata.name === name);
  if (!r) throw new Error(`no Role ${name}`);
  return r;
}

describe.skipIf(!hasKubectl).each(REGIONS)("deploy/kubernetes/overlays/%s RBAC, exercised by pgfed's code", (region) => {
  let dir: string;
  let api: KubeApiServer;
  let objects: KubeObject[];
  let agent: RegionClient;
  let coordinator: RegionClient;
  let member: { cluster: string; secretRef: string };
  const recorded: Recorded[] = [];
  const called = new Set<string>();

  const usedBy = (user: string): Set<string> => new Set(recorded.filter((r) => r.user === user).map((r) => grantKey(r.verb, r.apiGroup, r.subresource ? `${r.resource}/${r.subresource}` : r.resource, r.name)));

  beforeAll(async () => {
    objects = await render(`deploy/kubernetes/overlays/${region}`);
    const cm = ofKind(objects, "ConfigMap").find((c) => c.metadata.name.startsWith("pgfed-config"));
    const config = parseConfig(parseDocument(stringAt(cm, "data", "pgfed.yaml") ?? "").toJS(), "pgfed-config");
    const m = config.federations.flatMap((f) => f.members).find((x) => x.region === region);
    if (!m?.postgres.secretRef) throw new Error(`no member with a secretRef in ${region}`);
    member = { cluster: m.cluster, secretRef: m.postgres.secretRef };
    dir = await mkdtemp(join(tmpdir(), "pgfed-deploy-rbac-"));
    api = await startKubeApi({
      region,
      namespaces: [NS],
      tokens: {
        [ADMIN]: { name: "admin", allow: [{ verbs: "*", resources: "*" }] },
        "agent-token": { name: AGENT, groups: serviceAccountGroups("pgfed") },
        "coordinator-token": { name: COORDINATOR, groups: serviceAccountGroups("pgfed") },
      },
      rbac: new RbacPolicy(objects),
      onRequest: (a, allowed) => {
        if (a.user !== "admin") recorded.push({ ...a, allowed });
      },
    });
    const kubeconfig = join(dir, "kubeconfig");
    await writeKubeconfig(kubeconfig, [
      { name: "admin", url: api.url, token: ADMIN },
      { name: "agent", url: api.url, token: "agent-token" },
      { name: "coordinator", url: api.url, token: "coordinator-token" },
    ]);
    agent = new RegionClient({ region, kubeconfigPath: kubeconfig, context: "agent" });
    coordinator = new RegionClient({ region, kubeconfigPath: kubeconfig, context: "coordinator" });
    const admin = new RegionClient({ region, kubeconfigPath: kubeconfig, context: "admin" });
    await admin.createCluster({ namespace: NS, name: member.cluster }, cluster(member.cluster, NS, { primary: member.cluster, source: "pg-ap" }));
    await admin.createCluster({ namespace: NS, name: "not-a-member" }, cluster("not-a-member", NS, { primary: "not-a-member", source: "pg-ap" }));
    for (const name of [member.secretRef, "someone-elses-secret"]) {
      api.store.create("secrets", { apiVersion: "v1", kind: "Secret", metadata: { name, namespace: NS }, data: { password: Buffer.from("pw").toString("base64") } });
    }
  });

  afterAll(async () => {
    await api?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("lets the agent make every call of src/kube/region.ts on its member, re-clone (delete + create) included", async () => {
    const ref = { namespace: NS, name: member.cluster };
    const events: string[] = [];
    const watch = agent.watchClusters(NS, { onChange: (r) => events.push(r.name) });
    called.add("watchClusters");
    watch.start();
    await waitFor("the agent's informer to deliver its member", () => events.includes(member.cluster), 10_000);
    expect(watch.list().length).toBeGreaterThan(0);
    await watch.stop();

    const c = await agent.getCluster(ref);
    called.add("getCluster");
    await agent.patchCluster(ref, fencePatch(["*"]), "fencing");
    called.add("patchCluster");
    expect(await agent.readSecretKey({ namespace: NS, name: member.secretRef }, "password")).toBe("pw");
    called.add("readSecretKey");
    // The re-clone of src/agent/reclone.ts: delete by uid, then create the replica again under the same name.
    await agent.deleteCluster(ref, c.metadata.uid ?? "", "deleting");
    called.add("deleteCluster");
    await waitFor("the member to be deleted", () => api.store.list("clusters", { namespace: NS }).items.every((o) => o.metadata.name !== member.cluster), 10_000);
    await agent.createCluster(ref, cluster(member.cluster, NS, { primary: "pg-ap", source: "pg-ap" }), "creating");
    called.add("createCluster");

    expect([...called].sort()).toEqual(REGION_CLIENT_METHODS);
    expect(recorded.filter((r) => !r.allowed)).toEqual([]);
  });

  it("lets the coordinator corroborate and fence a silent primary: get and patch, nothing else", async () => {
    const corroborator = new PrimaryCorroborator({ federation: "orders", access: () => coordinator, now: () => Date.now(), timeoutMs: 5_000 });
    const ref = { namespace: NS, name: member.cluster };
    // Unfenced first, so that the coordinator has to patch it.
    await agent.patchCluster(ref, { metadata: { annotations: { "cnpg.io/fencedInstances": null } } });
    const out = await corroborator.ensureFenced({ member: member.cluster, region, ref }, "its region is silent", new AbortController().signal);
    expect(out.patched).toBe(true);
    expect(recorded.filter((r) => r.user === COORDINATOR).map((r) => r.verb)).toEqual(expect.arrayContaining(["get", "patch"]));
    expect(recorded.filter((r) => !r.allowed)).toEqual([]);
  });

  it("grants the agent and the coordinator exactly the verbs their code used, and names only the members where Kubernetes can", () => {
    const agentRole = roleGrants(roleNamed(objects, "pgfed-agent"));
    const coordRole = roleGrants(roleNamed(objects, "pgfed-coordinator"));
    const agentUsed = usedBy(AGENT);
    const coordUsed = usedBy(COORDINATOR);
    for (const u of agentUsed) expect(covers(agentRole, u), `the agent used ${u}`).toBe(true);
    for (const u of coordUsed) expect(covers(coordRole, u), `the coordinator used ${u}`).toBe(true);
    // Nothing granted that the code never used (a grant by name counts as used when that name was used).
    const used = (set: Set<string>, g: string) => set.has(g) || [...set].some((u) => u.startsWith(g.replace(/ \*$/, " ")));
    expect([...agentRole].filter((g) => !used(agentUsed, g))).toEqual([]);
    expect([...coordRole].filter((g) => !used(coordUsed, g))).toEqual([]);
    // Where Kubernetes allows resourceNames (get, patch, delete), the grants name the member only.
    for (const g of [...agentRole, ...coordRole]) {
      const [verb, , name] = g.split(" ");
      if (verb === "get" || verb === "patch" || verb === "delete") expect([member.cluster, member.secretRef], g).toContain(name);
      else expect(name, `${g}: Kubernetes cannot restrict ${verb ?? "?"} by name`).toBe("*");
    }
    expect(ofKind(objects, "ClusterRole")).toEqual([]);
    expect(ofKind(objects, "ClusterRoleBinding")).toEqual([]);
    console.log(`${region}: ${recorded.length} requests checked; the agent used ${agentUsed.size} grants (${[...agentUsed].join(", ")}), the coordinator ${coordUsed.size} (${[...coordUsed].join(", ")})`);
  });

  it("refuses what the Roles do not grant with the API server's own 403 Status", async () => {
    const other = { namespace: NS, name: "not-a-member" };
    await expect(agent.getCluster(other)).rejects.toMatchObject({
      code: "kube.forbidden",
      message: `reading Cluster db/not-a-member in region ${region}: clusters.postgresql.cnpg.io "not-a-member" is forbidden: User "${AGENT}" cannot get resource "clusters" in API group "postgresql.cnpg.io" in the namespace "db"`,
    });
    await expect(agent.readSecretKey({ namespace: NS, name: "someone-elses-secret" }, "password")).rejects.toMatchObject({ code: "kube.forbidden" });
    await expect(agent.patchCluster(other, fencePatch(["*"]))).rejects.toMatchObject({ code: "kube.forbidden" });
    const c = await coordinator.getCluster({ namespace: NS, name: member.cluster });
    await expect(coordinator.deleteCluster({ namespace: NS, name: member.cluster }, c.metadata.uid ?? "")).rejects.toMatchObject({
      code: "kube.forbidden",
      message: expect.stringContaining(`User "${COORDINATOR}" cannot delete resource "clusters" in API group "postgresql.cnpg.io" in the namespace "db"`) as unknown,
    });
    await expect(coordinator.createCluster({ namespace: NS, name: "new" }, cluster("new", NS, { primary: "new", source: "pg-ap" }) as unknown as Record<string, unknown>)).rejects.toMatchObject({
      code: "kube.forbidden",
      message: expect.stringContaining("cannot create resource \"clusters\"") as unknown,
    });
    // Another namespace: the Roles live in db only.
    await expect(agent.getCluster({ namespace: "default", name: member.cluster })).rejects.toMatchObject({ code: "kube.forbidden", message: expect.stringContaining('in the namespace "default"') as unknown });
    // Nothing changed: the member still exists, the other Cluster too.
    expect(api.store.list("clusters", { namespace: NS }).items.map((o) => o.metadata.name).sort()).toEqual([member.cluster, "not-a-member"].sort());
  });
});
