/**
 * The federation's sentences: what an operation is doing now (API status, CLI progress line),
 * why it stopped, and what an abort does next. Every one says who and what with the numbers.
 */
import type { EventObject } from "xstate";
import { errorMessage } from "../src/errors.js";
import type { FederationContext, Operation, OperationStep, VerifySwitchoverOutput } from "./federation-types.js";

// What an aborted operation does next (the `then` of abortOperation, part of its lastDecision).
export const NOTHING_CHANGED = "nothing was changed";
export const REDESIGNATING_OLD_PRIMARY = "re-designating the old primary";
export const TARGET_MAY_BE_PRIMARY = "not undoing: the target may already be primary; operator required";
export const TARGET_WAS_PROMOTED = "not undoing: the target was promoted; operator required";
export const PRIMARY_STAYS = "the primary stays designated";
export const PRIMARY_STAYS_MAYBE_FENCED = "the primary stays designated (it may have been fenced)";
export const OLD_PRIMARY_FENCED = "nothing promoted; the old primary stays designated but is fenced";
export const MEMBER_STAYS_DIVERGED = "the member stays diverged";
export const OLD_PRIMARY_DEMOTED_NO_TOKEN =
  "not undoing: the old primary is already a clean replica and nothing was promoted, so no member accepts writes; operator required (docs/operations.md, \"Demotion without a token\")";

/** "requested by alice: kernel upgrade", or "requested by alice" when no reason was given. */
export const requestedByWhy = (who: string, reason: string): string => `requested by ${who}${reason ? `: ${reason}` : ""}`;

/** What made an operation stop, from the event that stopped it. */
export function abortCause(event: EventObject): string {
  if (event.type.startsWith("xstate.after.")) return "timed out";
  if (event.type.startsWith("xstate.error.actor.") && "error" in event) return `error: ${errorMessage(event.error)}`;
  if (event.type.startsWith("xstate.done.actor.verifySwitchover") && "output" in event) {
    const output = event.output as VerifySwitchoverOutput;
    return `verification failed: ${output.reason ?? "no reason given"}`;
  }
  if (event.type === "ABORT" && "by" in event && "reason" in event) return `aborted by ${String(event.by)}${String(event.reason) ? `: ${String(event.reason)}` : ""}`;
  return event.type;
}

/** "switchover sw-1 of orders to pg-us", "rejoin rj-1 of pg-eu to orders". */
export function operationLabel(context: FederationContext, op: Operation): string {
  const to = op.target ? ` to ${op.target}` : "";
  return op.kind === "rejoin" ? `rejoin ${op.id} of ${op.target ?? "?"} to ${context.federation}` : `${op.kind} ${op.id} of ${context.federation}${to}`;
}

/** One line for the API status and the CLI progress line. */
export function federationStepSentence(snapshot: { context: FederationContext }): string {
  const c = snapshot.context;
  const op = c.operation;
  if (!op) {
    const primary = c.designatedPrimary ? `${c.designatedPrimary} is the designated primary` : "no designated primary";
    return `${c.federation}: ${primary} at epoch ${c.epoch}${c.paused ? " (automation paused)" : ""}; ${c.lastDecision}`;
  }
  const from = op.from ?? "?";
  const target = op.target ?? "?";
  const steps: Record<OperationStep, string> = {
    preflight: `checking that ${target} can take over from ${from} within the RPO budget`,
    demote: `demoting ${from} (patching it to follow ${target})`,
    awaitToken: `waiting for ${from}'s demotion token`,
    promote: `promoting ${target} with ${from}'s demotion token at epoch ${c.epoch}`,
    verify: `verifying that ${target} is primary and ${from} follows it`,
    undo: `aborting: re-designating ${from} as primary`,
    suspect: `primary ${from} suspected down; grace period before confirming`,
    confirm: `confirming that ${from} is down (fenced, or its lease expired)`,
    unconfirmed: `could not confirm that ${from} is down yet; trying again`,
    awaitApproval: c.lastDecision,
    promoteWithoutToken: `promoting ${target} without a token at epoch ${c.epoch}`,
    rejoinApproval: `rejoin of ${target} waits for approval`,
    rejoin: `re-cloning ${target} from ${c.designatedPrimary ?? "?"}`,
    operatorRequired: `operator required: ${c.lastDecision}`,
  };
  return `${operationLabel(c, op)}: ${steps[op.step]}`;
}
