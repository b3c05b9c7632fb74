/** Receives, checks (epoch, deadline), runs and answers the members' commands; commands.ts plans what each does to a Cluster, kept pure so it is tested without a bus. */
import { createHash } from "node:crypto";
import { RefusedMessageError, agentConsumerName as consumerName, openStateStore, subjects, makeMessage, type BusSubscription, type CommandResult, type JsonValue, type MessageOf, type StateStore } from "../bus/index.js";
import type { Cluster } from "../cnpg/index.js";
import { PgfedError, errorMessage } from "../errors.js";
import { formatLsn } from "../wal/lsn.js";
import { describeCommand, planCommand, type ClusterCommand } from "./commands.js";
import type { CommandOutcome } from "./metrics.js";
import { clip, observeCluster } from "./observation.js";
import { recloneRecordSchema, runReclone, type RecloneOutcome, type RecloneRecord } from "./reclone.js";
import type { AgentRuntime, MemberRuntime } from "./runtime.js";

/** Answers kept per member, so a redelivered command is answered the same way without running again. */
const RESULT_CACHE = 256;

type Outcome = { ok: true; sentence: string; data: Record<string, JsonValue> } | { ok: false; refused: boolean; code: string; message: string };

export class CommandHandler {
  /** Member (`who`) → command id → the result published for it. */
  private readonly results = new Map<string, Map<string, MessageOf<"result">>>();
  private recloneStore: Promise<StateStore<RecloneRecord>> | undefined;

  constructor(private readonly agent: AgentRuntime) {}

  /** One durable consumer of the member's command subject. */
  subscribe(rt: MemberRuntime): Promise<BusSubscription> {
    return this.agent.bus.subscribe(
      subjects.cmd(rt.fed.name, rt.cfg.name),
      async (msg) => {
        if (msg.type !== "command") return;
        await this.handle(rt, msg);
      },
      // deliverNew: a brand-new agent does not act on commands older than itself (their deadlines
      // have passed anyway); a restarted one resumes where its durable consumer left off.
      { durable: consumerName(this.agent.agentId, rt.fed.name, rt.cfg.name), deliverNew: true },
    );
  }

  /** Throws only when the result could not be published: the bus then redelivers the command. */
  private async handle(rt: MemberRuntime, msg: MessageOf<"command">): Promise<void> {
    const { bus, epochs, metrics, region, source } = this.agent;
    const t0 = performance.now();
    const cmd = msg.data;
    const what = describeCommand(cmd);
    const fed = rt.fed.name;
    const auth = await this.agent.commandAuth.verify(msg, `${what} of ${rt.who}`);
    if (!auth.ok) {
      metrics.commands.inc({ ...rt.labels, kind: cmd.kind, result: "refused" });
      bus.metrics.commandsRejected.inc({ reason: auth.reason });
      rt.log.error({ commandId: msg.id, reason: auth.reason, source: msg.source, signer: msg.proof?.signer }, auth.message);
      // Not answered: the sender is not the leading coordinator. Dead-lettered, so the leader audits it and on-call is paged.
      throw new RefusedMessageError("unauthenticated", `${auth.reason}: ${auth.message}`, auth.reason);
    }
    let results = this.results.get(rt.who);
    if (!results) this.results.set(rt.who, (results = new Map<string, MessageOf<"result">>()));
    const cached = results.get(msg.id);
    if (cached) {
      rt.log.info({ commandId: msg.id }, `command ${msg.id} (${what} of ${rt.who}) was already answered; publishing the same result again`);
      await bus.publish(cached);
      return;
    }
    rt.log.info({ commandId: msg.id, epoch: msg.epoch, operationId: cmd.operationId }, `received ${what} for ${rt.who} at epoch ${msg.epoch} (operation ${cmd.operationId}, command ${msg.id})`);

    let outcome: Outcome;
    const verdict = epochs.check(fed, msg.epoch);
    epochs.note(fed, msg.epoch, "command", msg.id);
    const deadlineMs = Date.parse(cmd.deadlineAt);
    const nowMs = this.agent.now();
    if (!verdict.ok) {
      const n = verdict.newest;
      outcome = {
        ok: false,
        refused: true,
        code: "agent.stale_epoch",
        message: `refusing ${what} of ${rt.who}: it carries epoch ${msg.epoch}, older than epoch ${n.epoch} already seen for ${fed} (from ${n.source === "command" ? `command ${n.by}` : `the coordinator's record, ${n.by}`})`,
      };
    } else if (!(deadlineMs > nowMs)) {
      outcome = { ok: false, refused: true, code: "agent.deadline_expired", message: `refusing ${what} of ${rt.who}: its deadline ${cmd.deadlineAt} passed ${nowMs - deadlineMs} ms ago` };
    } else {
      outcome = await rt.lock.run(() => this.execute(rt, msg));
    }

    const result: CommandResult = outcome.ok
      ? { commandId: msg.id, ok: true, data: outcome.data }
      : { commandId: msg.id, ok: false, error: { code: outcome.code, message: clip(outcome.message, 4_096) } };
    const kindResult: CommandOutcome = outcome.ok ? "ok" : outcome.refused ? "refused" : "failed";
    metrics.commands.inc({ ...rt.labels, kind: cmd.kind, result: kindResult });
    const sentence = outcome.ok ? outcome.sentence : outcome.message;
    if (outcome.ok) rt.log.info({ commandId: msg.id, result: kindResult, data: outcome.data }, sentence);
    else rt.log.warn({ commandId: msg.id, result: kindResult, code: outcome.code }, sentence);
    rt.lastCommand = { id: msg.id, kind: cmd.kind, ok: outcome.ok, sentence, atMs: this.agent.now() };

    const envelope = makeMessage("result", { federation: fed, member: rt.cfg.name, epoch: msg.epoch, source, id: resultId(msg.id), data: result, at: new Date(this.agent.now()) });
    results.set(msg.id, envelope);
    if (results.size > RESULT_CACHE) {
      const oldest = results.keys().next();
      if (!oldest.done) results.delete(oldest.value);
    }
    await bus.publish(envelope);
    metrics.commandSeconds.observe({ region, kind: cmd.kind }, (performance.now() - t0) / 1_000);
  }

