/**
 * One clock per step: how long the federation machine waits in each state before it gives up
 * (its named delays), and how much of that the step's actor may use (`budgetMs` of its input).
 */
import type { FederationContext } from "./federation-types.js";

export interface StepTimeouts {
  stepMs: number;
  tokenMs: number;
  promoteMs: number;
  suspectGraceMs: number;
  confirmRetryMs: number;
  rejoinMs: number;
}

/** What runs unless config says otherwise (config.ts takes its switchover defaults from here). */
export const defaultTimeouts: Readonly<StepTimeouts> = {
  /** Any step without a more specific timeout: one agent command and CNPG's reaction to it. */
  stepMs: 60_000,
  /** The old primary's demotion token: CNPG writes it after a clean shutdown checkpoint is archived. */
  tokenMs: 120_000,
  /** The promote command: CNPG itself never gives up (CNPG.md), so pgfed stops for an operator after this. */
  promoteMs: 300_000,
  /** Grace before confirming a suspected primary down; the coordinator caps it at the lease TTL. */
  suspectGraceMs: 1_000,
  /** Pause before trying again to confirm a suspected primary down. */
  confirmRetryMs: 1_000,
  /** A rejoin re-clones the whole database (pg_basebackup): hours for a large one. */
  rejoinMs: 6 * 60 * 60_000,
};

/** Time an actor leaves before its state's timer fires, so that its own explicit error arrives first. */
export const REPLY_MARGIN_MS = 5_000;

/** `overrides` over defaultTimeouts; an override left undefined keeps the default. */
export function withDefaultTimeouts(overrides: Partial<StepTimeouts> | undefined): StepTimeouts {
  const set = Object.entries(overrides ?? {}).filter(([, ms]) => typeof ms === "number");
  return { ...defaultTimeouts, ...Object.fromEntries(set) };
}

/** The timeouts of a context; a snapshot persisted by an older pgfed has none (typed or not), so the defaults fill in. */
export function timeoutsOf(context: FederationContext): StepTimeouts {
  return withDefaultTimeouts(context.timeouts);
}

/** The machine's named delays (the `after` keys of its states) and the timeout each one reads. */
const DELAY_TIMEOUTS = {
  stepTimeout: "stepMs",
  tokenTimeout: "tokenMs",
  promoteTimeout: "promoteMs",
  suspectGrace: "suspectGraceMs",
  confirmRetry: "confirmRetryMs",
  rejoinTimeout: "rejoinMs",
} as const satisfies Record<string, keyof StepTimeouts>;

export type FederationDelay = keyof typeof DELAY_TIMEOUTS;

/** How long the `delay` timer of a state waits. */
export function delayMs(context: FederationContext, delay: FederationDelay): number {
  return timeoutsOf(context)[DELAY_TIMEOUTS[delay]];
}

/**
 * The time an actor has in a state bounded by the `delay` timer: less the reply margin, or half the
 * timeout when it is shorter than two margins (a short configured timeout still leaves the actor time).
 */
export function actorBudgetMs(context: FederationContext, delay: FederationDelay): number {
  const timeout = delayMs(context, delay);
  return timeout - Math.min(REPLY_MARGIN_MS, timeout / 2);
}
