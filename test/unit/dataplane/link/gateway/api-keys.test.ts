import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ApiKeyRing, parseKeysFile } from "../../../../../dataplane/link/gateway/api-keys.ts";

const hex = (s: string): string => createHash("sha256").update(s).digest("hex");

describe("keys file", () => {
  it("reads `name secret` and `name sha256:<hex>`, with comments; keeps only digests", () => {
    const keys = parseKeysFile(
      `# tenants\nproduct-A  secret-one   # inline comment\n\nteam.b sha256:${hex("secret-two")}\n`,
      "keys",
    );
    expect(keys.map((k) => [k.name, k.digest.toString("hex")])).toEqual([
      ["product-A", hex("secret-one")],
      ["team.b", hex("secret-two")],
    ]);
    expect(JSON.stringify(keys)).not.toContain("secret-one");
  });

  it.each([
    ["onlyname\n", /keys:1: expected/],
    ["a b c\n", /keys:1: expected/],
    ["bad/name secret\n", /key name "bad\/name"/],
    ["a sha256:abc\n", /keys:1: digest/],
  ])("refuses %j", (text, err) => {
    expect(() => parseKeysFile(text, "keys")).toThrow(err);
  });
});

describe("ApiKeyRing", () => {
  it("authenticates by digest and reports removed keys", () => {
    const ring = new ApiKeyRing();
    ring.replace(parseKeysFile("a secret-a\nb secret-b\n", "k"));
    expect(ring.authenticate("secret-b")?.name).toBe("b");
    expect(ring.authenticate("secret-c")).toBeNull();
    expect(ring.authenticate("")).toBeNull();
    const removed: string[][] = [];
    ring.on("changed", (r: Set<string>) => removed.push([...r].map((x) => x.split("\0")[0]!)));
    ring.replace(parseKeysFile("a secret-a\nb rotated-b\n", "k"));
    expect(removed).toEqual([["b"]]);
    expect(ring.authenticate("secret-b")).toBeNull();
    expect(ring.authenticate("rotated-b")?.name).toBe("b");
  });
});
