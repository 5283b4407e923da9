import type dgram from "node:dgram";
import fs from "node:fs";
import net from "node:net";
import type tls from "node:tls";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { lazyBuiltin } from "../../common/lazy-builtin.ts";
import { ThrottledWarning } from "../../common/log-throttle.ts";
import type { Logger } from "../../common/logger.ts";
import { type Handoff, movable, stopReading } from "./connection-handoff.ts";
import { IngestCounters, type IngestStats } from "./ingest-counters.ts";
import { countLines, LineFramer } from "./line-framer.ts";
import type { LineSink } from "./line-sink.ts";
import { ListenerCounters } from "./listener-counters.ts";
import { ListenerTls } from "./listener-tls.ts";
import type { ListenerTlsSettings } from "./listener-tls-settings.ts";
import { PickleFramer } from "./pickle-framer.ts";
import { oneByteBuffer, ReadPacer } from "./read-pacer.ts";
import type { RejectSample } from "./reject-log.ts";

const loadDgram = lazyBuiltin<typeof dgram>("node:dgram");

/** Where and how a listener takes lines from senders. */
export interface ListenerConfig {
  /** TCP listen address. */
  listen: { host: string; port: number };
  /** UDP listen address, or null for none. */
  udp: { host: string; port: number } | null;
  /** carbon's pickle protocol over TCP (--pickle-addr), or null (absent) for none. */
  pickle?: { host: string; port: number } | null;
  /** Plaintext over a unix stream socket at this path (--unix-socket), or null (absent) for none. */
  unix?: string | null;
  /** TLS on the TCP plaintext and pickle listeners (--tls-cert), or null (absent) for cleartext. */
  tls?: ListenerTlsSettings | null;
  /** Longest accepted line in bytes, newline excluded. */
  maxLineLength: number;
  /** Open sender connections per process; more are refused and counted. 0 = unlimited. */
  maxConnections: number;
  /**
   * Close a sender connection that sends nothing for this long (while
   * reading is paused, the silence is ours and does not count); 0 = never.
   */
  idleTimeoutMs: number;
  /**
   * How long a slow sender's datapoints may wait, at most, so that one read
   * takes many of its writes (read-pacer.ts); 0 (or absent) = read at once.
   * Not for TLS connections.
   */
  readWaitMs?: number;
}

export interface LineListenerOptions {
  /** Listen with SO_REUSEPORT, so that several worker processes share the port. Default false. */
  reusePort?: boolean;
  /** Whether this listener opens the UDP socket (only one process of a group does). Default true. */
  udp?: boolean;
  /**
   * Whether this listener opens the listener only one process of a group
   * opens: the unix socket (--unix-socket). Default true.
   */
  primary?: boolean;
  /** Least time between two log lines about refused connections. Default 10 s. */
  refusalLogIntervalMs?: number;
  /**
   * The primary of a relay whose processes are dealt their connections
   * (worker-pool.ts): every TCP connection is accepted unread and offered to
   * `deal` first, which returns true when it sent it to another process.
   */
  deal?: (socket: net.Socket, listener: string) => boolean;
  /**
   * false: bind no TCP port; connections arrive through adopt() (a worker
   * of a relay that deals them). Default true.
   */
  bind?: boolean;
}

/** An open sender connection. */
interface Conn {
  /** The idle timeout it was accepted with. */
  idleMs: number;
  framer: LineFramer | PickleFramer;
  listener: ListenerCounters;
  /** When it came to this process (ms, performance.now()). */
  since: number;
  /** Handed to another process: its socket's events are no longer ours. */
  moved: boolean;
}

/** accept() errors that mean the process is out of descriptors: the sender is refused. */
const OUT_OF_DESCRIPTORS = new Set(["EMFILE", "ENFILE"]);

/**
 * The ingest stage of one process: Graphite plaintext over TCP (and UDP),
 * framed and validated per connection, every valid run of lines written to
 * one sink. Bad lines are counted and sampled, never fatal to a connection.
 * `pause(true)` stops reading from every TCP sender (they see TCP
 * backpressure); datagrams that arrive meanwhile are dropped and counted.
 *
 * Bounded: connections over `maxConnections` are closed at once, counted
 * (connectionsRefused) and logged at most once per interval; a connection
 * that sends nothing for `idleTimeoutMs` is closed and counted
 * (connectionsIdleClosed), what it sent of an unfinished line framed as at
 * its end.
 */
