/**
 * pgfed's alerts through the real servers (loopback only, stopped by PID in afterAll):
 * - Alertmanager 0.25 routing everything to a local webhook receiver: pgfed's Alertmanager
 *   notifier fires and resolves an alert; a silence made through Alertmanager's API suppresses it.
 * - Prometheus 2.42 with deploy/prometheus/pgfed-rules.yml scraping a prom-client registry that
 *   shows an exposure above the budget: PgfedRPOBudgetExceeded fires (the rule with the shortest
 *   `for:`, 10 s, so the committed rules are tested unchanged) and reaches the receiver through
 *   Alertmanager; an idle federation with an ancient archive raises nothing.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Gauge, Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { AlertEngine, type AlertTransition, type Observation } from "../../../src/alerts/engine.js";
import { REPO_ROOT, runbookBaseUrl } from "../../../src/alerts/generate.js";
import { AlertmanagerNotifier } from "../../../src/alerts/notifiers.js";
import { waitFor } from "../../../src/lab/proc.js";
import { startAlertmanager, startPrometheus, type MonitoringServer } from "../../../src/lab/prometheus.js";
import { createMetrics } from "../../../src/metrics.js";
import { LocalServers, getJson, startWebhookReceiver, type WebhookDelivery } from "../../support/http.js";

const amAlerts = z.array(
  z.object({
    labels: z.record(z.string(), z.string()),
    annotations: z.record(z.string(), z.string()),
    status: z.object({ state: z.string(), silencedBy: z.array(z.string()) }),
    startsAt: z.string(),
    endsAt: z.string(),
  }),
);

const promAlerts = z.object({
  status: z.literal("success"),
  data: z.object({
    alerts: z.array(z.object({ labels: z.record(z.string(), z.string()), annotations: z.record(z.string(), z.string()), state: z.string(), activeAt: z.string() })),
  }),
});

const dir = mkdtempSync(join(tmpdir(), "pgfed-alerts-it-"));
const processes: MonitoringServer[] = [];
const servers = new LocalServers();
let deliveries: WebhookDelivery[] = [];
let amUrl = "";
let notifier: AlertmanagerNotifier;

/** Webhook deliveries from Alertmanager that contain an alert matching `labels` with `status`. */
function delivered(labels: Record<string, string>, status: "firing" | "resolved"): WebhookDelivery | undefined {
  return deliveries.find((d) => d.body.alerts.some((a) => a.status === status && Object.entries(labels).every(([k, v]) => a.labels[k] === v)));
}

async function amAlertsNow(): Promise<z.infer<typeof amAlerts>> {
  return amAlerts.parse(await getJson(`${amUrl}/api/v2/alerts`));
}

beforeAll(async () => {
  // The receiver Alertmanager delivers to.
  const receiver = await startWebhookReceiver(servers);
  deliveries = receiver.deliveries;
  const am = await startAlertmanager({ dir, webhookUrl: `http://127.0.0.1:${receiver.port}/alertmanager` });
  processes.push(am);
  amUrl = am.url;
  notifier = new AlertmanagerNotifier({ url: amUrl, registry: new Registry(), resendIntervalMs: 60_000 });
});

