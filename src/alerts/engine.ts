/**
 * pgfed raises alerts itself: the coordinator feeds the engine one observation per condition and
 * sample ("is exposure over the budget for orders, and by how much"), and the engine decides when
 * an alert starts and stops firing. Pure: no timers, no I/O; time comes in with each call.
 *
 * Hysteresis, as Prometheus' `for:` and `keep_firing_for:`: a condition fires only after it held
 * for `forMs` over at least `minSamples` observations, and a firing alert resolves only after the
 * condition was clear for `clearForMs`. A condition that goes on/off/on faster than that never
 * pages, and an idle database (all conditions clear) raises nothing.
 */
import { createHash } from "node:crypto";
import { ALERTS, renderAnnotations, type AlertName, type AlertValues, type Labels, type RenderedAnnotations, type Severity } from "./catalog.js";

export interface Observation {
  alert: AlertName;
  /** The instance's key labels: federation, member, region, kind (as the catalog says). */
  labels: Labels;
  active: boolean;
  /** Numbers (and strings) the annotations show, e.g. `{ exposure_s: 41, budget_s: 30 }`. */
  values?: AlertValues;
  atMs: number;
}

export interface Alert {
  /** Stable hash of alertname + labels: the same instance has the same fingerprint forever. */
  fingerprint: string;
  name: AlertName;
  severity: Severity;
  /** alertname, severity and the key labels. */
  labels: Labels;
  annotations: RenderedAnnotations;
  values: AlertValues;
  /** When the condition started holding (as Prometheus' activeAt). */
  startsAtMs: number;
  /** When the condition stopped holding; set on resolved alerts only. */
  endsAtMs?: number;
}

export interface AlertTransition {
  kind: "firing" | "resolved";
  alert: Alert;
  /** When the engine decided (the observation or tick time). */
  atMs: number;
}

export interface Hysteresis {
  forMs: number;
  clearForMs: number;
  /** Observations the condition must hold over before firing (guards against a single bad sample). */
  minSamples: number;
}

export interface AlertEngineOptions {
  runbookBaseUrl?: string;
  /** Per-alert hysteresis; defaults are the catalog's `for`/`clearFor` and 2 samples (1 when `for` is 0). */
  hysteresis?: Partial<Record<AlertName, Partial<Hysteresis>>>;
}

/** sha256 of the sorted labels: the identity of an alert instance (and PagerDuty's dedup_key). */
// The coordinator fingerprints every alert instance of every federation 4 times a second: hash each label set once.
const fingerprints = new Map<string, string>();
const MAX_CACHED_FINGERPRINTS = 100_000;

export function fingerprint(labels: Labels): string {
  const sorted = Object.keys(labels)
    .sort()
    .map((k) => [k, labels[k]]);
  const text = JSON.stringify(sorted);
  let fp = fingerprints.get(text);
  if (fp === undefined) {
    fp = createHash("sha256").update(text).digest("hex").slice(0, 32);
    if (fingerprints.size >= MAX_CACHED_FINGERPRINTS) fingerprints.clear();
    fingerprints.set(text, fp);
  }
  return fp;
}

interface InstanceState {
  labels: Labels;
  values: AlertValues;
  lastAtMs: number;
  /** Pending: first active observation of the current run, and how many in a row. */
  activeSinceMs: number | undefined;
  activeSamples: number;
  firing: Alert | undefined;
  /** Firing but the condition is clear since then. */
  clearSinceMs: number | undefined;
}

export class AlertEngine {
  private readonly instances = new Map<string, InstanceState>();
  private readonly opts: AlertEngineOptions;

  constructor(opts: AlertEngineOptions = {}) {
    this.opts = opts;
  }

  hysteresisOf(name: AlertName): Hysteresis {
    const def = ALERTS[name];
    const o = this.opts.hysteresis?.[name] ?? {};
    const forMs = o.forMs ?? def.forMs;
    return { forMs, clearForMs: o.clearForMs ?? def.clearForMs, minSamples: o.minSamples ?? (forMs > 0 ? 2 : 1) };
  }

