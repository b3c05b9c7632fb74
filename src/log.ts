import { pino, type DestinationStream, type Logger } from "pino";
import { prettyFactory } from "pino-pretty";

export type { Logger };

/** Paths whose values never reach a log line (object values too; string values under these keys are also caught at any depth by redactLine). */
export const REDACT_PATHS = [
  "password",
  "*.password",
  "*.*.password",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  "connectionString",
  "*.connectionString",
  "routingKey",
  "*.routingKey",
  "secret",
  "*.secret",
  "seed",
  "*.seed",
  "privateKey",
  "*.privateKey",
];

export const CENSOR = "[redacted]";

/** Keys whose string values are secrets wherever they appear in a logged object (compared case-insensitively). */
const SECRET_KEYS = [
  "password",
  "passwd",
  "token",
  "accessToken",
  "bearerToken",
  "refreshToken",
  "secret",
  "clientSecret",
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  "apiKey",
  "connectionString",
  "routingKey",
  "seed",
  "nkey",
  "privateKey",
  "private_key",
];

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\-]/g, "\\$&");
// `"password":"…"` in a JSON line, at any depth (the value is a JSON string: no raw quote inside).
const SECRET_KEY_JSON = new RegExp(`"(${SECRET_KEYS.map(escapeRe).join("|")})"(\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*"`, "gi");

/** Secrets recognised by their shape, in any string: [pattern, replacement]. */
const SECRET_PATTERNS: readonly [RegExp, string][] = [
  // PEM private keys and NATS creds seeds, up to their END line (or the end of the JSON string or text).
  [/-----BEGIN [A-Z0-9 ]*(?:PRIVATE KEY|SEED)-----[^"]*?(?:-----END [A-Z0-9 ]*-----|(?=")|$)/g, "[redacted private key]"],
  // NATS nkey seeds (SU… user, SA… account, SO… operator, SN… server, SC… cluster, SX… curve): 58 base32 characters.
  [/S[ACNOUX][A-Z2-7]{56}/g, "[redacted nkey seed]"],
  // JWTs (Kubernetes service account tokens, NATS user JWTs): header.payload.signature.
  [/eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, "[redacted jwt]"],
  // The password of a URL: postgres://user:pass@host → postgres://user:***@host.
  [/\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@"]*:)[^\s@/"]*@/gi, "$1***@"],
  // libpq keyword/value strings and the like: password=secret → password=***.
  [/\b((?:PG)?(?:password|passwd|pwd))(\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s"'&;,]+)/gi, "$1$2***"],
  // Credentials in an Authorization header value: Bearer abc… → Bearer [redacted].
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, `$1 ${CENSOR}`],
];

/** `text` with every secret recognised by its shape replaced (messages, error texts, any string). */
export function redactText(text: string): string {
  let out = text;
  for (const [re, replacement] of SECRET_PATTERNS) out = out.replace(re, replacement);
  return out;
}

/**
 * One serialized JSON log line with its secrets replaced: string values under secret keys at any
 * depth, and secret-shaped text anywhere (messages, error stacks, child-logger bindings).
 */
export function redactLine(line: string): string {
  return redactText(line.replace(SECRET_KEY_JSON, `"$1"$2"${CENSOR}"`));
}

type Flushable = DestinationStream & { flushSync?: () => void; flush?: (cb?: (err?: Error) => void) => void };

/** A pino destination that redacts each line before handing it on (flushing goes to `flushable`). */
function redacting(write: (line: string) => void, flushable?: Flushable): Flushable {
  return {
    write: (line: string) => write(redactLine(line)),
    ...(flushable?.flushSync ? { flushSync: () => flushable.flushSync?.() } : {}),
    ...(flushable?.flush ? { flush: (cb?: (err?: Error) => void) => flushable.flush?.(cb) } : {}),
  };
}

export interface LogOptions {
  level?: string;
  /** Force pretty output; by default pretty only when stdout is a TTY. */
  pretty?: boolean;
  name?: string;
  /** Where JSON lines go (default stdout), e.g. `pino.destination({ dest: file, sync: true })`; redacted like stdout. */
  destination?: DestinationStream;
}

/** The one pino logger: JSON by default, pretty when a person is watching, secrets redacted. */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.PGFED_LOG_LEVEL ?? "info";
  const pretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true && process.env.PGFED_LOG_FORMAT !== "json");
  const base = { level, name: opts.name ?? "pgfed", redact: { paths: REDACT_PATHS, censor: CENSOR } };
  if (pretty) {
    // In-process (not a transport worker) so that each line is redacted before it is prettified.
    const prettify = prettyFactory({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,name" });
    const out = opts.destination ?? pino.destination({ dest: process.stdout.fd ?? 1, sync: true });
    return pino(base, redacting((line) => out.write(prettify(line)), out));
  }
  const out = opts.destination ?? pino.destination({ dest: process.stdout.fd ?? 1 });
  return pino(base, redacting((line) => out.write(line), out));
}

/** A logger that writes nothing, for tests and library callers that do not care. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
