/**
 * Lag alerting end to end, all real: the lab (NATS, Postgres, Kubernetes API and CNPG stand-ins)
 * with an archive-only replica (so the WAL archive is what protects the primary's commits), its
 * control plane with alerts sent to a real Alertmanager 0.25 that routes to a local webhook
 * receiver, and a real Prometheus 2.42 scraping the coordinator's /metrics with
 * deploy/prometheus/pgfed-rules.yml. RPO budget 6 s, archive_timeout 1 s, pgfed's hysteresis
 * shortened through the coordinator's overrides (Prometheus runs the committed rules unchanged).
 *
 * Idle primary: nothing fires. The primary's archive directory made unwritable and one write:
 * PgfedWALArchivingFailing, PgfedRPOBudgetWarning and PgfedRPOBudgetExceeded reach Alertmanager
 * and the receiver; Prometheus fires PgfedRPOBudgetExceeded and PgfedWALArchivingFailing (for: 1m)
 * for the same fault. Repaired: pgfed's alerts resolve in Alertmanager and at the receiver.
 * Every process is stopped by PID in afterAll.
 */
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { REPO_ROOT } from "../../src/alerts/generate.js";
import type { AlertName } from "../../src/alerts/catalog.js";
import type { Config } from "../../src/config.js";
import { startControlPlane, type ControlPlane } from "../../src/lab/control-plane.js";
import { LAB_FEDERATION, LAB_NAMESPACE, startLab, type Lab } from "../../src/lab/lab.js";
import { startAlertmanager, startPrometheus, type MonitoringServer } from "../../src/lab/prometheus.js";
import { LocalServers, getJson, startWebhookReceiver, type WebhookReceiver } from "../support/http.js";
import { connectionOf, query, testLogger, waitUntil } from "./fixture.js";

const FED = LAB_FEDERATION;
const BUDGET_MS = 6_000;
const PGFED_ALERTS: AlertName[] = ["PgfedWALArchivingFailing", "PgfedRPOBudgetWarning", "PgfedRPOBudgetExceeded"];

const amAlerts = z.array(z.object({ labels: z.record(z.string(), z.string()), annotations: z.record(z.string(), z.string()), status: z.object({ state: z.string() }) }));
const promAlerts = z.object({ data: z.object({ alerts: z.array(z.object({ labels: z.record(z.string(), z.string()), state: z.string() })) }) });

const log = testLogger();
const servers = new LocalServers();
let receiver: WebhookReceiver | undefined;
let dir = "";
let lab: Lab | undefined;
let plane: ControlPlane | undefined;
let am: MonitoringServer | undefined;
let prom: MonitoringServer | undefined;
let archiveDir = "";

/** Every alert the webhook receiver got from Alertmanager, with its delivery time. */
const hooks = () => receiver?.alerts() ?? [];
type Hook = ReturnType<typeof hooks>[number];

/** pgfed's own alerts carry no `job` label; Prometheus' do. */
const fromPgfed = (labels: Record<string, string>): boolean => labels.job === undefined;

async function amNow(): Promise<z.infer<typeof amAlerts>> {
  return amAlerts.parse(await getJson(`${am?.url ?? ""}/api/v2/alerts`));
}

async function promNow(): Promise<z.infer<typeof promAlerts>["data"]["alerts"]> {
  return promAlerts.parse(await getJson(`${prom?.url ?? ""}/api/v1/alerts`)).data.alerts;
}

