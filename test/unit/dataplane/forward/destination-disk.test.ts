import { symlinkSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Destination, type DestinationOptions } from "../../../../dataplane/forward/destination.ts";
import type { DiskQueueOpener } from "../../../../dataplane/forward/destination-options.ts";
import { parseDestination } from "../../../../dataplane/forward/destination-spec.ts";
import { DiskBudget } from "../../../../dataplane/forward/disk-budget.ts";
import { DiskQueue, type DiskQueueOptions } from "../../../../dataplane/forward/disk-queue.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { type AccountWatch, accountWatcher } from "../../../fixtures/destination-account.ts";
import {
  destinationHarness,
  fixedWidthLines as lines,
} from "../../../fixtures/destination-harness.ts";
import { freePort, type LineSink } from "../../../fixtures/line-sink.ts";
import {
  flipByte,
  PMB2_HEADER as H,
  spoolSegments as segments,
  spoolTestDirs,
} from "../../../fixtures/spool-files.ts";
import { until } from "../../../fixtures/until.ts";

// A destination with a disk queue (--queue-dir): real TCP sinks on
// 127.0.0.1, real segment files in temp directories. Lines go to disk while
// the destination is down or memory is full, come back in order, leave the
// disk once delivered, and what waits at a drain's deadline is kept on disk
// for the next process. Every datapoint is accounted for at every moment:
//   routed + recovered = forwarded + queued + dropped + undelivered + rerouted

const tempDir = spoolTestDirs("polymur-destination-disk-");
const { sink, closeAfter } = destinationHarness();

/** Bytes of one line of fixedWidthLines. */
const LINE = lines(0, 1).length;

/** The options.disk of a destination whose disk queue is in `dir`. */
function diskIn(dir: string, o: Partial<DiskQueueOptions> = {}): DiskQueueOpener {
  return (refuse) =>
    DiskQueue.open(
      {
        dir,
        name: "test",
        maxBytes: 256 << 20,
        budget: new DiskBudget(1 << 30),
        fsync: "interval",
        fsyncIntervalMs: 1000,
        log: captureLog().log,
        ...o,
      },
      refuse,
    );
}

/**
 * A Destination to 127.0.0.1:`port` with its disk queue in `dir`,
 * reconnecting quickly; started unless `start` is false. Closed after the
 * test (before the sinks made before it).
 */
function diskDest(
  port: number,
  dir: string,
  options: DestinationOptions = {},
  disk: Partial<DiskQueueOptions> = {},
  start = true,
): Destination {
  const d = new Destination(parseDestination(`127.0.0.1:${port}`), {
    backoffMinMs: 20,
    backoffMaxMs: 100,
    disk: diskIn(dir, disk),
    ...options,
  });
  closeAfter(d);
  if (start) d.start();
  return d;
}

/**
 * Checks the account of a destination at every state change, every
 * millisecond and every turn of the event loop until the test ends;
 * check() asserts it now and that it never broke.
 */
const watchAccount = accountWatcher(closeAfter, { everyTurn: true });

/** A destination (diskDest), its disk queue's directory, and the watch on its account. */
interface Watched {
  d: Destination;
  dir: string;
  account: AccountWatch;
}

/**
 * A destination (diskDest) to a free port nobody listens on yet (`port`,
 * where a sink may come up later), its disk queue in a new directory, its
 * account watched.
 */
async function toDownPeer(
  options: DestinationOptions = {},
  disk: Partial<DiskQueueOptions> = {},
): Promise<Watched & { port: number }> {
  const port = await freePort();
  const dir = tempDir();
  const d = diskDest(port, dir, options, disk);
  return { port, dir, d, account: watchAccount(d) };
}

/**
 * A destination (diskDest) connected to a new sink `up`, with memory for
 * `queueBytes`, its disk queue in a new directory, its account watched.
 */
