import { once } from "node:events";
import net from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ErrorCode, PolymurError } from "../../../../common/errors.ts";
import { isLoopbackAddress } from "../../../../common/loopback.ts";
import {
  LINE_API_LIMITS,
  type LineApiLimits,
  type LineApiTarget,
  startLineApi,
} from "../../../../dataplane/control/line-api.ts";
import { kernelResendBytes } from "../../../../dataplane/forward/kernel-buffers.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import { closeServer } from "../../../fixtures/local-server.ts";
import { until } from "../../../fixtures/until.ts";

/**
 * The relay as the line API sees it (LineApiTarget), answering as RelayNode
 * does: "added SPEC" / "removed SPEC", a PolymurError for a duplicate, an
 * unknown destination or a spec containing "bad". Records every call.
 */
class FakeRelay implements LineApiTarget {
  readonly list: string[] = [];
  readonly calls: string[] = [];

  destinations(): string[] {
    this.calls.push("destinations");
    return [...this.list];
  }

  addDestination(spec: string): string {
    this.calls.push(`add ${spec}`);
    if (spec.includes("bad")) {
      throw new PolymurError(
        ErrorCode.DestinationSpec,
        `invalid destination "${spec}": missing :port`,
      );
    }
    if (this.list.includes(spec)) {
      throw new PolymurError(ErrorCode.DestinationSpec, `destination ${spec} already exists`);
    }
    this.list.push(spec);
    return `added ${spec}`;
  }

  removeDestination(spec: string): string {
    this.calls.push(`remove ${spec}`);
    const i = this.list.indexOf(spec);
    if (i < 0) throw new PolymurError(ErrorCode.DestinationSpec, `no destination ${spec}`);
    this.list.splice(i, 1);
    return `removed ${spec}`;
  }
}

/** A line API client: everything the server sent so far, and its end of the connection. */
class Client {
  readonly socket: net.Socket;
  text = "";
  ended = false;
  closed = false;

  constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      this.text += d;
    });
    socket.on("end", () => {
      this.ended = true;
    });
    socket.on("close", () => {
      this.closed = true;
    });
    socket.on("error", () => {});
  }

  get lines(): string[] {
    return this.text.split("\n").slice(0, -1);
  }

  send(text: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(text, (err) => (err ? reject(err) : resolve())),
    );
  }

  /** Waits until `n` reply lines in all have arrived, and returns them. */
  async waitLines(n: number): Promise<string[]> {
    await until(
      `${n} reply lines (have ${JSON.stringify(this.text)})`,
      () => this.lines.length >= n,
    );
    return this.lines;
  }

  /** Sends `command` and returns the reply lines it adds (`n` of them). */
  async command(command: string, n = 1): Promise<string[]> {
    const before = this.lines.length;
    await this.send(`${command}\n`);
    return (await this.waitLines(before + n)).slice(before);
  }

  /** Half-closes our side and waits until the server has closed the connection. */
  async finish(): Promise<void> {
    this.socket.end();
    await until("the server closes the connection", () => this.closed);
  }
}

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function api(
  token = "",
  limits: Partial<LineApiLimits> = {},
): Promise<{ relay: FakeRelay; logs: CapturedLine[]; server: net.Server; port: number }> {
  const relay = new FakeRelay();
  const { log, lines } = captureLog();
  const server = await startLineApi(relay, { host: "127.0.0.1", port: 0, token, limits }, log);
  cleanup.push(() => closeServer(server));
  return { relay, logs: lines, server, port: (server.address() as net.AddressInfo).port };
}

async function connect(port: number): Promise<Client> {
  const s = net.connect({ port, host: "127.0.0.1", noDelay: true });
  cleanup.push(() => {
    s.destroy();
  });
  await once(s, "connect");
  return new Client(s);
}

