import { describe, expect, it } from "vitest";
import { PgfedError } from "../../../src/errors.js";
import {
  CNPG_API_VERSION,
  CNPG_GROUP,
  CNPG_KIND,
  CNPG_PLURAL,
  CNPG_VERSION,
  FENCED_INSTANCES_ANNOTATION,
  PHASES,
  PROMOTION_TOKEN_MISMATCH_REASON,
  parseCluster,
  safeParseCluster,
} from "../../../src/cnpg/index.js";

/** A Cluster as the API server returns it, with fields pgfed does not model (and one CNPG might add later). */
function rawCluster(): Record<string, unknown> {
  return {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: {
      name: "pg-eu",
      namespace: "db",
      uid: "0b6b0c1e-8a43-4d4e-9d0e-0c2b1f6a7e11",
      resourceVersion: "48213",
      generation: 4,
      labels: { team: "orders" },
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": "{}" },
      creationTimestamp: "2026-11-24T12:00:00Z",
      managedFields: [{ manager: "kubectl", operation: "Apply" }],
    },
    spec: {
      instances: 3,
      imageName: "ghcr.io/cloudnative-pg/postgresql:15",
      storage: { size: "10Gi" },
      replica: { self: "pg-eu", primary: "pg-eu", source: "pg-us" },
      externalClusters: [
        { name: "pg-eu", plugin: { name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: "eu" } } },
        { name: "pg-us", connectionParameters: { host: "pg-us-rw.db", dbname: "postgres" }, barmanObjectStore: { destinationPath: "s3://us" } },
      ],
      bootstrap: { initdb: { database: "app" } },
      postgresql: { parameters: { archive_timeout: "5min", max_connections: "200" } },
      plugins: [{ name: "barman-cloud.cloudnative-pg.io", isWALArchiver: true }],
    },
    status: {
      phase: "Cluster in healthy state",
      currentPrimary: "pg-eu-1",
      targetPrimary: "pg-eu-1",
      timelineID: 1,
      systemID: "7711729981959530990",
      instances: 3,
      readyInstances: 3,
      conditions: [{ type: "Ready", status: "True", reason: "ClusterIsReady", message: "Cluster is Ready", lastTransitionTime: "2026-11-24T12:01:00Z" }],
      switchReplicaClusterStatus: {},
      writeService: "pg-eu-rw",
      certificates: { expirations: {} },
    },
  };
}

function parseError(obj: unknown): PgfedError {
  const result = safeParseCluster(obj);
  if (result.ok) throw new Error("expected the object to be refused");
  return result.error;
}

describe("CNPG resource names", () => {
  it("match the contract", () => {
    expect([CNPG_GROUP, CNPG_VERSION, CNPG_API_VERSION, CNPG_KIND, CNPG_PLURAL]).toEqual([
      "postgresql.cnpg.io",
      "v1",
      "postgresql.cnpg.io/v1",
      "Cluster",
      "clusters",
    ]);
    expect(CNPG_API_VERSION).toBe(`${CNPG_GROUP}/${CNPG_VERSION}`);
    expect(FENCED_INSTANCES_ANNOTATION).toBe("cnpg.io/fencedInstances");
  });

  it("spells every phase and the token mismatch reason exactly as CNPG writes them", () => {
    expect(PHASES).toEqual({
      healthy: "Cluster in healthy state",
      switchover: "Switchover in progress",
      failingOver: "Failing over",
      promoting: "Promoting to primary cluster",
      unrecoverable: "Cluster is unrecoverable and needs manual intervention",
      settingUpPrimary: "Setting up primary",
      creatingReplica: "Creating a new replica",
      waitingForInstances: "Waiting for the instances to become active",
    });
    expect(PROMOTION_TOKEN_MISMATCH_REASON).toBe("Promotion token content is not correct for current instance");
  });
});

describe("parseCluster", () => {
  it("returns an object equal to its input, unknown fields included", () => {
    const raw = rawCluster();
    expect(parseCluster(raw)).toEqual(raw);
  });

  it("types the fields it models", () => {
    const c = parseCluster(rawCluster());
    expect(c.spec.replica?.primary).toBe("pg-eu");
    expect(c.spec.externalClusters?.[1]?.connectionParameters?.host).toBe("pg-us-rw.db");
    expect(c.status?.timelineID).toBe(1);
    expect(c.status?.conditions?.[0]?.status).toBe("True");
  });

  it("accepts a Cluster that has no status yet and no replica stanza", () => {
    const raw = rawCluster();
    delete raw.status;
    (raw.spec as Record<string, unknown>).replica = undefined;
    expect(parseCluster(raw).status).toBeUndefined();
  });

  it("refuses with code cnpg.invalid_cluster and names the path of a wrongly typed field", () => {
    const raw = rawCluster();
    (raw.spec as { replica: Record<string, unknown> }).replica.primary = 7;
    const err = parseError(raw);
    expect(err).toBeInstanceOf(PgfedError);
    expect(err.code).toBe("cnpg.invalid_cluster");
    expect(err.message).toContain("db/pg-eu");
    expect(err.message).toContain("spec.replica.primary: expected string");
  });

  it("names every problem, with array indexes in the path", () => {
    const raw = rawCluster();
    (raw.spec as { externalClusters: Record<string, unknown>[] }).externalClusters[1] = { connectionParameters: { port: 5432 } };
    (raw.status as { conditions: Record<string, unknown>[] }).conditions[0] = { type: "Ready", status: "yes" };
    (raw.status as Record<string, unknown>).timelineID = "1";
    const err = parseError(raw);
    expect(err.message).toContain("spec.externalClusters[1].name: required (expected string)");
    expect(err.message).toContain("spec.externalClusters[1].connectionParameters.port: expected string");
    expect(err.message).toContain('status.conditions[0].status: expected one of "True"|"False"|"Unknown"');
    expect(err.message).toContain("status.timelineID: expected number");
    expect(err.details.problems).toHaveLength(4);
  });

  it("refuses a replica stanza without the source CNPG requires", () => {
    const raw = rawCluster();
    (raw.spec as Record<string, unknown>).replica = { primary: "pg-us" };
    expect(() => parseCluster(raw)).toThrow("spec.replica.source: required (expected string)");
  });

  it("refuses an object of another kind", () => {
    const raw = { ...rawCluster(), kind: "Pooler" };
    expect(() => parseCluster(raw)).toThrow('kind: expected "Cluster"');
  });

  it("refuses something that is not an object at all without crashing", () => {
    expect(parseError(null).message).toBe("invalid CNPG Cluster: (root): expected object, received null");
    expect(parseError({ spec: {} }).message).toContain("metadata: required (expected object)");
  });
});
