/**
 * The demotion token codec (CNPG.md, "The demotion token"): standard base64, with padding, of a
 * JSON object of six non-empty strings taken from `pg_controldata` of the cleanly shut down old
 * primary. pgfed decodes tokens to check and log them; it hands CNPG the raw string it read from
 * `status.demotionToken`, never a re-encoding, so CNPG compares exactly what it wrote.
 */
import { PgfedError, errorMessage } from "../errors.js";
import { isLsnText, parseLsn } from "../wal/lsn.js";
import type { Lsn } from "../wal/lsn.js";

/** The token's keys, in the order CNPG's Go struct marshals them. */
export const TOKEN_KEYS = [
  "latestCheckpointTimelineID",
  "redoWalFile",
  "databaseSystemIdentifier",
  "latestCheckpointREDOLocation",
  "timeOfLatestCheckpoint",
  "operatorVersion",
] as const;
export type TokenKey = (typeof TOKEN_KEYS)[number];

export type DemotionTokenContent = { readonly [K in TokenKey]: string };

/**
 * A decoded token: the six strings, their typed forms, and any keys this version does not know.
 * Unknown keys are kept (not refused) because CNPG may add fields in a later release and a
 * decoder that refused them would block every switchover after an operator upgrade.
 */
export type DemotionToken = DemotionTokenContent & {
  readonly timeline: number;
  readonly redoLsn: Lsn;
  readonly systemId: string;
  readonly extra: Readonly<Record<string, unknown>>;
};

export type TryDecodeTokenResult = { ok: true; token: DemotionToken } | { ok: false; error: PgfedError };

const BASE64_ALPHABET = /^[A-Za-z0-9+/]*$/;
const MAX_TIMELINE = 0xffffffff; // TimeLineID is a uint32 in Postgres

/** Decodes a token; throws `cnpg.invalid_token` saying exactly what is wrong with it. */
export function decodeToken(text: string): DemotionToken {
  const json = decodeBase64Strict(text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (err) {
    throw invalidToken(`demotion token is not JSON once base64-decoded (${errorMessage(err)})`, {}, err);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw invalidToken(`demotion token is not a JSON object (got ${jsonKind(parsed)})`);
  }
  const record = parsed as Record<string, unknown>;
  const missing = TOKEN_KEYS.filter((key) => !Object.hasOwn(record, key));
  if (missing.length > 0) {
    throw invalidToken(`demotion token lacks ${missing.map((k) => `"${k}"`).join(", ")}`, { missing });
  }
  for (const key of TOKEN_KEYS) {
    const value = record[key];
    if (typeof value !== "string") {
      throw invalidToken(`demotion token field "${key}" is not a string (got ${jsonKind(value)})`, { field: key });
    }
  }
  const content = pickContent(record as Record<TokenKey, string>);
  const typed = checkContent(content, "cnpg.invalid_token", "demotion token");
  const extra: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (!(TOKEN_KEYS as readonly string[]).includes(key)) extra[key] = value;
  }
  return { ...content, ...typed, extra };
}

export function tryDecodeToken(text: string): TryDecodeTokenResult {
  try {
    return { ok: true, token: decodeToken(text) };
  } catch (err) {
    if (err instanceof PgfedError) return { ok: false, error: err };
    throw err;
  }
}

/**
 * Encodes content the way CNPG does (keys in CNPG's order, standard padded base64). Refuses content
 * CNPG would refuse, so a token pgfed builds (the lab's stand-in) always decodes. A DemotionToken
 * may be passed as is: only the six keys and its `extra` keys are written.
 */
export function encodeToken(content: DemotionTokenContent & { readonly extra?: Readonly<Record<string, unknown>> }): string {
  for (const key of TOKEN_KEYS) {
    if (typeof content[key] !== "string") {
      throw invalidToken(`cannot encode demotion token: field "${key}" is not a string`, { field: key });
    }
  }
  const picked = pickContent(content);
  checkContent(picked, "cnpg.invalid_token", "cannot encode demotion token:");
  const body: Record<string, unknown> = { ...picked };
  for (const [key, value] of Object.entries(content.extra ?? {})) {
    if (!(TOKEN_KEYS as readonly string[]).includes(key)) body[key] = value;
  }
  return Buffer.from(JSON.stringify(body), "utf8").toString("base64");
}

/**
 * Builds token content from `pg_controldata` text output, as CNPG's instance manager does after
 * shutting the old primary down. Run pg_controldata with LC_ALL=C: the labels are translated
 * otherwise. It does not check the cluster state; callers check `databaseClusterState` is "shut down".
 */
export function tokenFromControlData(pgControldataOutput: string, operatorVersion: string): DemotionTokenContent {
  const fields = parseControlData(pgControldataOutput);
  const content: DemotionTokenContent = {
    latestCheckpointTimelineID: controlField(fields, "Latest checkpoint's TimeLineID"),
    redoWalFile: controlField(fields, "Latest checkpoint's REDO WAL file"),
    databaseSystemIdentifier: controlField(fields, "Database system identifier"),
    latestCheckpointREDOLocation: controlField(fields, "Latest checkpoint's REDO location"),
    timeOfLatestCheckpoint: controlField(fields, "Time of latest checkpoint"),
    operatorVersion,
  };
  checkContent(content, "cnpg.invalid_controldata", "cannot build a demotion token from pg_controldata:");
  return content;
}

