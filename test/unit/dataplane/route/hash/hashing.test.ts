import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseDestinationList } from "../../../../../dataplane/forward/destination-spec.ts";
import {
  ccrCleanseTable,
  cleanseKey,
  sortedTagsKey,
} from "../../../../../dataplane/route/hash/hash-key.ts";
import {
  glibcMergeSort,
  pythonRepr,
  strtolWhole,
} from "../../../../../dataplane/route/hash/hash-ring.ts";
import {
  fnv1a32,
  fnv1a32Signed,
  fnv1a64Signed,
  fnv1aPos16,
  fnv1aPos16Signed,
  jumpBucket,
  jumpRemix,
  md5Pos16,
  md5Pos16Native,
  murmur3x86_32,
  u64,
} from "../../../../../dataplane/route/hash/hashing.ts";
import { metricNames } from "../../../../fixtures/names.ts";
import { carbonPython, ccrBinary, runCarbon, runCcr } from "../../../../fixtures/references.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";

// Skipped without the reference implementations; with CI=true, a missing one fails
// this file instead.
const withoutGraphiteCarbon = skipUnlessAvailable("graphite-carbon", carbonPython !== undefined);
const withoutCarbonCRelay = skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined);
const utf8 = new TextEncoder();
const bytes = (s: string) => utf8.encode(s);
const NAMES = metricNames(1500, 7);

describe("md5Pos16", () => {
  it("is the first two MD5 bytes, big-endian (RFC 1321 vectors)", () => {
    expect(md5Pos16(bytes(""), 0, 0)).toBe(0xd41d);
    expect(md5Pos16(bytes("abc"), 0, 3)).toBe(0x9001);
    const q = bytes("The quick brown fox jumps over the lazy dog");
    expect(md5Pos16(q, 0, q.length)).toBe(0x9e10);
  });

  it("matches node:crypto at every length across block boundaries and at any offset", () => {
    const buf = randomBytes(400);
    for (let len = 0; len <= 300; len++) {
      for (const off of [0, 1, 3, 7]) {
        const want = createHash("md5")
          .update(buf.subarray(off, off + len))
          .digest()
          .readUInt16BE(0);
        expect(md5Pos16(buf, off, off + len)).toBe(want);
      }
    }
    expect(md5Pos16Native(buf, 5, 77)).toBe(md5Pos16(buf, 5, 77));
  });
});

describe("FNV-1a", () => {
  it("32-bit vectors (carbon's fnv32a)", () => {
    expect(fnv1a32(bytes(""), 0, 0)).toBe(0x811c9dc5);
    expect(fnv1a32(bytes("a"), 0, 1)).toBe(0xe40c292c);
    expect(fnv1a32(bytes("foobar"), 0, 6)).toBe(0xbf9cf968);
  });

  it("carbon-c-relay's sign-extended variant equals it on ASCII and differs on bytes >= 0x80", () => {
    const ascii = bytes("servers.web01.cpu");
    expect(fnv1a32Signed(ascii, 0, ascii.length)).toBe(fnv1a32(ascii, 0, ascii.length));
    const u = bytes("ü");
    expect(fnv1a32Signed(u, 0, u.length)).not.toBe(fnv1a32(u, 0, u.length));
    // By hand: h ^= 0xFFFFFF00 | b for b >= 0x80.
    let h = 0x811c9dc5;
    for (const b of u) h = Math.imul(h ^ (b | 0xffffff00), 0x01000193) >>> 0;
    expect(fnv1a32Signed(u, 0, u.length)).toBe(h);
    expect(fnv1aPos16(u, 0, u.length)).toBe(
      ((fnv1a32(u, 0, 2) >>> 16) ^ (fnv1a32(u, 0, 2) & 0xffff)) >>> 0,
    );
  });

  const M = (1n << 64n) - 1n;
  const fnv64 = (b: Uint8Array) => {
    let h = 0xcbf29ce484222325n;
    for (const x of b)
      h = ((h ^ (x >= 0x80 ? BigInt(x) | 0xffffffffffffff00n : BigInt(x))) * 0x100000001b3n) & M;
    return h;
  };
  const jump = (key: bigint, n: number) => {
    let b = -1n;
    let j = 0n;
    while (j < BigInt(n)) {
      b = j;
      key = (key * 2862933555777941757n + 1n) & M;
      j = BigInt(Math.trunc(Number(b + 1n) * (2147483648 / (Number(key >> 33n) + 1))));
    }
    return Number(b);
  };
  const remix = (h: bigint) => {
    h ^= h >> 12n;
    h = (h ^ (h << 25n)) & M;
    h ^= h >> 27n;
    return (h * 2685821657736338717n) & M;
  };

  it("64-bit FNV, jump and the xorshift re-mix agree with a BigInt transcription of carbon-c-relay's C", () => {
    for (let i = 0; i < 3000; i++) {
      const b = randomBytes(i % 200);
      fnv1a64Signed(b, 0, b.length);
      const hi = u64[0]!;
      const lo = u64[1]!;
      const h = (BigInt(hi) << 32n) | BigInt(lo);
      expect(h).toBe(fnv64(b));
      const n = 1 + (i % 64);
      expect(jumpBucket(hi, lo, n)).toBe(jump(h, n));
      jumpRemix(hi, lo);
      expect((BigInt(u64[0]!) << 32n) | BigInt(u64[1]!)).toBe(remix(h));
    }
  });
});

