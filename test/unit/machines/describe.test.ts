import { getStateNodes } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import { federationMachine, machinesAsJson, machinesAsMermaid, memberMachine } from "../../../machines/index.js";

describe("machine diagrams and tables", () => {
  it("prints the same Mermaid text every time, naming every state of both machines", () => {
    const text = machinesAsMermaid();
    expect(machinesAsMermaid()).toBe(text);
    expect(text.match(/stateDiagram-v2/g)).toHaveLength(2);
    for (const machine of [memberMachine, federationMachine]) {
      for (const node of getStateNodes(machine.root)) expect(text).toContain(`state "${node.key}" as ${node.id.replace(/[^A-Za-z0-9]/g, "_")}`);
    }
    expect(text).toContain("federation_operation_switchover_awaitToken --> federation_operation_switchover_undoing : after tokenTimeout");
    expect(text).toContain("member_demoting --> member_demoted : OBSERVED [observedAs demoted]");
  });

  it("gives every transition of both machines a description an operator can read", () => {
    const json = machinesAsJson();
    for (const machine of [json.member, json.federation]) {
      expect(machine.transitions.length).toBeGreaterThan(10);
      for (const t of machine.transitions) expect(t.description, `${t.source} on ${t.event}`).toMatch(/^[a-zA-Z].{10,}/);
      for (const s of machine.states) expect(s.description, s.id).not.toBe("");
    }
    expect(JSON.stringify(machinesAsJson())).toBe(JSON.stringify(json));
  });

  it("lists every effect actor of the federation with its step", () => {
    const invokes = machinesAsJson().federation.states.flatMap((s) => s.invokes.map((i) => i.id));
    expect(invokes).toEqual([
      "preflight",
      "demotePrimary",
      "awaitDemotionToken",
      "undoDemotion",
      "promoteWithToken",
      "verifySwitchover",
      "confirmPrimaryDown",
      "promoteWithoutToken",
      "rejoinMember",
      "fenceAndDemoteFormer",
    ]);
  });
});
