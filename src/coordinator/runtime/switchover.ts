/**
 * The steps of a planned switchover (CNPG.md, "Switchover"), each an idempotent "ensure" that a
 * resumed coordinator may run again: preflight, demote the old primary, await its demotion token,
 * promote the target with it, verify; and the undo of a demotion when nothing was promoted.
 * Every step's deadline is the budget its input carries (the machine's timer less a margin).
 */
import { setTimeout as sleep } from "node:timers/promises";
import {
  DEMOTION_TOKEN_LOST,
  type AwaitDemotionTokenInput,
  type AwaitDemotionTokenOutput,
  type DemotePrimaryInput,
  type PreflightInput,
  type PreflightOutput,
  type PromoteWithTokenInput,
  type UndoDemotionInput,
  type VerifySwitchoverInput,
  type VerifySwitchoverOutput,
} from "../../../machines/index.js";
import { PHASES, cnpgVersionWarnings, promotedPastToken, tryDecodeToken } from "../../cnpg/index.js";
import { PgfedError } from "../../errors.js";
import { followingRefusal } from "../following.js";
import type { Followers } from "./followers.js";
import { deadlineOf, type RuntimeParts } from "./parts.js";

type PreflightVerdict = PreflightOutput & { missingEvidence?: boolean };

export class SwitchoverSteps {
  private readonly cnpgVersionsSeen = new Set<string>();

  constructor(
    private readonly p: RuntimeParts,
    private readonly followers: Followers,
  ) {}

  /** Read-only checks; a leader that just started (or resumed this step) waits, within the step's budget, for the evidence it lacks rather than refuse. */
  async preflight(input: PreflightInput, signal: AbortSignal): Promise<PreflightOutput> {
    const d = deadlineOf(this.p.now, input.budgetMs);
    let out = this.verdict(input);
    while (!out.ok && out.missingEvidence === true && !d.passed() && !signal.aborted && !this.p.stopped()) {
      await sleep(200);
      out = this.verdict(input);
    }
    const { missingEvidence: _missing, ...verdict } = out;
    return verdict;
  }

  private verdict(input: PreflightInput): PreflightVerdict {
    const { signals, evaluation } = this.p;
    const t = signals.obs(input.target);
    const lag = evaluation.targetLag(input.target, this.p.context()?.designatedPrimary ?? null);
    const no = (reason: string, missingEvidence = false): PreflightVerdict => ({ ok: false, targetLagBytes: lag?.bytes ?? 0, targetLagMs: lag?.ms ?? 0, reason, missingEvidence });
    if (!t || !signals.observations.has(input.from)) return no(`no observation of ${t ? input.from : input.target} yet`, true);
    if (!t.reachable) return no(`${input.target} is unreachable: ${t.reason ?? "no reason"}`);
    if (t.role !== "replica") return no(`${input.target} is not a replica cluster (role ${t.role})`);
    if (t.fenced) return no(`${input.target} is fenced`);
    if (!t.ready) return no(`${input.target} is not ready (phase ${t.phase})`);
    const f = signals.obs(input.from);
    if (!f?.reachable || f.role !== "primary") return no(`${input.from} is not observed as a reachable primary`);
    // Rule 7: a target that does not follow the primary would never reach its demotion token.
    const st = evaluation.status(input.target);
    const refusal = followingRefusal({ target: input.target, primary: input.from, verdict: evaluation.following(input.target, input.from), status: st, primaryTimeline: evaluation.last?.primaryTimeline, nowMs: this.p.now() });
    if (refusal) return no(refusal.reason, refusal.wait);
    if (!lag) return no(`no lag figure for ${input.target} yet (waiting for samples of both members)`, true);
    return { ok: true, targetLagBytes: lag.bytes, targetLagMs: lag.ms };
  }

  /** Ensure the old primary names the target as primary (CNPG then demotes it cleanly); first note the stale token it may still show. */
  async demote(input: DemotePrimaryInput, signal: AbortSignal): Promise<void> {
    const op = this.p.operations.get(input.operationId);
    if (op && op.tokenBefore === undefined) {
      op.tokenBefore = this.p.signals.obs(input.from)?.demotionToken ?? null;
      this.p.persistNow();
    }
    await this.p.agents.command(input.from, { kind: "demote", to: input.target }, { ...input, step: "demote", timeoutMs: input.budgetMs, signal });
  }

