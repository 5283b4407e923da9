import net from "node:net";

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/**
 * Whether `host` is a loopback IP address: 127.0.0.0/8, ::1 (any spelling),
 * or an IPv4-mapped 127.x. A host name is not an address, so never loopback
 * here, "127.example.com" included.
 */
export function isLoopbackAddress(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const family = net.isIP(h);
  if (family === 0) return false;
  try {
    return LOOPBACK.check(h, family === 4 ? "ipv4" : "ipv6");
  } catch {
    // An address BlockList cannot take (an IPv6 zone index): not loopback.
    return false;
  }
}

/**
 * A host that is loopback: a loopback IP, or "localhost" (whoever binds it
 * checks the address it gets: see the line API).
 */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || isLoopbackAddress(host);
}