function hookOf(name: AlertName, status: Hook["status"], pgfed: boolean, afterMs: number): Hook | undefined {
  return hooks().find((h) => h.atMs >= afterMs && h.status === status && h.labels.alertname === name && fromPgfed(h.labels) === pgfed);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-e2e-alerts-"));
  await chmod(dir, 0o755); // Postgres runs as the postgres user
  receiver = await startWebhookReceiver(servers);
  am = await startAlertmanager({ dir, webhookUrl: `http://127.0.0.1:${receiver.port}/hook` });
  lab = await startLab({ dir: join(dir, "lab"), regions: 2, log, streaming: false, archiveTimeout: "1s" });
  const amUrl = am.url;
  const config = (c: Config): Config => ({
    ...c,
    federations: c.federations.map((f) => ({ ...f, rpo: { ...f.rpo, budget: BUDGET_MS, warnAt: 0.5 } })),
    alerts: { alertmanager: { url: amUrl } },
  });
  plane = await startControlPlane(lab, {
    log,
    config: config(lab.config),
    alerting: {
      hysteresis: {
        PgfedWALArchivingFailing: { forMs: 2_000, clearForMs: 2_000 },
        PgfedRPOBudgetWarning: { forMs: 1_000, clearForMs: 2_000 },
        PgfedRPOBudgetExceeded: { forMs: 1_000, clearForMs: 2_000 },
      },
      notifier: { resendIntervalMs: 10_000 },
    },
  });
  await plane.coordinator.waitLeader(30_000);
  const coordinator = plane.coordinator;
  await waitUntil("a lag figure for the archive-only replica pg-us", 30_000, () => coordinator.getFederation(FED)?.members.find((m) => m.name === "pg-us")?.lagSeconds != null);
  // The coordinator's registry on a local port, as `pgfed coordinator` serves it on /metrics.
  const metricsPort = await servers.serveMetrics(coordinator.metrics.registry);
  prom = await startPrometheus({ dir, ruleFiles: [join(REPO_ROOT, "deploy/prometheus/pgfed-rules.yml")], targets: [`127.0.0.1:${metricsPort}`], alertmanagerUrl: am.url });
  const inst = lab.region("eu-west").operator.instance(LAB_NAMESPACE, "pg-eu");
  if (!inst) throw new Error("no instance for pg-eu");
  archiveDir = inst.archiveDir;
}, 120_000);

