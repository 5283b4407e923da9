import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { LineSink } from "../fixtures/line-sink.ts";
import { LoggedProcess } from "../fixtures/logged-process.ts";
import { RELAY_TEST_ARGS, type StatsJson } from "../fixtures/polymur.ts";
import { startGateway } from "../fixtures/proxy-gateway.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { until, waitFor } from "../fixtures/until.ts";

/**
 * The relay's bounds by default, on real processes: senders up to the
 * file-descriptor limit, slow-drip senders, and a line API fed 100 MiB
 * without a newline and 1,000 wrong tokens.
 */

const BIN = fileURLToPath(new URL("../../bin/polymur.js", import.meta.url));
const hasPrlimit = spawnSync("prlimit", ["--version"]).status === 0;

/** A `polymur relay` started under `prlimit --nofile=N:N` (or without a limit), its ports and cap. */
class Relay extends LoggedProcess {
  port = 0;
  apiPort = 0;
  statsPort = 0;
  workers = 0;
  /** The per-process sender connection cap the relay logged at start. */
  maxConnections = 0;

  static async start(args: string[], nofile?: number): Promise<Relay> {
    const relayArgs = [BIN, "relay", ...RELAY_TEST_ARGS, ...args];
    // prlimit sets its own limits, then execs node: the relay keeps its pid.
    const child =
      nofile === undefined
        ? spawn(process.execPath, relayArgs, { stdio: ["ignore", "pipe", "pipe"] })
        : spawn("prlimit", [`--nofile=${nofile}:${nofile}`, process.execPath, ...relayArgs], {
            stdio: ["ignore", "pipe", "pipe"],
          });
    const r = new Relay(child, "polymur relay");
    relays.push(r);
    const listening = await r.waitForLog((l) => l.msg === "listening", 15_000);
    r.port = listening["port"] as number;
    r.apiPort = listening["apiPort"] as number;
    r.statsPort = listening["statsPort"] as number;
    r.workers = listening["workers"] as number;
    const limit = await r.waitForLog((l) => l.msg.startsWith("open-file limit"));
    r.maxConnections = limit["maxConnections"] as number;
    return r;
  }

  async stats(): Promise<StatsJson> {
    const res = await fetch(`http://127.0.0.1:${this.statsPort}/stats`);
    return (await res.json()) as StatsJson;
  }

