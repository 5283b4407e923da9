import { describe, expect, it } from "vitest";
import { IngestCounters } from "../../../../dataplane/ingest/ingest-counters.ts";
import { LineFramer } from "../../../../dataplane/ingest/line-framer.ts";
import type { LineSink } from "../../../../dataplane/ingest/line-sink.ts";
import { REJECT_REASONS } from "../../../../dataplane/ingest/line-validator.ts";

/** A LineSink that keeps every call as it came. */
class Recorder implements LineSink {
  readonly calls: Array<{ buf: Buffer; start: number; end: number; lines: number }> = [];

  write(buf: Buffer, start: number, end: number, lines: number): void {
    this.calls.push({ buf, start, end, lines });
  }

  get text(): string {
    return this.calls.map((c) => c.buf.toString("utf8", c.start, c.end)).join("");
  }
}

describe("IngestCounters", () => {
  it("starts at zero", () => {
    const c = new IngestCounters();
    expect(c.stats(0, false)).toEqual({
      received: 0,
      accepted: 0,
      generated: 0,
      rejected: Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])),
      connections: 0,
      connectionsTotal: 0,
      connectionsRefused: 0,
      connectionsIdleClosed: 0,
      bytesIn: 0,
      droppedPaused: 0,
      paused: false,
      listeners: [],
    });
    expect(c.recentRejects()).toEqual([]);
  });

  it("handler.segment counts the lines accepted and passes the run on as it is (zero copy)", () => {
    const c = new IngestCounters();
    const sink = new Recorder();
    const h = c.handler(sink, "10.0.0.1");
    const buf = Buffer.from("skip\na 1 1\nb 2 2\n");
    h.segment(buf, 5, buf.length, 2);
    h.segment(buf, 5, 11, 1);
    expect(c.accepted).toBe(3);
    expect(c.stats(0, false)).toMatchObject({ received: 3, accepted: 3, generated: 0 });
    expect(sink.calls).toHaveLength(2);
    expect(sink.calls[0]).toEqual({ buf, start: 5, end: buf.length, lines: 2 });
    expect(sink.calls[0]?.buf).toBe(buf);
    expect(sink.calls[1]).toEqual({ buf, start: 5, end: 11, lines: 1 });
  });

  it("handler.reject counts and samples the line with the handler's source; nothing reaches the sink", () => {
    const c = new IngestCounters();
    const sink = new Recorder();
    c.handler(sink, "udp:10.0.0.2").reject(
      "bad_value",
      "value is not a number",
      Buffer.from("a x 1"),
    );
    c.handler(sink, "10.0.0.3").reject("field_count", "2 fields", Buffer.from("a 1"));
    expect(sink.calls).toEqual([]);
    expect(c.accepted).toBe(0);
    // Received counts every line read, rejected ones included.
    expect(c.stats(0, false)).toMatchObject({ received: 2, accepted: 0 });
    expect(c.rejects.counts.bad_value).toBe(1);
    expect(c.rejects.counts.field_count).toBe(1);
    expect(c.recentRejects().map((s) => [s.source, s.reason, s.detail, s.line])).toEqual([
      ["10.0.0.3", "field_count", "2 fields", "a 1"],
      ["udp:10.0.0.2", "bad_value", "value is not a number", "a x 1"],
    ]);
  });

  it("handlers of several sources share one set of counters", () => {
    const c = new IngestCounters();
    const a = new Recorder();
    const b = new Recorder();
    const buf = Buffer.from("m 1 1\n");
    c.handler(a, "x").segment(buf, 0, buf.length, 1);
    c.handler(b, "y").segment(buf, 0, buf.length, 1);
    expect(c.accepted).toBe(2);
    expect(a.calls).toHaveLength(1);
    expect(b.calls).toHaveLength(1);
  });

  it("stats() reports the counters, the given connections and paused, and a copy of the reject counts", () => {
    const c = new IngestCounters();
    c.accepted = 10;
    c.generated = 4;
    c.bytesIn = 400;
    c.connectionsTotal = 5;
    c.connectionsRefused = 1;
    c.droppedPaused = 2;
    c.handler(new Recorder(), "s").reject("bad_name", "", Buffer.from("?"));
    const s = c.stats(3, true);
    expect(s).toMatchObject({
      // Every line: accepted (generated among them), rejected, dropped while paused.
      received: 10 + 1 + 2,
      accepted: 10,
      generated: 4,
      bytesIn: 400,
      connections: 3,
      connectionsTotal: 5,
      connectionsRefused: 1,
      droppedPaused: 2,
      paused: true,
    });
    expect(s.rejected.bad_name).toBe(1);
    s.rejected.bad_name = 99;
    expect(c.rejects.counts.bad_name).toBe(1);
  });

  it("with a LineFramer: valid runs to the sink, rejects counted with the source, between them", () => {
    const c = new IngestCounters();
    const sink = new Recorder();
    const framer = new LineFramer(c.handler(sink, "10.0.0.7"));
    const input = [
      "a.b 1 1700000000",
      "c.d 2 1700000000",
      "bad",
      "e.f 3 1700000000",
      "g.h nan 1700000000",
      "i.j 4 1700000000",
      "",
    ].join("\n");
    // Split mid-line, as a socket would.
    const buf = Buffer.from(input);
    framer.push(buf.subarray(0, 20));
    framer.push(buf.subarray(20));
    framer.end();
    expect(sink.text).toBe(
      "a.b 1 1700000000\nc.d 2 1700000000\ne.f 3 1700000000\ni.j 4 1700000000\n",
    );
    expect(sink.calls.reduce((n, x) => n + x.lines, 0)).toBe(4);
    expect(c.accepted).toBe(4);
    expect(c.stats(0, false).received).toBe(6);
    expect(c.rejects.counts.field_count).toBe(1);
    expect(c.rejects.counts.nan_value).toBe(1);
    expect(c.recentRejects().map((s) => [s.reason, s.line, s.source])).toEqual([
      ["nan_value", "g.h nan 1700000000", "10.0.0.7"],
      ["field_count", "bad", "10.0.0.7"],
    ]);
  });

  it("generate() writes polymur's own lines to the sink, counted as received, accepted and generated", () => {
    const c = new IngestCounters();
    const sink = new Recorder();
    c.handler(sink, "s").segment(Buffer.from("a 1 1\n"), 0, 6, 1);
    c.generate(sink, "polymur.x 1 1700000000\npolymur.y 2 1700000000\n");
    expect(sink.text).toBe("a 1 1\npolymur.x 1 1700000000\npolymur.y 2 1700000000\n");
    expect(sink.calls.at(-1)?.lines).toBe(2);
    expect([c.accepted, c.generated]).toEqual([3, 2]);
    expect(c.stats(0, false)).toMatchObject({ received: 3, accepted: 3, generated: 2 });
    // Self-metrics are not sender traffic: no bytes in.
    expect(c.bytesIn).toBe(0);
  });

  it("generate() with no text writes and counts nothing", () => {
    const c = new IngestCounters();
    const sink = new Recorder();
    c.generate(sink, "");
    expect(sink.calls).toEqual([]);
    expect(c.stats(0, false)).toMatchObject({ received: 0, accepted: 0, generated: 0 });
  });
});
