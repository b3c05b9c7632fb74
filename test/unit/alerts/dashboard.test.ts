import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ALL_PGFED_METRICS, metricsInExpr } from "../../../src/alerts/metric-names.js";

const FILE = join(import.meta.dirname, "../../../deploy/grafana/pgfed-dashboard.json");

const datasource = z.object({ type: z.literal("prometheus"), uid: z.literal("${DS_PROMETHEUS}") });
const panel = z.object({
  id: z.number().int(),
  type: z.string(),
  title: z.string().min(1),
  gridPos: z.object({ h: z.number(), w: z.number().max(24), x: z.number().min(0), y: z.number().min(0) }),
  datasource: datasource.optional(),
  targets: z.array(z.object({ expr: z.string().min(1), refId: z.string(), datasource })).optional(),
});
const dashboard = z.object({
  __inputs: z.array(z.object({ name: z.string(), type: z.string(), pluginId: z.string() })),
  schemaVersion: z.number().int().min(36).max(41),
  uid: z.string().min(1),
  title: z.string().min(1),
  panels: z.array(panel).min(1),
  templating: z.object({ list: z.array(z.object({ name: z.string(), query: z.unknown(), datasource: datasource.optional() })) }),
});

const raw: unknown = JSON.parse(readFileSync(FILE, "utf8"));
const dash = dashboard.parse(raw);
const dataPanels = dash.panels.filter((p) => p.type !== "row");
const exprs = dataPanels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

describe("Grafana dashboard", () => {
  it("is a Grafana dashboard with the Prometheus datasource as the DS_PROMETHEUS input", () => {
    expect(dash.schemaVersion).toBe(39);
    expect(dash.__inputs).toEqual([expect.objectContaining({ name: "DS_PROMETHEUS", type: "datasource", pluginId: "prometheus" })]);
    expect(new Set(dash.panels.map((p) => p.id)).size).toBe(dash.panels.length);
    for (const p of dataPanels) expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: "${DS_PROMETHEUS}" });
  });

  it("has a federation variable and filters federation metrics by it", () => {
    expect(dash.templating.list.map((v) => v.name)).toContain("federation");
    const unfiltered = exprs.filter((e) => !e.expr.includes('federation=~"$federation"') && !/pgfed_(coordinator_leader|alert_)/.test(e.expr));
    expect(unfiltered).toEqual([]);
  });

  it("every panel query references only known pgfed metrics", () => {
    expect(exprs.length).toBeGreaterThan(15);
    for (const { panel: title, expr } of exprs) {
      const names = metricsInExpr(expr);
      expect(names.length, `${title}: ${expr}`).toBeGreaterThan(0);
      for (const n of names) expect(ALL_PGFED_METRICS.has(n), `${title}: unknown metric ${n}`).toBe(true);
    }
  });

  it("shows exposure vs budget, lag in bytes and seconds, archive health, member up/down, operations and durations", () => {
    const used = new Set(exprs.flatMap((e) => metricsInExpr(e.expr)));
    for (const m of [
      "pgfed_exposure_seconds",
      "pgfed_rpo_budget_seconds",
      "pgfed_replica_lag_seconds",
      "pgfed_replica_lag_bytes",
      "pgfed_archive_last_success_timestamp_seconds",
      "pgfed_archive_failing",
      "pgfed_member_up",
      "pgfed_operations_total",
      "pgfed_operation_duration_seconds",
    ])
      expect(used, m).toContain(m);
    const upDown = dataPanels.find((p) => p.targets?.some((t) => t.expr.startsWith("pgfed_member_up")));
    expect(upDown?.type).toBe("state-timeline");
  });

  it("panels do not overlap", () => {
    const cells = new Set<string>();
    for (const p of dash.panels) {
      const { x, y, w, h } = p.gridPos;
      for (let i = x; i < x + w; i++)
        for (let j = y; j < y + h; j++) {
          expect(cells.has(`${i},${j}`), `${p.title} overlaps at ${i},${j}`).toBe(false);
          cells.add(`${i},${j}`);
        }
    }
  });
});