export class LineListener {
  #config: ListenerConfig;
  readonly #sink: LineSink;
  readonly #log: Logger;
  readonly #reusePort: boolean;
  readonly #withUdp: boolean;
  readonly counters = new IngestCounters();
  #server: net.Server | null = null;
  #pickleServer: net.Server | null = null;
  #unixServer: net.Server | null = null;
  readonly #primary: boolean;
  #udp: dgram.Socket | null = null;
  /** TLS of the plaintext and pickle listeners (--tls-cert), or null for cleartext. */
  #tls: ListenerTls | null = null;
  /** Paces reads from slow senders (--read-wait), or null. */
  #pacer: ReadPacer | null = null;
  /** Each open listener's own counters (listener-counters.ts). */
  readonly #listeners: ListenerCounters[] = [];
  /** Open sender connections. */
  #sockets = new Map<net.Socket, Conn>();
  /** The TLS server of each TLS listener, by listener name: dealt connections are handed to it. */
  readonly #tlsServers = new Map<string, tls.Server>();
  readonly #deal: ((socket: net.Socket, listener: string) => boolean) | null;
  readonly #bind: boolean;
  /** Refusals at the cap, and for want of descriptors: logged at most once per interval. */
  readonly #atCap: ThrottledWarning;
  readonly #noDescriptors: ThrottledWarning;
  #paused = false;
  #closing = false;

