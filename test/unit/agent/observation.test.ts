import { describe, expect, it } from "vitest";
import { EpochTracker, LatestPublisher, observeCluster, sameObservation, unknownObservation, unreachableObservation } from "../../../src/agent/index.js";
import { observationSchema } from "../../../src/bus/index.js";
import { parseCluster } from "../../../src/cnpg/index.js";

function cluster(extra: { primary?: string; annotations?: Record<string, string>; status?: Record<string, unknown> } = {}) {
  return parseCluster({
    metadata: { name: "pg-eu", namespace: "db", resourceVersion: "42", ...(extra.annotations ? { annotations: extra.annotations } : {}) },
    spec: { replica: { self: "pg-eu", primary: extra.primary ?? "pg-eu", source: "pg-us" }, externalClusters: [{ name: "pg-eu" }, { name: "pg-us" }] },
    status: {
      phase: "Cluster in healthy state",
      currentPrimary: "pg-eu-1",
      timelineID: 2,
      conditions: [
        { type: "Ready", status: "True" },
        { type: "ContinuousArchiving", status: "False" },
      ],
      ...extra.status,
    },
  });
}

describe("observeCluster", () => {
  it("reads a primary cluster into the wire shape", () => {
    const o = observeCluster(cluster());
    expect(o).toEqual({
      role: "primary",
      phase: "Cluster in healthy state",
      fenced: false,
      switchInProgress: false,
      timelineID: 2,
      currentPrimary: "pg-eu-1",
      specPrimary: "pg-eu",
      specSource: "pg-us",
      reachable: true,
      ready: true,
      archiving: "failing",
      resourceVersion: "42",
    });
    expect(observationSchema.safeParse(o).success).toBe(true);
  });

  it("reads a demoted replica with its token and a fenced member", () => {
    const o = observeCluster(cluster({ primary: "pg-us", annotations: { "cnpg.io/fencedInstances": '["*"]' }, status: { demotionToken: "abc", switchReplicaClusterStatus: { inProgress: true }, timelineID: 0 } }));
    expect(o).toMatchObject({ role: "replica", fenced: true, switchInProgress: true, demotionToken: "abc" });
    expect(o.timelineID).toBeUndefined();
  });

  it("reads an unparseable or partial fencing annotation as not fenced, as CNPG does (it keeps running)", () => {
    for (const value of ["all of them", '["pg-eu-2"]', "null", "[]"]) {
      const o = observeCluster(cluster({ annotations: { "cnpg.io/fencedInstances": value } }));
      expect(o, value).toMatchObject({ role: "primary", fenced: false, reachable: true });
    }
  });

  it("reports the spec's primary and source, the topology names the member follows", () => {
    const o = observeCluster(cluster({ primary: "pg-us" }));
    expect(o).toMatchObject({ role: "replica", specPrimary: "pg-us" });
    expect(typeof o.specSource).toBe("string");
  });

  it("puts a member whose status does not fit the wire schema in unknown", () => {
    const o = observeCluster(cluster({ status: { phase: "x".repeat(600), demotionToken: "t".repeat(9_000) } }));
    expect(o.role).toBe("unknown");
    expect(o.reason).toMatch(/demotionToken/);
  });

  it("keeps the last known values when the API does not answer, and says why", () => {
    const last = observeCluster(cluster());
    const o = unreachableObservation(last, "reading Cluster db/pg-eu in region eu: connect ECONNREFUSED");
    expect(o).toMatchObject({ role: "primary", reachable: false, ready: true, reason: "reading Cluster db/pg-eu in region eu: connect ECONNREFUSED" });
    expect(unreachableObservation(undefined, "down")).toMatchObject({ role: "unknown", reachable: false, ready: false });
    expect(unknownObservation("r".repeat(5_000)).reason?.length).toBe(2_048);
  });

  it("compares observations regardless of key order and resourceVersion", () => {
    const a = observeCluster(cluster());
    const b = Object.fromEntries(Object.entries(a).reverse()) as typeof a;
    expect(sameObservation(a, b)).toBe(true);
    // A write that changes nothing the coordinator reads (a label) is not a change.
    expect(sameObservation(a, { ...a, resourceVersion: "43" })).toBe(true);
    expect(sameObservation(a, { ...a, fenced: true })).toBe(false);
    expect(sameObservation(undefined, a)).toBe(false);
  });
});

describe("EpochTracker", () => {
  it("only grows, and refuses older epochs naming what raised the floor", () => {
    const t = new EpochTracker();
    expect(t.check("orders", 1)).toEqual({ ok: true });
    expect(t.note("orders", 3, "command", "cmd-1")).toBe(true);
    expect(t.note("orders", 2, "state", "revision 9")).toBe(false);
    expect(t.check("orders", 3)).toEqual({ ok: true });
    expect(t.check("orders", 2)).toEqual({ ok: false, newest: { epoch: 3, source: "command", by: "cmd-1" } });
    expect(t.check("billing", 0)).toEqual({ ok: true });
    expect(t.current("orders")).toBe(3);
    expect(t.current("billing")).toBe(0);
  });
});

describe("LatestPublisher", () => {
  it("sends one at a time and only the newest of the values that waited", async () => {
    const sent: number[] = [];
    let release: () => void = () => undefined;
    const p = new LatestPublisher<number>(
      (v) => {
        sent.push(v);
        return v === 1 ? new Promise<void>((r) => (release = r)) : Promise.resolve();
      },
      () => undefined,
    );
    p.offer(1);
    p.offer(2);
    p.offer(3);
    p.offer(4);
    release();
    await p.idle();
    expect(sent).toEqual([1, 4]);
  });

  it("reports a failed send and goes on", async () => {
    const errors: unknown[] = [];
    const p = new LatestPublisher<number>(
      async (v) => {
        if (v === 1) throw new Error("bus down");
      },
      (e) => errors.push(e),
    );
    p.offer(1);
    await p.idle();
    p.offer(2);
    await p.idle();
    expect(errors).toHaveLength(1);
  });
});
