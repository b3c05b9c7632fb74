import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { describe, expect, it, onTestFinished } from "vitest";
import { AlertEngine, type Alert, type AlertTransition } from "../../../src/alerts/engine.js";
import {
  AlertmanagerNotifier,
  AlertRouter,
  alertmanagerPayload,
  backoffDelayMs,
  createNotifiers,
  pagerDutyDedupKey,
  pagerDutyEvent,
  resolveSecret,
  WebhookNotifier,
  webhookPayload,
  type Notifier,
} from "../../../src/alerts/notifiers.js";
import { BoundedQueue } from "../../../src/alerts/queue.js";

const T0 = Date.parse("2025-01-01T00:00:00Z");

/** Drives the engine to a firing PgfedRPOBudgetExceeded for `federation`, then (optionally) resolves it. */
function lifecycle(federation = "orders"): { firing: AlertTransition; resolved: AlertTransition } {
  const engine = new AlertEngine();
  const obs = (atS: number, exposure: number) => ({
    alert: "PgfedRPOBudgetExceeded" as const,
    labels: { federation },
    active: exposure > 30,
    values: { exposure_s: exposure, budget_s: 30, exposure_bytes: 1_048_576 },
    atMs: T0 + atS * 1_000,
  });
  const ts: AlertTransition[] = [];
  for (let t = 0; t <= 10; t++) ts.push(...engine.observe(obs(t, 41)));
  for (let t = 11; t <= 45; t++) ts.push(...engine.observe(obs(t, 0)));
  const [firing, resolved] = ts;
  if (!firing || !resolved) throw new Error("expected a firing and a resolved transition");
  return { firing, resolved };
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  const v = data.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value ?? 0;
}

describe("payloads", () => {
  const { firing, resolved } = lifecycle();

  it("Alertmanager v2: labels, annotations, startsAt, endsAt = now + 4 re-send intervals while firing", () => {
    const now = T0 + 20_000;
    const [a] = alertmanagerPayload([{ kind: "firing", alert: firing.alert }], { nowMs: now, resendIntervalMs: 60_000 });
    expect(a).toEqual({
      labels: { alertname: "PgfedRPOBudgetExceeded", severity: "page", federation: "orders" },
      annotations: {
        summary: "orders: exposure 41 s exceeds the RPO budget of 30 s",
        description: expect.stringContaining("1MiB") as string,
        command: "pgfed status orders",
        runbook_url: "docs/alerts.md#pgfedrpobudgetexceeded",
      },
      startsAt: "2025-01-01T00:00:00.000Z",
      endsAt: new Date(now + 240_000).toISOString(),
      generatorURL: "pgfed://orders/alerts/PgfedRPOBudgetExceeded",
    });
  });

  it("Alertmanager v2: a resolved alert carries endsAt = when the condition cleared", () => {
    const [a] = alertmanagerPayload([{ kind: "resolved", alert: resolved.alert }], { nowMs: T0 + 99_000, resendIntervalMs: 60_000 });
    expect(a?.endsAt).toBe("2025-01-01T00:00:11.000Z");
  });

  it("PagerDuty: trigger with the Events API v2 fields, resolve with the same dedup_key", () => {
    const trigger = pagerDutyEvent({ kind: "firing", alert: firing.alert }, "R0UT1NG");
    expect(trigger).toEqual({
      routing_key: "R0UT1NG",
      event_action: "trigger",
      dedup_key: pagerDutyDedupKey(firing.alert),
      payload: {
        summary: "orders: exposure 41 s exceeds the RPO budget of 30 s",
        source: "orders",
        severity: "critical",
        timestamp: "2025-01-01T00:00:00.000Z",
        component: "orders",
        group: "orders",
        class: "PgfedRPOBudgetExceeded",
        custom_details: expect.objectContaining({ command: "pgfed status orders", values: { exposure_s: 41, budget_s: 30, exposure_bytes: 1_048_576 } }) as object,
      },
      links: [{ href: "docs/alerts.md#pgfedrpobudgetexceeded", text: "runbook: PgfedRPOBudgetExceeded" }],
      client: "pgfed",
    });
    expect(pagerDutyEvent({ kind: "resolved", alert: resolved.alert }, "R0UT1NG")).toEqual({
      routing_key: "R0UT1NG",
      event_action: "resolve",
      dedup_key: trigger.dedup_key,
    });
  });

  it("PagerDuty dedup_key is stable across re-sends and value changes, distinct per instance", () => {
    const again = lifecycle();
    const billing = lifecycle("billing");
    const updated: Alert = { ...firing.alert, values: { exposure_s: 99 }, annotations: { ...firing.alert.annotations, summary: "changed" } };
    const key = pagerDutyDedupKey(firing.alert);
    expect(key).toMatch(/^pgfed-[0-9a-f]{32}$/);
    expect(pagerDutyDedupKey(again.firing.alert)).toBe(key);
    expect(pagerDutyDedupKey(updated)).toBe(key);
    expect(pagerDutyDedupKey(resolved.alert)).toBe(key);
    expect(pagerDutyDedupKey(billing.firing.alert)).not.toBe(key);
  });

  it("webhook: the alert JSON with a Slack-compatible text", () => {
    expect(webhookPayload({ kind: "firing", alert: firing.alert })).toEqual({
      status: "firing",
      fingerprint: firing.alert.fingerprint,
      labels: firing.alert.labels,
      annotations: firing.alert.annotations,
      values: firing.alert.values,
      startsAt: "2025-01-01T00:00:00.000Z",
      text: "[FIRING page] PgfedRPOBudgetExceeded: orders: exposure 41 s exceeds the RPO budget of 30 s | run `pgfed status orders` | runbook docs/alerts.md#pgfedrpobudgetexceeded",
    });
    const r = webhookPayload({ kind: "resolved", alert: resolved.alert });
    expect(r).toMatchObject({ status: "resolved", endsAt: "2025-01-01T00:00:11.000Z" });
    expect(r.text.startsWith("[RESOLVED] PgfedRPOBudgetExceeded")).toBe(true);
  });
});