describe("startLineApi", () => {
  it("listens where it is told and refuses an address in use", async () => {
    const { server, port } = await api();
    expect(server.address()).toMatchObject({ address: "127.0.0.1", port });
    const { log } = captureLog();
    await expect(
      startLineApi(new FakeRelay(), { host: "127.0.0.1", port, token: "" }, log),
    ).rejects.toMatchObject({ code: "EADDRINUSE" });
  });

  it("help lists the commands", async () => {
    const { port } = await api();
    const c = await connect(port);
    expect(await c.command("help")).toEqual([
      "ok commands: putdest SPEC | deldest SPEC | getdest | auth TOKEN",
    ]);
  });

  it("putdest adds, getdest lists then counts, deldest removes; each change is logged", async () => {
    const { relay, logs, port } = await api();
    const c = await connect(port);
    expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
    expect(await c.command("putdest 10.0.5.30:2003")).toEqual(["ok added 10.0.5.30:2003"]);
    expect(await c.command("putdest 10.0.5.31:2003:b")).toEqual(["ok added 10.0.5.31:2003:b"]);
    expect(await c.command("getdest", 3)).toEqual([
      "10.0.5.30:2003",
      "10.0.5.31:2003:b",
      "ok 2 destinations",
    ]);
    expect(await c.command("deldest 10.0.5.30:2003")).toEqual(["ok removed 10.0.5.30:2003"]);
    expect(await c.command("getdest", 2)).toEqual(["10.0.5.31:2003:b", "ok 1 destinations"]);
    expect(relay.list).toEqual(["10.0.5.31:2003:b"]);

    const changes = logs.filter((l) => l.msg.startsWith("line api: "));
    expect(changes).toEqual([
      expect.objectContaining({
        level: 30,
        msg: "line api: added 10.0.5.30:2003",
        command: "putdest",
        destination: "10.0.5.30:2003",
        remote: "127.0.0.1",
      }),
      expect.objectContaining({ msg: "line api: added 10.0.5.31:2003:b", command: "putdest" }),
      expect.objectContaining({ msg: "line api: removed 10.0.5.30:2003", command: "deldest" }),
    ]);
  });

  it("answers the target's error as `error: MESSAGE`, and the connection stays usable", async () => {
    const { relay, logs, port } = await api();
    const c = await connect(port);
    expect(await c.command("putdest bad-spec")).toEqual([
      'error: invalid destination "bad-spec": missing :port',
    ]);
    expect(await c.command("putdest h:2003")).toEqual(["ok added h:2003"]);
    expect(await c.command("putdest h:2003")).toEqual(["error: destination h:2003 already exists"]);
    expect(await c.command("deldest g:2003")).toEqual(["error: no destination g:2003"]);
    expect(await c.command("getdest", 2)).toEqual(["h:2003", "ok 1 destinations"]);
    expect(relay.list).toEqual(["h:2003"]);
    // Refused changes are not logged as changes.
    expect(logs.filter((l) => l.msg.startsWith("line api: "))).toHaveLength(1);
  });

  it("wants exactly one argument for putdest and deldest, without asking the target", async () => {
    const { relay, port } = await api();
    const c = await connect(port);
    for (const cmd of ["putdest", "deldest"]) {
      const usage = `error: usage: ${cmd} host:port[:instance]`;
      expect(await c.command(cmd)).toEqual([usage]);
      expect(await c.command(`${cmd} a:1 b:2`)).toEqual([usage]);
    }
    expect(relay.calls).toEqual([]);
  });

  it("refuses an unknown command (commands are case-sensitive)", async () => {
    const { relay, port } = await api();
    const c = await connect(port);
    expect(await c.command("listdest")).toEqual(['error: unknown command "listdest" (try help)']);
    expect(await c.command("GETDEST")).toEqual(['error: unknown command "GETDEST" (try help)']);
    expect(relay.calls).toEqual([]);
  });

  it("frames commands: several per write, split across writes, CRLF, extra blanks, blank lines", async () => {
    const { relay, port } = await api();
    const c = await connect(port);
    // Three commands in one write; blank lines get no reply.
    await c.send("putdest a:1\n\n  \r\nputdest b:2\r\ngetdest\n");
    expect(await c.waitLines(5)).toEqual([
      "ok added a:1",
      "ok added b:2",
      "a:1",
      "b:2",
      "ok 2 destinations",
    ]);
    // One command a byte at a time.
    for (const ch of "deldest a:1\n") await c.send(ch);
    expect((await c.waitLines(6)).at(-1)).toBe("ok removed a:1");
    // Leading, trailing and repeated blanks (spaces, tabs) around the argument.
    expect(await c.command(" \t putdest \t  c:3   ")).toEqual(["ok added c:3"]);
    expect(relay.list).toEqual(["b:2", "c:3"]);
  });

  it("runs a last command sent without a newline when the client closes, then closes", async () => {
    const { relay, port } = await api();
    const c = await connect(port);
    await c.send("putdest a:1\nputdest b:2");
    await c.waitLines(1);
    await c.finish();
    expect(c.lines).toEqual(["ok added a:1", "ok added b:2"]);
    expect(relay.list).toEqual(["a:1", "b:2"]);
  });

  it("keeps each connection's state apart: two clients at once", async () => {
    const { relay, port } = await api();
    const a = await connect(port);
    const b = await connect(port);
    await a.send("putdest a:");
    await b.send("putdest b:");
    await a.send("1\n");
    await b.send("2\n");
    expect(await a.waitLines(1)).toEqual(["ok added a:1"]);
    expect(await b.waitLines(1)).toEqual(["ok added b:2"]);
    expect(relay.list.sort()).toEqual(["a:1", "b:2"]);
  });

  describe("with a token", () => {
    const TOKEN = "s3cret-line-api-token";

    it("refuses every command before `auth TOKEN`", async () => {
      const { relay, port } = await api(TOKEN);
      const c = await connect(port);
      const first = "error: authenticate first with `auth TOKEN`";
      for (const cmd of ["getdest", "putdest a:1", "deldest a:1", "help", "nonsense"]) {
        expect(await c.command(cmd)).toEqual([first]);
      }
      expect(relay.calls).toEqual([]);
    });

    it("accepts the right token, then serves commands on that connection only", async () => {
      const { relay, port } = await api(TOKEN);
      const c = await connect(port);
      expect(await c.command(`auth ${TOKEN}`)).toEqual(["ok authenticated"]);
      expect(await c.command("putdest a:1")).toEqual(["ok added a:1"]);
      expect(await c.command("getdest", 2)).toEqual(["a:1", "ok 1 destinations"]);
      // Authentication belongs to the connection.
      const other = await connect(port);
      expect(await other.command("getdest")).toEqual([
        "error: authenticate first with `auth TOKEN`",
      ]);
      expect(relay.list).toEqual(["a:1"]);
    });

    it("refuses a wrong token (shorter, longer, other case, missing), logs it without the token, and stays locked", async () => {
      // Every bad token logged: no interval between log lines.
      const { relay, logs, port } = await api(TOKEN, { logIntervalMs: 0 });
      for (const attempt of [
        "auth wrong",
        `auth ${TOKEN.slice(0, -1)}`,
        `auth ${TOKEN}x`,
        `auth ${TOKEN.toUpperCase()}`,
        `auth ${"s".repeat(TOKEN.length)}`,
        "auth",
      ]) {
        const c = await connect(port);
        expect(await c.command(attempt)).toEqual(["error: bad token"]);
        expect(await c.command("getdest")).toEqual(["error: authenticate first with `auth TOKEN`"]);
      }
      expect(relay.calls).toEqual([]);
      const warnings = logs.filter((l) => l.msg === "line api: bad token");
      expect(warnings).toHaveLength(6);
      expect(warnings[0]).toMatchObject({ level: 40, remote: "127.0.0.1", count: 1, total: 1 });
      expect(warnings[5]).toMatchObject({ count: 1, total: 6 });
      expect(JSON.stringify(logs)).not.toContain(TOKEN.slice(0, -1));
    });

    it(`closes a connection at its ${LINE_API_LIMITS.maxAuthFailures}rd wrong token`, async () => {
      expect(LINE_API_LIMITS.maxAuthFailures).toBe(3);
      const { relay, port } = await api(TOKEN);
      const c = await connect(port);
      expect(await c.command("auth a")).toEqual(["error: bad token"]);
      expect(await c.command("getdest")).toEqual(["error: authenticate first with `auth TOKEN`"]);
      expect(await c.command("auth b")).toEqual(["error: bad token"]);
      expect(await c.command("auth c", 2)).toEqual([
        "error: bad token",
        "error: 3 bad tokens: closing",
      ]);
      await until("the server closes the connection", () => c.closed);
      // The right token on a new connection still works: the limit is per connection.
      const d = await connect(port);
      expect(await d.command(`auth ${TOKEN}`)).toEqual(["ok authenticated"]);
      expect(relay.calls).toEqual([]);
    });

    it("1,000 wrong tokens in one write: three are tried, then the connection is closed", async () => {
      const { relay, logs, port } = await api(TOKEN);
      const c = await connect(port);
      const flood = Array.from({ length: 1000 }, (_, i) => `auth guess-${i}\n`).join("");
      await c.send(`${flood}getdest\n`);
      await until("the server closes the connection", () => c.closed);
      // Replies sent before the close may be lost to a reset (unread input
      // makes the kernel reset rather than close), never more than three.
      expect(c.lines.filter((l) => l === "error: bad token").length).toBeLessThanOrEqual(3);
      expect(c.lines.filter((l) => l.startsWith("ok"))).toEqual([]);
      expect(relay.calls).toEqual([]);
      expect(logs.filter((l) => l.msg === "line api: bad token")).toHaveLength(1);
    });

    it("1,000 wrong tokens over 334 connections: one log line per interval, counting them all", async () => {
      const now = Date.now();
      vi.useFakeTimers({ toFake: ["Date"], now });
      cleanup.push(() => {
        vi.useRealTimers();
      });
      const { relay, logs, port } = await api(TOKEN);
      let sent = 0;
      // Eight clients at a time, each sending three guesses (the last one, one).
      const client = async (): Promise<void> => {
        while (sent < 1000) {
          const n = Math.min(3, 1000 - sent);
          const guesses = Array.from({ length: n }, () => `auth guess-${sent++}\n`).join("");
          const c = await connect(port);
          await c.send(guesses);
          if (n === 3) await until("the server closes the connection", () => c.closed);
          else await c.finish();
        }
      };
      await Promise.all(Array.from({ length: 8 }, client));
      expect(relay.calls).toEqual([]);
      const warnings = (): CapturedLine[] => logs.filter((l) => l.msg === "line api: bad token");
      expect(warnings()).toHaveLength(1);
      expect(warnings()[0]).toMatchObject({ count: 1, total: 1 });
      // The interval over, the next bad token is logged with the 999 held back.
      vi.setSystemTime(now + LINE_API_LIMITS.logIntervalMs);
      const c = await connect(port);
      expect(await c.command("auth late")).toEqual(["error: bad token"]);
      expect(warnings()).toHaveLength(2);
      expect(warnings()[1]).toMatchObject({ count: 1000, total: 1001 });
    });

    it("a failed `auth` after a good one takes the authentication back", async () => {
      const { port } = await api(TOKEN);
      const c = await connect(port);
      expect(await c.command(`auth ${TOKEN}`)).toEqual(["ok authenticated"]);
      expect(await c.command("auth nope")).toEqual(["error: bad token"]);
      expect(await c.command("getdest")).toEqual(["error: authenticate first with `auth TOKEN`"]);
      expect(await c.command(`auth ${TOKEN}`)).toEqual(["ok authenticated"]);
      expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
    });
  });

  describe("without a token", () => {
    it("serves commands at once; `auth` with any token is refused", async () => {
      const { logs, port } = await api("", { logIntervalMs: 0 });
      const c = await connect(port);
      expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
      // There is nothing to authenticate against: no token is right, not even an empty one.
      expect(await c.command("auth anything")).toEqual(["error: bad token"]);
      expect(await c.command("auth")).toEqual(["error: bad token"]);
      expect(logs.filter((l) => l.msg === "line api: bad token")).toHaveLength(2);
    });

    // Was a bug: with no token configured, a failed `auth` set `authed` to
    // false, and since no token can ever succeed, locked the connection out.
    it("a refused `auth` does not lock a connection out when no token is configured", async () => {
      const { port } = await api("");
      const c = await connect(port);
      expect(await c.command("auth anything")).toEqual(["error: bad token"]);
      expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
    });
  });

  describe("the 64 KiB bound", () => {
    // The bound is on one command, newline included, in UTF-16 code units
    // of the decoded text (64 * 1024 = 65536). A longer one (or the start of
    // one, without its newline yet) is answered "error: line too long" and
    // the connection is destroyed: nothing more is read, buffered or run.

    it("serves a command of exactly 65536 characters, newline included", async () => {
      const { relay, port } = await api();
      const c = await connect(port);
      const spec = "a".repeat(65536 - "putdest \n".length);
      await c.send(`putdest ${spec}\n`);
      expect(await c.waitLines(1)).toEqual([`ok added ${spec}`]);
      expect(relay.list).toEqual([spec]);
      expect(await c.command("getdest", 2)).toEqual([spec, "ok 1 destinations"]);
    });

    it("answers one character more with `error: line too long` and ends the connection", async () => {
      const { port } = await api();
      const c = await connect(port);
      expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
      await c.send(`putdest ${"a".repeat(65537 - "putdest \n".length)}\n`);
      await until("the server ends its side", () => c.ended);
      await until("the connection is closed", () => c.closed);
      expect(c.lines).toEqual(["ok 0 destinations", "error: line too long"]);
    });

    it("refuses a long line that never ends (no newline) once it passes the bound", async () => {
      const { port } = await api();
      const c = await connect(port);
      const chunk = "x".repeat(16 * 1024);
      for (let i = 0; i < 4; i++) await c.send(chunk);
      expect(c.lines).toEqual([]);
      await c.send("x");
      await until("the connection is closed", () => c.closed);
      expect(c.lines).toEqual(["error: line too long"]);
    });

    // Was a bug: the refused text stayed buffered (growing with anything
    // more the client sent) and, when the client's side ended, the "end"
    // handler ran it as a command.
    it("never runs the input it refused as too long", async () => {
      const { relay, port } = await api();
      const c = await connect(port);
      await c.send(`putdest ${"a".repeat(65537 - "putdest \n".length)}\n`);
      await until("the connection is closed", () => c.closed);
      expect(c.lines).toEqual(["error: line too long"]);
      // Lengths only: the refused spec is 65,528 characters long.
      expect(relay.calls.map((call) => call.length)).toEqual([]);
    });

    it("refuses a too-long command that comes whole, newline and all, in one read", async () => {
      const { relay, port } = await api("", { maxLineChars: 100 });
      const c = await connect(port);
      await c.send(`putdest ${"a".repeat(100)}\nputdest b:1\n`);
      await until("the connection is closed", () => c.closed);
      expect(c.lines).toEqual(["error: line too long"]);
      expect(relay.calls).toEqual([]);
    });

    it("100 MiB without a newline: the connection is destroyed, not read to the end", async () => {
      const { relay, port } = await api();
      // A client that goes on sending after the server's EOF (as `nc` does).
      const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
      s.on("error", () => {});
      cleanup.push(() => {
        s.destroy();
      });
      await once(s, "connect");
      let closed = false;
      s.on("close", () => {
        closed = true;
      });
      const total = 100 * 1024 * 1024;
      const chunk = Buffer.alloc(64 * 1024, "x");
      let written = 0;
      while (written < total && !closed) {
        const ok = await new Promise<boolean>((resolve) => s.write(chunk, (err) => resolve(!err)));
        if (!ok) break;
        written += chunk.length;
      }
      await until("the connection is closed", () => closed);
      // The server read past the bound, then stopped: what was written is
      // at most what the two kernels' socket buffers held when it closed.
      expect(written).toBeLessThan(kernelResendBytes() + 1024 * 1024);
      expect(written).toBeLessThan(total);
      expect(relay.calls).toEqual([]);
    });
  });

  describe("bounds on connections", () => {
    it("stops reading from a client that does not read its replies; idle, it is closed", async () => {
      const { relay, port } = await api("", { idleTimeoutMs: 300 });
      const s = net.connect({ port, host: "127.0.0.1" });
      s.on("error", () => {});
      cleanup.push(() => {
        s.destroy();
      });
      await once(s, "connect");
      s.pause(); // never reads a reply
      let closed = false;
      s.on("close", () => {
        closed = true;
      });
      const total = 16 * 1024 * 1024;
      const chunk = Buffer.from("help\n".repeat(13_107)); // 64 KiB less a byte
      let written = 0;
      while (written < total && !closed) {
        const ok = await new Promise<boolean>((resolve) => s.write(chunk, (err) => resolve(!err)));
        if (!ok) break;
        written += chunk.length;
      }
      await until("the connection is closed", () => closed);
      // Had it read on, buffering a reply per command, all 16 MiB would be in.
      expect(written).toBeLessThan(Math.min(total, kernelResendBytes() * 2 + 1024 * 1024));
      expect(relay.calls).toEqual([]);
    });

    it("closes a connection that sends nothing for the idle timeout", async () => {
      const { logs, port } = await api("", { idleTimeoutMs: 200 });
      const c = await connect(port);
      expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
      await until("the server closes the idle connection", () => c.closed);
      expect(logs.some((l) => l.msg === "line api: idle connection closed")).toBe(true);
    });

    it(`refuses connections over the cap (${LINE_API_LIMITS.maxConnections} by default), logged once per interval`, async () => {
      const { logs, port } = await api("", { maxConnections: 2 });
      const a = await connect(port);
      const b = await connect(port);
      expect(await a.command("help")).toHaveLength(1);
      expect(await b.command("help")).toHaveLength(1);
      for (let i = 0; i < 5; i++) {
        const over = await connect(port);
        await until("the connection over the cap is closed", () => over.closed);
        expect(over.text).toBe("");
      }
      const refusals = logs.filter((l) => l.msg.startsWith("line api: connection refused"));
      expect(refusals).toHaveLength(1);
      expect(refusals[0]).toMatchObject({ level: 40, count: 1, total: 1 });
      // A place freed is taken again.
      await a.finish();
      await until(async () => {
        const c = await connect(port);
        const ok = await c
          .command("getdest")
          .then((r) => r[0] === "ok 0 destinations")
          .catch(() => false);
        c.socket.destroy();
        return ok;
      });
    });
  });

  describe("where it listens", () => {
    it("refuses to run without a token on an address that is not loopback", async () => {
      const { log } = captureLog();
      await expect(
        startLineApi(new FakeRelay(), { host: "0.0.0.0", port: 0, token: "" }, log),
      ).rejects.toMatchObject({ code: ErrorCode.Config });
      const server = await startLineApi(
        new FakeRelay(),
        { host: "0.0.0.0", port: 0, token: "t" },
        log,
      );
      cleanup.push(() => closeServer(server));
      expect(server.listening).toBe(true);
    });

    it("takes `localhost` without a token: it binds a loopback address", async () => {
      const { log } = captureLog();
      const server = await startLineApi(
        new FakeRelay(),
        { host: "localhost", port: 0, token: "" },
        log,
      );
      cleanup.push(() => closeServer(server));
      expect(isLoopbackAddress((server.address() as net.AddressInfo).address)).toBe(true);
    });
  });
});