afterAll(async () => {
  await notifier?.close(1_000);
  for (const p of processes.reverse()) await p.stop(5_000);
  for (const p of processes) expect(p.process.running, `${p.process.name} (pid ${p.process.pid}) stopped`).toBe(false);
  await servers.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Feeds the engine one observation every `everyMs` until `until` says stop; returns the transitions. */
async function sample(engine: AlertEngine, obs: (atMs: number) => Observation, until: (ts: AlertTransition[]) => boolean, everyMs = 100): Promise<AlertTransition[]> {
  const out: AlertTransition[] = [];
  await waitFor(
    "alert transition",
    () => {
      out.push(...engine.observe(obs(Date.now())));
      return until(out);
    },
    20_000,
    everyMs,
  );
  return out;
}

describe("pgfed → real Alertmanager 0.25 → webhook receiver", () => {
  const engine = new AlertEngine({ hysteresis: { PgfedRPOBudgetExceeded: { forMs: 1_000, clearForMs: 1_000 } } });
  const exceeded =
    (federation: string, active: boolean) =>
    (atMs: number): Observation => ({
      alert: "PgfedRPOBudgetExceeded",
      labels: { federation },
      active,
      values: { exposure_s: active ? 41 : 0, budget_s: 30, exposure_bytes: 8 * 1024 * 1024 },
      atMs,
    });

  it("a firing alert shows in /api/v2/alerts and reaches the receiver; resolving it resolves it there", async () => {
    const faultAt = Date.now();
    const fired = await sample(engine, exceeded("orders", true), (ts) => ts.some((t) => t.kind === "firing"));
    const firedAt = Date.now();
    for (const t of fired) notifier.notify(t);
    const inApi = await waitFor(
      "alert in Alertmanager",
      async () => (await amAlertsNow()).find((a) => a.labels.alertname === "PgfedRPOBudgetExceeded" && a.labels.federation === "orders"),
      10_000,
      25,
    );
    const inApiAt = Date.now();
    expect(inApi.status.state).toBe("active");
    expect(inApi.annotations).toMatchObject({ summary: "orders: exposure 41 s exceeds the RPO budget of 30 s", command: "pgfed status orders" });
    const hook = await waitFor("webhook delivery", () => delivered({ federation: "orders", alertname: "PgfedRPOBudgetExceeded" }, "firing"), 10_000, 25);
    console.log(
      `alertmanager: fault → engine firing ${firedAt - faultAt} ms (for 1 s), notify → /api/v2/alerts ${inApiAt - firedAt} ms, notify → webhook ${hook.atMs - firedAt} ms (startsAt older than group_wait: flushed at once)`,
    );

    const clearAt = Date.now();
    const resolved = await sample(engine, exceeded("orders", false), (ts) => ts.some((t) => t.kind === "resolved"));
    for (const t of resolved) notifier.notify(t);
    await waitFor(
      "alert resolved in Alertmanager",
      async () => !(await amAlertsNow()).some((a) => a.labels.federation === "orders" && a.labels.alertname === "PgfedRPOBudgetExceeded"),
      10_000,
      50,
    );
    const gone = await waitFor("resolved webhook delivery", () => delivered({ federation: "orders" }, "resolved"), 10_000, 25);
    const resolvedAlert = gone.body.alerts.find((a) => a.labels.federation === "orders");
    expect(Date.parse(resolvedAlert?.endsAt ?? "")).toBeGreaterThanOrEqual(clearAt - 50);
    console.log(`alertmanager: condition clear → resolved webhook ${gone.atMs - clearAt} ms (clearFor 1 s)`);
  });

  it("a silence created through Alertmanager's API suppresses the delivery", async () => {
    const now = Date.now();
    const res = await fetch(`${amUrl}/api/v2/silences`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        matchers: [
          { name: "alertname", value: "PgfedRPOBudgetExceeded", isRegex: false, isEqual: true },
          { name: "federation", value: "billing", isRegex: false, isEqual: true },
        ],
        startsAt: new Date(now).toISOString(),
        endsAt: new Date(now + 3_600_000).toISOString(),
        createdBy: "pgfed integration test",
        comment: "maintenance of billing",
      }),
    });
    expect(res.ok).toBe(true);
    const { silenceID } = z.object({ silenceID: z.string() }).parse(await res.json());

    const fired = [
      ...(await sample(engine, exceeded("billing", true), (ts) => ts.some((t) => t.kind === "firing"))),
      ...(await sample(engine, exceeded("payments", true), (ts) => ts.some((t) => t.kind === "firing"))),
    ];
    for (const t of fired) notifier.notify(t);
    // The unsilenced alert sent at the same time arrives; the silenced one is in the API, suppressed.
    await waitFor("payments delivered", () => delivered({ federation: "payments" }, "firing"), 10_000, 25);
    const billing = await waitFor("billing in Alertmanager", async () => (await amAlertsNow()).find((a) => a.labels.federation === "billing"), 10_000, 25);
    expect(billing.status.state).toBe("suppressed");
    expect(billing.status.silencedBy).toEqual([silenceID]);
    await new Promise((r) => setTimeout(r, 2_500)); // > group_wait + group_interval
    expect(delivered({ federation: "billing" }, "firing")).toBeUndefined();
  });
});

