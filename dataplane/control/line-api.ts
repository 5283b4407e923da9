import { createHash, timingSafeEqual } from "node:crypto";
import net from "node:net";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { ThrottledWarning } from "../../common/log-throttle.ts";
import type { Logger } from "../../common/logger.ts";
import { isLoopbackAddress } from "../../common/loopback.ts";

/** Where the line API listens unless told otherwise (--api-addr). */
export const DEFAULT_API_ADDR = { host: "127.0.0.1", port: 2030 } as const;

/**
 * The line API's bounds. It is an operator's tool (`echo putdest … | nc`),
 * so each is far above what an operator needs and far below what would let
 * a client hold the relay's memory, descriptors or logs.
 */
export interface LineApiLimits {
  /** Longest command, newline included, in characters; a longer one closes the connection. */
  maxLineChars: number;
  /** Open connections; more are accepted and closed at once. */
  maxConnections: number;
  /** A connection that sends nothing for this long is closed. */
  idleTimeoutMs: number;
  /** Wrong `auth` tokens on one connection before it is closed. */
  maxAuthFailures: number;
  /** Least time between two log lines about bad tokens or refused connections. */
  logIntervalMs: number;
}

export const LINE_API_LIMITS: Readonly<LineApiLimits> = {
  maxLineChars: 64 * 1024,
  maxConnections: 16,
  idleTimeoutMs: 60_000,
  maxAuthFailures: 3,
  logIntervalMs: 10_000,
};

/** What the line API can do to the relay it controls. */
export interface LineApiTarget {
  destinations(): string[];
  /** Throws a PolymurError with a readable message on bad input. */
  addDestination(spec: string): string;
  removeDestination(spec: string): string;
}

export interface LineApiOptions {
  host: string;
  port: number;
  /**
   * When set, a connection must send `auth TOKEN` before any other command.
   * When empty, the API refuses to start unless it is bound to a loopback address.
   */
  token: string;
  /** Overrides of LINE_API_LIMITS (tests). */
  limits?: Partial<LineApiLimits>;
}

/**
 * The Go polymur's line API, for operators migrating from it:
 *   echo putdest 10.0.5.30:2003 | nc -q1 localhost 2030
 * Commands: putdest SPEC, deldest SPEC, getdest, auth TOKEN, help. One reply
 * per command, `ok ...` or `error: ...`; getdest lists one destination per line
 * and ends with `ok N destinations`.
 *
 * Bounded (LINE_API_LIMITS): a command longer than the line limit, or one
 * wrong token too many, closes the connection (destroyed: nothing more is
 * read or buffered); idle connections are closed; connections over the cap
 * are refused; a client that does not read its replies is not read either.
 * Bad tokens and refusals are logged at most once per interval, with counts.
 */
export async function startLineApi(
  target: LineApiTarget,
  options: LineApiOptions,
  log: Logger,
): Promise<net.Server> {
  const limits: LineApiLimits = { ...LINE_API_LIMITS, ...options.limits };
  const digest = options.token === "" ? null : sha256(options.token);
  const badTokens = new ThrottledWarning(log, limits.logIntervalMs, "line api: bad token");
  const refused = new ThrottledWarning(
    log,
    limits.logIntervalMs,
    `line api: connection refused: ${limits.maxConnections} open already`,
  );
  const server = net.createServer((socket) =>
    serve(socket, target, digest, limits, log, badTokens),
  );
  server.maxConnections = limits.maxConnections;
  server.on("drop", (d) => refused.note({ remote: d?.remoteAddress }));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  // Checked on the address bound, not the name given: "localhost" may
  // resolve to anything, and a name is never proof of loopback.
  const bound = (server.address() as net.AddressInfo).address;
  if (digest === null && !isLoopbackAddress(bound)) {
    server.close();
    throw new PolymurError(
      ErrorCode.Config,
      `the line API at ${options.host} (bound to ${bound}) is not on a loopback address: set --api-token, since the line API changes destinations`,
    );
  }
  return server;
}

