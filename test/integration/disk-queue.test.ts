// Destinations' disk queues (--queue-dir) with real processes. A relay whose
// destination is down writes what comes in to disk, and sends it when the
// destination is back:
//  - in the same process, to a real carbon-cache, every value read back from
//    whisper;
//  - after a SIGTERM while the destination is down (the drain does not wait
//    for it; memory goes to disk), by the next start with another worker
//    count;
//  - after a kill -9 under load, by the next start: what was on disk at the
//    kill arrives, and what can be lost is bounded.
// What the segment files hold is read here as the record format says (PMB2),
// not through the spool's code, to tell the relay's counters and logs apart
// from what is really on disk.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { type CarbonCache, startCarbonCache } from "../fixtures/carbon.ts";
import { freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import {
  type DestinationJson,
  PolymurProcess,
  type StatsJson,
  waitForStats,
} from "../fixtures/polymur.ts";
import { until } from "../fixtures/until.ts";

// ---------------------------------------------------------------------------
// Bookkeeping: whatever a test started is gone after it, even when it failed.

const relays: PolymurProcess[] = [];
/**
 * Worker processes of the relays, with their command lines: a relay killed
 * with -9 leaves them to exit on their own, and a pid is signalled only while
 * it is still the same process.
 */
const workers: Array<{ pid: number; cmdline: string }> = [];
const sinks: LineSink[] = [];
const caches: CarbonCache[] = [];
const senders: SteadySender[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const s of senders.splice(0)) s.close();
  // Relays first: with a disk queue they stop at once even if their
  // destination is gone; SIGKILL after 10 s whatever happens.
  await Promise.all(relays.splice(0).map((p) => p.stop(10_000)));
  for (const w of workers.splice(0)) if (cmdline(w.pid) === w.cmdline) kill(w.pid, "SIGKILL");
  await Promise.all(caches.splice(0).map((c) => c.close()));
  await Promise.all(sinks.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function relay(args: string[]): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args);
  relays.push(p);
  for (const pid of childPids(p.child.pid!)) workers.push({ pid, cmdline: cmdline(pid) });
  return p;
}

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  sinks.push(s);
  return s;
}

function queueDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), "polymur-disk-queue-"));
  dirs.push(d);
  return d;
}

/**
 * A relay's arguments for `destination` with its disk queue in `dir`,
 * memory queues of 256 KiB, and reconnecting at most half a second apart;
 * then `more`.
 */
function diskQueueArgs(destination: string, dir: string, ...more: string[]): string[] {
  return [
    "--destinations",
    destination,
    "--queue-dir",
    dir,
    "--queue-size",
    "256KiB",
    "--backoff-max",
    "0.5",
    ...more,
  ];
}

// ---------------------------------------------------------------------------
// Helpers

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const nowSec = (): number => Math.floor(Date.now() / 1000);
const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {}
}

/** The child processes of `pid` (a relay's workers). */
function childPids(pid: number): number[] {
  try {
    const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" });
    return out
      .split("\n")
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there is none
  }
}

/** The command line of `pid`, or "" when there is no such process. */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
}

/**
 * Whether `pid` is gone, reaped too: a zombie still holds its pid, and a
 * lock file naming it still counts as taken (common/pid-lock.ts).
 */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** The row of the relay's only destination (its processes' rows, and removed ones, merged by id). */
function row(s: StatsJson): DestinationJson {
  expect(s.destinations.length, JSON.stringify(s.destinations)).toBe(1);
  return s.destinations[0]!;
}

/** Lines written to the relay's disk queues and not yet read back, as /stats says. */
function diskLines(s: StatsJson): number {
  return row(s).disk?.lines ?? 0;
}

/** The segment files under a queue directory (every destination, every process). */
function segmentFiles(root: string): string[] {
  let names: string[];
  try {
    names = readdirSync(root, { recursive: true }) as string[];
  } catch {
    return [];
  }
  return names.filter((f) => /^seg-\d{16}\.spool$/.test(path.basename(f))).sort();
}

