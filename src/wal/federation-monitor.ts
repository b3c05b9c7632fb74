/**
 * A sampling loop over one federation's members: sample every member each interval, evaluate the
 * exposure (monitor.ts), publish the metrics, and nudge a WAL switch when the evaluator asks for
 * one. The accuracy and enforcement tests and the sampler benchmark drive it over real Postgres;
 * the agent and the coordinator run the evaluator inside their own loops.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { errorMessage } from "../errors.js";
import { silentLogger, type Logger } from "../log.js";
import type { PgfedMetrics } from "../metrics.js";
import type { WorstCaseExposure } from "./exposure.js";
import { formatLsn, type Lsn } from "./lsn.js";
import { FederationEvaluator, recordExposureMetrics, recordMemberMetrics, type Evaluation, type EvaluatorConfig, type EvaluatorMember, type NudgeDecision } from "./monitor.js";
import type { MemberState, SampleOutcome } from "./sampler.js";


/** What the monitor needs from a sampler (MemberSampler implements it; tests may fake it). */
export interface Sampler {
  readonly target: { member: string; region?: string | undefined };
  readonly state: MemberState;
  sample(): Promise<SampleOutcome>;
  switchWal(): Promise<{ switchLsn: Lsn }>;
  close(): Promise<void>;
}

export interface MonitoredMember extends Omit<EvaluatorMember, "name" | "region"> {
  sampler: Sampler;
}

export interface FederationMonitorOptions extends EvaluatorConfig {
  members: MonitoredMember[];
  /** Default 1 s. */
  sampleIntervalMs?: number | undefined;
  metrics?: PgfedMetrics | undefined;
  log?: Logger | undefined;
  now?: (() => number) | undefined;
  /** Called after every round (the agent publishes it on the bus). Exceptions are logged, not thrown. */
  onEvaluation?: ((e: Evaluation) => void) | undefined;
}

export interface NudgeRecord {
  atMs: number;
  member: string;
  unarchivedMs: number;
  unarchivedBytes: bigint;
  switchLsn: Lsn | undefined;
  error: string | undefined;
}

export class FederationMonitor {
  readonly evaluator: FederationEvaluator;
  readonly sampleIntervalMs: number;
  readonly nudges: NudgeRecord[] = [];
  #last: Evaluation | undefined;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: AbortController | undefined;
  #prevSignals = new Set<string>();
  readonly #opts: FederationMonitorOptions;
  readonly #log: Logger;
  readonly #now: () => number;

  constructor(opts: FederationMonitorOptions) {
    this.#opts = opts;
    this.evaluator = new FederationEvaluator(opts);
    this.sampleIntervalMs = opts.sampleIntervalMs ?? 1_000;
    this.#log = (opts.log ?? silentLogger()).child({ federation: opts.federation });
    this.#now = opts.now ?? Date.now;
    opts.metrics?.rpoBudgetSeconds.set({ federation: opts.federation }, opts.budgetMs / 1000);
  }

  get last(): Evaluation | undefined {
    return this.#last;
  }

  worstCaseAt(nowMs: number = this.#now()): WorstCaseExposure | undefined {
    return this.evaluator.worstCaseAt(nowMs);
  }

