/** What the leader observes for the alert engine from one evaluation pass (pure; no bus, no Postgres). */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createActor } from "xstate";
import { describe, expect, it } from "vitest";
import { federationMachine, type FederationContext, type Operation } from "../../../machines/index.js";
import { renderAnnotations, ALERTS } from "../../../src/alerts/catalog.js";
import { AlertEngine } from "../../../src/alerts/engine.js";
import { parseConfig } from "../../../src/config.js";
import { REPO_ROOT } from "../../../src/alerts/generate.js";
import { CoordinatorAlerting, OPERATION_FAILED_WINDOW_MS, newMemo, observationsOf, parseOutsideChange, type FederationTick } from "../../../src/coordinator/alerting.js";
import { silentLogger } from "../../../src/log.js";
import { createRegistry } from "../../../src/metrics.js";
import type { Evaluation, MemberStatus } from "../../../src/wal/monitor.js";

const config = parseConfig({
  federations: [
    {
      name: "orders",
      rpo: { budget: "30s" },
      members: [
        { name: "pg-eu", region: "eu-west", namespace: "db", cluster: "pg-eu-c", postgres: { host: "127.0.0.1" } },
        { name: "pg-us", region: "us-east", namespace: "db", cluster: "pg-us-c", postgres: { host: "127.0.0.1" } },
      ],
    },
  ],
  regions: [{ name: "eu-west" }, { name: "us-east" }],
  bus: { servers: ["nats://127.0.0.1:4222"] },
});
const cfg = config.federations[0] as (typeof config.federations)[number];
const T0 = Date.parse("2025-01-01T00:00:00Z");

function baseContext(): FederationContext {
  const a = createActor(federationMachine, {
    input: { federation: "orders", members: ["pg-eu", "pg-us"], designatedPrimary: "pg-eu", epoch: 3, rpo: { budgetMs: 30_000, warnAt: 0.5 }, failoverMode: "manual" },
  });
  a.start();
  const ctx = a.getSnapshot().context;
  a.stop();
  return ctx;
}

/** The sentence FederationRuntime.noticeOtherWriter writes (its shape is checked against the source below). */
const outsideSentence = (member: string, from: string, to: string, manager: string): string =>
  `spec.replica.primary of orders/${member} was changed from ${from} to ${to} by field manager "${manager}", not by pgfed; automation paused until an operator resumes it`;

/** The federation machine's context after another writer changed a member's topology (and, optionally, after RESUME). */
function contextWith(events: ({ type: "OUTSIDE_CHANGE"; member: string; manager: string; sentence: string } | { type: "RESUME"; by: string })[]): FederationContext {
  const a = createActor(federationMachine, {
    input: { federation: "orders", members: ["pg-eu", "pg-us"], designatedPrimary: "pg-eu", epoch: 3, rpo: { budgetMs: 30_000, warnAt: 0.5 }, failoverMode: "manual" },
  });
  a.start();
  for (const e of events) a.send(e);
  const ctx = a.getSnapshot().context;
  a.stop();
  return ctx;
}

const argoChange = { type: "OUTSIDE_CHANGE" as const, member: "pg-us", manager: "argocd-controller", sentence: outsideSentence("pg-us", "pg-eu", "pg-us", "argocd-controller") };

function member(name: string, over: Partial<MemberStatus> = {}): MemberStatus {
  return { name, region: name === "pg-eu" ? "eu-west" : "us-east", status: "up", role: name === "pg-eu" ? "primary" : "replica", error: undefined, archive: undefined, replica: undefined, lag: undefined, ...over };
}

function tick(nowMs: number, over: Partial<FederationTick> = {}, members: MemberStatus[] = [member("pg-eu"), member("pg-us")]): FederationTick {
  const evaluation: Evaluation = {
    federation: "orders",
    atMs: nowMs,
    primary: "pg-eu",
    estimate: undefined,
    worstCase: undefined,
    budget: { level: "ok", fraction: 0, budgetMs: 30_000 },
    bestTarget: undefined,
    members,
    signals: [],
    nudge: undefined,
    sentence: "",
  };
  return { cfg, ctx: baseContext(), evaluation, writable: ["pg-eu"], kubeUnreachable: [], sampleFailures: new Map(), nowMs, ...over };
}

const active = (t: FederationTick, memo = newMemo()) => observationsOf(t, memo).filter((o) => o.active);

