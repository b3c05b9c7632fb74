/**
 * The rejoin of a diverged member (operator-requested and approved: it discards the member's
 * diverged writes): the agent re-clones it from the designated primary, the coordinator waits
 * until it follows on the primary's timeline, then points every other member's archive entry for
 * it at its new archive. The budget is the input's (a re-clone copies the whole database).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { RejoinMemberInput } from "../../../machines/index.js";
import type { JsonValue } from "../../bus/index.js";
import { PgfedError, errorMessage } from "../../errors.js";
import { formatLsn } from "../../wal/lsn.js";
import type { RuntimeParts } from "./parts.js";

/** How long the end of a rejoin waits for each other member's agent to point it at the new archive. */
const RETARGET_TIMEOUT_MS = 30_000;
/** A lag sample older than this does not tell a member's timeline. */
const SAMPLE_FRESH_MS = 5_000;

function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

export class RejoinSteps {
  constructor(private readonly p: RuntimeParts) {}

  /**
   * Rejoin of a diverged former primary (operator-requested and approved: it discards the member's
   * diverged writes). The agent re-clones it (reclone.ts: fence, record what it holds, delete,
   * recreate as a replica cluster of the primary with a fresh archive path), one bounded attempt at
   * a time until it says done; then the member must be seen following the primary: a healthy,
   * unfenced replica cluster whose Postgres replays on the primary's timeline. The audit record
   * `rejoin.recloned` carries what was discarded and where the old archive stays.
   */
  async rejoin(input: RejoinMemberInput, signal: AbortSignal): Promise<void> {
    const { member, primary, budgetMs } = input;
    const { name, agents, signals, audit, log } = this.p;
    const now = this.p.now;
    const who = `${name}/${member}`;
    if (primary === null) throw new PgfedError("coordinator.no_primary", `rejoin of ${who}: there is no designated primary to clone from`);
    const t0 = now();
    const until = t0 + budgetMs;
    const p = { epoch: input.epoch, operationId: input.operationId, signal };
    // The coordinator's own last sample of the member (often from before the region was lost), kept
    // before the re-clone replaces it: the agent of a restarted region may never have sampled it.
    const st = signals.samples.get(member)?.current(now(), Number.MAX_SAFE_INTEGER);
    const seen = st?.status === "up" ? st.sample : st?.status === "unreachable" ? st.lastSample : undefined;
    const seenLsn = seen === undefined ? undefined : seen.role === "primary" ? seen.currentLsn : (seen.replayLsn ?? seen.receiveLsn);
    const lastKnown = {
      lastKnownLsn: seenLsn === undefined ? null : formatLsn(seenLsn),
      lastKnownRole: seen?.role ?? null,
      lastKnownTimeline: seen?.timeline ?? null,
      lastKnownSampledAt: seen ? isoOf(seen.atMs) : null,
    };
    let data: Record<string, JsonValue> = {};
    for (let round = 1; ; round++) {
      const left = until - now();
      if (left <= 0) throw new PgfedError("coordinator.rejoin_timeout", `rejoin of ${who}: the re-clone from ${primary} was not done within ${budgetMs} ms (last: ${JSON.stringify(data.done ?? null)})`, { federation: name, member });
      data = await agents.command(member, { kind: "reclone", primary }, { ...p, step: "reclone", timeoutMs: left });
      if (data.done === true) break;
      log.info({ op: input.operationId, epoch: input.epoch, member, round }, `rejoin of ${who}: re-clone from ${primary} not done after attempt ${round}; repeating`);
      await sleep(200, undefined, { signal }).catch(() => undefined);
    }
    const left = () => Math.max(1_000, until - now());
    await agents.awaitObservation(member, `to run as a healthy unfenced replica cluster of ${primary}`, (x) => x.role === "replica" && !x.fenced && x.ready, left(), signal);
    // Following, not just running: its Postgres replays on the timeline the primary writes.
    let timelines = { member: 0, primary: -1 };
    while (!signal.aborted && !this.p.stopped()) {
      const m = signals.samples.get(member)?.current(now(), SAMPLE_FRESH_MS);
      const pr = signals.samples.get(primary)?.current(now(), SAMPLE_FRESH_MS);
      timelines = { member: m?.status === "up" ? m.sample.timeline : 0, primary: pr?.status === "up" ? pr.sample.timeline : -1 };
      if (m?.status === "up" && m.sample.role === "replica" && timelines.member === timelines.primary) break;
      if (now() >= until) {
        throw new PgfedError("coordinator.rejoin_timeout", `rejoin of ${who}: re-cloned, but its Postgres was not seen replaying on the primary's timeline within ${budgetMs} ms (member timeline ${timelines.member}, primary ${primary} timeline ${timelines.primary})`, { federation: name, member });
      }
      await sleep(200);
    }
    const retarget = await this.retargetArchives(member, data, p, Math.min(RETARGET_TIMEOUT_MS, left()));
    const figures: Record<string, string | number | boolean | null> = { epoch: input.epoch, durationSeconds: (now() - t0) / 1000, timeline: timelines.member, ...lastKnown, ...retarget.figures };
    for (const [k, v] of Object.entries(data)) if (v === null || typeof v !== "object") figures[k] = v;
    const text = (k: string): string => {
      const v = figures[k];
      return v === undefined || v === null ? "?" : String(v);
    };
    const kept = typeof data.keptArchive === "string" ? `the old archive stays under server name ${data.keptArchive} (its diverged WAL can be salvaged from there); the new one is ${text("newArchive")}` : "no archive was configured";
    const held =
      typeof data.divergedLsn === "string"
        ? `WAL up to ${data.divergedLsn} on timeline ${text("divergedTimeline")} (its agent's last ${text("divergedLsnRole")} sample at ${text("divergedSampledAt")})`
        : lastKnown.lastKnownLsn !== null
          ? `WAL up to at least ${lastKnown.lastKnownLsn} on timeline ${String(lastKnown.lastKnownTimeline)} (the coordinator's last ${String(lastKnown.lastKnownRole)} sample at ${String(lastKnown.lastKnownSampledAt)}; anything written after it is unknown)`
          : "an unknown WAL position (never sampled)";
    audit.write(
      "rejoin.recloned",
      `${member} re-cloned from ${primary} in ${((now() - t0) / 1000).toFixed(1)} s and follows it on timeline ${timelines.member}`,
      `discarded what ${member} held after the fork: ${held}; ${kept}${retarget.sentence}`,
      figures,
      input.operationId,
      member,
      input.epoch,
    );
  }

