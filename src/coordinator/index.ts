export * from "../api/contract.js";
export { resolveRefusal } from "./service.js";
export { startCoordinator, type Coordinator, type CoordinatorOptions } from "./coordinator.js";
export { createCoordinatorMetrics, type CoordinatorMetrics } from "./metrics.js";
export { federationRecordSchema, type FederationRecord, type OperationRecord } from "./record.js";
export { type RegionClusterAccess } from "./corroboration.js";
