import zlib from "node:zlib";
import { Compression } from "../../gen/polymur/ingest/v1/ingest_pb.ts";

/** Payload compression of a proxy batch, as named on the command line. */
export type CompressionName = "zstd" | "gzip" | "none";
export const COMPRESSION_NAMES: readonly CompressionName[] = ["zstd", "gzip", "none"];

export function compressionCode(name: CompressionName): Compression {
  switch (name) {
    case "zstd":
      return Compression.ZSTD;
    case "gzip":
      return Compression.GZIP;
    case "none":
      return Compression.NONE;
  }
}

export function compressionName(code: Compression): string {
  switch (code) {
    case Compression.ZSTD:
      return "zstd";
    case Compression.GZIP:
      return "gzip";
    case Compression.NONE:
      return "none";
    default:
      return `unknown(${code})`;
  }
}

/**
 * Compresses a batch, synchronously: zstd level 3 costs about 1.3 ms per
 * 256 KiB of Graphite lines on the 2-core test machine. The asynchronous
 * zlib calls were measured slower end to end here (bench/gateway.bench.ts:
 * 484k vs 624k datapoints/s, proxy CPU 1.53 vs 1.16 s per million): each one
 * builds a zlib stream object, allocates its output and spends a third of
 * the compression time on the main thread anyway, and with two cores the
 * thread pool has no idle core to give.
 */
export function compressBatch(raw: Buffer, name: CompressionName): Buffer {
  // One output chunk for the whole batch (the default is 16 KiB chunks, each
  // a copy and a concat).
  const chunkSize = chunkFor(raw.length);
  switch (name) {
    case "zstd":
      return zlib.zstdCompressSync(raw, {
        chunkSize,
        params: {
          [zlib.constants.ZSTD_c_compressionLevel]: 3,
          [zlib.constants.ZSTD_c_contentSizeFlag]: 1,
        },
        pledgedSrcSize: raw.length,
      });
    case "gzip":
      return zlib.gzipSync(raw, { chunkSize, level: 6 });
    case "none":
      return raw;
  }
}

/** Why a payload could not be decompressed; the message goes into a Reject. */
export class BatchDecodeError extends Error {
  readonly reason: "too_large" | "corrupt" | "bad_compression";
  constructor(reason: "too_large" | "corrupt" | "bad_compression", message: string) {
    super(message);
    this.name = "BatchDecodeError";
    this.reason = reason;
  }
}

/**
 * Decompresses a payload, refusing to produce more than `maxRaw` bytes
 * (zlib's `maxOutputLength` stops a decompression bomb before it is
 * allocated, ERR_BUFFER_TOO_LARGE). Synchronous, like compressBatch, and for
 * the same reason; about 1 ms per 256 KiB batch.
 */
export function decompressBatch(
  payload: Uint8Array,
  code: Compression,
  maxRaw: number,
  /** The size the sender declared: the output buffer is sized for it (bounded by maxRaw). */
  expectRaw = 64 * 1024,
): Buffer {
  const expect = Math.min(maxRaw, Math.max(1024, expectRaw) + 64);
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  try {
    switch (code) {
      case Compression.NONE:
        if (buf.length > maxRaw)
          throw new BatchDecodeError("too_large", `payload exceeds ${maxRaw} bytes`);
        return buf;
      case Compression.ZSTD:
        return zlib.zstdDecompressSync(buf, {
          maxOutputLength: maxRaw,
          chunkSize: chunkFor(expect),
        });
      case Compression.GZIP:
        return zlib.gunzipSync(buf, { maxOutputLength: maxRaw, chunkSize: chunkFor(expect) });
      default:
        throw new BatchDecodeError("bad_compression", `unknown compression ${code}`);
    }
  } catch (err) {
    if (err instanceof BatchDecodeError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ERR_BUFFER_TOO_LARGE" || e instanceof RangeError) {
      throw new BatchDecodeError("too_large", `decompressed payload exceeds ${maxRaw} bytes`);
    }
    throw new BatchDecodeError(
      "corrupt",
      `${compressionName(code)} payload does not decompress: ${e.message}`,
    );
  }
}

function chunkFor(bytes: number): number {
  return Math.min(8 * 1024 * 1024, Math.max(64 * 1024, bytes + 64));
}

/** Newline count; a batch holds whole lines, so this is its line count. */
export function countNewlines(buf: Uint8Array): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i >= 0; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}
