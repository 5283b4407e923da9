import { readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { type ParseArgsConfig, parseArgs } from "node:util";
import type { DescService } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { PolymurError } from "../../common/errors.ts";
import { type OptionSpec, parseConfigFile } from "../../common/options.ts";
import type { CommandIO } from "../polymurctl.ts";

/**
 * What every polymurctl command that talks to the control plane shares:
 * where it is (--server, POLYMUR_SERVER, the config file), the admin
 * credential, TLS, --json, and how failures become exit codes and one-line
 * reasons.
 *
 * Exit codes: 0 ok, 1 the control plane said no, 2 usage or configuration,
 * 3 the control plane could not be reached.
 */
export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;

export const DEFAULT_SERVER = "http://127.0.0.1:7000";

export const COMMON_OPTIONS = {
  server: { type: "string" },
  token: { type: "string" },
  ca: { type: "string" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const satisfies NonNullable<ParseArgsConfig["options"]>;

export const COMMON_HELP = `common options:
  --server URL      control plane, http://host:port (cleartext HTTP/2) or https://host:port
                    (POLYMUR_SERVER; default ${DEFAULT_SERVER})
  --ca FILE         PEM CA certificate that signed an https control plane's certificate (POLYMUR_CA)
  --timeout SECS    give up on a call after this long (POLYMUR_TIMEOUT; default 10)
  --json            machine-readable output on stdout
  --token TOKEN     admin credential; visible to other users in ps: prefer POLYMUR_ADMIN_TOKEN
                    or "token = …" in the config file
  -h, --help        this help

The config file (POLYMURCTL_CONFIG, default ~/.config/polymur/polymurctl.conf) holds
"server = URL", "token = TOKEN", "ca = FILE" and "timeout = SECS" lines; keep it chmod 600.
Exit status: 0 ok, 1 the control plane refused, 2 usage or configuration, 3 unreachable.`;

const FILE_SPECS: readonly OptionSpec[] = ["server", "token", "ca", "timeout"].map((name) => ({
  name,
  type: "string",
  default: "",
  help: "",
}));

/** A usage or configuration problem: exit 2. */
export class UsageError extends Error {}

export interface CtlSettings {
  server: string;
  token: string;
  ca: Buffer | undefined;
  timeoutMs: number;
  json: boolean;
}

export function configPath(env: NodeJS.ProcessEnv): { path: string; explicit: boolean } {
  const explicit = env["POLYMURCTL_CONFIG"];
  if (explicit !== undefined && explicit !== "") return { path: explicit, explicit: true };
  const base = env["XDG_CONFIG_HOME"] || join(homedir(), ".config");
  return { path: join(base, "polymur", "polymurctl.conf"), explicit: false };
}

/** Flag > environment > config file > default. */
export function resolveSettings(
  values: { server?: string; token?: string; ca?: string; timeout?: string; json?: boolean },
  env: NodeJS.ProcessEnv,
  io: CommandIO,
): CtlSettings {
  const { path, explicit } = configPath(env);
  let file = new Map<string, string>();
  let fileExists = true;
  try {
    statSync(path);
  } catch {
    fileExists = false;
  }
  if (fileExists || explicit) {
    try {
      file = parseConfigFile(FILE_SPECS, path);
    } catch (err) {
      throw new UsageError(`${(err as Error).message} (POLYMURCTL_CONFIG)`);
    }
    if (file.has("token") && fileExists && (statSync(path).mode & 0o077) !== 0) {
      io.stderr.write(
        `polymurctl: warning: ${path} holds the admin credential and is readable by others; chmod 600 ${path}\n`,
      );
    }
  }
  const pick = (flag: string | undefined, envName: string, key: string): string =>
    flag ?? (env[envName] || undefined) ?? file.get(key) ?? "";
  if (values.token !== undefined) {
    io.stderr.write(
      "polymurctl: warning: --token is visible to other users (ps, shell history); prefer POLYMUR_ADMIN_TOKEN or the config file\n",
    );
  }
  let server = pick(values.server, "POLYMUR_SERVER", "server") || DEFAULT_SERVER;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(server)) server = `http://${server}`;
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new UsageError(`--server "${server}" is not a URL such as http://127.0.0.1:7000`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--server must be http:// or https://; got "${server}"`);
  }
  const caPath = pick(values.ca, "POLYMUR_CA", "ca");
  let ca: Buffer | undefined;
  if (caPath !== "") {
    try {
      ca = readFileSync(caPath);
    } catch (err) {
      throw new UsageError(`--ca ${caPath}: ${(err as Error).message}`);
    }
  }
  const timeoutText = pick(values.timeout, "POLYMUR_TIMEOUT", "timeout") || "10";
  const timeout = Number(timeoutText.replace(/s$/, ""));
  if (!Number.isFinite(timeout) || timeout <= 0) {
    throw new UsageError(`--timeout must be a number of seconds; got "${timeoutText}"`);
  }
  return {
    server: server.replace(/\/+$/, ""),
    token: pick(values.token, "POLYMUR_ADMIN_TOKEN", "token"),
    ca,
    timeoutMs: timeout * 1000,
    json: values.json === true,
  };
}

/** A connection to the control plane, closed (so the process can exit) by `close`. */
export interface CtlConnection {
  settings: CtlSettings;
  client<T extends DescService>(service: T, opts?: { auth?: boolean }): Client<T>;
  close(): void;
}

export function connect(settings: CtlSettings): CtlConnection {
  // One HTTP/2 session for every call of the command; aborted at the end, else its
  // idle timer would keep the process alive.
  const nodeOptions = settings.ca === undefined ? {} : { ca: settings.ca };
  const sessionManager = new Http2SessionManager(settings.server, {}, nodeOptions);
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${settings.token}`);
    return next(req);
  };
  return {
    settings,
    client(service, opts) {
      const needsAuth = opts?.auth !== false;
      if (needsAuth && settings.token === "") {
        throw new UsageError(
          "no admin credential: set POLYMUR_ADMIN_TOKEN (the control plane's), or token = … in ~/.config/polymur/polymurctl.conf",
        );
      }
      return createClient(
        service,
        createGrpcTransport({
          baseUrl: settings.server,
          sessionManager,
          interceptors: needsAuth ? [auth] : [],
          defaultTimeoutMs: settings.timeoutMs,
        }),
      );
    },
    close() {
      sessionManager.abort();
    },
  };
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

const TLS_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

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

export interface Failure {
  exit: number;
  message: string;
  /** For --json: the gRPC code name and POLYMUR_ERR_* code, when the server gave them. */
  code?: string;
  polymurCode?: string;
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
    if (TLS_CODES.has(n.code)) {
      return {
        exit: EXIT.unreachable,
        message: `cannot verify the certificate of the ${where}: ${n.message}; pass the CA that signed it with --ca FILE (or POLYMUR_CA)`,
        code: "unavailable",
      };
    }
    if (n.code.startsWith("ERR_SSL_") && server.startsWith("https://")) {
      return {
        exit: EXIT.unreachable,
        message: `TLS handshake with the ${where} failed (${n.code}); if it serves cleartext HTTP/2, use an http:// URL`,
        code: "unavailable",
      };
    }
    const words = ERRNO_WORDS[n.code];
    const tlsHint =
      server.startsWith("http://") && (n.code === "ECONNRESET" || n.code.startsWith("ERR_HTTP2"))
        ? "; if it serves TLS, use an https:// URL"
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
    const tlsHint = server.startsWith("http://") ? "; if it serves TLS, use an https:// URL" : "";
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

export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** Parses a command's argv (its own options plus the common ones); UsageError on trouble. */
export function parseCommandArgs<O extends NonNullable<ParseArgsConfig["options"]>>(
  argv: readonly string[],
  options: O,
) {
  try {
    return parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: { ...COMMON_OPTIONS, ...options },
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message.split("\n")[0]} (see --help)`);
  }
}

/**
 * Parses a command's argv and answers --help. Returns the parsed arguments,
 * or the exit status when the command is already done (a usage error, printed
 * on stderr, or --help, printed on stdout).
 */
export function commandArgs<O extends NonNullable<ParseArgsConfig["options"]>>(
  name: string,
  usage: string,
  argv: readonly string[],
  options: O,
  io: CommandIO,
): ReturnType<typeof parseCommandArgs<O>> | number {
  let parsed: ReturnType<typeof parseCommandArgs<O>>;
  try {
    parsed = parseCommandArgs(argv, options);
  } catch (err) {
    return fail(name, io, { exit: EXIT.usage, message: (err as Error).message }, false);
  }
  if ((parsed.values as Record<string, unknown>)["help"] === true) {
    io.stdout.write(`${usage}\n`);
    return EXIT.ok;
  }
  return parsed;
}

/**
 * Runs a command body with a connection; prints failures (one line on
 * stderr, and with --json an error object on stdout) and returns the exit status.
 */
export async function runWithConnection(
  name: string,
  values: Record<string, unknown>,
  io: CommandIO,
  body: (conn: CtlConnection) => Promise<number | undefined>,
): Promise<number> {
  let settings: CtlSettings;
  try {
    settings = resolveSettings(values, process.env, io);
  } catch (err) {
    return fail(name, io, describeFailure(err, ""), values["json"] === true);
  }
  const conn = connect(settings);
  try {
    return (await body(conn)) ?? EXIT.ok;
  } catch (err) {
    return fail(name, io, describeFailure(err, settings.server), settings.json);
  } finally {
    conn.close();
  }
}

export function fail(name: string, io: CommandIO, f: Failure, json: boolean): number {
  f = { ...f, message: f.message.replace(/\s*\n\s*/g, " ").trim() }; // one line, always
  io.stderr.write(`polymurctl ${name}: ${f.message}\n`);
  if (json) {
    const error = {
      message: f.message,
      exit: f.exit,
      ...(f.code === undefined ? {} : { code: f.code }),
      ...(f.polymurCode === undefined ? {} : { polymurCode: f.polymurCode }),
    };
    io.stdout.write(`${JSON.stringify({ error })}\n`);
  }
  return f.exit;
}

/** Left-aligned columns, two spaces apart, header in capitals. */
export function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

export function printJson(io: CommandIO, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? Number(v) : v))}\n`);
}

