import { EventEmitter } from "node:events";
import { isIP, type TcpNetConnectOpts } from "node:net";
import type tls from "node:tls";
import { lazyBuiltin } from "../../common/lazy-builtin.ts";
import type { DestinationLink, DestinationTransport, WriteDone } from "./destination-link.ts";
import type { DestinationSpec } from "./destination-spec.ts";
import {
  type DestinationTlsFiles,
  type DestinationTlsSettings,
  destinationTlsFiles,
} from "./destination-tls.ts";

const loadTls = lazyBuiltin<typeof tls>("node:tls");

/**
 * TLS to `spec` (`tls://`, and under pickle frames `pickle+tls://`): TCP as
 * tcpTransport (host re-resolved on every connect, no delay, keep-alive),
 * then a TLS handshake (1.2 at least) that verifies the peer: its
 * certificate must chain to `settings.caFile` (Node's default trust store
 * without one) and carry `settings.serverName`, or the destination's host.
 * A client certificate is presented when `settings` has one (mutual TLS).
 *
 * The link says "connect" only once the handshake is done, so a certificate
 * that is refused is a failed connect (counted, backed off, retried) whose
 * error says why ("self-signed certificate", "unable to verify the first
 * certificate", "Hostname/IP does not match certificate's altnames" …).
 * The files are read at the first connect and again after they change
 * (DestinationTlsFiles); one that cannot be read fails that attempt the same
 * way. A server that refuses the client certificate does so after a TLS 1.3
 * client has finished its handshake: the link connects, then fails.
 */
export function tlsTransport(
  spec: DestinationSpec,
  settings: DestinationTlsSettings | null,
): DestinationTransport {
  const files = destinationTlsFiles(settings);
  return {
    name: spec,
    resends: true,
    open: () => new TlsLink(spec, files),
  };
}

/**
 * tls.connect's options, with the TCP ones it passes on to net.connect
 * (Node's types leave them out of tls.ConnectionOptions).
 */
type TlsConnectOptions = tls.ConnectionOptions &
  Pick<TcpNetConnectOpts, "noDelay" | "keepAlive" | "keepAliveInitialDelay">;

/** The connect options of one connection to `spec`, with the context of `files` (throws if it cannot be made). */
function connectOptions(spec: DestinationSpec, files: DestinationTlsFiles): TlsConnectOptions {
  const name = files.settings.serverName ?? spec.host;
  return {
    host: spec.host,
    port: spec.port,
    secureContext: files.context(),
    // No SNI for an IP address (RFC 6066 forbids it; Node warns).
    ...(isIP(name) === 0 ? { servername: name } : {}),
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => loadTls().checkServerIdentity(name, cert),
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: 30_000,
  };
}

/**
 * One TLS connection as a DestinationLink: the socket's events, with
 * "connect" at the end of the handshake ("secureConnect") rather than of
 * TCP's. When the TLS context cannot be made, there is no socket: the link
 * fails at once ("error", then "close", on the next tick).
 */
class TlsLink extends EventEmitter implements DestinationLink {
  readonly #socket: tls.TLSSocket | null;
  #destroyed = false;

  constructor(spec: DestinationSpec, files: DestinationTlsFiles) {
    super();
    let socket: tls.TLSSocket;
    try {
      socket = loadTls().connect(connectOptions(spec, files));
    } catch (err) {
      this.#socket = null;
      process.nextTick(() => {
        this.emit("error", err as Error);
        this.#close();
      });
      return;
    }
    this.#socket = socket;
    socket.once("secureConnect", () => this.emit("connect"));
    socket.on("drain", () => this.emit("drain"));
    socket.on("error", (err) => {
      this.emit("error", err);
      // An error after the handshake (a TLS 1.3 server's alert refusing the
      // client certificate) leaves the TLSSocket open, unlike a net.Socket's
      // errors: closed here, so that the link ends and is retried.
      socket.destroy();
    });
    socket.once("close", () => this.#close());
    // Graphite receivers send nothing; read and discard so nothing accumulates.
    socket.on("data", noop);
  }

  get destroyed(): boolean {
    return this.#destroyed || (this.#socket?.destroyed ?? false);
  }

  /** Written over TLS (before the handshake ends, Node holds it until then). */
  write(chunk: Buffer, done: WriteDone): boolean {
    // No socket: the link is failing; the write never completes ("close" follows).
    if (this.#socket === null) return false;
    return this.#socket.write(chunk, done);
  }

  end(): void {
    this.#socket?.end();
  }

  destroy(err?: Error): void {
    if (this.#socket !== null) this.#socket.destroy(err);
    else this.#destroyed = true;
  }

  #close(): void {
    this.#destroyed = true;
    this.emit("close");
  }
}

function noop(): void {}