/** What the segment files of a queue directory hold (see readQueueDir). */
interface OnDisk {
  /** The lines of every intact record not delivered yet, in file order. */
  lines: string[];
  /** Lines of records cut short at a segment's end (a write the kill interrupted). */
  torn: number;
  segments: number;
}

/**
 * Reads every process directory (p<N>) of every destination under a queue
 * directory as the format says (dataplane/spool/spool-record.ts, spelled
 * out here again): records of a 33-byte header (magic "PMB2", payload length
 * u32, seq u64, compression u8, lines u32, raw bytes u32, crc32 of the 25
 * bytes before it, crc32 of the payload; little-endian) and the payload,
 * which for a disk queue (compression 0) is the lines themselves. Records
 * with a seq at or below the directory's done mark (state.json) were
 * delivered. Anything else that does not check out fails the test.
 */
function readQueueDir(root: string): OnDisk {
  const out: OnDisk = { lines: [], torn: 0, segments: 0 };
  const byDir = new Map<string, string[]>();
  for (const f of segmentFiles(root)) {
    const dir = path.join(root, path.dirname(f));
    byDir.set(dir, [...(byDir.get(dir) ?? []), path.join(root, f)]);
  }
  for (const [dir, files] of byDir) {
    let done = 0;
    try {
      done = (JSON.parse(readFileSync(path.join(dir, "state.json"), "utf8")) as { done: number })
        .done;
    } catch {}
    for (const file of files) {
      out.segments++;
      const data = readFileSync(file);
      let off = 0;
      while (off < data.length) {
        const where = `${file} at ${off}`;
        expect(off + 33 <= data.length, `a header cut short: ${where}`).toBe(true);
        expect(data.readUInt32LE(off), `magic: ${where}`).toBe(0x32424d50);
        expect(zlib.crc32(data.subarray(off, off + 25)), `header crc: ${where}`).toBe(
          data.readUInt32LE(off + 25),
        );
        const size = data.readUInt32LE(off + 4);
        const seq = Number(data.readBigUInt64LE(off + 8));
        const lines = data.readUInt32LE(off + 17);
        const end = off + 33 + size;
        if (end > data.length) {
          out.torn += lines; // a torn tail: recovery cuts it off and counts it (disk_corrupt)
          break;
        }
        const payload = data.subarray(off + 33, end);
        expect(data.readUInt8(off + 16), `compression: ${where}`).toBe(0);
        expect(zlib.crc32(payload), `payload crc: ${where}`).toBe(data.readUInt32LE(off + 29));
        if (seq > done) {
          const text = payload.toString("utf8");
          expect(text.endsWith("\n"), `whole lines: ${where}`).toBe(true);
          const got = text.slice(0, -1).split("\n");
          expect(got.length, `line count: ${where}`).toBe(lines);
          out.lines.push(...got);
        }
        off = end;
      }
    }
  }
  return out;
}

/** The lines `expected` lacks or has twice, for a readable failure. */
function compareLines(got: readonly string[], expected: readonly string[]): string {
  const want = new Set(expected);
  const seen = new Set<string>();
  const dup: string[] = [];
  const extra: string[] = [];
  for (const l of got) {
    if (seen.has(l)) dup.push(l);
    seen.add(l);
    if (!want.has(l)) extra.push(l);
  }
  const missing = expected.filter((l) => !seen.has(l));
  return (
    `${got.length} lines, ${expected.length} expected; ${missing.length} missing ` +
    `(${missing.slice(0, 3).join(" | ")}), ${dup.length} twice (${dup.slice(0, 3).join(" | ")}), ` +
    `${extra.length} not sent (${extra.slice(0, 3).join(" | ")})`
  );
}

/**
 * Senders writing at a steady rate: `connections` TCP connections, each
 * writing `perTick` lines every `tickMs`, paced by the clock (a late timer
 * does not lower the rate), `line(c, i)` the i-th line of connection c. It
 * stops after `ticks` ticks, or at stop().
 */
