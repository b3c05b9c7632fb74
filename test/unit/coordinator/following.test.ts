/**
 * "Following the primary" as the coordinator judges it (src/coordinator/following.ts): the
 * topology rule over spec.replica.source/primary, combined with the evaluator's timeline rule, and
 * the preflight refusal built from them.
 */
import { describe, expect, it } from "vitest";
import type { Observation } from "../../../src/bus/index.js";
import { followingOf, followingRefusal, lossOf, topologyVerdict, type FollowingInput } from "../../../src/coordinator/following.js";
import type { MemberStatus } from "../../../src/wal/monitor.js";

const MEMBERS = [
  { name: "pg-eu", cluster: "pg-eu" },
  { name: "pg-us", cluster: "pg-us" },
  { name: "pg-ap", cluster: "cluster-ap" },
];

function obs(over: Partial<Observation>): Observation {
  return { role: "replica", phase: "Cluster in healthy state", fenced: false, switchInProgress: false, reachable: true, ready: true, archiving: "ok", resourceVersion: "1", ...over };
}

function input(member: string, seen: Record<string, Observation>, status?: MemberStatus): FollowingInput {
  return { member, members: MEMBERS, observation: (m) => seen[m], primary: "pg-ap", status };
}

function status(over: Partial<MemberStatus>): MemberStatus {
  return { name: "pg-eu", region: "eu-west", status: "up", role: "replica", error: undefined, archive: undefined, replica: undefined, lag: undefined, ...over };
}

const healthy = {
  "pg-ap": obs({ role: "primary", specPrimary: "cluster-ap" }),
  "pg-eu": obs({ specPrimary: "cluster-ap", specSource: "cluster-ap" }),
  "pg-us": obs({ specPrimary: "cluster-ap", specSource: "cluster-ap" }),
};

describe("the topology rule", () => {
  it("counts a replica whose source is the primary's topology name as following, and the primary itself", () => {
    for (const m of ["pg-eu", "pg-us", "pg-ap"]) expect(topologyVerdict(input(m, healthy)), m).toEqual({ following: true });
  });

  it("names the cycle when two replicas follow each other (the lab after switchover pg-eu → pg-ap)", () => {
    const cycle = { ...healthy, "pg-eu": obs({ specPrimary: "cluster-ap", specSource: "pg-us" }), "pg-us": obs({ specPrimary: "cluster-ap", specSource: "pg-eu" }) };
    expect(topologyVerdict(input("pg-eu", cycle))).toEqual({ following: false, rule: "topology", reason: "follows pg-us, which is not the primary pg-ap; pg-us follows pg-eu: a cycle that reaches no primary" });
    expect(topologyVerdict(input("pg-us", cycle))).toEqual({ following: false, rule: "topology", reason: "follows pg-eu, which is not the primary pg-ap; pg-eu follows pg-us: a cycle that reaches no primary" });
  });

  it("does not count cascading through a following replica as following", () => {
    const cascade = { ...healthy, "pg-eu": obs({ specPrimary: "cluster-ap", specSource: "pg-us" }) };
    expect(topologyVerdict(input("pg-eu", cascade))).toEqual({ following: false, rule: "topology", reason: "follows pg-us, which is not the primary pg-ap" });
    expect(topologyVerdict(input("pg-us", cascade))).toEqual({ following: true });
  });

  it("refuses a source outside the federation, another named primary, and a second primary cluster", () => {
    expect(topologyVerdict(input("pg-eu", { ...healthy, "pg-eu": obs({ specPrimary: "cluster-ap", specSource: "pg-old" }) }))).toMatchObject({ following: false, reason: "follows pg-old, which is not a member of the federation (the primary is pg-ap)" });
    expect(topologyVerdict(input("pg-eu", { ...healthy, "pg-eu": obs({ specPrimary: "pg-us", specSource: "cluster-ap" }) }))).toMatchObject({ following: false, reason: "names pg-us as its primary, not the designated primary pg-ap" });
    expect(topologyVerdict(input("pg-eu", { ...healthy, "pg-eu": obs({ role: "primary", specPrimary: "pg-eu" }) }))).toMatchObject({ following: false, reason: "runs as a primary cluster, not as a replica of the primary pg-ap" });
    const viaFormer = { ...healthy, "pg-eu": obs({ specSource: "pg-us" }), "pg-us": obs({ role: "primary", specPrimary: "pg-us" }) };
    expect(topologyVerdict(input("pg-eu", viaFormer))).toMatchObject({ reason: "follows pg-us, which is not the primary pg-ap; pg-us runs as a primary cluster itself" });
  });

  it("judges nothing without evidence: no observation, an unknown role, no designated primary", () => {
    expect(topologyVerdict(input("pg-eu", {}))).toEqual({ following: true });
    expect(topologyVerdict(input("pg-eu", { "pg-eu": obs({ role: "unknown", specSource: "pg-us" }) }))).toEqual({ following: true });
    expect(topologyVerdict({ ...input("pg-eu", { "pg-eu": obs({ specSource: "pg-us" }) }), primary: null })).toEqual({ following: true });
  });
});

