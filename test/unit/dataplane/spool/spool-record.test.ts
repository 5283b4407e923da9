import fs, {
  appendFileSync,
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../../../common/logger.ts";
import { SegmentSpool, SpoolReadError } from "../../../../dataplane/spool/segment-spool.ts";
import {
  checkRecord,
  encodeRecordHeader,
  type Hole,
  parseRecord,
  RECORD_HEADER_BYTES,
  readSegment,
  scanSegment,
} from "../../../../dataplane/spool/spool-record.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import {
  failReadsAt,
  flipByte as flip,
  PMB2_HEADER as H,
  spoolPayload as payload,
  spoolSegments as segments,
  spoolTestDirs,
  v1Record,
  v2Record,
} from "../../../fixtures/spool-files.ts";

// The record format and recovery from damage: directly on buffers, and
// through SegmentSpool.open (which is how recovery runs) on damaged files.

const log = createLogger({ level: "silent" });
const dir = spoolTestDirs();
/** The property's many small spools on tmpfs where there is one: its fsyncs cost nothing there. */
const fastTmp = existsSync("/dev/shm") ? "/dev/shm" : undefined;

/** A spool with `n` batches of `size` bytes in one segment (seq i has i lines), closed. */
function filled(n: number, size = 100): { d: string; seg: string } {
  const d = dir();
  const a = SegmentSpool.open(d, { log });
  for (let seq = 1; seq <= n; seq++) a.spool.append(seq, 1, seq, size * 2, payload(seq, size));
  a.spool.close();
  return { d, seg: segments(d)[0]! };
}

/** Records 1..n (seq i: i lines, a 100-byte body), one after the other. */
function segmentOf(n: number): Buffer {
  return Buffer.concat(
    Array.from({ length: n }, (_, i) => v2Record(i + 1, i + 1, payload(i + 1, 100))),
  );
}

const scan = (data: Buffer, holes: Hole[] = [], over: { done?: number; upper?: number } = {}) =>
  scanSegment(data, holes, {
    file: "seg",
    firstSeq: 1,
    upper: over.upper ?? Number.POSITIVE_INFINITY,
    done: over.done ?? 0,
  });

describe("the record format", () => {
  it("writes PMB2 as documented: a header of 33 bytes with a crc of its own, then the payload", () => {
    const body = payload(7, 100);
    const h = encodeRecordHeader(7, 1, 7, 200, body);
    expect(RECORD_HEADER_BYTES).toBe(H);
    expect(Buffer.concat([h, body])).toEqual(v2Record(7, 7, body));
  });

  it("parses PMB2 and PMB1 records at any offset", () => {
    const data = Buffer.concat([
      Buffer.from("junk"),
      v2Record(5, 9, payload(5, 100)),
      v1Record(6, 3, payload(6, 40)),
    ]);
    expect(parseRecord(data, 4)).toEqual({
      kind: "record",
      seq: 5,
      compression: 1,
      lines: 9,
      rawBytes: 200,
      size: 100,
      payloadStart: 4 + H,
      end: 4 + H + 100,
    });
    expect(parseRecord(data, 4 + H + 100)).toMatchObject({
      kind: "record",
      seq: 6,
      lines: 3,
      size: 40,
    });
    expect(parseRecord(data, 0)).toEqual({ kind: "none" });
    expect(parseRecord(data, data.length - 3)).toEqual({ kind: "none" });
  });

  it("tells a damaged payload and a torn record (intact header) from a damaged header", () => {
    const rec = v2Record(4, 8, payload(4, 100));
    const payloadHit = Buffer.from(rec);
    payloadHit[H + 50]! ^= 1;
    expect(parseRecord(payloadHit, 0)).toEqual({
      kind: "damaged-payload",
      seq: 4,
      lines: 8,
      size: 100,
      end: H + 100,
    });
    expect(parseRecord(rec.subarray(0, H + 10), 0)).toEqual({ kind: "torn", seq: 4, lines: 8 });
    for (const at of [0, 4, 9, 16, 17, 21, 25, 29]) {
      const headerHit = Buffer.from(rec);
      headerHit[at]! ^= 0x10;
      // The payload crc (29..32) is not covered by the header crc: damage there reads as a damaged payload.
      expect([at, parseRecord(headerHit, 0).kind]).toEqual([
        at,
        at >= 29 ? "damaged-payload" : "none",
      ]);
    }
    // PMB1 has one crc: damage anywhere makes the whole record unreadable.
    const v1 = v1Record(4, 8, payload(4, 100));
    v1[29 + 50]! ^= 1;
    expect(parseRecord(v1, 0)).toEqual({ kind: "none" });
  });

  it("checks a record read back against the batch it should hold", () => {
    const rec = v2Record(1, 1, payload(1, 100));
    expect(checkRecord(rec, 1, 100)).toEqual({ payload: payload(1, 100), detail: null });
    expect(checkRecord(rec, 9, 100).detail).toBe(
      "the record there is seq 1 of 100 bytes, not seq 9 of 100",
    );
    expect(checkRecord(rec, 1, 99).detail).toBe(
      "the record there is seq 1 of 100 bytes, not seq 1 of 99",
    );
    const hit = Buffer.from(rec);
    hit[H + 3]! ^= 1;
    expect(checkRecord(hit, 1, 100).detail).toBe("payload crc mismatch");
    expect(checkRecord(rec.subarray(0, H + 20), 1, 100).detail).toBe(
      `short read (${H + 20} bytes)`,
    );
    hit[9]! ^= 1;
    expect(checkRecord(hit, 1, 100).detail).toBe("no intact record header (crc mismatch)");
  });
});

