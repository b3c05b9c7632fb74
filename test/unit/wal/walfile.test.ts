import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { PgfedError } from "../../../src/errors.js";
import { LSN_MAX, parseLsn } from "../../../src/wal/lsn.js";
import {
  DEFAULT_WAL_SEGMENT_SIZE_BYTES,
  archiveSafeLsn,
  parseWalFileName,
  segmentEndLsn,
  segmentNumber,
  segmentStartLsn,
  validateSegmentSize,
  walFileName,
  walFileNameForSegment,
} from "../../../src/wal/walfile.js";

const MiB = 1024 * 1024;
const segmentSizes = fc.constantFrom(1 * MiB, 2 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, 1024 * MiB);
const timelines = fc.integer({ min: 1, max: 0xffffffff });
// Leave the very last segment out where a "next segment" is needed.
const lsnsBelowLastSegment = fc.bigInt({ min: 0n, max: LSN_MAX - 1024n * BigInt(MiB) });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof PgfedError ? e.code : "not a PgfedError";
  }
  return undefined;
}

describe("walFileName", () => {
  it("names the segment holding an LSN as pg_walfile_name does", () => {
    expect(walFileName(1, parseLsn("0/16B3748"))).toBe("000000010000000000000001");
    expect(walFileName(1, parseLsn("16/B374D848"))).toBe("0000000100000016000000B3");
    expect(walFileName(2, parseLsn("0/5000000"))).toBe("000000020000000000000005");
    expect(walFileName(0x1a, parseLsn("FFFFFFFF/FFFFFFFF"))).toBe("0000001AFFFFFFFF000000FF");
  });

  it("splits the segment number by the segment size", () => {
    expect(walFileName(1, parseLsn("16/B374D848"), 1024 * MiB)).toBe("000000010000001600000002");
    expect(walFileName(1, parseLsn("16/B374D848"), 1 * MiB)).toBe("000000010000001600000B37");
  });

  it("refuses timeline 0, an LSN out of range and a bad segment size", () => {
    expect(codeOf(() => walFileName(0, 0n))).toBe("wal.invalid_timeline");
    expect(codeOf(() => walFileName(1, LSN_MAX + 1n))).toBe("wal.invalid_lsn");
    expect(codeOf(() => walFileName(1, 0n, 3 * MiB))).toBe("wal.invalid_segment_size");
  });
});

describe("validateSegmentSize", () => {
  it("accepts powers of two from 1 MiB to 1 GiB", () => {
    for (let size = MiB; size <= 1024 * MiB; size *= 2) expect(validateSegmentSize(size)).toBe(size);
  });

  it("refuses anything else", () => {
    for (const size of [0, MiB / 2, 3 * MiB, 2048 * MiB, 16.5 * MiB, Number.NaN, -16 * MiB]) {
      expect(codeOf(() => validateSegmentSize(size))).toBe("wal.invalid_segment_size");
    }
  });
});

