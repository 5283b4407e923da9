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
  /** A rules file (carbon-c-relay's relay.conf) cannot be used: `file:line:column: what was expected`. */
  Rules: "POLYMUR_ERR_RULES",
  /** A hash-routing configuration is one the chosen reference rejects. */
  HashConfig: "POLYMUR_ERR_HASH_CONFIG",
  /**
   * The proxy's spool directory cannot be used (not writable, or locked by
   * another proxy), or a batch cannot be read back from it.
   */
  Spool: "POLYMUR_ERR_SPOOL",
  /** A gateway refused the proxy's API key (unknown, rotated or deleted). */
  Auth: "POLYMUR_ERR_AUTH",
  /** A control-plane mutation named a state version that is no longer current (compare-and-set). */
  VersionConflict: "POLYMUR_ERR_VERSION_CONFLICT",
  /** A control-plane object (destination, API key) already exists. */
  AlreadyExists: "POLYMUR_ERR_ALREADY_EXISTS",
  /** A control-plane object (destination, API key) does not exist. */
  NotFound: "POLYMUR_ERR_NOT_FOUND",
  /** The control plane cannot reach its state store; reads are served from the last state seen. */
  StoreUnavailable: "POLYMUR_ERR_STORE_UNAVAILABLE",
  /** The control plane's state store holds something it cannot read (a damaged state file). */
  StoreCorrupt: "POLYMUR_ERR_STORE_CORRUPT",
  /** A control-plane call came without a credential, or with one the server does not know. */
  Unauthenticated: "POLYMUR_ERR_UNAUTHENTICATED",
  /** A control-plane call came with a credential of the wrong kind (node credential for an admin call). */
  PermissionDenied: "POLYMUR_ERR_PERMISSION_DENIED",
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

/**
 * A command-line usage or configuration problem (an unknown flag, a missing
 * argument, a bad value, an unreadable config file): the command prints its
 * message on one line and exits 2. It has no POLYMUR_ERR_* code: it never
 * leaves the process that threw it.
 */
export class UsageError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}
