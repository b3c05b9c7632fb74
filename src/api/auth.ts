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
