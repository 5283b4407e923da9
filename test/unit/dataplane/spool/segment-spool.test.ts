import fs, { readdirSync, truncateSync } from "node:fs";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { createLogger } from "../../../../common/logger.ts";
import {
  SegmentSpool,
  type SpoolLocation,
  SpoolReadError,
} from "../../../../dataplane/spool/segment-spool.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import {
  flipByte as flip,
  PMB2_HEADER as H,
  spoolPayload as payload,
  spoolSegments as segments,
  spoolTestDirs,
} from "../../../fixtures/spool-files.ts";

// The segments of a spool: append, read back, release, recover. How damaged
// records are found is in spool-record.test.ts; the directory (modes, lock,
// id) in spool-dir.test.ts.

const log = createLogger({ level: "silent" });
const dir = spoolTestDirs();

describe("SegmentSpool", () => {
  it("recovers every batch not yet done, with a stable proxy id and seqs never reused", async () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log, segmentBytes: 4096 });
    expect(a.recovered).toEqual([]);
    expect(a.losses).toEqual([]);
    expect(a.nextSeq).toBe(1);
    const locs: SpoolLocation[] = [];
    for (let seq = 1; seq <= 20; seq++) {
      locs.push(a.spool.append(seq, 3, seq, 1000 * seq, payload(seq)));
    }
    expect(locs[11]).toEqual({ segment: 9, offset: 3 * (H + 1000) });
    a.spool.release(7);
    expect(await a.spool.read(locs[11]!, 12, 1000)).toEqual(payload(12));
    a.spool.close();

    const b = SegmentSpool.open(d, { log, segmentBytes: 4096 });
    expect(b.proxyId).toBe(a.proxyId);
    expect(b.losses).toEqual([]);
    expect(b.recovered.map((r) => r.seq)).toEqual(Array.from({ length: 13 }, (_, i) => i + 8));
    expect(b.recovered[0]).toMatchObject({ compression: 3, lines: 8, rawBytes: 8000, size: 1000 });
    for (const r of b.recovered) {
      expect(await b.spool.read(r.loc, r.seq, r.size)).toEqual(payload(r.seq));
    }
    expect(b.nextSeq).toBe(21);
    // Everything done: segments go, the done mark keeps seqs from being reused.
    b.spool.release(20);
    expect(b.spool.bytes).toBe(0);
    b.spool.close();
    expect(readdirSync(d).filter((f) => f.endsWith(".spool"))).toEqual([]);
    const c = SegmentSpool.open(d, { log });
    expect(c.nextSeq).toBe(21);
    c.spool.close();
  });

  it("sets aside a segment that cannot be opened, reports it, and keeps the others", () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log, segmentBytes: 3 * (H + 100) });
    for (let seq = 1; seq <= 9; seq++) a.spool.append(seq, 1, seq, 1, payload(seq, 100));
    a.spool.close();
    const [, second] = segments(d);
    expect(path.basename(second!)).toBe(`seg-${"4".padStart(16, "0")}.spool`);
    const real = fs.openSync;
    vi.spyOn(fs, "openSync").mockImplementation((p, flags, mode) => {
      if (p === second) {
        throw Object.assign(new Error(`EACCES: permission denied, open '${p}'`), {
          code: "EACCES",
        });
      }
      return real(p, flags, mode);
    });
    const { log: captured, lines } = captureLog();
    const b = SegmentSpool.open(d, { log: captured });
    expect(b.recovered.map((r) => r.seq)).toEqual([1, 2, 3, 7, 8, 9]);
    expect(b.losses).toMatchObject([
      { reason: "spool_unreadable", file: second, offset: 0, bytes: null, lines: null },
    ]);
    expect(b.losses[0]!.detail).toMatch(/^EACCES/);
    expect(b.nextSeq).toBe(10);
    b.spool.close();
    expect(existsUnreadable(d)).toEqual([`${path.basename(second!)}.unreadable`]);
    expect(lines.some((l) => l.level === 50 && l.msg.includes("renamed"))).toBe(true);
    // Set aside: not read (nor counted) again.
    vi.restoreAllMocks();
    const c = SegmentSpool.open(d, { log });
    expect(c.losses).toEqual([]);
    expect(c.recovered.map((r) => r.seq)).toEqual([1, 2, 3, 7, 8, 9]);
    c.spool.close();
  });

  it("checks every read: a damaged, cut or missing record is a SpoolReadError, never a payload", async () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log });
    const locs = [1, 2, 3].map((seq) => a.spool.append(seq, 1, seq, 1, payload(seq, 100)));
    const seg = segments(d)[0]!;
    flip(seg, locs[1]!.offset + H + 7);
    const bad = await a.spool.read(locs[1]!, 2, 100).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(SpoolReadError);
    expect(bad).toMatchObject({
      reason: "spool_corrupt",
      file: seg,
      offset: locs[1]!.offset,
      transient: false,
      code: "POLYMUR_ERR_SPOOL",
    });
    // The right bytes asked for under the wrong seq: refused too.
    await expect(a.spool.read(locs[0]!, 9, 100)).rejects.toMatchObject({
      reason: "spool_corrupt",
      message: expect.stringContaining("seq 1 of 100 bytes, not seq 9"),
    });
    truncateSync(seg, locs[2]!.offset + H + 50);
    await expect(a.spool.read(locs[2]!, 3, 100)).rejects.toMatchObject({
      reason: "spool_corrupt",
      message: expect.stringContaining("short read"),
    });
    await expect(a.spool.read({ segment: 99, offset: 0 }, 99, 100)).rejects.toMatchObject({
      reason: "spool_unreadable",
      transient: false,
      file: path.join(d, `seg-${"99".padStart(16, "0")}.spool`),
    });
    const real = fs.read;
    vi.spyOn(fs, "read").mockImplementation(((...args: unknown[]) => {
      const cb = args.at(-1) as (err: NodeJS.ErrnoException | null, n: number) => void;
      cb(Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" }), 0);
    }) as unknown as typeof real);
    await expect(a.spool.read(locs[0]!, 1, 100)).rejects.toMatchObject({
      reason: "spool_unreadable",
      transient: true,
    });
    vi.restoreAllMocks();
    expect(await a.spool.read(locs[0]!, 1, 100)).toEqual(payload(1, 100));
    a.spool.close();
  });

  it("a failed append leaves nothing behind: later records stay where they are said to be", async () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log });
    const first = a.spool.append(1, 1, 1, 1, payload(1, 100));
    const real = fs.writevSync;
    const spy = vi.spyOn(fs, "writevSync").mockImplementationOnce((fd, bufs) => {
      // Half the record reaches the disk, then it is full.
      const all = Buffer.concat(bufs as Buffer[]);
      real(fd, [all.subarray(0, 50)]);
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    });
    expect(() => a.spool.append(2, 1, 2, 1, payload(2, 100))).toThrow(/ENOSPC/);
    spy.mockRestore();
    const third = a.spool.append(3, 1, 3, 1, payload(3, 100));
    expect(third.offset).toBe(H + 100);
    expect(await a.spool.read(first, 1, 100)).toEqual(payload(1, 100));
    expect(await a.spool.read(third, 3, 100)).toEqual(payload(3, 100));
    expect(a.spool.bytes).toBe(2 * (H + 100));
    a.spool.close();
    const b = SegmentSpool.open(d, { log });
    expect(b.recovered.map((r) => r.seq)).toEqual([1, 3]);
    expect(b.losses).toEqual([]);
    b.spool.close();
  });

  it("a failed append into a new segment leaves no segment file behind (none of its records would ever be released)", async () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log, segmentBytes: 100 });
    vi.spyOn(fs, "writevSync").mockImplementationOnce(() => {
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    });
    expect(() => a.spool.append(1, 1, 1, 1, payload(1, 100))).toThrow(/ENOSPC/);
    vi.restoreAllMocks();
    expect(segments(d)).toEqual([]);
    expect(a.spool.bytes).toBe(0);
    // The next append starts a segment of its own, and releasing it frees the disk.
    expect(a.spool.append(2, 1, 2, 1, payload(2, 100))).toEqual({ segment: 2, offset: 0 });
    a.spool.release(2);
    expect(segments(d)).toEqual([]);
    a.spool.close();
  });

  it("a segment whose failed append could not be undone takes no more records; recovery skips the torn bytes", () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log });
    a.spool.append(1, 1, 1, 1, payload(1, 100));
    const real = fs.writevSync;
    vi.spyOn(fs, "writevSync").mockImplementationOnce((fd, bufs) => {
      real(fd, [Buffer.concat(bufs as Buffer[]).subarray(0, 50)]);
      throw Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" });
    });
    vi.spyOn(fs, "ftruncateSync").mockImplementationOnce(() => {
      throw Object.assign(new Error("EIO: i/o error, ftruncate"), { code: "EIO" });
    });
    expect(() => a.spool.append(2, 1, 2, 1, payload(2, 100))).toThrow(/EIO/);
    vi.restoreAllMocks();
    // A new segment, named after the next seq: the torn bytes stay at the end of the old one.
    expect(a.spool.append(3, 1, 3, 1, payload(3, 100))).toEqual({ segment: 3, offset: 0 });
    a.spool.close();
    expect(segments(d).map((f) => path.basename(f))).toEqual([
      `seg-${"1".padStart(16, "0")}.spool`,
      `seg-${"3".padStart(16, "0")}.spool`,
    ]);
    const b = SegmentSpool.open(d, { log });
    expect(b.recovered.map((r) => r.seq)).toEqual([1, 3]);
    // seq 2 lies there, torn: its header says so, and it is counted.
    expect(b.losses).toMatchObject([{ reason: "spool_corrupt", seq: 2, lines: 2 }]);
    b.spool.close();
  });
});

function existsUnreadable(d: string): string[] {
  return readdirSync(d).filter((f) => f.endsWith(".unreadable"));
}
