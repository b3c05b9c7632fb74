import { fc, test } from "@fast-check/vitest";
import { describe, expect, it } from "vitest";
import { PgfedError } from "../../../src/errors.js";
import { formatLsn } from "../../../src/wal/lsn.js";
import {
  TOKEN_KEYS,
  databaseClusterState,
  decodeToken,
  encodeToken,
  parseControlData,
  tokenFromControlData,
  tryDecodeToken,
} from "../../../src/cnpg/index.js";
import type { DemotionTokenContent } from "../../../src/cnpg/index.js";

// Captured from PostgreSQL 15.x (Debian 12) with LC_ALL=C: initdb, writes, pg_basebackup -R of a
// standby, then `pg_ctl stop -m fast` of each and `pg_controldata -D <datadir>`.
/** The cleanly shut down primary: what CNPG reads to build the demotion token. */
const CONTROLDATA_PRIMARY_SHUT_DOWN = `pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7711729981959530990
Database cluster state:               shut down
pg_control last modified:             Tue Nov 24 13:31:49 2026
Latest checkpoint location:           0/4000060
Latest checkpoint's REDO location:    0/4000060
Latest checkpoint's REDO WAL file:    000000010000000000000004
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
Latest checkpoint's full_page_writes: on
Latest checkpoint's NextXID:          0:725
Latest checkpoint's NextOID:          16387
Latest checkpoint's NextMultiXactId:  1
Latest checkpoint's NextMultiOffset:  0
Latest checkpoint's oldestXID:        716
Latest checkpoint's oldestXID's DB:   1
Latest checkpoint's oldestActiveXID:  0
Latest checkpoint's oldestMultiXid:   1
Latest checkpoint's oldestMulti's DB: 1
Latest checkpoint's oldestCommitTsXid:0
Latest checkpoint's newestCommitTsXid:0
Time of latest checkpoint:            Tue Nov 24 13:31:49 2026
Fake LSN counter for unlogged rels:   0/3E8
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
Backup start location:                0/0
Backup end location:                  0/0
End-of-backup record required:        no
wal_level setting:                    replica
wal_log_hints setting:                off
max_connections setting:              100
max_worker_processes setting:         8
max_wal_senders setting:              10
max_prepared_xacts setting:           0
max_locks_per_xact setting:           64
track_commit_timestamp setting:       off
Maximum data alignment:               8
Database block size:                  8192
Blocks per segment of large relation: 131072
WAL block size:                       8192
Bytes per WAL segment:                16777216
Maximum length of identifiers:        64
Maximum columns in an index:          32
Maximum size of a TOAST chunk:        1996
Size of a large-object chunk:         2048
Date/time type storage:               64-bit integers
Float8 argument passing:              by value
Data page checksum version:           0
Mock authentication nonce:            585ae22116c036b5811955e74651899997de2bf7cc0d48c2a1ebad936cb97cbe
`;

/**
 * `output` with the lines of `changed` put in place of the lines with the same label, so that
 * another capture of the same cluster lists only what differs.
 */
function withLines(output: string, changed: string): string {
  const label = (line: string): string => line.slice(0, line.indexOf(":"));
  const byLabel = new Map(changed.split("\n").map((line) => [label(line), line]));
  const lines = output.split("\n");
  for (const l of byLabel.keys()) if (!lines.some((line) => label(line) === l)) throw new Error(`fixture: no "${l}" line to replace`);
  return lines.map((line) => byLabel.get(label(line)) ?? line).join("\n");
}

/** Its standby after a fast shutdown. */
const CONTROLDATA_STANDBY_SHUT_DOWN = withLines(
  CONTROLDATA_PRIMARY_SHUT_DOWN,
  `Database cluster state:               shut down in recovery
pg_control last modified:             Tue Nov 24 13:31:50 2026
Latest checkpoint location:           0/3000098
Latest checkpoint's REDO location:    0/3000028
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's NextOID:          24576
Latest checkpoint's oldestActiveXID:  725
Time of latest checkpoint:            Tue Nov 24 13:31:02 2026
Minimum recovery ending location:     0/4000000
Min recovery ending loc's timeline:   1`,
);

