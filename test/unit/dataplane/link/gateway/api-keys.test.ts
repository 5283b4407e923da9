import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  ApiKeyRing,
  KeysFileError,
  NO_KEYS_LINE,
  parseKeysFile,
  readKeysText,
} from "../../../../../dataplane/link/gateway/api-keys.ts";

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

describe("keys file: whole or not", () => {
  it("says whether the last line ends with a newline, and whether no keys is meant", () => {
    expect(readKeysText("a s-a\n", "k")).toMatchObject({
      unterminated: false,
      noKeys: false,
      lines: 1,
    });
    expect(readKeysText("a s-a\nb s-b", "k")).toMatchObject({ unterminated: true, lines: 2 });
    expect(readKeysText("", "k")).toMatchObject({ keys: [], unterminated: false, lines: 0 });
    expect(readKeysText(`${NO_KEYS_LINE}\n`, "k")).toMatchObject({ keys: [], noKeys: true });
    expect(readKeysText("#Polymur:  No Keys \r\n", "k").noKeys).toBe(true);
    expect(readKeysText("# polymur: no keys at all\n", "k").noKeys).toBe(false);
  });

  it("a bad line: KeysFileError with its line; a bad last line without a newline is 'incomplete'", () => {
    const err = (text: string): KeysFileError => {
      try {
        readKeysText(text, "keys");
      } catch (e) {
        if (e instanceof KeysFileError) return e;
        throw e;
      }
      throw new Error("parsed");
    };
    expect(err("a s-a\nbad/name s\nc s-c\n")).toMatchObject({ problem: "invalid", line: 2 });
    const cut = err("a s-a\nb");
    expect(cut).toMatchObject({ problem: "incomplete", line: 2 });
    expect(cut.message).toMatch(
      /^keys:2: expected .*no newline at the end: the file may be half-written$/,
    );
  });
});

describe("ApiKeyRing.changes", () => {
  it("names the keys added, removed and rotated (a secret changed, added or dropped)", () => {
    const ring = new ApiKeyRing();
    ring.replace(parseKeysFile("a s-a\nb s-b\nc s-c\nd s-d\n", "k"));
    const next = parseKeysFile("b s-b\nc other\nd s-d\nd s-d2\ne s-e\n", "k");
    expect(ring.changes(next)).toEqual({ added: ["e"], removed: ["a"], rotated: ["c", "d"] });
    expect(ring.changes(parseKeysFile("d s-d\nc s-c\nb s-b\na s-a\n", "k"))).toEqual({
      added: [],
      removed: [],
      rotated: [],
    });
  });
});
