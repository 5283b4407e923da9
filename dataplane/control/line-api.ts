import { timingSafeEqual } from "node:crypto";
import net from "node:net";
import type { Logger } from "../../common/logger.ts";

/** Where the line API listens unless told otherwise (--api-addr). */
export const DEFAULT_API_ADDR = { host: "127.0.0.1", port: 2030 } as const;

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
  /** When set, a connection must send `auth TOKEN` before any other command. */
  token: string;
}

/**
 * The Go polymur's line API, for operators migrating from it:
 *   echo putdest 10.0.5.30:2003 | nc localhost 2030
 * Commands: putdest SPEC, deldest SPEC, getdest, auth TOKEN, help. One reply
 * per command, `ok ...` or `error: ...`; getdest lists one destination per line
 * and ends with `ok N destinations`.
 */
export async function startLineApi(
  target: LineApiTarget,
  options: LineApiOptions,
  log: Logger,
): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let authed = options.token === "";
    let buf = "";
    socket.setEncoding("utf8");
    socket.on("error", () => {});
    socket.on("data", (data: string) => {
      buf += data;
      if (buf.length > 64 * 1024) {
        socket.end("error: line too long\n");
        return;
      }
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line !== "") socket.write(run(line));
        nl = buf.indexOf("\n");
      }
    });
    socket.on("end", () => {
      if (buf.trim() !== "") socket.write(run(buf.trim()));
      socket.end();
    });

    function run(line: string): string {
      const [cmd = "", ...args] = line.split(/\s+/);
      const remote = socket.remoteAddress;
      try {
        if (cmd === "auth") {
          authed = options.token !== "" && tokenEquals(args[0] ?? "", options.token);
          if (!authed) log.warn({ remote }, "line api: bad token");
          return authed ? "ok authenticated\n" : "error: bad token\n";
        }
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
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

function tokenEquals(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