describe("scanSegment", () => {
  it("keeps every record not yet done and reports damage by its file and offset", () => {
    const rec = H + 100;
    const data = segmentOf(6);
    data[1 * rec + H + 5]! ^= 1; // seq 2's payload
    data[3 * rec + 9]! ^= 1; // seq 4's header
    const s = scan(data, [], { done: 1 });
    expect(s.found.map((b) => [b.seq, b.loc.offset])).toEqual([
      [3, 2 * rec],
      [5, 4 * rec],
      [6, 5 * rec],
    ]);
    expect(s.losses).toEqual([
      {
        reason: "spool_corrupt",
        file: "seg",
        offset: rec,
        bytes: rec,
        seq: 2,
        lines: 2,
        detail: "damaged record (seq 2)",
      },
      {
        reason: "spool_corrupt",
        file: "seg",
        offset: 3 * rec,
        bytes: rec,
        seq: null,
        lines: null,
        detail: "damaged record header (resynchronised on the next record)",
      },
    ]);
    expect([s.lastSeq, s.cutAt]).toEqual([6, null]);
  });

  it("a stretch that can only hold seqs already done, or none at all, is not reported", () => {
    const rec = H + 100;
    const data = segmentOf(4);
    data[1 * rec + 9]! ^= 1; // seq 2's header: between seq 1 and seq 3, and seq 2 is done
    expect(scan(data, [], { done: 2 }).losses).toEqual([]);
    // Junk after the last record, and the next segment starts right after it: no seq fits in between.
    const tail = Buffer.concat([segmentOf(2), Buffer.from("junk")]);
    expect(scan(tail, [], { upper: 3 })).toMatchObject({ losses: [], lastSeq: 2, cutAt: 2 * rec });
    expect(scan(tail).losses).toMatchObject([
      { offset: 2 * rec, bytes: 4, seq: null, lines: null },
    ]);
  });

  it("a record in a hole is unreadable, not corrupt, and says what the read error was", () => {
    const rec = H + 100;
    const data = segmentOf(3);
    data.fill(0, rec + 10, rec + 20); // as readSegment leaves a chunk it could not read
    const s = scan(data, [[rec + 10, rec + 20, "EIO: i/o error, read"]]);
    expect(s.found.map((b) => b.seq)).toEqual([1, 3]);
    expect(s.losses).toMatchObject([
      {
        reason: "spool_unreadable",
        offset: rec,
        seq: null,
        lines: null,
        detail: expect.stringContaining("(read error: EIO: i/o error, read)"),
      },
    ]);
  });
});

describe("readSegment", () => {
  it("reads a segment in chunks: a chunk that fails is a hole, a file that cannot be read at all throws", () => {
    const file = path.join(dir(), "seg");
    const data = Buffer.alloc(200 * 1024, 7);
    writeFileSync(file, data);
    expect(readSegment(file)).toEqual({ data, holes: [] });
    let fail = (pos: number) => pos === 64 * 1024;
    failReadsAt((pos) => fail(pos));
    const r = readSegment(file);
    expect(r.holes).toEqual([[64 * 1024, 128 * 1024, expect.stringMatching(/^EIO: /)]]);
    expect(r.data.subarray(0, 64 * 1024)).toEqual(data.subarray(0, 64 * 1024));
    expect(r.data.subarray(64 * 1024, 128 * 1024).every((b) => b === 0)).toBe(true);
    fail = () => true;
    expect(() => readSegment(file)).toThrow(/every read failed: EIO/);
    expect(() => readSegment(path.join(dir(), "none"))).toThrow(/ENOENT/);
  });
});

