/**
 * What the coordinator keeps in the KV bucket `pgfed_state` under the federation's key: one record
 * per federation, written with compare-and-swap after every transition (safety rule 5). Agents read
 * its `epoch` to refuse older commands (rule 1); a new leader restores the machine from `snapshot`.
 */
import { z } from "zod";

const stepSchema = z.object({ at: z.string(), step: z.string(), description: z.string() });

export const operationRecordSchema = z.object({
  id: z.string(),
  federation: z.string(),
  kind: z.enum(["switchover", "failover", "rejoin"]),
  state: z.enum(["running", "awaitingApproval", "operatorRequired", "completed", "aborted", "refused", "cancelled", "resolved"]),
  step: z.string(),
  target: z.string().nullable(),
  from: z.string().nullable(),
  reason: z.string(),
  requestedBy: z.string(),
  automatic: z.boolean(),
  startedAt: z.string(),
  finishedAt: z.string().nullable(),
  epochBefore: z.number(),
  epochAfter: z.number().nullable(),
  acceptedLossSeconds: z.number().nullable(),
  durationSeconds: z.number().nullable(),
  dataLossSeconds: z.number().nullable(),
  lastDecision: z.string(),
  steps: z.array(stepSchema),
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
