/**
 * Typed errors with stable string codes (POLYMUR_ERR_*), so callers, logs and
 * tests can match on `code` rather than on message text. Every code is listed
 * in docs/errors.md.
 */
export const ErrorCode = {
  /** A configuration value (flag, env var, config file, API call) is invalid. */
  Config: "POLYMUR_ERR_CONFIG",
  /** A destination spec (`host:port[:instance]`, `host:port=instance`) cannot be parsed. */
  DestinationSpec: "POLYMUR_ERR_DEST_SPEC",
  /** A hash-routing configuration is one the chosen reference rejects. */
  HashConfig: "POLYMUR_ERR_HASH_CONFIG",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const kPolymurError = Symbol.for("polymur.error");

export class PolymurError extends Error {
  readonly code: ErrorCode;
  readonly [kPolymurError] = true;

  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PolymurError";
    this.code = code;
  }

  // instanceof works across duplicated copies of the module (as undici does).
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === "object" && value !== null && kPolymurError in value;
  }
}
