/**
 * What the parts of one federation runtime share (runtime.ts builds it): configuration, clock,
 * what was heard, the agent protocol, the audit trail, the record, the operations, the RPO
 * figures, the machine. Step functions and passes take it instead of the whole runtime.
 */
import type { FederationContext, FederationEvent } from "../../../machines/index.js";
import type { LeaseStore } from "../../bus/index.js";
import type { FederationConfig } from "../../config.js";
import type { Logger } from "../../log.js";
import type { PrimaryCorroborator } from "../corroboration.js";
import type { Fencing } from "../fencing.js";
import type { CoordinatorMetrics } from "../metrics.js";
import type { FederationSignals } from "../signals.js";
import type { AgentCommands } from "./agent-rpc.js";
import type { AuditTrail } from "./audit.js";
import type { FederationEvaluation } from "./evaluation.js";
import type { OperationBook } from "./operations.js";
import type { RecordWriter } from "./persistence.js";

export interface RuntimeParts {
  readonly name: string;
  readonly cfg: FederationConfig;
  readonly log: Logger;
  readonly now: () => number;
  readonly metrics: CoordinatorMetrics;
  readonly leases: LeaseStore;
  readonly signals: FederationSignals;
  readonly agents: AgentCommands;
  readonly audit: AuditTrail;
  readonly writer: RecordWriter;
  readonly operations: OperationBook;
  readonly evaluation: FederationEvaluation;
  readonly fencing: Fencing;
  readonly corroborator: PrimaryCorroborator;
  /** Aborted when the runtime stops. */
  readonly stopSignal: AbortSignal;
  /** The federation machine's context, undefined before start. */
  context(): FederationContext | undefined;
  send(event: FederationEvent): void;
  stopped(): boolean;
  /** Stores the record now, even if the machine did not change (a step noted something in an operation record). */
  persistNow(): void;
}

/** A step's deadline, from the budget its input carries (the machine's timer for the step, less a margin). */
export function deadlineOf(now: () => number, budgetMs: number): { left: () => number; passed: () => boolean } {
  const at = now() + budgetMs;
  return { left: () => Math.max(0, at - now()), passed: () => now() >= at };
}
