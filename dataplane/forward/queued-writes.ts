import type { ByteQueue } from "./byte-queue.ts";
import type { Write } from "./resend-window.ts";

/**
 * The next write of about `maxBytes` taken from the front of `queue` (it
 * must not be empty): its chunks joined into one buffer.
 */
export function takeWrite(queue: ByteQueue, maxBytes: number): Write {
  const write: Write = { chunks: [], lines: [], bytes: 0, count: 0 };
  write.count = queue.shiftInto(write.chunks, write.lines, maxBytes);
  for (const c of write.chunks) write.bytes += c.length;
  if (write.chunks.length > 1) {
    // One copy into one buffer beats a write per chunk: each socket.write
    // costs a trip through the stream machinery, and the chunks (views of
    // read buffers, often small) would pin their parents while queued.
    write.chunks = [Buffer.concat(write.chunks, write.bytes)];
    write.lines = [write.count];
  }
  return write;
}

/** Puts `writes` back at the front of `queue`, in their order, to be written again. */
export function putBack(queue: ByteQueue, writes: readonly Write[]): void {
  if (writes.length === 0) return;
  const chunks: Buffer[] = [];
  const lines: number[] = [];
  for (const w of writes) {
    chunks.push(...w.chunks);
    lines.push(...w.lines);
  }
  queue.unshiftAll(chunks, lines);
}
