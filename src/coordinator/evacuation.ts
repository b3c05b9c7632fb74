/**
 * Evacuating a region: a planned switchover of every federation whose designated primary is in
 * it, each to its best eligible replica elsewhere (the switchover's own plan says which are
 * allowed; the least lag wins), at most `parallel` at a time. Each move is an ordinary
 * switchover operation (persisted, resumable, audited); the evacuation itself is the leader's
 * bookkeeping of which it started. A coordinator that stops mid-way leaves the started switchovers
 * to finish and the rest not started: evacuating the region again skips what has moved.
 */
import type { EvacuationMoveView, EvacuationView, OperationView, PlanView, RequestContext } from "../api/contract.js";
import { isFinishedState } from "../api/operation-states.js";

export const DEFAULT_EVACUATION_PARALLEL = 4;
export const MAX_EVACUATION_PARALLEL = 64;
/** How long one move may take before the evacuation stops waiting for it (the operation goes on). */
const MOVE_WAIT_MS = 10 * 60_000;
/** Finished evacuations kept for GET /v1/evacuations/{id}. */
const KEEP_FINISHED = 20;

export interface EvacuationCandidate {
  target: string;
  lagMs: number | null;
  plan: PlanView;
}

export interface EvacuationDeps {
  /** Federations whose designated primary is in `region`, with their primary and the plan of a switchover to each member elsewhere. */
  affected(region: string): { federation: string; from: string; candidates: EvacuationCandidate[] }[];
  start(federation: string, target: string, ctx: RequestContext): Promise<OperationView>;
  /** The operation once finished, or the latest view when `timeoutMs` passes. */
  wait(operationId: string, timeoutMs: number): Promise<OperationView | undefined>;
  now(): number;
  newId(region: string): string;
  onChange?: ((view: EvacuationView) => void) | undefined;
}

/** The move for one federation: its best allowed target, or why there is none. */
export function chooseMove(f: { federation: string; from: string; candidates: EvacuationCandidate[] }): EvacuationMoveView {
  const allowed = f.candidates.filter((c) => c.plan.allowed).sort((a, b) => (a.lagMs ?? Number.POSITIVE_INFINITY) - (b.lagMs ?? Number.POSITIVE_INFINITY) || a.target.localeCompare(b.target));
  const best = allowed[0];
  if (!best) {
    const why = f.candidates.length === 0 ? "no member outside the region" : f.candidates.map((c) => `${c.target}: ${c.plan.refusal ?? "refused"}`).join("; ");
    return { federation: f.federation, from: f.from, target: null, state: "skipped", operationId: null, detail: `no eligible target (${why})`, lagSeconds: null, expectedDataLossSeconds: null, durationSeconds: null };
  }
  return {
    federation: f.federation,
    from: f.from,
    target: best.target,
    state: "planned",
    operationId: null,
    detail: `switch over to ${best.target}, lag ${best.lagMs === null ? "unknown" : `${best.lagMs} ms`}${allowed.length > 1 ? ` (least of ${allowed.length} eligible)` : ""}`,
    lagSeconds: best.lagMs === null ? null : best.lagMs / 1000,
    expectedDataLossSeconds: best.plan.expectedDataLoss.seconds,
    durationSeconds: null,
  };
}

function counts(moves: readonly EvacuationMoveView[]): EvacuationView["counts"] {
  const c = { planned: 0, skipped: 0, queued: 0, running: 0, completed: 0, failed: 0 };
  for (const m of moves) c[m.state]++;
  return c;
}

export class Evacuations {
  private readonly all = new Map<string, EvacuationView>();

  constructor(private readonly deps: EvacuationDeps) {}

  get(id: string): EvacuationView | undefined {
    const v = this.all.get(id);
    return v ? structuredClone(v) : undefined;
  }

  /** Any evacuation of `region` still running. */
  running(region: string): EvacuationView | undefined {
    return [...this.all.values()].find((v) => v.region === region && v.state === "running");
  }

  /** The plan: every affected federation's move (or why it is skipped). Changes nothing. */
  plan(region: string, parallel: number): EvacuationView {
    const moves = this.deps.affected(region).map(chooseMove);
    const at = new Date(this.deps.now()).toISOString();
    return { id: "", region, dryRun: true, state: "planned", parallel, reason: "", requestedBy: "", startedAt: at, finishedAt: null, moves, counts: counts(moves) };
  }

  /** Starts the moves of `plan` in the background, `parallel` at a time; skipped ones stay skipped. */
  start(plan: EvacuationView, ctx: RequestContext): EvacuationView {
    const id = this.deps.newId(plan.region);
    const view: EvacuationView = {
      ...structuredClone(plan),
      id,
      dryRun: false,
      state: "running",
      reason: ctx.reason,
      requestedBy: ctx.requestedBy,
      startedAt: new Date(this.deps.now()).toISOString(),
      moves: plan.moves.map((m) => (m.state === "planned" ? { ...m, state: "queued" } : { ...m })),
    };
    view.counts = counts(view.moves);
    this.all.set(id, view);
    this.forgetOld();
    void this.run(view, ctx);
    return structuredClone(view);
  }

  private changed(view: EvacuationView): void {
    view.counts = counts(view.moves);
    this.deps.onChange?.(structuredClone(view));
  }

  private async run(view: EvacuationView, ctx: RequestContext): Promise<void> {
    const queue = view.moves.filter((m) => m.state === "queued");
    const worker = async () => {
      for (let m = queue.shift(); m; m = queue.shift()) await this.move(view, m, ctx);
    };
    await Promise.all(Array.from({ length: Math.min(view.parallel, queue.length) }, worker));
    view.state = view.moves.some((m) => m.state === "failed") ? "failed" : "completed";
    view.finishedAt = new Date(this.deps.now()).toISOString();
    this.changed(view);
  }

  private async move(view: EvacuationView, m: EvacuationMoveView, ctx: RequestContext): Promise<void> {
    const t0 = this.deps.now();
    m.state = "running";
    this.changed(view);
    try {
      const op = await this.deps.start(m.federation, m.target ?? "", { requestedBy: ctx.requestedBy, reason: `evacuation ${view.id} of region ${view.region}${ctx.reason ? `: ${ctx.reason}` : ""}` });
      m.operationId = op.id;
      this.changed(view);
      const done = isFinishedState(op.state) ? op : await this.deps.wait(op.id, MOVE_WAIT_MS);
      m.durationSeconds = (this.deps.now() - t0) / 1000;
      if (done?.state === "completed") {
        m.state = "completed";
        m.detail = `moved to ${m.target ?? "?"} in ${m.durationSeconds.toFixed(2)} s: ${done.lastDecision}`;
      } else {
        m.state = "failed";
        m.detail = done ? `switchover ${done.id} ended ${done.state}: ${done.lastDecision}` : `switchover ${op.id} did not finish within ${MOVE_WAIT_MS / 60_000} min; it goes on`;
      }
    } catch (e) {
      m.state = "failed";
      m.durationSeconds = (this.deps.now() - t0) / 1000;
      m.detail = `switchover refused: ${e instanceof Error ? e.message : String(e)}`;
    }
    this.changed(view);
  }

  private forgetOld(): void {
    const finished = [...this.all.values()].filter((v) => v.state !== "running");
    for (const v of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) this.all.delete(v.id);
  }
}
