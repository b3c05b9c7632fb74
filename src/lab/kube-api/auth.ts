/**
 * Bearer-token authentication, then authorization by the token's own permission table or, for an
 * identity without one, by the RBAC objects the server was given (rbac.ts): unknown or missing
 * token → 401, a request the rules do not allow → 403.
 */
import type { IncomingHttpHeaders } from "node:http";
import { unauthorized } from "./status.js";
import type { RbacPolicy, RequestAttributes } from "./rbac.js";
import type { TokenIdentity, TokenRule } from "./types.js";

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

/** A token's own table when it has one, else the RBAC policy; no table and no policy: nothing is allowed. */
export function authorize(id: TokenIdentity, a: RequestAttributes, rbac: RbacPolicy | undefined): boolean {
  if (id.allow) return isAllowed(id.allow, a.verb, a.resource, a.subresource);
  return rbac?.allows(a) ?? false;
}

/** `resource` is the plural, `subresource` e.g. "status"; rules may name `clusters/status` or `*\/status`. */
export function isAllowed(allow: readonly TokenRule[], verb: string, resource: string, subresource: string | undefined): boolean {
  const full = subresource ? `${resource}/${subresource}` : resource;
  return allow.some((rule) => {
    const verbOk = rule.verbs === "*" || rule.verbs.includes(verb) || rule.verbs.includes("*");
    if (!verbOk) return false;
    if (rule.resources === "*") return true;
    return rule.resources.some((r) => r === "*" || r === full || (subresource !== undefined && r === `*/${subresource}`));
  });
}
