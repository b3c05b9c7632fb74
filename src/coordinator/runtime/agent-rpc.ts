/**
 * The coordinator's side of the agent protocol for one federation: a command is published on the
 * member's command subject and answered on its result subject; an observation is awaited from
 * what the agent publishes. Both are bounded and throw naming federation, member and step.
 */
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { makeMessage, type Bus, type CommandResult, type JsonValue, type Observation } from "../../bus/index.js";
import { PgfedError, errorMessage } from "../../errors.js";
import type { Logger } from "../../log.js";
import type { FederationSignals } from "../signals.js";
import type { AuditTrail } from "./audit.js";

export type CommandSpec =
  | { kind: "demote"; to: string }
  | { kind: "follow"; primary: string }
  | { kind: "promoteWithToken"; token: string }
  | { kind: "promoteWithoutToken" }
  | { kind: "clearToken" }
  | { kind: "fence" }
  | { kind: "unfence" }
  | { kind: "walSwitch" }
  | { kind: "ensurePrimary" }
  | { kind: "reclone"; primary: string }
  | { kind: "retargetArchive"; member: string; from: string; to: string };

export interface CommandCall {
  epoch: number;
  operationId: string;
  step: string;
  timeoutMs: number;
  signal: AbortSignal;
}

/** One attempt waits this long for its result before the command is re-sent (new id, same effect: agents ensure). */
const ATTEMPT_MS = 5_000;
/** How often an awaited observation is looked at. */
const POLL_MS = 100;

function shortId(): string {
  return randomBytes(4).toString("hex");
}

export class AgentCommands {
  private readonly pending = new Map<string, (r: CommandResult) => void>();

  constructor(
    private readonly p: {
      federation: string;
      source: string;
      bus: Bus;
      log: Logger;
      now: () => number;
      audit: AuditTrail;
      signals: FederationSignals;
      /** Resolves once the federation record is stored; throws when this coordinator no longer writes it. */
      flushed: () => Promise<void>;
      stopped: () => boolean;
    },
  ) {}

  /** A result arrived on the bus: hand it to the command waiting for it. */
  onResult(r: CommandResult): void {
    this.pending.get(r.commandId)?.(r);
  }

  /**
   * Sends `spec` to the member's agent and waits for the result; re-sends every few seconds until
   * `timeoutMs`. Throws naming federation, member and step.
   */
  async command(member: string, spec: CommandSpec, c: CommandCall): Promise<Record<string, JsonValue>> {
    await this.p.flushed();
    const fed = this.p.federation;
    const deadline = this.p.now() + c.timeoutMs;
    let lastError = "no answer";
    for (let attempt = 1; this.p.now() < deadline; attempt++) {
      if (c.signal.aborted || this.p.stopped()) throw new PgfedError("coordinator.cancelled", `${c.step} of ${fed}/${member}: cancelled`);
      const id = `${c.operationId}.${c.step}.${attempt}.${shortId()}`.slice(0, 128);
      const wait = Math.min(ATTEMPT_MS, Math.max(200, deadline - this.p.now()));
      const data = { ...spec, operationId: c.operationId, deadlineAt: new Date(this.p.now() + wait).toISOString() };
      const result = new Promise<CommandResult | undefined>((resolve) => {
        const timer = setTimeout(() => resolve(undefined), wait);
        const onAbort = () => resolve(undefined);
        c.signal.addEventListener("abort", onAbort, { once: true });
        this.pending.set(id, (r) => {
          clearTimeout(timer);
          c.signal.removeEventListener("abort", onAbort);
          resolve(r);
        });
      });
      try {
        const msg = makeMessage("command", { federation: fed, member, epoch: c.epoch, source: this.p.source, id, data });
        this.p.audit.write("command.sent", `${spec.kind} sent to ${member} (attempt ${attempt})`, `step ${c.step} of operation ${c.operationId}`, { epoch: c.epoch, attempt }, c.operationId, member, c.epoch);
        this.p.log.info({ op: c.operationId, epoch: c.epoch, member, commandId: id }, `sending ${spec.kind} to ${fed}/${member} at epoch ${c.epoch} for step ${c.step} (attempt ${attempt})`);
        await this.p.bus.publish(msg);
      } catch (e) {
        this.pending.delete(id);
        lastError = errorMessage(e);
        await sleep(300);
        continue;
      }
      const r = await result;
      this.pending.delete(id);
      if (!r) {
        lastError = `no result within ${wait} ms`;
        continue;
      }
      const sentence = r.ok ? `${spec.kind} of ${member} done` : `${spec.kind} of ${member} failed: ${r.error?.code ?? "?"}: ${r.error?.message ?? ""}`;
      this.p.audit.write("command.result", sentence, `step ${c.step} of operation ${c.operationId}`, { epoch: c.epoch, ok: r.ok }, c.operationId, member, c.epoch);
      if (r.ok) return r.data ?? {};
      throw new PgfedError(r.error?.code ?? "coordinator.command_failed", `step ${c.step} of ${fed}/${member}: ${r.error?.message ?? "failed"}`, { federation: fed, member, step: c.step });
    }
    throw new PgfedError("coordinator.command_timeout", `step ${c.step} of ${fed}/${member}: ${spec.kind} got no answer from the agent of region ${this.p.signals.regionOf(member)} within ${c.timeoutMs} ms (${lastError})`, {
      federation: fed,
      member,
      step: c.step,
    });
  }

  /** Waits until the member's latest observation satisfies `ok`; throws after `timeoutMs` naming what it waited for. */
  async awaitObservation(member: string, what: string, ok: (o: Observation) => boolean, timeoutMs: number, signal: AbortSignal): Promise<Observation> {
    const fed = this.p.federation;
    const deadline = this.p.now() + timeoutMs;
    while (this.p.now() < deadline) {
      if (signal.aborted || this.p.stopped()) throw new PgfedError("coordinator.cancelled", `waiting for ${fed}/${member} ${what}: cancelled`);
      const o = this.p.signals.obs(member);
      if (o && o.reachable && ok(o)) return o;
      await sleep(POLL_MS);
    }
    const o = this.p.signals.obs(member);
    throw new PgfedError("coordinator.wait_timeout", `waited ${timeoutMs} ms for ${fed}/${member} ${what}; last seen: role ${o?.role ?? "?"}, phase ${o?.phase ?? "?"}, fenced ${String(o?.fenced ?? "?")}`, { federation: fed, member });
  }
}
