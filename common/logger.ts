import pino, { type Logger } from "pino";

export type { Logger };

export interface LoggerOptions {
  /** pino level. Default "info" (POLYMUR_LOG_LEVEL overrides). */
  level?: string;
  /** Extra bindings on every line, e.g. { role: "relay", worker: 1 }. */
  bindings?: Record<string, unknown>;
}

/**
 * JSON lines on stdout. Secrets never reach a log line: fields that carry
 * them are redacted here, centrally, whatever the call site passes.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino({
    level: options.level ?? process.env["POLYMUR_LOG_LEVEL"] ?? "info",
    base: { pid: process.pid, ...options.bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: {
      paths: ["apiKey", "token", "secret", "*.apiKey", "*.token", "*.secret", "authorization"],
      censor: "[redacted]",
    },
  });
}