describe("murmur3x86_32", () => {
  it("published MurmurHash3_x86_32 vectors, as mmh3.hash returns them (signed)", () => {
    const v = (s: string, seed = 0) => murmur3x86_32(bytes(s), 0, bytes(s).length, seed);
    expect(v("")).toBe(0);
    expect(v("", 1)).toBe(0x514e28b7);
    expect(v("", 0xffffffff)).toBe(0x81f16f39 | 0);
    expect(v("foo")).toBe(-156908512);
    expect(v("Hello, world!", 1234)).toBe(0xfaf6cdb3 | 0);
    expect(v("The quick brown fox jumps over the lazy dog")).toBe(0x2e4ff723);
    expect(v("aaaa", 0x9747b28c)).toBe(0x5a97808a);
    expect(v("abc", 0x9747b28c)).toBe(0xc84a62dd | 0);
  });
});

describe.skipIf(withoutGraphiteCarbon)(
  "against graphite-carbon's carbon.hashing.carbonHash",
  () => {
    it("carbon_ch, fnv1a_ch and mmh3_ch give carbon's value for every name", () => {
      const out = runCarbon({ names: NAMES, hashTypes: ["carbon_ch", "fnv1a_ch", "mmh3_ch"] });
      const got = { carbon_ch: [] as number[], fnv1a_ch: [] as number[], mmh3_ch: [] as number[] };
      for (const n of NAMES) {
        const b = bytes(n);
        got.carbon_ch.push(md5Pos16(b, 0, b.length));
        got.fnv1a_ch.push(fnv1aPos16(b, 0, b.length));
        got.mmh3_ch.push(murmur3x86_32(b, 0, b.length));
      }
      expect(got.carbon_ch).toEqual(out.hashes["carbon_ch"]);
      expect(got.fnv1a_ch).toEqual(out.hashes["fnv1a_ch"]);
      expect(got.mmh3_ch).toEqual(out.hashes["mmh3_ch"]);
    });

    it("pythonRepr writes carbon's node tuples as Python's str() does", () => {
      const strings = [
        "plain",
        "it's",
        'say "hi"',
        `both ' and "`,
        "back\\slash",
        "tab\there",
        "nl\nx",
        "\u0001",
        "\u007f",
        "ü",
        "日本",
        "🎉",
        "\u00ad",
        "\u200b",
        "\u2028",
        "\u00a0",
        "\ud83d\ude80",
        "\ue000",
        "a b",
      ];
      const out = runCarbon({ names: strings, repr: true });
      expect(strings.map((s) => `(${pythonRepr(s)}, None)`)).toEqual(out.repr);
    });

    it("sortedTagsKey is TaggedSeries.parse(name).path (TAG_RELAY_NORMALIZED), unchanged where carbon raises", () => {
      const names = [
        ...NAMES.filter((n) => n.includes(";") || n.includes("{")),
        "a;z=1;b=2",
        "a;b=2;b=1",
        "~x;b=1;a=2",
        "~~x",
        "~",
        "x;",
        "x;=1",
        "x;a",
        "x;a!b=1",
        "x;a^b=1",
        "x;a=~v",
        "x;a=",
        "x;name=y;a=1",
        "x;a=1=2;b=3",
        "x;a.b=1;a=2",
        "x;ü=1;z=2",
        "x;b=ü;a=é",
        'm{b="2",a="1"}',
        'm{a="x\\"y"}',
        'm{a="1",}',
        'm{a="1"',
        '{a="1"}',
        'm{a="~1"}',
        'a{b="1"}{c="2"}',
        'm{a="1":,b="2"}',
        "plain",
        "~plain",
      ];
      const out = runCarbon({ names, tagPaths: true });
      const scratch = new Uint8Array(1 << 16);
      const got = names.map((n) => {
        const b = bytes(n);
        const len = sortedTagsKey(b, 0, b.length, scratch);
        return len < 0 ? n : new TextDecoder().decode(scratch.subarray(0, len));
      });
      expect(got).toEqual(out.tag_paths!.map((p, i) => p ?? names[i]));
    });
  },
);

