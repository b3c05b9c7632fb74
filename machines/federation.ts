/**
 * The federation: which member is the designated primary, at which epoch, and the one operation
 * (switchover, failover, rejoin) that may be in flight. This file is the table, states and rows top
 * to bottom; the named guards, actions, delays and placeholder actors are in federation-setup.ts,
 * the safety decisions in federation-decisions.ts, the sentences in federation-words.ts.
 *
 * Pure: every effect is an invoked actor named in `setup({ actors })` whose placeholder rejects;
 * the coordinator supplies the real ones with `.provide({ actors })`. Each actor is an idempotent
 * "ensure" step, because restoring a persisted snapshot taken inside an invoking state starts that
 * actor again (STACK.md). Each state's timer and its actor's `budgetMs` come from the same
 * `context.timeouts` (federation-timeouts.ts).
 *
 * Design decisions:
 * - Pause blocks automation only. While paused, PRIMARY_SUSPECT starts nothing (an alert is
 *   raised) and an automatic failover already past its confirm step stops at the approval gate.
 *   Operator requests (SWITCHOVER, FAILOVER, REJOIN, APPROVE, ABORT, RESOLVE) are still served:
 *   pausing is what an operator does before driving things by hand.
 * - Abort before the promote command: re-designate the old primary (actor `undoDemotion`); if that
 *   fails there is NO designated primary (epoch bumped so that older commands are refused) and an
 *   operator must RESOLVE. Abort after the promote command: never undo (the target may already be
 *   primary); the target stays designated and an operator must RESOLVE.
 * - The epoch changes exactly when `designatedPrimary` changes, "no primary" (null) included.
 * - A former primary left behind by a failover is fenced in a parallel region, so that fencing it
 *   never waits for another operation to finish.
 */
import { and } from "xstate";
import { federationSetup } from "./federation-setup.js";
import { actorBudgetMs, withDefaultTimeouts, type FederationDelay } from "./federation-timeouts.js";
import type {
  AwaitDemotionTokenInput,
  ConfirmPrimaryDownInput,
  DemotePrimaryInput,
  FederationContext,
  FenceAndDemoteFormerInput,
  Operation,
  OperationOutcome,
  OperationStep,
  PreflightInput,
  PromoteWithTokenInput,
  PromoteWithoutTokenInput,
  RejoinMemberInput,
  StepInput,
  UndoDemotionInput,
  VerifySwitchoverInput,
} from "./federation-types.js";
import {
  MEMBER_STAYS_DIVERGED,
  NOTHING_CHANGED,
  OLD_PRIMARY_DEMOTED_NO_TOKEN,
  OLD_PRIMARY_FENCED,
  PRIMARY_STAYS,
  PRIMARY_STAYS_MAYBE_FENCED,
  REDESIGNATING_OLD_PRIMARY,
  TARGET_MAY_BE_PRIMARY,
  TARGET_WAS_PROMOTED,
} from "./federation-words.js";

function requireOperation(context: FederationContext): Operation {
  if (!context.operation) throw new Error(`federation ${context.federation}: a step ran with no operation in flight (bug)`);
  return context.operation;
}

function requireString(value: string | null, what: string, context: FederationContext): string {
  if (value === null) throw new Error(`federation ${context.federation}: ${what} is missing (bug)`);
  return value;
}

/** Every step's input: who, at which epoch, for which operation, and the time its actor has within the state's `timer`. */
function stepInput(context: FederationContext, timer: FederationDelay): StepInput {
  return { federation: context.federation, epoch: context.epoch, operationId: requireOperation(context).id, budgetMs: actorBudgetMs(context, timer) };
}

const STEADY = "#federation.operation.steady";
const OPERATOR_REQUIRED = "#federation.operation.operatorRequired";

const setStep = (step: OperationStep) => ({ type: "setStep", params: { step } }) as const;
const finishAs = (outcome: OperationOutcome) => ({ type: "finishOperation", params: { outcome } }) as const;
const abortOperation = (then: string) => ({ type: "abortOperation", params: { then } }) as const;

