/** The fence sweep's verdict (fencing.ts): fence only on evidence, never on a guess. */
import { describe, expect, it } from "vitest";
import { sweepVerdict, type MemberSpecState, type SweepInput } from "../../../src/agent/fencing.js";
import { recordKnowledge, type RecordKnowledge } from "../../../src/agent/federation-records.js";
import { federationRecordSchema, type FederationRecord } from "../../../src/coordinator/record.js";

const PRIMARY: MemberSpecState = { primary: true, fullyFenced: false };

function coordinatorRecord(over: Partial<FederationRecord> = {}): FederationRecord {
  // Built and checked with the coordinator's own schema, so the sweep reads what the coordinator writes.
  return federationRecordSchema.parse({ epoch: 2, designatedPrimary: "pg-us", operationId: null, step: null, leader: "c1", updatedAt: new Date(0).toISOString(), snapshot: {}, operations: [], ...over });
}

function op(id: string, kind: "switchover" | "failover" | "rejoin", target: string | null) {
  return {
    id,
    federation: "orders",
    kind,
    state: "running" as const,
    step: "promote",
    target,
    from: "pg-eu",
    reason: "test",
    requestedBy: "test",
    automatic: false,
    startedAt: new Date(0).toISOString(),
    finishedAt: null,
    epochBefore: 1,
    epochAfter: null,
    acceptedLossSeconds: null,
    durationSeconds: null,
    dataLossSeconds: null,
    lastDecision: "",
    steps: [],
  };
}

function verdict(knowledge: RecordKnowledge | undefined, over: Partial<SweepInput> = {}) {
  return sweepVerdict({ federation: "orders", member: "pg-eu", spec: PRIMARY, knowledge, newestEpochSeen: undefined, ...over });
}

const known = (r: FederationRecord, revision = 7) => recordKnowledge(r, revision);

describe("sweepVerdict", () => {
  it("fences an unfenced primary when the coordinator's record designates another member, with the numbers", () => {
    const v = verdict(known(coordinatorRecord()), { newestEpochSeen: 2 });
    expect(v.fence).toBe(true);
    if (!v.fence) return;
    expect(v.sentence).toBe("orders/pg-eu is an unfenced primary by its spec but the record of orders designates pg-us at epoch 2 (revision 7): it is a former primary");
    expect(v.numbers).toMatchObject({ recordEpoch: 2, recordRevision: 7, designatedPrimary: "pg-us" });
  });

  it("fences when an in-flight operation targets another member (e.g. a rejoin, or a failover to a third member)", () => {
    expect(verdict(known(coordinatorRecord({ operationId: "f1", operations: [op("f1", "failover", "pg-ap")] }))).fence).toBe(true);
    expect(verdict(known(coordinatorRecord({ operationId: "r1", operations: [op("r1", "rejoin", "pg-eu")] }))).fence).toBe(true);
  });

  it.each([
    ["the record designates this member", known(coordinatorRecord({ designatedPrimary: "pg-eu" })), {}, /is the designated primary at epoch 2/],
    ["the record designates nobody", known(coordinatorRecord({ designatedPrimary: null })), {}, /designates no primary/],
    ["no record exists", { kind: "absent" } as const, {}, /no federation record yet/],
    ["the record was never read", undefined, {}, /could not be read yet; not fencing orders\/pg-eu on a guess/],
    ["the record is invalid", recordKnowledge({ epoch: "two", designatedPrimary: "pg-us" }, 3), {}, /not usable .*epoch.*on a guess/],
    ["a command of a newer epoch was seen", known(coordinatorRecord()), { newestEpochSeen: 3 }, /older than epoch 3 seen on a command/],
    ["a failover to this member is in flight", known(coordinatorRecord({ operationId: "f1", operations: [op("f1", "failover", "pg-eu")] })), {}, /failover f1 of orders is in flight with orders\/pg-eu as its target/],
    ["a switchover to this member is in flight", known(coordinatorRecord({ operationId: "s1", operations: [op("s1", "switchover", "pg-eu")] })), {}, /switchover s1 .* as its target/],
    ["a failover without a chosen target is in flight", known(coordinatorRecord({ operationId: "f2", operations: [op("f2", "failover", null)] })), {}, /without a chosen target yet/],
    ["the in-flight operation is missing from the record", known(coordinatorRecord({ operationId: "gone" })), {}, /cannot tell whether orders\/pg-eu is its target/],
    ["the member is a replica by its spec", known(coordinatorRecord()), { spec: { primary: false, fullyFenced: false } }, /not a primary cluster by its spec/],
    ["the member is already fenced", known(coordinatorRecord()), { spec: { primary: true, fullyFenced: true } }, /already fenced/],
    ["the fencing annotation is unreadable", known(coordinatorRecord()), { spec: { primary: true, fullyFenced: "unreadable", unreadableReason: "not JSON" } }, /unreadable fencing annotation \(not JSON\)/],
  ] as const)("does not fence when %s", (_what, knowledge, over, why) => {
    const v = verdict(knowledge, over);
    expect(v.fence).toBe(false);
    if (!v.fence) expect(v.why).toMatch(why);
  });
});
