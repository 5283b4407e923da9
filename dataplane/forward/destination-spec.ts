import { isIP } from "node:net";
import { ErrorCode, PolymurError } from "../../common/errors.ts";

/**
 * A downstream destination as the operator wrote it.
 *
 * Accepted forms (carbon, the Go polymur and carbon-c-relay between them):
 *   host:port            10.0.5.30:2003
 *   host:port:instance   10.0.5.30:2003:a        (carbon DESTINATIONS, Go polymur)
 *   host:port=instance   10.0.5.30:2003=a        (carbon-c-relay)
 *   [v6]:port[:inst]     [::1]:2003:a, [::1]:2003=a
 * and each of them after a scheme that says how it is reached:
 *   (none)          plaintext lines over TCP
 *   tls://          plaintext lines over TLS (carbon-c-relay's `transport plain ssl`)
 *   pickle://       carbon's pickle protocol over TCP (a carbon-cache's pickle receiver)
 *   pickle+tls://   carbon's pickle protocol over TLS
 */
export interface DestinationSpec {
  /** Host name or IP address (IPv6 without brackets). */
  readonly host: string;
  readonly port: number;
  /** Instance name, or undefined when none was given. */
  readonly instance: string | undefined;
  /**
   * What is sent: Graphite plaintext lines (the default), or carbon's pickle
   * protocol (`pickle://`). Not part of hashing: a ring keys members by
   * host, port and instance, whichever protocol reaches them.
   */
  readonly protocol: DestinationProtocol;
  /** Over TLS (`tls://`, `pickle+tls://`). Not part of hashing either. */
  readonly tls: boolean;
  /** The spec exactly as written (trimmed); used for display and `polymurctl hash` output. */
  readonly spec: string;
  /**
   * Canonical identity `host:port` (IPv6 bracketed), plus `:instance` when present,
   * after the scheme (lower case) when there is one. Two specs naming the same
   * destination have the same id, whichever form they used; a plaintext and a
   * pickle (or TLS) destination to one address are two destinations.
   */
  readonly id: string;
}

/** How a destination is fed: plaintext lines, or carbon's pickle protocol. */
export type DestinationProtocol = "plaintext" | "pickle";

/** The schemes a destination may be written after, and what each means. */
const SCHEMES: Readonly<Record<string, { protocol: DestinationProtocol; tls: boolean }>> = {
  "tls://": { protocol: "plaintext", tls: true },
  "pickle://": { protocol: "pickle", tls: false },
  "pickle+tls://": { protocol: "pickle", tls: true },
};

/** The schemes as an operator may write them, for messages. */
const SCHEME_LIST = Object.keys(SCHEMES).join(", ");

export function parseDestination(input: string): DestinationSpec {
  const spec = input.trim();
  const fail = (why: string): never => {
    throw new PolymurError(
      ErrorCode.DestinationSpec,
      `invalid destination "${input}": ${why} (expected host:port, host:port:instance or host:port=instance, optionally after ${SCHEME_LIST})`,
    );
  };
  if (spec === "") fail("empty");
  let address = spec;
  let protocol: DestinationProtocol = "plaintext";
  let tls = false;
  let scheme = "";
  const written = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(spec);
  if (written !== null) {
    scheme = written[0].toLowerCase();
    const known = SCHEMES[scheme];
    if (known === undefined) fail(`unknown scheme "${written[0]}" (known: ${SCHEME_LIST})`);
    ({ protocol, tls } = known!);
    address = spec.slice(scheme.length);
    if (address === "") fail(`nothing after ${written[0]}`);
  }
  let host: string;
  let rest: string;
  if (address.startsWith("[")) {
    const close = address.indexOf("]");
    if (close < 0) fail("unclosed [ in IPv6 address");
    host = address.slice(1, close);
    if (isIP(host) !== 6) fail(`"${host}" is not an IPv6 address`);
    rest = address.slice(close + 1);
    if (!rest.startsWith(":")) fail("missing :port after ]");
    rest = rest.slice(1);
  } else {
    const colon = address.indexOf(":");
    if (colon < 0) fail("missing :port");
    host = address.slice(0, colon);
    rest = address.slice(colon + 1);
  }
  if (host === "") fail("empty host");
  if (/\s/.test(host)) fail("whitespace in host");

  let portText = rest;
  let instance: string | undefined;
  const eq = rest.indexOf("=");
  const colon = rest.indexOf(":");
  if (eq >= 0 && (colon < 0 || eq < colon)) {
    portText = rest.slice(0, eq);
    instance = rest.slice(eq + 1);
  } else if (colon >= 0) {
    portText = rest.slice(0, colon);
    instance = rest.slice(colon + 1);
  }
  if (!/^[0-9]{1,5}$/.test(portText)) fail(`port "${portText}" is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) fail(`port ${port} is out of range 1-65535`);
  if (instance !== undefined) {
    if (instance === "") fail("empty instance name");
    if (/[\s,]/.test(instance)) fail(`instance "${instance}" contains whitespace or a comma`);
  }
  const hostPart = host.includes(":") ? `[${host}]` : host;
  const plain = instance === undefined ? `${hostPart}:${port}` : `${hostPart}:${port}:${instance}`;
  return { host, port, instance, protocol, tls, spec, id: `${scheme}${plain}` };
}

/** Parses a comma- or whitespace-separated list, rejecting duplicates (same id). */
export function parseDestinationList(list: string): DestinationSpec[] {
  const out: DestinationSpec[] = [];
  const seen = new Set<string>();
  for (const part of list.split(/[\s,]+/)) {
    if (part === "") continue;
    const d = parseDestination(part);
    if (seen.has(d.id)) {
      throw new PolymurError(ErrorCode.DestinationSpec, `duplicate destination "${d.spec}"`);
    }
    seen.add(d.id);
    out.push(d);
  }
  return out;
}
