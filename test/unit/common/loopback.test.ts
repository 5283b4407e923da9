import { describe, expect, it } from "vitest";
import { isLoopbackAddress, isLoopbackHost } from "../../../common/loopback.ts";

describe("isLoopbackAddress", () => {
  it.each([
    ["127.0.0.1", true],
    ["127.255.255.254", true],
    ["127.1.2.3", true],
    ["::1", true],
    ["[::1]", true],
    ["0:0:0:0:0:0:0:1", true],
    ["::ffff:127.0.0.1", true],
    ["127.example.com", false],
    ["127.", false],
    ["127.1", false],
    ["localhost", false],
    ["128.0.0.1", false],
    ["126.255.255.255", false],
    ["0.0.0.0", false],
    ["::", false],
    ["::ffff:10.0.0.1", false],
    ["10.0.0.1", false],
    ["fe80::1%lo", false],
    ["", false],
  ])("isLoopbackAddress(%j) is %s", (host, want) => {
    expect(isLoopbackAddress(host)).toBe(want);
  });
});

describe("isLoopbackHost", () => {
  it("takes localhost and loopback addresses, nothing else", () => {
    expect(isLoopbackHost("localhost")).toBe(true);
    expect(isLoopbackHost("127.0.0.1")).toBe(true);
    expect(isLoopbackHost("127.evil.example")).toBe(false);
    expect(isLoopbackHost("0.0.0.0")).toBe(false);
  });
});