describe("real Prometheus 2.42 with deploy/prometheus/pgfed-rules.yml", () => {
  let promUrl = "";
  let startedAt = 0;

  beforeAll(async () => {
    // What pgfed's /metrics would show: inventory over its budget, warehouse idle with an ancient archive.
    const registry = new Registry();
    const m = createMetrics(registry);
    m.exposureSeconds.set({ federation: "inventory" }, 41);
    m.exposureBytes.set({ federation: "inventory" }, 8 * 1024 * 1024);
    m.rpoBudgetSeconds.set({ federation: "inventory" }, 30);
    m.exposureSeconds.set({ federation: "warehouse" }, 0);
    m.exposureBytes.set({ federation: "warehouse" }, 0);
    m.rpoBudgetSeconds.set({ federation: "warehouse" }, 30);
    for (const [federation, member, region] of [
      ["inventory", "pg-eu", "eu-west"],
      ["warehouse", "wh-eu", "eu-west"],
    ] as const) {
      m.memberUp.set({ federation, member, region }, 1);
      m.archiveFailing.set({ federation, member, region }, 0);
      m.archiveLastSuccessTimestampSeconds.set({ federation, member, region }, 1);
      m.replicaStalled.set({ federation, member, region }, 0);
    }
    const writable = new Gauge({ name: "pgfed_primaries_writable", help: "writable primaries", labelNames: ["federation"], registers: [registry] });
    writable.set({ federation: "inventory" }, 1);
    writable.set({ federation: "warehouse" }, 1);
    new Gauge({ name: "pgfed_coordinator_leader", help: "leader", registers: [registry] }).set(1);
    const metricsPort = await servers.serveMetrics(registry);
    startedAt = Date.now();
    const prom = await startPrometheus({
      dir,
      ruleFiles: [join(REPO_ROOT, "deploy/prometheus/pgfed-rules.yml")],
      targets: [`127.0.0.1:${metricsPort}`],
      alertmanagerUrl: amUrl,
    });
    processes.push(prom);
    promUrl = prom.url;
  });

  it("PgfedRPOBudgetExceeded fires for the federation over its budget, reaches the receiver, and the idle one raises nothing", async () => {
    const firing = await waitFor(
      "PgfedRPOBudgetExceeded firing in Prometheus",
      async () => {
        const body = promAlerts.parse(await getJson(`${promUrl}/api/v1/alerts`));
        return body.data.alerts.find((a) => a.labels.alertname === "PgfedRPOBudgetExceeded" && a.state === "firing");
      },
      45_000,
      200,
    );
    const firingAt = Date.now();
    expect(firing.labels).toMatchObject({ federation: "inventory", severity: "page", job: "pgfed" });
    expect(firing.annotations).toEqual({
      summary: "inventory: exposure 41 s exceeds the RPO budget of 30 s",
      description: expect.stringMatching(/^8MiB of committed WAL on the primary of inventory, the oldest written 41 s ago/) as string,
      command: "pgfed status inventory",
      runbook_url: `${runbookBaseUrl()}#pgfedrpobudgetexceeded`,
    });
    const hook = await waitFor("Prometheus alert delivered by Alertmanager", () => delivered({ federation: "inventory", job: "pgfed" }, "firing"), 20_000, 50);
    console.log(
      `prometheus: start → firing ${firingAt - startedAt} ms (for: 10s, scrape/eval 1 s), firing → webhook via Alertmanager ${hook.atMs - firingAt} ms`,
    );
    const all = promAlerts.parse(await getJson(`${promUrl}/api/v1/alerts`)).data.alerts;
    expect(all.filter((a) => a.labels.federation === "warehouse")).toEqual([]);
    expect(all.map((a) => a.labels.alertname).sort()).toEqual(["PgfedRPOBudgetExceeded", "PgfedRPOBudgetWarning"]);
  });
});
