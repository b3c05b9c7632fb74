/**
 * The leader's own alerting (DESIGN.md "Lag alerting"): after every evaluation pass of a
 * federation (4 per second, once a second when healthy and quiet; the machine's state changes
 * are read in the same pass) it turns what the coordinator knows into one observation per
 * catalog alert instance, feeds the AlertEngine
 * (hysteresis from the catalog, overridable per alert) and routes the transitions through the
 * notifiers of `config.alerts`. It also keeps the exposure metrics the Prometheus rules read.
 *
 * - Never blocking: `observe` is synchronous; notifiers only queue (their workers deliver and
 *   re-send firing alerts on their own timers, with the engine's latest numbers).
 * - Only the leader raises alerts: the runtimes that call `observe` run on the leader only; on
 *   stepping down the engine is dropped, the notifiers are closed (no more re-sends of alerts a
 *   follower cannot judge) and the exposure gauges and pgfed_topology_changed_outside are cleared,
 *   so a follower's /metrics shows no stale exposure or alert either.
 * - PgfedCoordinatorLeaderless is raised by Prometheus only (deploy/prometheus/pgfed-rules.yml):
 *   a coordinator without the lease is exactly the one that must not judge. So is
 *   PgfedBusPermissionDenied: every process counts its own refused publishes, not the leader.
 */
import type { Registry } from "prom-client";
import type { FederationContext } from "../../machines/index.js";
import type { AlertName, AlertValues, Labels } from "../alerts/catalog.js";
import { AlertEngine, type Alert, type AlertEngineOptions, type AlertTransition, type Observation } from "../alerts/engine.js";
import { createAlertRouter, type AlertRouter, type NotifierOptions } from "../alerts/notifiers.js";
import type { Config, FederationConfig } from "../config.js";
import { errorMessage } from "../errors.js";
import type { Logger } from "../log.js";
import { createMetrics, type PgfedMetrics } from "../metrics.js";
import { recordExposureMetrics, recordMemberMetrics, type Evaluation } from "../wal/monitor.js";
import { createContextAlertMetrics, OPERATION_KINDS, type ContextAlertMetrics } from "./metrics.js";

/** What one evaluation pass of a federation hands to alerting. */
export interface FederationTick {
  cfg: FederationConfig;
  ctx: FederationContext;
  evaluation: Evaluation;
  /** Members observed as reachable, unfenced primary clusters. */
  writable: readonly string[];
  /** Members whose Cluster the agent of their region cannot read. */
  kubeUnreachable: readonly string[];
  /** Consecutive failed lag samples per member. */
  sampleFailures: ReadonlyMap<string, number>;
  /** Primaries whose agent is silent while their region's Kubernetes API shows them healthy (failover held back). */
  agentsDown?: readonly { member: string; region: string; silentMs: number }[];
  /** Commands agents refused for a failed proof of sender, newest last (FederationSignals.rejectedCommands). */
  rejectedCommands?: readonly { member: string; reason: string; atMs: number }[];
  nowMs: number;
}

export interface AlertingOptions {
  /** Per-alert `for`/`clearFor`/`minSamples`; the catalog's by default (tests shorten them). */
  hysteresis?: AlertEngineOptions["hysteresis"];
  runbookBaseUrl?: string;
  /** Notifier settings (re-send interval, retries, timeouts). */
  notifier?: Omit<NotifierOptions, "registry" | "logger" | "activeAlerts" | "name">;
}

/** An operation that failed (aborted, or stopped needing an operator) counts for this long. */
export const OPERATION_FAILED_WINDOW_MS = 15 * 60_000;

/** Per federation memory across passes: failed operations, sample-failure counters, what the engine holds. */
export interface FederationMemo {
  failedOps: Map<string, { kind: string; atMs: number }>;
  sampleFailures: Map<string, number>;
  /** Fingerprints of this federation's alerts firing in the engine (from its transitions). */
  firing: Set<string>;
  /** The engine may hold state for an instance of this federation: its next pass must reach the engine. */
  engaged: boolean;
  /** Labels of the PgfedTopologyChangedOutside instance of the last pass, to resolve it once the machine drops it. */
  topologyChange: Labels | undefined;
}

export function newMemo(): FederationMemo {
  return { failedOps: new Map(), sampleFailures: new Map(), firing: new Set(), engaged: false, topologyChange: undefined };
}

/** What the reason of the machine's PgfedTopologyChangedOutside says. */
export interface OutsideTopologyChange {
  federation: string;
  member: string;
  from: string;
  to: string;
  manager: string;
}

