/**
 * One reconcile step of the CNPG stand-in: what it returns (written into status after the pass,
 * status.ts) and how a failing step's error reads ("while demoting ns/name: reading pg_controldata: …").
 */
import { PgfedError, errorMessage } from "../../errors.js";

export interface StepOutcome {
  phase?: string;
  phaseReason?: string;
  /** Status fields this step sets (merged over the computed ones). */
  status?: Record<string, unknown>;
  ready?: boolean;
  /** The step changed something: run the next pass at once instead of after the poll interval. */
  requeue?: boolean;
  /** Leave phase and phaseReason as they are: CNPG returns from this pass before registering a phase. */
  keepPhase?: boolean;
}

/** Runs `fn`, its error prefixed with what was being done (the code of a PgfedError kept). */
export async function withStep<T>(doing: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw new PgfedError(e instanceof PgfedError ? e.code : "lab.step_failed", `${doing}: ${errorMessage(e)}`, {}, { cause: e });
  }
}