/** `--expected-version N`, or undefined. */
export function expectedVersion(value: string | undefined): bigint | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) {
    throw new UsageError(`--expected-version must be a whole number; got "${value}"`);
  }
  return BigInt(value);
}

export type ScopeArg = { case: "all"; value: true } | { case: "group"; value: string };

/** `--all` or `--group NAME`: exactly one when `required`. */
export function scopeArg(
  values: { all?: boolean; group?: string },
  required: boolean,
): ScopeArg | undefined {
  if (values.all === true && values.group !== undefined) {
    throw new UsageError("give --all or --group NAME, not both");
  }
  if (values.all === true) return { case: "all", value: true };
  if (values.group !== undefined) return { case: "group", value: values.group };
  if (required) throw new UsageError("say where: --all (every node) or --group NAME");
  return undefined;
}

export function scopeText(
  s: { target: { case?: string | undefined; value?: unknown } } | undefined,
): string {
  const t = s?.target;
  return t?.case === "group" ? `group ${String(t.value)}` : "all";
}

export function scopeJson(
  s: { target: { case?: string | undefined; value?: unknown } } | undefined,
): { all: true } | { group: string } {
  const t = s?.target;
  return t?.case === "group" ? { group: String(t.value) } : { all: true };
}

/** A protobuf Timestamp as ISO 8601 (UTC, seconds), or "" when unset. */
export function isoTime(t: { seconds: bigint; nanos: number } | undefined): string {
  if (t === undefined || (t.seconds === 0n && t.nanos === 0)) return "";
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6))
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z");
}
