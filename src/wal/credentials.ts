/**
 * Where a sampler gets its Postgres password and TLS material: a literal (tests), an environment
 * variable, a file (a mounted secret), or a Kubernetes secret read through a `SecretResolver` the
 * agent supplies with its kube client. Values are resolved at every connect, so rotated secrets
 * are picked up without a restart.
 */
import { readFile } from "node:fs/promises";
import type { ConnectionOptions } from "node:tls";
import { z } from "zod";
import { PgfedError, wrapError } from "../errors.js";

export const secretRefSchema = z
  .object({
    name: z.string().min(1),
    /** Defaults to the member's namespace (the resolver decides). */
    namespace: z.string().min(1).optional(),
    /** CNPG's basic-auth secrets hold `username` and `password`. */
    key: z.string().min(1).default("password"),
  })
  .strict();
export type SecretRef = z.infer<typeof secretRefSchema>;

/** Same shapes as `postgres.password` in the config (`value` is the literal form, for tests and the lab). */
export const credentialSourceSchema = z.union([
  z.object({ value: z.string() }).strict(),
  z.object({ env: z.string().min(1) }).strict(),
  z.object({ file: z.string().min(1) }).strict(),
  z.object({ secretRef: secretRefSchema }).strict(),
]);
export type CredentialSource = z.infer<typeof credentialSourceSchema>;

/** Implemented by the agent with its Kubernetes client; returns the decoded value of one key. */
export interface SecretResolver {
  readSecretKey(ref: SecretRef): Promise<string>;
}

export interface ResolveOptions {
  resolver?: SecretResolver | undefined;
  /** Defaults to process.env; injectable for tests. */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Resolves one credential. `what` names it in errors ("password of pg-eu"); the value itself never
 * appears in an error or a log line.
 */
export async function resolveCredential(source: CredentialSource, what: string, opts: ResolveOptions = {}): Promise<string> {
  if ("value" in source) return source.value;
  if ("env" in source) {
    const v = (opts.env ?? process.env)[source.env];
    if (v === undefined || v === "") throw new PgfedError("wal.credential_missing", `reading ${what}: environment variable ${source.env} is not set`, { env: source.env });
    return v;
  }
  if ("file" in source) {
    try {
      // Mounted secrets usually end with a newline that is not part of the password.
      return (await readFile(source.file, "utf8")).replace(/\r?\n$/, "");
    } catch (e) {
      throw wrapError("wal.credential_missing", `reading ${what} from file ${source.file}`, e, { file: source.file });
    }
  }
  if (!opts.resolver) {
    throw new PgfedError("wal.credential_missing", `reading ${what}: secret ${source.secretRef.name} needs a Kubernetes secret resolver and none was given`, {
      secret: source.secretRef.name,
    });
  }
  try {
    return await opts.resolver.readSecretKey(source.secretRef);
  } catch (e) {
    throw wrapError("wal.credential_missing", `reading ${what} from secret ${source.secretRef.namespace ?? "(member namespace)"}/${source.secretRef.name} key ${source.secretRef.key}`, e, {
      secret: source.secretRef.name,
    });
  }
}

/** libpq's sslmode names (without `allow`); `prefer` tries TLS unverified and falls back to plain TCP. */
export const tlsModeSchema = z.enum(["disable", "prefer", "require", "verify-ca", "verify-full"]);
export type TlsMode = z.infer<typeof tlsModeSchema>;

export const tlsSchema = z
  .object({
    mode: tlsModeSchema.default("disable"),
    /** PEM of the CA that signed the server certificate (CNPG: `<cluster>-ca` secret, key `ca.crt`). */
    ca: credentialSourceSchema.optional(),
  })
  .strict();
export type TlsConfig = z.input<typeof tlsSchema>;

/** Turns a TLS config into the `ssl` option of `pg` (false = plain TCP); `prefer` is handled by the caller. */
export async function pgSslOptions(tls: TlsConfig | undefined, what: string, opts: ResolveOptions = {}): Promise<false | ConnectionOptions> {
  const t = tlsSchema.parse(tls ?? {});
  if (t.mode === "disable") return false;
  if (t.mode === "require" || t.mode === "prefer") return { rejectUnauthorized: false };
  if (!t.ca) throw new PgfedError("wal.tls_config", `TLS mode ${t.mode} for ${what} needs a CA (tls.ca)`);
  const ca = await resolveCredential(t.ca, `TLS CA of ${what}`, opts);
  // verify-ca checks the chain but not the host name, as libpq does.
  return t.mode === "verify-ca" ? { ca, rejectUnauthorized: true, checkServerIdentity: () => undefined } : { ca, rejectUnauthorized: true };
}