// Ways out of an operation step, shared by its error, timeout and ABORT rows. Each row keeps its
// own description: the coordinator logs and audits it verbatim.

/** Stop before anything irreversible: alert, record the operation as aborted, back to steady. */
function abortToSteady(then: string, description: string) {
  return { target: STEADY, actions: [abortOperation(then), finishAs("aborted")], description };
}

/** Stop a switchover before its promote: alert, then re-designate the old primary. */
function abortToUndo(description: string) {
  return { target: "undoing", actions: abortOperation(REDESIGNATING_OLD_PRIMARY), description };
}

/** Stop after the promote was issued: alert and never undo; an operator must RESOLVE. */
function abortToOperator(then: string, description: string) {
  return { target: OPERATOR_REQUIRED, actions: [abortOperation(then), setStep("operatorRequired")], description };
}

/** Re-designating the old primary failed: nobody is designated; an operator must RESOLVE. */
function dropToOperator(description: string) {
  return { target: OPERATOR_REQUIRED, actions: ["dropDesignation" as const, setStep("operatorRequired")], description };
}

/** The failed primary is not confirmed down (yet): wait in `unconfirmed`, then try again. */
function notConfirmed(description: string) {
  return { target: "unconfirmed", actions: "recordUnconfirmed" as const, description };
}

/** The primary came back before it was confirmed down: the failover is cancelled. */
function cancelOnRecovery(description: string) {
  return { target: STEADY, actions: ["recordCancel" as const, finishAs("cancelled")], description };
}

/** An operator's ABORT of the operation in flight, leaving the way `row` does. */
function onAbort<Row extends object>(row: Row) {
  return { guard: "abortMatches" as const, ...row };
}

