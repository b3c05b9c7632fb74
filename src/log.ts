import { pino, type Logger } from "pino";

export type { Logger };

/** Paths whose values never reach a log line. */
export const REDACT_PATHS = [
  "password",
  "*.password",
  "*.*.password",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "req.headers.authorization",
  "connectionString",
  "*.connectionString",
  "routingKey",
  "*.routingKey",
  "secret",
  "*.secret",
];

export interface LogOptions {
  level?: string;
  /** Force pretty output; by default pretty only when stdout is a TTY. */
  pretty?: boolean;
  name?: string;
}

/** The one pino logger: JSON by default, pretty when a person is watching, secrets redacted. */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.PGFED_LOG_LEVEL ?? "info";
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && process.env.PGFED_LOG_FORMAT !== "json");
  const base = { level, name: opts.name ?? "pgfed", redact: { paths: REDACT_PATHS, censor: "[redacted]" } };
  if (pretty) {
    return pino({
      ...base,
      transport: { target: "pino-pretty", options: { colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,name" } },
    });
  }
  return pino(base);
}

/** A logger that writes nothing, for tests and library callers that do not care. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
