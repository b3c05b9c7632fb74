/**
 * One CNPG Cluster as pgfed sees it.
 *
 * Level-triggered: every OBSERVED event carries a full, already parsed observation, and the
 * observation alone decides which state the member is in (`classifyObservation`). What this file
 * adds is one readable row per (from, to) pair, so that the log line of every role change says
 * what happened in words. Read the states top to bottom: each lists every way out of it, and the
 * root-level rows at the bottom are the generic fallbacks shared by all states.
 *
 * Two exceptions to level-triggering: `unreachable` (no observation arrives at all) and
 * `diverged` (sticky: only REJOINED leaves it, because a diverged former primary looks perfectly
 * healthy to CNPG while its data has forked from the new primary's timeline).
 */
import { assign, setup } from "xstate";

/** CNPG phase of a replica cluster that waits for its promotion token to be reached (CNPG.md). */
export const PROMOTING_PHASE = "Promoting to primary cluster";

export type MemberRole = "primary" | "replica";

/** A CNPG Cluster, parsed at the edge (src/cnpg) into the few facts the machine needs. */
export interface MemberObservation {
  /** The role the Cluster's spec gives it: `spec.replica.primary == self` → "primary". */
  role: MemberRole;
  /** `status.phase`, verbatim. */
  phase: string;
  /** `cnpg.io/fencedInstances` fences every instance. */
  fenced: boolean;
  /** `status.switchReplicaClusterStatus.inProgress`. */
  switchInProgress: boolean;
  demotionToken?: string;
  lastPromotionToken?: string;
  /** Phase is "Cluster is unrecoverable and needs manual intervention". */
  unrecoverable: boolean;
  /** `status.phaseReason` or a parser note. */
  reason?: string;
  atMs: number;
}

export interface MemberInput {
  federation: string;
  member: string;
  region: string;
}

export interface MemberContext extends MemberInput {
  observation: MemberObservation | null;
  /** The demotion token this member wrote when it was demoted cleanly (state `demoted`). */
  demotionToken: string | null;
  lastPromotionToken: string | null;
  /** Why the member is in its current state, when that is not obvious from the observation. */
  reason: string | null;
  /** Last unexpected CNPG object, kept even while diverged (safety rule 6). */
  lastInvalid: string | null;
  unreachableSinceMs: number | null;
}

export type MemberEvent =
  | { type: "OBSERVED"; observation: MemberObservation }
  | { type: "UNREACHABLE"; reason: string; atMs: number }
  | { type: "INVALID"; reason: string }
  | { type: "MARK_DIVERGED"; reason: string }
  | { type: "REJOINED" };

/** The states an observation alone can put a member in. */
export type ObservedState = "unknown" | "primary" | "replica" | "demoting" | "demoted" | "promoting" | "fenced";

export type MemberStateName = ObservedState | "unreachable" | "diverged";

/** What a fresh observation says the member is. Pure; the order of the checks matters. */
export function classifyObservation(o: MemberObservation): ObservedState {
  if (o.unrecoverable) return "unknown";
  if (o.fenced) return "fenced";
  if (o.role === "primary") {
    return o.switchInProgress || o.phase === PROMOTING_PHASE ? "promoting" : "primary";
  }
  if (o.switchInProgress) return "demoting";
  return o.demotionToken ? "demoted" : "replica";
}

function isStale(context: MemberContext, atMs: number): boolean {
  return context.observation !== null && atMs < context.observation.atMs;
}

/** Guard reference: "the observation is fresh and says the member is `state`". */
const observed = (state: ObservedState) => ({ type: "observedAs", params: { state } }) as const;

/** Row: a fresh observation says the member is still `state`; record it. */
const stays = (state: ObservedState, description: string) =>
  ({ guard: observed(state), actions: "recordObservation", description }) as const;

/** Row: a fresh observation says the member is now `state`; record it and go there. */
const becomes = (state: ObservedState, description: string) =>
  ({ guard: observed(state), target: state, actions: "recordObservation", description }) as const;

/** Root-level row: the same, from whatever state the member is in. */
const becomesFromAnyState = (state: ObservedState, description: string) =>
  ({ guard: observed(state), target: `.${state}`, actions: "recordObservation", description }) as const;

