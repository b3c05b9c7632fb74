import { describe, expect, it } from "vitest";
import { encodeToken } from "../../../src/cnpg/index.js";
import { cnpgAdmission, cnpgValidate } from "../../../src/lab/kube-api/cnpg-admission.js";
import type { AdmissionDenial, KubeObject } from "../../../src/lab/kube-api/index.js";
import { HAVE_UPSTREAM, sampleClusters, UPSTREAM_MISSING } from "./cnpg-upstream.js";

const TOKEN = encodeToken({
  latestCheckpointTimelineID: "1",
  redoWalFile: "000000010000000000000005",
  databaseSystemIdentifier: "7390000000000000001",
  latestCheckpointREDOLocation: "0/5000028",
  timeOfLatestCheckpoint: "Mon 01 Jan 2026 00:00:00 UTC",
  operatorVersion: "1.25.0",
});

const streaming = (name: string) => ({ name, connectionParameters: { host: `${name}-rw.db.svc`, user: "streaming_replica", dbname: "postgres" } });

function member(name: string, replica: Record<string, unknown>, o: { status?: Record<string, unknown>; bootstrap?: Record<string, unknown>; externalClusters?: unknown[] } = {}): KubeObject {
  const obj: KubeObject = {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name, namespace: "db" },
    spec: { instances: 1, replica, externalClusters: o.externalClusters ?? [streaming("pg-eu"), streaming("pg-us")], ...(o.bootstrap ? { bootstrap: o.bootstrap } : {}) },
  };
  if (o.status) obj.status = o.status;
  return obj;
}

const fields = (causes: Array<{ field: string }>) => causes.map((c) => c.field);
const basebackup = { pg_basebackup: { source: "pg-eu" } };