describe("parseWalFileName", () => {
  it("reads a segment's timeline, number and LSN range", () => {
    expect(parseWalFileName("000000020000000000000005")).toEqual({
      kind: "segment",
      name: "000000020000000000000005",
      timeline: 2,
      segno: 5n,
      startLsn: parseLsn("0/5000000"),
      endLsn: parseLsn("0/6000000"),
      partial: false,
      segmentSizeBytes: DEFAULT_WAL_SEGMENT_SIZE_BYTES,
    });
  });

  it("reports a .partial segment as partial", () => {
    const info = parseWalFileName("000000010000000000000003.partial");
    expect(info).toMatchObject({ kind: "segment", timeline: 1, segno: 3n, partial: true });
  });

  it("recognises timeline history files", () => {
    expect(parseWalFileName("00000002.history")).toEqual({ kind: "history", name: "00000002.history", timeline: 2 });
  });

  it("recognises backup label files and the backup start inside the segment", () => {
    const info = parseWalFileName("000000010000000000000002.00000028.backup");
    expect(info).toMatchObject({
      kind: "backup",
      timeline: 1,
      segno: 2n,
      startLsn: parseLsn("0/2000000"),
      backupStartLsn: parseLsn("0/2000028"),
    });
  });

  it("refuses malformed names with wal.invalid_file_name naming the text", () => {
    const bad = [
      "",
      "00000001000000000000000",
      "0000000100000000000000011",
      "000000010000000000000001.gz",
      "000000010000000000000001.partial.partial",
      "00000001000000000000000a",
      "000000000000000000000001",
      "000000010000000000000100",
      "0000000G.history",
      "000000010000000000000002.01000000.backup",
    ];
    for (const name of bad) {
      let caught: unknown;
      try {
        parseWalFileName(name);
      } catch (e) {
        caught = e;
      }
      expect(caught, name).toBeInstanceOf(PgfedError);
      expect((caught as PgfedError).code).toBe("wal.invalid_file_name");
      expect((caught as PgfedError).message).toContain(`"${name}"`);
    }
  });

  it("accepts a low part that only a smaller segment size allows", () => {
    expect(codeOf(() => parseWalFileName("000000010000000000000100"))).toBe("wal.invalid_file_name");
    expect(parseWalFileName("000000010000000000000100", MiB)).toMatchObject({ segno: 0x100n, startLsn: 0x100n * BigInt(MiB) });
  });

  test.prop([timelines, fc.bigInt({ min: 0n, max: LSN_MAX }), segmentSizes])(
    "round-trips any timeline and LSN through the file name",
    (timeline, lsn, segSize) => {
      const name = walFileName(timeline, lsn, segSize);
      expect(name).toMatch(/^[0-9A-F]{24}$/);
      const info = parseWalFileName(name, segSize);
      if (info.kind !== "segment") throw new Error(`expected a segment, got ${info.kind}`);
      expect(info.timeline).toBe(timeline);
      expect(info.segno).toBe(segmentNumber(lsn, segSize));
      expect(info.startLsn <= lsn && lsn < info.endLsn).toBe(true);
      expect(info.endLsn - info.startLsn).toBe(BigInt(segSize));
      expect(info.partial).toBe(false);
      expect(walFileNameForSegment(timeline, info.segno, segSize)).toBe(name);
      expect(parseWalFileName(`${name}.partial`, segSize)).toMatchObject({ segno: info.segno, partial: true });
    },
  );
});

describe("segment boundaries", () => {
  test.prop([timelines, lsnsBelowLastSegment, segmentSizes])("a segment ends where the next one starts", (timeline, lsn, segSize) => {
    const name = walFileName(timeline, lsn, segSize);
    const end = segmentEndLsn(name, segSize);
    expect(end).toBe(segmentEndLsn(lsn, segSize));
    expect(segmentStartLsn(walFileName(timeline, end, segSize), segSize)).toBe(end);
    expect(segmentNumber(end, segSize)).toBe(segmentNumber(lsn, segSize) + 1n);
    expect(segmentStartLsn(lsn, segSize)).toBe(segmentStartLsn(name, segSize));
    expect(end - segmentStartLsn(name, segSize)).toBe(BigInt(segSize));
  });

  test.prop([timelines, fc.bigInt({ min: 0n, max: LSN_MAX }), fc.bigInt({ min: 0n, max: LSN_MAX }), segmentSizes])(
    "file names sort in LSN order on one timeline (the archiver's order)",
    (timeline, a, b, segSize) => {
      const na = walFileName(timeline, a, segSize);
      const nb = walFileName(timeline, b, segSize);
      const bySegno = Math.sign(Number(segmentNumber(a, segSize) - segmentNumber(b, segSize)));
      expect(na < nb ? -1 : na > nb ? 1 : 0).toBe(bySegno);
    },
  );

  it("refuses a history file where a segment is needed", () => {
    expect(codeOf(() => segmentEndLsn("00000002.history"))).toBe("wal.not_a_segment");
  });
});

describe("archiveSafeLsn", () => {
  it("is the end of a complete archived segment", () => {
    expect(archiveSafeLsn("000000010000000000000004")).toBe(parseLsn("0/5000000"));
  });

  it("is only the start of a .partial segment, whose end is unknown", () => {
    expect(archiveSafeLsn("000000010000000000000004.partial")).toBe(parseLsn("0/4000000"));
  });

  it("is the start of the backup's segment for a backup label", () => {
    expect(archiveSafeLsn("000000010000000000000004.00000028.backup")).toBe(parseLsn("0/4000000"));
  });

  it("knows no position from a timeline history file", () => {
    expect(archiveSafeLsn("00000003.history")).toBeUndefined();
  });
});
