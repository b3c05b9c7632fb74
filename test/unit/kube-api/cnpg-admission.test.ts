import { describe, expect, it } from "vitest";
import { encodeToken } from "../../../src/cnpg/index.js";
import { cnpgAdmission } from "../../../src/lab/kube-api/cnpg-admission.js";
import type { KubeObject } from "../../../src/lab/kube-api/index.js";

const TOKEN = encodeToken({
  latestCheckpointTimelineID: "1",
  redoWalFile: "000000010000000000000005",
  databaseSystemIdentifier: "7390000000000000001",
  latestCheckpointREDOLocation: "0/5000028",
  timeOfLatestCheckpoint: "Mon 01 Jan 2026 00:00:00 UTC",
  operatorVersion: "1.25.0",
});

function member(name: string, replica: Record<string, unknown>, status?: Record<string, unknown>): KubeObject {
  const o: KubeObject = {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name, namespace: "db" },
    spec: { instances: 1, replica, externalClusters: [{ name: "pg-eu" }, { name: "pg-us" }] },
  };
  if (status) o.status = status;
  return o;
}

const fields = (causes: Array<{ field: string }>) => causes.map((c) => c.field);

describe("CNPG admission", () => {
  it("admits a distributed topology whose names are all external clusters", () => {
    expect(cnpgAdmission("CREATE", "clusters", member("pg-eu", { primary: "pg-eu", source: "pg-us" }))).toEqual([]);
    expect(cnpgAdmission("CREATE", "clusters", member("pg-us", { self: "pg-us", primary: "pg-eu", source: "pg-eu" }))).toEqual([]);
  });

  it("leaves other resources alone", () => {
    expect(cnpgAdmission("CREATE", "secrets", { apiVersion: "v1", kind: "Secret", metadata: { name: "x" } })).toEqual([]);
  });

  it("refuses self, primary or source that no external cluster names", () => {
    const c = cnpgAdmission("CREATE", "clusters", member("pg-ap", { primary: "pg-xx", source: "pg-yy" }));
    expect(fields(c).sort()).toEqual(["spec.replica.primary", "spec.replica.self", "spec.replica.source"]);
    expect(c.find((x) => x.field === "spec.replica.primary")?.message).toContain('"pg-xx"');
  });

  it("refuses a replica stanza without source, and a Cluster without spec", () => {
    expect(fields(cnpgAdmission("CREATE", "clusters", member("pg-eu", { primary: "pg-eu" })))).toEqual(["spec.replica.source"]);
    expect(fields(cnpgAdmission("CREATE", "clusters", { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", metadata: { name: "x" } }))).toEqual(["spec"]);
  });

  it("refuses enabled together with primary", () => {
    expect(fields(cnpgAdmission("CREATE", "clusters", member("pg-eu", { enabled: true, primary: "pg-eu", source: "pg-us" })))).toEqual(["spec.replica.enabled"]);
    expect(cnpgAdmission("CREATE", "clusters", member("pg-eu", { enabled: true, source: "pg-us" }))).toEqual([]);
  });

  it("accepts a promotion token only on a cluster becoming primary, without minApplyDelay, well formed", () => {
    expect(cnpgAdmission("UPDATE", "clusters", member("pg-us", { primary: "pg-us", source: "pg-eu", promotionToken: TOKEN }))).toEqual([]);
    expect(fields(cnpgAdmission("UPDATE", "clusters", member("pg-us", { primary: "pg-eu", source: "pg-eu", promotionToken: TOKEN })))).toEqual(["spec.replica.promotionToken"]);
    expect(fields(cnpgAdmission("UPDATE", "clusters", member("pg-us", { primary: "pg-us", source: "pg-eu", promotionToken: TOKEN, minApplyDelay: "1h" })))).toEqual([
      "spec.replica.minApplyDelay",
    ]);
    const bad = cnpgAdmission("UPDATE", "clusters", member("pg-us", { primary: "pg-us", source: "pg-eu", promotionToken: "not-a-token" }));
    expect(fields(bad)).toEqual(["spec.replica.promotionToken"]);
    expect(bad[0]?.message).toContain("invalid promotionToken format");
  });

  it("refuses a role change while a replica cluster switch is in progress", () => {
    const old = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { switchReplicaClusterStatus: { inProgress: true } });
    const next = member("pg-eu", { primary: "pg-us", source: "pg-us" }, old.status as Record<string, unknown>);
    expect(fields(cnpgAdmission("UPDATE", "clusters", next, old))).toEqual(["spec.replica.primary"]);
    const done = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { switchReplicaClusterStatus: { inProgress: false } });
    expect(cnpgAdmission("UPDATE", "clusters", next, done)).toEqual([]);
    // Other spec changes stay allowed during the switch.
    const scaled = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, old.status as Record<string, unknown>);
    (scaled.spec as { instances: number }).instances = 3;
    expect(cnpgAdmission("UPDATE", "clusters", scaled, old)).toEqual([]);
  });

  it("judges a spec write on the spec even when the stored status would not parse", () => {
    const old = member("pg-eu", { primary: "pg-eu", source: "pg-us" }, { timelineID: "two", switchReplicaClusterStatus: { inProgress: true } });
    const next = member("pg-eu", { primary: "pg-us", source: "pg-us" }, old.status as Record<string, unknown>);
    expect(fields(cnpgAdmission("UPDATE", "clusters", next, old))).toEqual(["spec.replica.primary"]);
  });
});