/** The "Database cluster state" line: "shut down", "shut down in recovery", "in production", "in archive recovery"… */
export function databaseClusterState(pgControldataOutput: string): string {
  return controlField(parseControlData(pgControldataOutput), "Database cluster state");
}

/**
 * `pg_controldata` output as label → value. Splits each line at its first colon, as CNPG does:
 * values such as times contain colons, and some labels are followed by no space at all.
 */
export function parseControlData(pgControldataOutput: string): ReadonlyMap<string, string> {
  const fields = new Map<string, string>();
  for (const line of pgControldataOutput.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return fields;
}

function controlField(fields: ReadonlyMap<string, string>, label: string): string {
  const value = fields.get(label);
  if (value === undefined || value === "") {
    throw new PgfedError("cnpg.invalid_controldata", `pg_controldata output has no "${label}" line (is it pg_controldata output, run with LC_ALL=C?)`, {
      label,
    });
  }
  return value;
}

/** Strict standard base64: alphabet, length and padding checked, and the text must be the canonical encoding of its bytes. */
function decodeBase64Strict(text: string): string {
  if (text === "") throw invalidToken("demotion token is empty");
  const body = text.replace(/={1,2}$/, "");
  if (!BASE64_ALPHABET.test(body)) {
    const offset = [...body].findIndex((ch) => !/[A-Za-z0-9+/]/.test(ch));
    const ch = [...body][offset] ?? "";
    if (ch === "=") throw invalidToken(`demotion token is not base64: padding "=" at offset ${offset} before the end`, { offset });
    throw invalidToken(`demotion token is not base64: character ${JSON.stringify(ch)} at offset ${offset} is outside the base64 alphabet`, {
      offset,
    });
  }
  if (text.length % 4 !== 0) {
    throw invalidToken(`demotion token is not base64: length ${text.length} is not a multiple of 4 (missing or extra padding)`);
  }
  const bytes = Buffer.from(text, "base64");
  // Node ignores bad padding bits and stray '='; re-encoding catches every non-canonical form at once.
  if (bytes.toString("base64") !== text) {
    throw invalidToken("demotion token is not base64: bad padding");
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (err) {
    throw invalidToken("demotion token is not JSON once base64-decoded (not UTF-8 text)", {}, err);
  }
}

/** Checks every value is non-empty, the timeline a positive integer and the REDO location an LSN; returns the typed forms. */
function checkContent(
  content: DemotionTokenContent,
  code: string,
  what: string,
): { timeline: number; redoLsn: Lsn; systemId: string } {
  const fail = (message: string, field: TokenKey): PgfedError => new PgfedError(code, `${what} ${message}`, { field });
  for (const key of TOKEN_KEYS) {
    if (content[key] === "") throw fail(`field "${key}" is empty`, key);
  }
  const timelineText = content.latestCheckpointTimelineID;
  const timeline = Number(timelineText);
  if (!/^[1-9][0-9]*$/.test(timelineText) || timeline > MAX_TIMELINE) {
    throw fail(`timeline ${JSON.stringify(timelineText)} (latestCheckpointTimelineID) is not a positive integer`, "latestCheckpointTimelineID");
  }
  const redoText = content.latestCheckpointREDOLocation;
  if (!isLsnText(redoText) || redoText !== redoText.trim()) {
    throw fail(`REDO location ${JSON.stringify(redoText)} (latestCheckpointREDOLocation) is not an LSN`, "latestCheckpointREDOLocation");
  }
  return { timeline, redoLsn: parseLsn(redoText), systemId: content.databaseSystemIdentifier };
}

function pickContent(source: { readonly [K in TokenKey]: string }): DemotionTokenContent {
  return {
    latestCheckpointTimelineID: source.latestCheckpointTimelineID,
    redoWalFile: source.redoWalFile,
    databaseSystemIdentifier: source.databaseSystemIdentifier,
    latestCheckpointREDOLocation: source.latestCheckpointREDOLocation,
    timeOfLatestCheckpoint: source.timeOfLatestCheckpoint,
    operatorVersion: source.operatorVersion,
  };
}

function invalidToken(message: string, details: Record<string, unknown> = {}, cause?: unknown): PgfedError {
  return new PgfedError("cnpg.invalid_token", message, details, cause === undefined ? undefined : { cause });
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/**
 * Whether a primary on `timelineID` was promoted with `token` or after it: CNPG empties
 * `status.lastPromotionToken` once the token leaves the spec (internal/controller/cluster_status.go),
 * so a promotion that already happened is recognised by its result instead: same system, a
 * timeline newer than the one the token was taken on. An undecodable token proves nothing.
 */
export function promotedPastToken(token: string, timelineID: number | undefined, systemID?: string): boolean {
  const decoded = tryDecodeToken(token);
  if (!decoded.ok || timelineID === undefined) return false;
  const tokenTimeline = Number(decoded.token.latestCheckpointTimelineID);
  if (!Number.isInteger(tokenTimeline)) return false;
  if (systemID !== undefined && systemID !== "" && systemID !== decoded.token.databaseSystemIdentifier) return false;
  return timelineID > tokenTimeline;
}
