import net from "node:net";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";

/**
 * The addresses whose X-Forwarded-For a gateway believes: load balancers and
 * TLS terminators in front of it (`--trusted-proxies 10.0.0.0/8,192.0.2.7`).
 */
export class TrustedProxies {
  readonly #list = new net.BlockList();
  readonly empty: boolean;

  constructor(spec: string) {
    const items = spec
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    this.empty = items.length === 0;
    for (const item of items) {
      const [addr, bits] = item.split("/") as [string, string | undefined];
      const family = net.isIPv4(addr) ? "ipv4" : net.isIPv6(addr) ? "ipv6" : null;
      if (family === null || (bits !== undefined && !/^\d{1,3}$/.test(bits))) {
        throw new PolymurError(
          ErrorCode.Config,
          `--trusted-proxies: "${item}" is not an IP address or CIDR block`,
        );
      }
      if (bits === undefined) this.#list.addAddress(addr, family);
      else this.#list.addSubnet(addr, Number(bits), family);
    }
  }

  has(addr: string): boolean {
    const a = plain(addr);
    if (net.isIPv4(a)) return this.#list.check(a, "ipv4");
    if (net.isIPv6(a)) return this.#list.check(a, "ipv6");
    return false;
  }

  /**
   * The client's address: the peer itself unless the peer is trusted; then
   * X-Forwarded-For is read from the right (the hop nearest to us) past every
   * trusted address, and the first untrusted one is the client. Entries a
   * client wrote itself sit to the left of that, and are never believed.
   */
  client(peer: string, xff: string | undefined): string {
    const p = plain(peer);
    if (this.empty || xff === undefined || xff === "" || !this.has(p)) return p;
    const hops = xff
      .split(",")
      .map((s) => stripPort(s.trim()))
      .filter((s) => s !== "");
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i]!;
      if (!net.isIP(hop)) return p; // garbage: believe nothing further
      if (!this.has(hop)) return hop;
    }
    return hops[0] ?? p;
  }
}

/** `::ffff:10.1.2.3` → `10.1.2.3`. */
function plain(addr: string): string {
  return addr.startsWith("::ffff:") && net.isIPv4(addr.slice(7)) ? addr.slice(7) : addr;
}

/** `10.1.2.3:5555` / `[::1]:5555` → the address alone. */
function stripPort(s: string): string {
  const b = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (b !== null) return b[1]!;
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(s);
  return plain(v4 === null ? s : v4[1]!);
}