describe("followingOf and lossOf", () => {
  it("puts the timeline rule first: positions on another timeline are not comparable at all", () => {
    const cycle = { ...healthy, "pg-eu": obs({ specSource: "pg-us" }) };
    const st = status({ following: false, notFollowing: "on timeline 1, primary pg-ap on timeline 2" });
    expect(followingOf(input("pg-eu", cycle, st))).toEqual({ following: false, rule: "timeline", reason: "on timeline 1, primary pg-ap on timeline 2" });
    expect(followingOf(input("pg-eu", cycle, status({ following: true })))).toMatchObject({ rule: "topology" });
  });

  it("gives a replica whose source is not the primary no credit for the primary's archive", () => {
    const st = status({ lag: { bytes: 10n, ms: 1_000, via: "archive" }, ownLag: { bytes: 900n, ms: 42_000, via: "replayed" } });
    expect(lossOf(st, { following: false, rule: "topology", reason: "x" })).toEqual(st.ownLag);
    expect(lossOf(st, { following: false, rule: "timeline", reason: "x" })).toEqual(st.lag);
    expect(lossOf(st, { following: true })).toEqual(st.lag);
  });
});

describe("followingRefusal (the switchover preflight)", () => {
  const NOW = 1_800_000_100_000;

  it("refuses a target on another timeline with both timelines and how long it has received nothing", () => {
    const st = status({ timeline: 1, following: false, notFollowing: "on timeline 1, primary pg-ap on timeline 2", offTimelineSinceMs: NOW - 35_000 });
    const r = followingRefusal({ target: "pg-eu", primary: "pg-ap", verdict: followingOf(input("pg-eu", healthy, st)), status: st, primaryTimeline: 2, nowMs: NOW });
    expect(r).toEqual({ reason: "pg-eu is on timeline 1, the primary pg-ap on timeline 2; it has not received WAL from pg-ap for 35.0 s", wait: false });
  });

  it("counts from when it was last seen on the primary's timeline, when it was", () => {
    const st = status({ timeline: 3, following: false, notFollowing: "x", offTimelineSinceMs: NOW - 12_000, lastOnTimelineAtMs: NOW - 12_500 });
    expect(followingRefusal({ target: "pg-eu", primary: "pg-ap", verdict: followingOf(input("pg-eu", healthy, st)), status: st, primaryTimeline: 2, nowMs: NOW })?.reason).toBe(
      "pg-eu is on timeline 3, the primary pg-ap on timeline 2; it has not received WAL from pg-ap for 12.5 s",
    );
  });

  it("refuses a target whose source is not the primary, with the WAL it lacks", () => {
    const cycle = { ...healthy, "pg-eu": obs({ specSource: "pg-us" }), "pg-us": obs({ specSource: "pg-eu" }) };
    const st = status({ timeline: 2, following: true, lag: { bytes: 1n, ms: 1_000, via: "archive" }, ownLag: { bytes: 5_000n, ms: 8_250, via: "replayed" } });
    const r = followingRefusal({ target: "pg-eu", primary: "pg-ap", verdict: followingOf(input("pg-eu", cycle, st)), status: st, primaryTimeline: 2, nowMs: NOW });
    expect(r).toEqual({ reason: "pg-eu follows pg-us, which is not the primary pg-ap; pg-us follows pg-eu: a cycle that reaches no primary; it lacks the WAL pg-ap wrote in the last 8.3 s", wait: false });
  });

  it("asks the preflight to look again while the target is within the grace after a promotion", () => {
    const st = status({ timeline: 1, following: true, offTimelineSinceMs: NOW - 2_000 });
    expect(followingRefusal({ target: "pg-eu", primary: "pg-ap", verdict: followingOf(input("pg-eu", healthy, st)), status: st, primaryTimeline: 2, nowMs: NOW })).toEqual({
      reason: "pg-eu is on timeline 1, the primary pg-ap on timeline 2 (not yet switched, it has not received WAL from pg-ap for 2.0 s)",
      wait: true,
    });
  });

  it("lets a following target on the primary's timeline through", () => {
    const st = status({ timeline: 2, following: true, lastOnTimelineAtMs: NOW - 500 });
    expect(followingRefusal({ target: "pg-eu", primary: "pg-ap", verdict: followingOf(input("pg-eu", healthy, st)), status: st, primaryTimeline: 2, nowMs: NOW })).toBeUndefined();
    expect(followingRefusal({ target: "pg-eu", primary: "pg-ap", verdict: { following: true }, status: undefined, primaryTimeline: undefined, nowMs: NOW })).toBeUndefined();
  });
});