export const federationMachine = federationSetup.createMachine({
  id: "federation",
  description: "One federation of CNPG clusters: its designated primary, its epoch and the operation in flight.",
  context: ({ input }) => ({
    federation: input.federation,
    epoch: input.epoch ?? 1,
    designatedPrimary: input.designatedPrimary,
    members: [...input.members],
    rpo: { ...input.rpo },
    failoverMode: input.failoverMode,
    paused: input.paused ?? false,
    operation: null,
    lastOperation: null,
    lastDecision: `${input.federation} started with ${input.designatedPrimary ?? "no"} designated primary`,
    alerts: [],
    diverged: [],
    pendingFence: [],
    fencing: null,
    demotionToken: null,
    lossEstimates: [],
    timeouts: withDefaultTimeouts(input.timeouts),
  }),
  type: "parallel",
  states: {
    operation: {
      description: "At most one operation at a time: switchover, failover or rejoin.",
      initial: "starting",
      states: {
        starting: {
          description: "Decides where a fresh federation begins.",
          always: [
            { guard: "hasDesignatedPrimary", target: "steady", description: "federation starts with a designated primary" },
            {
              target: "operatorRequired",
              actions: "alertNoPrimaryAtStart",
              description: "federation starts without a designated primary; an operator must name one",
            },
          ],
        },

        steady: {
          description: "A designated primary, nothing in flight.",
          on: {
            SWITCHOVER: [
              {
                guard: "switchoverAllowed",
                target: "switchover",
                actions: "startSwitchover",
                description: "switchover accepted: checking the target's lag before demoting the primary",
              },
              { actions: "refuseRequest", description: "switchover refused; the reason is in lastDecision" },
            ],
            FAILOVER: [
              {
                guard: "failoverRequestAllowed",
                target: "failover.confirming",
                actions: "startRequestedFailover",
                description: "operator-requested failover accepted: confirming that the primary is down before promoting",
              },
              { actions: "refuseRequest", description: "failover refused; the reason is in lastDecision" },
            ],
            REJOIN: [
              {
                guard: and(["rejoinAllowed", "rejoinPreapproved"]),
                target: "rejoin.rejoining",
                actions: "startRejoin",
                description: "pre-approved rejoin accepted: re-cloning the diverged member from the primary",
              },
              {
                guard: "rejoinAllowed",
                target: "rejoin.awaitingApproval",
                actions: "startRejoin",
                description: "rejoin accepted; it discards the member's diverged data, so it waits for approval",
              },
              { actions: "refuseRequest", description: "rejoin refused; the reason is in lastDecision" },
            ],
            PRIMARY_SUSPECT: [
              {
                guard: "automationPaused",
                actions: "recordFailoverBlocked",
                description: "primary suspected down but automation is paused: no failover starts; alert raised",
              },
              {
                target: "failover.suspect",
                actions: "startAutomaticFailover",
                description: "primary suspected down: automatic failover begins with a grace period",
              },
            ],
          },
        },

        switchover: {
          description: "Planned switchover with zero data loss: demote, hand over the demotion token, promote.",
          initial: "preflight",
          states: {
            preflight: {
              description: "Read-only checks: is the target healthy and within the RPO budget?",
              entry: setStep("preflight"),
              invoke: {
                id: "preflight",
                src: "preflight",
                input: ({ context }): PreflightInput => ({
                  ...stepInput(context, "stepTimeout"),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                }),
                onDone: [
                  {
                    guard: { type: "preflightPassed", params: ({ event }) => event.output },
                    target: "demote",
                    actions: { type: "recordPreflight", params: ({ event }) => event.output },
                    description: "preflight passed: the target lags less than the budget; demoting the primary",
                  },
                  {
                    target: STEADY,
                    actions: [{ type: "recordPreflight", params: ({ event }) => event.output }, finishAs("refused")],
                    description: "switchover refused at preflight: the target lags more than the budget or is not ready; nothing was changed",
                  },
                ],
                onError: abortToSteady(NOTHING_CHANGED, "switchover aborted: preflight failed before anything was changed; alert raised"),
              },
              after: {
                stepTimeout: abortToSteady(NOTHING_CHANGED, "switchover aborted: preflight timed out before anything was changed; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToSteady(NOTHING_CHANGED, "switchover aborted by an operator during preflight; nothing was changed; alert raised")),
              },
            },

            demote: {
              description: "Ensure the old primary is patched to follow the target (CNPG then demotes it cleanly).",
              entry: setStep("demote"),
              invoke: {
                id: "demotePrimary",
                src: "demotePrimary",
                input: ({ context }): DemotePrimaryInput => ({
                  ...stepInput(context, "stepTimeout"),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                }),
                onDone: {
                  target: "awaitToken",
                  description: "old primary patched to follow the target; waiting for its demotion token",
                },
                onError: abortToUndo("switchover aborted: demoting the old primary failed; re-designating it; alert raised"),
              },
              after: {
                stepTimeout: abortToUndo("switchover aborted: demoting the old primary timed out; re-designating it; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToUndo("switchover aborted by an operator while demoting; re-designating the old primary; alert raised")),
              },
            },

            awaitToken: {
              description: "Wait for CNPG to write the old primary's demotion token (clean shutdown checkpoint archived).",
              entry: setStep("awaitToken"),
              invoke: {
                id: "awaitDemotionToken",
                src: "awaitDemotionToken",
                input: ({ context }): AwaitDemotionTokenInput => ({
                  ...stepInput(context, "tokenTimeout"),
                  member: requireString(requireOperation(context).from, "switchover source", context),
                }),
                onDone: {
                  target: "promote",
                  actions: { type: "storeToken", params: ({ event }) => event.output },
                  description: "primary demoted cleanly; demotion token available; promoting the target with it",
                },
                onError: [
                  {
                    guard: "demotionTokenLost",
                    ...abortToOperator(OLD_PRIMARY_DEMOTED_NO_TOKEN, "switchover stopped: CNPG completed the demotion but wrote no demotion token (CNPG issue #11074); nothing promoted; operator required; alert raised"),
                  },
                  abortToUndo("switchover aborted: reading the demotion token failed; re-designating the old primary; alert raised"),
                ],
              },
              after: {
                tokenTimeout: abortToUndo("switchover aborted: the demotion token never came; re-designating the old primary; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToUndo("switchover aborted by an operator while waiting for the token; re-designating the old primary; alert raised")),
              },
            },

            undoing: {
              description: "Ensure the old primary is primary again (spec.replica.primary = itself). No promote was issued.",
              entry: setStep("undo"),
              invoke: {
                id: "undoDemotion",
                src: "undoDemotion",
                input: ({ context }): UndoDemotionInput => ({
                  ...stepInput(context, "stepTimeout"),
                  member: requireString(requireOperation(context).from, "switchover source", context),
                }),
                onDone: {
                  target: STEADY,
                  actions: ["recordUndone", finishAs("aborted")],
                  description: "aborted switchover undone: the old primary is primary again; the epoch is unchanged",
                },
                onError: dropToOperator("re-designating the old primary failed: no designated primary is left; operator required; alert raised"),
              },
              after: {
                stepTimeout: dropToOperator("re-designating the old primary timed out: no designated primary is left; operator required; alert raised"),
              },
            },

            promote: {
              description: "The promote command is issued: the target is the designated primary at epoch+1 from this moment.",
              entry: [setStep("promote"), "designateTarget"],
              invoke: {
                id: "promoteWithToken",
                src: "promoteWithToken",
                input: ({ context }): PromoteWithTokenInput => ({
                  ...stepInput(context, "promoteTimeout"),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  token: requireString(context.demotionToken, "demotion token", context),
                }),
                onDone: {
                  target: "verify",
                  description: "target promoted with the demotion token; verifying the new topology",
                },
                onError: abortToOperator(TARGET_MAY_BE_PRIMARY, "switchover stopped after the promote was issued: promotion failed; not undoing; operator required; alert raised"),
              },
              after: {
                promoteTimeout: abortToOperator(TARGET_MAY_BE_PRIMARY, "switchover stopped after the promote was issued: promotion timed out; not undoing; operator required; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToOperator(TARGET_MAY_BE_PRIMARY, "switchover aborted by an operator after the promote was issued; not undoing; operator required; alert raised")),
              },
            },

            verify: {
              description: "Check that the target runs as the unfenced primary and the old primary follows it; clear the token from the target's spec; point every replica at it.",
              entry: setStep("verify"),
              invoke: {
                id: "verifySwitchover",
                src: "verifySwitchover",
                input: ({ context }): VerifySwitchoverInput => ({
                  ...stepInput(context, "stepTimeout"),
                  target: requireString(requireOperation(context).target, "switchover target", context),
                  from: requireString(requireOperation(context).from, "switchover source", context),
                  token: requireString(context.demotionToken, "demotion token", context),
                }),
                onDone: [
                  {
                    guard: { type: "switchoverVerified", params: ({ event }) => event.output },
                    target: STEADY,
                    actions: ["recordCompletion", finishAs("completed")],
                    description: "switchover completed: the target is primary and the old primary follows it",
                  },
                  abortToOperator(TARGET_WAS_PROMOTED, "switchover verification failed after the promote; not undoing; operator required; alert raised"),
                ],
                onError: abortToOperator(TARGET_WAS_PROMOTED, "switchover verification errored after the promote; not undoing; operator required; alert raised"),
              },
              after: {
                stepTimeout: abortToOperator(TARGET_WAS_PROMOTED, "switchover verification timed out after the promote; not undoing; operator required; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToOperator(TARGET_WAS_PROMOTED, "switchover aborted by an operator during verification; not undoing; operator required; alert raised")),
              },
            },
          },
        },

        failover: {
          description: "Unplanned failover: confirm the primary is down, pass the RPO gate, promote without a token.",
          initial: "suspect",
          states: {
            suspect: {
              description: "The primary looks down; give it a grace period to come back.",
              entry: setStep("suspect"),
              after: {
                suspectGrace: { target: "confirming", description: "primary still down after the grace period; confirming it is down" },
              },
              on: {
                PRIMARY_RECOVERED: cancelOnRecovery("primary recovered during the grace period; failover cancelled"),
                ABORT: onAbort(abortToSteady(PRIMARY_STAYS, "failover aborted by an operator before anything was done; alert raised")),
              },
            },

            confirming: {
              description: "Ensure the old primary is fenced, or learn that its primary lease expired plus the clock-skew margin.",
              entry: setStep("confirm"),
              invoke: {
                id: "confirmPrimaryDown",
                src: "confirmPrimaryDown",
                input: ({ context }): ConfirmPrimaryDownInput => ({
                  ...stepInput(context, "stepTimeout"),
                  member: requireString(requireOperation(context).from, "failed primary", context),
                }),
                onDone: [
                  {
                    guard: { type: "primaryConfirmedDown", params: ({ event }) => event.output },
                    target: "gate",
                    actions: { type: "recordConfirmation", params: ({ event }) => event.output },
                    description: "old primary confirmed down (fenced, or its lease expired); applying the RPO gate",
                  },
                  notConfirmed("old primary neither fenced nor past its lease: not confirmed down; trying again later"),
                ],
                onError: notConfirmed("confirming the old primary is down failed; trying again later"),
              },
              after: {
                stepTimeout: notConfirmed("confirming the old primary is down timed out; trying again later"),
              },
              on: {
                PRIMARY_RECOVERED: cancelOnRecovery("primary recovered before it was confirmed down; failover cancelled"),
                ABORT: onAbort(abortToSteady(PRIMARY_STAYS_MAYBE_FENCED, "failover aborted by an operator while confirming; nothing promoted; alert raised")),
              },
            },

            unconfirmed: {
              description: "The primary could not be confirmed down; wait, then try again.",
              entry: setStep("unconfirmed"),
              after: {
                confirmRetry: { target: "confirming", description: "trying again to confirm the old primary is down" },
              },
              on: {
                PRIMARY_RECOVERED: cancelOnRecovery("primary recovered before it was confirmed down; failover cancelled"),
                ABORT: onAbort(abortToSteady(PRIMARY_STAYS_MAYBE_FENCED, "failover aborted by an operator while the primary was unconfirmed; nothing promoted; alert raised")),
              },
            },

            gate: {
              description: "The RPO gate (failoverVerdict): promote now, or wait for approval.",
              always: [
                {
                  guard: "failoverMayPromote",
                  target: "promoting",
                  actions: "recordVerdict",
                  description: "RPO gate passed: worst-case loss within the budget, or accepted by an operator; promoting",
                },
                {
                  target: "awaitingApproval",
                  actions: ["recordVerdict", "alertAwaitingApproval"],
                  description: "RPO gate closed: loss beyond the budget, manual mode, paused or no estimate; waiting for approval; alert raised",
                },
              ],
            },

            awaitingApproval: {
              description: "Promotion waits for an operator to accept the worst-case loss (or for the loss to fall within the budget).",
              entry: setStep("awaitApproval"),
              exit: "clearAwaitingApproval",
              on: {
                APPROVE: [
                  {
                    guard: "approvalCoversLoss",
                    target: "gate",
                    actions: "recordApproval",
                    description: "operator accepted a loss that covers the worst case; the accepted figure goes in the audit",
                  },
                  {
                    actions: "refuseRequest",
                    description: "approval refused: it does not name this operation or does not cover the worst-case loss",
                  },
                ],
                LOSS_ESTIMATES: {
                  target: "gate",
                  actions: "recordEstimates",
                  description: "loss estimates updated while waiting for approval; applying the RPO gate again",
                },
                RESUME: {
                  target: "gate",
                  actions: "resume",
                  description: "automation resumed while waiting for approval; applying the RPO gate again",
                },
                CONFIGURE: {
                  target: "gate",
                  actions: "configure",
                  description: "configuration changed while waiting for approval; applying the RPO gate again",
                },
                ABORT: onAbort(abortToSteady(OLD_PRIMARY_FENCED, "failover aborted by an operator instead of approving; nothing promoted; alert raised")),
              },
            },

            promoting: {
              description: "The promote command is issued: the target is the designated primary at epoch+1 from this moment.",
              entry: [setStep("promoteWithoutToken"), "designateTarget", "markFormerPendingFence"],
              invoke: {
                id: "promoteWithoutToken",
                src: "promoteWithoutToken",
                input: ({ context }): PromoteWithoutTokenInput => {
                  const op = requireOperation(context);
                  return {
                    ...stepInput(context, "promoteTimeout"),
                    target: requireString(op.target, "failover target", context),
                    former: op.from,
                    worstCaseLossMs: op.worstCaseLossMs ?? 0,
                    acceptedLossMs: op.acceptedLossMs ?? null,
                  };
                },
                onDone: {
                  target: STEADY,
                  actions: ["recordCompletion", finishAs("completed")],
                  description: "failover completed: the target is primary; the former primary will be fenced and marked diverged when seen",
                },
                onError: abortToOperator(TARGET_MAY_BE_PRIMARY, "failover stopped after the promote was issued: promotion failed; not undoing; operator required; alert raised"),
              },
              after: {
                promoteTimeout: abortToOperator(TARGET_MAY_BE_PRIMARY, "failover stopped after the promote was issued: promotion timed out; not undoing; operator required; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToOperator(TARGET_MAY_BE_PRIMARY, "failover aborted by an operator after the promote was issued; not undoing; operator required; alert raised")),
              },
            },
          },
        },

        rejoin: {
          description: "Re-clone a diverged former primary as a replica of the designated primary.",
          initial: "awaitingApproval",
          states: {
            awaitingApproval: {
              description: "Rejoining discards the member's diverged data: an operator must approve.",
              on: {
                APPROVE: [
                  {
                    guard: "approvalMatches",
                    target: "rejoining",
                    actions: "recordRejoinApproval",
                    description: "rejoin approved; re-cloning the diverged member",
                  },
                  { actions: "refuseRequest", description: "approval ignored: it names another operation" },
                ],
                ABORT: onAbort(abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin aborted by an operator before approval; the member stays diverged; alert raised")),
                PRIMARY_SUSPECT: [
                  {
                    guard: "automationPaused",
                    actions: "recordFailoverBlocked",
                    description: "primary suspected down but automation is paused: no failover starts; alert raised",
                  },
                  {
                    target: "#federation.operation.failover.suspect",
                    actions: ["dropRejoinForFailover", "startAutomaticFailover"],
                    description: "primary suspected down while a rejoin waited for approval: the rejoin is dropped and automatic failover begins",
                  },
                ],
              },
            },
            rejoining: {
              description: "Ensure the diverged member is re-cloned as a replica of the designated primary.",
              entry: setStep("rejoin"),
              invoke: {
                id: "rejoinMember",
                src: "rejoinMember",
                input: ({ context }): RejoinMemberInput => ({
                  ...stepInput(context, "rejoinTimeout"),
                  member: requireString(requireOperation(context).target, "member to rejoin", context),
                  primary: context.designatedPrimary,
                }),
                onDone: {
                  target: STEADY,
                  actions: ["removeFromDiverged", "recordCompletion", finishAs("completed")],
                  description: "rejoin completed: the member is a replica of the primary and no longer diverged",
                },
                onError: abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin failed; the member stays diverged; alert raised"),
              },
              after: {
                rejoinTimeout: abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin timed out; the member stays diverged; alert raised"),
              },
              on: {
                ABORT: onAbort(abortToSteady(MEMBER_STAYS_DIVERGED, "rejoin aborted by an operator; the member stays diverged; alert raised")),
              },
            },
          },
        },

        operatorRequired: {
          description: "pgfed stopped: an operation failed where retrying or undoing could be unsafe. An operator fixes things and sends RESOLVE.",
          on: {
            RESOLVE: [
              {
                guard: "resolveNamesEligibleMember",
                target: "steady",
                actions: ["resolveDesignation", finishAs("resolved")],
                description: "operator resolved the federation and named its primary; automation continues",
              },
              { actions: "refuseRequest", description: "resolve refused: it does not name an eligible member" },
            ],
          },
        },
      },
    },

    formerPrimaries: {
      description: "Former primaries of unplanned failovers are fenced and marked diverged as soon as they are seen again.",
      initial: "idle",
      states: {
        idle: {
          description: "No former primary is being fenced.",
          on: {
            FORMER_PRIMARY_SEEN: [
              {
                guard: "isPendingFence",
                target: "fencing",
                actions: "startFencing",
                description: "former primary seen again: fencing it and pointing it at the new primary",
              },
              { description: "member seen is not a former primary waiting to be fenced; nothing to do" },
            ],
          },
        },
        fencing: {
          description: "Ensure the former primary is fenced and follows the new primary; then it is diverged.",
          invoke: {
            id: "fenceAndDemoteFormer",
            src: "fenceAndDemoteFormer",
            input: ({ context }): FenceAndDemoteFormerInput => ({
              federation: context.federation,
              epoch: context.epoch,
              member: requireString(context.fencing, "former primary", context),
              newPrimary: context.designatedPrimary,
              budgetMs: actorBudgetMs(context, "stepTimeout"),
            }),
            onDone: {
              target: "idle",
              actions: "markFencedDiverged",
              description: "former primary fenced and demoted; marked diverged until it is rejoined",
            },
            onError: {
              target: "idle",
              actions: "alertFenceFailed",
              description: "fencing the former primary failed; it may still accept writes; alert raised; retried when seen again",
            },
          },
          after: {
            stepTimeout: {
              target: "idle",
              actions: "alertFenceFailed",
              description: "fencing the former primary timed out; it may still accept writes; alert raised; retried when seen again",
            },
          },
          on: {
            FORMER_PRIMARY_SEEN: { description: "a former primary is already being fenced; this sighting waits for the next one" },
          },
        },
      },
    },
  },

  // Fallback rows shared by every state (a state's own rows are tried first).
  on: {
    PAUSE: { actions: "pause", description: "automation paused: no automatic failover will start; operator requests still run" },
    OUTSIDE_CHANGE: {
      actions: "pauseForOutsideChange",
      description: "another writer changed a member's spec.replica.primary: automation paused; alert raised; operator requests still run",
    },
    RESUME: { actions: "resume", description: "automation resumed" },
    CONFIGURE: { actions: "configure", description: "RPO budget and failover mode updated" },
    LOSS_ESTIMATES: { actions: "recordEstimates", description: "worst-case loss estimates updated" },
    CLEAR_ALERT: { actions: "clearAlert", description: "alert cleared by an operator" },
    SWITCHOVER: { actions: "refuseRequest", description: "switchover refused: another operation is in flight" },
    FAILOVER: { actions: "refuseRequest", description: "failover refused: another operation is in flight" },
    REJOIN: { actions: "refuseRequest", description: "rejoin refused: another operation is in flight" },
    APPROVE: { actions: "refuseRequest", description: "approval ignored: nothing awaits approval" },
    ABORT: { actions: "refuseRequest", description: "abort ignored: no matching operation can be aborted at this step" },
    RESOLVE: { actions: "refuseRequest", description: "resolve refused: nothing requires an operator" },
    PRIMARY_SUSPECT: {
      actions: "recordSuspectDuringOperation",
      description: "primary suspected down while another operation is in flight; no new failover starts",
    },
    PRIMARY_RECOVERED: { description: "primary reported recovered; no failover to cancel" },
  },
});

export type FederationMachine = typeof federationMachine;
