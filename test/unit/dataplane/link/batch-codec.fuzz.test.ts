/**
 * Property runs of the batch codec (bounded: a few seconds in all). The gateway
 * feeds decompressBatch bytes from the network, so the properties that matter
 * are: what the proxy compresses comes back whole; whatever arrives, the
 * result is a buffer no larger than the limit or a BatchDecodeError (the
 * intake turns that into a counted Reject), never another exception.
 */
import { gzipSync, zstdCompressSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  BatchDecodeError,
  COMPRESSION_NAMES,
  compressBatch,
  compressionCode,
  countNewlines,
  decompressBatch,
} from "../../../../dataplane/link/batch-codec.ts";
import { Compression } from "../../../../gen/polymur/ingest/v1/ingest_pb.ts";

const RUNS = { numRuns: 150 } as const;
const REASONS = ["too_large", "corrupt", "bad_compression"];

/** Batch-like text (lines, many repeats: compressible) or arbitrary bytes. */
const payloadBytes = fc.oneof(
  fc.uint8Array({ maxLength: 4096 }).map((u) => Buffer.from(u)),
  fc
    .array(fc.constantFrom("a.b.c 1 1700000000\n", "x.y 2.5 1700000001\n", "\n", "\r\0\xff"), {
      maxLength: 300,
    })
    .map((parts) => Buffer.from(parts.join(""), "latin1")),
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 200_000 }))
    .map(([byte, n]) => Buffer.alloc(n, byte)),
);

/** What the sender declares as the raw size: any proto uint32. */
const declared = fc.integer({ min: 0, max: 2 ** 32 - 1 });

/** Decompresses, and says what came out: the buffer, or the BatchDecodeError's reason. */
function attempt(
  payload: Uint8Array,
  code: Compression,
  maxRaw: number,
  expectRaw?: number,
): { out: Buffer } | { reason: string } {
  try {
    return { out: decompressBatch(payload, code, maxRaw, expectRaw) };
  } catch (err) {
    // Anything but a BatchDecodeError would escape the intake's catch: fail here.
    if (!(err instanceof BatchDecodeError)) throw err;
    expect(REASONS).toContain(err.reason);
    return { reason: err.reason };
  }
}

describe("batch codec (property runs)", () => {
  it("round-trips every compression, whatever size the sender declares", () => {
    fc.assert(
      fc.property(
        payloadBytes,
        fc.constantFrom(...COMPRESSION_NAMES),
        fc.nat(4096),
        fc.option(declared, { nil: undefined }),
        (raw, name, slack, expectRaw) => {
          const packed = compressBatch(raw, name);
          const got = attempt(packed, compressionCode(name), raw.length + 1 + slack, expectRaw);
          expect(got).toEqual({ out: raw });
        },
      ),
      RUNS,
    );
  });

  it("takes a batch of exactly the limit and refuses one byte more as too_large", () => {
    fc.assert(
      fc.property(
        payloadBytes.filter((b) => b.length >= 1),
        fc.constantFrom(...COMPRESSION_NAMES),
        fc.nat(),
        (raw, name, cut) => {
          const packed = compressBatch(raw, name);
          const code = compressionCode(name);
          expect(attempt(packed, code, raw.length, raw.length)).toEqual({ out: raw });
          const below = 1 + (cut % raw.length); // 1 ≤ below ≤ raw.length
          if (below < raw.length) {
            expect(attempt(packed, code, below, raw.length)).toEqual({ reason: "too_large" });
          }
        },
      ),
      RUNS,
    );
  });

  it("on arbitrary or damaged payloads returns at most maxRaw bytes or throws BatchDecodeError", () => {
    const code = fc.oneof(
      fc.constantFrom(Compression.ZSTD, Compression.GZIP, Compression.NONE),
      fc.integer({ min: -5, max: 10 }).map((n) => n as Compression),
    );
    // Valid frames, then damaged: bytes overwritten, cut short, extended, or doubled.
    const damaged = fc
      .tuple(
        payloadBytes,
        fc.constantFrom<(b: Buffer) => Buffer>(
          (b) => zstdCompressSync(b),
          (b) => gzipSync(b),
          (b) => b,
        ),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.uint8Array({ maxLength: 32 }),
        fc.boolean(),
      )
      .map(([raw, pack, edits, cut, tail, twice]) => {
        let b = Buffer.from(pack(raw));
        for (const [at, byte] of edits) if (b.length > 0) b[at % b.length] = byte;
        if (cut !== undefined && b.length > 0) b = b.subarray(0, cut % b.length);
        if (twice) b = Buffer.concat([b, b]);
        return Buffer.concat([b, tail]);
      });
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 2048 }), damaged),
        code,
        fc.integer({ min: 1, max: 1 << 20 }),
        fc.option(declared, { nil: undefined }),
        (payload, c, maxRaw, expectRaw) => {
          const got = attempt(payload, c, maxRaw, expectRaw);
          if ("out" in got) expect(got.out.length).toBeLessThanOrEqual(maxRaw);
        },
      ),
      RUNS,
    );
  });

  it("counts newlines as a naive loop does", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 2048 }),
          fc
            .array(fc.constantFrom(0x0a, 0x0d, 0x00, 0x41), { maxLength: 512 })
            .map((a) => Uint8Array.from(a)),
        ),
        (bytes) => {
          let naive = 0;
          for (const byte of bytes) if (byte === 0x0a) naive++;
          expect(countNewlines(bytes)).toBe(naive);
        },
      ),
      { numRuns: 300 },
    );
  });
});
