/**
 * Bearer tokens for the API. The token file holds one token per line, never the token itself:
 *
 *     # <name> <role> sha256:<hex of SHA-256 of the token>
 *     alice operator sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *
 * Generate a line:  TOKEN=$(openssl rand -hex 32); echo "alice operator sha256:$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1)"
 * Roles: `viewer` may read (GET), `operator` may do everything.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isIPv6 } from "node:net";
import { PgfedError } from "../errors.js";

export type Role = "viewer" | "operator";

export interface TokenEntry {
  name: string;
  role: Role;
  /** SHA-256 of the token (32 bytes). */
  sha256: Buffer;
}

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/** The token-file line for `name`/`role`/`token` (what `pgfed`'s docs tell people to generate). */
export function tokenLine(name: string, role: Role, token: string): string {
  return `${name} ${role} sha256:${hashToken(token).toString("hex")}`;
}

const LINE_RE = /^(\S+)\s+(viewer|operator)\s+sha256:([0-9a-fA-F]{64})$/;

/** Parses a token file; every bad line is named (`tokens:3: …`), and a file with any bad line is refused whole. */
export function parseTokenFile(text: string, source = "tokens"): TokenEntry[] {
  const out: TokenEntry[] = [];
  const problems: string[] = [];
  const names = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const m = LINE_RE.exec(line.replace(/\s+#.*$/, ""));
    if (!m) {
      problems.push(`${source}:${i + 1}: expected "<name> <viewer|operator> sha256:<64 hex digits>"`);
      return;
    }
    const [, name, role, hex] = m as unknown as [string, string, Role, string];
    if (names.has(name)) problems.push(`${source}:${i + 1}: duplicate token name "${name}"`);
    names.add(name);
    out.push({ name, role, sha256: Buffer.from(hex, "hex") });
  });
  if (problems.length > 0) throw new PgfedError("api.tokens_invalid", `invalid token file ${source}:\n  ${problems.join("\n  ")}`, { problems });
  return out;
}

export async function loadTokenFile(path: string): Promise<TokenEntry[]> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new PgfedError("api.tokens_unreadable", `cannot read token file ${path}: ${(e as Error).message}`);
  }
  return parseTokenFile(text, path);
}

/**
 * Finds the entry whose hash matches the presented token. Compares against every entry with
 * timingSafeEqual on fixed-length hashes, so the time taken says nothing about which bytes matched.
 */
export function authenticate(tokens: readonly TokenEntry[], presented: string): TokenEntry | undefined {
  const h = hashToken(presented);
  let found: TokenEntry | undefined;
  for (const t of tokens) {
    if (timingSafeEqual(h, t.sha256) && found === undefined) found = t;
  }
  return found;
}

/** `Authorization: Bearer <token>` → the token, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S{1,4096})\s*$/i.exec(header);
  return m?.[1];
}

export interface AuthRateLimitOptions {
  /** Failed authentications from one client within `windowMs` that lock it out (default 10). */
  maxFailures?: number;
  /** The counting window, and how long a lockout lasts (default 60 s). */
  windowMs?: number;
  /** Most clients tracked at once; the one whose last failure is oldest is forgotten first (default 10 000). */
  maxClients?: number;
  now?: () => number;
}

export const DEFAULT_AUTH_RATE_LIMIT = { maxFailures: 10, windowMs: 60_000, maxClients: 10_000 } as const;

interface ClientFailures {
  /** Times of the failures within the window, oldest first (at most maxFailures). */
  at: number[];
  lockedUntil: number;
}

/**
 * Counts failed authentications per client and locks a client out for `windowMs` once it reached
 * `maxFailures` within `windowMs`. A locked-out client is refused before its token is looked at,
 * so a right guess is not told apart from a wrong one until the lockout ends. Memory is bounded:
 * at most `maxClients` clients are tracked, each with at most `maxFailures` timestamps.
 */
export class FailedAuthLimiter {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly maxClients: number;
  private readonly now: () => number;
  // Map order is the order of each client's last failure: the first entry is the oldest.
  private readonly clients = new Map<string, ClientFailures>();

  constructor(opts: AuthRateLimitOptions = {}) {
    this.maxFailures = opts.maxFailures ?? DEFAULT_AUTH_RATE_LIMIT.maxFailures;
    this.windowMs = opts.windowMs ?? DEFAULT_AUTH_RATE_LIMIT.windowMs;
    this.maxClients = opts.maxClients ?? DEFAULT_AUTH_RATE_LIMIT.maxClients;
    this.now = opts.now ?? Date.now;
  }

  /** Milliseconds until `client` may try again, or 0 when it is not locked out. */
  lockedForMs(client: string): number {
    const entry = this.clients.get(client);
    if (!entry) return 0;
    const left = entry.lockedUntil - this.now();
    return left > 0 ? left : 0;
  }

  /** Records one failed authentication; true when it locked the client out. */
  recordFailure(client: string): boolean {
    const now = this.now();
    const entry = this.clients.get(client) ?? { at: [], lockedUntil: 0 };
    this.clients.delete(client);
    entry.at = entry.at.filter((t) => t > now - this.windowMs);
    entry.at.push(now);
    let locked = false;
    if (entry.at.length >= this.maxFailures) {
      entry.lockedUntil = now + this.windowMs;
      entry.at = [];
      locked = true;
    }
    this.clients.set(client, entry);
    while (this.clients.size > this.maxClients) {
      const oldest = this.clients.keys().next().value;
      if (oldest === undefined) break;
      this.clients.delete(oldest);
    }
    return locked;
  }

  /** How many clients are tracked (for tests of the bound). */
  get trackedClients(): number {
    return this.clients.size;
  }
}

/**
 * The rate limiter's key for a peer address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64,
 * since one IPv6 host usually holds a whole /64 and could otherwise change address per request.
 */
export function clientKey(address: string | undefined): string {
  if (address === undefined || address === "") return "unknown";
  const a = address.replace(/%.*$/, "").toLowerCase();
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  if (v4) return v4[1] as string;
  if (!isIPv6(a)) return a;
  const [head = "", tail] = a.split("::");
  const groups = (part: string): string[] => (part === "" ? [] : part.split(":").flatMap((g) => (g.includes(".") ? ["0", "0"] : [g])));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return `${all
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}