export const memberMachine = setup({
  types: {
    context: {} as MemberContext,
    events: {} as MemberEvent,
    input: {} as MemberInput,
  },
  guards: {
    observedAs: ({ context, event }, params: { state: ObservedState }) =>
      event.type === "OBSERVED" &&
      !isStale(context, event.observation.atMs) &&
      classifyObservation(event.observation) === params.state,
    isStale: ({ context, event }) =>
      (event.type === "OBSERVED" && isStale(context, event.observation.atMs)) ||
      (event.type === "UNREACHABLE" && isStale(context, event.atMs)),
    isFresh: ({ context, event }) =>
      (event.type === "OBSERVED" && !isStale(context, event.observation.atMs)) ||
      (event.type === "UNREACHABLE" && !isStale(context, event.atMs)),
  },
  actions: {
    recordObservation: assign(({ context, event }) => {
      if (event.type !== "OBSERVED") return {};
      const o = event.observation;
      return {
        observation: o,
        demotionToken: o.demotionToken ?? null,
        lastPromotionToken: o.lastPromotionToken ?? context.lastPromotionToken,
        reason: o.unrecoverable ? (o.reason ?? "CNPG reports the cluster unrecoverable") : null,
        unreachableSinceMs: null,
      };
    }),
    recordObservationWhileDiverged: assign(({ context, event }) => {
      if (event.type !== "OBSERVED") return {};
      const o = event.observation;
      return {
        observation: o,
        lastPromotionToken: o.lastPromotionToken ?? context.lastPromotionToken,
        unreachableSinceMs: null,
      };
    }),
    recordUnreachable: assign(({ context, event }) => {
      if (event.type !== "UNREACHABLE") return {};
      return { reason: event.reason, unreachableSinceMs: context.unreachableSinceMs ?? event.atMs };
    }),
    recordUnreachableWhileDiverged: assign(({ context, event }) => {
      if (event.type !== "UNREACHABLE") return {};
      return { unreachableSinceMs: context.unreachableSinceMs ?? event.atMs };
    }),
    recordInvalid: assign(({ event }) => {
      if (event.type !== "INVALID") return {};
      return { reason: event.reason, lastInvalid: event.reason };
    }),
    recordInvalidWhileDiverged: assign(({ event }) => {
      if (event.type !== "INVALID") return {};
      return { lastInvalid: event.reason };
    }),
    recordDiverged: assign(({ event }) => {
      if (event.type !== "MARK_DIVERGED") return {};
      return { reason: event.reason };
    }),
    forgetAfterRejoin: assign({
      observation: null,
      demotionToken: null,
      lastPromotionToken: null,
      reason: null,
      lastInvalid: null,
      unreachableSinceMs: null,
    }),
  },
}).createMachine({
  id: "member",
  description: "One CNPG Cluster taking part in a federation, as pgfed observes it.",
  context: ({ input }) => ({
    federation: input.federation,
    member: input.member,
    region: input.region,
    observation: null,
    demotionToken: null,
    lastPromotionToken: null,
    reason: null,
    lastInvalid: null,
    unreachableSinceMs: null,
  }),
  initial: "unknown",
  states: {
    unknown: {
      description: "No valid observation yet, or CNPG reports the cluster unrecoverable, or the last CNPG object was unexpected.",
      on: {
        OBSERVED: [
          stays("unknown", "CNPG still reports the cluster unrecoverable; member stays unknown"),
          // Every other observation is handled by the root-level rows ("member observed as …").
        ],
      },
    },

    primary: {
      description: "The Cluster's spec names itself as primary and CNPG runs it as the primary cluster.",
      on: {
        OBSERVED: [
          stays("primary", "primary observed healthy; nothing changed"),
          becomes("demoting", "primary began demoting: its spec names another primary and CNPG is shutting it down cleanly"),
          becomes("demoted", "primary demoted cleanly; demotion token available"),
          becomes("replica", "primary became a replica cluster without writing a demotion token (unplanned demotion)"),
          becomes("fenced", "primary fenced: its Postgres no longer accepts writes"),
        ],
      },
    },

    demoting: {
      description: "A former primary that CNPG is turning into a replica cluster (clean shutdown, then token).",
      on: {
        OBSERVED: [
          stays("demoting", "demotion still in progress"),
          becomes("demoted", "primary demoted cleanly; demotion token available"),
          becomes("replica", "demotion finished without a demotion token; member is a replica cluster"),
          becomes("primary", "demotion undone: the spec names this member primary again"),
        ],
      },
    },

    demoted: {
      description: "A replica cluster that was demoted cleanly and holds the demotion token its successor needs.",
      on: {
        OBSERVED: [
          stays("demoted", "demoted member still holds its demotion token"),
          becomes("replica", "demotion token cleared; member is an ordinary replica cluster"),
          becomes("primary", "demoted member is primary again (the switchover was undone)"),
          becomes("promoting", "demoted member is being promoted back to primary"),
        ],
      },
    },

    replica: {
      description: "A replica cluster following the designated primary through the archive and/or streaming.",
      on: {
        OBSERVED: [
          stays("replica", "replica cluster observed healthy; nothing changed"),
          becomes("promoting", "replica cluster began promoting to primary cluster"),
          becomes("primary", "replica cluster promoted: member is now primary"),
        ],
      },
    },

    promoting: {
      description: "The spec names this member primary; CNPG is promoting it (waiting for the token's position, or promoting now).",
      on: {
        OBSERVED: [
          stays("promoting", "promotion still in progress"),
          becomes("primary", "promotion completed: member is now primary"),
          becomes("replica", "promotion abandoned: member is a replica cluster again"),
        ],
      },
    },

    fenced: {
      description: "Every instance is fenced (cnpg.io/fencedInstances); Postgres is stopped and accepts no writes.",
      on: {
        OBSERVED: [
          stays("fenced", "member still fenced"),
          becomes("primary", "fence lifted: member is primary and accepts writes again"),
          becomes("replica", "fence lifted: member is a replica cluster"),
        ],
      },
    },

    unreachable: {
      description: "pgfed cannot read the Cluster (region, API server or agent unreachable).",
      on: {
        UNREACHABLE: {
          guard: "isFresh",
          actions: "recordUnreachable",
          description: "member still unreachable",
        },
        OBSERVED: [
          becomes("primary", "member reachable again and still primary"),
          becomes("replica", "member reachable again as a replica cluster"),
        ],
      },
    },

    diverged: {
      description:
        "A former primary whose data forked from the new primary's timeline; it must be re-cloned (rejoined) before it serves again.",
      on: {
        OBSERVED: {
          guard: "isFresh",
          actions: "recordObservationWhileDiverged",
          description: "diverged member stays diverged until it is rejoined; observation recorded",
        },
        UNREACHABLE: {
          guard: "isFresh",
          actions: "recordUnreachableWhileDiverged",
          description: "diverged member is unreachable; it stays diverged",
        },
        INVALID: {
          actions: "recordInvalidWhileDiverged",
          description: "unexpected CNPG object for a diverged member; it stays diverged",
        },
        MARK_DIVERGED: {
          actions: "recordDiverged",
          description: "member marked diverged again; reason updated",
        },
        REJOINED: {
          target: "unknown",
          actions: "forgetAfterRejoin",
          description: "diverged member rejoined as a fresh replica cluster; waiting for its first observation",
        },
      },
    },
  },

  // Fallback rows shared by every state (a state's own rows are tried first).
  on: {
    OBSERVED: [
      { guard: "isStale", description: "stale observation ignored (older than the last one)" },
      becomesFromAnyState("unknown", "CNPG reports the cluster unrecoverable and needing manual intervention; member state unknown"),
      becomesFromAnyState("fenced", "member observed fenced: its Postgres accepts no writes"),
      becomesFromAnyState("promoting", "member observed promoting to primary cluster"),
      becomesFromAnyState("primary", "member observed as the primary cluster"),
      becomesFromAnyState("demoting", "member observed demoting: CNPG is switching it to a replica cluster"),
      becomesFromAnyState("demoted", "member observed demoted, holding a demotion token"),
      becomesFromAnyState("replica", "member observed as a replica cluster"),
    ],
    UNREACHABLE: [
      { guard: "isStale", description: "stale unreachability report ignored (older than the last observation)" },
      {
        target: ".unreachable",
        actions: "recordUnreachable",
        description: "member unreachable: pgfed cannot read its Cluster; its role is no longer known",
      },
    ],
    INVALID: {
      target: ".unknown",
      actions: "recordInvalid",
      description: "unexpected CNPG object: member state unknown until a valid observation arrives",
    },
    MARK_DIVERGED: {
      target: ".diverged",
      actions: "recordDiverged",
      description: "member marked diverged: it may hold writes the new primary never saw; it must be re-cloned to rejoin",
    },
  },
});

export type MemberMachine = typeof memberMachine;
