import { describe, expect, it } from "vitest";
import type { DeadLetter } from "../../../src/bus/index.js";
import { rejectedCommandOf } from "../../../src/coordinator/intake.js";

const base: DeadLetter = { reason: "unauthenticated", error: "not_lease_holder: refusing demote of demo/pg-eu: signer UABC does not hold the coordinator lease", subject: "pgfed.demo.cmd.pg-eu", streamSeq: 42, consumer: "agent-eu-west", at: "2026-12-08T00:00:00.000Z", payloadBase64: "" };

describe("rejectedCommandOf", () => {
  it("takes the agent's reason from the dead letter's refusal field", () => {
    expect(rejectedCommandOf({ ...base, refusal: "untrusted_signer" }, 7)).toEqual({ federation: "demo", rejected: { member: "pg-eu", reason: "untrusted_signer", error: base.error, streamSeq: 42, atMs: 7 } });
  });
  it("reads an older agent's record (no refusal field) by the error's first word, and ignores other dead letters", () => {
    expect(rejectedCommandOf(base, 7)?.rejected.reason).toBe("not_lease_holder");
    expect(rejectedCommandOf({ ...base, error: "no reason given" }, 7)?.rejected.reason).toBe("unknown");
    expect(rejectedCommandOf({ ...base, reason: "invalid_envelope" }, 7)).toBeUndefined();
    expect(rejectedCommandOf({ ...base, subject: "pgfed.demo.obs.pg-eu" }, 7)).toBeUndefined();
  });
});