  constructor(
    config: ListenerConfig,
    sink: LineSink,
    log: Logger,
    options: LineListenerOptions = {},
  ) {
    this.#config = config;
    this.#sink = sink;
    this.#log = log;
    this.#reusePort = options.reusePort ?? false;
    this.#withUdp = options.udp ?? true;
    this.#primary = options.primary ?? true;
    this.#deal = options.deal ?? null;
    this.#bind = options.bind ?? true;
    const every = options.refusalLogIntervalMs ?? 10_000;
    this.#atCap = new ThrottledWarning(
      log,
      every,
      "sender connections refused: at --max-connections",
    );
    this.#noDescriptors = new ThrottledWarning(
      log,
      every,
      "sender connections refused: out of file descriptors",
    );
  }

  /**
   * Starts listening. Resolves with the bound TCP (and UDP, and pickle)
   * ports. Certificate files that cannot be used (--tls-cert) are a
   * configuration error here.
   */
  async listen(): Promise<{ port: number; udpPort: number | null; picklePort: number | null }> {
    const tlsSettings = this.#config.tls ?? null;
    if (tlsSettings !== null) this.#tls = new ListenerTls(tlsSettings, this.#log);
    const wait = this.#config.readWaitMs ?? 0;
    if (wait > 0) this.#pacer = new ReadPacer(wait);
    const transport = this.#tls === null ? "tcp" : "tls";
    const { host, port } = this.#config.listen;
    const plain = this.#counters("plaintext", "plaintext", transport);
    const server = await this.#listenTcp(host, port, this.#reusePort, false, plain);
    this.#server = server;
    const bound = server === null ? port : (server.address() as net.AddressInfo).port;
    plain.address = `${host}:${bound}`;
    let picklePort: number | null = null;
    const p = this.#config.pickle ?? null;
    if (p !== null) {
      // Shared by every process of the group, as the plaintext port is.
      const c = this.#counters("pickle", "pickle", transport);
      this.#pickleServer = await this.#listenTcp(p.host, p.port, this.#reusePort, true, c);
      picklePort =
        this.#pickleServer === null
          ? p.port
          : (this.#pickleServer.address() as net.AddressInfo).port;
      c.address = `${p.host}:${picklePort}`;
    }
    const unix = this.#config.unix ?? null;
    if (unix !== null && this.#primary) {
      const c = this.#counters("unix", "plaintext", "unix");
      c.address = unix;
      this.#unixServer = await this.#listenUnix(unix, c);
    }
    let udpPort: number | null = null;
    const u = this.#config.udp;
    if (u !== null && this.#withUdp) {
      const c = this.#counters("udp", "plaintext", "udp");
      const sock = loadDgram().createSocket({ type: net.isIPv6(u.host) ? "udp6" : "udp4" });
      sock.on("message", (msg, rinfo) => this.#datagram(msg, rinfo, c));
      sock.on("error", (err) => this.#log.error({ err }, "udp listener error"));
      await new Promise<void>((resolve, reject) => {
        sock.once("error", reject);
        sock.bind(u.port, u.host, () => {
          sock.off("error", reject);
          resolve();
        });
      });
      this.#udp = sock;
      udpPort = sock.address().port;
      c.address = `${u.host}:${udpPort}`;
    }
    return { port: bound, udpPort, picklePort };
  }

  #counters(
    name: string,
    protocol: ListenerCounters["protocol"],
    transport: ListenerCounters["transport"],
  ): ListenerCounters {
    const c = new ListenerCounters(name, protocol, transport);
    this.#listeners.push(c);
    return c;
  }

  /**
   * A TCP listener for plaintext (or carbon's pickle protocol), over TLS
   * with --tls-cert, sharing the connection cap's accounting. Null when this
   * process binds no port (`bind: false`): its connections come through
   * adopt().
   *
   * When connections are dealt (`deal`), the port's server accepts each one
   * unread and offers it to `deal`; one this process keeps is taken here,
   * by its TLS server (which does not listen itself) under --tls-cert.
   */
  async #listenTcp(
    host: string,
    port: number,
    reusePort: boolean,
    pickle: boolean,
    counters: ListenerCounters,
  ): Promise<net.Server | null> {
    const accept = (socket: net.Socket | tls.TLSSocket): void =>
      this.#accept(socket, pickle, counters, null, true);
    const tlsServer = this.#tls?.createServer(counters, accept) ?? null;
    if (tlsServer !== null) this.#tlsServers.set(counters.name, tlsServer);
    if (!this.#bind) return null;
    const deal = this.#deal;
    const server =
      deal !== null
        ? net.createServer({ noDelay: true, pauseOnConnect: true }, (socket: net.Socket) => {
            if (this.#closing) socket.destroy();
            else if (!deal(socket, counters.name)) this.#take(socket, pickle, counters, null, true);
          })
        : (tlsServer ??
          net.createServer(
            // A paused connection reads once more into a one-byte buffer,
            // then stops: see read-pacer.ts.
            { noDelay: true, highWaterMark: this.#pacer === null ? undefined : 1 },
            accept,
          ));
    const cap = this.#config.maxConnections;
    if (cap > 0) server.maxConnections = cap;
    // Node accepts a connection over the cap and closes it at once.
    server.on("drop", (d) => {
      this.counters.connectionsRefused++;
      this.#atCap.note({ remote: d?.remoteAddress, maxConnections: cap });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port, reusePort, backlog: 4096 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err: NodeJS.ErrnoException) => {
      // Out of descriptors at accept(). On Linux libuv closes such
      // connections itself (uv__emfile_trick) and Node never hears of them;
      // where an error does come, it is one refusal at least. The cap
      // exists so that this does not happen.
      if (err.syscall === "accept" && OUT_OF_DESCRIPTORS.has(err.code ?? "")) {
        this.counters.connectionsRefused++;
        this.#noDescriptors.note({ code: err.code });
        return;
      }
      this.#log.error({ err }, "listener error");
    });
    return server;
  }

  /**
   * A plaintext listener on the unix socket `path`. A socket file left there
   * by a process that is gone (nothing answers on it) is replaced; one that a
   * live process answers on is refused. Closing the server removes the file.
   */
  async #listenUnix(path: string, counters: ListenerCounters): Promise<net.Server> {
    if (fs.existsSync(path)) {
      if (!fs.lstatSync(path).isSocket()) {
        throw new PolymurError(
          ErrorCode.Config,
          `--unix-socket ${path} exists and is not a socket; remove it or choose another path`,
        );
      }
      const live = await new Promise<boolean>((resolve) => {
        const probe = net.connect(path);
        probe.once("connect", () => {
          probe.destroy();
          resolve(true);
        });
        probe.once("error", () => resolve(false));
      });
      if (live) {
        throw new PolymurError(
          ErrorCode.Config,
          `--unix-socket ${path} is in use by another process`,
        );
      }
      fs.rmSync(path, { force: true });
    }
    const server = net.createServer(
      { highWaterMark: this.#pacer === null ? undefined : 1 },
      (socket) => this.#accept(socket, false, counters, null, true),
    );
    const cap = this.#config.maxConnections;
    if (cap > 0) server.maxConnections = cap;
    server.on("drop", () => {
      this.counters.connectionsRefused++;
      this.#atCap.note({ remote: path, maxConnections: cap });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path, backlog: 4096 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => this.#log.error({ err, path }, "unix socket listener error"));
    return server;
  }

  /**
   * A connection this process serves: under TLS its listener's TLS server
   * takes it first (a dealt connection arrives as the raw TCP socket).
   */
  #take(
    socket: net.Socket,
    pickle: boolean,
    listener: ListenerCounters,
    carry: Buffer | null,
    fresh: boolean,
  ): void {
    const tlsServer = this.#tlsServers.get(listener.name);
    if (tlsServer !== undefined) tlsServer.emit("connection", socket);
    else this.#accept(socket, pickle, listener, carry, fresh);
  }

  /**
   * `carry`: what the framer of a connection moved from another process
   * held (connection-handoff.ts). `fresh`: a new connection (counted in the
   * totals); false: one moved here while open.
   */
  #accept(
    socket: net.Socket,
    pickle: boolean,
    listener: ListenerCounters,
    carry: Buffer | null,
    fresh: boolean,
  ): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const counters = this.counters;
    if (fresh) {
      counters.connectionsTotal++;
      listener.connectionsTotal++;
    }
    listener.connections++;
    const idleMs = this.#config.idleTimeoutMs;
    const source =
      socket.remoteAddress === undefined ? "unix" : `${socket.remoteAddress}:${socket.remotePort}`;
    const options = { maxLineLength: this.#config.maxLineLength };
    const handler = counters.handler(this.#sink, pickle ? `pickle:${source}` : source, listener);
    const framer = pickle ? new PickleFramer(handler, options) : new LineFramer(handler, options);
    if (carry !== null) framer.push(carry);
    const conn: Conn = { idleMs, framer, listener, since: performance.now(), moved: false };
    this.#sockets.set(socket, conn);
    // Armed only while reading (see pause()): a paused sender is not idle.
    if (!this.#paused) socket.setTimeout(idleMs);
    socket.on("timeout", () => {
      // A timer that fired just before pause() disarmed it.
      if (this.#paused) return;
      counters.connectionsIdleClosed++;
      // An unfinished line is framed as at the sender's end: accepted or
      // rejected, counted either way.
      framer.end();
      socket.destroy();
    });
    // TLS reads its own way: paced only in cleartext.
    const pacer = listener.transport === "tls" ? null : this.#pacer;
    pacer?.track(socket);
    // Dealt or moved here, it was made with the default buffer (see read-pacer.ts).
    if (pacer !== null) oneByteBuffer(socket);
    socket.on("data", (chunk: Buffer) => {
      counters.bytesIn += chunk.length;
      listener.bytesIn += chunk.length;
      listener.reads++;
      framer.push(chunk);
      pacer?.read(socket, chunk.length);
    });
    socket.on("end", () => {
      framer.end();
      socket.end();
    });
    socket.on("error", noop);
    socket.on("close", () => {
      if (conn.moved) return;
      this.#sockets.delete(socket);
      listener.connections--;
    });
    // A dealt connection was accepted paused (pauseOnConnect).
    if (this.#paused) socket.pause();
    else socket.resume();
  }

  /**
   * A connection another process sent here (connection-handoff.ts), on the
   * listener named `listener`. Refused (closed, counted) at
   * --max-connections, as an accepted one is.
   */
  adopt(socket: net.Socket, listener: string, carry: Buffer | null, fresh: boolean): void {
    const counters = this.#listeners.find((c) => c.name === listener);
    const cap = this.#config.maxConnections;
    if (counters === undefined || this.#closing) {
      socket.destroy();
      return;
    }
    if (fresh && cap > 0 && this.#sockets.size >= cap) {
      this.counters.connectionsRefused++;
      this.#atCap.note({ remote: socket.remoteAddress, maxConnections: cap });
      socket.destroy();
      return;
    }
    this.#take(socket, counters.protocol === "pickle", counters, carry, fresh);
  }

  /**
   * Gives up about `share` of this process's cleartext TCP connections (1:
   * all of them), the fastest senders spread evenly over what is kept and
   * what goes, so that the load moves with them: each stops being read here,
   * with everything already read framed here, and is returned with what its
   * framer holds, for the caller to send to another process. TLS connections
   * (their session cannot move) and unix ones stay.
   */
  release(share: number): Handoff[] {
    if (share <= 0) return [];
    const now = performance.now();
    const rate = (s: net.Socket, c: Conn): number => s.bytesRead / Math.max(1, now - c.since);
    const candidates = [...this.#sockets]
      .filter(([s, c]) => c.listener.transport === "tcp" && movable(s))
      .sort((a, b) => rate(b[0], b[1]) - rate(a[0], a[1]));
    const every = Math.max(1, Math.round(1 / share));
    const out: Handoff[] = [];
    candidates.forEach(([socket, conn], i) => {
      if (i % every !== every - 1) return;
      const { framer, listener } = conn;
      // What the stream holds goes through the "data" listener, as any read.
      stopReading(socket);
      const carry = framer.carryOver();
      if (carry === false) {
        // Inside a line or message being skipped: it stays, read again.
        if (!this.#paused) socket.resume();
        return;
      }
      conn.moved = true;
      this.#sockets.delete(socket);
      this.#pacer?.untrack(socket);
      listener.connections--;
      out.push({ socket, listener: listener.name, carry, fresh: false });
    });
    return out;
  }

  #datagram(msg: Buffer, rinfo: dgram.RemoteInfo, listener: ListenerCounters): void {
    this.counters.bytesIn += msg.length;
    listener.bytesIn += msg.length;
    listener.reads++;
    if (this.#paused) {
      this.counters.droppedPaused += countLines(msg);
      return;
    }
    const source = `udp:${rinfo.address}:${rinfo.port}`;
    const framer = new LineFramer(this.counters.handler(this.#sink, source, listener), {
      maxLineLength: this.#config.maxLineLength,
    });
    framer.push(msg);
    framer.end();
  }

  /**
   * A reloaded configuration: new connections and datagrams get its line
   * limit and idle timeout; the listen addresses stay as bound.
   */
  reconfigure(config: ListenerConfig): void {
    this.#config = config;
    // A reload (SIGHUP) also looks at the certificate files at once.
    this.#tls?.reload();
  }

  /** Stops (true) or resumes (false) reading from senders. */
  pause(paused: boolean): void {
    if (paused === this.#paused) return;
    this.#paused = paused;
    // Every connection is paused, or resumed, below: parked ones too.
    this.#pacer?.hold(!paused);
    for (const [s, { idleMs }] of this.#sockets) {
      if (paused) {
        s.pause();
        s.setTimeout(0);
      } else {
        s.resume();
        s.setTimeout(idleMs);
      }
    }
  }

  get paused(): boolean {
    return this.#paused;
  }

  stats(): IngestStats {
    return this.counters.stats(
      this.#sockets.size,
      this.#paused,
      this.#listeners.map((l) => l.stats()),
    );
  }

  recentRejects(): RejectSample[] {
    return this.counters.recentRejects();
  }

  /**
   * Stops listening, then gives senders up to `graceMs` to finish what they
   * are sending (our side is half-closed; what they already sent is still
   * read and passed on) before their connections are closed.
   */
  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    this.#server?.close();
    this.#server = null;
    this.#pickleServer?.close();
    this.#pickleServer = null;
    this.#unixServer?.close();
    this.#unixServer = null;
    this.#udp?.close();
    this.#udp = null;
    this.#tls?.close();
    for (const t of this.#tlsServers.values()) t.close();
    // What parked senders sent is still read until they close.
    this.#pacer?.hold(false);
    if (!this.#paused) for (const s of this.#sockets.keys()) s.resume();
    await closeSockets(new Set(this.#sockets.keys()), graceMs);
  }
}

/** Ends every sender connection, waiting up to `ms` for senders to close their side. */
async function closeSockets(sockets: Set<net.Socket>, ms: number): Promise<void> {
  if (sockets.size === 0) return;
  const all = [...sockets].map(
    (s) =>
      new Promise<void>((resolve) => {
        if (s.destroyed) return resolve();
        s.once("close", () => resolve());
      }),
  );
  // Half-close our side: a sender that reads sees EOF and closes; we keep
  // reading what it already sent until then.
  for (const s of sockets) s.end();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(all),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
  for (const s of sockets) s.destroy();
}

function noop(): void {}
