import { gzipSync, zstdCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  BatchDecodeError,
  compressBatch,
  decompressBatch,
} from "../../../../dataplane/link/batch-codec.ts";
import { Compression } from "../../../../gen/polymur/ingest/v1/ingest_pb.ts";

function reason(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (err instanceof BatchDecodeError) return err.reason;
    throw err;
  }
  return "no error";
}

const text = Buffer.from("a.b.c 1 1700000000\n".repeat(1000));

describe("batch codec", () => {
  it.each([
    ["zstd", Compression.ZSTD],
    ["gzip", Compression.GZIP],
    ["none", Compression.NONE],
  ] as const)("round-trips %s", (name, code) => {
    const c = compressBatch(text, name);
    if (name !== "none") expect(c.length).toBeLessThan(text.length / 10);
    expect(decompressBatch(c, code, 1 << 20, text.length)).toEqual(text);
  });

  it("stops a decompression bomb at the limit, before allocating it", () => {
    const bomb = zstdCompressSync(Buffer.alloc(256 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(64 * 1024);
    expect(reason(() => decompressBatch(bomb, Compression.ZSTD, 1 << 20, 100))).toBe("too_large");
    const gbomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    expect(reason(() => decompressBatch(gbomb, Compression.GZIP, 1 << 20))).toBe("too_large");
  });

  it("says corrupt for garbage and bad_compression for unknown codes", () => {
    const garbage = Buffer.from("nope");
    expect(reason(() => decompressBatch(garbage, Compression.ZSTD, 1 << 20))).toBe("corrupt");
    const truncated = gzipSync(text).subarray(0, 50);
    expect(reason(() => decompressBatch(truncated, Compression.GZIP, 1 << 20))).toBe("corrupt");
    expect(reason(() => decompressBatch(text, 42 as Compression, 1 << 20))).toBe("bad_compression");
  });
});
