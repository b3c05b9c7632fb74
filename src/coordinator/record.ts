/**
 * What the coordinator keeps in the KV bucket `pgfed_state` under the federation's key: one record
 * per federation, written with compare-and-swap after every transition (safety rule 5). Agents read
 * its `epoch` to refuse older commands (rule 1); a new leader restores the machine from `snapshot`.
 */
import { z } from "zod";
import { operationViewSchema } from "../api/contract.js";

/** An operation as the API shows it, plus what only the coordinator needs to carry on after a restart. */
export const operationRecordSchema = operationViewSchema.extend({
  /** Demotion token of the old primary seen before the demote command (a stale one stays in CNPG's status). */
  tokenBefore: z.string().nullable().optional(),
  idempotencyKey: z.string().optional(),
});
export type OperationRecord = z.infer<typeof operationRecordSchema>;

export const federationRecordSchema = z.object({
  epoch: z.number().int().nonnegative(),
  designatedPrimary: z.string().nullable(),
  operationId: z.string().nullable(),
  step: z.string().nullable(),
  leader: z.string(),
  updatedAt: z.string(),
  /** xstate persisted snapshot of the federation machine (opaque JSON). */
  snapshot: z.unknown(),
  /** Newest last; bounded. */
  operations: z.array(operationRecordSchema),
});
export type FederationRecord = z.infer<typeof federationRecordSchema>;

export const MAX_KEPT_OPERATIONS = 30;
