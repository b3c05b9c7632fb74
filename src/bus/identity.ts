/**
 * Who a process is on the bus, and proof of it (docs/operations.md, "Security model").
 *
 * Every pgfed process has one NATS identity: an nkey user seed (`SU…`, ed25519) in a file
 * (`bus.identityFile`). The seed does two jobs:
 *
 * - NATS authentication: the server knows only the public key (`U…`) and the permissions that
 *   go with it, so the seed never leaves the process and the server config holds no secret.
 * - Command signatures: a coordinator signs every command it sends with the same key; an agent
 *   executes a command only when the signature verifies, the signer is one of the configured
 *   coordinator keys (`bus.coordinatorKeys`) and the coordinator lease names that key as its
 *   holder (command-auth.ts). A leaked agent seed can neither pass NATS permissions nor sign.
 *
 * Why nkeys and not passwords or client certificates: nats-server 2.9 (Debian's) supports them
 * natively, the server stores no secret (a password file would hold bcrypt hashes an attacker
 * can grind on), rotation is "add the new public key, roll, remove the old", and the key pair
 * already is the signing key the commands need. TLS (server certificate checked against a CA)
 * protects the traffic; client certificates can be added (`bus.tls.certFile`) but are not what
 * authenticates a pgfed process.
 */
import { readFileSync } from "node:fs";
import { createUser, fromPublic, fromSeed, type KeyPair } from "@nats-io/nkeys";
import { PgfedError, errorMessage } from "../errors.js";

/** A public nkey of a user: "U" and 55 more base32 characters. */
export const USER_PUBLIC_KEY = /^U[A-Z2-7]{55}$/;
/** A user seed: "SU" and 56 more base32 characters (what must never be logged). */
export const USER_SEED = /SU[A-Z2-7]{56}/;

export interface BusIdentity {
  /** The public nkey (`U…`): what the NATS server and `bus.coordinatorKeys` list. */
  readonly publicKey: string;
  /** The seed, for the NATS authenticator only. */
  seed(): Uint8Array;
  /** ed25519 signature of `data`. */
  sign(data: Uint8Array): Uint8Array;
}

class NkeyIdentity implements BusIdentity {
  readonly publicKey: string;
  constructor(private readonly pair: KeyPair) {
    this.publicKey = pair.getPublicKey();
  }
  seed(): Uint8Array {
    return this.pair.getSeed();
  }
  sign(data: Uint8Array): Uint8Array {
    return this.pair.sign(data);
  }
  toJSON(): string {
    return `nkey:${this.publicKey}`; // never the seed, whatever logs the object
  }
}

/** Reads an nkey user seed file (one `SU…` line; `#` comments and blank lines allowed). Throws `bus.identity_invalid`. */
export function loadIdentity(path: string): BusIdentity {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new PgfedError("bus.identity_invalid", `cannot read the NATS identity file ${path}: ${errorMessage(e)}`, { path });
  }
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const seed = lines.find((l) => /^SU[A-Z2-7]+$/.test(l));
  if (!seed) throw new PgfedError("bus.identity_invalid", `the NATS identity file ${path} holds no nkey user seed (a line starting with "SU"); make one with \`pgfed nats identity\``, { path });
  return identityFromSeed(seed, path);
}

export function identityFromSeed(seed: string, where = "the seed"): BusIdentity {
  try {
    const pair = fromSeed(new TextEncoder().encode(seed));
    if (!USER_PUBLIC_KEY.test(pair.getPublicKey())) throw new Error("not a user seed");
    return new NkeyIdentity(pair);
  } catch (e) {
    // The seed itself is never part of the message.
    throw new PgfedError("bus.identity_invalid", `${where} is not a valid nkey user seed: ${errorMessage(e)}`);
  }
}

/** A new identity: the seed text to store (mode 0600) and its public key. */
export function createIdentity(): { seed: string; publicKey: string; identity: BusIdentity } {
  const pair = createUser();
  const identity = new NkeyIdentity(pair);
  return { seed: new TextDecoder().decode(pair.getSeed()), publicKey: identity.publicKey, identity };
}

/** True when `signature` is `publicKey`'s signature of `data`; false for any malformed input. */
export function verifySignature(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  if (!USER_PUBLIC_KEY.test(publicKey)) return false;
  try {
    return fromPublic(publicKey).verify(data, signature);
  } catch {
    return false;
  }
}

/** Why `key` is not a public user nkey, or undefined. */
export function publicKeyProblem(key: string): string | undefined {
  if (!USER_PUBLIC_KEY.test(key)) return 'expected a public user nkey: "U" followed by 55 characters of A-Z and 2-7';
  try {
    fromPublic(key);
    return undefined;
  } catch (e) {
    return `not a valid nkey: ${errorMessage(e)}`;
  }
}

/** The `bus` section's security settings, as connectBus takes them. */
export interface BusSecuritySettings {
  tls?: { caFile: string; certFile?: string | undefined; keyFile?: string | undefined } | undefined;
  identityFile?: string | undefined;
}

/**
 * The identity and TLS a process connects with: `bus.identityFile`, or the file named by
 * PGFED_NATS_IDENTITY_FILE (one config for every pod, each pod its own Secret), or none.
 */
export function busSecurity(bus: BusSecuritySettings, env: NodeJS.ProcessEnv = process.env): { identity?: BusIdentity; tls?: { caFile: string; certFile?: string | undefined; keyFile?: string | undefined } } {
  const file = env.PGFED_NATS_IDENTITY_FILE || bus.identityFile;
  return { ...(file ? { identity: loadIdentity(file) } : {}), ...(bus.tls ? { tls: bus.tls } : {}) };
}
