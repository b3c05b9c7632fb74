/**
 * The operation records of one federation: created by a request (or by the machine, for an
 * automatic failover), updated from every machine snapshot, finished with their outcome, watched
 * by the API's streams, stored with the federation record (bounded, record.ts).
 */
import type { FederationContext } from "../../../machines/index.js";
import { errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { CoordinatorMetrics } from "../metrics.js";
import { MAX_KEPT_OPERATIONS, type OperationRecord } from "../record.js";
import type { OperationView } from "../../api/contract.js";

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

export interface NewOperation {
  id: string;
  kind: OperationRecord["kind"];
  target: string | null;
  from: string | null;
  reason: string;
  requestedBy: string;
  automatic: boolean;
  epoch: number;
  startedAtMs: number;
  idempotencyKey?: string | undefined;
}

export class OperationBook {
  private readonly records = new Map<string, OperationRecord>();
  private readonly watchers = new Map<string, Set<(op: OperationView) => void>>();

  constructor(private readonly p: { federation: string; log: Logger; metrics: CoordinatorMetrics }) {}

  newRecord(o: NewOperation): OperationRecord {
    return {
      id: o.id,
      federation: this.p.federation,
      kind: o.kind,
      state: "running",
      step: "starting",
      target: o.target,
      from: o.from,
      reason: o.reason,
      requestedBy: o.requestedBy,
      automatic: o.automatic,
      startedAt: isoOf(o.startedAtMs),
      finishedAt: null,
      epochBefore: o.epoch,
      epochAfter: null,
      acceptedLossSeconds: null,
      durationSeconds: null,
      dataLossSeconds: null,
      lastDecision: "",
      steps: [],
      ...(o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey } : {}),
    };
  }

  /** Registers an operation before its event is sent (requests from the service), or restores a stored one. */
  register(r: OperationRecord): void {
    this.records.set(r.id, r);
  }

  forget(id: string): void {
    this.records.delete(id);
  }

  get(id: string): OperationRecord | undefined {
    return this.records.get(id);
  }

  byKey(key: string): OperationRecord | undefined {
    return [...this.records.values()].find((o) => o.idempotencyKey === key);
  }

  /** Completed operations of a kind with their durations (expected-duration estimates). */
  recent(kind: OperationRecord["kind"]): OperationRecord[] {
    return [...this.records.values()].filter((o) => o.kind === kind && o.state === "completed" && o.durationSeconds !== null);
  }

  /** Copies of the newest records, as stored with the federation record. */
  kept(): OperationRecord[] {
    return [...this.records.values()].slice(-MAX_KEPT_OPERATIONS).map((o) => structuredClone(o));
  }

  /**
   * Brings the records up to date with a machine snapshot: the operation in flight (created here
   * for an automatic failover) and the one that just finished (its outcome, duration, metrics).
   * Returns the record the snapshot is about, if any.
   */
  follow(ctx: FederationContext, nowMs: number): OperationRecord | undefined {
    const fed = this.p.federation;
    const op = ctx.operation;
    let record: OperationRecord | undefined;
    if (op) {
      record = this.records.get(op.id);
      if (!record) {
        record = this.newRecord({ id: op.id, kind: op.kind, target: op.target, from: op.from, reason: op.reason, requestedBy: op.requestedBy, automatic: op.automatic, epoch: ctx.epoch, startedAtMs: op.startedAtMs });
        this.records.set(op.id, record);
      }
      record.step = op.step;
      record.target = op.target;
      record.state = op.step === "operatorRequired" ? "operatorRequired" : op.step === "awaitApproval" || op.step === "rejoinApproval" ? "awaitingApproval" : "running";
      record.lastDecision = ctx.lastDecision;
      record.acceptedLossSeconds = op.acceptedLossMs !== undefined ? op.acceptedLossMs / 1000 : record.acceptedLossSeconds;
      if (op.worstCaseLossMs !== undefined) record.dataLossSeconds = op.worstCaseLossMs / 1000;
      if (op.promoteIssued) record.epochAfter = ctx.epoch;
    }
    const last = ctx.lastOperation;
    if (last) {
      const r = this.records.get(last.id);
      if (r && r.finishedAt === null && (!op || op.id !== last.id)) {
        r.state = last.outcome;
        r.finishedAt = isoOf(nowMs);
        r.durationSeconds = (nowMs - Date.parse(r.startedAt)) / 1000;
        r.lastDecision = ctx.lastDecision;
        r.step = "finished";
        if (r.state === "completed" && r.kind !== "rejoin") r.epochAfter = ctx.epoch;
        if (r.kind === "switchover" && r.state === "completed") r.dataLossSeconds = 0;
        this.p.metrics.operations.inc({ federation: fed, kind: r.kind, result: r.state });
        this.p.metrics.operationDuration.observe({ federation: fed, kind: r.kind }, r.durationSeconds);
        if (r.state === "aborted") this.p.metrics.operationsFailed.inc({ federation: fed, kind: r.kind });
        this.p.log.info({ op: r.id, epoch: ctx.epoch }, `${r.kind} ${r.id} of ${fed} ${r.state} in ${r.durationSeconds.toFixed(1)} s: ${ctx.lastDecision}`);
        record ??= r;
        this.notify(r);
      }
    }
    if (op?.step === "operatorRequired" && record && !record.steps.some((s) => s.step === "operatorRequired")) {
      this.p.metrics.operationsFailed.inc({ federation: fed, kind: op.kind });
    }
    return record;
  }

  watch(id: string, fn: (op: OperationView) => void): () => void {
    let set = this.watchers.get(id);
    if (!set) {
      set = new Set();
      this.watchers.set(id, set);
    }
    set.add(fn);
    return () => set.delete(fn);
  }

  notify(r: OperationRecord): void {
    const view = toOperationView(r);
    for (const fn of this.watchers.get(r.id) ?? []) {
      try {
        fn(view);
      } catch (e) {
        this.p.log.warn({ err: errorMessage(e) }, `an operation watcher of ${r.id} threw: ${errorMessage(e)}`);
      }
    }
  }
}

export function toOperationView(r: OperationRecord): OperationView {
  return {
    id: r.id,
    federation: r.federation,
    kind: r.kind,
    state: r.state,
    step: r.step,
    target: r.target,
    from: r.from,
    reason: r.reason,
    requestedBy: r.requestedBy,
    automatic: r.automatic,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    epochBefore: r.epochBefore,
    epochAfter: r.epochAfter,
    acceptedLossSeconds: r.acceptedLossSeconds,
    durationSeconds: r.durationSeconds,
    dataLossSeconds: r.dataLossSeconds,
    lastDecision: r.lastDecision,
    steps: r.steps.map((s) => ({ ...s })),
  };
}
