import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../../../common/logger.ts";
import { BatchBuffer } from "../../../../../dataplane/link/proxy/batch-buffer.ts";
import { BatchSpool } from "../../../../../dataplane/link/proxy/batch-spool.ts";

const log = createLogger({ level: "silent" });
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

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
    const { spool } = BatchSpool.open(dir, { log, segmentBytes: 256 * KiB });
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
});
