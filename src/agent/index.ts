/** The region agent: observations, lag samples, commands, the primary lease and self-fencing. */
export { startAgent, agentMembersFromConfig, federationSettings, lagFromSample } from "./agent.js";
export type { Agent, AgentOptions, AgentMember, AgentStatus, MemberStatus } from "./agent.js";
export type { AgentFederation } from "./runtime.js";
export { resultId } from "./command-handler.js";
export { agentConsumerName as consumerName } from "../bus/subjects.js";
export { planCommand, planReclone, describeCommand, type CommandPlan, type ClusterCommand, type PlanContext, type RecloneStep } from "./commands.js";
export { EpochTracker, type EpochMark, type EpochSource, type EpochVerdict } from "./epochs.js";
export { observeCluster, unknownObservation, unreachableObservation, sameObservation } from "./observation.js";
export { PrimaryGuard, type GuardState, type GuardStatus, type SelfFenceReport, type PrimaryGuardOptions, type LeaseOps } from "./primary-guard.js";
export type { FenceReason, FenceOutcome } from "./fencing.js";
export { createAgentMetrics, type AgentMetrics } from "./metrics.js";
export { LatestPublisher } from "./latest-publisher.js";
