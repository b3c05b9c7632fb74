import { describe, expect, it } from "vitest";
import {
  PHASES,
  PROMOTION_TOKEN_MISMATCH_REASON,
  archivingStatus,
  clusterPhase,
  clusterRole,
  conditionIs,
  demotionToken,
  designatedPrimary,
  fencedInstances,
  fieldOwner,
  getCondition,
  isFenced,
  isFencedForSure,
  isFullyFenced,
  isPromoting,
  isReady,
  isUnrecoverable,
  lastPromotionToken,
  parseCluster,
  promotionTokenRejected,
  replicaSwitchStatus,
  selfName,
  specPromotionToken,
  switchInProgress,
} from "../../../src/cnpg/index.js";
import type { Cluster, ClusterStatus, Condition } from "../../../src/cnpg/index.js";

type ReplicaStanza = { self?: string; primary?: string; source: string; enabled?: boolean; promotionToken?: string };

/** Member "pg-a" of a two-member topology {pg-a, pg-b}. */
function member(replica: ReplicaStanza | undefined, opts: { status?: ClusterStatus; annotations?: Record<string, string> } = {}): Cluster {
  return parseCluster({
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name: "pg-a", namespace: "db", annotations: opts.annotations },
    spec: {
      instances: 2,
      replica,
      externalClusters: [{ name: "pg-a" }, { name: "pg-b" }],
    },
    status: opts.status,
  });
}

function withConditions(...conditions: Condition[]): Cluster {
  return member({ primary: "pg-a", source: "pg-b" }, { status: { phase: PHASES.healthy, conditions } });
}

function cond(type: string, status: Condition["status"], reason?: string): Condition {
  return { type, status, reason, lastTransitionTime: "2026-11-24T13:00:00Z" };
}

describe("selfName and designatedPrimary", () => {
  it("reads spec.replica.self", () => {
    expect(selfName(member({ self: "eu", primary: "eu", source: "us" }))).toBe("eu");
  });

  it("defaults self to metadata.name when spec.replica.self is unset or empty", () => {
    expect(selfName(member({ primary: "pg-a", source: "pg-b" }))).toBe("pg-a");
    expect(selfName(member({ self: "", primary: "pg-a", source: "pg-b" }))).toBe("pg-a");
    expect(selfName(member(undefined))).toBe("pg-a");
  });

  it("reads the designated primary, or undefined when the spec names none", () => {
    expect(designatedPrimary(member({ primary: "pg-b", source: "pg-b" }))).toBe("pg-b");
    expect(designatedPrimary(member({ source: "pg-b", enabled: true }))).toBeUndefined();
    expect(designatedPrimary(member(undefined))).toBeUndefined();
  });
});

describe("clusterRole", () => {
  it.each<[string, ReplicaStanza | undefined, "primary" | "replica"]>([
    ["no replica stanza", undefined, "primary"],
    ["primary equals self (self defaulted from the name)", { primary: "pg-a", source: "pg-b" }, "primary"],
    ["primary equals an explicit self", { self: "pg-a", primary: "pg-a", source: "pg-b" }, "primary"],
    ["primary names another member", { primary: "pg-b", source: "pg-b" }, "replica"],
    ["primary names another member, explicit self", { self: "pg-a", primary: "pg-b", source: "pg-b" }, "replica"],
    ["explicit self differs from the name and is the primary", { self: "eu", primary: "eu", source: "us" }, "primary"],
    ["primary equals the object name but not the explicit self", { self: "eu", primary: "pg-a", source: "us" }, "replica"],
    ["legacy enabled: true without primary", { source: "pg-b", enabled: true }, "replica"],
    ["legacy enabled: false without primary", { source: "pg-b", enabled: false }, "primary"],
    ["a stanza with neither primary nor enabled (CNPG: self != empty primary)", { source: "pg-b" }, "replica"],
    ["enabled: true next to primary == self (admission refuses it; CNPG lets enabled win)", { primary: "pg-a", source: "pg-b", enabled: true }, "replica"],
    ["enabled: false next to primary != self (admission refuses it; CNPG lets enabled win)", { primary: "pg-b", source: "pg-b", enabled: false }, "primary"],
  ])("%s → %s", (_case, replica, role) => {
    expect(clusterRole(member(replica))).toBe(role);
  });
});

