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

/** Wraps `cause` with what was being done: "while fencing pg-eu: connection refused". */
export function wrapError(code: string, doing: string, cause: unknown, details: Record<string, unknown> = {}): PgfedError {
  return new PgfedError(code, `${doing}: ${errorMessage(cause)}`, details, { cause });
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
