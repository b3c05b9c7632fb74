/**
 * An in-memory CoordinatorService for API and CLI tests: one federation "orders" (primary pg-eu,
 * replicas pg-us close behind and pg-ap beyond the budget), operations that advance one step per
 * `stepMs`, approvals, idempotency keys, an audit trail, and a record of every call.
 */
import {
  ServiceError,
  type ActionResult,
  type AuditEntry,
  type CoordinatorService,
  type EvacuationView,
  type FederationHistoryView,
  type FederationView,
  type MemberView,
  type OperationView,
  type PlanView,
  type RequestContext,
} from "../../../src/api/contract.js";
import { Evacuations } from "../../../src/coordinator/evacuation.js";
import { FederationHistory } from "../../../src/coordinator/history.js";
import { resolveRefusal } from "../../../src/coordinator/service.js";

export interface FakeCall {
  method: string;
  federation?: string;
  args?: unknown;
  ctx?: RequestContext;
  dryRun?: boolean;
}

export interface FakeOptions {
  /** Time between operation steps (default 20 ms). */
  stepMs?: number;
  /** Operations never get past their first step. */
  hang?: boolean;
  /** Switchovers abort at the promote step. */
  abort?: boolean;
}

const MUTATIONS = new Set(["switchover", "failover", "rejoin", "pause", "resume", "resolve", "approve"]);
const FINISHED = new Set(["completed", "aborted", "refused", "cancelled", "resolved"]);

function member(name: string, region: string, role: MemberView["role"], lagSeconds: number | null): MemberView {
  return {
    name,
    region,
    namespace: "db",
    cluster: name,
    role,
    state: role,
    phase: "Cluster in healthy state",
    fenced: false,
    reachable: true,
    diverged: false,
    lagBytes: lagSeconds === null ? null : Math.round(lagSeconds * 16_384),
    lagSeconds,
    lossIfPromotedSeconds: lagSeconds,
    timeline: role === "primary" ? 3 : null,
    following: true,
    lastSeenAt: new Date().toISOString(),
    observedAgoSeconds: 0.5,
    reason: null,
  };
}

export class FakeCoordinator implements CoordinatorService {
  readonly calls: FakeCall[] = [];
  leaderFlag = true;
  leaderInfo: { id: string; apiUrl: string | null } | null = { id: "coord-1", apiUrl: null };
  readonly feds = new Map<string, FederationView>();
  private readonly histories = new Map<string, FederationHistory>();
  readonly ops = new Map<string, OperationView>();
  readonly auditLog: AuditEntry[] = [];
  private readonly byKey = new Map<string, string>();
  private readonly listeners = new Map<string, Set<(op: OperationView) => void>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private seq = 0;

  constructor(private readonly opts: FakeOptions = {}) {
    this.feds.set("orders", {
      name: "orders",
      epoch: 3,
      designatedPrimary: "pg-eu",
      mode: "automatic",
      paused: false,
      rpo: { budgetSeconds: 30, warnAt: 0.5 },
      failover: { leaseTtlSeconds: 10, clockSkewMarginSeconds: 2 },
      exposure: { bytes: 8_192, seconds: 0.4, worstCaseSeconds: 0.4, level: "ok", safeSource: "pg-us", sampledAt: new Date().toISOString() },
      members: [member("pg-eu", "eu-west", "primary", null), member("pg-us", "us-east", "replica", 0.4), member("pg-ap", "ap-south", "replica", 45)],
      operation: null,
      lastDecision: "no action: pg-eu is primary, exposure 0.4 s within budget 30 s",
      alerts: [],
      diverged: [],
    });
  }

