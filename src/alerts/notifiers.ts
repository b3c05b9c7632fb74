/**
 * On-call notifiers: Alertmanager (API v2), PagerDuty (Events API v2) and a generic JSON webhook
 * (Slack-compatible `text`). The engine's transitions go in through `notify`, which only appends
 * to a bounded in-memory queue (sync, O(1), never waits on the network); a worker per notifier
 * delivers in order, retrying with exponential backoff and jitter.
 *
 * When a receiver is down long enough for the queue to fill, the OLDEST queued delivery is dropped
 * (counted in pgfed_alert_notifications_dropped_total): the newest state of an alert matters more
 * than an old one, and firing alerts are re-sent every `resendIntervalMs` anyway.
 *
 * Silences: pgfed does not implement silencing. Silence in Alertmanager (it suppresses pgfed's
 * alerts like any other); PagerDuty and webhook deliveries are not silenced by pgfed.
 */
import { readFileSync } from "node:fs";
import { Counter, Gauge, Registry } from "prom-client";
import type { Config } from "../config.js";
import { errorMessage, PgfedError } from "../errors.js";
import { silentLogger, type Logger } from "../log.js";
import type { Severity } from "./catalog.js";
import type { Alert, AlertTransition } from "./engine.js";
import { BoundedQueue } from "./queue.js";

// ---------------------------------------------------------------------------------------------
// Backoff

export interface RetryPolicy {
  /** Ceiling of the first retry delay; doubles per attempt. */
  baseMs: number;
  maxMs: number;
  /** Attempts per delivery, the first one included; then the delivery is given up (result="failed"). */
  maxAttempts: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseMs: 500, maxMs: 30_000, maxAttempts: 6 };

/**
 * Delay before retry number `retry` (1 = after the first failure): "equal jitter", uniformly in
 * [c/2, c] with c = min(maxMs, baseMs·2^(retry-1)), so retries of many pgfed instances spread out
 * but never come back sooner than half the schedule.
 */