afterAll(async () => {
  if (archiveDir) await chmod(archiveDir, 0o755).catch(() => undefined);
  await plane?.stop().catch(() => undefined);
  await lab?.stop().catch(() => undefined);
  for (const s of [prom, am]) await s?.stop(5_000);
  for (const s of [prom, am]) if (s) expect(s.process.running, `${s.process.name} (pid ${s.process.pid}) stopped`).toBe(false);
  await servers.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("lag alerting in the lab (archive-only replica, RPO budget 6 s)", () => {
  it("an idle primary raises nothing over many archive_timeouts (1 s) and a bgwriter snapshot interval (15 s)", async () => {
    const c = plane?.coordinator;
    if (!c) throw new Error("no coordinator");
    const until = Date.now() + 20_000; // longer than the bgwriter's 15 s standby-snapshot interval
    let maxExposure = 0;
    while (Date.now() < until) {
      expect(c.alerting.active().map((a) => a.name)).toEqual([]);
      maxExposure = Math.max(maxExposure, c.getFederation(FED)?.exposure?.seconds ?? 0);
      await sleep(250);
    }
    expect(c.alerting.notifiers()).toEqual(["alertmanager"]);
    expect((await amNow()).filter((a) => a.labels.federation === FED)).toEqual([]);
    expect((await promNow()).filter((a) => a.labels.alertname !== undefined)).toEqual([]);
    expect(hooks()).toEqual([]);
    console.log(`idle primary for 20 s (archive_timeout 1 s): no alert; highest exposure seen ${maxExposure.toFixed(1)} s`);
  });

  it("an unwritable archive raises archiving failing, then the RPO warning and page, in Alertmanager and at the receiver; Prometheus fires the same", async () => {
    const conn = connectionOf(lab as Lab, "pg-eu");
    await query(conn, "CREATE TABLE IF NOT EXISTS alert_probe (id serial PRIMARY KEY, at timestamptz DEFAULT now())");
    await sleep(2_500); // archived (archive_timeout 1 s): the fault starts from a clean archive
    const faultAt = Date.now();
    await chmod(archiveDir, 0o555);
    let writing = true;
    const writer = (async () => {
      while (writing) {
        await query(conn, "INSERT INTO alert_probe DEFAULT VALUES").catch(() => undefined);
        await sleep(2_000);
      }
    })();
    try {
      const seenAt = new Map<AlertName, { am: number; hook: number }>();
      await waitUntil("pgfed's three alerts in Alertmanager and at the receiver", 40_000, async () => {
        const inAm = (await amNow()).filter((a) => fromPgfed(a.labels) && a.labels.federation === FED && a.status.state === "active");
        for (const name of PGFED_ALERTS) {
          const a = inAm.find((x) => x.labels.alertname === name);
          const h = hookOf(name, "firing", true, faultAt);
          const seen = seenAt.get(name) ?? { am: 0, hook: 0 };
          if (a && seen.am === 0) seen.am = Date.now();
          if (h && seen.hook === 0) seen.hook = h.atMs;
          seenAt.set(name, seen);
        }
        return PGFED_ALERTS.every((n) => (seenAt.get(n)?.am ?? 0) > 0 && (seenAt.get(n)?.hook ?? 0) > 0);
      }, 100);
      for (const name of PGFED_ALERTS) {
        const s = seenAt.get(name);
        console.log(`fault → ${name}: Alertmanager ${(((s?.am ?? 0) - faultAt) / 1000).toFixed(1)} s, webhook ${(((s?.hook ?? 0) - faultAt) / 1000).toFixed(1)} s`);
      }
      const failing = (await amNow()).find((a) => fromPgfed(a.labels) && a.labels.alertname === "PgfedWALArchivingFailing");
      expect(failing?.labels).toMatchObject({ federation: FED, member: "pg-eu", region: "eu-west", severity: "critical" });
      expect(failing?.annotations.summary).toMatch(/^demo\/pg-eu: WAL archiving is failing; the last successful archive was \d+ s ago$/);
      const exceeded = hookOf("PgfedRPOBudgetExceeded", "firing", true, faultAt);
      expect(exceeded?.annotations.summary).toMatch(/^demo: exposure \d+ s exceeds the RPO budget of 6 s$/);
      expect(exceeded?.annotations.command).toBe("pgfed status demo");

      // Prometheus, from the coordinator's /metrics with the committed rules (for: 10s and 1m).
      for (const name of ["PgfedRPOBudgetExceeded", "PgfedWALArchivingFailing"] as const) {
        await waitUntil(`Prometheus firing ${name}`, 90_000, async () => (await promNow()).some((a) => a.labels.alertname === name && a.state === "firing"), 500);
        const firingAt = Date.now();
        const h = await waitUntil(`${name} from Prometheus at the receiver`, 20_000, () => hookOf(name, "firing", false, faultAt) !== undefined, 100);
        console.log(`fault → Prometheus ${name} firing ${((firingAt - faultAt) / 1000).toFixed(1)} s (rule for: ${name === "PgfedWALArchivingFailing" ? "1m" : "10s"}), → webhook +${(h / 1000).toFixed(1)} s`);
      }
      const fromProm = (await promNow()).find((a) => a.labels.alertname === "PgfedWALArchivingFailing");
      expect(fromProm?.labels).toMatchObject({ federation: FED, member: "pg-eu", region: "eu-west", job: "pgfed" });
    } finally {
      writing = false;
      await writer;
    }
  }, 170_000);

  it("repaired: archiving catches up and pgfed's alerts resolve in Alertmanager and at the receiver", async () => {
    const repairAt = Date.now();
    await chmod(archiveDir, 0o755);
    // A new segment wakes the archiver at once (it backs off after three failures in a row).
    await query(connectionOf(lab as Lab, "pg-eu"), "INSERT INTO alert_probe DEFAULT VALUES");
    await waitUntil("pgfed's alerts resolved at the receiver", 60_000, () => PGFED_ALERTS.every((n) => hookOf(n, "resolved", true, repairAt) !== undefined), 100);
    await waitUntil(
      "pgfed's alerts gone from Alertmanager's active alerts",
      20_000,
      async () => !(await amNow()).some((a) => fromPgfed(a.labels) && a.labels.federation === FED && a.status.state === "active"),
      100,
    );
    for (const n of PGFED_ALERTS) console.log(`repair → ${n} resolved at the webhook ${(((hookOf(n, "resolved", true, repairAt)?.atMs ?? 0) - repairAt) / 1000).toFixed(1)} s`);
    expect(plane?.coordinator.alerting.active()).toEqual([]);
  }, 90_000);
});
