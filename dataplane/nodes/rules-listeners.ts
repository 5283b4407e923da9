import { copyOptions, type RawOptions } from "../../common/options.ts";
import { type ListenerTlsSettings, listenerTlsSettings } from "../ingest/listener-tls-settings.ts";
import { type Receptor, type RulesConfig, RulesError } from "../route/rules/rules-config.ts";

type Address = { host: string; port: number };

/** carbon-c-relay's default port, for a receptor written without one. */
const GRAPHITE_PORT = 2003;

/** What a relay.conf's `listen` blocks ask the relay to listen on. */
export interface RulesListeners {
  /** The TCP receptor (plaintext lines). */
  readonly listen: Address;
  /** The UDP receptor, or null: the blocks open no UDP port (--udp-addr is not used). */
  readonly udp: Address | null;
  /** The unix socket receptor's path, or null: --unix-socket decides. */
  readonly unix: string | null;
  /**
   * `transport plain ssl PEM` on the TCP receptor's block: the PEM file
   * holding the certificate and its key; null: the flags decide (--tls-cert).
   */
  readonly tlsPem: string | null;
}

/**
 * The addresses a relay.conf's `listen` blocks ask for, or null when it has
 * none (the relay's flags decide). polymur listens on one TCP, one UDP and
 * one unix socket address, cleartext or TLS (TCP only): a second of
 * any, or a unix socket receptor in a TLS block, is refused at its position
 * rather than silently not opened.
 *
 * What the blocks say replaces the flags: their TCP receptor replaces
 * --listen-addr and their UDP receptor (or none) --udp-addr, as the blocks
 * list every receptor carbon-c-relay opens; a unix receptor replaces
 * --unix-socket, and `ssl PEM` --tls-cert and --tls-key (rulesListenerTls).
 * What they cannot say comes from the flags: --unix-socket when they have
 * no unix receptor, TLS from --tls-cert when they have no `ssl`, and
 * --tls-client-ca, --tls-handshake-timeout and --pickle-addr always.
 */
export function rulesListeners(rules: RulesConfig): RulesListeners | null {
  let listen: Address | null = null;
  let tlsPem: string | null = null;
  let udp: Address | null = null;
  let unix: Receptor | null = null;
  let first: Receptor | null = null;
  for (const block of rules.listen) {
    for (const r of block.receptors) {
      first ??= r;
      if (r.proto === "unix") {
        if (block.tls !== null) {
          const at = `${block.tls.pos.file}:${block.tls.pos.line}:${block.tls.pos.column}`;
          throw new RulesError(
            r.pos,
            `unix socket receptor "${r.address}" in a TLS listen block ("ssl" at ${at}): polymur's unix socket takes cleartext lines only`,
          );
        }
        if (unix !== null) {
          throw new RulesError(
            r.pos,
            `a second unix socket receptor "${r.address}": polymur listens on one unix socket (the first: "${unix.address}")`,
          );
        }
        unix = r;
        continue;
      }
      const address = receptorAddress(r);
      if (r.proto === "tcp") {
        if (listen !== null) {
          throw new RulesError(
            r.pos,
            `a second TCP receptor "${r.address}": polymur listens on one TCP address (the first: ${listen.host}:${listen.port})`,
          );
        }
        listen = address;
        tlsPem = block.tls?.pemFile ?? null;
      } else {
        if (udp !== null) {
          throw new RulesError(
            r.pos,
            `a second UDP receptor "${r.address}": polymur listens on one UDP address (the first: ${udp.host}:${udp.port})`,
          );
        }
        udp = address;
      }
    }
  }
  if (first === null) return null;
  if (listen === null) {
    throw new RulesError(first.pos, "the listen blocks have no TCP receptor: polymur needs one");
  }
  return { listen, udp, unix: unix?.address ?? null, tlsPem };
}

/**
 * The data listeners' TLS: with the blocks' `ssl PEM`, that file as both
 * certificate and key (--tls-cert and --tls-key are not used) with
 * --tls-client-ca and --tls-handshake-timeout; otherwise the flags alone.
 * It applies to the TCP listener and to --pickle-addr's, as --tls-cert does.
 */
export function rulesListenerTls(
  listeners: RulesListeners | null,
  o: RawOptions,
): ListenerTlsSettings | null {
  if (listeners === null || listeners.tlsPem === null) return listenerTlsSettings(o);
  const withPem = copyOptions(o);
  withPem.set("tls-cert", listeners.tlsPem);
  withPem.set("tls-key", listeners.tlsPem);
  return listenerTlsSettings(withPem);
}

/** `host:port`, `:port` (every interface), `host` (port 2003), `[v6]:port` or `[v6]`, as carbon-c-relay reads them. */
export function receptorAddress(r: Receptor): Address {
  const text = r.address;
  let host = text;
  let port = GRAPHITE_PORT;
  const bracketed = text.startsWith("[");
  const last = text.lastIndexOf(":");
  if (last >= 0 && !text.endsWith("]")) {
    const portText = text.slice(last + 1);
    if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new RulesError(r.pos, `invalid port number '${portText}' in "${text}"`);
    }
    port = Number(portText);
    host = text.slice(0, last);
  }
  if (bracketed) {
    if (!host.endsWith("]")) throw new RulesError(r.pos, `expected ']' in "${text}"`);
    host = host.slice(1, -1);
  }
  return { host: host === "" ? "0.0.0.0" : host, port };
}
