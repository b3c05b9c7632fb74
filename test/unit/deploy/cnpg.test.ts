/**
 * deploy/cnpg: the example CNPG manifests form one consistent distributed topology (CNPG.md) that
 * pgfed's own parsers accept, and pgfed's example config names exactly those Clusters and secrets.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseCluster, type Cluster } from "../../../src/cnpg/cluster.js";
import { recloneManifest } from "../../../src/cnpg/reclone.js";
import { parseConfigText, type Config } from "../../../src/config.js";
import { cnpgValidate, type KubeObject as StoredObject } from "../../../src/lab/kube-api/index.js";
import { REGIONS, REPO, arrayAt, at, kubectlAvailable, ofKind, render, stringAt, type KubeObject, type Region } from "./helpers.js";

const hasKubectl = await kubectlAvailable();
if (!hasKubectl) console.warn("SKIPPED test/unit/deploy/cnpg.test.ts: kubectl is not installed (apt-get install kubernetes-client)");

const BARMAN_PLUGIN = "barman-cloud.cloudnative-pg.io";

interface Member {
  region: Region;
  cluster: Cluster;
  objects: KubeObject[];
}

const selfOf = (c: Cluster): string => c.spec.replica?.self ?? c.metadata.name;
const externalNames = (c: Cluster): string[] => (c.spec.externalClusters ?? []).map((e) => e.name);

function pluginParams(v: unknown): { barmanObjectName: string | undefined; serverName: string | undefined } {
  return { barmanObjectName: stringAt(v, "parameters", "barmanObjectName"), serverName: stringAt(v, "parameters", "serverName") };
}

describe.skipIf(!hasKubectl)("deploy/cnpg example topology", () => {
  const members: Member[] = [];
  let config: Config;
  const docs = readFileSync(join(REPO, "docs/operations.md"), "utf8");

  beforeAll(async () => {
    for (const region of REGIONS) {
      const objects = await render(`deploy/cnpg/${region}`);
      const clusters = ofKind(objects, "Cluster");
      expect(clusters, `deploy/cnpg/${region} must hold one Cluster`).toHaveLength(1);
      members.push({ region, cluster: parseCluster(clusters[0]), objects });
    }
    config = parseConfigText(readFileSync(join(REPO, "deploy/cnpg/pgfed.yaml"), "utf8"), "deploy/cnpg/pgfed.yaml");
  });

  it("parses every Cluster with pgfed's own parseCluster as postgresql.cnpg.io/v1", () => {
    expect(members).toHaveLength(REGIONS.length);
    for (const m of members) {
      expect(m.cluster.apiVersion).toBe("postgresql.cnpg.io/v1");
      expect(m.cluster.metadata.namespace).toBe("db");
      expect(m.cluster.status).toBeUndefined();
    }
  });

  it("has exactly one primary, and every member names the same primary", () => {
    const primaries = members.filter((m) => m.cluster.spec.replica?.primary === selfOf(m.cluster));
    expect(primaries.map((m) => m.cluster.metadata.name)).toEqual(["pg-eu"]);
    expect(new Set(members.map((m) => m.cluster.spec.replica?.primary)).size).toBe(1);
  });

  it("names self, primary and source as externalClusters entries, and every member lists every member", () => {
    const all = members.map((m) => selfOf(m.cluster)).sort();
    for (const { cluster: c } of members) {
      const r = c.spec.replica;
      if (!r) throw new Error(`${c.metadata.name} has no spec.replica`);
      expect(r.self).toBe(c.metadata.name);
      const names = externalNames(c);
      expect(new Set(names).size, `${c.metadata.name}: duplicate externalClusters`).toBe(names.length);
      for (const field of ["self", "primary", "source"] as const) expect(names, `${c.metadata.name}: spec.replica.${field}`).toContain(r[field]);
      expect(r.source).not.toBe(selfOf(c));
      expect([...names].sort()).toEqual(all);
      // A distributed topology never uses the legacy switch, and nobody starts with a token.
      expect(r.enabled).toBeUndefined();
      expect(r.promotionToken).toBeUndefined();
      expect(r.minApplyDelay).toBeUndefined();
    }
  });

  it("bootstraps the primary with initdb and each replica cluster from the primary", () => {
    for (const { cluster: c } of members) {
      const isPrimary = c.spec.replica?.primary === selfOf(c);
      const b = c.spec.bootstrap;
      if (isPrimary) {
        expect(b?.initdb, c.metadata.name).toBeDefined();
      } else {
        const source = b?.recovery?.source ?? b?.pg_basebackup?.source;
        expect(source, `${c.metadata.name}: bootstrap.recovery or pg_basebackup`).toBe(c.spec.replica?.primary);
        expect(externalNames(c)).toContain(source);
      }
    }
  });

  it("archives each member into its own store, and describes each member's archive the same way everywhere", () => {
    const archiveOf = new Map<string, { barmanObjectName: string | undefined; serverName: string | undefined }>();
    for (const { cluster: c, objects } of members) {
      const archivers = (c.spec.plugins ?? []).filter((p) => p.name === BARMAN_PLUGIN && at(p, "isWALArchiver") === true);
      expect(archivers, `${c.metadata.name}: one WAL archiver plugin`).toHaveLength(1);
      const own = pluginParams(archivers[0]);
      archiveOf.set(selfOf(c), own);
      const stores = ofKind(objects, "ObjectStore").map((o) => o.metadata.name);
      for (const e of c.spec.externalClusters ?? []) {
        expect(stringAt(e, "plugin", "name")).toBe(BARMAN_PLUGIN);
        // Each store an external cluster reads from exists in this region.
        expect(stores, `${c.metadata.name}: ObjectStore of ${e.name}`).toContain(pluginParams(e.plugin).barmanObjectName);
      }
      const selfEntry = (c.spec.externalClusters ?? []).find((e) => e.name === selfOf(c));
      expect(pluginParams(selfEntry?.plugin)).toEqual(own);
    }
    const serverNames = [...archiveOf.values()].map((a) => a.serverName);
    expect(new Set(serverNames).size, "archive paths must differ").toBe(members.length);
    for (const { cluster: c } of members) {
      for (const e of c.spec.externalClusters ?? []) expect(pluginParams(e.plugin), `${c.metadata.name} → ${e.name}`).toEqual(archiveOf.get(e.name));
    }
  });

  it("streams from every member over TLS as streaming_replica, the same way in every region", () => {
    const entryOf = new Map<string, string>();
    for (const { cluster: c } of members) {
      for (const e of c.spec.externalClusters ?? []) {
        const params = at(e, "connectionParameters");
        expect(stringAt(params, "user"), `${c.metadata.name} → ${e.name}`).toBe("streaming_replica");
        expect(stringAt(params, "sslmode")).toBe("verify-full");
        expect(stringAt(params, "dbname")).toBe("postgres");
        expect(stringAt(params, "host")).toMatch(new RegExp(`^${e.name}-rw\\.`));
        expect(stringAt(e, "sslKey", "name")).toBe(`${e.name}-replication`);
        expect(stringAt(e, "sslCert", "name")).toBe(`${e.name}-replication`);
        expect(stringAt(e, "sslRootCert", "name")).toBe(`${e.name}-ca`);
        const same = JSON.stringify({ params, key: at(e, "sslKey"), cert: at(e, "sslCert"), root: at(e, "sslRootCert") });
        expect(entryOf.get(e.name) ?? same, `${e.name} is described the same way everywhere`).toBe(same);
        entryOf.set(e.name, same);
      }
    }
  });

  it("lets a rejoin re-clone every replica and the primary: pgfed's re-clone manifest bootstraps with pg_basebackup over a streaming entry that CNPG admits", () => {
    for (const { cluster: c } of members) {
      for (const other of members.filter((m) => m.cluster !== c)) {
        const primary = selfOf(other.cluster);
        const plan = recloneManifest(c, { primary, epoch: 7 });
        const spec = plan.manifest.spec as Cluster["spec"];
        expect(spec.bootstrap?.pg_basebackup?.source).toBe(primary);
        const entry = (spec.externalClusters ?? []).find((e) => e.name === primary);
        expect(at(entry, "connectionParameters", "host"), `${c.metadata.name} re-cloned from ${primary}`).toBeDefined();
        expect(cnpgValidate("CREATE", plan.manifest as unknown as StoredObject), `${c.metadata.name} from ${primary}`).toEqual([]);
      }
    }
  });

  it("labels every member namespace for Pod Security Admission: baseline enforced, restricted warned and audited", () => {
    for (const m of members) {
      const ns = m.objects.find((o) => o.kind === "Namespace" && o.metadata.name === "db");
      expect(stringAt(ns, "metadata", "labels", "pod-security.kubernetes.io/enforce"), m.region).toBe("baseline");
      for (const mode of ["warn", "audit"]) expect(stringAt(ns, "metadata", "labels", `pod-security.kubernetes.io/${mode}`), `${m.region} ${mode}`).toBe("restricted");
    }
  });

  it("lets the monitoring role log in: pg_hba allows it and the managed role uses the member's secret", () => {
    const sql = readFileSync(join(REPO, "deploy/postgres/monitoring-role.sql"), "utf8");
    const role = /CREATE ROLE (\w+)/.exec(sql)?.[1];
    expect(role).toBe("pgfed_monitor");
    for (const { cluster: c } of members) {
      expect(arrayAt(c.spec, "postgresql", "pg_hba").map(String).some((l) => l.includes(role ?? "?"))).toBe(true);
      const managed = arrayAt(c.spec, "managed", "roles").find((r) => stringAt(r, "name") === role);
      expect(arrayAt(managed, "inRoles")).toContain("pg_monitor");
      expect(at(managed, "login")).toBe(true);
    }
    const primary = members.find((m) => m.cluster.spec.replica?.primary === selfOf(m.cluster));
    const postInit = arrayAt(primary?.cluster.spec, "bootstrap", "initdb", "postInitSQL").map(String).join("\n");
    expect(postInit).toContain("GRANT pg_monitor TO pgfed_monitor");
    expect(postInit).toContain("GRANT EXECUTE ON FUNCTION pg_catalog.pg_switch_wal() TO pgfed_monitor");
  });

  it("matches pgfed's config: one member per Cluster, in its region and namespace, its basic-auth secret created by the documented command, never rendered", () => {
    const fed = config.federations.find((f) => f.name === "orders");
    if (!fed) throw new Error("no federation orders in deploy/cnpg/pgfed.yaml");
    expect(fed.members).toHaveLength(members.length);
    for (const m of members) {
      const cfg = fed.members.find((x) => x.cluster === m.cluster.metadata.name);
      if (!cfg) throw new Error(`no member for Cluster ${m.cluster.metadata.name}`);
      expect(cfg.region).toBe(m.region);
      expect(cfg.namespace).toBe(m.cluster.metadata.namespace);
      // The agent's topology names default to the member names (src/agent/agent.ts).
      expect(cfg.name).toBe(selfOf(m.cluster));
      // Not rendered (a re-apply would reset the password): docs/operations.md creates it, basic-auth, in the member's region.
      expect(m.objects.filter((o) => o.kind === "Secret").map((o) => o.metadata.name)).not.toContain(cfg.postgres.secretRef);
      expect(docs).toContain(`${m.region}:${m.cluster.metadata.name}`);
      expect(cfg.postgres.secretRef).toBe(`${m.cluster.metadata.name}-monitor`);
      const managed = arrayAt(m.cluster.spec, "managed", "roles").find((r) => stringAt(r, "name") === "pgfed_monitor");
      expect(stringAt(managed, "passwordSecret", "name")).toBe(cfg.postgres.secretRef);
    }
    expect(docs).toContain("create secret generic $m-monitor --type=kubernetes.io/basic-auth \\\n    --from-literal=username=pgfed_monitor");
  });
});