  private async execute(rt: MemberRuntime, msg: MessageOf<"command">): Promise<Outcome> {
    const { kube, kubeCall } = this.agent;
    const cmd = msg.data;
    const doing = `while executing ${describeCommand(cmd)} of ${rt.who}`;
    if (cmd.kind === "walSwitch") {
      try {
        const { switchLsn } = await rt.sampler.switchWal();
        return { ok: true, sentence: `switched WAL on ${rt.who} at ${formatLsn(switchLsn)} so the archiver ships the partial segment`, data: { patched: false, switchLsn: formatLsn(switchLsn) } };
      } catch (e) {
        return { ok: false, refused: false, code: e instanceof PgfedError ? e.code : "wal.switch_failed", message: `${doing}: ${errorMessage(e)}` };
      }
    }
    if (cmd.kind === "reclone") return this.reclone(rt, msg.epoch, cmd.primary, Date.parse(cmd.deadlineAt));
    const ccmd: ClusterCommand = cmd;
    const ctx = { who: rt.who, topologyName: (member: string) => rt.fed.topologyNames?.[member] ?? member };
    let cluster: Cluster;
    try {
      cluster = await kubeCall(kube.getCluster(rt.ref), `reading Cluster ${rt.ref.namespace}/${rt.ref.name}`);
    } catch (e) {
      return this.kubeFailure(e, doing, "read");
    }
    const plan = planCommand(cluster, ccmd, ctx);
    if (plan.action === "refuse") return { ok: false, refused: true, code: plan.code, message: plan.message };
    if (plan.action === "none") return { ok: true, sentence: plan.sentence, data: resultData(cluster, false) };
    let after: Cluster;
    try {
      after = await kubeCall(kube.patchCluster(rt.ref, plan.patch, `${describeCommand(cmd)} of ${rt.who}: patching`), `patching Cluster ${rt.ref.namespace}/${rt.ref.name}`);
    } catch (e) {
      return this.kubeFailure(e, doing, "patch");
    }
    // Not observed from here: the watch delivers this object in order with the others.
    const check = planCommand(after, ccmd, ctx);
    if (check.action !== "none") {
      return { ok: false, refused: false, code: "agent.patch_not_effective", message: `${doing}: the patch was accepted but the Cluster still does not match (${check.action === "refuse" ? check.message : check.sentence})` };
    }
    return { ok: true, sentence: plan.sentence, data: resultData(after, true) };
  }

  /** Rejoin of a diverged member: as many re-clone steps as fit before the command's deadline (reclone.ts). */
  private reclone(rt: MemberRuntime, epoch: number, primaryMember: string, deadlineMs: number): Promise<RecloneOutcome> {
    const { bus, kube, kubeCall } = this.agent;
    return runReclone({
      who: rt.who,
      federation: rt.fed.name,
      member: rt.cfg.name,
      ref: rt.ref,
      epoch,
      primary: rt.fed.topologyNames?.[primaryMember] ?? primaryMember,
      primaryMember,
      // Answer before the coordinator stops waiting for this attempt (it then repeats the command).
      answerByMs: deadlineMs - Math.min(1_000, Math.max(0, (deadlineMs - this.agent.now()) / 5)),
      kube,
      kubeCall,
      store: () => (this.recloneStore ??= openStateStore(bus, recloneRecordSchema, { scope: "*.reclone.*" }).catch((e: unknown) => {
        this.recloneStore = undefined;
        throw e;
      })),
      lastSample: () => rt.sampler.lastSample,
      log: rt.log,
    });
  }

  private kubeFailure(e: unknown, doing: string, operation: "read" | "patch"): Outcome & { ok: false } {
    const code = e instanceof PgfedError ? e.code : "kube.unreachable";
    if (code !== "cnpg.invalid_cluster") this.agent.metrics.kubeErrors.inc({ region: this.agent.region, operation });
    return { ok: false, refused: false, code, message: `${doing}: ${errorMessage(e)}` };
  }
}

function resultData(c: Cluster, patched: boolean): Record<string, JsonValue> {
  const obs = observeCluster(c);
  return { patched, resourceVersion: c.metadata.resourceVersion ?? "", role: obs.role, fenced: obs.fenced, phase: obs.phase };
}

/** Result envelope id: derived from the command id, so a repeated answer is stored once. */
export function resultId(commandId: string): string {
  const plain = `res.${commandId}`;
  return plain.length <= 128 ? plain : `res.${createHash("sha256").update(commandId).digest("hex")}`;
}