// The sentence of Detection.noticeOtherWriter (src/coordinator/runtime/detection.ts); member names hold no "/".
const OUTSIDE_CHANGE = /^spec\.replica\.primary of (\S+)\/([^/\s]+) was changed from (\S+) to (\S+) by field manager "(.+)", not by pgfed(?:;|$)/;

/** Parses the reason of a PgfedTopologyChangedOutside context alert; undefined for any other shape. */
export function parseOutsideChange(reason: string): OutsideTopologyChange | undefined {
  const m = OUTSIDE_CHANGE.exec(reason);
  if (!m) return undefined;
  const [, federation, member, from, to, manager] = m;
  if (federation === undefined || member === undefined || from === undefined || to === undefined || manager === undefined) return undefined;
  return { federation, member, from, to, manager };
}

/**
 * The instance of PgfedTopologyChangedOutside the machine's context holds, if any: labels (member and
 * manager from the reason) and the old and new value for display. A reason of another shape still
 * raises the alert, for the federation alone.
 */
export function topologyChangeOf(ctx: FederationContext, federation: string): { labels: Labels; values: AlertValues } | undefined {
  const alert = ctx.alerts.find((a) => a.name === "PgfedTopologyChangedOutside");
  if (!alert) return undefined;
  const change = parseOutsideChange(alert.reason);
  if (!change || change.federation !== federation) return { labels: { federation }, values: {} };
  return { labels: { federation, member: change.member, manager: change.manager }, values: { from: change.from, to: change.to } };
}

function sameLabels(a: Labels, b: Labels): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

const seconds = (ms: number): number => Math.round(ms) / 1000;

/**
 * One observation per alert instance of the federation, active or not (pure but for `memo`).
 * Healthy instances cost nothing in the engine; firing ones need the inactive observation to resolve.
 */
