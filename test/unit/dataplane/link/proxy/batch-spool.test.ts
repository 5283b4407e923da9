import {
  appendFileSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../../../../common/logger.ts";
import { BatchSpool } from "../../../../../dataplane/link/proxy/batch-spool.ts";

const log = createLogger({ level: "silent" });
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dir(): string {
  const d = mkdtempSync(path.join(tmpdir(), "polymur-spool-"));
  dirs.push(d);
  return d;
}

const payload = (seq: number, size = 1000): Buffer => Buffer.alloc(size, seq % 251);

describe("BatchSpool", () => {
  it("recovers every batch not yet done, with a stable proxy id and seqs never reused", async () => {
    const d = dir();
    const a = BatchSpool.open(d, { log, segmentBytes: 4096 });
    expect(a.recovered).toEqual([]);
    expect(a.nextSeq).toBe(1);
    for (let seq = 1; seq <= 20; seq++) a.spool.append(seq, 3, seq, 1000 * seq, payload(seq));
    a.spool.release(7);
    expect(await a.spool.read({ segment: 9, offset: 29 + 3 * (29 + 1000) }, 1000)).toEqual(
      payload(12),
    );
    a.spool.close();

    const b = BatchSpool.open(d, { log, segmentBytes: 4096 });
    expect(b.proxyId).toBe(a.proxyId);
    expect(b.recovered.map((r) => r.seq)).toEqual(Array.from({ length: 13 }, (_, i) => i + 8));
    expect(b.recovered[0]).toMatchObject({ compression: 3, lines: 8, rawBytes: 8000, size: 1000 });
    for (const r of b.recovered) expect(await b.spool.read(r.loc, r.size)).toEqual(payload(r.seq));
    expect(b.nextSeq).toBe(21);
    // Everything done: segments go, the done mark keeps seqs from being reused.
    b.spool.release(20);
    expect(b.spool.bytes).toBe(0);
    b.spool.close();
    expect(readdirSync(d).filter((f) => f.endsWith(".spool"))).toEqual([]);
    const c = BatchSpool.open(d, { log });
    expect(c.nextSeq).toBe(21);
    c.spool.close();
  });

  it("cuts off a torn record at the end (a crash in the middle of a write)", () => {
    const d = dir();
    const a = BatchSpool.open(d, { log });
    for (let seq = 1; seq <= 3; seq++) a.spool.append(seq, 1, 1, 1000, payload(seq));
    a.spool.close();
    const seg = path.join(d, readdirSync(d).find((f) => f.endsWith(".spool"))!);
    const whole = statSync(seg).size;
    appendFileSync(seg, Buffer.from([0x50, 0x4d, 0x42, 0x31, 0xff])); // half a header
    const b = BatchSpool.open(d, { log });
    expect(b.recovered.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(statSync(seg).size).toBe(whole);
    b.spool.close();
    // A corrupted payload (bad crc) ends the segment there.
    const buf = readFileSync(seg);
    buf[whole - 10] = (buf[whole - 10] ?? 0) ^ 0xff;
    writeFileSync(seg, buf);
    const c = BatchSpool.open(d, { log });
    expect(c.recovered.map((r) => r.seq)).toEqual([1, 2]);
    c.spool.close();
  });

  it("refuses a directory another live proxy holds, takes over a dead one's", () => {
    const d = dir();
    const a = BatchSpool.open(d, { log });
    writeFileSync(path.join(d, "lock"), "1"); // pid 1 is alive
    expect(() => BatchSpool.open(d, { log })).toThrow(/in use by process 1/);
    writeFileSync(path.join(d, "lock"), "999999999"); // no such process
    const b = BatchSpool.open(d, { log });
    b.spool.close();
    a.spool.close();
  });
});
