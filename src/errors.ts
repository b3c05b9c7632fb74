/**
 * Every error pgfed raises on purpose carries a stable `code` (for the API, the CLI's exit codes
 * and tests) and says what was being done and for whom (STYLE.md, from CloudNativePG).
 */
export class PgfedError extends Error {
  readonly code: string;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: string, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "PgfedError";
    this.code = code;
    this.details = details;
  }
}

export interface ConfigProblem {
  path: string;
  message: string;
}

/**
 * A config refused whole, with every problem and its path. It lives here, not in config.ts, so
 * the CLI can recognise it without loading the config schema (zod) on every command.
 */
export class ConfigError extends PgfedError {
  readonly problems: ConfigProblem[];
  constructor(source: string, problems: ConfigProblem[]) {
    super("config.invalid", `invalid config ${source}:\n${problems.map((p) => `  ${p.path}: ${p.message}`).join("\n")}`, { problems });
    this.problems = problems;
  }
}

/** Wraps `cause` with what was being done: "while fencing pg-eu: connection refused". */
export function wrapError(code: string, doing: string, cause: unknown, details: Record<string, unknown> = {}): PgfedError {
  return new PgfedError(code, `${doing}: ${errorMessage(cause)}`, details, { cause });
}

/**
 * The message with its causes: undici (client-node 2.x, Node's fetch) reports a refused connection
 * as "fetch failed" and keeps "connect ECONNREFUSED 127.0.0.1:6443" in `cause`, which on-call
 * needs to see. Each cause is appended once, at most four deep.
 */
export function errorMessageWithCauses(err: unknown): string {
  let text = errorMessage(err);
  let cause: unknown = err instanceof Error ? err.cause : undefined;
  for (let depth = 0; depth < 4 && cause !== undefined && cause !== null; depth++) {
    const more = errorMessage(cause);
    if (more && !text.includes(more)) text += `: ${more}`;
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  return text;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}
