/**
 * WAL file names ⇄ (timeline, LSN), as Postgres builds them (`XLogFileName` in xlog_internal.h).
 *
 * A segment file is named `TTTTTTTTXXXXXXXXYYYYYYYY` (24 upper-case hex digits): the timeline, then
 * the segment number `segno` split as `segno / segmentsPerXLogId` and `segno % segmentsPerXLogId`,
 * where `segmentsPerXLogId = 2^32 / segmentSize`. Other archived files: `<segment>.partial`
 * (an incomplete segment, e.g. the one CNPG uploads at demotion), `TTTTTTTT.history` (timeline
 * history), `<segment>.OOOOOOOO.backup` (backup label; OOOOOOOO = backup start offset in the segment).
 *
 * Pure: no I/O. Errors are `PgfedError`s with codes `wal.invalid_file_name`,
 * `wal.not_a_segment`, `wal.invalid_segment_size`, `wal.invalid_timeline`, `wal.invalid_lsn`.
 */
import { PgfedError } from "../errors.js";
import type { Lsn } from "./lsn.js";
import { isValidLsn } from "./lsn.js";

/** Postgres' default `wal_segment_size` (16 MiB). */
export const DEFAULT_WAL_SEGMENT_SIZE_BYTES = 16 * 1024 * 1024;
const MIN_SEGMENT_SIZE_BYTES = 1024 * 1024;
const MAX_SEGMENT_SIZE_BYTES = 1024 * 1024 * 1024;
const MAX_TIMELINE = 0xffffffff;

/** A WAL segment (possibly `.partial`). `endLsn` is the first byte of the next segment. */
export interface WalSegmentFile {
  readonly kind: "segment";
  readonly name: string;
  readonly timeline: number;
  readonly segno: bigint;
  readonly startLsn: Lsn;
  readonly endLsn: Lsn;
  /** `.partial` suffix: the file holds WAL from `startLsn` up to an unknown point before `endLsn`. */
  readonly partial: boolean;
  readonly segmentSizeBytes: number;
}

/** `TTTTTTTT.history`: the history of timeline `timeline`; carries no WAL position. */
export interface WalHistoryFile {
  readonly kind: "history";
  readonly name: string;
  readonly timeline: number;
}

/** `<segment>.OOOOOOOO.backup`: a backup label; `backupStartLsn` lies inside the segment. */
export interface WalBackupFile {
  readonly kind: "backup";
  readonly name: string;
  readonly timeline: number;
  readonly segno: bigint;
  readonly startLsn: Lsn;
  readonly endLsn: Lsn;
  readonly backupStartLsn: Lsn;
  readonly segmentSizeBytes: number;
}

export type WalFileInfo = WalSegmentFile | WalHistoryFile | WalBackupFile;

const SEGMENT_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})(\.partial)?$/;
const HISTORY_RE = /^([0-9A-F]{8})\.history$/;
const BACKUP_RE = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.([0-9A-F]{8})\.backup$/;

/** Returns `bytes` if it is a valid `wal_segment_size`: a power of two from 1 MiB to 1 GiB. */
export function validateSegmentSize(bytes: number): number {
  const ok =
    Number.isSafeInteger(bytes) &&
    bytes >= MIN_SEGMENT_SIZE_BYTES &&
    bytes <= MAX_SEGMENT_SIZE_BYTES &&
    (bytes & (bytes - 1)) === 0;
  if (!ok) {
    throw new PgfedError(
      "wal.invalid_segment_size",
      `invalid WAL segment size ${bytes} (expected a power of two between 1 MiB and 1 GiB)`,
      { segmentSizeBytes: bytes },
    );
  }
  return bytes;
}

function segmentsPerXLogId(segSize: number): bigint {
  return 0x1_0000_0000n / BigInt(segSize);
}

function checkTimeline(timeline: number): void {
  if (!Number.isInteger(timeline) || timeline < 1 || timeline > MAX_TIMELINE) {
    throw new PgfedError("wal.invalid_timeline", `invalid timeline ${timeline} (expected 1..4294967295)`, { timeline });
  }
}

function checkLsn(lsn: Lsn): void {
  if (!isValidLsn(lsn)) throw new PgfedError("wal.invalid_lsn", `LSN out of range: ${lsn}`, { lsn: lsn.toString() });
}

function hex8(n: bigint | number): string {
  return n.toString(16).toUpperCase().padStart(8, "0");
}

/** The number of the segment holding `lsn`. */
export function segmentNumber(lsn: Lsn, segSize: number = DEFAULT_WAL_SEGMENT_SIZE_BYTES): bigint {
  validateSegmentSize(segSize);
  checkLsn(lsn);
  return lsn / BigInt(segSize);
}

/** The file name of segment `segno` on `timeline`. */
export function walFileNameForSegment(
  timeline: number,
  segno: bigint,
  segSize: number = DEFAULT_WAL_SEGMENT_SIZE_BYTES,
): string {
  validateSegmentSize(segSize);
  checkTimeline(timeline);
  const perId = segmentsPerXLogId(segSize);
  if (segno < 0n || segno / perId > 0xffffffffn) {
    throw new PgfedError("wal.invalid_lsn", `segment number out of range: ${segno}`, { segno: segno.toString() });
  }
  return `${hex8(timeline)}${hex8(segno / perId)}${hex8(segno % perId)}`;
}