describe("BoundedQueue", () => {
  it("drops the oldest item when full and keeps FIFO order", () => {
    const q = new BoundedQueue<number>(3);
    expect([q.push(1), q.push(2), q.push(3)]).toEqual([undefined, undefined, undefined]);
    expect(q.push(4)).toBe(1);
    expect(q.push(5)).toBe(2);
    expect(q.toArray()).toEqual([3, 4, 5]);
    expect(q.take(2)).toEqual([3, 4]);
    expect(q.shift()).toBe(5);
    expect(q.shift()).toBeUndefined();
    expect(q.length).toBe(0);
  });
});

describe("backoffDelayMs", () => {
  const policy = { baseMs: 500, maxMs: 30_000, maxAttempts: 6 };

  it("doubles per retry up to the maximum, with jitter in [ceiling/2, ceiling]", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((r) => backoffDelayMs(r, policy, () => 1))).toEqual([500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
    expect([1, 2, 3, 7].map((r) => backoffDelayMs(r, policy, () => 0))).toEqual([250, 500, 1_000, 15_000]);
    for (let i = 0; i < 1_000; i++) {
      const d = backoffDelayMs(3, policy);
      expect(d).toBeGreaterThanOrEqual(1_000);
      expect(d).toBeLessThanOrEqual(2_000);
    }
  });
});

/** A fetch that records the bodies and answers with the given statuses in turn (then the last one). */
function fakeFetch(statuses: number[]): { fetch: typeof fetch; bodies: unknown[]; times: number[] } {
  const bodies: unknown[] = [];
  const times: number[] = [];
  const fn = async (_url: string | URL | Request, init?: RequestInit): Promise<Response> => {
    bodies.push(JSON.parse(init?.body as string));
    times.push(Date.now());
    const status = statuses[Math.min(bodies.length - 1, statuses.length - 1)] ?? 200;
    return new Response("{}", { status });
  };
  return { fetch: fn, bodies, times };
}