  /** Calls that could change something, with dryRun false. */
  mutatingCalls(): FakeCall[] {
    return this.calls.filter((c) => MUTATIONS.has(c.method) && c.dryRun === false);
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  isLeader(): boolean {
    return this.leaderFlag;
  }
  leader(): { id: string; apiUrl: string | null } | null {
    return this.leaderInfo;
  }
  listFederations(): FederationView[] {
    this.calls.push({ method: "listFederations" });
    return [...this.feds.values()].map((f) => structuredClone(f));
  }
  getFederation(name: string): FederationView | undefined {
    const f = this.feds.get(name);
    return f ? structuredClone(f) : undefined;
  }

  /** The coordinator's own history ring, fed one point (the federation as it is now) per call. */
  getHistory(name: string): FederationHistoryView | undefined {
    const f = this.feds.get(name);
    if (!f) return undefined;
    let h = this.histories.get(name);
    if (!h) this.histories.set(name, (h = new FederationHistory(name, f.members.map((m) => m.name))));
    const atMs = Date.now();
    if (h.due(atMs)) {
      h.record({
        atMs,
        exposureSeconds: f.exposure?.seconds ?? null,
        worstCaseSeconds: f.exposure?.worstCaseSeconds ?? null,
        lagSeconds: new Map(f.members.map((m) => [m.name, m.lagSeconds])),
      });
    }
    return h.view();
  }

  private fed(name: string): FederationView {
    const f = this.feds.get(name);
    if (!f) throw new ServiceError("not_found", `unknown federation "${name}"`, "federation");
    return f;
  }

  private audit1(fed: FederationView, actor: string, action: string, reason: string, description: string, numbers: Record<string, unknown>, op: string | null, memberName: string | null = null): void {
    this.auditLog.push({ at: new Date().toISOString(), federation: fed.name, member: memberName, epoch: fed.epoch, actor, action, reason, description, numbers, operationId: op });
  }

  private plan(fed: FederationView, kind: PlanView["kind"], target: string | null, refusal: string | null, lossSeconds: number): PlanView {
    const t = target ? fed.members.find((m) => m.name === target) : undefined;
    const budget = fed.rpo.budgetSeconds;
    return {
      federation: fed.name,
      kind,
      target,
      allowed: refusal === null,
      refusal,
      steps:
        kind === "switchover"
          ? [
              { step: "demote", description: `demote ${fed.designatedPrimary ?? "?"} and wait for its demotion token` },
              { step: "promote", description: `promote ${target ?? "?"} with the demotion token` },
              { step: "follow", description: `${fed.designatedPrimary ?? "?"} follows ${target ?? "?"}` },
            ]
          : [{ step: kind, description: `${kind} ${target ?? fed.name}` }],
      preconditions: [
        { name: "target is a replica", ok: t?.role === "replica", detail: `${target ?? "-"} is ${t?.role ?? "unknown"}`, numbers: {} },
        {
          name: "target lag within budget",
          ok: (t?.lagSeconds ?? 0) <= budget,
          detail: `${target ?? "-"} lags ${t?.lagSeconds ?? 0} s, budget ${budget} s`,
          numbers: { lagSeconds: t?.lagSeconds ?? 0, budgetSeconds: budget },
        },
      ],
      expectedDataLoss: { bytes: Math.round(lossSeconds * 16_384), seconds: lossSeconds },
      expectedDurationSeconds: 6,
    };
  }

  private checkNoOperation(fed: FederationView): void {
    if (fed.operation && !FINISHED.has(fed.operation.state)) {
      throw new ServiceError("conflict", `federation "${fed.name}" has an operation in flight: ${fed.operation.kind} ${fed.operation.id} (${fed.operation.step})`);
    }
  }

  private startOperation(fed: FederationView, kind: OperationView["kind"], target: string | null, ctx: RequestContext, state: OperationView["state"], lastDecision: string, accepted: number | null): OperationView {
    const id = `op-${++this.seq}`;
    const op: OperationView = {
      id,
      federation: fed.name,
      kind,
      state,
      step: "start",
      target,
      from: fed.designatedPrimary,
      reason: ctx.reason,
      requestedBy: ctx.requestedBy,
      automatic: false,
      startedAt: new Date().toISOString(),
      finishedAt: null,
      epochBefore: fed.epoch,
      epochAfter: null,
      acceptedLossSeconds: accepted,
      durationSeconds: null,
      dataLossSeconds: null,
      lastDecision,
      steps: [{ at: new Date().toISOString(), step: "start", description: lastDecision }],
    };
    this.ops.set(id, op);
    fed.operation = op;
    if (ctx.idempotencyKey) this.byKey.set(ctx.idempotencyKey, id);
    this.audit1(fed, ctx.requestedBy, kind, ctx.reason, lastDecision, { target }, id);
    if (state === "running") this.advance(op);
    return structuredClone(op);
  }

  private emit(op: OperationView): void {
    const fed = this.feds.get(op.federation);
    if (fed) fed.operation = op;
    for (const l of this.listeners.get(op.id) ?? []) l(structuredClone(op));
  }

  private advance(op: OperationView): void {
    const script: [string, string][] =
      op.kind === "switchover"
        ? [
            ["demote", `demoting ${op.from ?? "?"}: patched spec.replica.primary = ${op.target ?? "?"}`],
            ["waitToken", `waiting for ${op.target ?? "?"} to replay to the demotion token: 0 B behind`],
            ["promote", `promoting ${op.target ?? "?"} with the demotion token`],
          ]
        : [["promote", `promoting ${op.target ?? "?"}: worst-case loss ${op.acceptedLossSeconds ?? 0} s accepted`]];
    let i = 0;
    const tick = () => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (this.opts.hang) return;
        const next = script[i++];
        if (next) {
          if (this.opts.abort && next[0] === "promote") {
            op.state = "aborted";
            op.step = "promote";
            op.lastDecision = `aborted: ${op.target ?? "?"} refused the demotion token (unrecoverable)`;
            op.finishedAt = new Date().toISOString();
            op.steps.push({ at: op.finishedAt, step: "aborted", description: op.lastDecision });
            this.emit(op);
            return;
          }
          op.step = next[0];
          op.lastDecision = next[1];
          op.steps.push({ at: new Date().toISOString(), step: next[0], description: next[1] });
          this.emit(op);
          tick();
          return;
        }
        const fed = this.feds.get(op.federation);
        if (!fed) return;
        fed.epoch += 1;
        fed.designatedPrimary = op.target;
        for (const m of fed.members) m.role = m.name === op.target ? "primary" : "replica";
        op.state = "completed";
        op.step = "done";
        op.epochAfter = fed.epoch;
        op.finishedAt = new Date().toISOString();
        op.durationSeconds = 1.2;
        op.dataLossSeconds = op.kind === "switchover" ? 0 : (op.acceptedLossSeconds ?? 0);
        op.lastDecision = `${op.kind} to ${op.target ?? "?"} completed at epoch ${fed.epoch}`;
        op.steps.push({ at: op.finishedAt, step: "done", description: op.lastDecision });
        this.audit1(fed, "coordinator", `${op.kind}.completed`, op.reason, op.lastDecision, { epoch: fed.epoch }, op.id);
        this.emit(op);
      }, this.opts.stepMs ?? 20);
      this.timers.add(t);
    };
    tick();
  }

  /** Evacuations through the coordinator's own orchestration (coordinator/evacuation.ts) over the fake's federations. */
  private readonly evacuations = new Evacuations({
    affected: (region) =>
      [...this.feds.values()]
        .filter((f) => f.members.find((m) => m.name === f.designatedPrimary)?.region === region)
        .map((f) => ({
          federation: f.name,
          from: f.designatedPrimary ?? "",
          candidates: f.members
            .filter((m) => m.region !== region)
            .map((m) => {
              const refusal = (m.lagSeconds ?? 0) > f.rpo.budgetSeconds ? `it lags ${m.lagSeconds} s, more than the budget ${f.rpo.budgetSeconds} s` : null;
              return { target: m.name, lagMs: m.lagSeconds === null ? null : m.lagSeconds * 1000, plan: this.plan(f, "switchover", m.name, refusal, 0) };
            }),
        })),
    start: async (federation, target, ctx) => {
      const r = await this.switchover(federation, { target }, ctx, { dryRun: false });
      if (r.kind !== "operation") throw new Error("no operation");
      return r.operation;
    },
    wait: async (id, timeoutMs) => {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const op = await this.waitOperation(id, { timeoutMs: Math.max(1, until - Date.now()) });
        if (!op || op.finishedAt !== null || Date.now() >= until) return op;
      }
    },
    now: () => Date.now(),
    newId: (region) => `evacuation-${region}-${this.ops.size}`,
  });

  async evacuate(region: string, args: { parallel: number; skipIneligible: boolean }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<EvacuationView> {
    this.calls.push({ method: "evacuate", federation: "", args: { region, ...args }, ctx, dryRun: opts.dryRun });
    if (!["eu-west", "us-east", "ap-south"].includes(region)) throw new ServiceError("not_found", `unknown region "${region}"`, "region");
    const plan = this.evacuations.plan(region, args.parallel);
    if (opts.dryRun) return plan;
    if (!args.skipIneligible && plan.counts.skipped > 0) throw new ServiceError("refused", `refusing to evacuate region ${region}: ${plan.counts.skipped} federation(s) have no eligible target`, "skipIneligible");
    return this.evacuations.start(plan, ctx);
  }

  getEvacuation(id: string): EvacuationView | undefined {
    return this.evacuations.get(id);
  }

  async switchover(federation: string, args: { target: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    this.calls.push({ method: "switchover", federation, args, ctx, dryRun: opts.dryRun });
    const fed = this.fed(federation);
    const repeat = ctx.idempotencyKey ? this.byKey.get(ctx.idempotencyKey) : undefined;
    if (repeat && !opts.dryRun) return { kind: "operation", operation: structuredClone(this.ops.get(repeat) as OperationView) };
    const t = fed.members.find((m) => m.name === args.target);
    if (!t) throw new ServiceError("not_found", `no member "${args.target}"`, "target");
    let refusal: string | null = null;
    if (t.role === "primary") refusal = `${t.name} is already the primary`;
    else if ((t.lagSeconds ?? 0) > fed.rpo.budgetSeconds) refusal = `not switching over ${fed.name} to ${t.name}: it lags ${t.lagSeconds} s, more than the budget ${fed.rpo.budgetSeconds} s`;
    if (opts.dryRun) return { kind: "plan", plan: this.plan(fed, "switchover", t.name, refusal, 0) };
    if (refusal) throw new ServiceError("refused", refusal, "target");
    this.checkNoOperation(fed);
    return { kind: "operation", operation: this.startOperation(fed, "switchover", t.name, ctx, "running", `switching over ${fed.name} from ${fed.designatedPrimary ?? "?"} to ${t.name}: lag ${t.lagSeconds} s within budget ${fed.rpo.budgetSeconds} s`, null) };
  }

  async failover(federation: string, args: { target?: string; acceptDataLossSeconds?: number }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    this.calls.push({ method: "failover", federation, args, ctx, dryRun: opts.dryRun });
    const fed = this.fed(federation);
    const target = args.target ?? "pg-us";
    const t = fed.members.find((m) => m.name === target);
    if (!t) throw new ServiceError("not_found", `no member "${target}"`, "target");
    const loss = t.lossIfPromotedSeconds ?? 0;
    const needsApproval = loss > fed.rpo.budgetSeconds && (args.acceptDataLossSeconds ?? -1) < loss;
    if (opts.dryRun) return { kind: "plan", plan: this.plan(fed, "failover", target, needsApproval ? `worst-case loss ${loss} s exceeds budget ${fed.rpo.budgetSeconds} s; needs approval` : null, loss) };
    this.checkNoOperation(fed);
    if (needsApproval) {
      return {
        kind: "operation",
        operation: this.startOperation(fed, "failover", target, ctx, "awaitingApproval", `not failing over ${fed.name} to ${target}: worst-case loss ${loss} s exceeds budget ${fed.rpo.budgetSeconds} s; waiting for approval`, null),
      };
    }
    return { kind: "operation", operation: this.startOperation(fed, "failover", target, ctx, "running", `failing over ${fed.name} to ${target}: loss ${loss} s`, args.acceptDataLossSeconds ?? null) };
  }

  async rejoin(federation: string, args: { member: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    this.calls.push({ method: "rejoin", federation, args, ctx, dryRun: opts.dryRun });
    const fed = this.fed(federation);
    const m = fed.members.find((x) => x.name === args.member);
    const refusal = m?.diverged ? null : `${args.member} has not diverged; nothing to rejoin`;
    if (opts.dryRun) return { kind: "plan", plan: this.plan(fed, "rejoin", args.member, refusal, 0) };
    if (refusal) throw new ServiceError("refused", refusal, "member");
    this.checkNoOperation(fed);
    return { kind: "operation", operation: this.startOperation(fed, "rejoin", args.member, ctx, "running", `rejoining ${args.member}`, null) };
  }

  async pause(federation: string, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }> {
    this.calls.push({ method: "pause", federation, ctx, dryRun: opts.dryRun });
    const fed = this.fed(federation);
    if (opts.dryRun) return { kind: "plan", plan: this.plan(fed, "pause", null, null, 0) };
    fed.paused = true;
    this.audit1(fed, ctx.requestedBy, "pause", ctx.reason, `automatic actions paused for ${fed.name}`, {}, null);
    return { kind: "done", federation: structuredClone(fed) };
  }

  async resolve(federation: string, args: { primary: string }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }> {
    this.calls.push({ method: "resolve", federation, args, ctx, dryRun: opts.dryRun });
    const fed = this.fed(federation);
    const awaitsOperator = fed.designatedPrimary === null || fed.operation?.state === "operatorRequired";
    const refusal = resolveRefusal(fed, args.primary, awaitsOperator, fed.diverged.includes(args.primary));
    if (opts.dryRun) return { kind: "plan", plan: this.plan(fed, "resolve", args.primary, refusal, 0) };
    if (refusal) throw new ServiceError("refused", refusal, "primary");
    if (fed.designatedPrimary !== args.primary) fed.epoch += 1;
    fed.designatedPrimary = args.primary;
    fed.operation = null;
    this.audit1(fed, ctx.requestedBy, "resolve", ctx.reason, `${args.primary} named primary of ${fed.name}`, {}, null);
    return { kind: "done", federation: structuredClone(fed) };
  }

  async resume(federation: string, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult | { kind: "done"; federation: FederationView }> {
    this.calls.push({ method: "resume", federation, ctx, dryRun: opts.dryRun });
    const fed = this.fed(federation);
    if (opts.dryRun) return { kind: "plan", plan: this.plan(fed, "resume", null, null, 0) };
    fed.paused = false;
    this.audit1(fed, ctx.requestedBy, "resume", ctx.reason, `automatic actions resumed for ${fed.name}`, {}, null);
    return { kind: "done", federation: structuredClone(fed) };
  }

  async approve(operationId: string, args: { acceptDataLossSeconds?: number }, ctx: RequestContext, opts: { dryRun: boolean }): Promise<ActionResult> {
    this.calls.push({ method: "approve", args: { operationId, ...args }, ctx, dryRun: opts.dryRun });
    const op = this.ops.get(operationId);
    if (!op) throw new ServiceError("not_found", `unknown operation "${operationId}"`, "id");
    const fed = this.fed(op.federation);
    const loss = fed.members.find((m) => m.name === op.target)?.lossIfPromotedSeconds ?? 0;
    if (op.state !== "awaitingApproval") throw new ServiceError("conflict", `operation ${op.id} is ${op.state}, not awaiting approval`);
    const short = (args.acceptDataLossSeconds ?? -1) < loss;
    if (opts.dryRun) return { kind: "plan", plan: this.plan(fed, "failover", op.target, short ? `accepting ${args.acceptDataLossSeconds ?? 0} s is less than the worst-case loss ${loss} s` : null, loss) };
    if (short) throw new ServiceError("refused", `accepting ${args.acceptDataLossSeconds ?? 0} s is less than the worst-case loss ${loss} s`, "acceptDataLoss");
    op.state = "running";
    op.acceptedLossSeconds = args.acceptDataLossSeconds ?? null;
    op.lastDecision = `approved by ${ctx.requestedBy}: accepting ${args.acceptDataLossSeconds ?? 0} s of loss`;
    op.steps.push({ at: new Date().toISOString(), step: "approved", description: op.lastDecision });
    this.audit1(fed, ctx.requestedBy, "approve", ctx.reason, op.lastDecision, { acceptedLossSeconds: args.acceptDataLossSeconds ?? 0 }, op.id);
    this.emit(op);
    this.advance(op);
    return { kind: "operation", operation: structuredClone(op) };
  }

  getOperation(id: string): OperationView | undefined {
    const op = this.ops.get(id);
    return op ? structuredClone(op) : undefined;
  }

  waitOperation(id: string, opts: { timeoutMs: number; afterSteps?: number }): Promise<OperationView | undefined> {
    const op = this.ops.get(id);
    if (!op) return Promise.resolve(undefined);
    if (FINISHED.has(op.state) || (opts.afterSteps !== undefined && op.steps.length > opts.afterSteps)) return Promise.resolve(structuredClone(op));
    return new Promise((resolve) => {
      const done = (v: OperationView) => {
        clearTimeout(t);
        unsub();
        resolve(v);
      };
      const t = setTimeout(() => done(structuredClone(op)), opts.timeoutMs);
      const unsub = this.watchOperation(id, done);
    });
  }

  watchOperation(id: string, onChange: (op: OperationView) => void): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(onChange);
    return () => set.delete(onChange);
  }

  listenerCount(id: string): number {
    return this.listeners.get(id)?.size ?? 0;
  }

  async audit(federation: string, opts: { sinceMs?: number; limit?: number }): Promise<AuditEntry[]> {
    this.calls.push({ method: "audit", federation, args: opts });
    this.fed(federation);
    const since = opts.sinceMs ?? 0;
    const all = this.auditLog.filter((e) => e.federation === federation && Date.parse(e.at) >= since);
    return opts.limit !== undefined ? all.slice(-opts.limit) : all;
  }
}
