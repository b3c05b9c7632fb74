/**
 * The API over TLS with real certificates (openssl; the lab's CA generator for the CA and server
 * certificate): HTTPS serves the API; with `tls.clientCa` a client certificate signed by that CA
 * is required and the bearer token still decides the role (docs/api.md); a certificate from another
 * CA, or none, is refused (401) on every route but the probes /healthz and /readyz. The CLI reaches such
 * an API with --ca/--cert/--key (or PGFED_CA/PGFED_CERT/PGFED_KEY), SSE progress included.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseTokenFile } from "../../../src/api/auth.js";
import { startApiServer, type ApiServer } from "../../../src/api/server.js";
import { runCli } from "../../../src/cli/program.js";
import { ensureCertificates, type TlsFiles } from "../../../src/lab/kube-api/tls.js";
import { run } from "../../../src/lab/proc.js";
import { createLogger } from "../../../src/log.js";
import { FakeCoordinator } from "../../unit/api/fake-service.js";
import { OPERATOR_TOKEN, TOKEN_FILE, VIEWER_TOKEN } from "../../unit/api/helpers.js";

interface Pem {
  cert: string;
  key: string;
}

let dir = "";
let good: TlsFiles;
let goodCa = "";
let client: Pem;
let clientFiles: { cert: string; key: string };
let strangerClient: Pem;
const servers: ApiServer[] = [];
const logLines: string[] = [];
const log = createLogger({ level: "warn", pretty: false, destination: { write: (s: string) => void logLines.push(s) } });

/** A client certificate (EC P-256, clientAuth) for `cn`, signed by the CA in `caDir` (ca.crt + ca.key). */
async function clientCertificate(caDir: string, cn: string): Promise<Pem> {
  const key = join(caDir, `${cn}.key`);
  const csr = join(caDir, `${cn}.csr`);
  const crt = join(caDir, `${cn}.crt`);
  const ext = join(caDir, `${cn}.ext`);
  await run("openssl", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${cn}`]);
  await writeFile(ext, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n");
  await run("openssl", ["x509", "-req", "-in", csr, "-CA", join(caDir, "ca.crt"), "-CAkey", join(caDir, "ca.key"), "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext]);
  return { cert: await readFile(crt, "utf8"), key: await readFile(key, "utf8") };
}

async function serve(clientCa: boolean): Promise<ApiServer> {
  const api = await startApiServer({
    service: new FakeCoordinator(),
    listen: "127.0.0.1:0",
    tokens: parseTokenFile(TOKEN_FILE),
    // file paths, as the config gives them
    tls: { cert: good.certFile, key: good.keyFile, ...(clientCa ? { clientCa: good.caFile } : {}) },
    log,
  });
  servers.push(api);
  return api;
}

type Outcome = { status: number; body: Record<string, unknown> } | { tlsError: string };

/** One HTTPS request trusting only the test CA; resolves with the HTTP answer or the TLS failure. */
function call(url: string, method: string, path: string, o: { token?: string; client?: Pem; body?: unknown } = {}): Promise<Outcome> {
  return new Promise((resolve) => {
    const payload = o.body === undefined ? undefined : JSON.stringify(o.body);
    const req = request(
      `${url}${path}`,
      {
        method,
        ca: goodCa,
        ...(o.client ? { cert: o.client.cert, key: o.client.key } : {}),
        headers: { ...(o.token ? { authorization: `Bearer ${o.token}` } : {}), ...(payload ? { "content-type": "application/json" } : {}) },
        timeout: 5_000,
      },
      (res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }));
      },
    );
    req.on("error", (e) => resolve({ tlsError: `${(e as NodeJS.ErrnoException).code ?? ""} ${e.message}` }));
    req.end(payload);
  });
}

const statusOf = (o: Outcome): number => ("status" in o ? o.status : -1);
const messageOf = (o: Outcome): string => ("status" in o ? String(o.body.message) : o.tlsError);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pgfed-api-tls-"));
  good = await ensureCertificates(join(dir, "ca"), "api-test", "127.0.0.1");
  goodCa = await readFile(good.caFile, "utf8");
  client = await clientCertificate(join(dir, "ca"), "alice");
  clientFiles = { cert: join(dir, "ca", "alice.crt"), key: join(dir, "ca", "alice.key") };
  // Another CA (same generator, different key) and a client certificate it signed.
  await ensureCertificates(join(dir, "stranger"), "stranger", "127.0.0.1");
  strangerClient = await clientCertificate(join(dir, "stranger"), "mallory");
}, 60_000);

afterAll(async () => {
  for (const s of servers) await s.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("API over HTTPS (api.tls without clientCa)", () => {
  it("serves the API over TLS with the server certificate, and the token rules apply", async () => {
    const api = await serve(false);
    expect(api.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(statusOf(await call(api.url, "GET", "/healthz"))).toBe(200);
    const ok = await call(api.url, "GET", "/v1/federations/orders", { token: VIEWER_TOKEN });
    expect(ok).toMatchObject({ status: 200, body: { name: "orders" } });
    expect(statusOf(await call(api.url, "GET", "/v1/federations/orders"))).toBe(401);
    // a client certificate is not asked for: it neither helps nor hurts
    expect(statusOf(await call(api.url, "GET", "/v1/federations/orders", { token: VIEWER_TOKEN, client: strangerClient }))).toBe(200);
  });

  it("is not reachable over plain HTTP", async () => {
    const api = await serve(false);
    const plain = api.url.replace("https://", "http://");
    const r = await fetch(`${plain}/healthz`).then((res) => res.status, (e: unknown) => String(e));
    expect(r).not.toBe(200);
  });
});

describe("mutual TLS (api.tls.clientCa)", () => {
  let api: ApiServer;
  beforeAll(async () => {
    api = await serve(true);
  });

  it("accepts a client certificate signed by clientCa; the token's role decides what it may do", async () => {
    const viewerRead = await call(api.url, "GET", "/v1/federations/orders", { client, token: VIEWER_TOKEN });
    expect(viewerRead).toMatchObject({ status: 200, body: { name: "orders" } });
    const viewerWrite = await call(api.url, "POST", "/v1/federations/orders/pause?dryRun=true", { client, token: VIEWER_TOKEN, body: {} });
    expect(viewerWrite).toMatchObject({ status: 403, body: { reason: "Forbidden" } });
    const operatorWrite = await call(api.url, "POST", "/v1/federations/orders/pause?dryRun=true", { client, token: OPERATOR_TOKEN, body: {} });
    expect(statusOf(operatorWrite)).toBe(200);
  });

  it("still requires the bearer token with a good certificate", async () => {
    const r = await call(api.url, "GET", "/v1/federations/orders", { client });
    expect(r).toMatchObject({ status: 401, body: { reason: "Unauthorized", field: "Authorization" } });
    expect(statusOf(await call(api.url, "GET", "/v1/federations/orders", { client, token: "not-a-token" }))).toBe(401);
  });

  it("refuses a client certificate from another CA, even with a valid operator token, naming why", async () => {
    const r = await call(api.url, "GET", "/v1/federations/orders", { client: strangerClient, token: OPERATOR_TOKEN });
    expect(r, JSON.stringify(r)).toMatchObject({ status: 401, body: { reason: "Unauthorized", field: "clientCertificate" } });
    expect(messageOf(r)).toMatch(/^client certificate not accepted \(\w+\): this API requires mutual TLS/);
    const write = await call(api.url, "POST", "/v1/federations/orders/pause", { client: strangerClient, token: OPERATOR_TOKEN, body: {} });
    expect(statusOf(write)).toBe(401);
  });

  it("refuses a client without a certificate on every route but the probes', even with a valid operator token", async () => {
    const r = await call(api.url, "GET", "/v1/federations/orders", { token: OPERATOR_TOKEN });
    expect(r, JSON.stringify(r)).toMatchObject({ status: 401, body: { reason: "Unauthorized", field: "clientCertificate" } });
    expect(messageOf(r)).toMatch(/^no client certificate: this API requires mutual TLS with a certificate signed by api\.tls\.clientCa/);
    for (const path of ["/metrics", "/openapi.json", "/no/such/route", "/healthz/../v1/federations"]) {
      expect(statusOf(await call(api.url, "GET", path)), path).toBe(401);
    }
    expect(statusOf(await call(api.url, "POST", "/v1/federations/orders/pause", { token: OPERATOR_TOKEN, body: {} }))).toBe(401);
    // Each refusal is one warn line (docs/api.md, Security).
    const refused = logLines.map((l) => JSON.parse(l) as { event?: string; msg: string; reason: string }).filter((l) => l.event === "api.refused" && l.reason === "client_certificate");
    expect(refused.map((l) => l.msg)).toEqual(
      expect.arrayContaining(["refused GET /v1/federations/:name from 127.0.0.1: 401 client_certificate", "refused GET (no route) from 127.0.0.1: 401 client_certificate"]),
    );
    expect(logLines.join("")).not.toContain(OPERATOR_TOKEN);
  });

  it("answers /healthz and /readyz without a client certificate: kubelet's probes cannot present one", async () => {
    expect(await call(api.url, "GET", "/healthz")).toMatchObject({ status: 200, body: { ok: true } });
    expect(await call(api.url, "GET", "/readyz")).toMatchObject({ status: 200, body: { ready: true } });
    expect(await call(api.url, "GET", "/healthz?x=1", { client: strangerClient })).toMatchObject({ status: 200 });
  });
});

describe("the CLI against an API with mutual TLS", () => {
  let api: ApiServer;
  beforeAll(async () => {
    api = await serve(true);
  });

  async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const io = { out: (t: string) => (out += t), err: (t: string) => (err += t), isTTY: false, env, cwd: dir };
    const code = await runCli([...args, "--server", api.url], io);
    return { code, out, err };
  }

  it("status and a followed switchover work with --ca/--cert/--key", async () => {
    const tls = ["--ca", good.caFile, "--cert", clientFiles.cert, "--key", clientFiles.key];
    const s = await cli(["status", "orders", "--token", VIEWER_TOKEN, ...tls]);
    expect(s.code, s.err).toBe(0);
    expect(s.out).toContain("federation orders   epoch 3   primary pg-eu");
    // --wait follows the operation over Server-Sent Events through the same TLS connection settings
    const sw = await cli(["switchover", "orders", "--to", "pg-us", "--yes", "--wait", "--reason", "mtls drill", "--token", OPERATOR_TOKEN, ...tls]);
    expect(sw.code, `${sw.out}${sw.err}`).toBe(0);
    expect(sw.err).toMatch(/\]\s+promote: promoting pg-us/);
    expect(sw.out).toContain("switchover orders → pg-us completed");
  });

  it("reads the files from PGFED_CA/PGFED_CERT/PGFED_KEY", async () => {
    const r = await cli(["status", "orders", "--token", VIEWER_TOKEN], { PGFED_CA: good.caFile, PGFED_CERT: clientFiles.cert, PGFED_KEY: clientFiles.key });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain("federation orders");
  });

  it("without a client certificate the CLI is refused and says what is missing", async () => {
    const r = await cli(["status", "orders", "--token", VIEWER_TOKEN, "--ca", good.caFile]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("no client certificate: this API requires mutual TLS");
  });

  it("refuses --cert without --key, naming what is missing", async () => {
    const r = await cli(["status", "orders", "--token", VIEWER_TOKEN, "--ca", good.caFile, "--cert", clientFiles.cert]);
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("needs both --cert and --key");
  });
});
