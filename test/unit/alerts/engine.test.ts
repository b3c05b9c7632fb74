import { describe, expect, it } from "vitest";
import { AlertEngine, fingerprint, type AlertTransition, type Observation } from "../../../src/alerts/engine.js";

const orders = { federation: "orders" };
const T0 = Date.parse("2025-01-01T00:00:00Z");

function exceeded(atS: number, exposureS: number, budgetS = 30): Observation {
  return {
    alert: "PgfedRPOBudgetExceeded",
    labels: orders,
    active: exposureS > budgetS,
    values: { exposure_s: exposureS, budget_s: budgetS, exposure_bytes: 16 * 1024 * 1024 },
    atMs: T0 + atS * 1_000,
  };
}

/** Feeds one observation per second from `from` to `to` (inclusive) and collects the transitions. */
function run(engine: AlertEngine, from: number, to: number, obs: (atS: number) => Observation): AlertTransition[] {
  const out: AlertTransition[] = [];
  for (let t = from; t <= to; t++) out.push(...engine.observe(obs(t)));
  return out;
}

describe("AlertEngine", () => {
  it("fires only after the condition held for `for` (10 s for PgfedRPOBudgetExceeded), with startsAt = when it began", () => {
    const engine = new AlertEngine();
    expect(run(engine, 0, 9, (t) => exceeded(t, 41))).toEqual([]);
    expect(engine.pending()).toHaveLength(1);
    const [fired, ...rest] = run(engine, 10, 10, (t) => exceeded(t, 41));
    expect(rest).toEqual([]);
    expect(fired?.kind).toBe("firing");
    expect(fired?.atMs).toBe(T0 + 10_000);
    expect(fired?.alert.startsAtMs).toBe(T0);
    expect(fired?.alert.labels).toEqual({ alertname: "PgfedRPOBudgetExceeded", severity: "page", federation: "orders" });
    expect(fired?.alert.annotations).toEqual({
      summary: "orders: exposure 41 s exceeds the RPO budget of 30 s",
      description: expect.stringContaining("16MiB of committed WAL on the primary of orders") as string,
      command: "pgfed status orders",
      runbook_url: "docs/alerts.md#pgfedrpobudgetexceeded",
    });
    expect(engine.active()).toHaveLength(1);
  });

  it("does not flap: an on/off/on condition shorter than `for` never fires", () => {
    const engine = new AlertEngine();
    // 6 s over the budget, 1 s under, 6 s over, 1 s under … for two minutes.
    const transitions = run(engine, 0, 120, (t) => exceeded(t, t % 7 === 6 ? 0 : 41));
    expect(transitions).toEqual([]);
    expect(engine.active()).toEqual([]);
  });

  it("needs two samples even when `for` has passed between them", () => {
    const engine = new AlertEngine();
    expect(engine.observe(exceeded(0, 41))).toEqual([]);
    // A single sample after a long gap is the second one: fires now, not on the first.
    expect(engine.observe(exceeded(60, 41)).map((t) => t.kind)).toEqual(["firing"]);
    const once = new AlertEngine({ hysteresis: { PgfedRPOBudgetExceeded: { forMs: 0, minSamples: 1 } } });
    expect(once.observe(exceeded(0, 41)).map((t) => t.kind)).toEqual(["firing"]);
  });

  it("keeps firing through a short clear, and resolves with endsAt = when it cleared after `clearFor`", () => {
    const engine = new AlertEngine();
    run(engine, 0, 10, (t) => exceeded(t, 41));
    // 20 s clear (< clearFor 30 s), then over the budget again: still the same firing alert, no transition.
    expect(run(engine, 11, 30, (t) => exceeded(t, 5))).toEqual([]);
    expect(run(engine, 31, 40, (t) => exceeded(t, 45))).toEqual([]);
    expect(engine.active()[0]?.startsAtMs).toBe(T0);
    // The values update while firing.
    expect(engine.active()[0]?.annotations.summary).toBe("orders: exposure 45 s exceeds the RPO budget of 30 s");
    // Clear from 41 s on: resolves at 71 s with endsAt 41 s.
    const transitions = run(engine, 41, 80, (t) => exceeded(t, 2));
    expect(transitions.map((t) => [t.kind, (t.atMs - T0) / 1_000, ((t.alert.endsAtMs ?? 0) - T0) / 1_000])).toEqual([["resolved", 71, 41]]);
    expect(engine.active()).toEqual([]);
  });

  it("resolves on tick when observations stop after the condition cleared", () => {
    const engine = new AlertEngine();
    run(engine, 0, 10, (t) => exceeded(t, 41));
    engine.observe(exceeded(11, 0));
    expect(engine.tick(T0 + 30_000)).toEqual([]);
    expect(engine.tick(T0 + 41_000).map((t) => t.kind)).toEqual(["resolved"]);
    expect(engine.tick(T0 + 50_000)).toEqual([]);
  });

  it("raises nothing for an idle database: every condition clear, however long", () => {
    const engine = new AlertEngine();
    const idle = (t: number): Observation[] => [
      exceeded(t, 0),
      { alert: "PgfedRPOBudgetWarning", labels: orders, active: false, values: { exposure_s: 0, budget_s: 30, warn_pct: 50 }, atMs: T0 + t * 1_000 },
      {
        alert: "PgfedWALArchivingFailing",
        labels: { ...orders, member: "pg-eu", region: "eu-west" },
        active: false,
        values: { archive_age_s: 86_400 },
        atMs: T0 + t * 1_000,
      },
    ];
    const transitions: AlertTransition[] = [];
    for (let t = 0; t < 3_600; t += 1) transitions.push(...engine.observeAll(idle(t)));
    transitions.push(...engine.tick(T0 + 7_200_000));
    expect(transitions).toEqual([]);
    expect(engine.active()).toEqual([]);
    expect(engine.pending()).toEqual([]);
  });

  it("tells instances apart by their labels and ignores late observations", () => {
    const engine = new AlertEngine();
    const stalled = (member: string, atS: number, active: boolean): Observation => ({
      alert: "PgfedReplicaStalled",
      labels: { federation: "orders", member, region: member === "pg-us" ? "us-east" : "eu-west" },
      active,
      values: { lag_s: 95, lag_bytes: 1500 },
      atMs: T0 + atS * 1_000,
    });
    for (let t = 0; t <= 60; t++) {
      engine.observe(stalled("pg-us", t, true));
      engine.observe(stalled("pg-eu", t, t < 30));
    }
    expect(engine.active().map((a) => a.labels.member)).toEqual(["pg-us"]);
    expect(engine.active()[0]?.annotations.summary).toBe("orders/pg-us: replica is not advancing; it lags 95 s (1.465kiB) behind the primary");
    expect(engine.observe(stalled("pg-us", 10, false))).toEqual([]);
    expect(engine.active()).toHaveLength(1);
  });

  it("fills optional command parts from the values, or shows the placeholder", () => {
    const engine = new AlertEngine();
    const obs = (values: Record<string, string | number>): Observation => ({ alert: "PgfedFailoverAwaitingApproval", labels: orders, active: true, values, atMs: T0 });
    expect(engine.observe(obs({ worst_case_s: 41, budget_s: 30, operation: "op-7f3a" }))[0]?.alert.annotations.command).toBe("pgfed approve op-7f3a");
    const other = new AlertEngine();
    expect(other.observe(obs({ worst_case_s: 41 }))[0]?.alert.annotations).toMatchObject({
      command: "pgfed approve <op>",
      summary: "orders: failover waits for an operator; worst-case loss 41 s (RPO budget ? s)",
    });
  });

  it("fingerprints are stable and independent of label order", () => {
    expect(fingerprint({ a: "1", b: "2" })).toBe(fingerprint({ b: "2", a: "1" }));
    expect(fingerprint({ a: "1", b: "2" })).not.toBe(fingerprint({ a: "1", b: "3" }));
  });
});
