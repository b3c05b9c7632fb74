import { describe, expect, it } from "vitest";
import { planCommand, type ClusterCommand, type CommandPlan, type PlanContext } from "../../../src/agent/index.js";
import { applyMergePatch, encodeToken, parseCluster, type Cluster } from "../../../src/cnpg/index.js";

const ctx: PlanContext = { who: "orders/pg-eu", topologyName: (m) => (m === "us-member" ? "pg-us" : m) };
const base = { operationId: "op-1", deadlineAt: "2030-01-01T00:00:00Z" };

function cluster(opts: { primary?: string; token?: string; lastToken?: string; inProgress?: boolean; fenced?: string; self?: string } = {}): Cluster {
  return parseCluster({
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name: "pg-eu", namespace: "db", resourceVersion: "7", ...(opts.fenced !== undefined ? { annotations: { "cnpg.io/fencedInstances": opts.fenced } } : {}) },
    spec: {
      replica: { self: opts.self ?? "pg-eu", primary: opts.primary ?? "pg-eu", source: "pg-us", ...(opts.token ? { promotionToken: opts.token } : {}) },
      externalClusters: [{ name: "pg-eu" }, { name: "pg-us" }],
    },
    status: {
      phase: "Cluster in healthy state",
      ...(opts.lastToken ? { lastPromotionToken: opts.lastToken } : {}),
      ...(opts.inProgress ? { switchReplicaClusterStatus: { inProgress: true } } : {}),
    },
  });
}

/** Applies a planned patch like the API server would and plans again: the second plan must be "none". */
function applyAndReplan(c: Cluster, cmd: ClusterCommand): { first: CommandPlan; second: CommandPlan; after: Cluster } {
  const first = planCommand(c, cmd, ctx);
  if (first.action !== "patch") throw new Error(`expected a patch, got ${first.action}`);
  const after = parseCluster(applyMergePatch(c, first.patch));
  return { first, second: planCommand(after, cmd, ctx), after };
}

