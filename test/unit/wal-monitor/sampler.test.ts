import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { pgSslOptions, resolveCredential } from "../../../src/wal/credentials.js";
import { MemberSampler, parseSampleRow, targetFromMemberConfig } from "../../../src/wal/sampler.js";

const ctx = { federation: "orders", member: "pg-eu", region: "eu-west", atMs: 1_000, durationMs: 2 };

const primaryRow = {
  in_recovery: false,
  next_xid: "4000000123",
  running_xids: "0",
  current_lsn: "16/B374D848",
  timeline: 3,
  receive_lsn: null,
  replay_lsn: null,
  last_replay_ms: null,
  server_now_ms: "1795527193248.694000",
  archived_count: "12",
  last_archived_wal: "0000000300000016000000B2",
  last_archived_ms: "1795527186383.334000",
  failed_count: "0",
  last_failed_wal: null,
  last_failed_ms: null,
  ready_count: "1",
  oldest_ready_ms: 1795527186000,
  standbys: [{ application_name: "pg-us", state: "streaming", client_addr: "10.0.0.2", sent_lsn: "16/B374D848", write_lsn: "16/B374D848", flush_lsn: "16/B3700000", replay_lsn: null, reply_ms: 1795527193000.5 }],
  wal_receiver: null,
};

