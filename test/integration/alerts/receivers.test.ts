/**
 * PagerDuty and webhook notifiers against a local HTTP receiver (loopback only): payload shape,
 * dedup_key across re-sends, resolve; and a receiver that is down: retries, bounded queue,
 * enqueue never blocks.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { AlertEngine, type AlertTransition } from "../../../src/alerts/engine.js";
import { PagerDutyNotifier, WebhookNotifier } from "../../../src/alerts/notifiers.js";
import { freePort, waitFor } from "../../../src/lab/proc.js";

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
  atMs: number;
}

interface Receiver {
  url: string;
  received: Received[];
  /** Status to answer with (default 202). */
  status: number;
  close: () => Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const state = { status: 202 };
  const server: Server = createServer((req, res) => {
    let data = "";
    req.on("data", (c: Buffer) => (data += c.toString()));
    req.on("end", () => {
      received.push({ path: req.url ?? "", headers: req.headers, body: JSON.parse(data || "null") as unknown, atMs: Date.now() });
      res.writeHead(state.status, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "success", message: "Event processed" }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    get status() {
      return state.status;
    },
    set status(s: number) {
      state.status = s;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const T0 = Date.now();

/** Observations that fire PgfedRPOBudgetExceeded for `federation`, then clear it. */
function exceeded(engine: AlertEngine, federation: string, active: boolean, fromS: number, toS: number): AlertTransition[] {
  const out: AlertTransition[] = [];
  for (let t = fromS; t <= toS; t++)
    out.push(
      ...engine.observe({
        alert: "PgfedRPOBudgetExceeded",
        labels: { federation },
        active,
        values: { exposure_s: active ? 41 : 0, budget_s: 30, exposure_bytes: 8 * 1024 * 1024 },
        atMs: T0 + t * 1_000,
      }),
    );
  return out;
}

const pdTrigger = z.strictObject({
  routing_key: z.literal("PD-ROUTING-KEY-123"),
  event_action: z.literal("trigger"),
  dedup_key: z.string().regex(/^pgfed-[0-9a-f]{32}$/),
  payload: z.strictObject({
    summary: z.string().min(1).max(1024),
    source: z.string().min(1),
    severity: z.enum(["critical", "error", "warning", "info"]),
    timestamp: z.iso.datetime(),
    component: z.string(),
    group: z.string(),
    class: z.string(),
    custom_details: z.record(z.string(), z.unknown()),
  }),
  links: z.array(z.strictObject({ href: z.string(), text: z.string() })),
  client: z.string(),
});
const pdResolve = z.strictObject({ routing_key: z.string(), event_action: z.literal("resolve"), dedup_key: z.string() });

let receiver: Receiver;
const started: { close: (ms: number) => Promise<boolean> }[] = [];

beforeAll(async () => {
  receiver = await startReceiver();
});

afterAll(async () => {
  await Promise.all(started.map((n) => n.close(200)));
  await receiver.close();
});

describe("PagerDuty notifier against a local Events API receiver", () => {
  it("triggers with the Events API v2 shape, keeps dedup_key across re-sends, resolves with it", async () => {
    process.env.PGFED_IT_PD_KEY = "PD-ROUTING-KEY-123";
    const pd = new PagerDutyNotifier({ url: `${receiver.url}/v2/enqueue`, routingKey: { env: "PGFED_IT_PD_KEY" }, registry: new Registry() });
    started.push(pd);
    const engine = new AlertEngine();
    const fire = [...exceeded(engine, "orders", true, 0, 10), ...exceeded(engine, "billing", true, 0, 10)];
    expect(fire.map((t) => t.kind)).toEqual(["firing", "firing"]);
    const sentAt = Date.now();
    for (const t of fire) pd.notify(t);
    pd.resendActive(engine.active());
    pd.resendActive(engine.active());
    const resolved = exceeded(engine, "orders", false, 11, 45);
    expect(resolved.map((t) => t.kind)).toEqual(["resolved"]);
    pd.notify(resolved[0] as AlertTransition);
    expect(await pd.flush(5_000)).toBe(true);

    const events = receiver.received.filter((r) => r.path === "/v2/enqueue").map((r) => r.body);
    expect(events).toHaveLength(7);
    const triggers = events.slice(0, 6).map((e) => pdTrigger.parse(e));
    const orders = triggers.filter((e) => e.payload.group === "orders");
    const billing = triggers.filter((e) => e.payload.group === "billing");
    expect(orders).toHaveLength(3);
    expect(new Set(orders.map((e) => e.dedup_key)).size).toBe(1);
    expect(new Set(billing.map((e) => e.dedup_key)).size).toBe(1);
    expect(billing[0]?.dedup_key).not.toBe(orders[0]?.dedup_key);
    expect(orders[0]?.payload).toMatchObject({ summary: "orders: exposure 41 s exceeds the RPO budget of 30 s", severity: "critical", class: "PgfedRPOBudgetExceeded" });
    expect(pdResolve.parse(events[6])).toEqual({ routing_key: "PD-ROUTING-KEY-123", event_action: "resolve", dedup_key: orders[0]?.dedup_key });
    const first = receiver.received.find((r) => r.path === "/v2/enqueue");
    console.log(`pagerduty: notify → receiver ${((first?.atMs ?? 0) - sentAt).toFixed(0)} ms`);
  });
});

describe("webhook notifier against a local receiver", () => {
  it("posts the alert JSON with a Slack-compatible text and the configured headers", async () => {
    const hook = new WebhookNotifier({ url: `${receiver.url}/hook`, headers: { authorization: "Bearer hook-token" }, registry: new Registry() });
    started.push(hook);
    const engine = new AlertEngine();
    for (const t of exceeded(engine, "orders", true, 0, 10)) hook.notify(t);
    for (const t of exceeded(engine, "orders", false, 11, 45)) hook.notify(t);
    await hook.flush(5_000);
    const got = receiver.received.filter((r) => r.path === "/hook");
    expect(got.map((r) => (r.body as { status: string }).status)).toEqual(["firing", "resolved"]);
    expect(got[0]?.headers.authorization).toBe("Bearer hook-token");
    expect(got[0]?.headers["content-type"]).toBe("application/json");
    expect(got[0]?.body).toMatchObject({
      labels: { alertname: "PgfedRPOBudgetExceeded", federation: "orders", severity: "page" },
      annotations: { command: "pgfed status orders", runbook_url: "docs/alerts.md#pgfedrpobudgetexceeded" },
      text: expect.stringMatching(/^\[FIRING page\] PgfedRPOBudgetExceeded: orders: exposure 41 s exceeds the RPO budget of 30 s/) as string,
    });
  });
});

describe("a receiver that is down", () => {
  it("retries with backoff on 503 until the receiver recovers", async () => {
    receiver.status = 503;
    const registry = new Registry();
    const hook = new WebhookNotifier({ name: "flaky", url: `${receiver.url}/flaky`, registry, retry: { baseMs: 50, maxMs: 400, maxAttempts: 10 } });
    started.push(hook);
    const engine = new AlertEngine();
    for (const t of exceeded(engine, "orders", true, 0, 10)) hook.notify(t);
    await waitFor("three failed attempts", () => receiver.received.filter((r) => r.path === "/flaky").length >= 3, 10_000);
    receiver.status = 202;
    expect(await hook.flush(10_000)).toBe(true);
    const attempts = receiver.received.filter((r) => r.path === "/flaky");
    const gaps = attempts.slice(1).map((a, i) => a.atMs - (attempts[i]?.atMs ?? 0));
    console.log(`webhook retries: ${attempts.length} attempts, gaps ${gaps.join(", ")} ms`);
    expect(attempts.length).toBeGreaterThanOrEqual(4);
    // Equal jitter: retry n waits at least half of 50·2^(n-1) ms.
    gaps.forEach((g, i) => expect(g).toBeGreaterThanOrEqual(Math.min(400, 50 * 2 ** i) / 2 - 5));
    const metrics = await registry.getSingleMetricAsString("pgfed_alert_notifications_total");
    expect(metrics).toContain('pgfed_alert_notifications_total{notifier="flaky",result="success"} 1');
    expect(metrics).toMatch(/pgfed_alert_notifications_total\{notifier="flaky",result="retry"\} [3-9]/);
  });

  it("keeps the queue bounded, drops the oldest, and never blocks the caller (nothing listening)", async () => {
    const deadPort = await freePort(); // nothing listens there: connection refused
    const registry = new Registry();
    const hook = new WebhookNotifier({ name: "dead", url: `http://127.0.0.1:${deadPort}/hook`, registry, maxQueue: 100, retry: { baseMs: 20, maxMs: 200, maxAttempts: 1_000 } });
    const engine = new AlertEngine();
    const transitions = Array.from({ length: 200 }, (_, i) => exceeded(engine, `fed-${i}`, true, 0, 10)).flat();
    const n = 10_000;
    const each: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const s = performance.now();
      hook.notify(transitions[i % transitions.length] as AlertTransition);
      each.push(performance.now() - s);
    }
    const total = performance.now() - t0;
    const slowest = each.indexOf(Math.max(...each));
    each.sort((a, b) => a - b);
    const us = (ms: number | undefined): string => ((ms ?? 0) * 1_000).toFixed(1);
    console.log(
      `enqueue: ${n} notifications in ${total.toFixed(1)} ms; per call median ${us(each[n / 2])} µs, p99 ${us(each[Math.floor(n * 0.99)])} µs, worst ${us(each[n - 1])} µs (call #${slowest})`,
    );
    expect(total).toBeLessThan(500);
    expect(each[Math.floor(n * 0.99)]).toBeLessThan(1);
    expect(hook.queueDepth()).toBe(100);
    // Let the worker fail a few times against the closed port.
    await new Promise((r) => setTimeout(r, 300));
    expect(hook.queueDepth()).toBeLessThanOrEqual(100);
    const dropped = await registry.getSingleMetricAsString("pgfed_alert_notifications_dropped_total");
    const droppedCount = Number(/\} (\d+)/.exec(dropped)?.[1]);
    // One delivery left the queue for the worker; everything beyond the 100 newest was dropped.
    expect(droppedCount).toBeGreaterThanOrEqual(n - 101);
    expect(droppedCount).toBeLessThanOrEqual(n - 100);
    expect(await registry.getSingleMetricAsString("pgfed_alert_notifications_total")).toMatch(/result="retry"\} [1-9]/);
    const c0 = Date.now();
    expect(await hook.close(300)).toBe(false);
    expect(Date.now() - c0).toBeLessThan(1_000);
  });
});
