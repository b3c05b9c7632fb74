import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import {
  INVALID_LSN,
  LSN_MAX,
  formatLsn,
  isLsnText,
  isValidLsn,
  lsnAhead,
  maxLsn,
  minLsn,
  parseLsn,
  parseLsnOrNull,
} from "../../../src/wal/lsn.js";

const anyLsn = fc.bigInt({ min: 0n, max: LSN_MAX });
const hexHalf = fc.integer({ min: 0, max: 0xffffffff }).map((n) => n.toString(16));

describe("LSN text", () => {
  it("parses the Postgres text form into a 64-bit position", () => {
    expect(parseLsn("16/B374D848")).toBe(0x16b374d848n);
    expect(parseLsn("0/0")).toBe(INVALID_LSN);
    expect(parseLsn(" ffffffff/ffffffff ")).toBe(LSN_MAX);
  });

  it("formats like Postgres: upper case, no leading zeros", () => {
    expect(formatLsn(0x16b374d848n)).toBe("16/B374D848");
    expect(formatLsn(0x5000000n)).toBe("0/5000000");
    expect(formatLsn(0n)).toBe("0/0");
  });

  it("rejects text that is not an LSN, naming it", () => {
    expect(() => parseLsn("16B374D848")).toThrow(/"16B374D848"/);
    expect(() => parseLsn("1/123456789")).toThrow(/invalid LSN/);
    expect(isLsnText("x/1")).toBe(false);
    expect(parseLsnOrNull(null)).toBeUndefined();
  });

  it("refuses to format a bigint outside the LSN range", () => {
    expect(() => formatLsn(-1n)).toThrow(RangeError);
    expect(() => formatLsn(LSN_MAX + 1n)).toThrow(RangeError);
    expect(isValidLsn(LSN_MAX)).toBe(true);
    expect(isValidLsn(LSN_MAX + 1n)).toBe(false);
  });

  test.prop([anyLsn])("format then parse gives back the same LSN", (lsn) => {
    expect(parseLsn(formatLsn(lsn))).toBe(lsn);
  });

  test.prop([hexHalf, hexHalf])("parse then format gives the canonical text of any hex pair", (hi, lo) => {
    const text = `${hi}/${lo}`;
    expect(formatLsn(parseLsn(text))).toBe(text.toUpperCase());
    expect(isLsnText(text)).toBe(true);
  });
});

describe("LSN ordering", () => {
  test.prop([anyLsn, anyLsn])("lsnAhead is a − b when a is ahead and never negative", (a, b) => {
    const ahead = lsnAhead(a, b);
    expect(ahead >= 0n).toBe(true);
    expect(ahead).toBe(a > b ? a - b : 0n);
  });

  test.prop([fc.array(fc.option(anyLsn, { nil: undefined }))])("maxLsn and minLsn bound every known position", (lsns) => {
    const known = lsns.filter((l): l is bigint => l !== undefined);
    const hi = maxLsn(...lsns);
    const lo = minLsn(...lsns);
    if (known.length === 0) {
      expect(hi).toBeUndefined();
      expect(lo).toBeUndefined();
      return;
    }
    for (const l of known) {
      expect(hi !== undefined && l <= hi).toBe(true);
      expect(lo !== undefined && l >= lo).toBe(true);
    }
    expect(known).toContain(hi);
    expect(known).toContain(lo);
  });
});