export function backoffDelayMs(retry: number, policy: RetryPolicy = DEFAULT_RETRY, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, retry - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

// ---------------------------------------------------------------------------------------------
// Metrics

export interface AlertMetrics {
  notifications: Counter<"notifier" | "result">;
  queueDepth: Gauge<"notifier">;
  dropped: Counter<"notifier">;
}

const metricsByRegistry = new WeakMap<Registry, AlertMetrics>();

/** The delivery metrics on `registry`, created once per registry (several notifiers share them). */
export function alertMetrics(registry: Registry): AlertMetrics {
  const known = metricsByRegistry.get(registry);
  if (known) return known;
  const registers = [registry];
  const m: AlertMetrics = {
    notifications: new Counter({
      name: "pgfed_alert_notifications_total",
      help: "Alert delivery attempts by notifier and result: success, retry (failed, will retry), failed (given up).",
      labelNames: ["notifier", "result"],
      registers,
    }),
    queueDepth: new Gauge({ name: "pgfed_alert_queue_depth", help: "Alert deliveries waiting in the notifier's queue.", labelNames: ["notifier"], registers }),
    dropped: new Counter({
      name: "pgfed_alert_notifications_dropped_total",
      help: "Alert deliveries dropped because the notifier's queue was full (the oldest is dropped).",
      labelNames: ["notifier"],
      registers,
    }),
  };
  metricsByRegistry.set(registry, m);
  return m;
}

// ---------------------------------------------------------------------------------------------
// Payloads (pure)

export interface Delivery {
  kind: "firing" | "resolved";
  alert: Alert;
}

export interface AlertmanagerAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
  generatorURL: string;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export function defaultGeneratorUrl(alert: Alert): string {
  return `pgfed://${alert.labels.federation ?? "pgfed"}/alerts/${alert.name}`;
}

/**
 * Alertmanager API v2 alerts. A firing alert carries endsAt = now + 4 re-send intervals (as
 * Prometheus does): Alertmanager resolves it by itself if pgfed stops re-sending. A resolved alert
 * carries endsAt = the time the condition cleared.
 */
export function alertmanagerPayload(
  deliveries: readonly Delivery[],
  opts: { nowMs: number; resendIntervalMs: number; generatorUrl?: (a: Alert) => string },
): AlertmanagerAlert[] {
  return deliveries.map(({ kind, alert }) => ({
    labels: { ...alert.labels },
    annotations: { ...alert.annotations },
    startsAt: iso(alert.startsAtMs),
    endsAt: iso(kind === "resolved" ? (alert.endsAtMs ?? opts.nowMs) : opts.nowMs + 4 * opts.resendIntervalMs),
    generatorURL: (opts.generatorUrl ?? defaultGeneratorUrl)(alert),
  }));
}

export type PagerDutySeverity = "critical" | "error" | "warning" | "info";

const PD_SEVERITY: Record<Severity, PagerDutySeverity> = { page: "critical", critical: "error", warning: "warning" };

export interface PagerDutyEvent {
  routing_key: string;
  event_action: "trigger" | "resolve";
  dedup_key: string;
  payload?: {
    summary: string;
    source: string;
    severity: PagerDutySeverity;
    timestamp: string;
    component: string;
    group: string;
    class: string;
    custom_details: Record<string, unknown>;
  };
  links?: { href: string; text: string }[];
  client?: string;
}

/** Stable per alert instance (alertname + labels), whatever the annotations or the time. */
export function pagerDutyDedupKey(alert: Alert): string {
  return `pgfed-${alert.fingerprint}`;
}

export function pagerDutyEvent(d: Delivery, routingKey: string): PagerDutyEvent {
  const a = d.alert;
  const dedup_key = pagerDutyDedupKey(a);
  if (d.kind === "resolved") return { routing_key: routingKey, event_action: "resolve", dedup_key };
  const federation = a.labels.federation ?? "pgfed";
  const member = a.labels.member;
  return {
    routing_key: routingKey,
    event_action: "trigger",
    dedup_key,
    payload: {
      summary: a.annotations.summary.slice(0, 1024),
      source: member !== undefined ? `${federation}/${member}` : federation,
      severity: PD_SEVERITY[a.severity],
      timestamp: iso(a.startsAtMs),
      component: member ?? federation,
      group: federation,
      class: a.name,
      custom_details: {
        description: a.annotations.description,
        command: a.annotations.command,
        labels: a.labels,
        values: a.values,
        startsAt: iso(a.startsAtMs),
      },
    },
    links: [{ href: a.annotations.runbook_url, text: `runbook: ${a.name}` }],
    client: "pgfed",
  };
}

export interface WebhookPayload {
  status: "firing" | "resolved";
  fingerprint: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  values: Record<string, number | string>;
  startsAt: string;
  endsAt?: string;
  /** Slack-compatible one-liner (incoming webhooks show `text`). */
  text: string;
}

export function webhookText(d: Delivery): string {
  const a = d.alert;
  const head = d.kind === "firing" ? `[FIRING ${a.severity}]` : "[RESOLVED]";
  return `${head} ${a.name}: ${a.annotations.summary} | run \`${a.annotations.command}\` | runbook ${a.annotations.runbook_url}`;
}

export function webhookPayload(d: Delivery): WebhookPayload {
  const a = d.alert;
  return {
    status: d.kind,
    fingerprint: a.fingerprint,
    labels: { ...a.labels },
    annotations: { ...a.annotations },
    values: { ...a.values },
    startsAt: iso(a.startsAtMs),
    ...(d.kind === "resolved" ? { endsAt: iso(a.endsAtMs ?? a.startsAtMs) } : {}),
    text: webhookText(d),
  };
}

// ---------------------------------------------------------------------------------------------
// Secrets

export type SecretSource = { env: string } | { file: string } | { value: string };

/** Reads a secret from the environment, a file (trimmed) or the config value. */
export function resolveSecret(source: SecretSource, what: string): string {
  if ("value" in source) return source.value;
  if ("env" in source) {
    const v = process.env[source.env];
    if (v === undefined || v === "") throw new PgfedError("alerts.secret_missing", `${what}: environment variable ${source.env} is not set`);
    return v;
  }
  try {
    return readFileSync(source.file, "utf8").trim();
  } catch (e) {
    throw new PgfedError("alerts.secret_missing", `${what}: cannot read ${source.file}: ${errorMessage(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Notifiers

export interface Notifier {
  readonly name: string;
  /** Queues a transition for delivery. Sync and O(1): never waits on the network. */
  notify(t: AlertTransition): void;
  /**
   * Queues a re-send of every alert this notifier knows as firing (a timer does this every
   * resendIntervalMs); `current` (the engine's `active()`) refreshes their annotations first.
   */
  resendActive(current?: readonly Alert[]): void;
  queueDepth(): number;
  /** Waits until everything queued is delivered or given up; false when `timeoutMs` passed first. */
  flush(timeoutMs: number): Promise<boolean>;
  /** Stops re-sends, delivers what it can within `timeoutMs`, then abandons the rest. */
  close(timeoutMs: number): Promise<boolean>;
}

export interface NotifierOptions {
  /** Name in metrics and logs; defaults to the kind (alertmanager, pagerduty, webhook). */
  name?: string;
  registry?: Registry;
  logger?: Logger;
  /** Queued deliveries kept while the receiver is slow or down (default 1000); the oldest is dropped beyond. */
  maxQueue?: number;
  retry?: Partial<RetryPolicy>;
  /** Per-request timeout (default 10 s). */
  timeoutMs?: number;
  /** Re-send firing alerts this often; 0 disables. */
  resendIntervalMs?: number;
  /** The engine's current alerts (`engine.active()`), so timed re-sends carry the latest numbers. */
  activeAlerts?: () => readonly Alert[];
  now?: () => number;
  random?: () => number;
  fetch?: typeof fetch;
}

class DeliveryError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

abstract class QueuedNotifier implements Notifier {
  readonly name: string;
  protected readonly log: Logger;
  protected readonly now: () => number;
  protected readonly resendIntervalMs: number;
  private readonly queue: BoundedQueue<Delivery>;
  private readonly retry: RetryPolicy;
  private readonly random: () => number;
  private readonly fetchFn: typeof fetch;
  private readonly timeoutMs: number;
  private readonly sent: { success: Counter.Internal; retry: Counter.Internal; failed: Counter.Internal };
  private readonly depth: Gauge.Internal<"notifier">;
  private readonly dropped: Counter.Internal;
  private readonly firing = new Map<string, Alert>();
  private readonly resendTimer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private pumping = false;
  private stopped = false;
  private abort = new AbortController();
  private wakeRetry: (() => void) | undefined;
  private idleWaiters: (() => void)[] = [];

  protected constructor(kind: string, opts: NotifierOptions, defaultResendMs: number, private readonly batchSize: number) {
    this.name = opts.name ?? kind;
    this.log = (opts.logger ?? silentLogger()).child({ notifier: this.name });
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.fetchFn = opts.fetch ?? fetch;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.queue = new BoundedQueue<Delivery>(opts.maxQueue ?? 1_000);
    // Label children resolved once: notify() stays a few microseconds.
    const metrics = alertMetrics(opts.registry ?? new Registry());
    const sent = (result: string) => metrics.notifications.labels({ notifier: this.name, result });
    this.sent = { success: sent("success"), retry: sent("retry"), failed: sent("failed") };
    this.depth = metrics.queueDepth.labels({ notifier: this.name });
    this.dropped = metrics.dropped.labels({ notifier: this.name });
    this.depth.set(0);
    this.dropped.inc(0);
    this.resendIntervalMs = opts.resendIntervalMs ?? defaultResendMs;
    if (this.resendIntervalMs > 0) {
      const current = opts.activeAlerts;
      this.resendTimer = setInterval(() => this.resendActive(current?.()), this.resendIntervalMs);
      this.resendTimer.unref();
    }
  }

  /** Sends one batch; throws DeliveryError (retryable or not) on failure. */
  protected abstract send(batch: Delivery[], signal: AbortSignal): Promise<void>;

  notify(t: AlertTransition): void {
    if (t.kind === "firing") this.firing.set(t.alert.fingerprint, t.alert);
    else this.firing.delete(t.alert.fingerprint);
    this.enqueue({ kind: t.kind, alert: t.alert });
  }

  resendActive(current?: readonly Alert[]): void {
    if (current) for (const a of current) if (this.firing.has(a.fingerprint)) this.firing.set(a.fingerprint, a);
    for (const alert of this.firing.values()) this.enqueue({ kind: "firing", alert });
  }

  queueDepth(): number {
    return this.queue.length;
  }

  async flush(timeoutMs: number): Promise<boolean> {
    if (this.isIdle()) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true)));
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const done = await Promise.race([idle, timeout]);
    clearTimeout(timer);
    return done;
  }

  async close(timeoutMs: number): Promise<boolean> {
    if (this.resendTimer) clearInterval(this.resendTimer);
    const done = await this.flush(timeoutMs);
    this.stopped = true;
    this.abort.abort();
    this.wakeRetry?.();
    if (!done) this.log.warn({ left: this.queue.length + this.inFlight }, `closing ${this.name} notifier with undelivered alerts`);
    return done;
  }

  private enqueue(d: Delivery): void {
    if (this.stopped) return;
    const dropped = this.queue.push(d);
    if (dropped) this.dropped.inc();
    this.depth.set(this.queue.length);
    if (!this.pumping) {
      this.pumping = true;
      setImmediate(() => {
        this.pump().catch((e: unknown) => this.log.error({ err: errorMessage(e) }, "alert delivery loop failed"));
      });
    }
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0;
  }

  private async pump(): Promise<void> {
    try {
      while (!this.stopped && this.queue.length > 0) {
        const batch = this.queue.take(this.batchSize);
        this.inFlight = batch.length;
        this.depth.set(this.queue.length);
        await this.deliver(batch);
        this.inFlight = 0;
      }
    } finally {
      this.inFlight = 0;
      this.pumping = false;
      if (this.isIdle() || this.stopped) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private async deliver(batch: Delivery[]): Promise<void> {
    const n = batch.length;
    for (let attempt = 1; ; attempt++) {
      try {
        const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(this.timeoutMs)]);
        await this.send(batch, signal);
        this.sent.success.inc(n);
        return;
      } catch (e) {
        const retryable = !(e instanceof DeliveryError) || e.retryable;
        if (this.stopped || !retryable || attempt >= this.retry.maxAttempts) {
          this.sent.failed.inc(n);
          this.log.error({ err: errorMessage(e), attempts: attempt, alerts: n }, `giving up delivering ${n} alert(s) to ${this.name}`);
          return;
        }
        this.sent.retry.inc(n);
        const delayMs = backoffDelayMs(attempt, this.retry, this.random);
        this.log.warn({ err: errorMessage(e), attempt, delayMs }, `delivering ${n} alert(s) to ${this.name} failed; retrying`);
        await this.sleep(delayMs);
      }
    }
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wakeRetry = done;
    });
    this.wakeRetry = undefined;
  }

  /** POSTs JSON; 2xx is success, 429/5xx and network errors are retried, other 4xx are not. */
  protected async postJson(url: string, body: unknown, signal: AbortSignal, headers: Record<string, string> = {}): Promise<void> {
    let res: Response;
    try {
      res = await this.fetchFn(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body), signal });
    } catch (e) {
      throw new DeliveryError(`POST ${url}: ${errorMessage(e)}`, true);
    }
    const text = await res.text().catch(() => "");
    if (res.ok) return;
    const retryable = res.status === 429 || res.status >= 500;
    throw new DeliveryError(`POST ${url}: HTTP ${res.status} ${text.slice(0, 200)}`, retryable);
  }
}

export interface AlertmanagerNotifierOptions extends NotifierOptions {
  /** Alertmanager base URL, e.g. http://alertmanager:9093. */
  url: string;
  generatorUrl?: (a: Alert) => string;
  /** Alerts per POST (default 64). */
  batchSize?: number;
}

/** Alertmanager API v2: POST <url>/api/v2/alerts; firing alerts re-sent every minute by default. */
export class AlertmanagerNotifier extends QueuedNotifier {
  private readonly endpoint: string;
  private readonly generatorUrl: ((a: Alert) => string) | undefined;

  constructor(opts: AlertmanagerNotifierOptions) {
    super("alertmanager", opts, 60_000, opts.batchSize ?? 64);
    this.endpoint = `${opts.url.replace(/\/+$/, "")}/api/v2/alerts`;
    this.generatorUrl = opts.generatorUrl;
  }

  protected async send(batch: Delivery[], signal: AbortSignal): Promise<void> {
    const body = alertmanagerPayload(batch, {
      nowMs: this.now(),
      resendIntervalMs: this.resendIntervalMs > 0 ? this.resendIntervalMs : 60_000,
      ...(this.generatorUrl ? { generatorUrl: this.generatorUrl } : {}),
    });
    await this.postJson(this.endpoint, body, signal);
  }
}

export const PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue";

export interface PagerDutyNotifierOptions extends NotifierOptions {
  routingKey: SecretSource;
  /** Events API endpoint (default PAGERDUTY_EVENTS_URL). */
  url?: string;
}

/** PagerDuty Events API v2; one event per request; firing alerts re-sent every 5 min (deduplicated by dedup_key). */
export class PagerDutyNotifier extends QueuedNotifier {
  private readonly url: string;
  private readonly routingKey: string;

  constructor(opts: PagerDutyNotifierOptions) {
    super("pagerduty", opts, 300_000, 1);
    this.url = opts.url ?? PAGERDUTY_EVENTS_URL;
    this.routingKey = resolveSecret(opts.routingKey, "alerts.pagerduty.routingKey");
  }

  protected async send(batch: Delivery[], signal: AbortSignal): Promise<void> {
    for (const d of batch) await this.postJson(this.url, pagerDutyEvent(d, this.routingKey), signal);
  }
}

export interface WebhookNotifierOptions extends NotifierOptions {
  url: string;
  headers?: Record<string, string>;
}

/** Generic JSON webhook: one alert per POST, with a Slack-compatible `text`; no re-sends by default. */
export class WebhookNotifier extends QueuedNotifier {
  private readonly url: string;
  private readonly headers: Record<string, string>;

  constructor(opts: WebhookNotifierOptions) {
    super("webhook", opts, 0, 1);
    this.url = opts.url;
    this.headers = opts.headers ?? {};
  }

  protected async send(batch: Delivery[], signal: AbortSignal): Promise<void> {
    for (const d of batch) await this.postJson(this.url, webhookPayload(d), signal, this.headers);
  }
}

// ---------------------------------------------------------------------------------------------
// Router

export interface AlertRoute {
  federation: string;
  /** Notifier names this federation's alerts go to; alerts of federations without a route go to all. */
  notifiers: readonly string[];
}

export interface AlertRouterOptions {
  notifiers: readonly Notifier[];
  routes?: readonly AlertRoute[];
}

/** Sends each transition to the notifiers selected for its federation. */
export class AlertRouter {
  private readonly notifiers: readonly Notifier[];
  private readonly routes: Map<string, readonly Notifier[]>;

  constructor(opts: AlertRouterOptions) {
    this.notifiers = opts.notifiers;
    this.routes = new Map();
    for (const r of opts.routes ?? []) {
      const selected = r.notifiers.map((n) => {
        const found = opts.notifiers.find((x) => x.name === n);
        if (!found) throw new PgfedError("alerts.unknown_notifier", `alert route for federation "${r.federation}": no notifier named "${n}"`, { federation: r.federation });
        return found;
      });
      this.routes.set(r.federation, selected);
    }
  }

  notifiersFor(alert: Alert): readonly Notifier[] {
    const fed = alert.labels.federation;
    return (fed !== undefined ? this.routes.get(fed) : undefined) ?? this.notifiers;
  }

  dispatch(transitions: readonly AlertTransition[]): void {
    for (const t of transitions) for (const n of this.notifiersFor(t.alert)) n.notify(t);
  }

  /** Re-sends the firing alerts now, with the engine's current annotations. */
  resendActive(current?: readonly Alert[]): void {
    for (const n of this.notifiers) n.resendActive(current);
  }

  names(): string[] {
    return this.notifiers.map((n) => n.name);
  }

  /** Flushes every notifier within `timeoutMs` (together, not one after the other); true if all delivered. */
  async close(timeoutMs = 5_000): Promise<boolean> {
    const results = await Promise.all(this.notifiers.map((n) => n.close(timeoutMs)));
    return results.every(Boolean);
  }
}

export type AlertsConfig = Config["alerts"];

/** The notifiers the `alerts` config section names (none configured → none). */
export function createNotifiers(cfg: AlertsConfig, notifierOpts: NotifierOptions = {}): Notifier[] {
  const { name: _name, ...opts } = notifierOpts;
  const out: Notifier[] = [];
  if (cfg.alertmanager) out.push(new AlertmanagerNotifier({ ...opts, url: cfg.alertmanager.url }));
  if (cfg.pagerduty) out.push(new PagerDutyNotifier({ ...opts, routingKey: cfg.pagerduty.routingKey, ...(cfg.pagerduty.url ? { url: cfg.pagerduty.url } : {}) }));
  if (cfg.webhook) out.push(new WebhookNotifier({ ...opts, url: cfg.webhook.url, ...(cfg.webhook.headers ? { headers: cfg.webhook.headers } : {}) }));
  return out;
}

export function createAlertRouter(cfg: AlertsConfig, opts: NotifierOptions & { routes?: readonly AlertRoute[] } = {}): AlertRouter {
  const { routes, ...notifierOpts } = opts;
  return new AlertRouter({ notifiers: createNotifiers(cfg, notifierOpts), ...(routes ? { routes } : {}) });
}
