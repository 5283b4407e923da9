import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, type TestContext } from "vitest";
import { expectBalanced } from "../fixtures/accounting.ts";
import { datapoints, freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import {
  type DestinationJson,
  type PolymurProcess as Polymur,
  PolymurProcess,
  type StatsJson,
  waitForStats,
} from "../fixtures/polymur.ts";
import { flipByte, PMB2_HEADER, tempDirs } from "../fixtures/spool-files.ts";
import { until } from "../fixtures/until.ts";

// Destinations' disk queues (--queue-dir) when something goes wrong on disk,
// with real polymur processes (the default worker count: the primary and its
// workers each have their own queue, p<N>, in a destination's directory):
// segments damaged while polymur was down, a disk that fills up, and queues
// whose destination left the ring (--eject-after) or the configuration (a
// restart without it: adopted, re-routed in hash-route, delivered otherwise).
// Every datapoint is accounted for: delivered exactly once, or counted.

const processes: Polymur[] = [];
const sinks: LineSink[] = [];
const mounts: string[] = [];
const temp = tempDirs("polymur-disk-queue-");
afterEach(async () => {
  // Processes first: they hold files in the directories (and the mounts).
  for (const p of processes.splice(0)) await p.stop();
  for (const s of sinks.splice(0)) await s.close();
  for (const m of mounts.splice(0)) {
    try {
      execFileSync("umount", [m], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", m], { stdio: "pipe" });
    }
  }
  temp.cleanup();
});

/** Starts a relay (the default worker count) and has afterEach stop it. */
async function relay(args: string[]): Promise<Polymur> {
  const p = await PolymurProcess.relay(args);
  processes.push(p);
  return p;
}

/** Stops a relay now (SIGTERM: what its queues hold stays on disk); afterEach no longer does. */
async function stop(p: Polymur): Promise<void> {
  expect(await p.stop()).toBe(0);
  processes.splice(processes.indexOf(p), 1);
}

/** A sink listening on `port`, closed by afterEach. */
async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  sinks.push(s);
  return s;
}

/** Sends `lines` over `connections` connections, one after another (each lands on one process). */
async function send(port: number, lines: string[], connections: number): Promise<void> {
  const per = Math.ceil(lines.length / connections);
  for (let i = 0; i < lines.length; i += per) {
    await sendLines(port, `${lines.slice(i, i + per).join("\n")}\n`);
  }
}

/** The row of destination `id` in /stats. */
function row(s: StatsJson, id: string): DestinationJson {
  const d = s.destinations.find((x) => x.id === id);
  if (d === undefined) throw new Error(`no row for ${id}: ${JSON.stringify(s)}`);
  return d;
}

/** Whether every line in `got` is one of `sent`, each at most once. */
function noDuplicatesOf(got: readonly string[], sent: readonly string[]): boolean {
  const want = new Set(sent);
  const seen = new Set<string>();
  for (const l of got) {
    if (!want.has(l) || seen.has(l)) return false;
    seen.add(l);
  }
  return true;
}

const sorted = (a: readonly string[]): string[] => [...a].sort();

/**
 * The directory of destination `id` in a queue dir, as docs say it is laid
 * out (spelled out again here, not taken from the source): the id made safe
 * for a file name, a dash, and 8 hex digits of the id's sha256.
 */
function destinationDir(root: string, id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 80);
  return path.join(root, `${safe}-${createHash("sha256").update(id).digest("hex").slice(0, 8)}`);
}

/**
 * A fresh directory on a disk of its own, 2 MiB, to fill up: a tmpfs (a real
 * full disk, ENOSPC). Mounting needs root (CI runs the tests as root); where
 * it is refused, the test is skipped, saying why. Unmounted by afterEach.
 */
function smallDisk(ctx: TestContext): string {
  const dir = temp.make();
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir], { stdio: "pipe" });
  } catch (err) {
    const text = `${(err as Error).message} ${String((err as { stderr?: unknown }).stderr ?? "")}`;
    if (/EPERM|permission denied|not permitted|must be superuser|only root/i.test(text)) {
      ctx.skip(
        `cannot mount a 2 MiB tmpfs to fill up (not root, or no CAP_SYS_ADMIN): ${text.trim()}`,
      );
    }
    throw err;
  }
  mounts.push(dir);
  return dir;
}