  /** Feeds one observation; returns the transition it caused, if any. */
  observe(obs: Observation): AlertTransition[] {
    const def = ALERTS[obs.alert];
    const labels: Record<string, string> = { alertname: def.name, severity: def.severity };
    for (const k of def.keyLabels) {
      const v = obs.labels[k];
      if (v !== undefined) labels[k] = v;
    }
    // Extra labels the catalog does not key on (e.g. region of a federation alert) are kept as labels too.
    for (const [k, v] of Object.entries(obs.labels)) if (!(k in labels)) labels[k] = v;
    const key = fingerprint(labels);
    let st = this.instances.get(key);
    if (st !== undefined && obs.atMs < st.lastAtMs) return []; // late observation: the newer one already decided
    if (st === undefined) {
      if (!obs.active) return []; // nothing known and nothing wrong: keep no state for healthy conditions
      st = { labels, values: {}, lastAtMs: obs.atMs, activeSinceMs: undefined, activeSamples: 0, firing: undefined, clearSinceMs: undefined };
      this.instances.set(key, st);
    }
    st.lastAtMs = obs.atMs;
    const h = this.hysteresisOf(obs.alert);
    const out: AlertTransition[] = [];
    if (obs.active) {
      if (obs.values) st.values = { ...st.values, ...obs.values };
      if (st.activeSinceMs === undefined) st.activeSinceMs = obs.atMs;
      st.activeSamples++;
      st.clearSinceMs = undefined;
      if (st.firing) {
        st.firing = this.build(key, st, st.firing.startsAtMs);
      } else if (obs.atMs - st.activeSinceMs >= h.forMs && st.activeSamples >= h.minSamples) {
        st.firing = this.build(key, st, st.activeSinceMs);
        out.push({ kind: "firing", alert: st.firing, atMs: obs.atMs });
      }
    } else {
      st.activeSinceMs = undefined;
      st.activeSamples = 0;
      if (!st.firing) {
        this.instances.delete(key);
      } else {
        if (st.clearSinceMs === undefined) st.clearSinceMs = obs.atMs;
        out.push(...this.maybeResolve(key, st, h, obs.atMs));
      }
    }
    return out;
  }

  observeAll(observations: readonly Observation[]): AlertTransition[] {
    return observations.flatMap((o) => this.observe(o));
  }

  /** Advances time without new observations: resolves alerts whose condition has been clear long enough. */
  tick(nowMs: number): AlertTransition[] {
    const out: AlertTransition[] = [];
    for (const [key, st] of this.instances) {
      if (st.firing && st.clearSinceMs !== undefined) out.push(...this.maybeResolve(key, st, this.hysteresisOf(st.firing.name), nowMs));
    }
    return out;
  }

  /** The firing alerts, with annotations rendered from their latest values. */
  active(): Alert[] {
    const out: Alert[] = [];
    for (const st of this.instances.values()) if (st.firing) out.push(st.firing);
    return out;
  }

  /** Conditions that hold but have not fired yet (for `pgfed status`). */
  pending(): { name: AlertName; labels: Labels; sinceMs: number }[] {
    const out: { name: AlertName; labels: Labels; sinceMs: number }[] = [];
    for (const st of this.instances.values()) {
      if (!st.firing && st.activeSinceMs !== undefined) out.push({ name: st.labels.alertname as AlertName, labels: st.labels, sinceMs: st.activeSinceMs });
    }
    return out;
  }

  private maybeResolve(key: string, st: InstanceState, h: Hysteresis, nowMs: number): AlertTransition[] {
    if (!st.firing || st.clearSinceMs === undefined || nowMs - st.clearSinceMs < h.clearForMs) return [];
    const resolved: Alert = { ...st.firing, endsAtMs: st.clearSinceMs };
    this.instances.delete(key);
    return [{ kind: "resolved", alert: resolved, atMs: nowMs }];
  }

  private build(key: string, st: InstanceState, startsAtMs: number): Alert {
    const name = st.labels.alertname as AlertName;
    const def = ALERTS[name];
    return {
      fingerprint: key,
      name,
      severity: def.severity,
      labels: st.labels,
      annotations: renderAnnotations(def, st.labels, st.values, this.opts.runbookBaseUrl),
      values: st.values,
      startsAtMs,
    };
  }
}
