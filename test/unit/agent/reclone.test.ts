import { describe, expect, it } from "vitest";
import { planReclone } from "../../../src/agent/index.js";
import { archiveServerName, parseCluster, recloneManifest, recloneServerName, type Cluster } from "../../../src/cnpg/index.js";

function diverged(opts: { archive?: "plugin" | "bos" | "none"; fenced?: boolean; recloned?: string; primary?: string; phase?: string } = {}): Cluster {
  const archive = opts.archive ?? "plugin";
  return parseCluster({
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: {
      name: "pg-eu",
      namespace: "db",
      uid: "u-1",
      resourceVersion: "9",
      labels: { app: "orders" },
      annotations: {
        ...(opts.fenced === false ? {} : { "cnpg.io/fencedInstances": '["*"]' }),
        ...(opts.recloned ? { "pgfed.io/recloned-for-epoch": opts.recloned } : {}),
      },
    },
    spec: {
      instances: 3,
      bootstrap: { initdb: { database: "app" } },
      replica: { self: "pg-eu", primary: opts.primary ?? "pg-us", source: "pg-us", promotionToken: "dG9rZW4=" },
      externalClusters: [
        { name: "pg-eu", plugin: { name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: "store", serverName: "pg-eu" } } },
        { name: "pg-us", plugin: { name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: "store", serverName: "pg-us" } } },
      ],
      ...(archive === "plugin" ? { plugins: [{ name: "barman-cloud.cloudnative-pg.io", isWALArchiver: true, parameters: { barmanObjectName: "store" } }] } : {}),
      ...(archive === "bos" ? { backup: { barmanObjectStore: { destinationPath: "s3://b/", serverName: "pg-eu-e3" } } } : {}),
    },
    status: { phase: opts.phase ?? "Cluster in healthy state", conditions: [{ type: "Ready", status: opts.phase && opts.phase !== "Cluster in healthy state" ? "False" : "True" }] },
  });
}

describe("recloneManifest", () => {
  it("recreates a diverged member as an unfenced replica cluster of the primary, cloned from it, archiving under a fresh server name", () => {
    const plan = recloneManifest(diverged(), { primary: "pg-us", epoch: 4 });
    const c = parseCluster(plan.manifest);
    expect(plan).toMatchObject({ archive: "plugin", keptServerName: "pg-eu", newServerName: "pg-eu-e4" });
    expect(c.spec.replica).toEqual({ self: "pg-eu", primary: "pg-us", source: "pg-us" });
    expect(c.spec.bootstrap).toEqual({ pg_basebackup: { source: "pg-us" } });
    expect(archiveServerName(c)).toBe("pg-eu-e4");
    expect(c.spec.externalClusters?.find((e) => e.name === "pg-eu")?.plugin).toMatchObject({ parameters: { serverName: "pg-eu-e4" } });
    expect(c.spec.externalClusters?.find((e) => e.name === "pg-us")?.plugin).toMatchObject({ parameters: { serverName: "pg-us" } });
    expect(c.metadata.annotations).toEqual({ "pgfed.io/recloned-for-epoch": "4", "pgfed.io/diverged-archive": "pg-eu" });
    expect(c.metadata).not.toHaveProperty("uid");
    expect(c.metadata).not.toHaveProperty("resourceVersion");
    expect(c.metadata.labels).toEqual({ app: "orders" });
    expect(c.spec.instances).toBe(3);
    expect(c).not.toHaveProperty("status");
  });

  it("replaces an earlier rejoin's suffix in the legacy barmanObjectStore server name", () => {
    const plan = recloneManifest(diverged({ archive: "bos" }), { primary: "pg-us", epoch: 7 });
    expect(plan).toMatchObject({ archive: "barmanObjectStore", keptServerName: "pg-eu-e3", newServerName: "pg-eu-e7" });
    expect(parseCluster(plan.manifest).spec.backup).toEqual({ barmanObjectStore: { destinationPath: "s3://b/", serverName: "pg-eu-e7" } });
    expect(recloneServerName("pg-eu-e7", 7)).toBe("pg-eu-e7");
  });

  it("refuses to clone a member from itself or from a member its spec does not list", () => {
    expect(() => recloneManifest(diverged(), { primary: "pg-eu", epoch: 2 })).toThrow(/from itself/);
    expect(() => recloneManifest(diverged(), { primary: "pg-ap", epoch: 2 })).toThrow(/no entry named pg-ap/);
  });
});

describe("planReclone (level-triggered steps)", () => {
  const opts = { epoch: 4, primary: "pg-us", primaryMember: "us", who: "orders/eu" };
  it("fences first, then deletes, then creates, then waits for a healthy replica cluster", () => {
    expect(planReclone(diverged({ fenced: false }), opts).action).toBe("fence");
    expect(planReclone(diverged(), opts).action).toBe("delete");
    expect(planReclone(undefined, opts).action).toBe("create");
    expect(planReclone(diverged({ fenced: false, recloned: "4", phase: "Creating a new replica" }), opts).action).toBe("wait");
    expect(planReclone(diverged({ fenced: false, recloned: "4" }), opts).action).toBe("done");
  });

  it("re-clones again a member recreated for an older epoch, and refuses the primary itself", () => {
    expect(planReclone(diverged({ recloned: "2" }), opts).action).toBe("delete");
    expect(planReclone(diverged(), { ...opts, primary: "pg-eu" })).toMatchObject({ action: "refuse", code: "agent.invalid_command" });
    expect(planReclone(diverged({ fenced: false, recloned: "4", primary: "pg-eu" }), opts)).toMatchObject({ action: "refuse", code: "agent.reclone_conflict" });
  });
});