describe("recovery of a damaged spool", () => {
  it("cuts off a torn record at the end (a crash in the middle of a write) and counts it", () => {
    const { d, seg } = filled(3, 1000);
    const whole = statSync(seg).size;
    appendFileSync(seg, Buffer.from([0x50, 0x4d, 0x42, 0x32, 0xff])); // half a header
    const b = SegmentSpool.open(d, { log });
    expect(b.recovered.map((r) => r.seq)).toEqual([1, 2, 3]);
    // Its seq and lines are unknown: one loss that could not be counted.
    expect(b.losses).toMatchObject([
      { reason: "spool_corrupt", offset: whole, bytes: 5, seq: null, lines: null },
    ]);
    expect(statSync(seg).size).toBe(whole);
    b.spool.close();
    // A record whose header is whole but whose payload is cut short: counted exactly.
    truncateSync(seg, whole - 10);
    const c = SegmentSpool.open(d, { log });
    expect(c.recovered.map((r) => r.seq)).toEqual([1, 2]);
    expect(c.losses).toMatchObject([{ reason: "spool_corrupt", seq: 3, lines: 3 }]);
    expect(statSync(seg).size).toBe(2 * (H + 1000));
    c.spool.close();
  });

  it("keeps every record after a damaged payload in the middle of a segment, and counts its datapoints", () => {
    const { d, seg } = filled(10);
    const rec = H + 100;
    flip(seg, 3 * rec + H + 50); // seq 4's payload
    const { log: captured, lines } = captureLog();
    const a = SegmentSpool.open(d, { log: captured });
    expect(a.recovered.map((r) => r.seq)).toEqual([1, 2, 3, 5, 6, 7, 8, 9, 10]);
    expect(a.losses).toEqual([
      {
        reason: "spool_corrupt",
        file: seg,
        offset: 3 * rec,
        bytes: rec,
        seq: 4,
        lines: 4,
        detail: "damaged record (seq 4)",
      },
    ]);
    const err = lines.find((l) => l.level === 50 && l.msg.startsWith("spool:"));
    expect(err).toMatchObject({ reason: "spool_corrupt", file: seg, offset: 3 * rec, lines: 4 });
    expect(err?.msg).toContain("its 4 datapoints are lost");
    expect(a.nextSeq).toBe(11);
    // The damaged record stays on disk (later ones are read by offset); the file is not cut.
    expect(statSync(seg).size).toBe(10 * rec);
    a.spool.close();
  });

  it("resynchronises after a damaged header: later records survive, the loss is reported uncounted", () => {
    const { d, seg } = filled(10);
    const rec = H + 100;
    flip(seg, 5 * rec + 9); // seq 6's header (its seq field)
    const { log: captured, lines } = captureLog();
    const a = SegmentSpool.open(d, { log: captured });
    expect(a.recovered.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 7, 8, 9, 10]);
    expect(a.losses).toMatchObject([
      { reason: "spool_corrupt", offset: 5 * rec, bytes: rec, seq: null, lines: null },
    ]);
    expect(lines.find((l) => l.level === 50)?.msg).toContain("their datapoints cannot be counted");
    a.spool.close();
  });

  it("damage across records: the one with a whole header counted, the rest reported, every later one kept", () => {
    const { d, seg } = filled(10);
    const rec = H + 100;
    // From the middle of seq 3's payload to the middle of seq 5's.
    const fd = openSync(seg, "r+");
    writeSync(fd, Buffer.alloc(2 * rec, 0x5a), 0, 2 * rec, 2 * rec + H + 50);
    closeSync(fd);
    const a = SegmentSpool.open(d, { log });
    expect(a.recovered.map((r) => r.seq)).toEqual([1, 2, 6, 7, 8, 9, 10]);
    expect(a.losses).toMatchObject([
      { reason: "spool_corrupt", offset: 2 * rec, seq: 3, lines: 3 },
      { reason: "spool_corrupt", offset: 3 * rec, bytes: 2 * rec, seq: null, lines: null },
    ]);
    a.spool.close();
  });

  it("does not report damage to batches already done", () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log });
    for (let seq = 1; seq <= 10; seq++) a.spool.append(seq, 1, seq, 1, payload(seq, 100));
    a.spool.release(6); // done, but the segment holds 7..10 too: it stays
    a.spool.close();
    const seg = segments(d)[0]!;
    const rec = H + 100;
    flip(seg, 2 * rec + H + 1); // seq 3's payload
    flip(seg, 4 * rec + 9); // seq 5's header: the seqs in between are 5 and 6, both done
    flip(seg, 7 * rec + H + 1); // seq 8's payload: not done
    const b = SegmentSpool.open(d, { log });
    expect(b.recovered.map((r) => r.seq)).toEqual([7, 9, 10]);
    expect(b.losses).toMatchObject([{ seq: 8, lines: 8 }]);
    b.spool.close();
  });

  it("reads spools written before PMB2, and resynchronises past a damaged PMB1 record", async () => {
    const d = dir();
    const rec = (seq: number) => v1Record(seq, seq, payload(seq, 100));
    const seg = path.join(d, `seg-${"1".padStart(16, "0")}.spool`);
    writeFileSync(seg, Buffer.concat([1, 2, 3, 4, 5].map(rec)));
    flip(seg, 2 * (29 + 100) + 29 + 10); // seq 3's payload: PMB1 cannot tell header from payload
    const a = SegmentSpool.open(d, { log });
    expect(a.recovered.map((r) => r.seq)).toEqual([1, 2, 4, 5]);
    expect(a.losses).toMatchObject([{ offset: 2 * 129, bytes: 129, seq: null, lines: null }]);
    for (const r of a.recovered) {
      expect(await a.spool.read(r.loc, r.seq, r.size)).toEqual(payload(r.seq, 100));
    }
    // New records are PMB2, in a segment of their own.
    const loc = a.spool.append(6, 1, 6, 1, payload(6, 100));
    expect(await a.spool.read(loc, 6, 100)).toEqual(payload(6, 100));
    a.spool.close();
    const b = SegmentSpool.open(d, { log });
    expect(b.recovered.map((r) => r.seq)).toEqual([1, 2, 4, 5, 6]);
    b.spool.close();
  });

  it("a part of a segment that cannot be read (EIO) loses only the records in it", () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log });
    const size = 10_000;
    for (let seq = 1; seq <= 20; seq++) a.spool.append(seq, 1, seq, 1, payload(seq, size));
    a.spool.close();
    const seg = segments(d)[0]!;
    const hole = [64 * 1024, 128 * 1024];
    failReadsAt((pos) => pos >= hole[0]! && pos < hole[1]!);
    const b = SegmentSpool.open(d, { log });
    const rec = H + size;
    const outside = (seq: number): boolean =>
      (seq - 1) * rec + rec <= hole[0]! || (seq - 1) * rec >= hole[1]!;
    const intact = Array.from({ length: 20 }, (_, i) => i + 1).filter(outside);
    expect(b.recovered.map((r) => r.seq)).toEqual(intact);
    expect(b.losses.length).toBeGreaterThan(0);
    for (const l of b.losses) {
      expect(l.file).toBe(seg);
      expect(l.reason).toBe("spool_unreadable");
      expect(l.detail).toContain("EIO");
    }
    // The record whose header was read has its datapoints counted.
    const straddling = Math.floor(hole[0]! / rec) + 1;
    expect(b.losses[0]).toMatchObject({ seq: straddling, lines: straddling });
    b.spool.close();
  });
});