describe("observationsOf", () => {
  it("a healthy, idle federation: every instance observed, none active; the engine raises nothing over ten minutes", () => {
    const engine = new AlertEngine();
    const memo = newMemo();
    const obs = observationsOf(tick(T0), memo);
    // 2 RPO + 5 per member × 2 + approval + 3 operation kinds + no primary + split brain
    expect(obs).toHaveLength(2 + 10 + 1 + 3 + 2);
    expect(obs.filter((o) => o.active)).toEqual([]);
    for (let s = 0; s < 600; s++) expect(engine.observeAll(observationsOf(tick(T0 + s * 1_000), memo))).toEqual([]);
    expect(engine.pending()).toEqual([]);
  });

  it("split brain names the member that is not the designated primary in CNPG's fencing command", () => {
    const [o, ...rest] = active(tick(T0, { writable: ["pg-eu", "pg-us"] }));
    expect(rest).toEqual([]);
    expect(o?.alert).toBe("PgfedSplitBrainSuspected");
    const a = renderAnnotations(ALERTS.PgfedSplitBrainSuspected, o?.labels ?? {}, o?.values ?? {});
    expect(a.summary).toBe("orders: 2 members report themselves writable primaries");
    expect(a.command).toBe(`kubectl --context us-east annotate clusters.postgresql.cnpg.io pg-us-c -n db cnpg.io/fencedInstances='["*"]' --overwrite`);
  });

  it("a failover waiting for approval carries the operation id, so the command is `pgfed approve <op>`", () => {
    const ctx = baseContext();
    const op: Operation = { id: "failover-orders-x1", kind: "failover", target: "pg-us", from: "pg-eu", reason: "region lost", requestedBy: "pgfed", startedAtMs: T0, automatic: true, promoteIssued: false, step: "awaitApproval" };
    const obs = active(tick(T0, { ctx: { ...ctx, operation: op, lossEstimates: [{ target: "pg-us", worstCaseLossMs: 41_000, lossBytes: 1024 }] }, writable: [] }));
    const approval = obs.find((o) => o.alert === "PgfedFailoverAwaitingApproval");
    expect(renderAnnotations(ALERTS.PgfedFailoverAwaitingApproval, approval?.labels ?? {}, approval?.values ?? {})).toMatchObject({
      summary: "orders: failover waits for an operator; worst-case loss 41 s (RPO budget 30 s)",
      command: "pgfed approve failover-orders-x1",
    });
    expect(obs.map((o) => o.alert).sort()).toEqual(["PgfedFailoverAwaitingApproval", "PgfedNoPrimary"]);
  });

  it("archive failing, replica stalled and unreachable members are per member, with their region", () => {
    const archive = { failing: true, reason: "x", newFailures: 1, failedCount: 3, lastArchivedAtMs: T0 - 42_000, readySegments: 2 };
    const obs = active(
      tick(T0, { kubeUnreachable: ["pg-us"], sampleFailures: new Map([["pg-us", 4]]) }, [
        member("pg-eu", { archive }),
        member("pg-us", { replica: { stalled: true, reason: "y", samplesWithoutProgress: 10 }, lag: { bytes: 2048n, ms: 12_000, via: "archive" } }),
      ]),
    );
    expect(obs.map((o) => [o.alert, o.labels.member, o.labels.region, o.values])).toEqual([
      ["PgfedWALArchivingFailing", "pg-eu", "eu-west", { archive_age_s: 42 }],
      ["PgfedReplicaStalled", "pg-us", "us-east", { lag_s: 12, lag_bytes: 2048 }],
      ["PgfedMemberUnreachable", "pg-us", "us-east", { errors: 4 }],
    ]);
  });

  it("an aborted operation counts as failed for 15 minutes, by kind", () => {
    const memo = newMemo();
    const ctx = { ...baseContext(), lastOperation: { id: "switchover-1", kind: "switchover" as const, outcome: "aborted" as const, target: "pg-us", from: "pg-eu" } };
    const now = active(tick(T0, { ctx }), memo);
    expect(now.map((o) => [o.alert, o.labels.kind, o.values?.failures])).toEqual([["PgfedOperationFailed", "switchover", 1]]);
    expect(active(tick(T0 + OPERATION_FAILED_WINDOW_MS + 1, { ctx }), memo)).toEqual([]);
  });

  it("a topology changed outside is one instance keyed by federation and member, with the manager, until the machine drops it", () => {
    const memo = newMemo();
    const ctx = contextWith([argoChange]);
    expect(ctx.paused).toBe(true);
    const topo = (t: FederationTick) => observationsOf(t, memo).filter((o) => o.alert === "PgfedTopologyChangedOutside");
    const [o, ...rest] = topo(tick(T0, { ctx }));
    expect(rest).toEqual([]);
    expect([o?.active, o?.labels, o?.values]).toEqual([true, { federation: "orders", member: "pg-us", manager: "argocd-controller" }, { from: "pg-eu", to: "pg-us" }]);
    expect(renderAnnotations(ALERTS.PgfedTopologyChangedOutside, o?.labels ?? {}, o?.values ?? {}).summary).toBe(
      'orders/pg-us: spec.replica.primary was changed by field manager "argocd-controller", not by pgfed; automation of orders is paused',
    );
    // Another writer on another member: the machine keeps the newest reason, the old instance clears.
    const ctx2 = contextWith([argoChange, { type: "OUTSIDE_CHANGE", member: "pg-eu", manager: "kubectl-edit", sentence: outsideSentence("pg-eu", "(unset)", "pg-us", "kubectl-edit") }]);
    expect(topo(tick(T0 + 1_000, { ctx: ctx2 })).map((x) => [x.active, x.labels.member, x.labels.manager])).toEqual([
      [false, "pg-us", "argocd-controller"],
      [true, "pg-eu", "kubectl-edit"],
    ]);
    // RESUME removes the context alert: one inactive observation resolves it, then nothing more.
    const resumed = contextWith([argoChange, { type: "RESUME", by: "alice" }]);
    expect(topo(tick(T0 + 2_000, { ctx: resumed })).map((x) => [x.active, x.labels.member])).toEqual([[false, "pg-eu"]]);
    expect(topo(tick(T0 + 3_000, { ctx: resumed }))).toEqual([]);
  });

  it("a reason of another shape still raises the alert, for the federation alone", () => {
    const ctx = contextWith([{ ...argoChange, sentence: "someone edited pg-us" }]);
    const obs = active(tick(T0, { ctx }));
    expect(obs.map((o) => [o.alert, o.labels, o.values])).toEqual([["PgfedTopologyChangedOutside", { federation: "orders" }, {}]]);
  });

  it("RPO warning and exceeded follow the budget verdict, with the numbers", () => {
    const t = tick(T0);
    t.evaluation = { ...t.evaluation, budget: { level: "exceeded", fraction: 1.4, budgetMs: 30_000 } };
    expect(active(t).map((o) => o.alert)).toEqual(["PgfedRPOBudgetWarning", "PgfedRPOBudgetExceeded"]);
  });
});