  async awaitToken(input: AwaitDemotionTokenInput, signal: AbortSignal): Promise<AwaitDemotionTokenOutput> {
    const { name, audit } = this.p;
    const before = this.p.operations.get(input.operationId)?.tokenBefore ?? null;
    // CNPG before 1.28.4 / 1.29.2 / 1.30.0 can end the switch with an empty token (CNPG issue
    // #11074): seen switching, then done with no new token, is that bug; waiting longer cannot help.
    let switching = false;
    const o = await this.p.agents.awaitObservation(
      input.member,
      `to be demoted with a new demotion token${before ? " (different from the stale one seen before the demote)" : ""}`,
      (x) => {
        switching ||= x.switchInProgress;
        const done = x.role === "replica" && !x.switchInProgress;
        const fresh = x.demotionToken !== undefined && x.demotionToken !== before;
        return done && (fresh || switching);
      },
      input.budgetMs,
      signal,
    );
    if (o.demotionToken === undefined || o.demotionToken === before) {
      const sentence = `CNPG completed the demotion of ${name}/${input.member} (ReplicaClusterSwitch done, switch no longer in progress) but wrote no demotion token: CNPG issue #11074, fixed in 1.28.4, 1.29.2 and 1.30.0; upgrade the operator`;
      audit.write("switchover.token_lost", sentence, "without the token no replica can be promoted with the zero-loss check; nothing was promoted", { epoch: input.epoch }, input.operationId, input.member, input.epoch);
      throw new PgfedError(DEMOTION_TOKEN_LOST, sentence, { federation: name, member: input.member });
    }
    this.warnAboutCnpg(o.demotionToken, input.member);
    return { token: o.demotionToken };
  }

  /** The token names the CNPG that wrote it: say once per version when it is too old or has the token-loss bug. */
  private warnAboutCnpg(token: string, member: string): void {
    const decoded = tryDecodeToken(token);
    if (!decoded.ok || this.cnpgVersionsSeen.has(decoded.token.operatorVersion)) return;
    this.cnpgVersionsSeen.add(decoded.token.operatorVersion);
    for (const warning of cnpgVersionWarnings(decoded.token.operatorVersion)) {
      this.p.log.warn({ member, operatorVersion: decoded.token.operatorVersion }, `${this.p.name}/${member}: ${warning}`);
      this.p.audit.write("cnpg.version_warning", warning, `read from the demotion token of ${member}`, { operatorVersion: decoded.token.operatorVersion }, null, member);
    }
  }

  async promote(input: PromoteWithTokenInput, signal: AbortSignal): Promise<void> {
    const d = deadlineOf(this.p.now, input.budgetMs);
    await this.p.agents.command(input.target, { kind: "promoteWithToken", token: input.token }, { ...input, step: "promote", timeoutMs: d.left(), signal });
    await this.p.agents.awaitObservation(
      input.target,
      "to be promoted with the demotion token",
      // CNPG empties lastPromotionToken once the token leaves the spec (a resumed step after verify's
      // clearToken): a primary on a timeline newer than the token's was promoted by it or after it.
      (x) => x.role === "primary" && (x.lastPromotionToken === input.token || promotedPastToken(input.token, x.timelineID)) && !x.switchInProgress && x.phase !== PHASES.promoting,
      d.left(),
      signal,
    );
  }

  async verify(input: VerifySwitchoverInput, signal: AbortSignal): Promise<VerifySwitchoverOutput> {
    const { agents, signals } = this.p;
    const d = deadlineOf(this.p.now, input.budgetMs);
    // A leader resuming this step has not heard from the target yet: wait for it (within the budget) before judging.
    const t = await agents.awaitObservation(input.target, "to run as an unfenced primary", (x) => x.role === "primary" && !x.fenced, d.left(), signal).catch(() => signals.obs(input.target));
    if (t?.role !== "primary" || t.fenced) return { ok: false, reason: `${input.target} is not an unfenced primary (role ${t?.role ?? "?"}, fenced ${String(t?.fenced)})` };
    // CNPG issue #9273: the token must leave the new primary's spec before it is demoted again.
    await agents.command(input.target, { kind: "clearToken" }, { ...input, step: "verify", timeoutMs: d.left(), signal });
    const [, followers] = await Promise.all([
      agents.awaitObservation(input.from, `to follow ${input.target} as a replica`, (x) => x.role === "replica" && !x.fenced, d.left(), signal),
      this.followers.ensure({ ...input, primary: input.target, skip: [input.from], step: "verify", budgetMs: d.left(), signal }),
    ]);
    await this.followers.awaitTimeline(input.target, [input.from, ...followers.repointed, ...followers.unchanged], input, d.left(), signal);
    return { ok: true };
  }

  /** Re-designate the old primary (spec.replica.primary = itself); only reached before any promote was issued. */
  async undo(input: UndoDemotionInput, signal: AbortSignal): Promise<void> {
    await this.p.agents.command(input.member, { kind: "ensurePrimary" }, { ...input, step: "undo", timeoutMs: input.budgetMs, signal }).catch(async (e: unknown) => {
      if (e instanceof PgfedError && e.code === "agent.not_primary") {
        throw new PgfedError("coordinator.undo_impossible", `undo of ${this.p.name}/${input.member}: it was already demoted (${e.message}); an operator must RESOLVE`);
      }
      throw e;
    });
  }
}
