import fs, { readdirSync, statSync, symlinkSync, truncateSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DiskBudget } from "../../../../dataplane/forward/disk-budget.ts";
import {
  DiskQueue,
  type DiskQueueOptions,
  type DiskRead,
} from "../../../../dataplane/forward/disk-queue.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { fixedWidthLines as lines } from "../../../fixtures/destination-harness.ts";
import {
  flipByte,
  PMB2_HEADER as H,
  spoolSegments as segments,
  spoolTestDirs,
} from "../../../fixtures/spool-files.ts";

// A destination's disk queue (dataplane/forward/disk-queue.ts) over real
// segment files in temp directories: appends gathered into records, read
// back in order, released once delivered, bounded, and recovered (damage
// included) by the next process that opens the directory.

const tempDir = spoolTestDirs("polymur-disk-queue-");

/** Bytes of one line of fixedWidthLines. */
const LINE = lines(0, 1).length;

interface Opened {
  q: DiskQueue;
  lost: { disk_corrupt: number; disk_unreadable: number };
  /** What `refuse` was given: the lines of records whose write failed. */
  refused: Array<{ text: string; lines: number }>;
  budget: DiskBudget;
  log: ReturnType<typeof captureLog>;
}

const open: DiskQueue[] = [];
afterEach(() => {
  // Registered after spoolTestDirs: runs before the directories are removed.
  for (const q of open.splice(0)) q.close();
  vi.useRealTimers();
});

function openQueue(dir: string, o: Partial<DiskQueueOptions> = {}): Opened {
  const log = captureLog();
  const budget = o.budget ?? new DiskBudget(1 << 30);
  const refused: Opened["refused"] = [];
  const { queue, lost } = DiskQueue.open(
    {
      dir,
      name: "127.0.0.1:2003",
      maxBytes: 1 << 30,
      budget,
      fsync: "interval",
      fsyncIntervalMs: 1000,
      log: log.log,
      ...o,
    },
    (chunks, n) => {
      for (let i = 0; i < chunks.length; i++)
        refused.push({ text: chunks[i]!.toString(), lines: n[i]! });
    },
  );
  open.push(queue);
  return { q: queue, lost, refused, budget, log };
}

/** Reads everything back, `maxBytes` at a time. */
async function readAll(q: DiskQueue, maxBytes = 1 << 20): Promise<DiskRead[]> {
  const out: DiskRead[] = [];
  for (;;) {
    const got = await q.read(maxBytes);
    if (got.length === 0) return out;
    out.push(...got);
  }
}

/** The text of what was read back (records lost to damage left out). */
function text(reads: readonly DiskRead[]): string {
  return reads.map((r) => r.chunk?.toString() ?? "").join("");
}

/** The line numbers (m.NNNNNN) in `s`, in order. */
function numbers(s: string): number[] {
  return s
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => Number(l.slice(2, 8)));
}

