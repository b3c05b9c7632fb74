/**
 * Proof of a command's sender (identity.ts): the coordinator signs the whole envelope, so no
 * field (member, epoch, deadline, token, operation) can be changed without the signature failing.
 *
 *   proof = { signer: <public nkey>, signature: base64url(ed25519(PREFIX + canonicalJson(envelope without proof))) }
 *
 * Canonical JSON: keys sorted at every level, no whitespace; the envelope as parsed (zod drops
 * unknown keys on both sides, so what is signed is what is checked).
 */
import { z } from "zod";
import type { BusIdentity } from "./identity.js";
import { USER_PUBLIC_KEY, verifySignature } from "./identity.js";

const PREFIX = "pgfed-command-v1\n";

export const commandProofSchema = z.object({
  signer: z.string().regex(USER_PUBLIC_KEY, "must be a public user nkey (U…)"),
  signature: z.string().regex(/^[A-Za-z0-9_-]{16,200}$/, "must be base64url"),
});
export type CommandProof = z.infer<typeof commandProofSchema>;

/** JSON with keys sorted at every level (arrays keep their order); undefined members are left out as JSON.stringify does. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

function signedBytes(envelope: Record<string, unknown>): Uint8Array {
  const { proof: _proof, ...rest } = envelope;
  return new TextEncoder().encode(PREFIX + canonicalJson(rest));
}

/** The proof for `envelope` (its `proof`, if any, is not part of what is signed). */
export function signEnvelope(envelope: Record<string, unknown>, identity: BusIdentity): CommandProof {
  return { signer: identity.publicKey, signature: Buffer.from(identity.sign(signedBytes(envelope))).toString("base64url") };
}

/** True when `proof` is its signer's signature of `envelope`. */
export function proofVerifies(envelope: Record<string, unknown>, proof: CommandProof): boolean {
  const sig = Buffer.from(proof.signature, "base64url");
  return verifySignature(proof.signer, signedBytes(envelope), sig);
}
