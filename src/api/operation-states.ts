/**
 * Which operation states are final: one list for the API, the CLI, the coordinator's evacuation
 * and the status page. Pure and free of zod, so the browser bundle can import it.
 */
export const FINISHED_STATES: ReadonlySet<string> = new Set(["completed", "aborted", "refused", "cancelled", "resolved"]);

export function isFinishedState(state: string): boolean {
  return FINISHED_STATES.has(state);
}
