/**
 * pgfed's bus: NATS JetStream subjects and stream (subjects.ts), message schemas (messages.ts),
 * the connection with publish/subscribe (bus.ts) and its consumers' delivery loop (consumer.ts),
 * durable state (state.ts) and leases (lease.ts).
 */
export * from "./subjects.js";
export * from "./messages.js";
export * from "./metrics.js";
export * from "./bus.js";
export * from "./state.js";
export * from "./lease.js";
export * from "./identity.js";
export * from "./command-proof.js";
export * from "./permissions.js";