/** One way of damaging a segment file. */
type Damage =
  | { kind: "flip"; at: number; xor: number }
  | { kind: "overwrite"; at: number; bytes: number[] }
  | { kind: "truncate"; at: number };

describe("recovery of a damaged spool (property)", () => {
  it("never throws, never hands out a record that does not check out, and keeps every intact record after any damage", {
    timeout: 20_000,
  }, async () => {
    const damage: fc.Arbitrary<Damage> = fc.oneof(
      fc.record({
        kind: fc.constant("flip" as const),
        at: fc.nat(),
        xor: fc.integer({ min: 1, max: 255 }),
      }),
      fc.record({
        kind: fc.constant("overwrite" as const),
        at: fc.nat(),
        bytes: fc.array(fc.nat(255), { minLength: 1, maxLength: 80 }),
      }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 120 }), { minLength: 1, maxLength: 12 }),
        fc.array(damage, { minLength: 0, maxLength: 3 }),
        fc.integer({ min: 0, max: 3 }),
        fc.array(damage, { minLength: 0, maxLength: 2 }),
        async (bodies, damages, doneCount, later) => {
          const d = dir(fastTmp);
          const a = SegmentSpool.open(d, { log });
          const spans: Array<{ seq: number; start: number; end: number; body: Buffer }> = [];
          bodies.forEach((u, i) => {
            const body = Buffer.from(u);
            const loc = a.spool.append(i + 1, 1, i + 1, body.length, body);
            spans.push({ seq: i + 1, start: loc.offset, end: loc.offset + H + body.length, body });
          });
          const done = Math.min(doneCount, bodies.length - 1);
          a.spool.release(done);
          a.spool.close();
          const seg = segments(d)[0]!;
          const data = readFileSync(seg);
          let length = data.length;
          const touched: Array<[number, number]> = [];
          for (const dmg of damages) {
            if (length === 0) break;
            const at = dmg.at % length;
            if (dmg.kind === "flip") {
              data[at] = (data[at] ?? 0) ^ dmg.xor;
              touched.push([at, at + 1]);
            } else if (dmg.kind === "overwrite") {
              const n = Math.min(dmg.bytes.length, length - at);
              for (let k = 0; k < n; k++) data[at + k] = dmg.bytes[k]!;
              touched.push([at, at + n]);
            } else {
              length = at;
            }
          }
          writeFileSync(seg, data.subarray(0, length));

          const b = SegmentSpool.open(d, { log }); // never throws
          try {
            const bySeq = new Map(spans.map((s) => [s.seq, s]));
            for (const r of b.recovered) {
              // Whatever it hands out reads back, and is exactly what was written.
              const s = bySeq.get(r.seq);
              expect(s).toBeDefined();
              expect(r.seq).toBeGreaterThan(done);
              expect(await b.spool.read(r.loc, r.seq, r.size)).toEqual(s!.body);
            }
            const intact = spans.filter(
              (s) =>
                s.seq > done &&
                s.end <= length &&
                touched.every(([x, y]) => y <= s.start || x >= s.end || x === y),
            );
            const got = new Set(b.recovered.map((r) => r.seq));
            for (const s of intact) expect(got.has(s.seq)).toBe(true);
            // A batch not done that damage or a cut in its middle took is
            // reported lost: by its seq, or within a loss that cannot say
            // which seqs it held. (A cut at a record boundary leaves no trace.)
            const lostSeqs = new Set(b.losses.map((l) => l.seq));
            const uncounted = b.losses.filter((l) => l.seq === null).length;
            const missing = spans.filter(
              (s) => s.seq > done && !got.has(s.seq) && !lostSeqs.has(s.seq) && s.start < length,
            );
            if (missing.length > 0) expect(uncounted).toBeGreaterThan(0);
            for (const l of b.losses) expect(l.lines === null || l.lines === l.seq).toBe(true);

            // Damage after recovery: a read gives the batch exactly as written, or a SpoolReadError.
            const live = segments(d)[0];
            if (live !== undefined && later.length > 0) {
              const now = readFileSync(live);
              for (const dmg of later) {
                if (now.length === 0) break;
                const at = dmg.at % now.length;
                if (dmg.kind === "flip") now[at] = (now[at] ?? 0) ^ dmg.xor;
                else if (dmg.kind === "overwrite") Buffer.from(dmg.bytes).copy(now, at);
              }
              const cut = later.find((x) => x.kind === "truncate");
              const keep = cut === undefined ? now.length : cut.at % (now.length + 1);
              const fd = openSync(live, "r+");
              writeSync(fd, now, 0, keep, 0);
              fs.ftruncateSync(fd, keep);
              closeSync(fd);
              for (const r of b.recovered) {
                const got = await b.spool.read(r.loc, r.seq, r.size).catch((e: unknown) => e);
                if (got instanceof SpoolReadError) continue;
                expect(got).toEqual(bySeq.get(r.seq)!.body);
              }
            }
          } finally {
            b.spool.close();
            rmSync(d, { recursive: true, force: true });
          }
        },
      ),
      { numRuns: 400 },
    );
  });
});
