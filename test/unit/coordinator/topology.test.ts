import { describe, expect, it } from "vitest";
import type { Observation } from "../../../src/bus/index.js";
import { membersToRepoint } from "../../../src/coordinator/following.js";

const members = [
  { name: "eu", cluster: "pg-eu" },
  { name: "us", cluster: "pg-us" },
  { name: "ap", cluster: "pg-ap" },
];

function obs(role: Observation["role"], specPrimary: string | undefined, specSource: string | undefined, extra: Partial<Observation> = {}): Observation {
  return { role, phase: "Cluster in healthy state", fenced: false, switchInProgress: false, reachable: true, ready: true, archiving: "ok", resourceVersion: "1", ...(specPrimary ? { specPrimary } : {}), ...(specSource ? { specSource } : {}), ...extra };
}

describe("membersToRepoint", () => {
  it("names every replica whose primary or source is not the new primary: the three-region cycle", () => {
    // After pg-eu → pg-ap: pg-eu followed pg-us and pg-us followed pg-eu, neither reached pg-ap.
    const seen: Record<string, Observation> = { eu: obs("replica", "pg-ap", "pg-us"), us: obs("replica", "pg-eu", "pg-eu"), ap: obs("primary", "pg-ap", "pg-eu") };
    expect(membersToRepoint(members, "ap", (m) => seen[m], new Set())).toEqual([
      { member: "eu", why: "names ap as primary and follows us" },
      { member: "us", why: "names eu as primary and follows eu" },
    ]);
  });

  it("leaves alone the primary, skipped members, unreachable or unknown ones, a switching one and a spec-primary", () => {
    const seen: Record<string, Observation> = {
      eu: obs("replica", "pg-eu", "pg-eu", { switchInProgress: true }),
      us: obs("replica", "pg-eu", "pg-eu", { reachable: false }),
      ap: obs("primary", "pg-ap", "pg-eu"),
    };
    expect(membersToRepoint(members, "ap", (m) => seen[m], new Set())).toEqual([]);
    expect(membersToRepoint(members, "eu", (m) => seen[m], new Set(["us"]))).toEqual([]);
    expect(membersToRepoint(members, "ap", () => undefined, new Set())).toEqual([]);
    expect(membersToRepoint(members, "nobody", (m) => seen[m], new Set())).toEqual([]);
  });

  it("needs nothing once every replica names and follows the primary", () => {
    const seen: Record<string, Observation> = { eu: obs("replica", "pg-ap", "pg-ap"), us: obs("replica", "pg-ap", "pg-ap"), ap: obs("primary", "pg-ap", "pg-eu") };
    expect(membersToRepoint(members, "ap", (m) => seen[m], new Set())).toEqual([]);
  });
});
