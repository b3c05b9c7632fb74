/**
 * Log sequence numbers are 64-bit positions in the WAL stream. Inside pgfed they are `bigint`;
 * the text form `X/Y` (two hex halves) exists only at the edges (SQL results, CNPG tokens, logs).
 */
export type Lsn = bigint;

const LSN_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
const MAX_LSN = (1n << 64n) - 1n;

export const INVALID_LSN: Lsn = 0n;

/** Parses `16/B374D848`; throws naming the bad text. */
export function parseLsn(text: string): Lsn {
  const m = LSN_RE.exec(text.trim());
  if (!m) throw new Error(`invalid LSN "${text}" (expected two hex numbers like 0/16B3748)`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Like parseLsn, but returns undefined for null/undefined (pg returns NULL for unknown positions). */
export function parseLsnOrNull(text: string | null | undefined): Lsn | undefined {
  return text === null || text === undefined ? undefined : parseLsn(text);
}

export function isLsnText(text: string): boolean {
  return LSN_RE.test(text.trim());
}

/** Formats as Postgres does: upper-case hex, no leading zeros in either half. */
export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > MAX_LSN) throw new RangeError(`LSN out of range: ${lsn}`);
  const hi = lsn >> 32n;
  const lo = lsn & 0xffffffffn;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

/** Bytes from `b` to `a` (a − b), never negative: how far `a` is ahead of `b`. */
export function lsnAhead(a: Lsn, b: Lsn): bigint {
  return a > b ? a - b : 0n;
}

export function maxLsn(...lsns: (Lsn | undefined)[]): Lsn | undefined {
  let best: Lsn | undefined;
  for (const l of lsns) if (l !== undefined && (best === undefined || l > best)) best = l;
  return best;
}

/** The largest LSN Postgres can express (FFFFFFFF/FFFFFFFF). */
export const LSN_MAX: Lsn = MAX_LSN;

/** True for a bigint inside the 64-bit LSN range. */
export function isValidLsn(lsn: bigint): boolean {
  return lsn >= 0n && lsn <= MAX_LSN;
}

export function minLsn(...lsns: (Lsn | undefined)[]): Lsn | undefined {
  let best: Lsn | undefined;
  for (const l of lsns) if (l !== undefined && (best === undefined || l < best)) best = l;
  return best;
}