describe("planCommand (ensure steps)", () => {
  it("demotes a primary to follow another member in one patch that also drops a leftover token, then has nothing to do", () => {
    const { first, second, after } = applyAndReplan(cluster({ token: "old", lastToken: "old" }), { kind: "demote", to: "us-member", ...base });
    expect(first).toMatchObject({ action: "patch", sentence: "demoted orders/pg-eu to follow us-member (patched spec.replica.primary, removed spec.replica.promotionToken)" });
    expect(after.spec.replica).toMatchObject({ primary: "pg-us" });
    expect(after.spec.replica?.promotionToken).toBeUndefined();
    expect(second).toEqual({ action: "none", sentence: "orders/pg-eu already follows us-member; nothing to patch" });
  });

  it("accepts a repeated demote while the demotion it started is in progress, but refuses a different role change then", () => {
    expect(planCommand(cluster({ primary: "pg-us", inProgress: true }), { kind: "demote", to: "pg-us", ...base }, ctx).action).toBe("none");
    expect(planCommand(cluster({ primary: "pg-eu", inProgress: true }), { kind: "demote", to: "pg-us", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.switch_in_progress" });
  });

  it("refuses to demote towards a member missing from externalClusters, or towards itself", () => {
    expect(planCommand(cluster(), { kind: "demote", to: "pg-ap", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.unknown_member" });
    expect(planCommand(cluster(), { kind: "demote", to: "pg-eu", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.invalid_command" });
  });

  it("promotes with a token (primary and token in one patch) and treats a repeat, or a completed promotion, as done", () => {
    const replica = cluster({ primary: "pg-us" });
    const { first, second, after } = applyAndReplan(replica, { kind: "promoteWithToken", token: "tok", ...base });
    expect(first.action === "patch" && first.patch).toEqual({ spec: { replica: { primary: "pg-eu", promotionToken: "tok" } } });
    expect(after.spec.replica).toMatchObject({ primary: "pg-eu", promotionToken: "tok" });
    expect(second.action).toBe("none");
    // Promoted, token cleared afterwards: the repeat must not put the token back.
    expect(planCommand(cluster({ lastToken: "tok" }), { kind: "promoteWithToken", token: "tok", ...base }, ctx).action).toBe("none");
  });

  it("refuses a token for a member that is already primary with nothing pending", () => {
    expect(planCommand(cluster(), { kind: "promoteWithToken", token: "tok", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.already_primary" });
  });

  it("promotes without a token (dropping a pending one) and has nothing to do on a primary", () => {
    const { first, second } = applyAndReplan(cluster({ primary: "pg-us" }), { kind: "promoteWithoutToken", ...base });
    expect(first).toMatchObject({ action: "patch", sentence: "promoted orders/pg-eu without a token, unchecked (patched spec.replica.primary)" });
    expect(second.action).toBe("none");
    expect(planCommand(cluster({ primary: "pg-us", inProgress: true }), { kind: "promoteWithoutToken", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.switch_in_progress" });
  });

  it("clears a used token, but refuses to clear one whose promotion has not completed (that would promote unchecked)", () => {
    const { second } = applyAndReplan(cluster({ token: "tok", lastToken: "tok" }), { kind: "clearToken", ...base });
    expect(second.action).toBe("none");
    expect(planCommand(cluster({ token: "tok" }), { kind: "clearToken", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.promotion_pending" });
    expect(planCommand(cluster(), { kind: "clearToken", ...base }, ctx).action).toBe("none");
  });

  it("fences all instances and unfences, each once", () => {
    const fenced = applyAndReplan(cluster(), { kind: "fence", ...base });
    expect(fenced.after.metadata.annotations?.["cnpg.io/fencedInstances"]).toBe('["*"]');
    expect(fenced.second.action).toBe("none");
    const unfenced = applyAndReplan(fenced.after, { kind: "unfence", ...base });
    expect(unfenced.after.metadata.annotations?.["cnpg.io/fencedInstances"]).toBeUndefined();
    expect(unfenced.second.action).toBe("none");
    // One fenced pod is not "fenced": fence all of them; an unreadable annotation is replaced.
    expect(planCommand(cluster({ fenced: '["pg-eu-2"]' }), { kind: "fence", ...base }, ctx).action).toBe("patch");
    expect(planCommand(cluster({ fenced: "garbage" }), { kind: "fence", ...base }, ctx).action).toBe("patch");
    expect(planCommand(cluster({ fenced: "garbage" }), { kind: "unfence", ...base }, ctx).action).toBe("patch");
  });

  it("ensurePrimary verifies and never promotes", () => {
    expect(planCommand(cluster(), { kind: "ensurePrimary", ...base }, ctx).action).toBe("none");
    const refused = planCommand(cluster({ primary: "pg-us" }), { kind: "ensurePrimary", ...base }, ctx);
    expect(refused).toMatchObject({ action: "refuse", code: "agent.not_primary" });
    expect(refused.action === "refuse" && refused.message).toMatch(/spec.replica.primary is pg-us, not pg-eu/);
  });
});

describe("planCommand retargetArchive (after a rejoin gave a member a fresh archive server name)", () => {
  const withEntries = (entries: object[]): Cluster =>
    parseCluster({
      apiVersion: "postgresql.cnpg.io/v1",
      kind: "Cluster",
      metadata: { name: "pg-eu", namespace: "db", resourceVersion: "7" },
      spec: { replica: { self: "pg-eu", primary: "pg-eu", source: "pg-us" }, externalClusters: entries },
    });
  const plugin = (serverName?: string) => ({ name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: "store", ...(serverName ? { serverName } : {}) } });
  const cmd = { kind: "retargetArchive" as const, member: "us-member", from: "pg-us", to: "pg-us-e3", ...base };

  it("points the entry for the member at the new server name in one patch guarded by resourceVersion, leaves the other entries as they were, then has nothing to do", () => {
    const c = withEntries([{ name: "pg-eu", plugin: plugin("pg-eu") }, { name: "pg-us", plugin: plugin("pg-us"), connectionParameters: { host: "pg-us-rw" } }]);
    const { first, second, after } = applyAndReplan(c, cmd);
    expect(first).toMatchObject({ action: "patch", sentence: "pointed orders/pg-eu's externalClusters entry for us-member at archive server pg-us-e3 instead of archive server pg-us (patched spec.externalClusters)" });
    expect(first.action === "patch" && first.patch.metadata).toEqual({ resourceVersion: "7" });
    expect(after.spec.externalClusters).toEqual([
      { name: "pg-eu", plugin: plugin("pg-eu") },
      { name: "pg-us", plugin: plugin("pg-us-e3"), connectionParameters: { host: "pg-us-rw" } },
    ]);
    expect(second).toMatchObject({ action: "none", sentence: "orders/pg-eu's externalClusters entry for us-member already reads archive server pg-us-e3; nothing to patch" });
  });

  it("sets the server name explicitly where the entry left it to the default, and in a legacy barmanObjectStore entry", () => {
    const unset = applyAndReplan(withEntries([{ name: "pg-us", plugin: plugin() }]), cmd);
    expect(unset.first.action === "patch" && unset.first.sentence).toContain("instead of the default server name");
    expect(unset.after.spec.externalClusters?.[0]?.plugin).toEqual(plugin("pg-us-e3"));
    const legacy = applyAndReplan(withEntries([{ name: "pg-us", barmanObjectStore: { destinationPath: "s3://b/", serverName: "pg-us" } }]), cmd);
    expect(legacy.after.spec.externalClusters?.[0]?.barmanObjectStore).toEqual({ destinationPath: "s3://b/", serverName: "pg-us-e3" });
  });

  it("has nothing to do for an entry that names no archive or no entry at all, and refuses an entry reading some third server name", () => {
    const sentenceOf = (plan: CommandPlan): string => (plan.action === "refuse" ? plan.message : plan.sentence);
    const streamingOnly = planCommand(withEntries([{ name: "pg-us", connectionParameters: { host: "pg-us-rw" } }]), cmd, ctx);
    expect(streamingOnly.action).toBe("none");
    expect(sentenceOf(streamingOnly)).toContain("names no archive (streaming only)");
    const noEntry = planCommand(withEntries([{ name: "pg-eu" }]), cmd, ctx);
    expect(noEntry.action).toBe("none");
    expect(sentenceOf(noEntry)).toContain("has no externalClusters entry named pg-us");
    const third = planCommand(withEntries([{ name: "pg-us", plugin: plugin("elsewhere") }]), cmd, ctx);
    expect(third).toMatchObject({ action: "refuse", code: "agent.archive_mismatch" });
    expect(sentenceOf(third)).toContain("it reads archive server elsewhere, neither the old pg-us nor the new pg-us-e3");
  });
});

describe("planCommand with three members (every replica follows the primary directly)", () => {
  const three = (replica: Record<string, unknown>, status: Record<string, unknown> = {}): Cluster =>
    parseCluster({
      apiVersion: "postgresql.cnpg.io/v1",
      kind: "Cluster",
      metadata: { name: "pg-eu", namespace: "db", resourceVersion: "9" },
      spec: { replica: { self: "pg-eu", ...replica }, externalClusters: [{ name: "pg-eu" }, { name: "pg-us" }, { name: "pg-ap" }] },
      status: { phase: "Cluster in healthy state", ...status },
    });

  it("demote points source at the new primary in the same patch, so a former primary never follows a third member", () => {
    const { first, second, after } = applyAndReplan(three({ primary: "pg-eu", source: "pg-us" }), { kind: "demote", to: "pg-ap", ...base });
    expect(first).toMatchObject({ action: "patch", sentence: "demoted orders/pg-eu to follow pg-ap (patched spec.replica.primary, spec.replica.source)" });
    expect(after.spec.replica).toMatchObject({ primary: "pg-ap", source: "pg-ap" });
    expect(second.action).toBe("none");
    // During the switch only a change of role is refused: fixing the source is not one.
    const demoting = three({ primary: "pg-ap", source: "pg-us" }, { switchReplicaClusterStatus: { inProgress: true } });
    expect(planCommand(demoting, { kind: "demote", to: "pg-ap", ...base }, ctx).action).toBe("patch");
  });

  it("follow repoints a replica's primary and source at once, then has nothing to do", () => {
    const { first, second, after } = applyAndReplan(three({ primary: "pg-eu-old", source: "pg-us" }), { kind: "follow", primary: "pg-ap", ...base });
    expect(first).toMatchObject({ action: "patch", sentence: "pointed orders/pg-eu at pg-ap (patched spec.replica.primary (was pg-eu-old), spec.replica.source (was pg-us))" });
    expect(after.spec.replica).toMatchObject({ primary: "pg-ap", source: "pg-ap" });
    expect(second).toEqual({ action: "none", sentence: "orders/pg-eu already names pg-ap as primary and follows it; nothing to patch" });
  });

  it("follow never changes a role: it refuses the primary itself, an unknown member and the member itself", () => {
    expect(planCommand(three({ primary: "pg-eu", source: "pg-us" }), { kind: "follow", primary: "pg-ap", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.is_primary" });
    expect(planCommand(three({ primary: "pg-us", source: "pg-us" }), { kind: "follow", primary: "pg-xx", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.unknown_member" });
    expect(planCommand(three({ primary: "pg-us", source: "pg-us" }), { kind: "follow", primary: "pg-eu", ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.invalid_command" });
  });

  it("a promote retried after CNPG emptied lastPromotionToken is a no-op when the timeline shows the promotion", () => {
    const token = encodeToken({
      latestCheckpointTimelineID: "2",
      redoWalFile: "000000020000000000000005",
      databaseSystemIdentifier: "7000000000000000001",
      latestCheckpointREDOLocation: "0/5000028",
      timeOfLatestCheckpoint: "Thu Dec  3 13:00:00 2026",
      operatorVersion: "1.30.0",
    });
    const promoted = three({ primary: "pg-eu", source: "pg-us" }, { timelineID: 3, systemID: "7000000000000000001" });
    expect(planCommand(promoted, { kind: "promoteWithToken", token, ...base }, ctx)).toMatchObject({ action: "none" });
    // Same timeline as the token (not promoted by it), or another system: still refused.
    const notYet = three({ primary: "pg-eu", source: "pg-us" }, { timelineID: 2, systemID: "7000000000000000001" });
    expect(planCommand(notYet, { kind: "promoteWithToken", token, ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.already_primary" });
    const other = three({ primary: "pg-eu", source: "pg-us" }, { timelineID: 3, systemID: "7000000000000000009" });
    expect(planCommand(other, { kind: "promoteWithToken", token, ...base }, ctx)).toMatchObject({ action: "refuse", code: "agent.already_primary" });
  });
});
