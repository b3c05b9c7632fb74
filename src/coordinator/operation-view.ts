/**
 * An operation as the coordinator reports it (`OperationView`, service.ts), as a zod schema: the
 * coordinator stores it in the federation's KV record (record.ts) and the API validates and
 * documents its responses with it (api/schemas.ts).
 */
import { z } from "zod";

export const operationStepSchema = z.object({ at: z.string(), step: z.string(), description: z.string() });

export const operationViewSchema = z.object({
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
  lastDecision: z.string().meta({ description: "The coordinator's latest one-sentence decision, with its numbers." }),
  steps: z.array(operationStepSchema),
});
