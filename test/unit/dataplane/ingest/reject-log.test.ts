import { describe, expect, it } from "vitest";
import { IngestCounters } from "../../../../dataplane/ingest/ingest-counters.ts";
import { LineFramer } from "../../../../dataplane/ingest/line-framer.ts";
import { REJECT_REASONS } from "../../../../dataplane/ingest/line-validator.ts";
import { RejectLog } from "../../../../dataplane/ingest/reject-log.ts";

const b = (s: string): Buffer => Buffer.from(s);

describe("RejectLog", () => {
  it("starts with every reason at 0", () => {
    const log = new RejectLog();
    expect(Object.keys(log.counts)).toEqual([...REJECT_REASONS]);
    for (const r of REJECT_REASONS) expect(log.counts[r]).toBe(0);
    expect(log.total).toBe(0);
    expect(log.recent()).toEqual([]);
  });

  it("counts per reason, and in total", () => {
    const log = new RejectLog();
    log.add("bad_value", "d", b("a x 1"), "s");
    log.add("bad_value", "d", b("a y 1"), "s");
    log.add("field_count", "d", b("a"), "s");
    expect(log.counts.bad_value).toBe(2);
    expect(log.counts.field_count).toBe(1);
    expect(log.counts.bad_timestamp).toBe(0);
    expect(log.total).toBe(3);
  });

  it("keeps a sample with time, reason, detail, source and line", () => {
    const log = new RejectLog();
    const before = Date.now();
    log.add("nan_value", "value is NaN", b("a.b nan 1"), "udp:10.0.0.1");
    const after = Date.now();
    const [s] = log.recent();
    expect(s).toMatchObject({
      reason: "nan_value",
      detail: "value is NaN",
      source: "udp:10.0.0.1",
      line: "a.b nan 1",
    });
    expect(s!.at).toBeGreaterThanOrEqual(before);
    expect(s!.at).toBeLessThanOrEqual(after);
  });

  it("keeps the most recent N, most recent first, and counts all of them", () => {
    const log = new RejectLog(3);
    for (let i = 0; i < 7; i++) log.add("bad_value", `d${i}`, b(`line${i}`), "s");
    expect(log.recent().map((x) => x.line)).toEqual(["line6", "line5", "line4"]);
    expect(log.counts.bad_value).toBe(7);
  });

  it("returns fewer than N while the ring is not full, most recent first", () => {
    const log = new RejectLog(4);
    log.add("bad_value", "", b("one"), "s");
    log.add("bad_name", "", b("two"), "s");
    expect(log.recent().map((x) => [x.line, x.reason])).toEqual([
      ["two", "bad_name"],
      ["one", "bad_value"],
    ]);
  });

  it("keeps the default of 64", () => {
    const log = new RejectLog();
    for (let i = 0; i < 100; i++) log.add("bad_value", "", b(String(i)), "s");
    const r = log.recent();
    expect(r).toHaveLength(64);
    expect(r[0]?.line).toBe("99");
    expect(r[63]?.line).toBe("36");
  });

  it("with a sample size of 0 counts and keeps nothing", () => {
    const log = new RejectLog(0);
    log.add("bad_value", "", b("x"), "s");
    expect(log.total).toBe(1);
    expect(log.recent()).toEqual([]);
  });

  it("takes exactly the bytes of a view, and copies them", () => {
    const log = new RejectLog();
    const buf = b("junk|a.b x 1|junk");
    const view = buf.subarray(5, 12);
    log.add("bad_value", "", view, "s");
    buf.fill(0x21);
    expect(log.recent()[0]?.line).toBe("a.b x 1");
    // A plain Uint8Array view too.
    const u = new TextEncoder().encode("zzzq 1 1zzz").subarray(3, 8);
    log.add("bad_name", "", u, "s");
    expect(log.recent()[0]?.line).toBe("q 1 1");
  });

  it("replaces invalid UTF-8 with U+FFFD", () => {
    const log = new RejectLog();
    log.add("bad_utf8", "", Buffer.from([0x61, 0xff, 0x62, 0xc3]), "s");
    expect(log.recent()[0]?.line).toBe("a\uFFFDb\uFFFD");
    log.add("bad_utf8", "", Buffer.from("é ok"), "s");
    expect(log.recent()[0]?.line).toBe("é ok");
  });
});

describe("RejectLog through the framer: samples are at most 256 bytes", () => {
  function frame(text: Buffer, maxLineLength = 16384): IngestCounters {
    const counters = new IngestCounters();
    const framer = new LineFramer(counters.handler({ write() {} }, "10.0.0.9"), {
      maxLineLength,
    });
    framer.push(text);
    framer.end();
    return counters;
  }

  it("a long invalid line is sampled as its first 256 bytes", () => {
    const line = "n".repeat(600) + " notanumber 1700000000";
    const c = frame(b(line + "\n"));
    expect(c.rejects.counts.bad_value).toBe(1);
    const s = c.recentRejects()[0]!;
    expect(s.line).toBe(line.slice(0, 256));
    expect(s.source).toBe("10.0.0.9");
  });

  it("a line over --max-line-length is sampled as its first 256 bytes", () => {
    const line = "m".repeat(5000) + " 1 1700000000";
    const c = frame(b(line + "\n"), 1000);
    expect(c.rejects.counts.line_too_long).toBe(1);
    expect(c.recentRejects()[0]?.line).toBe("m".repeat(256));
  });

  it("a line over --max-line-length split over chunks is sampled as its first 256 bytes", () => {
    const counters = new IngestCounters();
    const framer = new LineFramer(counters.handler({ write() {} }, "s"), { maxLineLength: 1000 });
    for (let i = 0; i < 10; i++) framer.push(b(String(i % 10).repeat(300)));
    framer.push(b(" 1 1700000000\nok.a 1 1700000000\n"));
    framer.end();
    expect(counters.rejects.counts.line_too_long).toBe(1);
    const line = counters.recentRejects()[0]!.line;
    expect(Buffer.byteLength(line)).toBe(256);
    expect(line).toBe("0".repeat(256));
    expect(counters.accepted).toBe(1);
    expect(counters.stats(0, false).received).toBe(2);
  });

  it("cutting at 256 bytes inside a multi-byte character leaves U+FFFD, never more than 256 bytes of input", () => {
    // 255 ASCII bytes, then "é" (2 bytes): byte 256 is the first half of it.
    const line = "x".repeat(255) + "é".repeat(10) + " v 1700000000";
    const c = frame(b(line + "\n"));
    const s = c.recentRejects()[0]!.line;
    expect(s).toBe("x".repeat(255) + "\uFFFD");
  });
});
