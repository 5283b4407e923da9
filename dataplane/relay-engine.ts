import dgram from "node:dgram";
import { EventEmitter } from "node:events";
import net from "node:net";
import type { Logger } from "../common/logger.ts";
import { Destination, type DestinationOptions, type DestinationStats } from "./destination.ts";
import { createHashRouter, type HashRouter, withoutMember } from "./hash-router.ts";
import { LineFramer, type LineSink } from "./line-framer.ts";
import type { RejectReason } from "./line-validator.ts";
import { RejectLog, type RejectSample } from "./reject-log.ts";
import type { RelayConfig } from "./relay-config.ts";
import { RouteTable } from "./route-table.ts";

export interface EngineStats {
  /** Valid datapoints received. */
  received: number;
  /** Rejected lines, per reason. */
  rejected: Record<RejectReason, number>;
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  bytesIn: number;
  /** Datapoints lost at shutdown or on removal of a destination that could not drain. */
  undelivered: number;
  destinations: DestinationStats[];
  /** True while ingest is paused by a full queue under the block policy. */
  paused: boolean;
}

export interface EngineOptions {
  /** This process's share of the queue bounds (1 / number of worker processes). Default 1. */
  share?: number;
  /** Listen with SO_REUSEPORT, so that several worker processes share the port. */
  reusePort?: boolean;
  /** Whether this engine opens the UDP listener (only one process does). Default true. */
  udp?: boolean;
  /** Called with every run of forwarded lines (--console-out). */
  tap?: (lines: Buffer) => void;
}

/**
 * One process's relay: TCP/UDP ingest → framing and validation → routing →
 * per-destination queues. Reconfigured in place by `apply`. `listen()` is
 * optional: a gateway feeds it through `ingest()` instead.
 *
 * Events: "paused" and "resumed" (ingest held by a full queue under the block
 * policy, or by holdIngest()).
 */
export class RelayEngine extends EventEmitter {
  readonly #log: Logger;
  readonly #share: number;
  readonly #reusePort: boolean;
  readonly #withUdp: boolean;
  readonly #tap: ((lines: Buffer) => void) | null;
  #config: RelayConfig;
  #destinations = new Map<string, Destination>();
  #table: RouteTable;
  #server: net.Server | null = null;
  #udp: dgram.Socket | null = null;
  #sockets = new Set<net.Socket>();
  readonly rejects = new RejectLog();
  #received = 0;
  #bytesIn = 0;
  #connectionsTotal = 0;
  #connectionsRefused = 0;
  #undelivered = 0;
  #paused = false;
  #externalHold = false;
  /** Destinations taken out of the hash ring (ids). */
  #ejected = new Set<string>();
  #stopping = false;

  constructor(config: RelayConfig, log: Logger, options: EngineOptions = {}) {
    super();
    this.#config = config;
    this.#log = log;
    this.#share = options.share ?? 1;
    this.#reusePort = options.reusePort ?? false;
    this.#withUdp = options.udp ?? true;
    this.#tap = options.tap ?? null;
    this.#table = this.#buildTable(config, this.#destinations);
  }

  get config(): RelayConfig {
    return this.#config;
  }

