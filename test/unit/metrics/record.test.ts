/** The exposure and per-member series both the coordinator's alerting and the WAL monitor export from one evaluation. */
import { describe, expect, it } from "vitest";
import { createMetrics } from "../../../src/metrics.js";
import { recordExposureMetrics, recordMemberMetrics, type Evaluation, type MemberStatus } from "../../../src/wal/monitor.js";

const labels = (member: string) => ({ federation: "orders", member, region: member === "pg-eu" ? "eu-west" : "us-east" });

function status(name: string, over: Partial<MemberStatus> = {}): MemberStatus {
  return { name, region: labels(name).region, status: "up", role: "replica", error: undefined, archive: undefined, replica: undefined, lag: undefined, ...over };
}

async function series(m: ReturnType<typeof createMetrics>, name: string): Promise<Array<{ labels: Record<string, unknown>; value: number }>> {
  const metric = await m.registry.getSingleMetric(name)?.get();
  return (metric?.values ?? []).map((v) => ({ labels: { ...v.labels }, value: v.value }));
}

describe("recordMemberMetrics", () => {
  it("sets a replica's lag, stall flag and archive figures", async () => {
    const m = createMetrics();
    const s = status("pg-us", {
      lag: { bytes: 16_384n, ms: 2_500, via: "received" },
      replica: { stalled: true, reason: "no progress", samplesWithoutProgress: 4 },
      archive: { failing: true, reason: "archive_command failed", newFailures: 3, failedCount: 7, lastArchivedAtMs: 1_700_000_000_000, readySegments: 5 },
    });
    recordMemberMetrics(m, labels("pg-us"), s, "pg-eu");
    expect(await series(m, "pgfed_replica_lag_bytes")).toEqual([{ labels: labels("pg-us"), value: 16_384 }]);
    expect(await series(m, "pgfed_replica_lag_seconds")).toEqual([{ labels: labels("pg-us"), value: 2.5 }]);
    expect(await series(m, "pgfed_replica_stalled")).toEqual([{ labels: labels("pg-us"), value: 1 }]);
    expect(await series(m, "pgfed_archive_failing")).toEqual([{ labels: labels("pg-us"), value: 1 }]);
    expect(await series(m, "pgfed_archive_ready_segments")).toEqual([{ labels: labels("pg-us"), value: 5 }]);
    expect(await series(m, "pgfed_archive_failures_total")).toEqual([{ labels: labels("pg-us"), value: 3 }]);
    expect(await series(m, "pgfed_archive_last_success_timestamp_seconds")).toEqual([{ labels: labels("pg-us"), value: 1_700_000_000 }]);
  });

  it("removes the replica series of a member once it is the primary, and keeps its archive figures", async () => {
    const m = createMetrics();
    recordMemberMetrics(m, labels("pg-us"), status("pg-us", { lag: { bytes: 10n, ms: 100, via: "received" } }), "pg-eu");
    expect(await series(m, "pgfed_replica_lag_bytes")).toHaveLength(1);
    const archive = { failing: false, reason: undefined, newFailures: 0, failedCount: 0, lastArchivedAtMs: undefined, readySegments: 0 };
    recordMemberMetrics(m, labels("pg-us"), status("pg-us", { role: "primary", archive }), "pg-us");
    expect(await series(m, "pgfed_replica_lag_bytes")).toEqual([]);
    expect(await series(m, "pgfed_replica_lag_seconds")).toEqual([]);
    expect(await series(m, "pgfed_replica_stalled")).toEqual([]);
    expect(await series(m, "pgfed_archive_failing")).toEqual([{ labels: labels("pg-us"), value: 0 }]);
    // no new failures: the counter is not touched, so it has no series yet
    expect(await series(m, "pgfed_archive_failures_total")).toEqual([]);
  });
});

describe("recordExposureMetrics", () => {
  const base: Evaluation = {
    federation: "orders",
    atMs: 0,
    primary: "pg-eu",
    estimate: undefined,
    worstCase: undefined,
    budget: { level: "ok", fraction: 0, budgetMs: 30_000 },
    bestTarget: undefined,
    members: [],
    signals: [],
    nudge: undefined,
    sentence: "",
  };

  it("leaves the gauges alone when nothing was measured", async () => {
    const m = createMetrics();
    recordExposureMetrics(m, base);
    expect(await series(m, "pgfed_exposure_seconds")).toEqual([]);
    expect(await series(m, "pgfed_worst_case_exposure_seconds")).toEqual([]);
  });

  it("shows the last estimate's exposure and the worst case while the primary is silent", async () => {
    const m = createMetrics();
    const basedOn = { kind: "estimate", exposureMs: 1_500, exposureBytes: 8_192n } as unknown as NonNullable<Evaluation["estimate"]>;
    const worstCase = { kind: "worst_case", basedOn, exposureMs: 9_500, exposureBytes: 8_192n } as unknown as NonNullable<Evaluation["worstCase"]>;
    recordExposureMetrics(m, { ...base, worstCase });
    expect(await series(m, "pgfed_exposure_seconds")).toEqual([{ labels: { federation: "orders" }, value: 1.5 }]);
    expect(await series(m, "pgfed_exposure_bytes")).toEqual([{ labels: { federation: "orders" }, value: 8_192 }]);
    expect(await series(m, "pgfed_worst_case_exposure_seconds")).toEqual([{ labels: { federation: "orders" }, value: 9.5 }]);
  });
});