  /** The stats once `pred` holds for them (polled: workers report once a second). */
  async statsWhen(what: string, pred: (s: StatsJson) => boolean): Promise<StatsJson> {
    let last: StatsJson | undefined;
    try {
      return await waitFor(
        what,
        async () => {
          last = await this.stats();
          return pred(last) ? last : undefined;
        },
        20_000,
        50,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last stats: ${JSON.stringify(last)}`);
    }
  }

  /** Sends `text` to the line API on one connection and resolves with the reply once it closes. */
  async api(text: string): Promise<string> {
    const s = net.connect(this.apiPort, "127.0.0.1");
    sockets.push(s);
    s.setEncoding("utf8");
    let out = "";
    s.on("data", (d: string) => {
      out += d;
    });
    s.on("error", () => {});
    s.end(text);
    await once(s, "close");
    return out;
  }
}

const relays: Relay[] = [];
const sockets: net.Socket[] = [];
const sinks: LineSink[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  for (const s of sinks.splice(0)) await s.close();
});

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  sinks.push(s);
  return s;
}

/** A sender connection, and whether the relay has closed it. */
interface Sender {
  socket: net.Socket;
  closed: boolean;
}

async function sender(port: number): Promise<Sender> {
  const socket = net.connect({ port, host: "127.0.0.1", noDelay: true });
  sockets.push(socket);
  const s: Sender = { socket, closed: false };
  socket.on("error", () => {});
  socket.on("close", () => {
    s.closed = true;
  });
  await once(socket, "connect");
  return s;
}

function write(s: net.Socket, data: string | Buffer): Promise<boolean> {
  return new Promise((resolve) => s.write(data, (err) => resolve(!err)));
}

const T = 1_700_000_000;

describe.skipIf(skipUnlessAvailable("prlimit (util-linux)", hasPrlimit))(
  "relay: senders up to the file-descriptor limit",
  () => {
    it("refuses senders over its cap, below the limit: every refusal counted, /stats, the line API and forwarding still work", async () => {
      const a = await sink();
      // The default worker count (one process per core) and the default cap.
      const r = await Relay.start(["--destinations", a.address], 256);
      expect(r.logs.find((l) => l.msg.startsWith("open-file limit"))).toMatchObject({
        openFiles: { soft: 256, hard: 256 },
        maxConnections: 128,
      });
      const capacity = r.workers * r.maxConnections;
      // More senders than every process together has descriptors.
      const n = r.workers * 256 + 64;
      const all: Sender[] = [];
      for (let i = 0; i < n; i += 32) {
        const batch = Math.min(32, n - i);
        all.push(...(await Promise.all(Array.from({ length: batch }, () => sender(r.port)))));
      }
      // Each sender is either held open or refused and counted: none is lost
      // uncounted (as when a process runs out of descriptors and libuv
      // closes the connection itself), and /stats answers throughout.
      const s = await r.statsWhen(
        "every sender held or counted as refused",
        (x) => x.connections + x.connectionsRefused === n,
      );
      expect(s.connectionsRefused).toBeGreaterThanOrEqual(n - capacity);
      expect(s.connections).toBeLessThanOrEqual(capacity);
      await until(
        "the refused senders are closed",
        () => all.filter((x) => x.closed).length === s.connectionsRefused,
      );
      expect(r.logs.some((l) => l.msg.startsWith("sender connections refused"))).toBe(true);

      // At the cap the relay still works: the line API answers, and a held
      // sender's lines are forwarded.
      expect(await r.api("getdest\n")).toBe(`${a.address}\nok 1 destinations\n`);
      const held = all.find((x) => !x.closed)!;
      await write(held.socket, `at.the.cap 1 ${T}\n`);
      await a.waitForLines(1);
      expect(a.lines).toEqual([`at.the.cap 1 ${T}`]);

      // Senders gone, there is room again.
      for (const x of all) x.socket.destroy();
      await r.statsWhen("every sender gone", (x) => x.connections === 0);
      const again = await sender(r.port);
      await write(again.socket, `after 1 ${T}\n`);
      await a.waitForLines(2);
      expect(again.closed).toBe(false);
    });
  },
);

describe("relay: idle senders", () => {
  it("closes slow-drip senders that go silent for the idle timeout; what they sent is counted", async () => {
    const a = await sink();
    const r = await Relay.start(["--destinations", a.address, "--idle-timeout", "500ms"]);
    // A whole line, then one byte of the next, then nothing.
    const whole = await sender(r.port);
    await write(whole.socket, `whole 1 ${T}\nw`);
    // One byte every two timeouts, never a newline.
    const drip = await sender(r.port);
    for (let i = 0; i < 10 && !drip.closed; i++) {
      await write(drip.socket, "x");
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    await until("the relay closes the silent senders", () => whole.closed && drip.closed);
    const s = await r.statsWhen("both senders gone", (x) => x.connections === 0);
    await a.waitForLines(1);
    expect(a.lines).toEqual([`whole 1 ${T}`]);
    // The unfinished lines were framed when the connections were closed:
    // received and rejected, not lost.
    expect(s.datapoints).toMatchObject({ received: 3, rejected: 2, routed: 1 });
  });

  it("is bounded by default: a connection cap below the descriptor limit, a 10-minute idle timeout", async () => {
    const r = await Relay.start([]);
    const limit = r.logs.find((l) => l.msg.startsWith("open-file limit"))!;
    const soft = (limit["openFiles"] as { soft: number | null }).soft;
    if (soft !== null) {
      expect(r.maxConnections).toBeGreaterThan(0);
      expect(r.maxConnections).toBeLessThan(soft);
    }
    const help = spawnSync(process.execPath, [BIN, "relay", "--help"], { encoding: "utf8" });
    expect(help.stdout).toMatch(/--idle-timeout <seconds>\n.*\(default 10m\) \[reloadable\]\n/);
    expect(help.stdout).toMatch(/--max-connections <string>\n.*\(default auto\)\n/);
  });
});

describe("relay: the line API", () => {
  const TOKEN = "bounds-test-token";

  it("fed 100 MiB without a newline: closes the connection, and answers the next one", async () => {
    const r = await Relay.start(["--api-token", TOKEN]);
    // Goes on sending after the relay's EOF, as `nc` does.
    const s = net.connect({ port: r.apiPort, host: "127.0.0.1", allowHalfOpen: true });
    sockets.push(s);
    s.on("error", () => {});
    let closed = false;
    s.on("close", () => {
      closed = true;
    });
    await once(s, "connect");
    const total = 100 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, "a");
    let written = 0;
    while (written < total && !closed) {
      if (!(await write(s, chunk))) break;
      written += chunk.length;
    }
    await until("the relay closes the connection", () => closed);
    expect(written).toBeLessThan(total);
    expect(await r.api(`auth ${TOKEN}\ngetdest\n`)).toBe("ok authenticated\nok 0 destinations\n");
  });

  it("fed 1,000 wrong tokens: three a connection, a bounded log, and the right token still works", async () => {
    const r = await Relay.start(["--api-token", TOKEN]);
    const t0 = Date.now();
    let sent = 0;
    const replies: string[] = [];
    const client = async (): Promise<void> => {
      while (sent < 1000) {
        const n = Math.min(10, 1000 - sent);
        const guesses = Array.from({ length: n }, () => `auth guess-${sent++}\n`).join("");
        replies.push(await r.api(`${guesses}getdest\n`));
      }
    };
    await Promise.all(Array.from({ length: 8 }, client));
    const elapsed = Date.now() - t0;
    // Ten guesses a connection: three are tried, then it is closed, and the
    // getdest behind them is never run.
    for (const reply of replies) {
      expect(reply.split("\n").filter((l) => l === "error: bad token").length).toBeLessThanOrEqual(
        3,
      );
      expect(reply.split("\n").filter((l) => l.startsWith("ok"))).toEqual([]);
    }
    // At most one warning per 10 s interval, each with its counts.
    const warnings = r.logs.filter((l) => l.msg === "line api: bad token");
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.length).toBeLessThanOrEqual(1 + Math.floor(elapsed / 10_000));
    expect(warnings[0]).toMatchObject({ level: "warn", count: 1, total: 1 });
    expect(JSON.stringify(r.logs)).not.toContain(TOKEN);
    expect(await r.api(`auth ${TOKEN}\ngetdest\n`)).toBe("ok authenticated\nok 0 destinations\n");
  });
});

describe("gateway: a listener open to the network in clear says so at start", () => {
  it("warns on 0.0.0.0 without TLS, not on loopback", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-bounds-"));
    const keys = join(dir, "keys");
    writeFileSync(keys, "site-a secret-a\n");
    try {
      const open = await startGateway(["--listen-addr", "0.0.0.0:0", "--keys-file", keys]);
      const warned = await open.waitForLog((l) => /^serving cleartext HTTP\/2/.test(l.msg));
      expect(warned.level).toBe("warn");
      await open.stop();
      const local = await startGateway(["--keys-file", keys]);
      await local.waitForLog((l) => l.msg === "listening");
      expect(local.logs.some((l) => /cleartext/.test(l.msg))).toBe(false);
      await local.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