export function observationsOf(t: FederationTick, memo: FederationMemo): Observation[] {
  const { cfg, ctx, evaluation: ev, nowMs } = t;
  const federation = cfg.name;
  const fed = { federation };
  const out: Observation[] = [];
  const add = (alert: AlertName, labels: Record<string, string>, active: boolean, values: AlertValues = {}): void => {
    out.push({ alert, labels, active, values, atMs: nowMs });
  };
  const budgetS = cfg.rpo.budget / 1000;

  // RPO: the budget verdict is on the worst case (equal to the estimate while the primary answers).
  const wc = ev.worstCase;
  const rpoValues = {
    exposure_s: seconds(wc?.exposureMs ?? 0),
    budget_s: budgetS,
    warn_pct: Math.round(cfg.rpo.warnAt * 100),
    exposure_bytes: Number(wc?.exposureBytes ?? 0n),
  };
  add("PgfedRPOBudgetWarning", fed, ev.budget.level !== "ok", rpoValues);
  add("PgfedRPOBudgetExceeded", fed, ev.budget.level === "exceeded", rpoValues);

  // Per member: archiver, replica progress, reachability.
  for (const m of cfg.members) {
    const labels = { federation, member: m.name, region: m.region };
    const st = ev.members.find((x) => x.name === m.name);
    const archiveFailing = st?.status === "up" && st.archive?.failing === true;
    add("PgfedWALArchivingFailing", labels, archiveFailing, st?.archive?.lastArchivedAtMs !== undefined ? { archive_age_s: seconds(nowMs - st.archive.lastArchivedAtMs) } : {});
    const stalled = m.name !== ev.primary && st?.replica?.stalled === true;
    add("PgfedReplicaStalled", labels, stalled, st?.lag ? { lag_s: seconds(st.lag.ms), lag_bytes: Number(st.lag.bytes) } : {});
    const failures = t.sampleFailures.get(m.name) ?? 0;
    memo.sampleFailures.set(m.name, failures);
    const unreachable = st?.status === "unreachable" || t.kubeUnreachable.includes(m.name);
    add("PgfedMemberUnreachable", labels, unreachable, { errors: failures });
    const agentDown = t.agentsDown?.find((a) => a.member === m.name);
    add("PgfedAgentDown", labels, agentDown !== undefined, agentDown ? { silent_s: seconds(agentDown.silentMs) } : {});
    const rejected = (t.rejectedCommands ?? []).filter((r) => r.member === m.name && nowMs - r.atMs <= OPERATION_FAILED_WINDOW_MS);
    add("PgfedCommandRejected", { federation, member: m.name }, rejected.length > 0, { rejected: rejected.length });
  }

  // The federation machine: approval, failed operations.
  const op = ctx.operation;
  const awaiting = op?.kind === "failover" && op.step === "awaitApproval";
  const worstLossMs = ctx.lossEstimates.length > 0 ? Math.min(...ctx.lossEstimates.map((c) => c.worstCaseLossMs)) : wc?.exposureMs;
  add("PgfedFailoverAwaitingApproval", fed, awaiting, {
    ...(awaiting ? { operation: op.id } : {}),
    ...(worstLossMs !== undefined ? { worst_case_s: seconds(worstLossMs) } : {}),
    budget_s: budgetS,
  });
  if (op?.step === "operatorRequired" && !memo.failedOps.has(op.id)) memo.failedOps.set(op.id, { kind: op.kind, atMs: nowMs });
  const last = ctx.lastOperation;
  if (last?.outcome === "aborted" && !memo.failedOps.has(last.id)) memo.failedOps.set(last.id, { kind: last.kind, atMs: nowMs });
  for (const [id, f] of memo.failedOps) if (nowMs - f.atMs > OPERATION_FAILED_WINDOW_MS) memo.failedOps.delete(id);
  for (const kind of OPERATION_KINDS) {
    const failures = [...memo.failedOps.values()].filter((f) => f.kind === kind).length;
    add("PgfedOperationFailed", { federation, kind }, failures > 0, { failures });
  }

  // Writers: none, or more than one.
  const worstCase: AlertValues = wc ? { worst_case_s: seconds(wc.exposureMs) } : {};
  add("PgfedNoPrimary", fed, t.writable.length === 0, { ...worstCase, ...(ev.bestTarget ? { target: ev.bestTarget.name } : {}) });
  const intruder = cfg.members.find((m) => t.writable.includes(m.name) && m.name !== ctx.designatedPrimary);
  add("PgfedSplitBrainSuspected", fed, t.writable.length > 1, {
    primaries: t.writable.length,
    ...(intruder ? { member: intruder.name, region: intruder.region, cluster: intruder.cluster, namespace: intruder.namespace } : {}),
  });

  // Another writer changed the topology: the machine holds the alert until an operator resumes.
  const change = topologyChangeOf(ctx, federation);
  const before = memo.topologyChange;
  if (before !== undefined && (change === undefined || !sameLabels(before, change.labels))) add("PgfedTopologyChangedOutside", before, false);
  if (change) add("PgfedTopologyChangedOutside", change.labels, true, change.values);
  memo.topologyChange = change?.labels;
  return out;
}

interface Active {
  engine: AlertEngine;
  router: AlertRouter;
}

export interface CoordinatorAlertingOptions extends AlertingOptions {
  config: Config;
  registry: Registry;
  log: Logger;
}

export class CoordinatorAlerting {
  readonly metrics: PgfedMetrics;
  readonly contextMetrics: ContextAlertMetrics;
  private readonly log: Logger;
  private readonly memos = new Map<string, FederationMemo>();
  private current: Active | undefined;
  private closed = false;

  constructor(private readonly opts: CoordinatorAlertingOptions) {
    this.log = opts.log.child({ component: "alerting" });
    this.metrics = createMetrics(opts.registry);
    this.contextMetrics = createContextAlertMetrics(opts.registry);
  }

  /** The firing alerts (empty on a follower). */
  active(): Alert[] {
    return this.current?.engine.active() ?? [];
  }

  /** Notifier names alerts go to. */
  notifiers(): string[] {
    return this.current?.router.names() ?? [];
  }

  /** One evaluation pass of a federation on the leader: metrics, observations, transitions out. Never throws. */
  observe(t: FederationTick): void {
    if (this.closed) return;
    try {
      this.updateMetrics(t);
      let memo = this.memos.get(t.cfg.name);
      if (!memo) {
        memo = newMemo();
        this.memos.set(t.cfg.name, memo);
      }
      const cur = this.ensure();
      const topologyBefore = memo.topologyChange;
      const observations = observationsOf(t, memo);
      this.recordTopologyChange(topologyBefore, memo.topologyChange);
      const anyActive = observations.some((o) => o.active);
      // All healthy, and the previous pass already cleared what was pending: the engine holds no
      // state for these instances and would only fingerprint each one to find that out.
      if (!anyActive && !memo.engaged) return;
      const transitions = cur.engine.observeAll(observations);
      for (const tr of transitions) {
        if (tr.kind === "firing") memo.firing.add(tr.alert.fingerprint);
        else memo.firing.delete(tr.alert.fingerprint);
      }
      // Inactive instances that were only pending were dropped by this pass; firing ones stay until resolved.
      memo.engaged = anyActive || memo.firing.size > 0;
      if (transitions.length === 0) return;
      for (const tr of transitions) this.logTransition(tr);
      cur.router.dispatch(transitions);
    } catch (e) {
      this.log.error({ federation: t.cfg.name, err: errorMessage(e) }, `alerting pass of ${t.cfg.name} failed: ${errorMessage(e)}`);
    }
  }