describe("CNPG admission (internal/webhook/v1/cluster_webhook.go)", () => {
  it("admits a distributed topology whose names are all external clusters", () => {
    expect(cnpgValidate("CREATE", member("pg-eu", { primary: "pg-eu", source: "pg-us" }))).toEqual([]);
    expect(cnpgValidate("CREATE", member("pg-us", { self: "pg-us", primary: "pg-eu", source: "pg-eu" }, { bootstrap: basebackup }))).toEqual([]);
  });

  it("answers as the webhook vcluster.cnpg.io, naming the group as CNPG does on create and on update", () => {
    const created = cnpgAdmission("CREATE", "clusters", member("pg-eu", { primary: "pg-eu", source: "pg-xx" })) as AdmissionDenial;
    expect(created).toMatchObject({ webhook: "vcluster.cnpg.io", group: "postgresql.cnpg.io" });
    expect(created.causes).toEqual([{ field: "spec.replicaCluster.primaryServerName", reason: "FieldValueInvalid", message: 'Invalid value: "pg-xx": External cluster pg-xx not found' }]);
    expect((cnpgAdmission("UPDATE", "clusters", member("pg-eu", { primary: "pg-eu", source: "pg-us" })) as AdmissionDenial).group).toBe("cluster.cnpg.io");
    expect((cnpgAdmission("CREATE", "secrets", { apiVersion: "v1", kind: "Secret", metadata: { name: "x" } }) as AdmissionDenial).causes).toEqual([]);
  });

  it("refuses source, primary and self that no external cluster names; self only when set", () => {
    const c = cnpgValidate("CREATE", member("pg-ap", { self: "pg-zz", primary: "pg-xx", source: "pg-yy" }, { bootstrap: basebackup }));
    expect(fields(c).sort()).toEqual(["spec.replicaCluster.primary", "spec.replicaCluster.primaryServerName", "spec.replicaCluster.self"]);
    // self unset defaults to metadata.name, which CNPG does not look up (cluster-replica-tls.yaml relies on it).
    expect(cnpgValidate("CREATE", member("pg-ap", { primary: "pg-eu", source: "pg-eu" }, { bootstrap: basebackup }))).toEqual([]);
  });

  it("refuses an external cluster without connectionParameters, barmanObjectStore or plugin", () => {
    const bare = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { externalClusters: [streaming("pg-eu"), { name: "pg-us" }] });
    expect(cnpgValidate("CREATE", bare)).toEqual([{ field: "spec.externalClusters[1]", reason: "FieldValueRequired", message: "Required value: one of connectionParameters, plugin and barmanObjectStore is required" }]);
    for (const method of [{ plugin: { name: "barman-cloud.cloudnative-pg.io" } }, { barmanObjectStore: { destinationPath: "s3://b/" } }, { connectionParameters: {} }]) {
      expect(cnpgValidate("CREATE", member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { externalClusters: [streaming("pg-eu"), { name: "pg-us", ...method }] }))).toEqual([]);
    }
  });

  it("refuses duplicate external cluster names and names that are not safe path components", () => {
    const dup = cnpgValidate("CREATE", member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { externalClusters: [streaming("pg-eu"), streaming("pg-us"), streaming("pg-us")] }));
    expect(dup).toEqual([expect.objectContaining({ field: "spec.externalClusters", message: expect.stringContaining("the list of external clusters contains duplicate values") as string })]);
    const unsafe = cnpgValidate("CREATE", member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { externalClusters: [streaming("pg-eu"), streaming("pg-us"), { ...streaming("../x"), sslKey: { name: "a/b", key: "tls.key" } }] }));
    expect(fields(unsafe)).toEqual(["spec.externalClusters[2].name", "spec.externalClusters[2].sslKey.name"]);
  });

  it("refuses to create a replica cluster bootstrapped with initdb or with no bootstrap (defaulted to initdb), but not to update one", () => {
    for (const bootstrap of [undefined, { initdb: { database: "app" } }]) {
      const c = member("pg-us", { primary: "pg-eu", source: "pg-eu" }, bootstrap ? { bootstrap } : {});
      expect(cnpgValidate("CREATE", c)).toEqual([{ field: "spec.replicaCluster", reason: "FieldValueInvalid", message: 'Invalid value: "pg-eu": replica mode bootstrap is compatible only with pg_basebackup or recovery' }]);
      // A demoted primary keeps its initdb bootstrap: CNPG checks this on creation only.
      expect(cnpgValidate("UPDATE", c, member("pg-us", { primary: "pg-us", source: "pg-eu" }, bootstrap ? { bootstrap } : {}))).toEqual([]);
    }
    expect(cnpgValidate("CREATE", member("pg-us", { enabled: true, source: "pg-eu" }, { bootstrap: { recovery: { source: "pg-eu" } } }))).toEqual([]);
  });

  it("refuses bootstrap sources that are not listed, a recovery source without a way to read it, and two bootstrap methods", () => {
    expect(cnpgValidate("CREATE", member("pg-us", { primary: "pg-eu", source: "pg-eu" }, { bootstrap: { pg_basebackup: { source: "pg-zz" } } }))).toEqual([
      { field: "spec.bootstrap.pg_basebackup.source", reason: "FieldValueInvalid", message: 'Invalid value: "pg-zz": External cluster pg-zz not found' },
    ]);
    expect(fields(cnpgValidate("CREATE", member("pg-us", { primary: "pg-eu", source: "pg-eu" }, { bootstrap: { recovery: { source: "pg-zz" } } })))).toEqual(["spec.bootstrap.recovery.source", "spec.bootstrap.recovery.source"]);
    // A recovery from a Backup object names no source: nothing to look up.
    expect(cnpgValidate("CREATE", member("pg-us", { primary: "pg-eu", source: "pg-eu" }, { bootstrap: { recovery: { backup: { name: "b1" } } } }))).toEqual([]);
    expect(cnpgValidate("CREATE", member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { bootstrap: { initdb: {}, pg_basebackup: { source: "pg-us" } } }))).toEqual([
      { field: "spec.bootstrap", reason: "FieldValueForbidden", message: "Forbidden: Only one bootstrap method can be specified at a time" },
    ]);
  });

  it("refuses enabled together with primary", () => {
    expect(fields(cnpgValidate("CREATE", member("pg-eu", { enabled: false, primary: "pg-eu", source: "pg-us" })))).toEqual(["spec.replicaCluster.enabled"]);
    expect(cnpgValidate("CREATE", member("pg-eu", { enabled: true, source: "pg-us" }, { bootstrap: basebackup }))).toEqual([]);
  });

  it("accepts a promotion token only on a primary, without minApplyDelay, well formed", () => {
    expect(cnpgValidate("UPDATE", member("pg-us", { primary: "pg-us", source: "pg-eu", promotionToken: TOKEN }))).toEqual([]);
    expect(fields(cnpgValidate("UPDATE", member("pg-us", { primary: "pg-eu", source: "pg-eu", promotionToken: TOKEN })))).toEqual(["spec.replicaCluster.token"]);
    expect(fields(cnpgValidate("UPDATE", member("pg-us", { primary: "pg-us", source: "pg-eu", promotionToken: TOKEN, minApplyDelay: "1h" })))).toEqual(["spec.replicaCluster.minApplyDelay"]);
    const bad = cnpgValidate("UPDATE", member("pg-us", { primary: "pg-us", source: "pg-eu", promotionToken: "not-a-token" }));
    expect(fields(bad)).toEqual(["spec.replicaCluster.token"]);
    expect(bad[0]?.message).toContain("Invalid promotionToken format");
  });

  it("refuses a role change while a replica cluster switch is in progress, and only a role change", () => {
    const inProgress = { switchReplicaClusterStatus: { inProgress: true } };
    const old = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { status: inProgress });
    const demoted = member("pg-eu", { primary: "pg-us", source: "pg-us" }, { status: inProgress });
    expect(cnpgValidate("UPDATE", demoted, old)).toEqual([{ field: "spec.replica.enabled", reason: "FieldValueForbidden", message: "Forbidden: cannot modify the field while there is an ongoing operation to enable the replica cluster" }]);
    expect(cnpgValidate("UPDATE", member("pg-eu", { primary: "pg-us", source: "pg-us" }, { status: { switchReplicaClusterStatus: { inProgress: false } } }), old)).toEqual([]);
    // A replica following another primary keeps its role: allowed during a switch.
    const replica = member("pg-ap", { primary: "pg-eu", source: "pg-eu" }, { status: inProgress, bootstrap: basebackup });
    const follows = member("pg-ap", { primary: "pg-us", source: "pg-us" }, { status: inProgress, bootstrap: basebackup });
    expect(cnpgValidate("UPDATE", follows, replica)).toEqual([]);
    const scaled = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { status: inProgress });
    (scaled.spec as { instances: number }).instances = 3;
    expect(cnpgValidate("UPDATE", scaled, old)).toEqual([]);
  });

  it("judges a spec write on the spec even when the stored status would not parse", () => {
    const status = { timelineID: "two", switchReplicaClusterStatus: { inProgress: true } };
    const old = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { status });
    expect(fields(cnpgValidate("UPDATE", member("pg-eu", { primary: "pg-us", source: "pg-us" }, { status }), old))).toEqual(["spec.replica.enabled"]);
  });

  it.skipIf(!HAVE_UPSTREAM)("admits every Cluster of CNPG's samples", () => {
    if (!HAVE_UPSTREAM) console.warn(UPSTREAM_MISSING);
    const samples = sampleClusters();
    expect(samples.map((s) => s.file)).toEqual(expect.arrayContaining(["cluster-replica-tls.yaml", "dc/cluster-dc-a.yaml", "dc/cluster-dc-b.yaml", "cluster-replica-async.yaml"]));
    for (const { file, cluster } of samples) {
      expect({ file, causes: cnpgValidate("CREATE", { ...cluster, metadata: { ...cluster.metadata, namespace: "db" } }) }).toEqual({ file, causes: [] });
    }
  });
});