describe("parseSampleRow", () => {
  it("turns LSN text into bigint, int8/numeric text into numbers and NULL into undefined", () => {
    const s = parseSampleRow(primaryRow, ctx);
    expect(s.role).toBe("primary");
    if (s.role !== "primary") return;
    expect(s.currentLsn).toBe(0x16b374d848n);
    expect(s.timeline).toBe(3);
    expect(s.nextXid).toBe(4000000123n);
    expect(s.runningXids).toBe(0);
    expect(s.archiver).toEqual({
      archivedCount: 12,
      lastArchivedWal: "0000000300000016000000B2",
      lastArchivedAtMs: 1795527186383,
      failedCount: 0,
      lastFailedWal: undefined,
      lastFailedAtMs: undefined,
      readySegments: 1,
      oldestReadyAtMs: 1795527186000,
    });
    expect(s.standbys[0]).toMatchObject({ applicationName: "pg-us", flushLsn: 0x16b3700000n, replayLsn: undefined, replyAtMs: 1795527193000 });
  });

  it("reads a replica's positions and WAL receiver", () => {
    const s = parseSampleRow(
      {
        ...primaryRow,
        in_recovery: true,
        current_lsn: null,
        next_xid: null,
        running_xids: null,
        receive_lsn: "0/5000000",
        replay_lsn: "0/4FFFF00",
        wal_receiver: { status: "streaming", flushed_lsn: "0/5000000", latest_end_lsn: "0/5000000", received_tli: 3, sender_host: "127.0.0.1", sender_port: 5432, last_msg_receipt_ms: 17.9 },
        standbys: [],
      },
      ctx,
    );
    expect(s).toMatchObject({ role: "replica", receiveLsn: 0x5000000n, replayLsn: 0x4ffff00n, walReceiver: { status: "streaming", senderPort: 5432, lastMsgReceiptAtMs: 17 } });
  });

  it("refuses a bad row with an error naming each bad field", () => {
    const bad = () => parseSampleRow({ ...primaryRow, current_lsn: "16-B3", failed_count: "lots", standbys: [{}] }, ctx);
    expect(bad).toThrowError(/sampling pg-eu of orders: unexpected result row \(current_lsn: invalid LSN "16-B3".*failed_count: expected a number.*standbys\.0\.application_name/);
    expect(bad).toThrowError(expect.objectContaining({ code: "wal.bad_sample_row" }) as Error);
    expect(() => parseSampleRow(null, ctx)).toThrowError(/unexpected result row/);
    expect(() => parseSampleRow({ ...primaryRow, current_lsn: null }, ctx)).toThrowError(/a primary returned no current WAL position/);
  });
});

describe("credentials", () => {
  it("resolves a value, an environment variable and a file (without its trailing newline)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pgfed-cred-"));
    try {
      await writeFile(join(dir, "password"), "s3cret\n");
      expect(await resolveCredential({ value: "v" }, "password of pg-eu")).toBe("v");
      expect(await resolveCredential({ env: "PGFED_PW" }, "password of pg-eu", { env: { PGFED_PW: "e" } })).toBe("e");
      expect(await resolveCredential({ file: join(dir, "password") }, "password of pg-eu")).toBe("s3cret");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("says which credential is missing without printing any value", async () => {
    await expect(resolveCredential({ env: "NOPE" }, "password of pg-eu", { env: {} })).rejects.toThrowError("reading password of pg-eu: environment variable NOPE is not set");
    await expect(resolveCredential({ file: "/nonexistent/pw" }, "password of pg-eu")).rejects.toThrowError(/reading password of pg-eu from file \/nonexistent\/pw: ENOENT/);
    await expect(resolveCredential({ secretRef: { name: "pg-eu-monitor", key: "password" } }, "password of pg-eu")).rejects.toThrowError(/needs a Kubernetes secret resolver/);
  });

  it("reads a Kubernetes secret through the agent's resolver", async () => {
    const resolver = { readSecretKey: async (ref: { name: string; namespace?: string | undefined; key: string }) => `${ref.namespace}/${ref.name}/${ref.key}` };
    const target = targetFromMemberConfig("orders", { name: "pg-eu", region: "eu-west", namespace: "db", cluster: "pg-eu", postgres: { secretRef: "pg-eu-monitor", sslmode: "verify-full", sslRootCert: "/etc/ca.crt" } });
    expect(target.host).toBe("pg-eu-rw.db.svc");
    expect(target.tls).toEqual({ mode: "verify-full", ca: { file: "/etc/ca.crt" } });
    if (typeof target.user === "string" || !target.password) throw new Error("expected secret sources");
    expect(await resolveCredential(target.user, "user", { resolver })).toBe("db/pg-eu-monitor/username");
    expect(await resolveCredential(target.password, "password", { resolver })).toBe("db/pg-eu-monitor/password");
  });

  it("maps TLS modes to pg's ssl option", async () => {
    expect(await pgSslOptions({ mode: "disable" }, "pg-eu")).toBe(false);
    expect(await pgSslOptions({ mode: "require" }, "pg-eu")).toEqual({ rejectUnauthorized: false });
    await expect(pgSslOptions({ mode: "verify-full" }, "pg-eu")).rejects.toThrowError(/needs a CA/);
    const full = await pgSslOptions({ mode: "verify-full", ca: { value: "PEM" } }, "pg-eu");
    expect(full).toEqual({ ca: "PEM", rejectUnauthorized: true });
    const ca = await pgSslOptions({ mode: "verify-ca", ca: { value: "PEM" } }, "pg-eu");
    expect(ca && ca.checkServerIdentity?.("h", {} as never)).toBeUndefined();
  });
});

describe("MemberSampler", () => {
  it("reports an unreachable member with the error instead of throwing", async () => {
    const s = new MemberSampler({ federation: "orders", member: "pg-eu", host: "127.0.0.1", port: 1, user: "x", connectTimeoutMs: 500 });
    const out = await s.sample();
    expect(out.ok).toBe(false);
    expect(s.state).toMatchObject({ status: "unreachable", consecutiveFailures: 1, error: { code: "wal.member_unreachable" } });
    expect(s.state.status === "unreachable" && s.state.error.message).toMatch(/sampling pg-eu of orders at 127\.0\.0\.1:1: .*ECONNREFUSED/);
    await s.sample();
    expect(s.state).toMatchObject({ status: "unreachable", consecutiveFailures: 2 });
    await s.close();
    expect((await s.sample()).ok).toBe(false);
  });
});