describe("parseOutsideChange", () => {
  it("reads federation, member, old and new value and manager from the sentence of noticeOtherWriter", () => {
    expect(parseOutsideChange(outsideSentence("pg-us", "pg-eu", "pg-us", "argocd-controller"))).toEqual({ federation: "orders", member: "pg-us", from: "pg-eu", to: "pg-us", manager: "argocd-controller" });
    expect(parseOutsideChange(outsideSentence("pg-ap", "(unset)", "pg-us", "kubectl-client-side-apply"))).toMatchObject({ member: "pg-ap", from: "(unset)", manager: "kubectl-client-side-apply" });
    expect(parseOutsideChange('spec.replica.primary of team/orders/pg-us was changed from a to b by field manager "m", not by pgfed')).toMatchObject({ federation: "team/orders", member: "pg-us" });
  });

  it("returns undefined for any other shape", () => {
    for (const reason of [
      "",
      "automation of orders resumed by alice",
      'spec.replica.primary of orders/pg-us was changed from pg-eu to pg-us by field manager "", not by pgfed; automation paused',
      'spec.replica.primary of orders/pg-us was changed from pg-eu to pg-us by field manager "argocd-controller"',
      'spec.replica.primary of pg-us was changed from pg-eu to pg-us by field manager "argocd-controller", not by pgfed; x',
      'note: spec.replica.primary of orders/pg-us was changed from pg-eu to pg-us by field manager "argocd-controller", not by pgfed; x',
    ])
      expect(parseOutsideChange(reason), reason).toBeUndefined();
  });

  it("the coordinator still writes the sentence in the shape the parser reads (src/coordinator/runtime/detection.ts)", () => {
    const source = readFileSync(join(REPO_ROOT, "src/coordinator/runtime/detection.ts"), "utf8");
    expect(source).toContain('`spec.replica.primary of ${this.name}/${member} was changed from ${was} to ${now.specPrimary} by field manager "${manager}", not by pgfed; ');
  });
});

