import { gzipSync, zstdCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { compressBatch, decompressBatch } from "../../dataplane/batch-codec.ts";
import { Compression } from "../../gen/polymur/ingest/v1/ingest_pb.ts";

const text = Buffer.from("a.b.c 1 1700000000\n".repeat(1000));

describe("batch codec", () => {
  it.each([
    ["zstd", Compression.ZSTD],
    ["gzip", Compression.GZIP],
    ["none", Compression.NONE],
  ] as const)("round-trips %s", async (name, code) => {
    const c = await compressBatch(text, name);
    if (name !== "none") expect(c.length).toBeLessThan(text.length / 10);
    expect(await decompressBatch(c, code, 1 << 20)).toEqual(text);
  });

  it("stops a decompression bomb at the limit, before allocating it", async () => {
    const bomb = zstdCompressSync(Buffer.alloc(256 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(64 * 1024);
    await expect(decompressBatch(bomb, Compression.ZSTD, 1 << 20)).rejects.toMatchObject({
      reason: "too_large",
    });
    const gbomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    await expect(decompressBatch(gbomb, Compression.GZIP, 1 << 20)).rejects.toMatchObject({
      reason: "too_large",
    });
  });

  it("says corrupt for garbage and bad_compression for unknown codes", async () => {
    await expect(
      decompressBatch(Buffer.from("nope"), Compression.ZSTD, 1 << 20),
    ).rejects.toMatchObject({
      reason: "corrupt",
    });
    const truncated = gzipSync(text).subarray(0, 50);
    await expect(decompressBatch(truncated, Compression.GZIP, 1 << 20)).rejects.toMatchObject({
      reason: "corrupt",
    });
    await expect(decompressBatch(text, 42 as Compression, 1 << 20)).rejects.toMatchObject({
      reason: "bad_compression",
    });
  });
});