async function toUpPeer(
  queueBytes: number,
  disk: Partial<DiskQueueOptions> = {},
): Promise<Watched & { up: LineSink }> {
  const up = await sink();
  const dir = tempDir();
  const d = diskDest(up.port, dir, { queueBytes }, disk);
  const account = watchAccount(d);
  await until("connected", () => d.state === "connected");
  return { up, dir, d, account };
}

/** Waits until `d` has failed to connect. */
const failedToConnect = (d: Destination): Promise<void> =>
  until("a failed connection", () => d.failStreak > 0);

/** Makes the first segment of `dir` /dev/full: writing it fails with a real ENOSPC. */
function fullFirstSegment(dir: string): void {
  symlinkSync("/dev/full", path.join(dir, `seg-${String(1).padStart(16, "0")}.spool`));
}

/** Line numbers (m.NNNNNN) of what a sink received, in order. */
function numbers(received: readonly string[]): number[] {
  return received.map((l) => Number(l.slice(2, 8)));
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

/** Enqueues chunks i = lines(i * per, per) for i in [from, to). */
function enqueue(d: Destination, from: number, to: number, per: number): void {
  for (let i = from; i < to; i++) d.enqueue(lines(i * per, per), per);
}

const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Expects every number in `want` exactly once in `got` (in any order). */
function expectExactlyOnce(got: readonly number[], want: readonly number[]): void {
  expect([...got].sort((a, b) => a - b)).toEqual([...want].sort((a, b) => a - b));
}

/** Waits for lines `from` to `to - 1` at `up`, and expects each once, in order. */
async function expectInOrder(up: LineSink, from: number, to: number): Promise<void> {
  await up.waitForLines(to - from);
  expect(numbers(up.lines)).toEqual(range(from, to));
}

/** Waits for `n` lines at `up`, and expects lines 0 to n - 1, each once, in any order. */
async function expectOnceEach(up: LineSink, n: number): Promise<void> {
  await up.waitForLines(n);
  expectExactlyOnce(numbers(up.lines), range(0, n));
}

/** Waits until `d` holds nothing, on disk or in memory, and its segments are deleted. */
async function emptied(d: Destination, dir: string): Promise<void> {
  await until("the destination and its disk queue are empty", () => {
    const s = d.stats();
    return (
      s.queuedLines === 0 && s.disk!.lines === 0 && d.disk!.empty && segments(dir).length === 0
    );
  });
}

describe("Destination with a disk queue: down, then up", () => {
  it("sends what comes while it is down to disk, then delivers every line once, in order, and deletes the segments", async () => {
    const { port, dir, d, account } = await toDownPeer();
    await failedToConnect(d);
    enqueue(d, 0, 200, 50);
    account.check();
    let s = d.stats();
    expect(s.disk!.lines).toBe(10_000);
    expect(s.disk!.spilled).toBe(10_000);
    expect(s.queuedBytes).toBe(0);
    expect(s.queuedLines).toBe(10_000);
    await nextTurn();
    expect(segments(dir).length).toBeGreaterThan(0);
    expect(d.disk!.bytes).toBeGreaterThan(10_000 * LINE);

    const up = await sink(port);
    await expectInOrder(up, 0, 10_000);
    await emptied(d, dir);
    s = d.stats();
    expect(s.forwarded).toBe(10_000);
    expect(s.disk!.replayed).toBe(10_000);
    expect(s.disk!.bytes).toBe(0);
    account.check();
    // Nothing more comes, not even at the end.
    expect(await d.drain(1_000)).toBe(0);
    expect(up.lines).toHaveLength(10_000);
    account.check();
  });

  it("keeps what memory held before the failure ahead of what went to disk", async () => {
    const { port, dir, d, account } = await toDownPeer();
    // Connecting for the first time: memory.
    enqueue(d, 0, 10, 30);
    expect(d.stats().disk!.lines).toBe(0);
    await failedToConnect(d);
    enqueue(d, 10, 40, 30);
    expect(d.stats().disk!.lines).toBe(900);
    const up = await sink(port);
    await expectInOrder(up, 0, 1200);
    await emptied(d, dir);
    account.check();
  });

  it("writes through to disk whatever a failed write gave back (a real ENOSPC: the segment is /dev/full), and delivers it from memory", async () => {
    const { port, dir, d, account } = await toDownPeer();
    fullFirstSegment(dir);
    await failedToConnect(d);
    enqueue(d, 0, 20, 10);
    // Gathered for the turn, then the write fails: the lines go to memory.
    expect(d.stats().disk!.lines).toBe(200);
    await nextTurn();
    let s = d.stats();
    expect(s.disk!.failures).toBe(1);
    expect(s.disk!.lines).toBe(0);
    expect(s.queuedLines).toBe(200);
    expect(s.queuedBytes).toBe(200 * LINE);
    // The disk is left alone for a while: memory again.
    enqueue(d, 20, 30, 10);
    s = d.stats();
    expect(s.disk!.lines).toBe(0);
    expect(s.queuedLines).toBe(300);
    account.check();
    const up = await sink(port);
    await expectInOrder(up, 0, 300);
    account.check();
  });
});

describe("Destination with a disk queue: memory full while connected", () => {
  it("spills what memory cannot take and replays it behind memory, in order", async () => {
    const { up, dir, d, account } = await toUpPeer(64 * 1024);
    // About 4.4 MB in one turn: memory takes 64 KiB, the disk the rest.
    enqueue(d, 0, 2000, 100);
    const s = d.stats();
    expect(s.queuedBytes).toBeLessThanOrEqual(64 * 1024);
    expect(s.disk!.lines).toBeGreaterThan(150_000);
    account.check();
    await expectInOrder(up, 0, 200_000);
    await emptied(d, dir);
    const e = d.stats();
    expect(e.forwarded).toBe(200_000);
    expect(e.disk!.replayed).toBe(e.disk!.spilled);
    expect(e.dropped).toBe(0);
    account.check();
  });

  it("while the peer stops reading, spills; replays in order once it reads again", async () => {
    const { up, dir, d, account } = await toUpPeer(64 * 1024);
    up.pause();
    // In several turns, as reads from senders come.
    for (let t = 0; t < 40; t++) {
      enqueue(d, t * 100, (t + 1) * 100, 100);
      await nextTurn();
      account.check();
    }
    await until("some on disk", () => (d.stats().disk?.lines ?? 0) > 0);
    // Memory stays within its bound (a record read back at most beyond it).
    expect(d.stats().queuedBytes).toBeLessThanOrEqual(64 * 1024 + (1 << 20));
    up.resume();
    await expectInOrder(up, 0, 400_000);
    await emptied(d, dir);
    account.check();
  });

  it("reads back no more than memory has room for", async () => {
    const { up, d, account } = await toUpPeer(64 * 1024, { recordBytes: 16 * 1024 });
    up.pause();
    let most = 0;
    const timer = setInterval(() => {
      most = Math.max(most, d.stats().queuedBytes);
    }, 1);
    closeAfter({ close: async () => clearInterval(timer) });
    for (let t = 0; t < 20; t++) {
      enqueue(d, t * 100, (t + 1) * 100, 100);
      await nextTurn();
    }
    await until("a replay", () => d.stats().disk!.replayed > 0);
    up.resume();
    await up.waitForLines(200_000);
    clearInterval(timer);
    // Memory (queued and in flight) never held much more than its bound:
    // a replay reads what fits, a record at least.
    expect(most).toBeLessThanOrEqual(64 * 1024 + 16 * 1024 + 100 * LINE);
    expect(numbers(up.lines)).toEqual(range(0, 200_000));
    account.check();
  });
});

describe("Destination with a disk queue: a connection that fails while replaying", () => {
  it("resends what the peer may not have read, and still delivers everything and empties the disk", async () => {
    const { up, dir, d, account } = await toUpPeer(64 * 1024);
    const N = 200_000;
    enqueue(d, 0, N / 100, 100);
    await until("a part delivered", () => up.lines.length > 20_000);
    expect(d.stats().disk!.lines).toBeGreaterThan(0);
    await up.crash();
    await failedToConnect(d);
    account.check();
    await up.listen();
    await until("every line, at least once", () => new Set(up.lines).size === N);
    await emptied(d, dir);
    const s = d.stats();
    expect(s.forwarded).toBe(N);
    expect(s.unconfirmed).toBe(0);
    // Twice only what was written again after the failure.
    expect(up.lines.length - N).toBeLessThanOrEqual(s.resent);
    expectExactlyOnce([...new Set(numbers(up.lines))], range(0, N));
    account.check();
  });
});

describe("Destination with a disk queue: refused by the disk", () => {
  it("keeps what the disk bound refuses in memory, under the overflow policy, and delivers everything once", async () => {
    // Room on disk for three records of 100 lines.
    const { port, dir, d, account } = await toDownPeer({}, { maxBytes: 3 * (H + 100 * LINE) });
    await failedToConnect(d);
    for (let i = 0; i < 6; i++) {
      enqueue(d, i, i + 1, 100);
      await nextTurn(); // one record each
    }
    const s = d.stats();
    expect(s.disk!.lines).toBe(300);
    expect(s.queuedLines).toBe(600);
    expect(s.queuedBytes).toBe(300 * LINE);
    account.check();
    const up = await sink(port);
    // Memory goes first: what the disk refused overtakes what it holds.
    await expectOnceEach(up, 600);
    await emptied(d, dir);
    account.check();
  });

  it("drops what neither the disk nor memory can take (drop-newest), counted as queue_full", async () => {
    const { port, d, account } = await toDownPeer(
      { queueBytes: 100 * LINE, overflow: "drop-newest" },
      { maxBytes: H + 100 * LINE },
    );
    await failedToConnect(d);
    enqueue(d, 0, 1, 100); // disk
    await nextTurn();
    enqueue(d, 1, 2, 100); // memory
    enqueue(d, 2, 3, 100); // dropped
    const s = d.stats();
    expect(s.disk!.lines).toBe(100);
    expect(s.queuedLines).toBe(200);
    expect(s.droppedBy.queue_full).toBe(100);
    account.check();
    const up = await sink(port);
    await expectOnceEach(up, 200);
    account.check();
  });
});

describe("Destination with a disk queue: a drain's deadline", () => {
  it("keeps on disk what waits in memory and is not there yet; a new destination on the directory delivers it", async () => {
    const { port, dir, d, account } = await toDownPeer();
    enqueue(d, 0, 30, 10); // memory: connecting for the first time
    await failedToConnect(d);
    enqueue(d, 30, 80, 10); // disk
    let s = d.stats();
    expect(s.queuedBytes).toBe(300 * LINE);
    expect(s.disk!.lines).toBe(500);
    expect(await d.drain(30)).toBe(0);
    s = d.stats();
    expect(s.state).toBe("closed");
    expect(s.undelivered).toBe(0);
    expect(s.unconfirmed).toBe(0);
    expect(d.keptOnDisk).toBe(300);
    expect(s.queuedLines).toBe(800);
    expect(s.disk!.lines).toBe(800);
    account.check();

    // The next process.
    const d2 = diskDest(port, dir, {}, {}, false);
    const account2 = watchAccount(d2);
    s = d2.stats();
    expect(s.recovered).toBe(800);
    expect(s.routed).toBe(0);
    expect(s.queuedLines).toBe(800);
    expect(s.disk!.lines).toBe(800);
    account2.check();
    const up = await sink(port);
    d2.start();
    await up.waitForLines(800);
    const got = numbers(up.lines);
    expectExactlyOnce(got, range(0, 800));
    // What was on disk before the deadline comes first, then what memory
    // held (appended at the deadline); each in its order.
    expect(got.filter((n) => n >= 300)).toEqual(range(300, 800));
    expect(got.filter((n) => n < 300)).toEqual(range(0, 300));
    await emptied(d2, dir);
    expect(d2.stats().forwarded).toBe(800);
    account2.check();
  });

  it("leaves records read back and not yet written where they are, and the next destination delivers exactly what was not forwarded", async () => {
    const { up: stalled, dir, d, account } = await toUpPeer(64 * 1024);
    stalled.pause();
    const N = 600_000; // about 13 MB: more than the kernel's buffers hold
    const inMemory = 64 * 1024; // at most, before the first spill
    enqueue(d, 0, N / 100, 100);
    // Lines read back wait in memory (queued or in flight, never written).
    await until("lines read back in memory", () => {
      const s = d.stats();
      // Read back and waiting in memory: still on disk (s.disk.lines), no longer
      // among what the disk queue has yet to read back (d.disk.lines).
      return s.disk!.replayed > 0 && s.disk!.lines > d.disk!.lines;
    });
    account.check();
    const left = d.drain(20);
    await until(() => d.state === "closed");
    // Its socket is being closed: the peer goes (otherwise close() waits for it).
    await stalled.close();
    expect(await left).toBe(0);
    const s = d.stats();
    const F = s.forwarded;
    expect(F).toBeGreaterThanOrEqual(inMemory / LINE);
    expect(s.undelivered).toBe(0);
    expect(s.unconfirmed).toBe(0);
    expect(s.queuedLines).toBe(N - F);
    expect(s.disk!.lines).toBe(N - F);
    // Some of it was read back and stays in its records (not appended again):
    // on disk, but not among what the disk queue has yet to read back.
    expect(s.disk!.lines - d.disk!.lines).toBeGreaterThan(0);
    account.check();

    const up = await sink();
    const d2 = diskDest(up.port, dir);
    const account2 = watchAccount(d2);
    expect(d2.stats().recovered).toBe(N - F);
    // The lines forwarded first went first; the rest, once, in order.
    await expectInOrder(up, F, N);
    await emptied(d2, dir);
    account2.check();
  });

  it("counts as undelivered what the disk refuses at the deadline (a real ENOSPC), and keeps none of it", async () => {
    const { dir, d, account } = await toDownPeer();
    enqueue(d, 0, 30, 10); // memory
    await failedToConnect(d);
    fullFirstSegment(dir);
    expect(await d.drain(10)).toBe(300);
    const s = d.stats();
    expect(d.keptOnDisk).toBe(0);
    expect(s.undelivered).toBe(300);
    expect(s.queuedLines).toBe(0);
    expect(s.disk!.failures).toBe(1);
    account.check();
  });

  it("a drain until the disk is empty ends as soon as it is, even when its last record was lost", async () => {
    const { port, dir, d } = await toDownPeer();
    await failedToConnect(d);
    enqueue(d, 0, 1, 50);
    expect(await d.drain(10)).toBe(0);

    const d2 = diskDest(port, dir, {}, {}, false);
    const account = watchAccount(d2);
    expect(d2.stats().recovered).toBe(50);
    // Damaged after it was found: it is lost when it is read back.
    flipByte(segments(dir)[0]!, H + 3);
    const up = await sink(port);
    d2.start();
    const left = d2.drain(60_000, true);
    await until("closed long before the drain's deadline", () => d2.state === "closed");
    expect(await left).toBe(0);
    const s = d2.stats();
    expect(s.droppedBy.disk_corrupt).toBe(50);
    expect(s.forwarded).toBe(0);
    expect(up.lines).toEqual([]);
    account.check();
  });
});

describe("Destination with a disk queue: recovery", () => {
  it("counts a record damaged on disk as recovered and dropped (disk_corrupt), and delivers the rest in order", async () => {
    const { port, dir, d } = await toDownPeer();
    await failedToConnect(d);
    for (let i = 0; i < 5; i++) {
      enqueue(d, i, i + 1, 40);
      await nextTurn(); // a record each
    }
    expect(await d.drain(10)).toBe(0);
    // The third record's payload.
    flipByte(segments(dir)[0]!, 2 * (H + 40 * LINE) + H + 10);

    const d2 = diskDest(port, dir, {}, {}, false);
    const account = watchAccount(d2);
    const s = d2.stats();
    expect(s.recovered).toBe(200);
    expect(s.droppedBy.disk_corrupt).toBe(40);
    expect(s.queuedLines).toBe(160);
    account.check();
    const up = await sink(port);
    d2.start();
    await up.waitForLines(160);
    expect(numbers(up.lines)).toEqual([...range(0, 80), ...range(120, 200)]);
    await emptied(d2, dir);
    account.check();
  });

  it("close() lets go of the directory (what is gathered is written first)", async () => {
    const { port, dir, d } = await toDownPeer();
    await failedToConnect(d);
    enqueue(d, 0, 3, 10);
    await d.close();
    const d2 = diskDest(port, dir, {}, {}, false);
    expect(d2.stats().recovered).toBe(30);
  });
});

describe("Destination with a disk queue: releaseDisk", () => {
  it("appends memory to the disk and lets the directory go, everything counted as rerouted, for another destination to open", async () => {
    const { port, dir, d, account } = await toDownPeer();
    enqueue(d, 0, 10, 10); // memory
    await failedToConnect(d);
    enqueue(d, 10, 30, 10); // disk
    d.releaseDisk();
    expect(d.disk).toBeNull();
    expect(d.keptOnDisk).toBe(100);
    const s = d.stats();
    expect(s.rerouted).toBe(300);
    expect(s.undelivered).toBe(0);
    expect(s.queuedLines).toBe(0);
    account.check();
    // Nothing new goes to disk any more: memory only.
    enqueue(d, 30, 31, 10);
    expect(d.stats().queuedLines).toBe(10);
    account.check();

    const d2 = diskDest(port, dir, {}, {}, false);
    expect(d2.stats().recovered).toBe(300);
    const up = await sink(port);
    d2.start();
    // The lines d kept in memory, and those d2 recovered, each once.
    await expectOnceEach(up, 310);
    await emptied(d2, dir);
  });
});

describe("Destination with a disk queue: takeDisk", () => {
  it("hands the disk's records over for re-routing, in order, counted as rerouted, and deletes them", async () => {
    const { port, dir, d, account } = await toDownPeer();
    enqueue(d, 0, 10, 10); // memory
    await failedToConnect(d);
    for (let i = 10; i < 60; i++) {
      enqueue(d, i, i + 1, 10);
      if (i % 5 === 0) await nextTurn();
    }
    const got: number[] = [];
    for (;;) {
      const runs = await d.takeDisk(2 * 1024);
      account.check();
      if (runs.length === 0) break;
      for (const r of runs) {
        expect(r.chunk.toString().split("\n").length - 1).toBe(r.lines);
        got.push(...numbers(r.chunk.toString().split("\n").slice(0, -1)));
      }
    }
    expect(got).toEqual(range(100, 600));
    const s = d.stats();
    expect(s.rerouted).toBe(500);
    expect(s.disk!.lines).toBe(0);
    expect(s.queuedLines).toBe(100);
    expect(segments(dir)).toEqual([]);
    account.check();
    // Memory is still there, and delivered when the peer comes.
    const up = await sink(port);
    await expectInOrder(up, 0, 100);
    account.check();
  });

  it("takes nothing while connected, nor once closed", async () => {
    const { up, d } = await toUpPeer(16 * 1024);
    up.pause();
    enqueue(d, 0, 200, 100);
    expect(d.disk!.empty).toBe(false);
    expect(await d.takeDisk(1 << 20)).toEqual([]);
    expect(d.stats().rerouted).toBe(0);
    const left = d.drain(10);
    await until(() => d.state === "closed");
    await up.close();
    expect(await left).toBe(0);
    const held = d.stats().disk!.lines;
    expect(await d.takeDisk(1 << 20)).toEqual([]);
    const s = d.stats();
    expect(s.rerouted).toBe(0);
    expect(s.dropped).toBe(0);
    expect(s.disk!.lines).toBe(held);
  });
});
