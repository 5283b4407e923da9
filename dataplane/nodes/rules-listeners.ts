import { type Receptor, type RulesConfig, RulesError } from "../route/rules/rules-config.ts";

type Address = { host: string; port: number };

/** carbon-c-relay's default port, for a receptor written without one. */
const GRAPHITE_PORT = 2003;

/**
 * The addresses a relay.conf's `listen` blocks ask for, or null when it has
 * none (the relay's flags decide). polymur listens on one TCP and one UDP
 * address: a second of either, or a unix socket, is refused at its position
 * rather than silently not opened.
 */
export function rulesListeners(
  rules: RulesConfig,
): { listen: Address; udp: Address | null } | null {
  let listen: Address | null = null;
  let udp: Address | null = null;
  let first: Receptor | null = null;
  for (const block of rules.listen) {
    for (const r of block.receptors) {
      first ??= r;
      if (r.proto === "unix") {
        throw new RulesError(
          r.pos,
          `unix socket receptor "${r.address}": not supported by polymur yet`,
        );
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
  return { listen, udp };
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
