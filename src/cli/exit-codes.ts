/** The CLI's documented exit codes (README, `pgfed --help`). */
export const EXIT = {
  ok: 0,
  /** Something failed that pgfed did not expect (a bug or an unreachable dependency). */
  error: 1,
  /** Refused by a precondition: invalid config, a failed safety check, a 4xx from the API. */
  refused: 2,
  /** The operation ran and failed (aborted, unrecoverable). */
  failed: 3,
  /** Waited for the operation and gave up. */
  timedOut: 4,
  /** Bad command-line usage. */
  usage: 64,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** Thrown by commands to end with a specific exit code and message. */
export class CliExit extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
  }
}
