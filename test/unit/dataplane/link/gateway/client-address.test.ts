import { describe, expect, it } from "vitest";
import { TrustedProxies } from "../../../../../dataplane/link/gateway/client-address.ts";

describe("client address from X-Forwarded-For", () => {
  const t = new TrustedProxies("127.0.0.1, 10.0.0.0/8, fd00::/8");

  it("believes X-Forwarded-For only from trusted peers, read from the right", () => {
    expect(t.client("10.1.1.1", "203.0.113.9")).toBe("203.0.113.9");
    expect(t.client("::ffff:127.0.0.1", "203.0.113.9, 10.2.2.2")).toBe("203.0.113.9");
    // A client that writes its own X-Forwarded-For cannot hide behind it.
    expect(t.client("10.1.1.1", "1.2.3.4, 198.51.100.7, 10.2.2.2")).toBe("198.51.100.7");
    expect(t.client("192.0.2.1", "203.0.113.9")).toBe("192.0.2.1");
    expect(t.client("10.1.1.1", undefined)).toBe("10.1.1.1");
    expect(t.client("10.1.1.1", "[2001:db8::1]:443")).toBe("2001:db8::1");
    expect(t.client("10.1.1.1", "garbage")).toBe("10.1.1.1");
    expect(t.client("10.1.1.1", "10.3.3.3")).toBe("10.3.3.3"); // all trusted: the first
  });

  it("without --trusted-proxies, the peer", () => {
    expect(new TrustedProxies("").client("10.1.1.1", "203.0.113.9")).toBe("10.1.1.1");
  });

  it("refuses what is not an address", () => {
    expect(() => new TrustedProxies("lb.example.com")).toThrow(/not an IP address/);
  });
});
