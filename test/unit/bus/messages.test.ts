import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { makeMessage, parseEnvelope, subjectOf, type BusMessage } from "../../../src/bus/messages.js";

const at = new Date("2026-01-02T03:04:05.000Z");

const examples: BusMessage[] = [
  makeMessage("observation", {
    federation: "orders",
    member: "pg-eu",
    epoch: 4,
    source: "agent:eu-west",
    at,
    data: { role: "replica", phase: "Cluster in healthy state", fenced: false, switchInProgress: false, reachable: true, ready: true, archiving: "unknown", resourceVersion: "9", demotionToken: "eyJ0b2tlbiI6MX0=" },
  }),
  makeMessage("lag", {
    federation: "orders",
    member: "pg-eu",
    epoch: 4,
    source: "agent:eu-west",
    at,
    data: { role: "primary", currentLsn: "16/B374D848", lastArchivedWal: "000000010000001600000000", lastArchivedAtMs: 1, archiveFailedCount: 0, segmentsReady: 2, inRecovery: false, sampledAtMs: 2 },
  }),
  makeMessage("command", { federation: "orders", member: "pg-us", epoch: 5, source: "coordinator:c1", id: "op-1.demote", at, data: { kind: "demote", to: "pg-us", operationId: "op-1", deadlineAt: "2026-01-02T03:05:00Z" } }),
  makeMessage("command", { federation: "orders", member: "pg-us", epoch: 5, source: "coordinator:c1", at, data: { kind: "promoteWithToken", token: "abc", operationId: "op-1", deadlineAt: "2026-01-02T03:05:00Z" } }),
  makeMessage("result", { federation: "orders", member: "pg-us", epoch: 5, source: "agent:us-east", at, data: { commandId: "op-1.demote", ok: false, error: { code: "kube.patch_failed", message: "conflict" } } }),
  makeMessage("result", { federation: "orders", member: "pg-us", epoch: 5, source: "agent:us-east", at, data: { commandId: "op-1.demote", ok: true, data: { token: "abc", nested: { n: [1, null] } } } }),
  makeMessage("heartbeat", { federation: "orders", epoch: 5, source: "agent:eu-west", at, data: { region: "eu-west", agentId: "agent-1", members: ["pg-eu"] } }),
  makeMessage("audit", { federation: "orders", epoch: 5, source: "api:alice", at, data: { actor: "operator:alice", action: "failover.accepted_loss", reason: "region lost", numbers: { lossBytes: 1024, lossSeconds: 41, budgetSeconds: 30 }, from: "pg-eu", to: "pg-us", description: "operator accepted 41 s of loss" } }),
];

describe("envelopes", () => {
  it.each(examples.map((m) => [m.type, m] as const))("round-trips a %s through JSON bytes", (_type, m) => {
    const r = parseEnvelope(new TextEncoder().encode(JSON.stringify(m)));
    expect(r).toEqual({ ok: true, message: m });
  });

  it("derives the subject from the envelope", () => {
    expect(examples.map(subjectOf)).toEqual([
      "pgfed.orders.obs.pg-eu",
      "pgfed.orders.lag.pg-eu",
      "pgfed.orders.cmd.pg-us",
      "pgfed.orders.cmd.pg-us",
      "pgfed.orders.res.pg-us",
      "pgfed.orders.res.pg-us",
      "pgfed.orders.hb.eu-west",
      "pgfed.orders.audit",
    ]);
  });

  it("names the path of what is wrong", () => {
    const obs = examples[0] as BusMessage;
    const cases: Array<[unknown, RegExp]> = [
      [{ ...obs, data: { ...obs.data, role: "leader" } }, /^data\.role: /],
      [{ ...obs, epoch: 1.5 }, /^epoch: /],
      [{ ...obs, member: undefined }, /^member: /],
      [{ ...obs, federation: "or.ders" }, /^federation: not a valid name: contains "\."/],
      [{ ...obs, type: "gossip" }, /^type: /],
      [{ ...obs, source: "somebody" }, /^source: expected "agent:<region>"/],
      [{ ...examples[1], data: { ...examples[1]?.data, currentLsn: "16-B374" } }, /^data\.currentLsn: not an LSN/],
      [{ ...examples[2], data: { kind: "demote", operationId: "op-1", deadlineAt: "soon" } }, /data\.to: .*; data\.deadlineAt: /],
      [{ ...examples[2], data: { kind: "retargetArchive", member: "pg-eu", from: "pg-eu", to: "../pg-eu", operationId: "op-1", deadlineAt: "2026-01-02T03:05:00Z" } }, /^data\.to: must be an object-store server name/],
      [{ ...examples[4], data: { commandId: "x", ok: false } }, /^data\.error: a failed result must carry an error/],
      [{ ...examples[6], data: { region: "eu-west", agentId: "a", members: ["ok", "not ok"] } }, /^data\.members\[1\]: /],
      [[], /^\(message\): /],
    ];
    for (const [input, expected] of cases) {
      const r = parseEnvelope(JSON.stringify(input));
      expect(r.ok, JSON.stringify(input)).toBe(false);
      if (!r.ok) {
        expect(r.reason).toBe("invalid_envelope");
        expect(r.error).toMatch(expected);
      }
    }
  });

  it("tells bad JSON from a bad envelope", () => {
    expect(parseEnvelope("{")).toMatchObject({ ok: false, reason: "invalid_json" });
    expect(parseEnvelope(new Uint8Array([0xff, 0xfe, 0x7b]))).toMatchObject({ ok: false, reason: "invalid_json" });
    expect(parseEnvelope("null")).toMatchObject({ ok: false, reason: "invalid_envelope" });
    expect(parseEnvelope("x".repeat(1024 * 1024 + 1))).toMatchObject({ ok: false, reason: "invalid_json", error: expect.stringContaining("exceeds") as unknown });
  });

  it("refuses to build an invalid message, naming the field", () => {
    expect(() =>
      makeMessage("lag", { federation: "orders", member: "pg-eu", epoch: 1, source: "agent:eu-west", data: { role: "primary", inRecovery: false, sampledAtMs: -5 } }),
    ).toThrow(/while building a lag message for orders: data\.sampledAtMs/);
    expect(() => makeMessage("heartbeat", { federation: "dlq", epoch: 1, source: "agent:x", data: { region: "x", agentId: "a", members: [] } })).toThrow(/federation: reserved/);
  });

  test.prop([fc.oneof(fc.string(), fc.uint8Array({ maxLength: 256 }), fc.json(), fc.anything())])("never throws on garbage, only returns an error", (input) => {
    const r = parseEnvelope(input);
    expect(typeof r.ok).toBe("boolean");
    if (!r.ok) expect(r.error.length).toBeGreaterThan(0);
  });

  test.prop([fc.constantFrom(...examples), fc.constantFrom("id", "type", "federation", "member", "epoch", "at", "source", "data"), fc.anything()])(
    "never throws on a valid envelope with one field replaced by anything",
    (m, field, value) => {
      const r = parseEnvelope({ ...m, [field]: value });
      if (!r.ok) expect(r.error).toMatch(/^\S/);
    },
  );

  test.prop([fc.constantFrom(...examples), fc.dictionary(fc.string({ maxLength: 10 }), fc.anything(), { maxKeys: 4 })])("never throws when data is replaced by a random object", (m, data) => {
    const r = parseEnvelope(JSON.stringify({ ...m, data }));
    expect(typeof r.ok).toBe("boolean");
  });
});
