/**
 * The newest epoch the agent has seen per federation (safety rule 1: refuse a command older than
 * that). Two sources raise it:
 *   - every valid command envelope for the federation, accepted or not (a newer epoch on a command
 *     that is refused for another reason is still proof that the federation moved on);
 *   - the coordinator's federation record in the KV state (`pgfed_state`, key `<federation>`,
 *     field `epoch`), watched by the agent, so a restarted agent starts from the coordinator's
 *     epoch instead of from the first command it happens to receive.
 * It only ever grows. Kept in memory: after a restart the KV record (when the coordinator keeps
 * one) is the floor; without it, the first command sets it.
 */
export type EpochSource = "command" | "state";

export interface EpochMark {
  epoch: number;
  source: EpochSource;
  /** What raised it: the command id, or the KV revision. */
  by: string;
}

export type EpochVerdict = { ok: true } | { ok: false; newest: EpochMark };

export class EpochTracker {
  private readonly newest = new Map<string, EpochMark>();

  /** Raises the federation's newest epoch; returns true when it grew. */
  note(federation: string, epoch: number, source: EpochSource, by: string): boolean {
    const cur = this.newest.get(federation);
    if (cur !== undefined && cur.epoch >= epoch) return false;
    this.newest.set(federation, { epoch, source, by });
    return true;
  }

  /** A command at `epoch` may run unless a newer epoch was seen. */
  check(federation: string, epoch: number): EpochVerdict {
    const cur = this.newest.get(federation);
    return cur === undefined || epoch >= cur.epoch ? { ok: true } : { ok: false, newest: cur };
  }

  get(federation: string): EpochMark | undefined {
    return this.newest.get(federation);
  }

  /** The epoch to stamp on the agent's own messages (0 before anything was seen). */
  current(federation: string): number {
    return this.newest.get(federation)?.epoch ?? 0;
  }

  snapshot(): Record<string, EpochMark> {
    return Object.fromEntries(this.newest);
  }
}
