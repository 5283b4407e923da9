import net from "node:net";
import type { DestinationSpec } from "./destination-spec.ts";

/** How a destination is known: its identity (one destination per id) and how it is shown. */
export interface DestinationName {
  /** Identity: the router holds one destination per id (`host:port`, `udp:host:port`, `file:PATH`). */
  readonly id: string;
  /** As shown in /stats, metrics and logs. */
  readonly spec: string;
}

/**
 * A write's completion. `err`: the link failed, and what was in flight is
 * written again over the next link. `unsent`: lines of this write the link
 * gave up on without failing (a UDP datagram the kernel refused to send),
 * counted as dropped (reason send_failed); the rest were forwarded.
 */
export type WriteDone = (err?: Error | null, unsent?: number) => void;

/**
 * One connection to a destination's peer, as a Destination uses it (a
 * net.Socket is one). Writes are whole lines, taken in order; writes made
 * before "connect" wait for it.
 *
 * Events: "connect" once writable; "drain" after write() returned false and
 * the link can take more; "error" (then "close"); "close" once, last, after
 * which the link is done: every write's completion came before it or never
 * comes.
 */
export interface DestinationLink {
  write(chunk: Buffer, done: WriteDone): boolean;
  /** Closes once what was written is out; "close" follows. */
  end(): void;
  /** Closes now; "close" follows. */
  destroy(err?: Error): void;
  readonly destroyed: boolean;
  once(event: "connect" | "close", listener: () => void): unknown;
  on(event: "drain", listener: () => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
}

/** How a Destination reaches its peer: a new link per connection attempt. */
export interface DestinationTransport {
  readonly name: DestinationName;
  /**
   * Written data is kept after the write and written again when the link
   * fails (the resend window): TCP, whose peer loses what sat in the two
   * socket buffers when it dies. A transport whose completed writes are done
   * (a file) or cannot be confirmed anyway (UDP) keeps nothing.
   */
  readonly resends: boolean;
  /** Opens a new link: connects, binds, opens a file. */
  open(): DestinationLink;
  /** A reload kept this destination (Destination.reconfigure): a file is reopened, for logrotate. */
  reload?(): void;
}

/** What a Destination does on each event of a link it opened (openLink). */
export interface LinkHandlers {
  /** Connected: writes go out now. */
  connect(): void;
  /** The link takes more writes. */
  drain(): void;
  error(err: Error): void;
  /** The link is done (failed, timed out or ended). */
  close(): void;
}

/**
 * Opens a new link over `transport` with `on` listening to it: a link not
 * connected within `connectTimeoutMs` is destroyed (an error, then "close").
 */
export function openLink(
  transport: DestinationTransport,
  connectTimeoutMs: number,
  on: LinkHandlers,
): DestinationLink {
  const link = transport.open();
  const timer = setTimeout(() => {
    link.destroy(new Error(`connect timeout after ${connectTimeoutMs} ms`));
  }, connectTimeoutMs);
  link.once("connect", () => {
    clearTimeout(timer);
    on.connect();
  });
  link.on("drain", () => on.drain());
  link.on("error", (err) => on.error(err));
  link.once("close", () => {
    clearTimeout(timer);
    on.close();
  });
  return link;
}

/** TCP to `spec` (host name re-resolved on every connect): the default transport. */
export function tcpTransport(spec: DestinationSpec): DestinationTransport {
  return {
    name: spec,
    resends: true,
    open(): DestinationLink {
      const socket = net.connect({
        host: spec.host,
        port: spec.port,
        noDelay: true,
        keepAlive: true,
        keepAliveInitialDelay: 30_000,
      });
      // Graphite receivers send nothing; read and discard so nothing accumulates.
      socket.on("data", noop);
      return socket;
    },
  };
}

function noop(): void {}