/** The primary while it was running. */
const CONTROLDATA_PRIMARY_RUNNING = withLines(
  CONTROLDATA_PRIMARY_SHUT_DOWN,
  `Database cluster state:               in production
pg_control last modified:             Tue Nov 24 13:31:02 2026
Latest checkpoint location:           0/1511A88
Latest checkpoint's REDO location:    0/1511A88
Latest checkpoint's REDO WAL file:    000000010000000000000001
Latest checkpoint's NextXID:          0:724
Latest checkpoint's NextOID:          13573
Time of latest checkpoint:            Tue Nov 24 13:30:55 2026`,
);

const CONTENT: DemotionTokenContent = {
  latestCheckpointTimelineID: "1",
  redoWalFile: "000000010000000000000004",
  databaseSystemIdentifier: "7711729981959530990",
  latestCheckpointREDOLocation: "0/4000060",
  timeOfLatestCheckpoint: "Tue Nov 24 13:31:49 2026",
  operatorVersion: "1.25.0",
};

/** Base64 of arbitrary JSON text, for tokens CNPG would never write. */
function b64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}

function tokenWith(overrides: Record<string, unknown>): string {
  return b64(JSON.stringify({ ...CONTENT, ...overrides }));
}

function decodeError(text: string): PgfedError {
  const result = tryDecodeToken(text);
  if (result.ok) throw new Error("expected the token to be refused");
  expect(result.error.code).toBe("cnpg.invalid_token");
  return result.error;
}

const pick = (c: DemotionTokenContent): DemotionTokenContent => Object.fromEntries(TOKEN_KEYS.map((k) => [k, c[k]])) as DemotionTokenContent;

describe("encodeToken and decodeToken", () => {
  it("decodes a token as CNPG writes it (standard padded base64 of the JSON object, keys in CNPG's order)", () => {
    const cnpgToken = b64(
      '{"latestCheckpointTimelineID":"1","redoWalFile":"000000010000000000000004",' +
        '"databaseSystemIdentifier":"7711729981959530990","latestCheckpointREDOLocation":"0/4000060",' +
        '"timeOfLatestCheckpoint":"Tue Nov 24 13:31:49 2026","operatorVersion":"1.25.0"}',
    );
    const token = decodeToken(cnpgToken);
    expect(pick(token)).toEqual(CONTENT);
    expect(token.timeline).toBe(1);
    expect(token.redoLsn).toBe(0x4000060n);
    expect(token.systemId).toBe("7711729981959530990");
    expect(token.extra).toEqual({});
    expect(encodeToken(CONTENT)).toBe(cnpgToken);
  });

  it("types a later timeline and a REDO location past 4 GiB", () => {
    const token = decodeToken(encodeToken({ ...CONTENT, latestCheckpointTimelineID: "12", latestCheckpointREDOLocation: "1A/B374D848" }));
    expect(token.timeline).toBe(12);
    expect(token.redoLsn).toBe((0x1an << 32n) | 0xb374d848n);
  });

  test.prop({
    timeline: fc.integer({ min: 1, max: 0xffffffff }),
    redo: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
    redoWalFile: fc.string({ unit: "binary", minLength: 1 }),
    databaseSystemIdentifier: fc.string({ unit: "binary", minLength: 1 }),
    timeOfLatestCheckpoint: fc.string({ unit: "binary", minLength: 1 }),
    operatorVersion: fc.string({ unit: "binary", minLength: 1 }),
  })("gives back the content it encoded, for any non-empty strings and any valid timeline and LSN", (p) => {
    const content: DemotionTokenContent = {
      latestCheckpointTimelineID: String(p.timeline),
      redoWalFile: p.redoWalFile,
      databaseSystemIdentifier: p.databaseSystemIdentifier,
      latestCheckpointREDOLocation: formatLsn(p.redo),
      timeOfLatestCheckpoint: p.timeOfLatestCheckpoint,
      operatorVersion: p.operatorVersion,
    };
    const text = encodeToken(content);
    expect(text).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
    expect(text.length % 4).toBe(0);
    const token = decodeToken(text);
    expect(pick(token)).toEqual(content);
    expect(token.timeline).toBe(p.timeline);
    expect(token.redoLsn).toBe(p.redo);
    expect(token.systemId).toBe(p.databaseSystemIdentifier);
  });

  test.prop([fc.string({ unit: "binary" })])("refuses any other text with a PgfedError, never a crash", (text) => {
    const result = tryDecodeToken(text);
    if (!result.ok) expect(result.error).toBeInstanceOf(PgfedError);
  });

  it("keeps keys a later CNPG may add, and writes them back when re-encoding", () => {
    const token = decodeToken(tokenWith({ walLevel: "replica", future: { nested: true } }));
    expect(token.extra).toEqual({ walLevel: "replica", future: { nested: true } });
    expect(decodeToken(encodeToken(token))).toEqual(token);
  });

  it("refuses to encode content CNPG would refuse", () => {
    expect(() => encodeToken({ ...CONTENT, operatorVersion: "" })).toThrow('cannot encode demotion token: field "operatorVersion" is empty');
    expect(() => encodeToken({ ...CONTENT, latestCheckpointTimelineID: "0" })).toThrow(
      expect.objectContaining({ code: "cnpg.invalid_token" }),
    );
  });
});

