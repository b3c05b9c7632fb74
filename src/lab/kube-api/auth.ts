/**
 * Bearer-token authentication and a per-token permission table (a small stand-in for RBAC):
 * unknown or missing token → 401, a verb the token's rules do not allow → 403.
 */
import type { IncomingHttpHeaders } from "node:http";
import { unauthorized } from "./status.js";
import type { TokenIdentity } from "./types.js";

export function authenticate(headers: IncomingHttpHeaders, tokens: Readonly<Record<string, TokenIdentity>>, anonymous?: TokenIdentity): TokenIdentity {
  const h = headers.authorization ?? "";
  if (h === "" && anonymous) return anonymous;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  const token = m?.[1];
  if (!token || !Object.hasOwn(tokens, token)) throw unauthorized();
  const id = tokens[token];
  if (!id) throw unauthorized();
  return id;
}

/** `resource` is the plural, `subresource` e.g. "status"; rules may name `clusters/status` or `*\/status`. */
export function isAllowed(id: TokenIdentity, verb: string, resource: string, subresource: string | undefined): boolean {
  const full = subresource ? `${resource}/${subresource}` : resource;
  return id.allow.some((rule) => {
    const verbOk = rule.verbs === "*" || rule.verbs.includes(verb) || rule.verbs.includes("*");
    if (!verbOk) return false;
    if (rule.resources === "*") return true;
    return rule.resources.some((r) => r === "*" || r === full || (subresource !== undefined && r === `*/${subresource}`));
  });
}