describe("notifier delivery", () => {
  it("retries 5xx with backoff, then delivers; counts retry and success", async () => {
    const registry = new Registry();
    const f = fakeFetch([503, 503, 200]);
    const n = new WebhookNotifier({ url: "http://127.0.0.1:1/hook", registry, fetch: f.fetch, retry: { baseMs: 20, maxMs: 100 }, random: () => 1 });
    n.notify(lifecycle().firing);
    expect(await n.flush(5_000)).toBe(true);
    expect(f.bodies).toHaveLength(3);
    const gaps = [(f.times[1] ?? 0) - (f.times[0] ?? 0), (f.times[2] ?? 0) - (f.times[1] ?? 0)];
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[1]).toBeGreaterThanOrEqual(38);
    expect(await metricValue(registry, "pgfed_alert_notifications_total", { notifier: "webhook", result: "retry" })).toBe(2);
    expect(await metricValue(registry, "pgfed_alert_notifications_total", { notifier: "webhook", result: "success" })).toBe(1);
    await n.close(100);
  });

  it("gives up after maxAttempts, and does not retry a 400", async () => {
    const registry = new Registry();
    const down = fakeFetch([500]);
    const n = new WebhookNotifier({ url: "http://x/", registry, fetch: down.fetch, retry: { baseMs: 1, maxMs: 2, maxAttempts: 3 } });
    n.notify(lifecycle().firing);
    await n.flush(5_000);
    expect(down.bodies).toHaveLength(3);
    expect(await metricValue(registry, "pgfed_alert_notifications_total", { notifier: "webhook", result: "failed" })).toBe(1);
    const bad = fakeFetch([400]);
    const m = new WebhookNotifier({ name: "hook2", url: "http://x/", registry, fetch: bad.fetch, retry: { baseMs: 1 } });
    m.notify(lifecycle().firing);
    await m.flush(5_000);
    expect(bad.bodies).toHaveLength(1);
    await Promise.all([n.close(100), m.close(100)]);
  });

  it("drops the oldest queued deliveries when the queue is full and counts them; notify stays sync", async () => {
    const registry = new Registry();
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const seen: string[] = [];
    const slow = (async (_u: string | URL | Request, init?: RequestInit) => {
      seen.push((JSON.parse(init?.body as string) as { labels: { federation: string } }).labels.federation);
      await gate;
      return new Response("", { status: 200 });
    }) as typeof fetch;
    const n = new WebhookNotifier({ url: "http://x/", registry, fetch: slow, maxQueue: 5 });
    const alerts = Array.from({ length: 20 }, (_, i) => lifecycle(`fed-${i}`).firing);
    n.notify(alerts[0] as AlertTransition);
    await new Promise((r) => setImmediate(r)); // the first delivery is in flight
    for (const a of alerts.slice(1)) n.notify(a);
    expect(n.queueDepth()).toBe(5);
    expect(await metricValue(registry, "pgfed_alert_notifications_dropped_total", { notifier: "webhook" })).toBe(14);
    expect(await metricValue(registry, "pgfed_alert_queue_depth", { notifier: "webhook" })).toBe(5);
    release();
    await n.flush(5_000);
    expect(seen).toEqual(["fed-0", "fed-15", "fed-16", "fed-17", "fed-18", "fed-19"]);
    await n.close(100);
  });

  it("Alertmanager notifier batches queued alerts and re-sends firing ones with fresh endsAt", async () => {
    const f = fakeFetch([200]);
    let now = T0 + 20_000;
    const n = new AlertmanagerNotifier({ url: "http://am:9093/", fetch: f.fetch, now: () => now, resendIntervalMs: 60_000 });
    const a = lifecycle("orders");
    const b = lifecycle("billing");
    n.notify(a.firing);
    n.notify(b.firing);
    await n.flush(1_000);
    expect(f.bodies).toHaveLength(1);
    expect((f.bodies[0] as unknown[]).length).toBe(2);
    now += 60_000;
    n.resendActive();
    n.notify(b.resolved);
    await n.flush(1_000);
    const second = f.bodies[1] as { labels: { federation: string }; endsAt: string }[];
    expect(second.map((x) => [x.labels.federation, x.endsAt])).toEqual([
      ["orders", new Date(now + 240_000).toISOString()],
      ["billing", new Date(now + 240_000).toISOString()],
      ["billing", "2025-01-01T00:00:11.000Z"],
    ]);
    n.resendActive();
    await n.flush(1_000);
    expect((f.bodies[2] as { labels: { federation: string } }[]).map((x) => x.labels.federation)).toEqual(["orders"]);
    await n.close(100);
  });
});

describe("AlertRouter", () => {
  function recorder(name: string): Notifier & { got: string[] } {
    const got: string[] = [];
    return {
      name,
      got,
      notify: (t) => got.push(`${t.kind}:${t.alert.labels.federation ?? "-"}`),
      resendActive: () => undefined,
      queueDepth: () => 0,
      flush: async () => true,
      close: async () => true,
    };
  }

  it("sends each federation's alerts to its notifiers, others to all", async () => {
    const am = recorder("alertmanager");
    const pd = recorder("pagerduty");
    const router = new AlertRouter({ notifiers: [am, pd], routes: [{ federation: "billing", notifiers: ["alertmanager"] }] });
    router.dispatch([lifecycle("orders").firing, lifecycle("billing").firing]);
    expect(am.got).toEqual(["firing:orders", "firing:billing"]);
    expect(pd.got).toEqual(["firing:orders"]);
    expect(await router.close(100)).toBe(true);
    expect(() => new AlertRouter({ notifiers: [am], routes: [{ federation: "x", notifiers: ["nope"] }] })).toThrow(/no notifier named "nope"/);
  });

  it("builds notifiers from the alerts config; the routing key comes from env, file or value", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pgfed-secret-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, "key"), "FROM-FILE\n");
    process.env.PGFED_TEST_PD_KEY = "FROM-ENV";
    expect(resolveSecret({ env: "PGFED_TEST_PD_KEY" }, "k")).toBe("FROM-ENV");
    expect(resolveSecret({ file: join(dir, "key") }, "k")).toBe("FROM-FILE");
    expect(resolveSecret({ value: "V" }, "k")).toBe("V");
    expect(() => resolveSecret({ env: "PGFED_TEST_UNSET_KEY" }, "alerts.pagerduty.routingKey")).toThrow(/PGFED_TEST_UNSET_KEY is not set/);
    const ns = createNotifiers(
      { alertmanager: { url: "http://am:9093" }, pagerduty: { routingKey: { file: join(dir, "key") } }, webhook: { url: "http://hook/" } },
      { registry: new Registry() },
    );
    expect(ns.map((n) => n.name)).toEqual(["alertmanager", "pagerduty", "webhook"]);
    await Promise.all(ns.map((n) => n.close(10)));
  });
});