describe("decodeToken refuses", () => {
  it("an empty token", () => {
    expect(decodeError("").message).toBe("demotion token is empty");
  });

  it("a token with characters outside the standard base64 alphabet, naming the first", () => {
    expect(decodeError("eyJh!mMi").message).toBe('demotion token is not base64: character "!" at offset 4 is outside the base64 alphabet');
    // base64url is not what CNPG writes.
    expect(decodeError(tokenWith({}).replace(/\+|\//, "-").replace(/[A-Z]/, "_")).message).toMatch(/character "[-_]" at offset \d+ is outside/);
    expect(decodeError(` ${tokenWith({})}`).message).toContain('character " " at offset 0');
    expect(decodeError(`${tokenWith({})}\n`).message).toContain('character "\\n"');
  });

  it("a token whose padding is missing, misplaced or not canonical", () => {
    expect(decodeError("eyJhIjoiYiJ9".slice(0, 11)).message).toBe(
      "demotion token is not base64: length 11 is not a multiple of 4 (missing or extra padding)",
    );
    expect(decodeError("QQ==QQ==").message).toBe('demotion token is not base64: padding "=" at offset 2 before the end');
    expect(decodeError("QR==").message).toBe("demotion token is not base64: bad padding");
    expect(decodeError("QQ=").message).toContain("length 3 is not a multiple of 4");
  });

  it("a token that is not JSON", () => {
    expect(decodeError(b64("not json")).message).toMatch(/^demotion token is not JSON once base64-decoded \(/);
    expect(decodeError(Buffer.from([0xff, 0xfe, 0x7b]).toString("base64")).message).toBe(
      "demotion token is not JSON once base64-decoded (not UTF-8 text)",
    );
  });

  it("a token that is JSON but not an object", () => {
    expect(decodeError(b64("[]")).message).toBe("demotion token is not a JSON object (got array)");
    expect(decodeError(b64('"x"')).message).toBe("demotion token is not a JSON object (got string)");
    expect(decodeError(b64("null")).message).toBe("demotion token is not a JSON object (got null)");
  });

  it("a token missing a key, naming it", () => {
    const { redoWalFile: _gone, ...rest } = CONTENT;
    const err = decodeError(b64(JSON.stringify(rest)));
    expect(err.message).toBe('demotion token lacks "redoWalFile"');
    expect(err.details).toEqual({ missing: ["redoWalFile"] });
    expect(decodeError(b64("{}")).message).toBe(`demotion token lacks ${TOKEN_KEYS.map((k) => `"${k}"`).join(", ")}`);
  });

  it("a token with a value that is not a string, naming the key", () => {
    expect(decodeError(tokenWith({ latestCheckpointTimelineID: 1 })).message).toBe(
      'demotion token field "latestCheckpointTimelineID" is not a string (got number)',
    );
    expect(decodeError(tokenWith({ operatorVersion: null })).message).toBe('demotion token field "operatorVersion" is not a string (got null)');
  });

  it.each(TOKEN_KEYS)("a token whose %s is empty, naming it", (key) => {
    const err = decodeError(tokenWith({ [key]: "" }));
    expect(err.message).toBe(`demotion token field "${key}" is empty`);
    expect(err.details).toEqual({ field: key });
  });

  it.each(["0", "-1", "1.5", "01", "1e3", "one", " 1", "4294967296"])("a token whose timeline %j is not a positive integer", (timeline) => {
    expect(decodeError(tokenWith({ latestCheckpointTimelineID: timeline })).message).toBe(
      `demotion token timeline ${JSON.stringify(timeline)} (latestCheckpointTimelineID) is not a positive integer`,
    );
  });

  it.each(["5000028", "0/", "0x0/5000028", "G/1", "0/5000028 ", "1/2/3", "123456789/0"])(
    "a token whose REDO location %j is not an LSN",
    (redo) => {
      expect(decodeError(tokenWith({ latestCheckpointREDOLocation: redo })).message).toBe(
        `demotion token REDO location ${JSON.stringify(redo)} (latestCheckpointREDOLocation) is not an LSN`,
      );
    },
  );

  it("by throwing PgfedError from decodeToken itself", () => {
    expect(() => decodeToken("%%%%")).toThrow(PgfedError);
  });
});

describe("tokenFromControlData", () => {
  it("builds the token content from a cleanly shut down Postgres 15 primary", () => {
    expect(tokenFromControlData(CONTROLDATA_PRIMARY_SHUT_DOWN, "1.25.0")).toEqual(CONTENT);
    expect(databaseClusterState(CONTROLDATA_PRIMARY_SHUT_DOWN)).toBe("shut down");
  });

  it("produces content that encodes to a token whose REDO location is the shutdown checkpoint", () => {
    const token = decodeToken(encodeToken(tokenFromControlData(CONTROLDATA_PRIMARY_SHUT_DOWN, "1.25.0")));
    expect(token.redoLsn).toBe(0x4000060n);
    expect(token.redoWalFile).toBe("000000010000000000000004");
  });

  it("reads the state of a standby and of a running primary", () => {
    expect(databaseClusterState(CONTROLDATA_STANDBY_SHUT_DOWN)).toBe("shut down in recovery");
    expect(databaseClusterState(CONTROLDATA_PRIMARY_RUNNING)).toBe("in production");
    expect(tokenFromControlData(CONTROLDATA_STANDBY_SHUT_DOWN, "1.25.0").latestCheckpointREDOLocation).toBe("0/3000028");
  });

  it("splits at the first colon only, so times keep theirs and unspaced labels still parse", () => {
    const fields = parseControlData(CONTROLDATA_PRIMARY_SHUT_DOWN);
    expect(fields.get("Time of latest checkpoint")).toBe("Tue Nov 24 13:31:49 2026");
    expect(fields.get("Latest checkpoint's newestCommitTsXid")).toBe("0");
    expect(fields.get("Bytes per WAL segment")).toBe("16777216");
  });

  it("accepts Windows line endings", () => {
    expect(tokenFromControlData(CONTROLDATA_PRIMARY_SHUT_DOWN.replaceAll("\n", "\r\n"), "1.25.0")).toEqual(CONTENT);
  });

  it("refuses output missing a line it needs, naming the line", () => {
    const output = CONTROLDATA_PRIMARY_SHUT_DOWN.split("\n")
      .filter((line) => !line.startsWith("Latest checkpoint's REDO WAL file"))
      .join("\n");
    expect(() => tokenFromControlData(output, "1.25.0")).toThrow(
      expect.objectContaining({
        code: "cnpg.invalid_controldata",
        message: expect.stringContaining(`no "Latest checkpoint's REDO WAL file" line`) as unknown,
      }),
    );
    expect(() => databaseClusterState("")).toThrow('no "Database cluster state" line');
  });

  it("refuses translated output (pg_controldata run without LC_ALL=C)", () => {
    const german = CONTROLDATA_PRIMARY_SHUT_DOWN.replace("Latest checkpoint's TimeLineID", "TimeLineID des letzten Checkpoints");
    expect(() => tokenFromControlData(german, "1.25.0")).toThrow(/LC_ALL=C/);
  });

  it("refuses an empty operator version and values that would make a bad token", () => {
    expect(() => tokenFromControlData(CONTROLDATA_PRIMARY_SHUT_DOWN, "")).toThrow(
      expect.objectContaining({ code: "cnpg.invalid_controldata", message: expect.stringContaining('"operatorVersion" is empty') as unknown }),
    );
    const bad = CONTROLDATA_PRIMARY_SHUT_DOWN.replace("0/4000060\nLatest checkpoint's REDO WAL", "nowhere\nLatest checkpoint's REDO WAL");
    expect(() => tokenFromControlData(bad, "1.25.0")).toThrow('REDO location "nowhere" (latestCheckpointREDOLocation) is not an LSN');
  });
});
