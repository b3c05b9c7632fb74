export * from "./member.js";
export * from "./federation.js";
export { eventLabel, machineAsJson, machineAsMermaid, machinesAsJson, machinesAsMermaid } from "./describe.js";
export type { MachineJson, StateJson, TransitionJson } from "./describe.js";