describe("phase readers", () => {
  it("reads the phase, undefined before the first reconcile", () => {
    expect(clusterPhase(member(undefined, { status: { phase: PHASES.switchover } }))).toBe("Switchover in progress");
    expect(clusterPhase(member(undefined))).toBeUndefined();
  });

  it("recognises a cluster waiting to replay up to its promotion token", () => {
    const c = member({ primary: "pg-a", source: "pg-b", promotionToken: "dG9r" }, { status: { phase: PHASES.promoting } });
    expect(isPromoting(c)).toBe(true);
    expect(isUnrecoverable(c)).toBe(false);
  });

  it("tells a refused promotion token apart from other unrecoverable states", () => {
    const refused = member(undefined, { status: { phase: PHASES.unrecoverable, phaseReason: PROMOTION_TOKEN_MISMATCH_REASON } });
    const other = member(undefined, { status: { phase: PHASES.unrecoverable, phaseReason: "Missing primary PVC" } });
    expect(isUnrecoverable(refused)).toBe(true);
    expect(promotionTokenRejected(refused)).toBe(true);
    expect(isUnrecoverable(other)).toBe(true);
    expect(promotionTokenRejected(other)).toBe(false);
  });
});

describe("condition readers", () => {
  it("finds a condition by type and compares its status", () => {
    const c = withConditions(cond("Ready", "True", "ClusterIsReady"), cond("ContinuousArchiving", "False", "ContinuousArchivingFailing"));
    expect(getCondition(c, "ContinuousArchiving")?.reason).toBe("ContinuousArchivingFailing");
    expect(getCondition(c, "ReplicaClusterSwitch")).toBeUndefined();
    expect(conditionIs(c, "Ready", "True")).toBe(true);
    expect(conditionIs(c, "Ready", "False")).toBe(false);
    expect(conditionIs(c, "Missing", "Unknown")).toBe(false);
  });

  it("is ready when the Ready condition is True and not when it is False", () => {
    expect(isReady(withConditions(cond("Ready", "True")))).toBe(true);
    expect(isReady(withConditions(cond("Ready", "False")))).toBe(false);
    expect(isReady(withConditions(cond("Ready", "Unknown")))).toBe(false);
  });

  it("falls back to the healthy phase only when there is no Ready condition", () => {
    expect(isReady(member(undefined, { status: { phase: PHASES.healthy } }))).toBe(true);
    expect(isReady(member(undefined, { status: { phase: PHASES.failingOver } }))).toBe(false);
    expect(isReady(member(undefined))).toBe(false);
  });

  it("reads archiving as ok, failing or unknown from ContinuousArchiving", () => {
    expect(archivingStatus(withConditions(cond("ContinuousArchiving", "True", "ContinuousArchivingSuccess")))).toBe("ok");
    expect(archivingStatus(withConditions(cond("ContinuousArchiving", "False", "ContinuousArchivingFailing")))).toBe("failing");
    expect(archivingStatus(withConditions(cond("ContinuousArchiving", "Unknown")))).toBe("unknown");
    expect(archivingStatus(withConditions())).toBe("unknown");
  });

  it("reads the replica cluster switch as in progress, completed or unknown", () => {
    expect(replicaSwitchStatus(withConditions(cond("ReplicaClusterSwitch", "False", "ReplicaEnabledSetTrue")))).toBe("in-progress");
    expect(replicaSwitchStatus(withConditions(cond("ReplicaClusterSwitch", "True")))).toBe("completed");
    expect(replicaSwitchStatus(withConditions())).toBe("unknown");
  });

  it("reports a switch in progress only when status says inProgress: true", () => {
    expect(switchInProgress(member(undefined, { status: { switchReplicaClusterStatus: { inProgress: true } } }))).toBe(true);
    expect(switchInProgress(member(undefined, { status: { switchReplicaClusterStatus: { inProgress: false } } }))).toBe(false);
    expect(switchInProgress(member(undefined, { status: { switchReplicaClusterStatus: {} } }))).toBe(false);
    expect(switchInProgress(member(undefined))).toBe(false);
  });
});