/** Appends chunk i = lines(i * per, per) for i in [from, to), each flushed as its own record. */
function appendRecords(q: DiskQueue, from: number, to: number, per: number): void {
  for (let i = from; i < to; i++) {
    expect(q.append(lines(i * per, per), per)).toBe(true);
    q.flush();
  }
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("DiskQueue: append and read back", () => {
  it("gathers a turn's appends into one record, written at the end of the turn", async () => {
    const d = tempDir();
    const { q } = openQueue(d);
    for (let i = 0; i < 10; i++) expect(q.append(lines(i * 5, 5), 5)).toBe(true);
    expect(q.lines).toBe(50);
    expect(q.empty).toBe(false);
    expect(q.spilled).toBe(50);
    // Nothing written yet: gathered for the rest of the turn.
    expect(segments(d)).toEqual([]);
    await nextTurn();
    expect(segments(d)).toHaveLength(1);
    expect(statSync(segments(d)[0]!).size).toBe(H + 50 * LINE);
    const got = await q.read(1 << 20);
    expect(got).toHaveLength(1);
    expect(got[0]!.seq).toBe(1);
    expect(got[0]!.lines).toBe(50);
    expect(got[0]!.chunk!.equals(lines(0, 50))).toBe(true);
    expect(q.lines).toBe(0);
    expect(q.empty).toBe(true);
    expect(q.replayed).toBe(50);
  });

  it("reads many records back in order, across segments, a few at a time", async () => {
    const d = tempDir();
    // Records of about 4 KiB; a new segment every 512 KiB (an eighth of the bound).
    const { q } = openQueue(d, { recordBytes: 4096, maxBytes: 4 << 20 });
    const per = 40; // 880 bytes a chunk
    const chunks = 4000; // about 3.5 MB
    for (let i = 0; i < chunks; i++) expect(q.append(lines(i * per, per), per)).toBe(true);
    q.flush();
    expect(q.lines).toBe(chunks * per);
    expect(segments(d).length).toBeGreaterThan(1);
    const reads = await readAll(q, 64 * 1024);
    // Record by record, seqs grow and no record is over recordBytes.
    for (let i = 1; i < reads.length; i++) expect(reads[i]!.seq).toBe(reads[i - 1]!.seq + 1);
    for (const r of reads) expect(r.chunk!.length).toBeLessThanOrEqual(4096);
    expect(text(reads)).toBe(lines(0, chunks * per).toString());
    expect(reads.reduce((n, r) => n + r.lines, 0)).toBe(chunks * per);
    expect(q.replayed).toBe(chunks * per);
    expect(q.lines).toBe(0);
    expect(q.empty).toBe(true);
  });

  it("reads back what was gathered and not yet written straight from memory, never writing it", async () => {
    const d = tempDir();
    const { q, budget } = openQueue(d);
    q.append(lines(0, 10), 10);
    q.append(lines(10, 10), 10);
    expect(budget.used).toBe(20 * LINE);
    const got = await q.read(1 << 20);
    expect(got).toEqual([{ seq: -1, lines: 20, chunk: lines(0, 20) }]);
    expect(q.empty).toBe(true);
    expect(q.lines).toBe(0);
    expect(q.replayed).toBe(20);
    expect(budget.used).toBe(0);
    // The flush that was scheduled finds nothing to write.
    await nextTurn();
    expect(segments(d)).toEqual([]);
    expect(q.bytes).toBe(0);
  });

  it("reads what is on disk first, then what was gathered since", async () => {
    const d = tempDir();
    const { q } = openQueue(d);
    appendRecords(q, 0, 3, 10);
    q.append(lines(30, 10), 10);
    q.append(lines(40, 10), 10);
    const got = await readAll(q);
    expect(got.slice(0, 3).map((r) => r.seq)).toEqual([1, 2, 3]);
    // Read straight back (-1) or written meanwhile (4): either way, after the rest.
    expect(got.slice(3).reduce((n, r) => n + r.lines, 0)).toBe(20);
    expect(text(got)).toBe(lines(0, 50).toString());
    expect(q.empty).toBe(true);
    expect(q.lines).toBe(0);
  });

  it("leaves the gathered lines alone when the records on disk already fill the read", async () => {
    const d = tempDir();
    const { q } = openQueue(d);
    appendRecords(q, 0, 2, 10);
    q.append(lines(20, 10), 10);
    // One byte asked: the first record only.
    const first = await q.read(1);
    expect(first.map((r) => r.seq)).toEqual([1]);
    expect(q.lines).toBe(20);
    const rest = await readAll(q);
    expect(rest[0]!.seq).toBe(2);
    expect(text([...first, ...rest])).toBe(lines(0, 30).toString());
  });

  it("counts the records being read as on disk until the read returns", async () => {
    const d = tempDir();
    const { q } = openQueue(d);
    appendRecords(q, 0, 50, 10);
    const seen = new Set<number>();
    let reading = true;
    const watch = (): void => {
      seen.add(q.lines);
      if (reading) setImmediate(watch);
    };
    setImmediate(watch);
    const got = await q.read(1 << 20);
    reading = false;
    expect(got).toHaveLength(50);
    // Each record is its own read of the file: the watcher ran in between.
    expect([...seen]).toEqual([500]);
    expect(q.lines).toBe(0);
  });

  it("a read cut short by close() takes nothing: the records stay on disk for the next process", async () => {
    const d = tempDir();
    const a = openQueue(d);
    appendRecords(a.q, 0, 20, 10);
    const reading = a.q.read(1 << 20);
    a.q.close();
    expect(await reading).toEqual([]);
    expect(a.q.lines).toBe(200);
    expect(await a.q.read(1 << 20)).toEqual([]);
    const b = openQueue(d);
    expect(b.q.lines).toBe(200);
    expect(text(await readAll(b.q))).toBe(lines(0, 200).toString());
  });
});

describe("DiskQueue: release", () => {
  it("deletes a segment once every record in it is released, and gives its bytes back to the budget", async () => {
    const d = tempDir();
    const budget = new DiskBudget(1 << 30);
    const { q } = openQueue(d, { recordBytes: 4096, maxBytes: 512 * 1024, budget });
    // maxBytes 512 KiB: 64 KiB segments, 4 KiB records.
    const per = 150; // 3300 bytes, one chunk a record
    appendRecords(q, 0, 60, per);
    const files = segments(d);
    expect(files.length).toBeGreaterThanOrEqual(3);
    const onDisk = files.reduce((n, f) => n + statSync(f).size, 0);
    expect(q.bytes).toBe(onDisk);
    expect(budget.used).toBe(onDisk);

    const reads = await readAll(q);
    expect(reads).toHaveLength(60);
    // Reading back deletes nothing: records go only once released.
    expect(segments(d)).toEqual(files);
    // Released up to the last record of the first segment: it goes.
    const firstSegmentRecords = Math.floor(statSync(files[0]!).size / (H + per * LINE));
    q.release(reads[firstSegmentRecords - 1]!.seq);
    expect(segments(d)).toEqual(files.slice(1));
    const left = files.slice(1).reduce((n, f) => n + statSync(f).size, 0);
    expect(q.bytes).toBe(left);
    expect(budget.used).toBe(left);
    // One record short of the second segment's end: it stays.
    q.release(reads[firstSegmentRecords]!.seq);
    expect(segments(d)).toEqual(files.slice(1));
    q.release(reads[59]!.seq);
    expect(segments(d)).toEqual([]);
    expect(q.bytes).toBe(0);
    expect(budget.used).toBe(0);
  });

  it("released records are not recovered; read and unreleased ones are, in order", async () => {
    const d = tempDir();
    const a = openQueue(d);
    appendRecords(a.q, 0, 100, 10);
    const reads = await a.q.read(40 * 10 * LINE);
    expect(reads).toHaveLength(40);
    a.q.release(reads[29]!.seq);
    a.q.append(lines(1000, 5), 5); // gathered, written by close()
    a.q.close();
    expect(a.budget.used).toBe(0);

    const b = openQueue(d);
    expect(b.lost).toEqual({ disk_corrupt: 0, disk_unreadable: 0 });
    expect(b.q.lines).toBe(70 * 10 + 5);
    expect(b.budget.used).toBe(b.q.bytes);
    const got = await readAll(b.q);
    expect(got[0]!.seq).toBe(31);
    expect(numbers(text(got))).toEqual([
      ...Array.from({ length: 700 }, (_, i) => 300 + i),
      1000,
      1001,
      1002,
      1003,
      1004,
    ]);
    // New records get new seqs, after every recovered one.
    b.q.append(lines(2000, 1), 1);
    b.q.flush();
    const more = await b.q.read(1 << 20);
    expect(more[0]!.seq).toBe(got[got.length - 1]!.seq + 1);
  });
});

describe("DiskQueue: bounds", () => {
  it("refuses an append beyond maxBytes, record headers included, and takes nothing of it", async () => {
    const d = tempDir();
    const per = 10;
    const record = H + per * LINE;
    const { q } = openQueue(d, { maxBytes: 3 * record, recordBytes: per * LINE });
    appendRecords(q, 0, 3, per);
    expect(q.bytes).toBe(3 * record);
    expect(q.append(lines(30, 1), 1)).toBe(false);
    expect(q.lines).toBe(30);
    expect(q.spilled).toBe(30);
    // Delivered and released: room again.
    q.release((await readAll(q)).at(-1)!.seq);
    expect(q.bytes).toBe(0);
    expect(q.append(lines(30, per), per)).toBe(true);
  });

  it("refuses an append that the shared budget cannot take, whichever queue holds it", async () => {
    const budget = new DiskBudget(2 * (H + 100 * LINE));
    const a = openQueue(tempDir(), { budget });
    const b = openQueue(tempDir(), { budget });
    expect(a.q.append(lines(0, 100), 100)).toBe(true);
    a.q.flush();
    expect(b.q.append(lines(100, 100), 100)).toBe(true);
    b.q.flush();
    expect(budget.used).toBe(2 * (H + 100 * LINE));
    expect(a.q.append(lines(200, 1), 1)).toBe(false);
    expect(b.q.append(lines(200, 1), 1)).toBe(false);
    // A queue that lets go of its bytes makes room for the other.
    a.q.release((await readAll(a.q)).at(-1)!.seq);
    expect(budget.used).toBe(H + 100 * LINE);
    expect(b.q.append(lines(200, 100), 100)).toBe(true);
    b.q.close();
    expect(budget.used).toBe(0);
  });
});

describe("DiskQueue: recovery", () => {
  it("skips a record whose payload is damaged, counting its lines as disk_corrupt, and keeps every later one", async () => {
    const d = tempDir();
    const a = openQueue(d);
    // Records of 10, 11, 12 ... 19 lines.
    for (let i = 0; i < 10; i++) {
      a.q.append(lines(i * 100, 10 + i), 10 + i);
      a.q.flush();
    }
    a.q.close();
    // Record 4 (13 lines): a payload byte flipped.
    let at = 0;
    for (let i = 0; i < 3; i++) at += H + (10 + i) * LINE;
    flipByte(segments(d)[0]!, at + H + 5);

    const b = openQueue(d);
    expect(b.lost).toEqual({ disk_corrupt: 13, disk_unreadable: 0 });
    expect(b.q.lines).toBe(145 - 13);
    expect(b.log.lines.some((l) => l.level === 50 && String(l.msg).includes("13 datapoints"))).toBe(
      true,
    );
    const got = await readAll(b.q);
    expect(got.map((r) => r.lines)).toEqual([10, 11, 12, 14, 15, 16, 17, 18, 19]);
    expect(got.every((r) => r.lost === undefined)).toBe(true);
    const want = Array.from({ length: 10 }, (_, i) =>
      i === 3 ? [] : numbers(lines(i * 100, 10 + i).toString()),
    ).flat();
    expect(numbers(text(got))).toEqual(want);
  });

  it("cuts a torn last record off, counting its lines, and appends after what is left", async () => {
    const d = tempDir();
    const a = openQueue(d);
    appendRecords(a.q, 0, 5, 20);
    a.q.close();
    const file = segments(d)[0]!;
    const whole = 5 * (H + 20 * LINE);
    truncateSync(file, whole - 7);

    const b = openQueue(d);
    expect(b.lost).toEqual({ disk_corrupt: 20, disk_unreadable: 0 });
    expect(statSync(file).size).toBe(4 * (H + 20 * LINE));
    expect(b.q.lines).toBe(80);
    b.q.append(lines(500, 3), 3);
    b.q.flush();
    expect(numbers(text(await readAll(b.q)))).toEqual([
      ...Array.from({ length: 80 }, (_, i) => i),
      500,
      501,
      502,
    ]);
    b.q.close();
    const c = openQueue(d);
    expect(c.lost).toEqual({ disk_corrupt: 0, disk_unreadable: 0 });
    expect(c.q.lines).toBe(83);
  });

  it("a record damaged after it was written comes back as lost (disk_corrupt), the next ones intact", async () => {
    const d = tempDir();
    const { q, log } = openQueue(d);
    appendRecords(q, 0, 4, 10);
    flipByte(segments(d)[0]!, 2 * (H + 10 * LINE) + H + 1);
    const got = await readAll(q);
    expect(got.map((r) => [r.seq, r.lines, r.lost ?? null])).toEqual([
      [1, 10, null],
      [2, 10, null],
      [3, 10, "disk_corrupt"],
      [4, 10, null],
    ]);
    expect(got[2]!.chunk).toBeNull();
    expect(numbers(text(got))).toEqual([
      ...Array.from({ length: 20 }, (_, i) => i),
      ...Array.from({ length: 10 }, (_, i) => 30 + i),
    ]);
    // Lost lines are not replayed.
    expect(q.replayed).toBe(30);
    expect(log.lines.some((l) => l.level === 50 && l.seq === 3)).toBe(true);
  });
});

describe("DiskQueue: fsync and write failures", () => {
  it('with fsync "write", flushes every record to the disk as it is written', async () => {
    const d = tempDir();
    const fsyncs = vi.spyOn(fs, "fsyncSync");
    const { q } = openQueue(d, { fsync: "write" });
    const before = fsyncs.mock.calls.length;
    appendRecords(q, 0, 5, 10);
    expect(fsyncs.mock.calls.length - before).toBe(5);
    expect(text(await readAll(q))).toBe(lines(0, 50).toString());
  });

  it('with fsync "interval", flushes in the background only when something was written', async () => {
    const d = tempDir();
    const fsyncs = vi.spyOn(fs, "fsync");
    const { q } = openQueue(d, { fsync: "interval", fsyncIntervalMs: 5 });
    await new Promise((r) => setTimeout(r, 30));
    expect(fsyncs).not.toHaveBeenCalled();
    appendRecords(q, 0, 2, 10);
    await vi.waitFor(() => expect(fsyncs).toHaveBeenCalled());
  });

  it("gives the lines of a record whose write fails to refuse, and refuses appends for a while", async () => {
    const d = tempDir();
    const { q, refused, budget, log } = openQueue(d);
    // A real write error: the first segment is /dev/full, where every write
    // fails with ENOSPC (a full disk).
    symlinkSync("/dev/full", path.join(d, `seg-${String(1).padStart(16, "0")}.spool`));
    vi.useFakeTimers({ toFake: ["Date"] });
    expect(q.append(lines(0, 10), 10)).toBe(true);
    expect(q.append(lines(10, 5), 5)).toBe(true);
    q.flush();
    expect(refused).toEqual([{ text: lines(0, 15).toString(), lines: 15 }]);
    expect(q.failures).toBe(1);
    expect(q.lines).toBe(0);
    expect(q.spilled).toBe(0);
    expect(q.empty).toBe(true);
    expect(budget.used).toBe(q.bytes);
    expect(log.lines.some((l) => l.level === 40 && String(l.err).includes("ENOSPC"))).toBe(true);
    // The disk is left alone for a while: appends are refused (nothing taken).
    expect(q.append(lines(15, 1), 1)).toBe(false);
    vi.setSystemTime(Date.now() + 5_001);
    // Tried again later: a new segment, on the real disk.
    expect(q.append(lines(15, 1), 1)).toBe(true);
    q.flush();
    expect(refused).toHaveLength(1);
    expect(text(await readAll(q))).toBe(lines(15, 1).toString());
  });

  it("a write that fails when a record's worth is gathered refuses it before the new chunk, which is not taken", () => {
    const d = tempDir();
    const { q, refused } = openQueue(d, { recordBytes: 10 * LINE });
    symlinkSync("/dev/full", path.join(d, `seg-${String(1).padStart(16, "0")}.spool`));
    expect(q.append(lines(0, 10), 10)).toBe(true);
    // A record's worth gathered: written first, and that fails.
    expect(q.append(lines(10, 10), 10)).toBe(false);
    expect(refused).toEqual([{ text: lines(0, 10).toString(), lines: 10 }]);
    expect(q.lines).toBe(0);
  });

  it("a segment whose fsync fails after its record was written keeps the record", async () => {
    const d = tempDir();
    const { q, refused } = openQueue(d, { fsync: "write" });
    // Injected: an fsync error (EIO) after a successful write, which a real
    // disk gives when it cannot flush its cache; no file here can do it.
    vi.spyOn(fs, "fsyncSync").mockImplementation(() => {
      throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" });
    });
    expect(q.append(lines(0, 10), 10)).toBe(true);
    q.flush();
    vi.restoreAllMocks();
    // The record is in the file: refusing its lines would send them twice.
    expect(refused).toEqual([]);
    expect(q.lines).toBe(10);
    expect(text(await readAll(q))).toBe(lines(0, 10).toString());
  });
});

describe("DiskQueue: the directory", () => {
  it("is owner-only and locked: a second open of the same directory fails", () => {
    const d = tempDir();
    openQueue(d);
    expect((statSync(d).mode & 0o777).toString(8)).toBe("700");
    expect(() => openQueue(d)).toThrow(/each polymur needs its own --queue-dir/);
  });

  it("keeps its files after close(), and another process's open finds them", () => {
    const d = tempDir();
    const a = openQueue(d);
    a.q.append(lines(0, 3), 3);
    a.q.close();
    expect(readdirSync(d).some((f) => f.endsWith(".spool"))).toBe(true);
    expect(openQueue(d).q.lines).toBe(3);
  });
});