/** Fills what is left of the disk `dir` is on with a file of its own (another writer), to the last byte. */
function fillUp(dir: string): void {
  const fd = fs.openSync(path.join(dir, "filler"), "w");
  try {
    for (const size of [64 * 1024, 4096, 1]) {
      const b = Buffer.alloc(size);
      for (;;) {
        try {
          fs.writeSync(fd, b);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw err;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  expect(fs.statfsSync(dir).bavail, "the disk is full").toBe(0);
}

/** Waits until `dir` is gone; fails with what is left in it and the relay's warnings. */
async function removed(dir: string, p: Polymur): Promise<void> {
  try {
    await until(`${dir} is removed`, () => !fs.existsSync(dir), 30_000);
  } catch (err) {
    const left = fs.existsSync(dir) ? fs.readdirSync(dir, { recursive: true }).map(String) : [];
    const warnings = p.logs.filter((l) => l.level !== "info").map((l) => JSON.stringify(l));
    throw new Error(`${(err as Error).message}; left: ${left.join(", ")}\n${warnings.join("\n")}`);
  }
}

/**
 * Destination `dest` comes back: a sink on `port`. Waits until `p` holds
 * nothing more for it (in memory or on disk) and the sink has every
 * datapoint `p` forwarded to it; returns the sink, the stats then and
 * `dest`'s row in them.
 */
async function comesBack(
  p: Polymur,
  port: number,
  dest: string,
): Promise<{ up: LineSink; s: StatsJson; d: DestinationJson }> {
  const up = await sink(port);
  const s = await waitForStats(
    p,
    (x) => row(x, dest).queuedLines === 0 && row(x, dest).disk?.lines === 0,
    60_000,
  );
  const d = row(s, dest);
  await up.waitForLines(d.forwarded, 60_000);
  return { up, s, d };
}

/** A record in a segment file, read as the PMB2 format says (spool-record.ts). */
interface DiskRecord {
  file: string;
  offset: number;
  seq: number;
  lines: number;
  size: number;
  /** The record's payload: whole lines. */
  text: string;
}

/** The segment files of every process's queue under `destDir` (p<N>/seg-*.spool), each oldest first. */
function segmentFiles(destDir: string): string[] {
  const out: string[] = [];
  if (!fs.existsSync(destDir)) return out;
  for (const p of fs.readdirSync(destDir).filter((f) => /^p\d+$/.test(f))) {
    const dir = path.join(destDir, p);
    for (const f of fs
      .readdirSync(dir)
      .filter((x) => /^seg-\d{16}\.spool$/.test(x))
      .sort()) {
      out.push(path.join(dir, f));
    }
  }
  return out;
}

/**
 * The records of a segment file, read byte by byte as the format says:
 * magic "PMB2", payload length u32 at 4, seq u64 at 8, compression u8 at 16,
 * lines u32 at 17, then the payload after the 33-byte header.
 */
function readRecords(file: string): DiskRecord[] {
  const data = fs.readFileSync(file);
  const out: DiskRecord[] = [];
  for (let off = 0; off < data.length; ) {
    expect(data.toString("latin1", off, off + 4), `${file}:${off}: magic`).toBe("PMB2");
    const size = data.readUInt32LE(off + 4);
    const seq = Number(data.readBigUInt64LE(off + 8));
    expect(data.readUInt8(off + 16), `${file}:${off}: compression (none)`).toBe(0);
    const lines = data.readUInt32LE(off + 17);
    const text = data.toString("utf8", off + PMB2_HEADER, off + PMB2_HEADER + size);
    // The header's line count is what the payload holds: the count a loss is counted by.
    expect(text.split("\n").length - 1, `${file}:${off}: lines`).toBe(lines);
    out.push({ file, offset: off, seq, lines, size, text });
    off += PMB2_HEADER + size;
  }
  return out;
}

/** The lines of records. */
function linesOf(records: readonly DiskRecord[]): string[] {
  return records.flatMap((r) => r.text.split("\n").slice(0, -1));
}

describe("disk queue: damage, a full disk, re-routing and adoption", () => {
  it("delivers every intact record after segments were damaged, and counts the damaged record and the torn tail as disk_corrupt", async () => {
    const queueDir = temp.make();
    const port = await freePort();
    const dest = `127.0.0.1:${port}`;
    // --queue-disk-size 8MiB: segments are an eighth of a process's share of
    // it, and 1 MiB at least: 1 MiB here, so several segments of several records.
    const args = ["--destinations", dest, "--queue-dir", queueDir, "--queue-disk-size", "8MiB"];
    const sent = datapoints("damage", 160_000);

    // 1. The destination is down: everything goes to disk, and stays there at SIGTERM.
    // Many small connections: each is read in a turn or two, so records are
    // small and a segment holds many of them.
    const first = await relay(args);
    await send(first.port, sent, 80);
    await waitForStats(first, (s) => s.datapoints.routed === sent.length, 30_000);
    await stop(first);

    const destDir = destinationDir(queueDir, dest);
    expect(fs.readFileSync(path.join(destDir, "destination"), "utf8").trim()).toBe(dest);
    const files = segmentFiles(destDir);
    const bySegment = files.map(readRecords);
    const all = bySegment.flat();
    // Nothing lost so far: every datapoint is in a record on disk, once.
    expect(sorted(linesOf(all))).toEqual(sorted(sent));

    // 2. Damage. A record in the middle of a segment (records before and
    // after it in the same file): a byte of its payload flipped. Another
    // segment: cut in the middle of its last record's payload (a torn tail,
    // as a crash in the middle of a write leaves it).
    const middle = bySegment.findIndex((rs) => rs.length >= 3);
    expect(middle, `a segment with 3 records or more: ${files.join(", ")}`).toBeGreaterThanOrEqual(
      0,
    );
    const torn = bySegment.findIndex((_, i) => i !== middle);
    expect(torn, `a second segment: ${files.join(", ")}`).toBeGreaterThanOrEqual(0);
    const mid = bySegment[middle]!;
    const corrupt = mid[Math.floor(mid.length / 2)]!;
    const tail = bySegment[torn]!.at(-1)!;
    flipByte(corrupt.file, corrupt.offset + PMB2_HEADER + Math.floor(corrupt.size / 2));
    fs.truncateSync(tail.file, tail.offset + PMB2_HEADER + Math.floor(tail.size / 2));
    const intact = all.filter((r) => r !== corrupt && r !== tail);
    const lost = corrupt.lines + tail.lines;

    // 3. Restart with the destination up.
    const sinkUp = await sink(port);
    const second = await relay(args);
    const s = await waitForStats(
      second,
      (x) =>
        x.datapoints.queued === 0 && x.datapoints.forwarded + x.datapoints.dropped === sent.length,
      60_000,
    );
    await sinkUp.waitForLines(sent.length - lost, 60_000);
    // Every datapoint of the intact records arrives, once; nothing else.
    expect(sorted(sinkUp.lines)).toEqual(sorted(linesOf(intact)));
    const d = row(s, dest);
    expect(d.recovered).toBe(sent.length);
    expect(d.forwarded).toBe(sent.length - lost);
    expect(d.droppedBy.disk_corrupt).toBe(lost);
    expect(d.dropped).toBe(lost);
    expect(d.droppedBy.disk_unreadable).toBe(0);
    expect(d.queuedLines).toBe(0);
    expect(s.datapoints.recovered).toBe(sent.length);
    expectBalanced(s.datapoints, s.destinations);

    // The log names each damaged record's file and offset, and what it held.
    for (const r of [corrupt, tail]) {
      const line = second.logs.find((l) => l["file"] === r.file && l["offset"] === r.offset);
      expect(line, `a log line for ${r.file}:${r.offset}`).toBeDefined();
      expect(line!.level).toBe("error");
      expect(line!["reason"]).toBe("spool_corrupt");
      expect(line!["lines"]).toBe(r.lines);
      expect(line!.msg).toContain(`${r.file}:${r.offset}`);
    }
    expect(second.logs.find((l) => l["file"] === tail.file)!.msg).toContain("torn record");
  });

  it("keeps running when the disk is full: the refused lines stay in memory under drop-oldest, and what disk and memory held is delivered", async (ctx) => {
    const queueDir = smallDisk(ctx);
    const port = await freePort();
    const dest = `127.0.0.1:${port}`;
    // About 4.5 MB of datapoints, to a disk of 2 MiB and memory queues of 64 KiB a process.
    const sent = datapoints("full", 200_000);
    const p = await relay([
      "--destinations",
      dest,
      "--queue-dir",
      queueDir,
      "--queue-size",
      "128KiB",
      "--backoff-max",
      "1",
    ]);
    await send(p.port, sent, 10);
    const full = await waitForStats(
      p,
      (s) =>
        s.datapoints.routed === sent.length &&
        (row(s, dest).disk?.failures ?? 0) > 0 &&
        row(s, dest).droppedBy.queue_full > 0,
      30_000,
    );
    const before = row(full, dest);
    expect(before.forwarded).toBe(0);
    expect(before.disk!.spilled).toBeGreaterThan(0);
    // Still running, and answering.
    expect(p.child.exitCode).toBeNull();
    expect((await p.get("/healthz")).status).toBe(200);
    // The failed append is in the log, naming the queue's directory.
    const failed = p.logs.find((l) => l.level === "warn" && /appends keep failing/.test(l.msg));
    expect(failed, p.stdout.slice(-4000)).toBeDefined();
    expect(failed!["destination"]).toBe(dest);
    expect(String(failed!["dir"])).toContain(destinationDir(queueDir, dest));
    expect(String(failed!["err"])).not.toBe("");

    // The destination comes back: what was on disk and in memory arrives.
    const { up, s, d } = await comesBack(p, port, dest);
    expect(d.forwarded).toBeGreaterThan(0);
    expect(d.routed).toBe(sent.length);
    expect(d.routed).toBe(d.forwarded + d.dropped);
    expect(d.dropped).toBe(d.droppedBy.queue_full);
    expect(d.queuedLines).toBe(0);
    expect(d.disk!.replayed).toBe(d.disk!.spilled);
    expect(s.datapoints.queued).toBe(0);
    expect(s.datapoints.routed).toBe(s.datapoints.forwarded + s.datapoints.dropped);
    expectBalanced(s.datapoints, s.destinations);
    // Exactly what was forwarded arrived: lines that were sent, each once.
    await new Promise((r) => setTimeout(r, 500));
    expect(up.lines.length).toBe(d.forwarded);
    expect(noDuplicatesOf(up.lines, sent)).toBe(true);
  });

  it("frees the disk once what it held is delivered, and stops cleanly, even when not one byte is left free on it", async (ctx) => {
    const queueDir = smallDisk(ctx);
    const port = await freePort();
    const dest = `127.0.0.1:${port}`;
    const args = ["--destinations", dest, "--queue-dir", queueDir, "--queue-size", "128KiB"];
    const sent = datapoints("brim", 200_000);
    const p = await relay([...args, "--backoff-max", "1"]);
    await send(p.port, sent, 10);
    await waitForStats(
      p,
      (s) => s.datapoints.routed === sent.length && (row(s, dest).disk?.failures ?? 0) > 0,
      30_000,
    );
    // Another writer takes what the failed appends left free: the disk is full to the last byte.
    fillUp(queueDir);
    const destDir = destinationDir(queueDir, dest);
    expect(segmentFiles(destDir).length).toBeGreaterThan(0);

    const { up, d } = await comesBack(p, port, dest);
    expect(d.routed).toBe(d.forwarded + d.dropped);
    // Delivered: its segments are deleted (the disk is usable again), and
    // the next start sends nothing again.
    const warnings = (): string =>
      p.logs
        .filter((l) => l.level !== "info")
        .map((l) => JSON.stringify(l))
        .join("\n");
    await until(
      "the delivered segments are deleted",
      () => segmentFiles(destDir).length === 0,
      15_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}: ${segmentFiles(destDir).join(", ")}\n${warnings()}`);
    });
    expect((await p.stats()).destinations.find((x) => x.id === dest)!.disk!.bytes).toBe(0);
    // SIGTERM: a clean stop (exit 0), even with the disk still full.
    expect(await p.stop(), p.stdout.slice(-4000)).toBe(0);
    processes.splice(processes.indexOf(p), 1);
    const left = fs.readdirSync(destDir, { recursive: true }).map(String);
    expect(
      left.filter((f) => /\.tmp-\d+$/.test(f)),
      "temp files left behind",
    ).toEqual([]);

    const before = up.lines.length;
    const again = await relay(args);
    await waitForStats(again, (x) => row(x, dest).state === "connected", 30_000);
    // Every process has reported (once a second) what it recovered.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(row(await again.stats(), dest).recovered).toBe(0);
    expect(up.lines.length, "datapoints sent a second time").toBe(before);
    expect(noDuplicatesOf(up.lines, sent)).toBe(true);
  });

  it("hash-route --eject-after: a destination that stays down leaves the ring, and its disk queue is re-routed to the others", async () => {
    const queueDir = temp.make();
    const a = await sink();
    const b = await sink();
    // Instances: in a carbon ring a node is its host and instance, not its port.
    const [aId, bId] = [`${a.address}:a`, `${b.address}:b`];
    const cId = `127.0.0.1:${await freePort()}:c`; // nothing listens there: down from the start
    const sent = datapoints("eject", 40_000);
    // Reconnects 2 to 4 s apart: three failed attempts take at least 4 s,
    // time enough for the datapoints routed to C to be on its disk first.
    const p = await relay([
      "--destinations",
      `${aId},${bId},${cId}`,
      "--distribution",
      "hash-route",
      "--eject-after",
      "3",
      "--backoff-min",
      "4",
      "--backoff-max",
      "4",
      "--queue-dir",
      queueDir,
    ]);
    await send(p.port, sent, 4);
    const s = await waitForStats(
      p,
      (x) => {
        const c = row(x, cId);
        return (
          c.ejected === true &&
          c.routed > 0 &&
          c.rerouted === c.routed &&
          row(x, aId).forwarded + row(x, bId).forwarded === sent.length
        );
      },
      60_000,
    );
    await until(
      "the sinks have every datapoint",
      () => a.lines.length + b.lines.length >= sent.length,
      30_000,
    );
    // Nothing lost, nothing twice.
    expect(sorted([...a.lines, ...b.lines])).toEqual(sorted(sent));
    const c = row(s, cId);
    // What C was routed went to its disk (it was down), and from there to the others.
    expect(c.disk!.spilled).toBe(c.routed);
    expect(c.disk!.lines).toBe(0);
    expect(c.forwarded).toBe(0);
    expect(c.dropped).toBe(0);
    expect(c.queuedLines).toBe(0);
    // A and B: their own share, and C's.
    expect(row(s, aId).routed + row(s, bId).routed).toBe(sent.length);
    expectBalanced(s.datapoints, s.destinations, false);
    expect(
      p.logs.some((l) => l["destination"] === cId && /re-routed over the ring/.test(l.msg)),
      p.stdout.slice(-4000),
    ).toBe(true);
  });

  /**
   * Runs a relay to A (down) and B (up) in `distribution`, and SIGTERMs it
   * once every datapoint is routed and B has what it was routed: what was
   * routed to A is left in A's disk queue. Returns how many datapoints that is.
   * The datapoints go over `connections` connections: 20 (the default) and
   * every process has some (one is left out with odds of 2^-19); 1, and one
   * process has them all.
   */
  async function leaveOnA(
    distribution: string,
    queueDir: string,
    aId: string,
    b: LineSink,
    bId: string,
    sent: string[],
    connections = 20,
    more: string[] = [],
  ): Promise<number> {
    const p = await relay([
      "--destinations",
      `${aId},${bId}`,
      "--distribution",
      distribution,
      "--queue-dir",
      queueDir,
      ...more,
    ]);
    await send(p.port, sent, connections);
    const s = await waitForStats(
      p,
      (x) => x.datapoints.routed === sent.length && row(x, bId).forwarded === row(x, bId).routed,
      30_000,
    );
    const onA = row(s, aId).routed;
    expect(onA).toBeGreaterThan(0);
    await stop(p);
    await b.waitForLines(row(s, bId).routed);
    const records = segmentFiles(destinationDir(queueDir, aId)).flatMap(readRecords);
    expect(records.reduce((n, r) => n + r.lines, 0)).toBe(onA);
    return onA;
  }

  /**
   * leaveOnA in broadcast: a new queue dir, A a free port nothing listens on
   * (`aPort`), B a new sink, `n` datapoints named after `name`.
   */
  async function leaveOnAInBroadcast(
    name: string,
    n: number,
    connections?: number,
    more: string[] = [],
  ) {
    const queueDir = temp.make();
    const aPort = await freePort();
    const aId = `127.0.0.1:${aPort}`;
    const b = await sink();
    const sent = datapoints(name, n);
    const onA = await leaveOnA("broadcast", queueDir, aId, b, b.address, sent, connections, more);
    return { queueDir, aPort, aId, b, sent, onA };
  }

  /**
   * The relay started again on `queueDir` with B only, in broadcast: A's
   * disk queue is adopted, and delivered to A, tried at most a second apart.
   */
  function withoutA(b: LineSink, queueDir: string): Promise<Polymur> {
    return relay(["--destinations", b.address, "--queue-dir", queueDir, "--backoff-max", "1"]);
  }

  it("adopts the disk queue of a destination no longer configured: re-routed over the ring in hash-route", async () => {
    const queueDir = temp.make();
    const aId = `127.0.0.1:${await freePort()}:a`;
    const b = await sink();
    const bId = `${b.address}:b`;
    const sent = datapoints("adopt-hash", 40_000);
    const onA = await leaveOnA("hash-route", queueDir, aId, b, bId, sent);
    expect(b.lines.length).toBe(sent.length - onA);

    // Restarted with B only: A's queues (every process's) are re-routed to B.
    const p = await relay([
      "--destinations",
      bId,
      "--distribution",
      "hash-route",
      "--queue-dir",
      queueDir,
    ]);
    await b.waitForLines(sent.length, 60_000);
    const aDir = destinationDir(queueDir, aId);
    await removed(aDir, p);
    const s = await waitForStats(p, (x) => row(x, aId).rerouted === onA, 30_000);
    expect(sorted(b.lines)).toEqual(sorted(sent));
    const a = row(s, aId);
    expect(a.removed).toBe(true);
    expect(a.recovered).toBe(onA);
    expect(a.forwarded).toBe(0);
    expect(a.dropped).toBe(0);
    expect(a.queuedLines).toBe(0);
    expect(row(s, bId).forwarded).toBe(onA);
    expectBalanced(s.datapoints, s.destinations, false);
    expect(
      p.logs.some((l) => l["action"] === "reroute" && l["destination"] === aId),
      p.stdout.slice(-4000),
    ).toBe(true);
  });

  it("adopts the disk queue of a destination no longer configured: delivered to it in broadcast, once it is up, then removed", async () => {
    const { queueDir, aPort, aId, b, sent, onA } = await leaveOnAInBroadcast(
      "adopt-broadcast",
      40_000,
    );
    expect(onA).toBe(sent.length);
    expect(sorted(b.lines)).toEqual(sorted(sent));

    const p = await withoutA(b, queueDir);
    await p.waitForLog((l) => l["action"] === "deliver" && l["destination"] === aId);
    // A comes up only now: its datapoints wait on disk until then.
    const aDir = destinationDir(queueDir, aId);
    expect(segmentFiles(aDir).length).toBeGreaterThan(0);
    const a = await sink(aPort);
    await a.waitForLines(sent.length, 60_000);
    await removed(aDir, p);
    const s = await waitForStats(p, (x) => row(x, aId).forwarded === onA, 30_000);
    // Delivered once, and B got nothing more.
    await new Promise((r) => setTimeout(r, 500));
    expect(sorted(a.lines)).toEqual(sorted(sent));
    expect(b.lines.length).toBe(sent.length);
    const ra = row(s, aId);
    expect(ra.removed).toBe(true);
    expect(ra.recovered).toBe(onA);
    expect(ra.dropped).toBe(0);
    expect(ra.queuedLines).toBe(0);
    expectBalanced(s.datapoints, s.destinations, false);
  });

  it("removes the directory of a destination no longer configured also where a process's queue for it was empty", async () => {
    // One connection: one process has every datapoint for A; the queue
    // directories the other processes opened for A hold no segment. Every
    // process runs from the start (--workers-min): the subject is the others.
    const { queueDir, aPort, aId, b, sent, onA } = await leaveOnAInBroadcast(
      "adopt-one",
      10_000,
      1,
      ["--workers-min", "99"],
    );
    expect(onA).toBe(sent.length);
    const aDir = destinationDir(queueDir, aId);
    // Every process of the group (one per core) opened a queue for A; one holds segments.
    const opened = fs.readdirSync(aDir).filter((f) => /^p\d+$/.test(f));
    expect(opened.length).toBe(os.availableParallelism());
    expect(new Set(segmentFiles(aDir).map((f) => path.basename(path.dirname(f)))).size).toBe(1);

    const a = await sink(aPort);
    const p = await withoutA(b, queueDir);
    await a.waitForLines(sent.length, 60_000);
    await removed(aDir, p);
    expect(sorted(a.lines)).toEqual(sorted(sent));
  });
});
