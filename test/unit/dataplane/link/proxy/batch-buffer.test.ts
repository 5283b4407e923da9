import fs, { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../../../../../common/logger.ts";
import {
  BatchBuffer,
  type BatchBufferOptions,
  type BufferedBatch,
} from "../../../../../dataplane/link/proxy/batch-buffer.ts";
import { SegmentSpool } from "../../../../../dataplane/spool/segment-spool.ts";
import { captureLog } from "../../../../fixtures/capture-log.ts";

const log = createLogger({ level: "silent" });
const cleanups: Array<() => void> = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) c();
});

/** A buffer on a fresh spool that caches nothing in memory (every payload is read back). */
function spooled(over: Partial<BatchBufferOptions> = {}): {
  buffer: BatchBuffer;
  spool: SegmentSpool;
  dir: string;
  lines: ReturnType<typeof captureLog>["lines"];
} {
  const dir = mkdtempSync(path.join(tmpdir(), "polymur-buf-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const { spool } = SegmentSpool.open(dir, { log });
  cleanups.push(() => spool.close());
  const captured = captureLog();
  const buffer = new BatchBuffer({
    memoryBytes: 0,
    spool,
    spoolBytes: 64 * MiB,
    readRetryMs: 1,
    log: captured.log,
    ...over,
  });
  return { buffer, spool, dir, lines: captured.lines };
}

/** XORs a byte of a batch's payload in its spool record. */
function damage(dir: string, b: BufferedBatch): string {
  const file = path.join(dir, `seg-${String(b.loc!.segment).padStart(16, "0")}.spool`);
  const fd = openSync(file, "r+");
  const one = Buffer.alloc(1);
  readSync(fd, one, 0, 1, b.loc!.offset + 33 + 3);
  one[0] = (one[0] ?? 0) ^ 0x55;
  writeSync(fd, one, 0, 1, b.loc!.offset + 33 + 3);
  closeSync(fd);
  return file;
}

function eio(): NodeJS.ErrnoException {
  return Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" });
}

const KiB = 1024;
const MiB = 1024 * KiB;

describe("BatchBuffer", () => {
  it("hands out increasing seqs, frees on cumulative ack and on reject, resumes after a cursor", () => {
    const b = new BatchBuffer({ memoryBytes: 10 * KiB, spool: null, spoolBytes: 0, log });
    for (let i = 0; i < 5; i++) b.add(3, Buffer.alloc(100), 10, 1000);
    expect([b.size, b.pendingLines, b.nextSeq]).toEqual([5, 50, 6]);
    expect(b.after(0)?.seq).toBe(1);
    expect(b.reject(3)?.seq).toBe(3);
    expect(b.after(2)?.seq).toBe(4); // a rejected batch is skipped
    expect(b.ack(2)).toEqual({ batches: 2, lines: 20 });
    expect(b.ack(2)).toEqual({ batches: 0, lines: 0 }); // acks are idempotent
    expect(b.ack(4)).toEqual({ batches: 1, lines: 10 }); // 3 was rejected already
    expect([b.size, b.after(0)?.seq, b.stats().memoryBytes]).toEqual([1, 5, 100]);
  });

  it("is full at its bound and has space again below half", () => {
    const b = new BatchBuffer({ memoryBytes: 1 * MiB, spool: null, spoolBytes: 0, log });
    const events: string[] = [];
    b.on("full", () => events.push("full"));
    b.on("space", () => events.push("space"));
    for (let i = 0; i < 4; i++) b.add(3, Buffer.alloc(256 * KiB), 1, 1);
    expect([b.full, events]).toEqual([true, ["full"]]);
    b.ack(1);
    expect(b.full).toBe(true); // 3/4 still held
    b.ack(3);
    expect([b.full, events]).toEqual([false, ["full", "space"]]);
  });

  it("with a spool: memory is only a cache, batches beyond it are read back, the bound is on disk", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "polymur-buf-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const { spool } = SegmentSpool.open(dir, { log, segmentBytes: 256 * KiB });
    cleanups.push(() => spool.close());
    const b = new BatchBuffer({ memoryBytes: 1 * MiB, spool, spoolBytes: 4 * MiB, log });
    const payloads: Buffer[] = [];
    for (let i = 0; i < 12; i++) {
      const p = Buffer.alloc(200 * KiB, i);
      payloads.push(p);
      b.add(3, p, 1, 1);
    }
    const s = b.stats();
    expect(s.memoryBytes).toBeLessThanOrEqual(1 * MiB);
    expect(s.spoolBytes).toBeGreaterThan(12 * 200 * KiB);
    expect(b.full).toBe(false);
    for (let seq = 1; seq <= 12; seq++) {
      const batch = b.after(seq - 1)!;
      expect(await b.payload(batch)).toEqual(payloads[seq - 1]);
    }
    for (let i = 0; i < 10; i++) b.add(3, Buffer.alloc(200 * KiB), 1, 1);
    expect(b.full).toBe(true); // 22 × 200 KiB on disk > 4 MiB
    b.ack(22);
    expect([b.full, b.stats().spoolBytes]).toEqual([false, 0]);
  });

  it("a batch that cannot be read back is lost: counted, logged where it was, never acknowledged", async () => {
    const { buffer, dir, lines } = spooled();
    for (let i = 1; i <= 3; i++) buffer.add(1, Buffer.alloc(200, i), 10 * i, 400);
    const second = buffer.after(1)!;
    const file = damage(dir, second);
    expect(await buffer.payload(buffer.after(0)!)).toEqual(Buffer.alloc(200, 1));
    expect(await buffer.payload(second)).toBeNull();
    expect(second.done).toBe(true);
    expect(buffer.stats()).toMatchObject({
      batches: 2,
      lines: 40,
      lost: { spool_corrupt: 20, spool_unreadable: 0 },
      lostUncounted: { spool_corrupt: 0 },
    });
    const err = lines.find((l) => l.level === 50);
    expect(err).toMatchObject({
      reason: "spool_corrupt",
      seq: 2,
      lines: 20,
      file,
      offset: second.loc!.offset,
    });
    expect(err?.msg).toContain("its 20 datapoints are lost");
    // The gateway's cumulative ack of 3 frees 1 and 3 only: 2 was not delivered.
    expect(buffer.after(1)?.seq).toBe(3);
    expect(buffer.ack(3)).toEqual({ batches: 2, lines: 40 });
    expect(buffer.stats().lost.spool_corrupt).toBe(20);
  });

  it("retries a read that fails with an I/O error, and gives it up as spool_unreadable if it keeps failing", async () => {
    const { buffer, lines } = spooled({ readAttempts: 3 });
    buffer.add(1, Buffer.alloc(100, 1), 5, 200);
    buffer.add(1, Buffer.alloc(100, 2), 7, 200);
    const real = fs.read;
    let failures = 1;
    const spy = vi.spyOn(fs, "read").mockImplementation(((...args: unknown[]) => {
      if (failures-- > 0) {
        (args.at(-1) as (e: Error, n: number) => void)(eio(), 0);
        return;
      }
      (real as (...a: unknown[]) => void)(...args);
    }) as unknown as typeof real);
    expect(await buffer.payload(buffer.after(0)!)).toEqual(Buffer.alloc(100, 1));
    expect(buffer.stats().lost.spool_unreadable).toBe(0);
    expect(lines.filter((l) => l.msg.includes("trying again"))).toHaveLength(1);

    failures = 3;
    const second = buffer.after(1)!;
    expect(await buffer.payload(second)).toBeNull();
    expect(spy).toHaveBeenCalledTimes(2 + 3);
    expect(buffer.stats().lost).toMatchObject({ spool_unreadable: 7, spool_corrupt: 0 });
    expect(lines.find((l) => l.level === 50)).toMatchObject({ reason: "spool_unreadable", seq: 2 });
  });

  it("a batch acknowledged while it is read back is not lost", async () => {
    const { buffer, spool } = spooled();
    buffer.add(1, Buffer.alloc(100, 1), 5, 200);
    const b = buffer.after(0)!;
    const reading = buffer.payload(b);
    buffer.ack(1); // its segment goes
    expect(await reading).toBeNull();
    expect(spool.bytes).toBe(0);
    expect(buffer.stats().lost.spool_unreadable + buffer.stats().lost.spool_corrupt).toBe(0);
  });

  it("counts what spool recovery lost", () => {
    const b = new BatchBuffer({
      memoryBytes: MiB,
      spool: null,
      spoolBytes: 0,
      log,
      spoolLosses: [
        { reason: "spool_corrupt", file: "f", offset: 0, bytes: 9, seq: 4, lines: 12, detail: "" },
        {
          reason: "spool_corrupt",
          file: "f",
          offset: 9,
          bytes: 9,
          seq: null,
          lines: null,
          detail: "",
        },
        {
          reason: "spool_unreadable",
          file: "g",
          offset: 0,
          bytes: null,
          seq: null,
          lines: null,
          detail: "",
        },
      ],
    });
    expect(b.stats()).toMatchObject({
      lost: { spool_corrupt: 12, spool_unreadable: 0, exit_without_spool: 0 },
      lostUncounted: { spool_corrupt: 1, spool_unreadable: 1 },
    });
  });

  it("an append failure keeps the batch in memory and says so; at exit it is counted lost, the rest kept", async () => {
    const { buffer, spool, lines } = spooled({ memoryBytes: MiB });
    buffer.add(1, Buffer.alloc(100, 1), 5, 200);
    const append = vi.spyOn(spool, "append").mockImplementation(() => {
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    });
    buffer.add(1, Buffer.alloc(100, 2), 7, 200);
    buffer.add(1, Buffer.alloc(100, 3), 11, 200);
    append.mockRestore();
    buffer.add(1, Buffer.alloc(100, 4), 13, 200);
    expect(buffer.stats()).toMatchObject({
      spoolErrors: 2,
      unspooledBatches: 2,
      unspooledLines: 18,
      batches: 4,
    });
    expect(lines.filter((l) => l.level === 50 && l.msg.includes("append failed"))).toHaveLength(1);
    expect(lines.some((l) => l.msg.includes("appending works again after 2 failed appends"))).toBe(
      true,
    );
    // Still sendable while the proxy runs.
    expect(await buffer.payload(buffer.after(1)!)).toEqual(Buffer.alloc(100, 2));
    buffer.ack(2);
    expect(buffer.stats()).toMatchObject({ unspooledBatches: 1, unspooledLines: 11 });

    expect(buffer.abandon()).toEqual({
      kept: { batches: 1, lines: 13 },
      lost: { batches: 1, lines: 11, reason: "exit_spool_append_failed" },
    });
    expect(buffer.stats()).toMatchObject({
      batches: 1,
      lines: 13,
      unspooledBatches: 0,
      lost: { exit_spool_append_failed: 11, exit_without_spool: 0 },
    });
  });

  it("without a spool, every batch pending at exit is counted lost", () => {
    const b = new BatchBuffer({ memoryBytes: MiB, spool: null, spoolBytes: 0, log });
    for (let i = 1; i <= 3; i++) b.add(3, Buffer.alloc(10), i, 10);
    b.ack(1);
    expect(b.abandon()).toEqual({
      kept: { batches: 0, lines: 0 },
      lost: { batches: 2, lines: 5, reason: "exit_without_spool" },
    });
    expect(b.stats().lost.exit_without_spool).toBe(5);
    expect(b.size).toBe(0);
  });
});
