/**
 * Addresses in relay.conf as carbon-c-relay 3.7.3 reads them
 * (router.c `router_validate_address`), and what tells two of them apart.
 */

/** carbon-c-relay's default port (GRAPHITE_PORT). */
export const GRAPHITE_PORT = 2003;

/** A `host[:port]` split the way carbon-c-relay splits it. */
export interface HostPort {
  /** The host without brackets; null for `:port` (every interface). */
  readonly host: string | null;
  readonly port: number;
}

/**
 * Splits `host[:port]`: the port follows the last `:` (unless the text ends
 * with `]`), `strtol`-style (leading white space and a sign allowed, nothing
 * after the digits) and 1-65535; a host in brackets (`[::1]:2003`, `[::1]`)
 * loses them. So `::1:2003` is `::1` port 2003, and `::1` is the host `:`
 * port 1 (the manual: write IPv6 addresses with a port or in brackets).
 * Returns a message on error.
 */
export function splitHostPort(text: string): HostPort | string {
  let lastColon = text.lastIndexOf(":");
  if (text.endsWith("]")) lastColon = -1;
  let port = GRAPHITE_PORT;
  let host = text;
  if (lastColon >= 0) {
    const portText = text.slice(lastColon + 1);
    const m = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)$/.exec(portText);
    const value = m === null ? Number.NaN : Number(m[1] === "-" ? `-${m[2]}` : m[2]);
    if (!(value >= 1 && value <= 65535)) return `invalid port number '${portText}'`;
    port = value;
    host = text.slice(0, lastColon);
  }
  if (host.startsWith("[")) {
    if (!host.endsWith("]")) return "expected ']'";
    host = host.slice(1, -1);
  }
  return { host: lastColon === 0 ? null : host, port };
}

/**
 * A numeric address as getaddrinfo(AI_NUMERICHOST) reads it: IPv4 in any
 * inet_aton form (`127.1`, `0x7f.0.0.1`, `0177.0.0.1`), or IPv6 (with an
 * optional `%scope`), as `4:` / `6:` and its bytes in hex; null for a host name.
 */
export function numericAddress(host: string): string | null {
  const v4 = inetAton(host);
  if (v4 !== null) return `4:${v4.toString(16).padStart(8, "0")}`;
  const v6 = inet6(host.replace(/%[^%]+$/, ""));
  return v6 === null ? null : `6:${v6}`;
}

/** inet_aton, exact (nothing may follow): 1 to 4 parts in decimal, octal (0) or hex (0x). */
function inetAton(s: string): number | null {
  const parts = s.split(".");
  if (parts.length > 4) return null;
  const values: number[] = [];
  for (const p of parts) {
    let v: number;
    if (/^0[xX][0-9a-fA-F]*$/.test(p)) v = p.length === 2 ? 0 : Number.parseInt(p.slice(2), 16);
    else if (/^0[0-7]*$/.test(p)) v = Number.parseInt(p, 8);
    else if (/^[1-9][0-9]*$/.test(p)) v = Number(p);
    else return null;
    values.push(v);
  }
  const last = values.pop()!;
  for (const v of values) if (v > 255) return null;
  if (last >= 2 ** (8 * (4 - values.length))) return null;
  let addr = 0;
  for (const v of values) addr = addr * 256 + v;
  return addr * 2 ** (8 * (4 - values.length)) + last;
}

/** inet_pton(AF_INET6): the 16 bytes in hex, or null. */
function inet6(s: string): string | null {
  let head = s;
  let tail = "";
  const dbl = s.indexOf("::");
  if (dbl >= 0) {
    if (s.indexOf("::", dbl + 1) >= 0) return null;
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const groups = (part: string, final: boolean): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const fields = part.split(":");
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      if (final && i === fields.length - 1 && f.includes(".")) {
        const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(f);
        if (m === null) return null;
        const b = m.slice(1).map(Number);
        if (b.some((x, k) => x > 255 || (m[k + 1]!.length > 1 && m[k + 1]!.startsWith("0")))) {
          return null;
        }
        out.push(b[0]! * 256 + b[1]!, b[2]! * 256 + b[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(f)) return null;
        out.push(Number.parseInt(f, 16));
      }
    }
    return out;
  };
  const h = groups(head, dbl < 0);
  const t = groups(tail, true);
  if (h === null || t === null) return null;
  const n = h.length + t.length;
  if (dbl >= 0 ? n > 7 : n !== 8) return null;
  const all = [...h, ...new Array<number>(8 - n).fill(0), ...t];
  return all.map((g) => g.toString(16).padStart(4, "0")).join("");
}
