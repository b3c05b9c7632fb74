/** Synthetic samples for the enforcement rules: no Postgres, time passed in by the test. */
import { PgfedError } from "../../../src/errors.js";
import type { Lsn } from "../../../src/wal/lsn.js";
import type { ArchiverStats, MemberState, PrimarySample, ReplicaSample } from "../../../src/wal/sampler.js";
import { walFileName } from "../../../src/wal/walfile.js";

export const SEG = 16n * 1024n * 1024n;
export const T0 = 1_800_000_000_000;

export function archiver(over: Partial<ArchiverStats> = {}): ArchiverStats {
  return {
    archivedCount: 1,
    lastArchivedWal: undefined,
    lastArchivedAtMs: undefined,
    failedCount: 0,
    lastFailedWal: undefined,
    lastFailedAtMs: undefined,
    readySegments: 0,
    oldestReadyAtMs: undefined,
    ...over,
  };
}

/** The name of the last complete segment before `lsn` (what the archiver shipped last). */
export function archivedBefore(lsn: Lsn): string {
  return walFileName(1, lsn - 1n);
}

export function primary(atMs: number, currentLsn: Lsn, over: Partial<PrimarySample> = {}): PrimarySample {
  return {
    federation: "orders",
    member: "pg-eu",
    region: "eu-west",
    atMs,
    durationMs: 2,
    serverNowMs: atMs,
    timeline: 1,
    archiver: archiver(),
    role: "primary",
    currentLsn,
    // By default every LSN change is a write transaction: the xid counter moves with the LSN.
    nextXid: 1000n + currentLsn,
    runningXids: 0,
    standbys: [],
    ...over,
  };
}

export function replica(atMs: number, over: Partial<ReplicaSample> = {}): ReplicaSample {
  return {
    federation: "orders",
    member: "pg-us",
    region: "us-east",
    atMs,
    durationMs: 2,
    serverNowMs: atMs,
    timeline: 1,
    archiver: archiver({ archivedCount: 0 }),
    role: "replica",
    receiveLsn: undefined,
    replayLsn: undefined,
    lastReplayAtMs: undefined,
    walReceiver: undefined,
    ...over,
  };
}

export function up(sample: PrimarySample | ReplicaSample): MemberState {
  return { status: "up", sample };
}

export function down(sinceMs: number, last: PrimarySample | ReplicaSample | undefined): MemberState {
  return { status: "unreachable", error: new PgfedError("wal.member_unreachable", "sampling pg-eu of orders: connect ECONNREFUSED"), sinceMs, consecutiveFailures: 1, lastSample: last };
}

/** A primary member whose newest sample is `state`. */
export class FakePrimary {
  state: MemberState = { status: "unknown" };
  push(s: PrimarySample): MemberState {
    this.state = up(s);
    return this.state;
  }
}
