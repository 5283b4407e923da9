import { once } from "node:events";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../../common/errors.ts";
import { type LineApiTarget, startLineApi } from "../../../../dataplane/control/line-api.ts";
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
): Promise<{ relay: FakeRelay; logs: CapturedLine[]; server: net.Server; port: number }> {
  const relay = new FakeRelay();
  const { log, lines } = captureLog();
  const server = await startLineApi(relay, { host: "127.0.0.1", port: 0, token }, log);
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

    it("refuses a wrong token (shorter, longer, missing), logs it without the token, and stays locked", async () => {
      const { relay, logs, port } = await api(TOKEN);
      const c = await connect(port);
      for (const attempt of [
        "auth wrong",
        `auth ${TOKEN.slice(0, -1)}`,
        `auth ${TOKEN}x`,
        `auth ${TOKEN.toUpperCase()}`,
        "auth",
      ]) {
        expect(await c.command(attempt)).toEqual(["error: bad token"]);
      }
      expect(await c.command("getdest")).toEqual(["error: authenticate first with `auth TOKEN`"]);
      expect(relay.calls).toEqual([]);
      const warnings = logs.filter((l) => l.msg === "line api: bad token");
      expect(warnings).toHaveLength(5);
      expect(warnings[0]).toMatchObject({ level: 40, remote: "127.0.0.1" });
      expect(JSON.stringify(logs)).not.toContain(TOKEN.slice(0, -1));
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
      const { logs, port } = await api("");
      const c = await connect(port);
      expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
      // There is nothing to authenticate against: no token is right, not even an empty one.
      expect(await c.command("auth anything")).toEqual(["error: bad token"]);
      expect(await c.command("auth")).toEqual(["error: bad token"]);
      expect(logs.filter((l) => l.msg === "line api: bad token")).toHaveLength(2);
    });

    // BUG (dataplane/control/line-api.ts, run(): `authed = options.token !== "" && ...`):
    // with no token configured, a failed `auth` sets `authed` to false, and
    // since no token can ever succeed, the connection is locked out for good:
    // every later command answers "error: authenticate first with `auth TOKEN`",
    // although the API's contract is that authentication is required only
    // "when [a token is] set". Expected: getdest still answers "ok 0 destinations".
    it.fails("a refused `auth` does not lock a connection out when no token is configured", async () => {
      const { port } = await api("");
      const c = await connect(port);
      expect(await c.command("auth anything")).toEqual(["error: bad token"]);
      expect(await c.command("getdest")).toEqual(["ok 0 destinations"]);
    });
  });

  describe("the 64 KiB bound", () => {
    // What the code does today: the bound is on what a connection has
    // buffered and not yet split into lines, in UTF-16 code units of the
    // decoded text (64 * 1024 = 65536), checked on every read before the
    // buffer is split. Going over it answers "error: line too long" and ends
    // the server's side of the connection (a half-close). The buffer is not
    // cleared and reading goes on; a client that closes on EOF (as Node's
    // sockets do by default, allowHalfOpen false) then closes its side too,
    // and the connection is gone.

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

    // BUG (dataplane/control/line-api.ts, the "data" handler, `if (buf.length >
    // 64 * 1024) { socket.end("error: line too long\n"); return; }`, with the
    // "end" handler below it): the refused text stays in `buf`, and when the
    // client's side ends (at once for a client that closes on EOF, such as a
    // default Node socket, or `nc -N`), the "end" handler runs it as a command
    // with `run(buf.trim())`. Input: "putdest " + 65,529 × "a" + "\n" (65,537
    // characters, one over the bound) on a fresh connection. Expected: the
    // reply "error: line too long" and no call to the target. Actual: after
    // that reply, addDestination("aaa…") is called with the refused spec (its
    // "ok added …" reply is lost: the server's side has ended). The refused
    // input also stays buffered, growing with anything more the client
    // sends, until the client closes.
    it.fails("never runs the input it refused as too long", async () => {
      const { relay, port } = await api();
      const c = await connect(port);
      await c.send(`putdest ${"a".repeat(65537 - "putdest \n".length)}\n`);
      await until("the connection is closed", () => c.closed);
      expect(c.lines).toEqual(["error: line too long"]);
      // Lengths only: the refused spec is 65,528 characters long.
      expect(relay.calls.map((call) => call.length)).toEqual([]);
    });
  });
});
