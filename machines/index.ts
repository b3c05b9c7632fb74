export * from "./member.js";
export * from "./federation-types.js";
export { federationMachine, type FederationMachine } from "./federation.js";
export { REPLY_MARGIN_MS, defaultTimeouts, withDefaultTimeouts, type StepTimeouts } from "./federation-timeouts.js";
export {
  failoverCandidate,
  failoverRefusal,
  failoverVerdict,
  isEligibleTarget,
  rejoinRefusal,
  requestedFailoverVerdict,
  switchoverRefusal,
  type FailoverVerdict,
} from "./federation-decisions.js";
export { federationStepSentence } from "./federation-words.js";
export { formatBytes, formatMs } from "./units.js";
export { eventLabel, machineAsJson, machineAsMermaid, machinesAsJson, machinesAsMermaid, stepDescription } from "./describe.js";
export type { MachineJson, StateJson, TransitionJson } from "./describe.js";