/** One client connection: framing, the auth state and the bounds. */
function serve(
  socket: net.Socket,
  target: LineApiTarget,
  digest: Buffer | null,
  limits: LineApiLimits,
  log: Logger,
  badTokens: ThrottledWarning,
): void {
  const remote = socket.remoteAddress;
  let authed = digest === null;
  let failures = 0;
  let buf = "";
  /** Set once the connection is being closed by us: nothing more is read or run. */
  let closing = false;
  socket.setEncoding("utf8");
  socket.setTimeout(limits.idleTimeoutMs, () => {
    log.debug({ remote }, "line api: idle connection closed");
    socket.destroy();
  });
  socket.on("error", () => {});
  // Replies wait in memory for a client that does not read them; stop
  // reading its commands until they are written.
  socket.on("drain", () => {
    if (!closing) socket.resume();
  });
  socket.on("data", (data: string) => {
    if (closing) return;
    buf += data;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      if (nl + 1 > limits.maxLineChars) return close("error: line too long\n");
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line === "") continue;
      const reply = run(line);
      if (closing) return;
      socket.write(reply);
    }
    // What is left is the start of a command, too long already if it has
    // the limit's length before its newline.
    if (buf.length >= limits.maxLineChars) return close("error: line too long\n");
    if (socket.writableNeedDrain) socket.pause();
  });
  socket.on("end", () => {
    if (closing) return;
    const reply = buf.trim() === "" ? "" : run(buf.trim());
    if (!closing) socket.end(reply);
  });

  /**
   * Answers `reply`, then destroys the connection: a half-close would let
   * the client go on sending, and us on reading. If the client is still
   * sending, the kernel may reset the connection before the reply arrives.
   */
  function close(reply: string): void {
    closing = true;
    buf = "";
    socket.pause();
    socket.end(reply, () => socket.destroy());
  }

  function run(line: string): string {
    const [cmd = "", ...args] = line.split(/\s+/);
    try {
      if (cmd === "auth") return auth(args[0] ?? "");
      if (!authed) return "error: authenticate first with `auth TOKEN`\n";
      switch (cmd) {
        case "putdest":
        case "deldest": {
          if (args.length !== 1) return `error: usage: ${cmd} host:port[:instance]\n`;
          const msg =
            cmd === "putdest"
              ? target.addDestination(args[0]!)
              : target.removeDestination(args[0]!);
          log.info({ remote, command: cmd, destination: args[0] }, `line api: ${msg}`);
          return `ok ${msg}\n`;
        }
        case "getdest": {
          const list = target.destinations();
          return list.map((d) => `${d}\n`).join("") + `ok ${list.length} destinations\n`;
        }
        case "help":
          return "ok commands: putdest SPEC | deldest SPEC | getdest | auth TOKEN\n";
        default:
          return `error: unknown command "${cmd}" (try help)\n`;
      }
    } catch (err) {
      return `error: ${(err as Error).message}\n`;
    }
  }

  /**
   * `auth TOKEN`. Without a configured token no token is right, and a wrong
   * one changes nothing (commands need none). With one, a wrong token takes
   * back an earlier success; the last allowed failure closes the connection.
   */
  function auth(token: string): string {
    if (digest !== null && timingSafeEqual(sha256(token), digest)) {
      authed = true;
      return "ok authenticated\n";
    }
    if (digest !== null) authed = false;
    failures++;
    badTokens.note({ remote });
    if (failures >= limits.maxAuthFailures) {
      close(`error: bad token\nerror: ${failures} bad tokens: closing\n`);
      return "";
    }
    return "error: bad token\n";
  }
}

/**
 * Tokens are compared as SHA-256 digests: equal length whatever was sent,
 * so neither the comparison's time nor its early exit tells the token's length.
 */
function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}
