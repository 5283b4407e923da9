/**
 * Why a TLS listener closed a connection before any data was read from it:
 *   handshake_failed     the handshake failed (the client gave up on our
 *                        certificate, spoke a TLS we do not, reset it …)
 *   handshake_timeout    not finished within --tls-handshake-timeout
 *   client_cert_refused  mutual TLS: no client certificate, or one not
 *                        signed by --tls-client-ca
 *   not_tls              the client spoke something else (plaintext, HTTP)
 *   throttled            its address failed so many handshakes in the last
 *                        second that it was closed before a handshake
 *                        (listener-tls.ts)
 */
export type TlsRejectReason =
  | "handshake_failed"
  | "handshake_timeout"
  | "client_cert_refused"
  | "not_tls"
  | "throttled";

export const TLS_REJECT_REASONS: readonly TlsRejectReason[] = [
  "handshake_failed",
  "handshake_timeout",
  "client_cert_refused",
  "not_tls",
  "throttled",
];

/** What one listener counted: /stats `listeners`, and polymur_listener_* in /metrics. */
export interface ListenerStats {
  /** Which listener: `plaintext` (--listen-addr), `pickle`, `unix`, `udp`. */
  name: string;
  /** What it takes: Graphite plaintext lines, or carbon's pickle protocol. */
  protocol: "plaintext" | "pickle";
  /** How: TCP, TLS over TCP, a unix stream socket, UDP datagrams. */
  transport: "tcp" | "tls" | "unix" | "udp";
  /** Where, as bound (`host:port`, or the socket's path). */
  address: string;
  /** Sender connections open now (TLS: handshake done). */
  connections: number;
  /** Sender connections taken (TLS: handshake done). */
  connectionsTotal: number;
  bytesIn: number;
  /** Reads from its connections (datagrams for UDP): bytesIn / reads is what one read takes (see read-pacer.ts). */
  reads: number;
  /** Valid datapoints it took. */
  accepted: number;
  /** Datapoints it rejected (the reasons are the node's `rejected`). */
  rejected: number;
  /** TLS listeners: connections closed before their data, by reason; null otherwise. */
  tlsRejectedBy: Record<TlsRejectReason, number> | null;
}

/** A listener's counters in one process. */
export class ListenerCounters {
  readonly name: string;
  readonly protocol: ListenerStats["protocol"];
  readonly transport: ListenerStats["transport"];
  address = "";
  connections = 0;
  connectionsTotal = 0;
  bytesIn = 0;
  reads = 0;
  accepted = 0;
  rejected = 0;
  readonly tlsRejectedBy: Record<TlsRejectReason, number> | null;

  constructor(
    name: string,
    protocol: ListenerStats["protocol"],
    transport: ListenerStats["transport"],
  ) {
    this.name = name;
    this.protocol = protocol;
    this.transport = transport;
    this.tlsRejectedBy = transport === "tls" ? noTlsRejects() : null;
  }

  stats(): ListenerStats {
    return {
      name: this.name,
      protocol: this.protocol,
      transport: this.transport,
      address: this.address,
      connections: this.connections,
      connectionsTotal: this.connectionsTotal,
      bytesIn: this.bytesIn,
      reads: this.reads,
      accepted: this.accepted,
      rejected: this.rejected,
      tlsRejectedBy: this.tlsRejectedBy === null ? null : { ...this.tlsRejectedBy },
    };
  }
}

function noTlsRejects(): Record<TlsRejectReason, number> {
  return Object.fromEntries(TLS_REJECT_REASONS.map((r) => [r, 0])) as Record<
    TlsRejectReason,
    number
  >;
}

/** The listeners of a process group, summed by name (each process has the ones it opened). */
export function mergeListeners(all: readonly ListenerStats[]): ListenerStats[] {
  const out = new Map<string, ListenerStats>();
  for (const l of all) {
    const m = out.get(l.name);
    if (m === undefined) {
      out.set(l.name, {
        ...l,
        tlsRejectedBy: l.tlsRejectedBy === null ? null : { ...l.tlsRejectedBy },
      });
      continue;
    }
    m.connections += l.connections;
    m.connectionsTotal += l.connectionsTotal;
    m.bytesIn += l.bytesIn;
    m.reads += l.reads;
    m.accepted += l.accepted;
    m.rejected += l.rejected;
    if (m.tlsRejectedBy !== null && l.tlsRejectedBy !== null) {
      for (const r of TLS_REJECT_REASONS) m.tlsRejectedBy[r] += l.tlsRejectedBy[r];
    }
  }
  return [...out.values()];
}
