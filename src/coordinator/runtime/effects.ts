/**
 * The federation machine with the coordinator's effects. `.provide()` copies the whole machine
 * (~70 KB), so it is built once per process, not once per federation: an effect actor finds the
 * runtime it works for through the actor system of the federation actor that invoked it, bound
 * when that actor is created (`createFederationActor`). Delays need no runtime: the machine reads
 * them from its context (`timeouts`).
 */
import { createActor, fromPromise, type Actor, type InspectionEvent, type Snapshot } from "xstate";
import {
  federationMachine,
  withDefaultTimeouts,
  type AwaitDemotionTokenInput,
  type AwaitDemotionTokenOutput,
  type ConfirmPrimaryDownInput,
  type ConfirmPrimaryDownOutput,
  type DemotePrimaryInput,
  type FederationInput,
  type FenceAndDemoteFormerInput,
  type PreflightInput,
  type PreflightOutput,
  type PromoteWithoutTokenInput,
  type PromoteWithTokenInput,
  type RejoinMemberInput,
  type UndoDemotionInput,
  type VerifySwitchoverInput,
  type VerifySwitchoverOutput,
} from "../../../machines/index.js";
import { PgfedError } from "../../errors.js";

export type FederationActor = Actor<typeof federationMachine>;
type ActorSystem = FederationActor["system"];

/** What one federation runtime does for each effect the machine names. */
export interface FederationEffects {
  preflight(input: PreflightInput, signal: AbortSignal): Promise<PreflightOutput>;
  demotePrimary(input: DemotePrimaryInput, signal: AbortSignal): Promise<void>;
  awaitDemotionToken(input: AwaitDemotionTokenInput, signal: AbortSignal): Promise<AwaitDemotionTokenOutput>;
  promoteWithToken(input: PromoteWithTokenInput, signal: AbortSignal): Promise<void>;
  verifySwitchover(input: VerifySwitchoverInput, signal: AbortSignal): Promise<VerifySwitchoverOutput>;
  undoDemotion(input: UndoDemotionInput, signal: AbortSignal): Promise<void>;
  confirmPrimaryDown(input: ConfirmPrimaryDownInput, signal: AbortSignal): Promise<ConfirmPrimaryDownOutput>;
  promoteWithoutToken(input: PromoteWithoutTokenInput, signal: AbortSignal): Promise<void>;
  fenceAndDemoteFormer(input: FenceAndDemoteFormerInput, signal: AbortSignal): Promise<void>;
  rejoinMember(input: RejoinMemberInput, signal: AbortSignal): Promise<void>;
}

/** Each federation actor's system (shared with the effect actors it invokes) to the effects of its runtime. */
const bound = new WeakMap<ActorSystem, FederationEffects>();

function effectsOf(system: ActorSystem): FederationEffects {
  const e = bound.get(system);
  if (!e) throw new PgfedError("coordinator.no_runtime", "an effect of the federation machine ran outside any federation runtime of this coordinator");
  return e;
}

function provideEffects() {
  return federationMachine.provide({
    actors: {
      preflight: fromPromise<PreflightOutput, PreflightInput>(({ input, signal, system }) => effectsOf(system).preflight(input, signal)),
      demotePrimary: fromPromise<void, DemotePrimaryInput>(({ input, signal, system }) => effectsOf(system).demotePrimary(input, signal)),
      awaitDemotionToken: fromPromise<AwaitDemotionTokenOutput, AwaitDemotionTokenInput>(({ input, signal, system }) => effectsOf(system).awaitDemotionToken(input, signal)),
      promoteWithToken: fromPromise<void, PromoteWithTokenInput>(({ input, signal, system }) => effectsOf(system).promoteWithToken(input, signal)),
      verifySwitchover: fromPromise<VerifySwitchoverOutput, VerifySwitchoverInput>(({ input, signal, system }) => effectsOf(system).verifySwitchover(input, signal)),
      undoDemotion: fromPromise<void, UndoDemotionInput>(({ input, signal, system }) => effectsOf(system).undoDemotion(input, signal)),
      confirmPrimaryDown: fromPromise<ConfirmPrimaryDownOutput, ConfirmPrimaryDownInput>(({ input, signal, system }) => effectsOf(system).confirmPrimaryDown(input, signal)),
      promoteWithoutToken: fromPromise<void, PromoteWithoutTokenInput>(({ input, signal, system }) => effectsOf(system).promoteWithoutToken(input, signal)),
      fenceAndDemoteFormer: fromPromise<void, FenceAndDemoteFormerInput>(({ input, signal, system }) => effectsOf(system).fenceAndDemoteFormer(input, signal)),
      rejoinMember: fromPromise<void, RejoinMemberInput>(({ input, signal, system }) => effectsOf(system).rejoinMember(input, signal)),
    },
  });
}

let provided: ReturnType<typeof provideEffects> | undefined;

/**
 * Creates a federation actor (fresh from `input`, or restored from `snapshot`) whose effects run
 * on `effects`. The actor is not started: its effect actors are invoked only from `start()`, after
 * the binding is in place.
 */
export function createFederationActor(
  effects: FederationEffects,
  options: { input: FederationInput; snapshot?: Snapshot<unknown> | undefined; inspect: (ev: InspectionEvent) => void },
): FederationActor {
  provided ??= provideEffects();
  const actor = createActor(provided, { input: options.input, inspect: options.inspect, ...(options.snapshot !== undefined ? { snapshot: options.snapshot } : {}) });
  bound.set(actor.system, effects);
  return actor;
}

/**
 * A stored snapshot with its context's `timeouts` replaced by those of `input` (today's config);
 * a snapshot stored before the machine held timeouts gets them too.
 */
export function withTimeouts(snapshot: unknown, input: FederationInput): Snapshot<unknown> {
  const s = snapshot as { context?: Record<string, unknown> };
  return { ...s, context: { ...s.context, timeouts: withDefaultTimeouts(input.timeouts) } } as unknown as Snapshot<unknown>;
}
