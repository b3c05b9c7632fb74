// The lab's CNPG stand-in: real Postgres instances run the way CNPG runs them (CNPG.md).
export {
  startCnpgOperator,
  LAB_OPERATOR_VERSION,
  CNPG_DEMOTION_RETRY_MS,
  CNPG_PROMOTION_RETRY_MS,
  type CnpgFault,
  type CnpgOperator,
  type CnpgOperatorOptions,
} from "./operator.js";
export { FENCE_ALL, fenceAllPatch, isInstanceFenced, readFencedSet, type FencedSet } from "./fencing.js";
export { ExternalClusterRegistry, type ExternalClusterEndpoint } from "./registry.js";
export {
  PgInstance,
  checkParameters,
  FIXED_PARAMETERS,
  LAB_DEFAULT_PARAMETERS,
  type ArchiverStats,
  type InstanceProbe,
  type InstanceRole,
  type PgConnectionInfo,
  type PgInstanceOptions,
  type WalSource,
} from "./instance.js";
export { checkPromotionToken, replicaControlPoint, type ReplicaControlPoint, type TokenVerdict } from "./promotion.js";
export { archiveFile, listArchive, writeArchiveScripts } from "./archive.js";
export { ROWS_TABLE, createRowsTable, startRowWriter, type RowWriter, type RowWriterReport } from "./writer.js";