  /** Starts sampling every interval (rounds never overlap: a slow round delays the next). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops the loop and waits for the round in flight; does not close the samplers. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.abort();
    await this.#loop;
    this.#loop = undefined;
  }

  /** Stops and closes every sampler. */
  async close(): Promise<void> {
    await this.stop();
    await Promise.all(this.#opts.members.map((m) => m.sampler.close()));
  }

  async #run(): Promise<void> {
    while (this.#running) {
      const started = this.#now();
      try {
        await this.tick();
      } catch (e) {
        // tick() is written not to throw; this is the last guard against a crash of the agent.
        this.#log.error({ err: errorMessage(e) }, `sampling round of ${this.#opts.federation} failed: ${errorMessage(e)}`);
      }
      const waitMs = Math.max(0, this.sampleIntervalMs - (this.#now() - started));
      if (!this.#running) break;
      this.#wake = new AbortController();
      await sleep(waitMs, undefined, { signal: this.#wake.signal }).catch(() => undefined);
    }
  }

  /** One round: sample every member, evaluate, nudge if due, update metrics. */
  async tick(): Promise<Evaluation> {
    const o = this.#opts;
    await Promise.all(o.members.map((m) => m.sampler.sample()));
    const nowMs = this.#now();
    const evaluation = this.evaluator.evaluate({
      nowMs,
      members: o.members.map((m) => ({
        spec: { name: m.sampler.target.member, region: m.sampler.target.region, readsArchive: m.readsArchive, applicationName: m.applicationName },
        state: m.sampler.state,
      })),
    });
    if (evaluation.nudge) await this.#nudge(evaluation.nudge);
    this.#last = evaluation;
    this.#logChanges(evaluation);
    this.#updateMetrics(evaluation);
    if (o.onEvaluation) {
      try {
        o.onEvaluation(evaluation);
      } catch (e) {
        this.#log.error({ err: errorMessage(e) }, `onEvaluation callback failed: ${errorMessage(e)}`);
      }
    }
    return evaluation;
  }

  async #nudge(d: NudgeDecision): Promise<void> {
    const member = this.#opts.members.find((m) => m.sampler.target.member === d.member);
    if (!member) return;
    const atMs = this.#now();
    // Recorded before the call so a failing switch is rate-limited too.
    this.evaluator.recordNudge(atMs);
    try {
      const { switchLsn } = await member.sampler.switchWal();
      this.nudges.push({ atMs, member: d.member, unarchivedMs: d.unarchivedMs, unarchivedBytes: d.unarchivedBytes, switchLsn, error: undefined });
      this.#opts.metrics?.walSwitchNudgesTotal.inc(this.#memberLabels(d.member));
      this.#log.info({ member: d.member, unarchivedMs: d.unarchivedMs, unarchivedBytes: Number(d.unarchivedBytes), switchLsn: formatLsn(switchLsn) }, `${d.reason}; switched at ${formatLsn(switchLsn)}`);
    } catch (e) {
      this.nudges.push({ atMs, member: d.member, unarchivedMs: d.unarchivedMs, unarchivedBytes: d.unarchivedBytes, switchLsn: undefined, error: errorMessage(e) });
      this.#log.warn({ member: d.member, err: errorMessage(e) }, `${d.reason}, but the switch failed: ${errorMessage(e)}`);
    }
  }

  /** One line when a signal appears or clears (not every round: Patroni's habit, without the noise). */
  #logChanges(e: Evaluation): void {
    const now = new Set<string>();
    for (const s of e.signals) {
      const key = `${s.kind}:${"member" in s ? s.member : ""}`;
      now.add(key);
      if (!this.#prevSignals.has(key)) this.#log.warn({ signal: s.kind, ...("member" in s ? { member: s.member } : {}) }, `${s.kind.replace(/_/g, " ")}: ${s.reason}`);
    }
    for (const key of this.#prevSignals) {
      if (!now.has(key)) this.#log.info({ signal: key.split(":")[0] }, `cleared ${key.replace(/_/g, " ").replace(/:$/, "")}: ${e.sentence}`);
    }
    this.#prevSignals = now;
    this.#log.debug({ exposureMs: e.worstCase?.exposureMs, budget: e.budget.level }, e.sentence);
  }

  #memberLabels(member: string): { federation: string; member: string; region: string } {
    const m = this.#opts.members.find((x) => x.sampler.target.member === member);
    return { federation: this.#opts.federation, member, region: m?.sampler.target.region ?? "" };
  }

  #updateMetrics(e: Evaluation): void {
    const m = this.#opts.metrics;
    if (!m) return;
    recordExposureMetrics(m, e);
    for (const s of e.members) {
      const labels = this.#memberLabels(s.name);
      m.memberUp.set(labels, s.status === "up" ? 1 : 0);
      const member = this.#opts.members.find((x) => x.sampler.target.member === s.name);
      const state = member?.sampler.state;
      if (state?.status === "up") m.sampleDurationSeconds.observe(labels, state.sample.durationMs / 1000);
      else if (state?.status === "unreachable") m.sampleErrorsTotal.inc(labels);
      recordMemberMetrics(m, labels, s, e.primary);
    }
  }
}
