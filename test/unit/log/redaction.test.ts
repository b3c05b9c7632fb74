import { describe, expect, it } from "vitest";
import { createLogger, redactLine, redactText, type Logger } from "../../../src/log.js";

// Made-up secrets of each shape.
const SEED = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";
const ACCOUNT_SEED = "SAAGNJOZTRPYYXG2NJX3ZNGXYUSDYX2BWO447W3SHG6XQ7U66RWHQ3JUXM";
const JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cGdmZWQifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";
const PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----";
const RSA_PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n-----END RSA PRIVATE KEY-----";
const CREDS = `-----BEGIN NATS USER JWT-----\n${JWT}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${SEED}\n------END USER NKEY SEED------`;
const API_TOKEN = "9f2c4e6a8b0d1f3a5c7e9b1d3f5a7c9e";

function capture(): { log: Logger; lines: () => string[] } {
  const out: string[] = [];
  const log = createLogger({ level: "debug", pretty: false, destination: { write: (s: string) => void out.push(s) } });
  return { log, lines: () => out };
}

describe("redactText (messages, error texts)", () => {
  it.each([
    ["a connection-string password", "connect postgres://pgfed:s3cr3t-pw@pg-eu.db:5432/app failed", "connect postgres://pgfed:***@pg-eu.db:5432/app failed"],
    ["a postgresql:// password with an empty user", "postgresql://:hunter2@10.0.0.1/x", "postgresql://:***@10.0.0.1/x"],
    ["a nats:// password", "nats://agent:pa55@nats:4222", "nats://agent:***@nats:4222"],
    ["a libpq password", "host=pg-eu user=pgfed password=s3cr3t dbname=app", "host=pg-eu user=pgfed password=*** dbname=app"],
    ["a quoted libpq password", "password='s3 cr3t' host=x", "password=*** host=x"],
    ["PGPASSWORD", "PGPASSWORD=s3cr3t psql", "PGPASSWORD=*** psql"],
    ["a bearer token", `GET /v1 Authorization: Bearer ${API_TOKEN}`, "GET /v1 Authorization: Bearer [redacted]"],
    ["an nkey user seed", `seed ${SEED} loaded`, "seed [redacted nkey seed] loaded"],
    ["an nkey account seed", ACCOUNT_SEED, "[redacted nkey seed]"],
    ["a JWT", `token ${JWT}`, "token [redacted jwt]"],
    ["a PEM private key", `key: ${PEM} end`, "key: [redacted private key] end"],
    ["an RSA private key", RSA_PEM, "[redacted private key]"],
    ["a truncated private key", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB", "[redacted private key]"],
  ])("replaces %s", (_what, text, expected) => {
    expect(redactText(text)).toBe(expected);
  });

  it("replaces the seed of a NATS creds file and keeps its public JWT markers only", () => {
    const out = redactText(CREDS);
    expect(out).not.toContain(SEED);
    expect(out).not.toContain("NKEY SEED-----\n");
    expect(out).not.toMatch(/SU[A-Z2-7]{56}/);
  });

  it("leaves ordinary text alone", () => {
    for (const text of [
      "API listening on http://127.0.0.1:8080",
      'refused GET /v1/federations/:name from 127.0.0.1: 401 unknown_token',
      "Authorization header must be `Bearer <token>`; see docs/api.md for tokens",
      'WWW-Authenticate: Bearer realm="pgfed"',
      "switchover demo to pg-us: demotion token received, promoting",
      "postgres://pgfed@pg-eu:5432/app",
      "UBHLYU5WJL5ZNWNRVXVSFX4DN4N5EIZI3SDSD3LRAG5WT4ODFSHX3UZU",
    ]) {
      expect(redactText(text)).toBe(text);
    }
  });
});

describe("redactLine (serialized JSON lines)", () => {
  it("replaces string values under secret keys at any depth and keeps the line JSON", () => {
    const line = JSON.stringify({ a: { b: { c: { password: "deep-pw", Authorization: `Bearer ${API_TOKEN}`, token: API_TOKEN, seed: "x" } } }, tokens: 2 });
    const out = redactLine(line);
    const parsed = JSON.parse(out) as { a: { b: { c: Record<string, string> } }; tokens: number };
    expect(parsed.a.b.c).toEqual({ password: "[redacted]", Authorization: "[redacted]", token: "[redacted]", seed: "[redacted]" });
    expect(parsed.tokens).toBe(2);
  });

  it("keeps a line JSON when a private key sits in a string value", () => {
    const out = redactLine(JSON.stringify({ msg: `loaded ${PEM}`, key: RSA_PEM }));
    expect(JSON.parse(out)).toEqual({ msg: "loaded [redacted private key]", key: "[redacted private key]" });
  });
});

describe("createLogger", () => {
  it("never writes the secrets it is handed, in fields, nested objects, messages, errors or bindings", () => {
    const { log, lines } = capture();
    const child = log.child({ federation: "orders", connectionString: "postgres://u:childpw@h/db", auth: { token: API_TOKEN } });
    child.info({ req: { headers: { authorization: `Bearer ${API_TOKEN}`, "x-api-key": API_TOKEN } } }, "request");
    child.info({ config: { members: [{ postgres: { password: "member-pw" } }] }, deep: { a: { b: { c: { password: "deep-pw" } } } } }, "config loaded");
    child.warn(`agent connected with seed ${SEED} to nats://agent:natspw@nats:4222`);
    child.error({ err: new Error(`connect ECONNREFUSED postgres://pgfed:errpw@pg-eu:5432/app password=libpqpw`) }, "sample failed");
    child.error(new Error(`tls: ${PEM}`));
    child.info({ kube: { user: { token: JWT } }, creds: CREDS }, "kube client");
    const text = lines().join("");
    expect(lines().length).toBe(6);
    for (const secret of [API_TOKEN, "childpw", "member-pw", "deep-pw", SEED, "natspw", "errpw", "libpqpw", JWT, "BEGIN PRIVATE KEY", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"]) {
      expect(text).not.toContain(secret);
    }
    // What is not secret stays, and every line is still JSON.
    const parsed = lines().map((l) => JSON.parse(l) as { msg: string; federation: string; err?: { stack: string } });
    expect(parsed.map((p) => p.msg)).toEqual([
      "request",
      "config loaded",
      "agent connected with seed [redacted nkey seed] to nats://agent:***@nats:4222",
      "sample failed",
      "tls: [redacted private key]",
      "kube client",
    ]);
    expect(parsed.every((p) => p.federation === "orders")).toBe(true);
    expect(parsed[3]?.err?.stack).toContain("postgres://pgfed:***@pg-eu:5432/app password=***");
  });
});
