import type dgram from "node:dgram";
import type dns from "node:dns";
import { lazyBuiltin } from "../../common/lazy-builtin.ts";
import type { DestinationName, DestinationTransport } from "./destination-link.ts";
import type { DestinationSpec } from "./destination-spec.ts";
import { type PendingWrite, SerialLink } from "./serial-link.ts";

const loadDns = lazyBuiltin<typeof dns>("node:dns");

const loadDgram = lazyBuiltin<typeof dgram>("node:dgram");

const NL = 0x0a;

/**
 * The largest datagram polymur builds: what one Ethernet frame (MTU 1500)
 * carries under an IPv6 header (40 bytes) and UDP's (8), so that datagrams
 * are not fragmented on common networks, IPv4 or IPv6. Receivers take far
 * more (carbon-cache reads 8 KiB datagrams, carbon-c-relay 32 KiB).
 */
export const UDP_DATAGRAM_BYTES = 1452;

/** The id and name of the UDP destination to `spec`: apart from a TCP member at the same address. */
export function udpName(spec: DestinationSpec): DestinationName {
  return { id: `udp:${spec.id}`, spec: `udp:${spec.spec}` };
}

/**
 * The transport of a relay.conf member with `proto udp`: a Destination
 * over it (`new Destination(udpTransport(spec), options)`) has the queue,
 * policies and accounting of a TCP one, and sends its lines as datagrams of
 * whole lines, at most `datagramBytes` each (a longer line goes alone).
 * carbon-c-relay sends one datagram per line; receivers split a datagram
 * into lines either way.
 *
 * UDP is lossy, and only part of the loss can be counted:
 * - a datagram the kernel refuses to send (the send fails: EMSGSIZE for a
 *   line longer than UDP can carry, ENETUNREACH, ...) is counted as dropped,
 *   reason send_failed, with all its lines; the link then closes, the
 *   failure is logged (the router logs the destination's backoff with the
 *   error) and a new socket is made after the backoff, the name resolved
 *   again;
 * - a datagram the kernel took is counted as forwarded: the network, a full
 *   receive buffer at the peer, or a peer that is not listening can still
 *   lose it, and nothing tells the sender. An ICMP "port unreachable" for an
 *   earlier datagram (ECONNREFUSED on the connected socket) closes the link
 *   as a refused TCP connection would: while the peer is down the queue
 *   holds what comes (bounded, its drops counted), but the datagrams sent
 *   before the refusal arrived are lost uncounted.
 * Nothing is resent: there is no resend window and nothing is unconfirmed.
 */
export function udpTransport(
  spec: DestinationSpec,
  datagramBytes = UDP_DATAGRAM_BYTES,
): DestinationTransport {
  return {
    name: udpName(spec),
    resends: false,
    open: () => new UdpLink(spec.host, spec.port, datagramBytes),
  };
}

/**
 * A connected UDP socket as a DestinationLink: the host is resolved, a
 * socket of its family connected to it ("connect"), then each write is
 * sent as datagrams, one write at a time (SerialLink). Its completion tells
 * how many lines were not sent.
 */
class UdpLink extends SerialLink {
  readonly #host: string;
  readonly #port: number;
  readonly #datagramBytes: number;
  #socket: dgram.Socket | null = null;
  #connected = false;
  /** The oldest write is being sent. */
  #sending = false;
  /** A failure seen while a write was being sent: the link closes once it is done. */
  #failure: Error | null = null;

  constructor(host: string, port: number, datagramBytes: number) {
    super();
    this.#host = host;
    this.#port = port;
    this.#datagramBytes = datagramBytes;
    loadDns().lookup(host, (err, address, family) => this.#resolved(err, address, family));
  }

  #resolved(err: Error | null, address: string, family: number): void {
    if (this.destroyed) return;
    if (err !== null) {
      this.close(err);
      return;
    }
    const socket = loadDgram().createSocket(family === 6 ? "udp6" : "udp4");
    this.#socket = socket;
    // Send errors come to each send's callback; this one brings what the
    // socket is told later, such as ECONNREFUSED (an ICMP port unreachable
    // for a datagram already sent).
    socket.on("error", (e) => this.#fail(e));
    socket.once("connect", () => {
      if (this.destroyed) return;
      this.#connected = true;
      this.emit("connect");
      this.pump();
    });
    socket.connect(this.#port, address);
  }

  /** With nothing to send, closes at once, connected or not. */
  override end(): void {
    if (!this.#sending && this.pendingWrites === 0) this.close();
    else super.end();
  }

  #fail(err: Error): void {
    if (this.destroyed) return;
    if (this.#sending) this.#failure ??= err;
    else this.close(err);
  }

  protected override idle(): boolean {
    return this.#connected && !this.#sending;
  }

  /** Sends one write as datagrams; completes it when every send has. */
  protected override send(w: PendingWrite): void {
    this.#sending = true;
    const socket = this.#socket!;
    const { chunk } = w;
    let pending = 0;
    let unsent = 0;
    let error: Error | null = null;
    let issued = false;
    const sent = (datagram: Buffer, err: Error | null): void => {
      if (err !== null) {
        unsent += countLines(datagram);
        error ??= err;
      }
      if (--pending === 0 && issued) this.#sent(w, unsent, error);
    };
    for (let start = 0; start < chunk.length; ) {
      const end = datagramEnd(chunk, start, this.#datagramBytes);
      const datagram = chunk.subarray(start, end);
      pending++;
      socket.send(datagram, (err) => sent(datagram, err));
      start = end;
    }
    issued = true;
    if (pending === 0) this.#sent(w, 0, null);
  }

  #sent(w: PendingWrite, unsent: number, err: Error | null): void {
    this.#sending = false;
    if (this.destroyed) return;
    if (err !== null) {
      this.#failure ??= new Error(
        `${err.message} (to ${this.#host}:${this.#port}): ${unsent} datapoints not sent, counted as dropped (reason send_failed)`,
      );
    }
    this.completed(w, unsent);
    this.proceed(this.#failure);
  }

  /** Closes the socket, then "close". */
  protected override release(): void {
    const socket = this.#socket;
    this.#socket = null;
    if (socket === null) process.nextTick(emitClose, this);
    else socket.close(() => this.emit("close"));
  }
}

function emitClose(link: UdpLink): void {
  link.emit("close");
}

/**
 * The end of the datagram that starts at `start` in `buf` (whole lines):
 * as many lines as fit in `max` bytes, or the one line there when it alone
 * is longer.
 */
export function datagramEnd(buf: Buffer, start: number, max: number): number {
  if (buf.length - start <= max) return buf.length;
  const nl = buf.lastIndexOf(NL, start + max - 1);
  if (nl >= start) return nl + 1;
  const end = buf.indexOf(NL, start + max);
  return end < 0 ? buf.length : end + 1;
}

function countLines(buf: Buffer): number {
  let n = 0;
  for (let i = buf.indexOf(NL); i >= 0; i = buf.indexOf(NL, i + 1)) n++;
  return n;
}