describe("CoordinatorAlerting", () => {
  it("links pushed alerts to alerts.runbookBaseUrl when the config gives one, else to the relative docs/alerts.md", async () => {
    const linked = new CoordinatorAlerting({ config: { ...config, alerts: { ...config.alerts, runbookBaseUrl: "https://docs.example.com/pgfed/alerts.md" } }, registry: createRegistry(), log: silentLogger(), hysteresis: { PgfedNoPrimary: { forMs: 0, clearForMs: 2_000, minSamples: 1 } } });
    linked.observe(tick(T0, { writable: [] }));
    expect(linked.active().map((a) => a.annotations.runbook_url)).toEqual(["https://docs.example.com/pgfed/alerts.md#pgfednoprimary"]);
    await linked.close(100);
    const plain = new CoordinatorAlerting({ config, registry: createRegistry(), log: silentLogger(), hysteresis: { PgfedNoPrimary: { forMs: 0, clearForMs: 2_000, minSamples: 1 } } });
    plain.observe(tick(T0, { writable: [] }));
    expect(plain.active().map((a) => a.annotations.runbook_url)).toEqual(["docs/alerts.md#pgfednoprimary"]);
    await plain.close(100);
  });

  it("skips the engine for a healthy federation only once nothing is pending or firing: alerts still fire, resolve and restart their `for`", async () => {
    const alerting = new CoordinatorAlerting({
      config,
      registry: createRegistry(),
      log: silentLogger(),
      hysteresis: { PgfedNoPrimary: { forMs: 0, clearForMs: 2_000, minSamples: 1 }, PgfedRPOBudgetWarning: { forMs: 5_000, clearForMs: 0, minSamples: 1 } },
    });
    const names = () => alerting.active().map((a) => a.name);
    alerting.observe(tick(T0, { writable: [] }));
    expect(names()).toEqual(["PgfedNoPrimary"]);
    // Healthy passes keep reaching the engine while the alert is firing, so it resolves after clearFor.
    for (const dt of [1_000, 2_000, 3_000]) alerting.observe(tick(T0 + dt));
    expect(names()).toEqual([]);
    alerting.observe(tick(T0 + 3_500));
    const warn = (nowMs: number): FederationTick => {
      const t = tick(nowMs);
      t.evaluation = { ...t.evaluation, budget: { level: "warn", fraction: 0.6, budgetMs: 30_000 } };
      return t;
    };
    // Pending since T0+4 s, cleared by a healthy pass; active again from T0+10 s: not yet `for` 5 s at T0+14 s.
    alerting.observe(warn(T0 + 4_000));
    alerting.observe(tick(T0 + 5_000));
    alerting.observe(tick(T0 + 6_000));
    alerting.observe(warn(T0 + 10_000));
    alerting.observe(warn(T0 + 14_000));
    expect(names()).toEqual([]);
    alerting.observe(warn(T0 + 15_000));
    expect(names()).toEqual(["PgfedRPOBudgetWarning"]);
    await alerting.close(100);
  });

  it("topology changed outside: fires with the context alert, pgfed_topology_changed_outside = 1 meanwhile, both gone after RESUME and on a follower", async () => {
    const registry = createRegistry();
    const alerting = new CoordinatorAlerting({ config, registry, log: silentLogger() });
    const series = async () => {
      const text = await registry.metrics();
      return text.split("\n").filter((l) => l.startsWith("pgfed_topology_changed_outside{"));
    };
    alerting.observe(tick(T0));
    expect(alerting.active()).toEqual([]);
    expect(await series()).toEqual([]);

    alerting.observe(tick(T0 + 1_000, { ctx: contextWith([argoChange]) }));
    const [a, ...rest] = alerting.active();
    expect(rest).toEqual([]);
    expect(a?.name).toBe("PgfedTopologyChangedOutside");
    expect(a?.labels).toEqual({ alertname: "PgfedTopologyChangedOutside", severity: "critical", federation: "orders", member: "pg-us", manager: "argocd-controller" });
    expect(a?.values).toEqual({ from: "pg-eu", to: "pg-us" });
    expect(a?.annotations.command).toBe("pgfed resume orders");
    expect(await series()).toEqual(['pgfed_topology_changed_outside{federation="orders",member="pg-us",manager="argocd-controller"} 1']);

    // Still there on the next pass (the machine keeps it); gone with RESUME.
    alerting.observe(tick(T0 + 2_000, { ctx: contextWith([argoChange]) }));
    expect(alerting.active().map((x) => x.name)).toEqual(["PgfedTopologyChangedOutside"]);
    alerting.observe(tick(T0 + 3_000, { ctx: contextWith([argoChange, { type: "RESUME", by: "alice" }]) }));
    expect(alerting.active()).toEqual([]);
    expect(await series()).toEqual([]);

    // Raised again, then this coordinator steps down: no alert, no series on the follower.
    alerting.observe(tick(T0 + 4_000, { ctx: contextWith([argoChange]) }));
    expect(await series()).toHaveLength(1);
    await alerting.stepDown(100);
    expect(alerting.active()).toEqual([]);
    expect(await series()).toEqual([]);
    await alerting.close(100);
  });
});