  /** This coordinator no longer leads: forget every alert and exposure figure, stop re-sending. */
  async stepDown(timeoutMs = 2_000): Promise<void> {
    const cur = this.current;
    this.current = undefined;
    this.memos.clear();
    for (const g of [this.metrics.exposureSeconds, this.metrics.exposureBytes, this.metrics.worstCaseExposureSeconds, this.metrics.worstCaseExposureBytes, this.metrics.rpoBudgetSeconds]) g.reset();
    for (const g of [this.metrics.replicaLagSeconds, this.metrics.replicaLagBytes, this.metrics.replicaStalled, this.metrics.archiveFailing, this.metrics.archiveReadySegments, this.metrics.memberUp, this.metrics.archiveLastSuccessTimestampSeconds]) g.reset();
    this.contextMetrics.topologyChangedOutside.reset();
    if (cur) await cur.router.close(timeoutMs).catch(() => false);
  }

  /** Stops for good: delivers what is queued within `timeoutMs`. */
  async close(timeoutMs = 2_000): Promise<void> {
    this.closed = true;
    await this.stepDown(timeoutMs);
  }

  private ensure(): Active {
    if (this.current) return this.current;
    const engine = new AlertEngine({
      ...(this.opts.hysteresis ? { hysteresis: this.opts.hysteresis } : {}),
      ...((this.opts.runbookBaseUrl ?? this.opts.config.alerts.runbookBaseUrl) !== undefined ? { runbookBaseUrl: this.opts.runbookBaseUrl ?? this.opts.config.alerts.runbookBaseUrl } : {}),
    });
    const router = createAlertRouter(this.opts.config.alerts, {
      ...this.opts.notifier,
      registry: this.opts.registry,
      logger: this.log,
      activeAlerts: () => engine.active(),
    });
    this.current = { engine, router };
    this.log.info(`alerting: this coordinator leads; alerts go to ${router.names().join(", ") || "no notifier (none configured)"}`);
    return this.current;
  }

  private logTransition(tr: AlertTransition): void {
    const a = tr.alert;
    const fields = { alert: a.name, severity: a.severity, ...a.labels };
    if (tr.kind === "firing") this.log.warn(fields, `alert ${a.name} firing: ${a.annotations.summary} (run: ${a.annotations.command})`);
    else this.log.info(fields, `alert ${a.name} resolved: ${a.annotations.summary}`);
  }

  /** pgfed_topology_changed_outside: 1 for the instance the context holds; the series goes when it clears or moves. */
  private recordTopologyChange(before: Labels | undefined, now: Labels | undefined): void {
    const g = this.contextMetrics.topologyChangedOutside;
    if (before !== undefined && (now === undefined || !sameLabels(before, now))) g.remove(before);
    if (now !== undefined) g.set(now, 1);
  }

  private updateMetrics(t: FederationTick): void {
    const m = this.metrics;
    const ev = t.evaluation;
    m.rpoBudgetSeconds.set({ federation: t.cfg.name }, t.cfg.rpo.budget / 1000);
    recordExposureMetrics(m, ev);
    const memo = this.memos.get(t.cfg.name);
    for (const member of t.cfg.members) {
      const labels = { federation: t.cfg.name, member: member.name, region: member.region };
      const s = ev.members.find((x) => x.name === member.name);
      if (!s) continue;
      if (s.status !== "unknown") m.memberUp.set(labels, s.status === "up" ? 1 : 0);
      const failures = t.sampleFailures.get(member.name) ?? 0;
      const before = memo?.sampleFailures.get(member.name) ?? 0;
      if (failures > before) m.sampleErrorsTotal.inc(labels, failures - before);
      else m.sampleErrorsTotal.inc(labels, 0);
      recordMemberMetrics(m, labels, s, ev.primary);
    }
  }
}