describe("fencing readers", () => {
  const fenced = (value: string): Cluster => member(undefined, { annotations: { "cnpg.io/fencedInstances": value, other: "x" } });

  it("reads an unannotated cluster as unfenced", () => {
    const c = member(undefined, { annotations: { other: "x" } });
    expect(fencedInstances(c)).toEqual([]);
    expect(isFenced(c)).toBe(false);
    expect(isFullyFenced(c)).toBe(false);
    expect(fencedInstances(member(undefined))).toEqual([]);
  });

  it('keeps "*" as "*" and reads it as fully fenced', () => {
    const c = fenced('["*"]');
    expect(fencedInstances(c)).toEqual(["*"]);
    expect(isFenced(c)).toBe(true);
    expect(isFullyFenced(c)).toBe(true);
  });

  it("reads named instances as fenced but not fully fenced", () => {
    const c = fenced('["pg-a-1","pg-a-2","pg-a-1"]');
    expect(fencedInstances(c)).toEqual(["pg-a-1", "pg-a-2"]);
    expect(isFenced(c)).toBe(true);
    expect(isFullyFenced(c)).toBe(false);
  });

  it("reads an empty list as unfenced", () => {
    expect(isFenced(fenced("[]"))).toBe(false);
  });

  it("refuses fencing annotation text that is not JSON, naming the annotation and the cluster", () => {
    expect(() => fencedInstances(fenced("[*]"))).toThrow(
      expect.objectContaining({
        code: "cnpg.invalid_fencing",
        message: expect.stringContaining("annotation cnpg.io/fencedInstances on Cluster db/pg-a is not JSON") as unknown,
      }),
    );
    // The boolean readers must not guess "unfenced" either.
    expect(() => isFenced(fenced(""))).toThrow(/cnpg\.io\/fencedInstances/);
  });

  it("isFencedForSure: only a readable annotation fencing every instance counts; an unreadable one is not fenced (fencing replaces it)", () => {
    expect(isFencedForSure(fenced('["*"]'))).toBe(true);
    expect(isFencedForSure(fenced('["pg-a-1"]'))).toBe(false);
    expect(isFencedForSure(member(undefined))).toBe(false);
    expect(isFencedForSure(fenced("[*]"))).toBe(false);
  });

  it("refuses fencing JSON that is not an array of names", () => {
    for (const value of ['"*"', '{"*":true}', "[1]"]) {
      expect(() => fencedInstances(fenced(value))).toThrow(expect.objectContaining({ code: "cnpg.invalid_fencing" }));
    }
    // JSON null unmarshals into an empty slice in CNPG (pkg/utils/fencing.go): nothing fenced.
    expect(fencedInstances(fenced("null"))).toEqual([]);
    expect(() => fencedInstances(fenced("[1]"))).toThrow("is not a JSON array of instance names");
  });
});

describe("token readers", () => {
  it("reads demotion, last promotion and spec tokens raw, empty as absent", () => {
    const c = member(
      { primary: "pg-a", source: "pg-b", promotionToken: "c3BlYw==" },
      { status: { demotionToken: "ZGVtbw==", lastPromotionToken: "" } },
    );
    expect(demotionToken(c)).toBe("ZGVtbw==");
    expect(lastPromotionToken(c)).toBeUndefined();
    expect(specPromotionToken(c)).toBe("c3BlYw==");
    expect(demotionToken(member(undefined))).toBeUndefined();
    expect(specPromotionToken(member(undefined))).toBeUndefined();
  });
});

describe("fieldOwner (who last set a field, from metadata.managedFields)", () => {
  const withFields = (managedFields: unknown) =>
    parseCluster({
      apiVersion: "postgresql.cnpg.io/v1",
      kind: "Cluster",
      metadata: { name: "pg-eu", namespace: "db", managedFields },
      spec: { replica: { primary: "pg-us", source: "pg-us" }, externalClusters: [{ name: "pg-eu" }, { name: "pg-us" }] },
    });
  const primaryField = { "f:spec": { "f:replica": { "f:primary": {} } } };

  it("names the newest entry that owns the field, ignoring status writes", () => {
    const c = withFields([
      { manager: "pgfed", operation: "Update", apiVersion: "postgresql.cnpg.io/v1", time: "2026-12-03T10:00:00Z", fieldsType: "FieldsV1", fieldsV1: primaryField },
      { manager: "argocd", operation: "Apply", apiVersion: "postgresql.cnpg.io/v1", time: "2026-12-03T11:00:00Z", fieldsType: "FieldsV1", fieldsV1: primaryField },
      { manager: "cnpg", operation: "Update", subresource: "status", time: "2026-12-03T12:00:00Z", fieldsType: "FieldsV1", fieldsV1: primaryField },
      { manager: "kubectl", operation: "Update", time: "2026-12-03T12:30:00Z", fieldsType: "FieldsV1", fieldsV1: { "f:metadata": { "f:labels": {} } } },
    ]);
    expect(fieldOwner(c, ["spec", "replica", "primary"])).toEqual({ manager: "argocd", operation: "Apply", time: "2026-12-03T11:00:00Z" });
    expect(fieldOwner(c, ["spec", "replica", "source"])).toBeUndefined();
  });

  it("says nothing without managedFields or with malformed entries", () => {
    expect(fieldOwner(withFields(undefined), ["spec", "replica", "primary"])).toBeUndefined();
    expect(fieldOwner(withFields("nope"), ["spec", "replica", "primary"])).toBeUndefined();
    expect(fieldOwner(withFields([null, 3, { manager: 5, fieldsV1: primaryField }, { manager: "x", fieldsV1: "f:spec" }]), ["spec", "replica", "primary"])).toBeUndefined();
  });
});