class SteadySender {
  /** Lines written so far, per connection. */
  readonly sent: number[];
  readonly done: Promise<void>;
  readonly #sockets: net.Socket[];
  readonly #perTick: number;
  readonly #line: (c: number, i: number) => string;
  #stopped = false;

  private constructor(
    sockets: net.Socket[],
    o: { perTick: number; tickMs: number; ticks: number; line: (c: number, i: number) => string },
  ) {
    this.#sockets = sockets;
    this.#perTick = o.perTick;
    this.#line = o.line;
    this.sent = sockets.map(() => 0);
    this.done = this.#run(o);
  }

  static async start(
    port: number,
    o: {
      connections: number;
      perTick: number;
      tickMs: number;
      ticks?: number;
      line: (c: number, i: number) => string;
    },
  ): Promise<SteadySender> {
    const sockets = await Promise.all(
      Array.from(
        { length: o.connections },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(port, "127.0.0.1", () => resolve(s));
            s.once("error", reject);
          }),
      ),
    );
    for (const s of sockets) s.on("error", () => {}); // a killed relay resets them
    const sender = new SteadySender(sockets, { ...o, ticks: o.ticks ?? Number.POSITIVE_INFINITY });
    senders.push(sender);
    return sender;
  }

  get total(): number {
    return sum(this.sent);
  }

  async #run(o: { ticks: number; tickMs: number }): Promise<void> {
    const t0 = Date.now();
    for (let k = 0; k < o.ticks && !this.#stopped; k++) {
      this.#tick();
      await sleep(Math.max(0, t0 + (k + 1) * o.tickMs - Date.now()));
    }
  }

  /** One tick: `perTick` more lines on every connection. */
  #tick(): void {
    this.#sockets.forEach((s, c) => {
      let text = "";
      for (let j = 0; j < this.#perTick; j++) text += `${this.#line(c, this.sent[c]!++)}\n`;
      s.write(text);
    });
  }

  /** Stops the clock, and writes one last tick now. */
  lastTick(): void {
    this.stop();
    this.#tick();
  }

  /** Writes no more (synchronous: nothing is written after it returns). */
  stop(): void {
    this.#stopped = true;
  }

  /** Waits for the last tick, then ends the connections once what was written has gone out. */
  async end(): Promise<void> {
    await this.done;
    await Promise.all(this.#sockets.map((s) => new Promise<void>((r) => s.end(r))));
  }

  close(): void {
    this.stop();
    for (const s of this.#sockets) s.destroy();
  }
}

// ---------------------------------------------------------------------------

describe("disk queues: a destination that is down", () => {
  it("a carbon-cache down longer than memory holds: the datapoints wait on disk, then all arrive with their exact values", async () => {
    // A real carbon-cache, stopped before the relay starts: the relay is
    // given its port, and it comes back on that port (the fixture keeps it).
    const cache = await startCarbonCache({ instance: "dq" });
    caches.push(cache);
    await cache.stop();
    const dir = queueDir();
    const p = await relay(diskQueueArgs(cache.destination, dir));

    // 2,000 datapoints/s for 5 s: 20 metrics, one point per metric every
    // 10 ms tick, at timestamp base + tick (distinct, all within the 1 s
    // archive), over 4 connections (metric j on connection j mod 4).
    const connections = 4;
    const perConnection = 5;
    const ticks = 500;
    const metrics = connections * perConnection;
    const base = nowSec() - 1200;
    const metric = (j: number): string => `disk.queue.carbon.m${j}`;
    const value = (j: number, k: number): number => j * 10_000 + k + 0.125;
    const point = (c: number, i: number): [j: number, k: number] => [
      c + connections * (i % perConnection),
      Math.floor(i / perConnection),
    ];
    let bytes = 0;
    const sender = await SteadySender.start(p.port, {
      connections,
      perTick: perConnection,
      tickMs: 10,
      ticks,
      line: (c, i) => {
        const [j, k] = point(c, i);
        const l = `${metric(j)} ${value(j, k)} ${base + k}`;
        bytes += l.length + 1;
        return l;
      },
    });
    await sender.end();
    const total = metrics * ticks;
    expect(sender.total).toBe(total);
    // The premise: more than the memory queue can hold was sent while down.
    expect(bytes).toBeGreaterThan(256 * 1024);

    const down = await waitForStats(
      p,
      (s) => s.datapoints.received === total && row(s).queuedLines === total,
    );
    const d = row(down);
    console.info(`[disk-queue] carbon-cache down, ${bytes} bytes sent: ${JSON.stringify(d)}`);
    expect(d.state).not.toBe("connected");
    expect(d.forwarded).toBe(0);
    expect(d.dropped).toBe(0);
    expect(d.disk?.lines).toBeGreaterThan(0);
    expect(segmentFiles(dir).length).toBeGreaterThan(0);

    await cache.start();
    const up = await waitForStats(
      p,
      (s) => row(s).forwarded === total && row(s).queuedLines === 0,
      30_000,
    );
    const u = row(up);
    expect(u.dropped).toBe(0);
    expect(u.disk?.replayed).toBe(u.disk?.spilled);
    expect(u.disk?.lines).toBe(0);

    for (let j = 0; j < metrics; j++) {
      const expected = new Map(
        Array.from({ length: ticks }, (_, k) => [base + k, value(j, k)] as const),
      );
      const got = await cache.waitForPoints(metric(j), (x) => x.size >= ticks, 30_000);
      expect(got, metric(j)).toEqual(expected);
    }
  });
});

/**
 * A relay whose destination took a connection, read nothing, and died with
 * what the relay had written still in the two kernels' socket buffers; the
 * relay is stopped (SIGTERM) while it is down, and started again with the
 * same --queue-dir and another worker count; then the destination comes
 * back. Checks the exit (prompt, 0), the shutdown line, what is on disk,
 * `recovered`, and that every line the destination never read arrives
 * exactly once (with `noWindow`, --resend-window 0: every line the relay
 * never handed to the dead socket), and the segments are deleted.
 */
async function sigtermWhileDown(noWindow: boolean): Promise<void> {
  const s = await sink();
  s.pause(); // reads nothing, ever, on this first connection
  const port = s.port;
  const dir = queueDir();
  const args = diskQueueArgs(s.address, dir, ...(noWindow ? ["--resend-window", "0"] : []));
  // Far longer than the test: exiting before it shows the drain did not wait.
  const shutdownTimeoutSec = 300;
  const first = await relay([
    ...args,
    "--workers",
    "1",
    "--shutdown-timeout",
    String(shutdownTimeoutSec),
  ]);

  // Lines in order (one connection at a time, each closed before the next).
  const base = nowSec() - 600;
  const sent: string[] = [];
  const send = async (n: number): Promise<void> => {
    const batch = Array.from({ length: n }, (_, k) => {
      const i = sent.length + k;
      return `disk.queue.term.m${i % 100} ${i} ${base + Math.floor(i / 100)}`;
    });
    sent.push(...batch);
    await sendLines(first.port, `${batch.join("\n")}\n`);
  };
  /** The stats once the relay took everything sent and its counters hold still. */
  const settled = async (): Promise<StatsJson> => {
    let prev = "";
    for (;;) {
      const x = await waitForStats(first, (y) => y.datapoints.received === sent.length);
      const now = JSON.stringify([row(x).forwarded, row(x).queuedLines, diskLines(x)]);
      if (now === prev) return x;
      prev = now;
      await sleep(100);
    }
  };

  // Fill the socket buffers (a few MB on loopback), then a little of memory
  // (less than its 256 KiB: nothing goes to disk while connected): batches
  // of 5,000 lines (about 200 KB) until the relay holds some.
  let stuck = await settled();
  while (row(stuck).queuedLines === 0) {
    expect(sent.length, "socket buffers that never fill").toBeLessThan(2_000_000);
    await send(5_000);
    stuck = await settled();
  }
  expect(s.lines.length).toBe(0);
  expect(diskLines(stuck)).toBe(0);
  const inMemory = row(stuck).queuedLines;
  // Lines handed to the socket (a prefix: one connection, in order).
  const written = row(stuck).forwarded;
  expect(written).toBeGreaterThan(0);
  console.info(`[disk-queue] destination not reading: ${JSON.stringify(row(stuck))}`);

  // The destination dies: what the relay wrote to it is in no one's hands.
  // What comes after goes to disk.
  await s.crash();
  await waitForStats(first, (x) => row(x).state !== "connected" && row(x).failures >= 2);
  const later = 20_000;
  await send(later);
  const down = await waitForStats(
    first,
    (x) => x.datapoints.received === sent.length && diskLines(x) === later,
  );
  const d = row(down);
  console.info(`[disk-queue] destination down: ${JSON.stringify(d)}`);
  expect(d.dropped).toBe(0);
  expect(d.forwarded).toBe(written);
  // Memory holds what it held (what was in flight is back in it).
  expect(d.queuedLines - later).toBe(inMemory);
  const onDiskBefore = later;

  const t0 = Date.now();
  first.kill("SIGTERM");
  const code = await Promise.race([first.exited(), sleep(30_000).then(() => "still running")]);
  const elapsedMs = Date.now() - t0;
  console.info(
    `[disk-queue] SIGTERM with the destination down: exit ${code} after ${elapsedMs} ms`,
  );
  // Not the shutdown timeout's 300 s: a dead destination is not waited for.
  expect(code).toBe(0);
  expect(first.logs.find((l) => l.msg.startsWith("shutting down"))?.["deadlineMs"]).toBe(
    shutdownTimeoutSec * 1000,
  );

  // What the lines the destination never read should come to: every one of
  // them, unless the relay had no resend window for those it wrote (they
  // are then lost by the operator's choice, counted as unconfirmed).
  const owed = sent.slice(noWindow ? written : 0);
  const kept = first.logs.filter((l) => typeof l["toDisk"] === "number");
  expect(kept.length, "one shutdown line (one process)").toBe(1);
  const toDisk = kept[0]!["toDisk"];
  const onDisk = kept[0]!["onDisk"];
  console.info(`[disk-queue] shutdown: ${kept[0]!.msg}`);
  // Memory went to disk (what was on disk stayed there): the disk holds them all.
  expect(onDisk).toBe(owed.length);
  expect(toDisk).toBe(owed.length - onDiskBefore);
  const files = readQueueDir(dir);
  expect(files.torn).toBe(0);
  expect(files.lines.length).toBe(owed.length);
  expect(compareLines(files.lines, owed)).toBe(compareLines(owed, owed));

  // Started again with three processes (the queue was process 0's).
  const second = await relay([...args, "--workers", "3"]);
  const recovered = await waitForStats(
    second,
    (x) => row(x).recovered === owed.length && row(x).queuedLines === owed.length,
  );
  expect(row(recovered).dropped).toBe(0);
  s.resume();
  await s.listen(port);
  await s.waitForLines(owed.length, 30_000);
  await waitForStats(
    second,
    (x) => row(x).forwarded === owed.length && row(x).queuedLines === 0,
    30_000,
  );
  // Anything sent twice would be there by now.
  await sleep(1_000);
  // Exactly once: the destination read nothing before it died, so nothing
  // is owed twice; the disk part is released only once written.
  expect(compareLines(s.lines, owed)).toBe(compareLines(owed, owed));
  const after = row(await second.stats());
  expect(after.dropped).toBe(0);
  expect(after.resent).toBe(0);
  await until("the delivered segments deleted", () => segmentFiles(dir).length === 0, 10_000);
}

describe("disk queues: SIGTERM while the destination is down", () => {
  it("--resend-window 0: memory goes to disk, the relay exits at once, and the next start (another worker count) delivers it all, exactly once", async () => {
    await sigtermWhileDown(true);
  });

  // BUG (dataplane/forward/destination.ts, #keepOnDisk: memoryOnlyLines is
  // given `this.#resendWindow.pending` as `skip`): at a shutdown's deadline
  // the lines owed as resends (written to a connection that then failed, so
  // the destination may well not have them) are left out of what goes to
  // disk, and only counted as unconfirmed. A relay stopped while its
  // destination is down loses what sat in the socket buffers when the
  // destination died, although it holds every one of those lines in memory:
  // here about 110,000 datapoints (what the loopback buffers took), of
  // which the destination read none. This test expects them on disk like
  // the rest of memory; it fails until that is fixed.
  it("the default resend window: what the dead destination never read goes to disk too, and arrives after the restart", async () => {
    await sigtermWhileDown(false);
  });
});

describe("disk queues: kill -9 under load", () => {
  it("with --queue-fsync write, what was on disk at the kill arrives after the restart; only the last moments can be lost", async () => {
    const port = await freePort(); // the destination is down until after the restart
    const dir = queueDir();
    // Every process from the start (--workers-min): the kill takes them all.
    const args = diskQueueArgs(
      `127.0.0.1:${port}`,
      dir,
      "--queue-fsync",
      "write",
      "--workers-min",
      "99",
    );
    const p = await relay(args);
    const pids = [p.child.pid!, ...childPids(p.child.pid!)];
    const processes = availableParallelism(); // the default: one per core
    expect(pids.length).toBe(processes);
    // Every process has seen the destination refuse connections before any
    // datapoint comes: none is queued in memory (memory takes a chunk only
    // while the destination is not known to be down).
    await waitForStats(p, (s) => row(s).failures >= 3 * processes);

    // 2,000 datapoints/s over 4 connections (which the processes share),
    // each line distinct: connection c's i-th line says c and i.
    const sender = await SteadySender.start(p.port, {
      connections: 4,
      perTick: 5,
      tickMs: 10,
      line: (c, i) => `disk.queue.kill.c${c}.m${i % 5} ${i} ${nowSec() - 300}`,
    });
    const t0 = Date.now();
    let last: StatsJson | undefined;
    while (Date.now() - t0 < 4_000 || last === undefined || diskLines(last) === 0) {
      await sleep(100);
      last = await p.stats();
    }
    // The kill, right after a last look at /stats and a last tick of the
    // senders: the relay's processes are reading, appending and fsyncing.
    last = await p.stats();
    sender.lastTick();
    for (const pid of pids) kill(pid, "SIGKILL");
    const sent = [...sender.sent];
    const total = sum(sent);
    await until("the relay's processes gone", () => pids.every(gone), 10_000);
    sender.close();

    const snap = row(last);
    const memory = snap.queuedLines - diskLines(last);
    console.info(
      `[disk-queue] kill -9 after ${total} datapoints sent; last /stats: received ` +
        `${last.datapoints.received}, ${JSON.stringify(snap)}`,
    );
    expect(snap.dropped).toBe(0);
    expect(snap.forwarded).toBe(0);
    // Nothing in memory while the destination is down: all of it was written to disk.
    expect(memory).toBe(0);

    // What is on disk after the kill, read as the format says.
    const files = readQueueDir(dir);
    console.info(
      `[disk-queue] on disk after the kill: ${files.lines.length} datapoints in ` +
        `${files.segments} segments, ${files.torn} in a torn record`,
    );

    // Started again, with one process: it recovers its own queue and adopts
    // those of the other processes.
    const q = await relay([...args, "--workers", "1"]);
    // What recovery found: the intact records, and a torn one counted as
    // lost. Queued all along, also while an adopted queue is being read back
    // (the destination is down, but it is read all the same).
    const recovered = await waitForStats(
      q,
      (s) => row(s).recovered === files.lines.length + files.torn,
    );
    const r = row(recovered);
    console.info(`[disk-queue] after the restart: ${JSON.stringify(r)}`);
    expect(r.droppedBy.disk_corrupt).toBe(files.torn);
    expect(r.dropped).toBe(files.torn);
    expect(r.queuedLines).toBe(files.lines.length);
    const s = await sink(port);
    await s.waitForLines(files.lines.length, 30_000);
    await waitForStats(q, (x) => row(x).queuedLines === 0, 30_000);
    await sleep(1_000); // anything sent twice would be there by now
    const after = s.lines.length;
    // Exactly what was on disk, once each (nothing was ever sent before the
    // kill, so nothing can be sent twice).
    expect(compareLines(s.lines, files.lines)).toBe(compareLines(files.lines, files.lines));
    await until("the delivered segments deleted", () => segmentFiles(dir).length === 0, 10_000);

    // Everything /stats counted on disk just before the kill arrived.
    expect(after).toBeGreaterThanOrEqual(diskLines(last));

    // What can be lost is what was not on disk at the kill:
    //  - memory: what was queued there before the destination was seen down
    //    (here none: memory is 0, checked above);
    //  - the disk queue's batch of the event-loop turn under way (records are
    //    gathered for the rest of a turn, then written), with the route
    //    table's lines of that turn;
    //  - what the relay had not read yet (the sockets' buffers).
    // The last two hold only lines the relay had not counted as received at
    // the last look at /stats (a worker reports every second; the primary at
    // once): so total loss <= memory + (sent - received at the last look),
    // i.e. everything the relay had received by then arrives.
    const lost = total - after;
    const bound = memory + (total - last.datapoints.received);
    console.info(
      `[disk-queue] kill -9: sent ${total}, arrived after the restart ${after}, lost ${lost} ` +
        `(bound ${bound}: not yet received at the last /stats); /stats disk.lines then ${diskLines(last)}`,
    );
    expect(lost).toBeLessThanOrEqual(bound);

    // And losses are only at the end of each connection's stream (the last
    // moments before the kill): what arrived of connection c is its first
    // lines, none missing before the last one that arrived.
    const arrived = sent.map(() => new Set<number>());
    for (const l of s.lines) {
      const m = /^disk\.queue\.kill\.c(\d+)\.m\d+ (\d+) /.exec(l);
      expect(m, l).not.toBeNull();
      arrived[Number(m![1])]!.add(Number(m![2]));
    }
    const tails = sent.map((n, c) => {
      const got = arrived[c]!;
      const max = got.size === 0 ? -1 : Math.max(...got);
      expect(got.size, `connection ${c}: a hole before line ${max}`).toBe(max + 1);
      return n - got.size;
    });
    console.info(
      `[disk-queue] kill -9: lines lost at the end of each connection: ${tails.join(", ")}`,
    );
  });
});

describe("disk queues: a worker process killed", () => {
  it("its replacement reopens its disk queue, and what it held arrives", async () => {
    const dir = queueDir();
    const port = await freePort();
    // Both processes from the start (--workers-min): the subject is a worker.
    const p = await relay(
      diskQueueArgs(`127.0.0.1:${port}`, dir, "--workers", "2", "--workers-min", "2"),
    );
    const worker = childPids(p.child.pid!)[0]!;
    expect(worker).toBeGreaterThan(0);
    // Many connections, so that the kernel gives the worker some of them.
    const lines: string[] = [];
    for (let c = 0; c < 20; c++) {
      const batch = Array.from({ length: 100 }, (_, i) => `worker.c${c}.m${i} ${i} 1700000000`);
      lines.push(...batch);
      await sendLines(p.port, `${batch.join("\n")}\n`);
    }
    await until("every line on disk", async () => diskLines(await p.stats()) === lines.length);
    // The worker's own directory holds segments.
    expect(segmentFiles(dir).some((f) => f.includes(`${path.sep}p1${path.sep}`))).toBe(true);
    kill(worker, "SIGKILL");
    await p.waitForLog((l) => /relay worker 1 exited/.test(l.msg), 10_000);
    await until("the worker restarted", () => {
      const now = childPids(p.child.pid!);
      return now.length === 1 && now[0] !== worker;
    });
    for (const pid of childPids(p.child.pid!)) workers.push({ pid, cmdline: cmdline(pid) });
    const up = await sink(port);
    await until("every line delivered", () => up.lines.length >= lines.length, 30_000);
    expect(compareLines(up.lines, lines)).toBe(compareLines(lines, lines));
  });
});
