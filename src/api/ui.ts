/**
 * The status page (src/ui, built by scripts/build.js into dist/ui) on the API's own listener and
 * TLS: `/` is its HTML, `/ui/<file>` its script and style. The files hold no data and need no
 * token; everything the page shows comes from the API routes, with the token the user enters.
 * Nothing is fetched from elsewhere: the Content-Security-Policy allows this origin only.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { FastifyReply, FastifyRequest } from "fastify";
import { packageRoot } from "../version.js";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json; charset=utf-8",
};

/** style-src allows inline styles: the chart library and the gauges set element styles. frame-src for the runbook (srcdoc, sandboxed). */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const SECURITY_HEADERS = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cache-control": "no-cache",
};

/** The built page's files by name, read once; undefined when the page is not built. */
function loadPage(dir: string): Map<string, { body: Buffer; type: string }> | undefined {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const name of names) {
    const type = TYPES[name.slice(name.lastIndexOf("."))];
    if (type) files.set(name, { body: readFileSync(join(dir, name)), type });
  }
  return files.has("index.html") ? files : undefined;
}

/** What registerStatusPage needs of the fastify instance (whatever its logger and server types). */
interface Router {
  get(path: string, handler: (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>): unknown;
}

/** Registers `/` and `/ui/:file`; returns the routes it registered. */
export function registerStatusPage(app: Router, dir = join(packageRoot(), "dist", "ui")): string[] {
  const files = loadPage(dir);
  app.get("/", async (_req, reply) => {
    const index = files?.get("index.html");
    if (!index) {
      return reply
        .code(503)
        .type("text/plain; charset=utf-8")
        .send(`the status page is not built (${dir} has no index.html): run npm run build; the API itself is unaffected\n`);
    }
    return reply.code(200).headers(SECURITY_HEADERS).type(index.type).send(index.body);
  });
  app.get("/ui/:file", async (req, reply) => {
    const name = (req.params as { file?: string }).file ?? "";
    const f = files?.get(name);
    if (!f || name === "index.html") return reply.code(404).type("text/plain; charset=utf-8").send("not found\n");
    return reply.code(200).headers(SECURITY_HEADERS).type(f.type).send(f.body);
  });
  return ["GET /", "GET /ui/{file}"];
}
