/**
 * deploy/kubernetes: each region's overlay renders with the real `kubectl kustomize`, grants the
 * agent exactly what src/kube/region.ts calls and nothing cluster-wide, runs every container as
 * non-root on a read-only root filesystem, and carries a config that pgfed itself accepts.
 */
import { readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { parseDocument } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { parseConfig, type Config } from "../../../src/config.js";
import {
  REGIONS,
  REPO,
  arrayAt,
  at,
  isObject,
  kubectlAvailable,
  named,
  ofKind,
  render,
  stringAt,
  type KubeObject,
  type Region,
} from "./helpers.js";

const hasKubectl = await kubectlAvailable();
if (!hasKubectl) console.warn("SKIPPED test/unit/deploy/kubernetes.test.ts: kubectl is not installed (apt-get install kubernetes-client)");

const PGFED_NS = "pgfed";
const MEMBER_NS = "db";

function configOf(objects: readonly KubeObject[]): { text: string; config: Config } {
  const cms = ofKind(objects, "ConfigMap").filter((c) => c.metadata.name.startsWith("pgfed-config"));
  expect(cms).toHaveLength(1);
  const text = stringAt(cms[0], "data", "pgfed.yaml");
  if (text === undefined) throw new Error("ConfigMap pgfed-config has no key pgfed.yaml");
  const doc = parseDocument(text, { uniqueKeys: true });
  expect(doc.errors).toEqual([]);
  return { text, config: parseConfig(doc.toJS(), "ConfigMap pgfed-config") };
}

function podSpec(d: KubeObject): unknown {
  return at(d, "spec", "template", "spec");
}

function containersOf(d: KubeObject): unknown[] {
  const spec = podSpec(d);
  return [...arrayAt(spec, "initContainers"), ...arrayAt(spec, "containers")];
}

function argsOf(d: KubeObject): string[] {
  return arrayAt(containersOf(d)[0], "args").map(String);
}

function flag(args: readonly string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The file a mount serves: volume (configMap/secret) + mountPath, by absolute path inside the container. */
function mountedFiles(d: KubeObject): Map<string, { volume: unknown; key: string }> {
  const volumes = new Map(arrayAt(podSpec(d), "volumes").map((v) => [stringAt(v, "name") ?? "", v] as const));
  const out = new Map<string, { volume: unknown; key: string }>();
  for (const m of arrayAt(containersOf(d)[0], "volumeMounts")) {
    const volume = volumes.get(stringAt(m, "name") ?? "");
    const mountPath = stringAt(m, "mountPath") ?? "";
    const source = at(volume, "configMap") ?? at(volume, "secret");
    if (!isObject(source)) continue;
    const items = arrayAt(source, "items");
    if (items.length > 0) {
      for (const it of items) out.set(posix.join(mountPath, stringAt(it, "path") ?? ""), { volume, key: stringAt(it, "key") ?? "" });
    } else {
      out.set(`${mountPath}/*`, { volume, key: "*" });
    }
  }
  return out;
}

/** Checks that `file` inside the container comes from the named ConfigMap/Secret key that exists. */
function expectMountedFrom(objects: readonly KubeObject[], d: KubeObject, file: string, kind: "ConfigMap" | "Secret", name: string): void {
  const files = mountedFiles(d);
  const dir = posix.dirname(file);
  const key = posix.basename(file);
  const whole = files.get(`${dir}/*`);
  const exact = files.get(file);
  const hit = exact ?? whole;
  expect(hit, `${d.metadata.name}: nothing mounted at ${file}`).toBeDefined();
  const refName = kind === "ConfigMap" ? stringAt(hit?.volume, "configMap", "name") : stringAt(hit?.volume, "secret", "secretName");
  expect(refName, `${d.metadata.name}: ${file} is not from ${kind} ${name}`).toBe(name);
  const source = named(objects, kind, name);
  const dataKey = exact ? exact.key : key;
  const keys = [...Object.keys(isObject(source.data) ? source.data : {}), ...Object.keys(isObject(source.stringData) ? source.stringData : {})];
  expect(keys, `${kind} ${name} has no key ${dataKey}`).toContain(dataKey);
}

describe.skipIf(!hasKubectl)("deploy/kubernetes overlays", () => {
  const rendered = new Map<Region, KubeObject[]>();

  beforeAll(async () => {
    for (const region of REGIONS) rendered.set(region, await render(`deploy/kubernetes/overlays/${region}`));
  });

  const objectsOf = (region: Region): KubeObject[] => {
    const o = rendered.get(region);
    if (!o) throw new Error(`overlay ${region} was not rendered`);
    return o;
  };

  describe.each(REGIONS)("overlay %s", (region) => {
    it("renders objects that each have apiVersion, kind and metadata.name, and no duplicates", () => {
      const objects = objectsOf(region);
      expect(objects.length).toBeGreaterThan(10);
      const ids = objects.map((o) => `${o.apiVersion}/${o.kind}/${stringAt(o, "metadata", "namespace") ?? ""}/${o.metadata.name}`);
      expect(new Set(ids).size).toBe(ids.length);
      for (const kind of ["Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "ServiceMonitor", "PrometheusRule"]) {
        expect(ofKind(objects, kind).length, `no ${kind}`).toBeGreaterThan(0);
      }
    });

    it("puts pgfed's own objects in namespace pgfed and only the agent's Role and RoleBinding in the member namespace", () => {
      for (const o of objectsOf(region)) {
        if (o.kind === "Namespace") {
          expect(o.metadata.name).toBe(PGFED_NS);
          continue;
        }
        if (o.kind === "PriorityClass") {
          expect(stringAt(o, "metadata", "namespace"), "PriorityClass is cluster-scoped").toBeUndefined();
          continue;
        }
        const ns = stringAt(o, "metadata", "namespace");
        if (o.kind === "Role" || o.kind === "RoleBinding") expect(ns, `${o.kind}/${o.metadata.name}`).toBe(MEMBER_NS);
        else expect(ns, `${o.kind}/${o.metadata.name}`).toBe(PGFED_NS);
      }
    });

    // Which verbs: test/integration/kube-api/deploy-rbac.test.ts derives them from the requests pgfed's code makes.
    it("names the region's member Clusters and monitoring Secrets in the Roles where Kubernetes allows names, and grants nothing cluster-wide or by wildcard", () => {
      const objects = objectsOf(region);
      const { config } = configOf(objects);
      expect(objects.filter((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding")).toEqual([]);
      const roles = ofKind(objects, "Role");
      expect(roles.map((r) => r.metadata.name).sort()).toEqual(["pgfed-agent", "pgfed-coordinator"]);
      const members = config.federations.flatMap((f) => f.members).filter((m) => m.region === region);
      expect(members.length).toBeGreaterThan(0);
      for (const role of roles) {
        for (const r of arrayAt(role, "rules")) {
          for (const field of ["apiGroups", "resources", "verbs", "resourceNames"]) expect(arrayAt(r, field), `${role.metadata.name} ${field}`).not.toContain("*");
          const names = arrayAt(r, "resourceNames").map(String).sort();
          if (names.length === 0) continue;
          expect(names).not.toContain("set-by-overlay");
          const resources = arrayAt(r, "resources").map(String);
          const wanted = resources.includes("secrets") ? members.map((m) => m.postgres.secretRef ?? "") : members.map((m) => m.cluster);
          expect(names, `${role.metadata.name} ${resources.join(",")}`).toEqual(wanted.filter((n) => n !== "").sort());
        }
      }
      for (const m of members) expect(m.namespace).toBe(MEMBER_NS);
    });

    it("binds the Role to the agent's service account, which the agent Deployment uses", () => {
      const objects = objectsOf(region);
      const binding = named(objects, "RoleBinding", "pgfed-agent");
      expect(at(binding, "roleRef")).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "pgfed-agent" });
      expect(arrayAt(binding, "subjects")).toEqual([{ kind: "ServiceAccount", name: "pgfed-agent", namespace: PGFED_NS }]);
      expect(stringAt(podSpec(named(objects, "Deployment", "pgfed-agent")), "serviceAccountName")).toBe("pgfed-agent");
      named(objects, "ServiceAccount", "pgfed-agent");
      // The coordinators of every region reach this region's Clusters as pgfed-coordinator (a kubeconfig, `pgfed kubeconfig coordinator`).
      const coordBinding = named(objects, "RoleBinding", "pgfed-coordinator");
      expect(at(coordBinding, "roleRef")).toEqual({ apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "pgfed-coordinator" });
      expect(arrayAt(coordBinding, "subjects")).toEqual([{ kind: "ServiceAccount", name: "pgfed-coordinator", namespace: PGFED_NS }]);
      named(objects, "ServiceAccount", "pgfed-coordinator");
      // The coordinator never calls the Kubernetes API: no token in its pods.
      const coordinator = named(objects, "Deployment", "pgfed-coordinator");
      expect(stringAt(podSpec(coordinator), "serviceAccountName")).toBe("pgfed-coordinator");
      expect(at(podSpec(coordinator), "automountServiceAccountToken")).toBe(false);
    });

    it("runs every container as non-root on a read-only root filesystem, without privilege escalation", () => {
      const deployments = ofKind(objectsOf(region), "Deployment");
      expect(deployments.map((d) => d.metadata.name).sort()).toEqual(["pgfed-agent", "pgfed-coordinator"]);
      for (const d of deployments) {
        const pod = podSpec(d);
        expect(at(pod, "securityContext", "runAsNonRoot"), d.metadata.name).toBe(true);
        const uid = at(pod, "securityContext", "runAsUser");
        expect(typeof uid === "number" && uid > 0, `${d.metadata.name} runAsUser`).toBe(true);
        expect(at(pod, "hostNetwork")).toBeUndefined();
        const containers = containersOf(d);
        expect(containers.length).toBeGreaterThan(0);
        for (const c of containers) {
          const who = `${d.metadata.name}/${stringAt(c, "name") ?? "?"}`;
          expect(at(c, "securityContext", "readOnlyRootFilesystem"), who).toBe(true);
          expect(at(c, "securityContext", "allowPrivilegeEscalation"), who).toBe(false);
          expect(at(c, "securityContext", "privileged"), who).not.toBe(true);
          expect(arrayAt(c, "securityContext", "capabilities", "drop"), who).toContain("ALL");
          expect(at(c, "securityContext", "runAsUser"), who).not.toBe(0);
          expect(stringAt(c, "resources", "limits", "memory"), `${who} memory limit`).toBeDefined();
          expect(stringAt(c, "resources", "requests", "cpu"), `${who} cpu request`).toBeDefined();
          // tsx needs a writable /tmp when the root filesystem is read-only.
          expect(arrayAt(c, "volumeMounts").some((m) => stringAt(m, "mountPath") === "/tmp"), `${who} /tmp`).toBe(true);
        }
      }
    });

    it("carries a config in the ConfigMap that pgfed's parseConfig accepts, identical to deploy/cnpg/pgfed.yaml", () => {
      const { text, config } = configOf(objectsOf(region));
      expect(text).toBe(readFileSync(join(REPO, "deploy/cnpg/pgfed.yaml"), "utf8"));
      expect(config.regions.map((r) => r.name)).toContain(region);
      // In-cluster agents: no kubeconfig path or context, so the pod's service account is used.
      for (const r of config.regions) expect(r.kubeconfig).toEqual({});
      expect(config.api.listen).toMatch(/^0\.0\.0\.0:\d+$/);
      expect(config.api.tokensFrom).toBeDefined();
    });

    it("runs the agent of this region only, with --roles agent, and the coordinator pair with --roles coordinator", () => {
      const objects = objectsOf(region);
      const { config } = configOf(objects);
      const agent = named(objects, "Deployment", "pgfed-agent");
      const agentArgs = argsOf(agent);
      expect(agentArgs[0]).toBe("run");
      expect(flag(agentArgs, "--roles")).toBe("agent");
      expect(flag(agentArgs, "--regions")).toBe(region);
      expect(at(agent, "spec", "replicas")).toBe(1);
      expect(stringAt(agent, "spec", "strategy", "type")).toBe("Recreate");
      expect(config.federations.some((f) => f.members.some((m) => m.region === region))).toBe(true);

      const coordinator = named(objects, "Deployment", "pgfed-coordinator");
      const coordArgs = argsOf(coordinator);
      expect(coordArgs[0]).toBe("run");
      expect(flag(coordArgs, "--roles")).toBe("coordinator");
      expect(flag(coordArgs, "--regions")).toBeUndefined();
      expect(at(coordinator, "spec", "replicas")).toBe(2);
      const pdb = named(objects, "PodDisruptionBudget", "pgfed-coordinator");
      expect(at(pdb, "spec", "selector", "matchLabels")).toEqual(at(coordinator, "spec", "selector", "matchLabels"));

      for (const d of [agent, coordinator]) {
        const configPath = flag(argsOf(d), "--config");
        if (configPath === undefined) throw new Error(`${d.metadata.name}: no --config`);
        const cm = ofKind(objects, "ConfigMap").find((c) => c.metadata.name.startsWith("pgfed-config"));
        expectMountedFrom(objects, d, configPath, "ConfigMap", cm?.metadata.name ?? "?");
        expect(stringAt(containersOf(d)[0], "image")).toMatch(/pgfed:/);
      }
    });

    it("probes the agent on its --metrics-listen port, schedules it above the database pods, and gives it no PDB that could block a drain", () => {
      const objects = objectsOf(region);
      const agent = named(objects, "Deployment", "pgfed-agent");
      const c = containersOf(agent)[0];
      const port = arrayAt(c, "ports").find((p) => stringAt(p, "name") === "metrics");
      expect(`0.0.0.0:${String(at(port, "containerPort"))}`).toBe(flag(argsOf(agent), "--metrics-listen"));
      expect(at(c, "readinessProbe", "httpGet")).toEqual({ path: "/readyz", port: "metrics" });
      expect(at(c, "livenessProbe", "httpGet")).toEqual({ path: "/healthz", port: "metrics" });
      const pc = named(objects, "PriorityClass", stringAt(podSpec(agent), "priorityClassName") ?? "?");
      expect(at(pc, "value")).toBeGreaterThan(0);
      expect(at(pc, "value")).toBeLessThan(1_000_000_000);
      expect(at(pc, "globalDefault")).toBe(false);
      expect(ofKind(objects, "PodDisruptionBudget").map((p) => p.metadata.name)).toEqual(["pgfed-coordinator"]);
    });

    it("lets drains evict unready coordinators (a NATS outage makes them all unready) and enforces the restricted Pod Security profile", () => {
      const objects = objectsOf(region);
      expect(at(named(objects, "PodDisruptionBudget", "pgfed-coordinator"), "spec", "unhealthyPodEvictionPolicy")).toBe("AlwaysAllow");
      const ns = named(objects, "Namespace", PGFED_NS);
      for (const mode of ["enforce", "warn", "audit"]) expect(stringAt(ns, "metadata", "labels", `pod-security.kubernetes.io/${mode}`), mode).toBe("restricted");
    });

    it("admits ingress to namespace pgfed only on the ports the containers name", () => {
      const objects = objectsOf(region);
      const policies = ofKind(objects, "NetworkPolicy");
      const deny = policies.find((p) => isObject(at(p, "spec", "podSelector")) && Object.keys(at(p, "spec", "podSelector") as object).length === 0);
      expect(deny, "a default-deny ingress policy").toBeDefined();
      expect(arrayAt(deny, "spec", "ingress")).toEqual([]);
      for (const [component, portName] of [["coordinator", "http"], ["agent", "metrics"]] as const) {
        const d = named(objects, "Deployment", `pgfed-${component}`);
        const allow = policies.find((p) => stringAt(p, "spec", "podSelector", "matchLabels", "app.kubernetes.io/component") === component);
        expect(allow, component).toBeDefined();
        const ports = arrayAt(allow, "spec", "ingress").flatMap((i) => arrayAt(i, "ports").map((p) => stringAt(p, "port")));
        expect(ports).toEqual([portName]);
        expect(arrayAt(containersOf(d)[0], "ports").map((p) => stringAt(p, "name"))).toContain(portName);
      }
    });

    it("probes the coordinator on the API port: readiness /readyz, liveness /healthz", () => {
      const objects = objectsOf(region);
      const { config } = configOf(objects);
      const apiPort = Number(config.api.listen.split(":")[1]);
      const c = containersOf(named(objects, "Deployment", "pgfed-coordinator"))[0];
      const port = arrayAt(c, "ports").find((p) => stringAt(p, "name") === "http");
      expect(at(port, "containerPort")).toBe(apiPort);
      expect(at(c, "readinessProbe", "httpGet")).toEqual({ path: "/readyz", port: "http" });
      expect(at(c, "livenessProbe", "httpGet")).toEqual({ path: "/healthz", port: "http" });
    });

    it("mounts the API token file where api.tokensFrom points from a Secret the kustomization never renders (so no apply overwrites it)", () => {
      const objects = objectsOf(region);
      const { config } = configOf(objects);
      const tokensFrom = config.api.tokensFrom ?? "";
      expect(ofKind(objects, "Secret").map((o) => o.metadata.name)).not.toContain("pgfed-api-tokens");
      const files = mountedFiles(named(objects, "Deployment", "pgfed-coordinator"));
      const hit = files.get(tokensFrom);
      expect(stringAt(hit?.volume, "secret", "secretName")).toBe("pgfed-api-tokens");
      expect(hit?.key).toBe(posix.basename(tokensFrom));
      // The documented command creates exactly that key.
      const docs = readFileSync(join(REPO, "docs/operations.md"), "utf8");
      expect(docs).toContain(`create secret generic pgfed-api-tokens --from-file=${posix.basename(tokensFrom)}=`);
    });

    it("serves the API through a Service and lets the ServiceMonitor scrape /metrics of every coordinator", () => {
      const objects = objectsOf(region);
      const coordinator = named(objects, "Deployment", "pgfed-coordinator");
      const podLabels = at(coordinator, "spec", "template", "metadata", "labels");
      const selects = (svc: KubeObject): boolean => {
        const sel = at(svc, "spec", "selector");
        return isObject(sel) && isObject(podLabels) && Object.entries(sel).every(([k, v]) => podLabels[k] === v);
      };
      const api = named(objects, "Service", "pgfed-api");
      expect(selects(api)).toBe(true);
      expect(arrayAt(api, "spec", "ports").some((p) => stringAt(p, "targetPort") === "http")).toBe(true);

      const monitor = named(objects, "ServiceMonitor", "pgfed");
      expect(monitor.apiVersion).toBe("monitoring.coreos.com/v1");
      const wanted = at(monitor, "spec", "selector", "matchLabels");
      if (!isObject(wanted)) throw new Error("ServiceMonitor without matchLabels");
      const scraped = ofKind(objects, "Service").filter((s) => {
        const labels = at(s, "metadata", "labels");
        return isObject(labels) && Object.entries(wanted).every(([k, v]) => labels[k] === v);
      });
      expect(scraped.map((s) => s.metadata.name).sort()).toEqual(["pgfed-agent-metrics", "pgfed-metrics"]);
      const endpoints = arrayAt(monitor, "spec", "endpoints");
      for (const e of endpoints) expect(stringAt(e, "path")).toBe("/metrics");
      const endpointPorts = endpoints.map((e) => stringAt(e, "port"));
      // Each Service selects its Deployment's pods, lists not-ready ones too, and exposes a port the ServiceMonitor scrapes, named as the container's.
      for (const [svcName, deployment] of [["pgfed-metrics", "pgfed-coordinator"], ["pgfed-agent-metrics", "pgfed-agent"]] as const) {
        const svc = named(objects, "Service", svcName);
        const podLabels = at(named(objects, "Deployment", deployment), "spec", "template", "metadata", "labels");
        const sel = at(svc, "spec", "selector");
        expect(isObject(sel) && isObject(podLabels) && Object.entries(sel).every(([k, v]) => podLabels[k] === v), svcName).toBe(true);
        expect(at(svc, "spec", "publishNotReadyAddresses"), svcName).toBe(true);
        const ports = arrayAt(svc, "spec", "ports");
        const scrapedPort = ports.find((p) => endpointPorts.includes(stringAt(p, "name")));
        expect(scrapedPort, svcName).toBeDefined();
        const containerPorts = arrayAt(containersOf(named(objects, "Deployment", deployment))[0], "ports").map((p) => stringAt(p, "name"));
        expect(containerPorts, svcName).toContain(stringAt(scrapedPort, "targetPort"));
      }
    });

    it("includes deploy/prometheus/pgfed-prometheusrule.yaml unchanged apart from namespace and labels", () => {
      const rule = named(objectsOf(region), "PrometheusRule", "pgfed");
      const source: unknown = parseDocument(readFileSync(join(REPO, "deploy/prometheus/pgfed-prometheusrule.yaml"), "utf8")).toJS();
      expect(at(rule, "spec")).toEqual(at(source, "spec"));
      expect(arrayAt(rule, "spec", "groups").length).toBeGreaterThan(0);
    });
  });

  it("ships deploy/examples/pgfed.yaml with paths a pod of the base has: tokensFrom the mounted token file, no kubeconfig contexts a pod lacks", () => {
    const example = parseConfig(parseDocument(readFileSync(join(REPO, "deploy/examples/pgfed.yaml"), "utf8")).toJS(), "deploy/examples/pgfed.yaml");
    const objects = objectsOf("eu-west");
    const files = mountedFiles(named(objects, "Deployment", "pgfed-coordinator"));
    expect(stringAt(files.get(example.api.tokensFrom ?? "")?.volume, "secret", "secretName")).toBe("pgfed-api-tokens");
    for (const r of example.regions) expect(r.kubeconfig, r.name).toEqual({});
  });

  it("gives every region of the config exactly one overlay", () => {
    const { config } = configOf(objectsOf("eu-west"));
    expect(config.regions.map((r) => r.name).sort()).toEqual([...REGIONS].sort());
  });
});
