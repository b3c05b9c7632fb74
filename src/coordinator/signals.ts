/**
 * The coordinator's view of the bus traffic of one federation: latest observation per member,
 * latest lag sample per member (converted for the exposure evaluator), last heartbeat per region.
 * Pure bookkeeping; time comes in as `nowMs`.
 */
import type { LagSample, Observation } from "../bus/index.js";
import type { MemberObservation } from "../../machines/index.js";
import { PgfedError } from "../errors.js";
import { parseLsn } from "../wal/lsn.js";
import type { ArchiverStats, MemberSample, MemberState } from "../wal/sampler.js";
import { PHASES } from "../cnpg/index.js";
import type { FederationConfig } from "../config.js";

type MemberConfig = FederationConfig["members"][number];

export interface SeenObservation {
  obs: Observation;
  atMs: number;
}

/** The wire observation as the member machine reads it; undefined when it is not a role (unknown). */
export function memberObservation(o: Observation, atMs: number): MemberObservation | undefined {
  if (o.role === "unknown") return undefined;
  return {
    role: o.role,
    phase: o.phase,
    fenced: o.fenced,
    switchInProgress: o.switchInProgress,
    ...(o.demotionToken !== undefined ? { demotionToken: o.demotionToken } : {}),
    ...(o.lastPromotionToken !== undefined ? { lastPromotionToken: o.lastPromotionToken } : {}),
    unrecoverable: o.phase === PHASES.unrecoverable,
    ...(o.reason !== undefined ? { reason: o.reason } : {}),
    atMs,
  };
}

/**
 * A wire lag sample as the evaluator's MemberSample. The xid counters drive the "quiet primary"
 * refinement (WAL an idle primary writes without a commit, e.g. the bgwriter's running-xacts record,
 * is no exposure); a sample without them (an older agent) turns it off (runningXids 1).
 */
export function sampleFromLag(federation: string, member: string, region: string, s: LagSample): MemberSample | undefined {
  const archiver: ArchiverStats = {
    archivedCount: 0,
    lastArchivedWal: s.lastArchivedWal,
    lastArchivedAtMs: s.lastArchivedAtMs,
    failedCount: s.archiveFailedCount ?? 0,
    lastFailedWal: undefined,
    lastFailedAtMs: s.lastFailedAtMs,
    readySegments: s.segmentsReady ?? 0,
    oldestReadyAtMs: undefined,
  };
  const common = { federation, member, region, atMs: s.sampledAtMs, durationMs: 0, serverNowMs: s.sampledAtMs, timeline: s.timeline ?? 1, archiver };
  if (s.role === "primary" && s.currentLsn !== undefined) {
    const xids = s.nextXid !== undefined && s.runningXids !== undefined ? { nextXid: BigInt(s.nextXid), runningXids: s.runningXids } : { nextXid: 0n, runningXids: 1 };
    return { ...common, role: "primary", currentLsn: parseLsn(s.currentLsn), ...xids, standbys: [] };
  }
  if (s.role === "replica") {
    return {
      ...common,
      role: "replica",
      receiveLsn: s.receivedLsn !== undefined ? parseLsn(s.receivedLsn) : undefined,
      replayLsn: s.replayedLsn !== undefined ? parseLsn(s.replayedLsn) : undefined,
      lastReplayAtMs: undefined,
      walReceiver: undefined,
    };
  }
  return undefined;
}

export class MemberSamples {
  private state: MemberState = { status: "unknown" };
  private last: MemberSample | undefined;
  lastAtMs: number | undefined;
  failures = 0;

  constructor(
    readonly federation: string,
    readonly member: string,
    readonly region: string,
  ) {}

  record(s: LagSample, atMs: number): void {
    this.lastAtMs = atMs;
    const sample = s.error ? undefined : sampleFromLag(this.federation, this.member, this.region, s);
    if (sample) {
      this.last = sample;
      this.failures = 0;
      this.state = { status: "up", sample };
      return;
    }
    this.failures++;
    const sinceMs = this.state.status === "unreachable" ? this.state.sinceMs : s.sampledAtMs;
    this.state = {
      status: "unreachable",
      error: new PgfedError("wal.sample_failed", `${this.federation}/${this.member}: ${s.error ?? "sample without a position"}`),
      sinceMs,
      consecutiveFailures: this.failures,
      lastSample: this.last,
    };
  }

  /** Role of the newest successful sample. */
  role(): MemberSample["role"] | undefined {
    return this.state.status === "up" ? this.state.sample.role : undefined;
  }

  /** The member's state for the evaluator; silent for longer than `staleMs` counts as unreachable. */
  current(nowMs: number, staleMs: number): MemberState {
    if (this.state.status === "up" && this.lastAtMs !== undefined && nowMs - this.lastAtMs > staleMs) {
      return {
        status: "unreachable",
        error: new PgfedError("wal.sample_missing", `${this.federation}/${this.member}: no lag sample for ${Math.round((nowMs - this.lastAtMs) / 1000)} s`),
        sinceMs: this.lastAtMs,
        consecutiveFailures: 1,
        lastSample: this.last,
      };
    }
    return this.state;
  }
}

/** Everything one federation's runtime has heard: per member its latest observation and lag samples, per region its last heartbeat. */
export class FederationSignals {
  readonly observations = new Map<string, SeenObservation>();
  readonly samples = new Map<string, MemberSamples>();
  readonly heartbeats = new Map<string, number>();
  /** Commands to this federation's members that their agents refused for a failed proof of sender (newest last, the last 15 minutes). */
  readonly rejectedCommands: { member: string; reason: string; atMs: number }[] = [];

  constructor(
    readonly federation: string,
    readonly members: readonly MemberConfig[],
  ) {
    for (const m of members) this.samples.set(m.name, new MemberSamples(federation, m.name, m.region));
  }

  /** The member's latest observation, if any. */
  obs(member: string): Observation | undefined {
    return this.observations.get(member)?.obs;
  }

  regionOf(member: string): string {
    return this.members.find((m) => m.name === member)?.region ?? "?";
  }

  /** The member's name in the CNPG topology (`spec.replica.primary` values): its `cluster`. */
  topologyName(member: string): string {
    return this.members.find((m) => m.name === member)?.cluster ?? member;
  }

  /** Members observed as reachable, unfenced primary clusters: the ones that accept writes. */
  writable(): MemberConfig[] {
    return this.members.filter((m) => {
      const o = this.obs(m.name);
      return o?.reachable === true && o.role === "primary" && !o.fenced;
    });
  }
}