describe.skipIf(withoutCarbonCRelay)("against carbon-c-relay's hash_pos (-t -d)", () => {
  it("carbon_ch and fnv1a_ch ring positions (sign-extended FNV) for every name", () => {
    const members = parseDestinationList("10.0.0.1:2003 10.0.0.2:2003");
    const r = runCcr(
      [
        { members, algo: "carbon_ch", replication: 1 },
        { members, algo: "fnv1a_ch", replication: 1 },
      ],
      NAMES,
      { debug: true },
    );
    expect(r.routes).toHaveLength(NAMES.length);
    NAMES.forEach((n, i) => {
      const b = bytes(n);
      expect(r.routes[i]![0]!.key).toBe(n);
      expect(r.routes[i]![0]!.hashPos).toBe(md5Pos16(b, 0, b.length));
      expect(r.routes[i]![1]!.hashPos).toBe(fnv1aPos16Signed(b, 0, b.length));
    });
  });

  it("jump_fnv1a_ch buckets for 1 to 64 members", () => {
    const sizes = [1, 2, 3, 7, 12, 33, 64];
    const clusters = sizes.map((n) => ({
      members: parseDestinationList(
        Array.from({ length: n }, (_, i) => `10.9.${i >> 8}.${i & 255}:2003`).join(" "),
      ),
      algo: "jump_fnv1a_ch" as const,
      replication: 1,
    }));
    const names = NAMES.slice(0, 600);
    const r = runCcr(clusters, names, { debug: true });
    names.forEach((n, i) => {
      const b = bytes(n);
      fnv1a64Signed(b, 0, b.length);
      const hi = u64[0]!;
      const lo = u64[1]!;
      sizes.forEach((size, c) => {
        expect(r.routes[i]![c]!.hashPos).toBe(jumpBucket(hi, lo, size));
      });
    });
  });
});

describe("cleanseKey (carbon-c-relay's live-relay key)", () => {
  const cleanse = (s: string, table = ccrCleanseTable()) => {
    const b = bytes(s);
    const out = new Uint8Array(b.length + 1);
    return new TextDecoder().decode(out.subarray(0, cleanseKey(b, 0, b.length, out, table)));
  };
  it("follows dispatch_received_metrics", () => {
    expect(cleanse("a.b.c")).toBe("a.b.c");
    expect(cleanse("..a...b..")).toBe("a.b");
    expect(cleanse("a/b@c")).toBe("a_b_c");
    expect(cleanse("ü.x")).toBe("__.x"); // one _ per byte
    expect(cleanse("a-b_c:d#e")).toBe("a-b_c:d#e");
    expect(cleanse("cpu;host=a;dc=x")).toBe("cpu");
    expect(cleanse("cpu.;host=a")).toBe("cpu."); // a dot right before ';' stays, as in the C loop
    expect(cleanse(";a=b")).toBe("");
    expect(cleanse("a\tb")).toBe("a");
    expect(cleanse("....")).toBe("");
    // With ';' among the allowed characters carbon-c-relay has no tag support.
    expect(cleanse("a;b=c", ccrCleanseTable("-_:#;="))).toBe("a;b=c");
    expect(cleanse("a;b=c", ccrCleanseTable("-_:#;"))).toBe("a;b_c");
    expect(cleanse("  a b")).toBe("a");
  });
});

describe("ring helpers", () => {
  it("strtolWhole is strtol(s, &end, 10) with *end == 0", () => {
    expect(strtolWhole("12")).toBe(12n);
    expect(strtolWhole("-3")).toBe(-3n);
    expect(strtolWhole("+7")).toBe(7n);
    expect(strtolWhole(" 5")).toBe(5n);
    expect(strtolWhole("")).toBe(0n);
    expect(strtolWhole("1a")).toBeUndefined();
    expect(strtolWhole("0x10")).toBeUndefined();
    expect(strtolWhole("99999999999999999999")).toBe((1n << 63n) - 1n);
  });

  it("glibcMergeSort is a stable top-down merge sort", () => {
    const items = Array.from({ length: 200 }, (_, i) => ({ k: (i * 37) % 10, i }));
    const sorted = glibcMergeSort([...items], (a, b) => a.k - b.k);
    expect(sorted).toEqual([...items].sort((a, b) => a.k - b.k || a.i - b.i));
  });
});