  /** Starts listening. Resolves with the bound TCP (and UDP) ports. */
  async listen(): Promise<{ port: number; udpPort: number | null }> {
    const { host, port } = this.#config.listen;
    const server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    if (this.#config.maxConnections > 0) server.maxConnections = this.#config.maxConnections;
    server.on("drop", () => {
      this.#connectionsRefused++;
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port, reusePort: this.#reusePort, backlog: 4096 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => this.#log.error({ err }, "listener error"));
    const bound = (server.address() as net.AddressInfo).port;
    let udpPort: number | null = null;
    const u = this.#config.udp;
    if (u !== null && this.#withUdp) {
      const sock = dgram.createSocket({ type: net.isIPv6(u.host) ? "udp6" : "udp4" });
      sock.on("message", (msg, rinfo) => this.#datagram(msg, rinfo));
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
    }
    return { port: bound, udpPort };
  }

  #accept(socket: net.Socket): void {
    if (this.#stopping) {
      socket.destroy();
      return;
    }
    this.#connectionsTotal++;
    this.#sockets.add(socket);
    const source = `${socket.remoteAddress}:${socket.remotePort}`;
    const framer = new LineFramer(this.#sink(source), {
      maxLineLength: this.#config.maxLineLength,
    });
    if (this.#config.idleTimeoutMs > 0) {
      socket.setTimeout(this.#config.idleTimeoutMs, () => socket.destroy());
    }
    socket.on("data", (chunk: Buffer) => {
      this.#bytesIn += chunk.length;
      framer.push(chunk);
    });
    socket.on("end", () => {
      framer.end();
      socket.end();
    });
    socket.on("error", noop);
    socket.on("close", () => {
      this.#sockets.delete(socket);
    });
    if (this.#paused) socket.pause();
  }

  #sink(source: string): LineSink {
    return {
      segment: (buf, start, end, lines) => {
        this.#received += lines;
        this.#table.route(buf, start, end, lines);
      },
      reject: (reason, detail, line) => {
        this.rejects.add(reason, detail, line, source);
      },
    };
  }

  #datagram(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.#bytesIn += msg.length;
    if (this.#paused) {
      // A datagram cannot be pushed back; under the block policy it is dropped
      // and counted like any other overflow.
      this.#undelivered += countLines(msg);
      return;
    }
    const framer = new LineFramer(this.#sink(`udp:${rinfo.address}:${rinfo.port}`), {
      maxLineLength: this.#config.maxLineLength,
    });
    framer.push(msg);
    framer.end();
  }

  /**
   * Applies a new configuration atomically: destinations that stay keep their
   * queue and connection, new ones start, removed ones stop receiving at once
   * and drain in the background (up to `drainMs`).
   */
  apply(config: RelayConfig, drainMs = 30_000): void {
    const old = this.#destinations;
    const next = new Map<string, Destination>();
    const ids = new Set(config.destinations.map((d) => d.id));
    for (const id of this.#ejected) if (!ids.has(id)) this.#ejected.delete(id);
    // Build the routing first: a configuration the router rejects changes nothing.
    for (const spec of config.destinations) {
      const d = old.get(spec.id);
      if (d !== undefined) next.set(spec.id, d);
    }
    const table = this.#buildTable(config, next);
    for (const d of old.values())
      if (next.has(d.spec.id)) d.reconfigure(this.#destOptions(config, d.spec.id));
    // Lines batched for the old table go out before the switch.
    this.#table._flush();
    for (const [id, d] of old) {
      if (next.has(id)) continue;
      void d.drain(drainMs).then((left) => {
        if (left > 0) {
          this.#undelivered += left;
          this.#log.warn(
            { destination: d.spec.spec, undelivered: left },
            "removed destination could not deliver everything",
          );
        } else {
          this.#log.info({ destination: d.spec.spec }, "removed destination drained");
        }
      });
    }
    this.#config = config;
    this.#table = table;
    this.#destinations = next;
    this.#updatePause();
  }

  #destOptions(config: RelayConfig, id: string): DestinationOptions {
    const queueBytes = config.queueBytesFor[id] ?? config.queueBytes;
    return {
      queueBytes: Math.max(64 * 1024, Math.floor(queueBytes * this.#share)),
      overflow: config.overflowFor[id] ?? config.overflow,
      resendBytes: config.resendBytes,
      backoffMinMs: config.backoffMinMs,
      backoffMaxMs: config.backoffMaxMs,
    };
  }

  /**
   * Creates destinations missing from `keep` (all of them at construction),
   * and the routing over them; in hash-route, destinations ejected from the
   * ring are left out of it (carbon's DYNAMIC_ROUTER: the ring without them).
   */
  #buildTable(config: RelayConfig, keep: Map<string, Destination>): RouteTable {
    let hash: HashRouter | null = null;
    if (config.distribution === "hash-route") {
      hash = createHashRouter(config.destinations, config.hash);
      for (const spec of config.destinations) {
        if (this.#ejected.has(spec.id)) hash = withoutMember(hash, spec);
      }
    } else {
      this.#ejected.clear();
    }
    const list: Destination[] = [];
    for (const spec of config.destinations) {
      let d = keep.get(spec.id);
      if (d === undefined) {
        d = new Destination(spec, this.#destOptions(config, spec.id));
        this.#watch(d);
        keep.set(spec.id, d);
        d.start();
      }
      if (!this.#ejected.has(spec.id)) list.push(d);
    }
    return new RouteTable(list, hash, this.#tap);
  }

  /**
   * Hash-route with --eject-after: a destination that failed that many
   * connection attempts in a row leaves the ring, and its queue is re-routed
   * over the remaining ring (so nothing waits on it); it rejoins, with the
   * ring as configured, once it connects again.
   */
  #checkEjection(d: Destination, state: string): void {
    const config = this.#config;
    if (config.distribution !== "hash-route" || config.ejectAfter <= 0) return;
    if (this.#destinations.get(d.spec.id) !== d) return;
    const id = d.spec.id;
    if (state === "backoff" && d.failStreak >= config.ejectAfter && !this.#ejected.has(id)) {
      // The last member stays: with no ring at all, datapoints would have nowhere to go.
      if (config.destinations.length - this.#ejected.size <= 1) return;
      this.#ejected.add(id);
      let table: RouteTable;
      try {
        table = this.#buildTable(config, this.#destinations);
      } catch (err) {
        this.#ejected.delete(id);
        this.#log.error(
          { destination: d.spec.spec, err: (err as Error).message },
          "cannot take the destination out of the ring; keeping its queue",
        );
        return;
      }
      this.#table._flush();
      this.#table = table;
      let moved = 0;
      for (const { chunk, lines } of d.takeQueued()) {
        moved += lines;
        table.route(chunk, 0, chunk.length, lines);
      }
      table._flush();
      this.#log.warn(
        { destination: d.spec.spec, failures: d.failStreak, rerouted: moved },
        `destination ${d.spec.spec} taken out of the ring after ${d.failStreak} failed connection attempts; ${moved} queued datapoints re-routed`,
      );
    } else if (state === "connected" && this.#ejected.has(id)) {
      this.#ejected.delete(id);
      const table = this.#buildTable(config, this.#destinations);
      this.#table._flush();
      this.#table = table;
      this.#log.info(
        { destination: d.spec.spec },
        `destination ${d.spec.spec} is back in the ring`,
      );
    }
  }

  #watch(d: Destination): void {
    d.on("state", (state) => {
      this.#checkEjection(d, state);
      const s = d.stats();
      const level = state === "backoff" ? "warn" : "info";
      this.#log[level](
        { destination: d.spec.spec, state, error: s.lastError, queued: s.queuedLines },
        `destination ${d.spec.spec} ${state}`,
      );
    });
    d.on("blocked", () => this.#updatePause());
    d.on("unblocked", () => this.#updatePause());
  }

  /**
   * Pauses (true) or resumes reading from TCP senders for a reason outside the
   * destinations, e.g. a proxy whose buffer towards its gateway is full.
   * Ingest runs only while no destination and no external holder blocks it.
   */
  holdIngest(hold: boolean): void {
    this.#externalHold = hold;
    this.#updatePause();
  }

  /** True while ingest is paused (a full queue under the block policy, or holdIngest). */
  get paused(): boolean {
    return this.#paused;
  }

  #updatePause(): void {
    let blocked = this.#externalHold;
    for (const d of this.#destinations.values()) if (d.blocking) blocked = true;
    if (blocked === this.#paused) return;
    this.#paused = blocked;
    this.emit(blocked ? "paused" : "resumed");
    for (const s of this.#sockets) {
      if (blocked) s.pause();
      else s.resume();
    }
    this.#log.warn(
      { paused: blocked },
      blocked ? "queue full under block policy: ingest paused" : "ingest resumed",
    );
  }

  /**
   * Frames, validates and routes a whole buffer of lines that arrived some
   * other way than a TCP connection (a proxy batch at a gateway). A final
   * line without a newline counts as a line. With `prefix`, every valid line
   * is forwarded as `<prefix>.<line>` (the gateway's --key-prefix: the name
   * part, before any `;tags`, gets the prefix since it is at the start).
   * When this returns, every valid line is in the destination queues.
   */
  ingest(buf: Buffer, source: string, prefix = ""): { accepted: number; rejected: number } {
    const rejectedBefore = this.rejects.total;
    const receivedBefore = this.#received;
    this.#bytesIn += buf.length;
    const sink =
      prefix === "" ? this.#sink(source) : this.#prefixSink(source, Buffer.from(`${prefix}.`));
    const framer = new LineFramer(sink, { maxLineLength: this.#config.maxLineLength });
    framer.push(buf);
    framer.end();
    this.#table._flush();
    return {
      accepted: this.#received - receivedBefore,
      rejected: this.rejects.total - rejectedBefore,
    };
  }

  #prefixSink(source: string, prefix: Buffer): LineSink {
    const plain = this.#sink(source);
    return {
      segment: (buf, start, end, lines) => {
        const out = Buffer.allocUnsafe(end - start + lines * prefix.length);
        let o = 0;
        let ls = start;
        while (ls < end) {
          const nl = buf.indexOf(0x0a, ls);
          o += prefix.copy(out, o);
          o += buf.copy(out, o, ls, nl + 1);
          ls = nl + 1;
        }
        plain.segment(out, 0, o, lines);
      },
      reject: plain.reject,
    };
  }

  /** Routes polymur's own lines (self-metrics); not counted as received. */
  inject(text: string): void {
    const b = Buffer.from(text);
    if (b.length > 0) this.#table.route(b, 0, b.length, countLines(b));
  }

  stats(): EngineStats {
    return {
      received: this.#received,
      rejected: { ...this.rejects.counts },
      connections: this.#sockets.size,
      connectionsTotal: this.#connectionsTotal,
      connectionsRefused: this.#connectionsRefused,
      bytesIn: this.#bytesIn,
      undelivered: this.#undelivered,
      destinations: [...this.#destinations.values()].map((d) => ({
        ...d.stats(),
        ejected: this.#ejected.has(d.spec.id),
      })),
      paused: this.#paused,
    };
  }

  recentRejects(): RejectSample[] {
    return this.rejects.recent();
  }

  /**
   * Graceful stop: no new connections; senders get `graceMs` to finish what
   * they are sending, then their connections close; queues drain until
   * `deadlineMs` after the call. Resolves with what could not be delivered,
   * per destination.
   */
  async shutdown(deadlineMs: number, graceMs = 1_000): Promise<Record<string, number>> {
    this.#stopping = true;
    const t0 = Date.now();
    this.#server?.close();
    this.#server = null;
    this.#udp?.close();
    this.#udp = null;
    await closeSockets(this.#sockets, Math.min(graceMs, deadlineMs / 4));
    this.#table._flush();
    const left = Math.max(0, deadlineMs - (Date.now() - t0));
    const entries = await Promise.all(
      [...this.#destinations.values()].map(
        async (d) => [d.spec.spec, await d.drain(left)] as const,
      ),
    );
    const result = Object.fromEntries(entries);
    for (const n of Object.values(result)) this.#undelivered += n;
    return result;
  }
}

/** Ends every ingest connection, waiting up to `ms` for senders to close their side. */
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

function countLines(msg: Buffer): number {
  let n = 0;
  for (let i = msg.indexOf(0x0a); i >= 0; i = msg.indexOf(0x0a, i + 1)) n++;
  if (msg.length > 0 && msg[msg.length - 1] !== 0x0a) n++;
  return n;
}

function noop(): void {}