  /**
   * The rejoined member archives under a fresh server name; every other member's externalClusters
   * entry for it must read there too, or a member following it in archive-only replay would read
   * the old path with the diverged timeline. Ensure-style on each agent, all at once; a member that
   * cannot be reached (its region down) does not fail the rejoin, which is done: it is audited as
   * `rejoin.retarget_failed` with what to change by hand (docs/operations.md).
   */
  private async retargetArchives(
    member: string,
    data: Record<string, JsonValue>,
    p: { epoch: number; operationId: string; signal: AbortSignal },
    timeoutMs: number,
  ): Promise<{ figures: Record<string, string>; sentence: string }> {
    const { name, agents, audit, log } = this.p;
    const from = data.keptArchive;
    const to = data.newArchive;
    if (typeof from !== "string" || typeof to !== "string" || from === to) return { figures: {}, sentence: "" };
    const others = this.p.cfg.members.map((m) => m.name).filter((m) => m !== member);
    const outcomes = await Promise.all(
      others.map(async (other) => {
        try {
          const r = await agents.command(other, { kind: "retargetArchive", member, from, to }, { ...p, step: "retargetArchive", timeoutMs });
          return { other, patched: r.patched === true };
        } catch (e) {
          const why = errorMessage(e);
          audit.write(
            "rejoin.retarget_failed",
            `${other}'s externalClusters entry for ${member} may still read archive server ${from}`,
            `${why}; set its archive serverName to ${to} by hand before ${other} follows ${member} (docs/operations.md, rejoin)`,
            { from, to },
            p.operationId,
            other,
            p.epoch,
          );
          log.warn({ op: p.operationId, member: other }, `rejoin of ${name}/${member}: could not point ${other} at archive server ${to}: ${why}`);
          return { other, failed: why };
        }
      }),
    );
    const patched = outcomes.filter((o) => "patched" in o && o.patched).map((o) => o.other);
    const already = outcomes.filter((o) => "patched" in o && !o.patched).map((o) => o.other);
    const failed = outcomes.filter((o) => "failed" in o).map((o) => o.other);
    const parts = [
      patched.length > 0 ? `${patched.join(", ")} now read${patched.length === 1 ? "s" : ""} ${member}'s archive under ${to}` : "",
      already.length > 0 ? `${already.join(", ")} needed no change` : "",
      failed.length > 0 ? `${failed.join(", ")} could not be changed (see rejoin.retarget_failed)` : "",
    ].filter((x) => x !== "");
    return {
      figures: { retargeted: patched.join(","), retargetUnchanged: already.join(","), retargetFailed: failed.join(",") },
      sentence: parts.length > 0 ? `; ${parts.join("; ")}` : "",
    };
  }
}