/** The name of the segment file holding `lsn` on `timeline` (what `pg_walfile_name(lsn)` returns). */
export function walFileName(timeline: number, lsn: Lsn, segSize: number = DEFAULT_WAL_SEGMENT_SIZE_BYTES): string {
  return walFileNameForSegment(timeline, segmentNumber(lsn, segSize), segSize);
}

function invalidName(name: string, why: string): PgfedError {
  return new PgfedError("wal.invalid_file_name", `invalid WAL file name "${name}": ${why}`, { name });
}

function parseTimeline(name: string, hex: string): number {
  const timeline = Number.parseInt(hex, 16);
  if (timeline === 0) throw invalidName(name, "timeline 0 does not exist");
  return timeline;
}

function parseSegno(name: string, hiHex: string, loHex: string, segSize: number): bigint {
  const perId = segmentsPerXLogId(segSize);
  const lo = BigInt(`0x${loHex}`);
  // With 16 MiB segments only 00000000..000000FF are valid low parts; higher means another size.
  if (lo >= perId) {
    throw invalidName(name, `low part ${loHex} is not below ${hex8(perId)} for ${segSize}-byte segments`);
  }
  return BigInt(`0x${hiHex}`) * perId + lo;
}

/**
 * Parses a WAL archive file name. Upper-case hex only, as Postgres writes and checks them
 * (`IsXLogFileName`). Throws `wal.invalid_file_name` naming the text.
 */
export function parseWalFileName(name: string, segSize: number = DEFAULT_WAL_SEGMENT_SIZE_BYTES): WalFileInfo {
  validateSegmentSize(segSize);
  const size = BigInt(segSize);

  const seg = SEGMENT_RE.exec(name);
  if (seg) {
    const [, tli, hi, lo, partialSuffix] = seg as unknown as [string, string, string, string, string | undefined];
    const timeline = parseTimeline(name, tli);
    const segno = parseSegno(name, hi, lo, segSize);
    return {
      kind: "segment",
      name,
      timeline,
      segno,
      startLsn: segno * size,
      endLsn: (segno + 1n) * size,
      partial: partialSuffix !== undefined,
      segmentSizeBytes: segSize,
    };
  }

  const hist = HISTORY_RE.exec(name);
  if (hist) {
    const [, tli] = hist as unknown as [string, string];
    return { kind: "history", name, timeline: parseTimeline(name, tli) };
  }

  const backup = BACKUP_RE.exec(name);
  if (backup) {
    const [, tli, hi, lo, offsetHex] = backup as unknown as [string, string, string, string, string];
    const timeline = parseTimeline(name, tli);
    const segno = parseSegno(name, hi, lo, segSize);
    const offset = BigInt(`0x${offsetHex}`);
    if (offset >= size) throw invalidName(name, `backup offset ${offsetHex} is beyond the ${segSize}-byte segment`);
    return {
      kind: "backup",
      name,
      timeline,
      segno,
      startLsn: segno * size,
      endLsn: (segno + 1n) * size,
      backupStartLsn: segno * size + offset,
      segmentSizeBytes: segSize,
    };
  }

  throw invalidName(name, "expected a 24-hex-digit segment name, optionally .partial, or TTTTTTTT.history, or <segment>.OOOOOOOO.backup");
}

function parseSegmentFile(name: string, segSize: number): WalSegmentFile | WalBackupFile {
  const info = parseWalFileName(name, segSize);
  if (info.kind === "history") {
    throw new PgfedError("wal.not_a_segment", `"${name}" is a timeline history file, not a WAL segment`, { name });
  }
  return info;
}

/** First LSN of a segment: of the segment named `name`, or of the segment holding `lsn`. */
export function segmentStartLsn(nameOrLsn: string | Lsn, segSize: number = DEFAULT_WAL_SEGMENT_SIZE_BYTES): Lsn {
  if (typeof nameOrLsn === "string") return parseSegmentFile(nameOrLsn, segSize).startLsn;
  return segmentNumber(nameOrLsn, segSize) * BigInt(segSize);
}

/**
 * End of a segment = the first LSN of the next segment: of the segment named `name`, or of the
 * segment holding `lsn`. For the last segment of the LSN space this is 2^64 (one past LSN_MAX).
 * Pure geometry: for a `.partial` name it is still the segment's end (see archiveSafeLsn).
 */
export function segmentEndLsn(nameOrLsn: string | Lsn, segSize: number = DEFAULT_WAL_SEGMENT_SIZE_BYTES): Lsn {
  if (typeof nameOrLsn === "string") return parseSegmentFile(nameOrLsn, segSize).endLsn;
  return (segmentNumber(nameOrLsn, segSize) + 1n) * BigInt(segSize);
}

/**
 * The position up to which the archive surely holds WAL, given the last archived file name
 * (`pg_stat_archiver.last_archived_wal`). Conservative, never past what the archive holds:
 * - complete segment → its end (the archiver ships segments in order, so all before it are there);
 * - `.partial` → its start (it ends at an unknown point inside; pass a precise LSN if you know one);
 * - `.backup` → the start of the segment holding the backup start (the label says nothing about it);
 * - `.history` → undefined: no position; keep the last segment-derived position instead.
 */
export function archiveSafeLsn(lastArchivedWal: string, segSize: number = DEFAULT_WAL_SEGMENT_SIZE_BYTES): Lsn | undefined {
  const info = parseWalFileName(lastArchivedWal, segSize);
  switch (info.kind) {
    case "segment":
      return info.partial ? info.startLsn : info.endLsn;
    case "backup":
      return info.startLsn;
    case "history":
      return undefined;
  }
}

