/**
 * Every transition of the federation machine and of each member machine, as one logged and
 * audited sentence: the row's `description` (the habit of pg_auto_failover's keeper table,
 * STYLE.md), with `{federation, member, epoch}`. The federation machine's rows are collected as
 * they happen and written with the snapshot they led to (runtime.ts); a member's row is written at
 * once. A member row that changes nothing (an observation confirming its state) is not written.
 */
import type { AnyTransitionDefinition, InspectionEvent } from "xstate";
import type { Logger } from "../../log.js";
import type { AuditTrail } from "./audit.js";

export interface PendingTransition {
  description: string;
  event: string;
}

interface Microstep {
  event: { type: string };
  _transitions: AnyTransitionDefinition[];
}

/** The rows an inspection event took, if it is a microstep of `actor`. */
export function transitionsOf(ev: InspectionEvent, actor: unknown): PendingTransition[] {
  if (ev.type !== "@xstate.microstep" || actor === undefined || ev.actorRef !== actor) return [];
  const micro = ev as unknown as Microstep;
  return micro._transitions.map((t) => ({ description: t.description ?? `${micro.event.type} handled`, event: micro.event.type }));
}

/** The rows of a member machine that change its state (a target), with their descriptions. */
function memberRowsOf(ev: InspectionEvent, actor: unknown): PendingTransition[] {
  if (ev.type !== "@xstate.microstep" || ev.actorRef !== actor) return [];
  const micro = ev as unknown as Microstep;
  return micro._transitions.filter((t) => (t.target?.length ?? 0) > 0).map((t) => ({ description: t.description ?? `${micro.event.type} handled`, event: micro.event.type }));
}

export class MemberTransitions {
  constructor(private readonly p: { federation: string; log: Logger; audit: AuditTrail; epoch: () => number }) {}

  /** The inspector of one member actor: `actor()` is that actor once created. */
  inspector(member: string, actor: () => unknown): (ev: InspectionEvent) => void {
    return (ev) => {
      for (const t of memberRowsOf(ev, actor())) {
        const epoch = this.p.epoch();
        this.p.log.info({ member, epoch, event: t.event }, `${this.p.federation}/${member}: ${t.description}`);
        this.p.audit.write("member.transition", t.description, `${t.event} for ${member}`, { epoch }, null, member, epoch);
      }
    };
  }
}
