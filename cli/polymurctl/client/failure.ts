import { Code, ConnectError } from "@connectrpc/connect";
import {
  caHint,
  HINT_USE_HTTP,
  HINT_USE_HTTPS,
  hostHint,
  TLS_HOST_CODE,
  TLS_VERIFY_CODES,
} from "../../../common/connection-hints.ts";
import { PolymurError, UsageError } from "../../../common/errors.ts";
import { EXIT } from "./exit.ts";

/** Why a command failed: its exit status and a one-line reason that says what to do. */
export interface Failure {
  exit: number;
  message: string;
  /** For --json: the gRPC code name and POLYMUR_ERR_* code, when the server gave them. */
  code?: string;
  polymurCode?: string;
}

const ERRNO_WORDS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "connection timed out",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed",
};

const TRANSPORT_MESSAGE =
  /^(http\/2 (stream|connection) closed|connection aborted|PING timed out|received GOAWAY|expected open session)/;

/** The first Node error code (errno, TLS, HTTP/2) in an error's cause chain. */
function nodeCode(err: unknown): { code: string; message: string } | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && !(e instanceof ConnectError))
      return { code, message: e.message };
  }
  return undefined;
}

/** Turns what a call threw into an exit status and a one-line reason that says what to do. */
export function describeFailure(err: unknown, server: string): Failure {
  if (err instanceof UsageError || err instanceof PolymurError) {
    return { exit: EXIT.usage, message: err.message };
  }
  const ce = ConnectError.from(err);
  const n = nodeCode(err);
  const where = `control plane at ${server}`;
  if (n !== undefined) {
    if (TLS_VERIFY_CODES.has(n.code)) {
      return {
        exit: EXIT.unreachable,
        message: `cannot verify the certificate of the ${where}: ${n.message}; ${caHint("--ca FILE (or POLYMUR_CA)")}`,
        code: "unavailable",
      };
    }
    if (n.code === TLS_HOST_CODE) {
      return {
        exit: EXIT.unreachable,
        message: `cannot verify the certificate of the ${where}: ${n.message}; ${hostHint(server)}`,
        code: "unavailable",
      };
    }
    if (n.code.startsWith("ERR_SSL_") && server.startsWith("https://")) {
      return {
        exit: EXIT.unreachable,
        message: `TLS handshake with the ${where} failed (${n.code}); ${HINT_USE_HTTP}`,
        code: "unavailable",
      };
    }
    const words = ERRNO_WORDS[n.code];
    const tlsHint =
      server.startsWith("http://") && (n.code === "ECONNRESET" || n.code.startsWith("ERR_HTTP2"))
        ? `; ${HINT_USE_HTTPS}`
        : "";
    return {
      exit: EXIT.unreachable,
      message: `cannot reach ${where}: ${words ?? n.message}; is \`polymur control\` running? set --server or POLYMUR_SERVER${tlsHint}`,
      code: "unavailable",
    };
  }
  // connect-node's own transport failures (node-error.ts, http2-session-manager.ts) carry
  // no Node error: a reset stream, a dead session. The server did not answer them.
  if (TRANSPORT_MESSAGE.test(ce.rawMessage)) {
    const tlsHint = server.startsWith("http://") ? `; ${HINT_USE_HTTPS}` : "";
    return {
      exit: EXIT.unreachable,
      message: `cannot talk to ${where}: ${ce.rawMessage}${tlsHint}`,
      code: codeName(ce.code),
    };
  }
  if (ce.code === Code.DeadlineExceeded) {
    return {
      exit: EXIT.unreachable,
      message: `${where} did not answer in time; is it overloaded or behind a firewall? (--timeout SECS)`,
      code: "deadline_exceeded",
    };
  }
  const polymurCode = ce.metadata.get("polymur-error-code") ?? undefined;
  let hint = "";
  if (ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied) {
    hint = " (polymurctl sends POLYMUR_ADMIN_TOKEN, --token or token = … in its config file)";
  } else if (ce.code === Code.Unimplemented) {
    hint = ` (is ${server} a polymur control plane?)`;
  }
  return {
    exit: EXIT.refused,
    message: `${ce.rawMessage}${hint}`,
    code: codeName(ce.code),
    ...(polymurCode === undefined ? {} : { polymurCode }),
  };
}

/** A gRPC code as its snake_case name: Code.DeadlineExceeded → "deadline_exceeded". */
export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}
