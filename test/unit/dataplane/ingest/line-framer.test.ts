import { describe, expect, it } from "vitest";
import { type FrameHandler, LineFramer } from "../../../../dataplane/ingest/line-framer.ts";
import type { RejectReason } from "../../../../dataplane/ingest/line-validator.ts";

interface Captured {
  out: string;
  lines: number;
  segments: number;
  rejects: Array<{ reason: RejectReason; line: string }>;
}

function capture(): { sink: FrameHandler; got: Captured } {
  const got: Captured = { out: "", lines: 0, segments: 0, rejects: [] };
  const sink: FrameHandler = {
    segment(buf, start, end, lines) {
      const text = buf.subarray(start, end).toString("utf8");
      expect(text.endsWith("\n")).toBe(true);
      expect(text.split("\n").length - 1).toBe(lines);
      got.out += text;
      got.lines += lines;
      got.segments++;
    },
    reject(reason, _detail, line) {
      got.rejects.push({ reason, line: Buffer.from(line).toString("utf8") });
    },
  };
  return { sink, got };
}

const INPUT = [
  "a.b.c 1 1700000000",
  "bad line",
  "x.y 2.5 1700000001",
  "",
  "tagged;k=v 3 1700000002",
  "ütf8.name 4 1700000003",
  "crlf 5 1700000004\r",
  "n nan 1700000005",
  "last 6 1700000006",
].join("\n");

const EXPECTED_OUT = [
  "a.b.c 1 1700000000",
  "x.y 2.5 1700000001",
  "tagged;k=v 3 1700000002",
  "ütf8.name 4 1700000003",
  "crlf 5 1700000004",
  "last 6 1700000006",
].join("\n");

describe("LineFramer", () => {
  it("gives the same result whichever byte the stream is split at", () => {
    const bytes = Buffer.from(INPUT + "\n");
    for (let i = 0; i <= bytes.length; i++) {
      for (const j of [i, Math.min(bytes.length, i + 1), Math.min(bytes.length, i + 7)]) {
        const { sink, got } = capture();
        const f = new LineFramer(sink);
        f.push(Buffer.from(bytes.subarray(0, i)));
        f.push(Buffer.from(bytes.subarray(i, j)));
        f.push(Buffer.from(bytes.subarray(j)));
        f.end();
        expect(got.out, `split at ${i},${j}`).toBe(EXPECTED_OUT + "\n");
        expect(got.rejects.map((r) => r.reason)).toEqual([
          "field_count",
          "empty_line",
          "nan_value",
        ]);
      }
    }
  });

  it("delivers byte-at-a-time input", () => {
    const { sink, got } = capture();
    const f = new LineFramer(sink);
    for (const byte of Buffer.from(INPUT + "\n")) f.push(Buffer.from([byte]));
    expect(got.out).toBe(EXPECTED_OUT + "\n");
  });

  it("passes a run of valid lines as one segment (per chunk, not per line)", () => {
    const { sink, got } = capture();
    const f = new LineFramer(sink);
    const lines = Array.from({ length: 1000 }, (_, i) => `m.${i} ${i} 1700000000\n`).join("");
    f.push(Buffer.from(lines));
    expect(got.segments).toBe(1);
    expect(got.lines).toBe(1000);
  });

  it("a final line without newline is delivered at end of stream", () => {
    const { sink, got } = capture();
    const f = new LineFramer(sink);
    f.push(Buffer.from("a 1 2\nb 3 4"));
    expect(got.out).toBe("a 1 2\n");
    f.end();
    expect(got.out).toBe("a 1 2\nb 3 4\n");
  });

  it("rejects an over-long line, whichever way it arrives, and keeps the next ones", () => {
    const long = "x".repeat(200) + " 1 2";
    for (const split of [1, 50, 100, 150, 204]) {
      const { sink, got } = capture();
      const f = new LineFramer(sink, { maxLineLength: 100 });
      const bytes = Buffer.from(`ok 1 2\n${long}\nafter 3 4\n`);
      f.push(bytes.subarray(0, split));
      f.push(bytes.subarray(split));
      expect(got.out, `split ${split}`).toBe("ok 1 2\nafter 3 4\n");
      expect(got.rejects.map((r) => r.reason)).toEqual(["line_too_long"]);
    }
  });

  it("a line of exactly the limit passes", () => {
    const { sink, got } = capture();
    const f = new LineFramer(sink, { maxLineLength: 20 });
    const line = "abcdefghijklmn 1 23"; // 19 bytes
    f.push(Buffer.from(`${line}0\n`));
    expect(got.out).toBe(`${line}0\n`);
  });

  it("holds at most the limit for an unterminated line", () => {
    const { sink, got } = capture();
    const f = new LineFramer(sink, { maxLineLength: 100 });
    for (let i = 0; i < 100; i++) f.push(Buffer.alloc(1000, 0x61));
    expect(f.pendingBytes).toBe(0);
    expect(got.rejects.length).toBe(1);
    f.push(Buffer.from("\nnext 1 2\n"));
    expect(got.out).toBe("next 1 2\n");
  });

  it("does not keep a view of the caller's chunk for a partial line", () => {
    const { sink, got } = capture();
    const f = new LineFramer(sink);
    const chunk = Buffer.from("a 1 2\npartial 3");
    f.push(chunk);
    chunk.fill(0x7a); // the caller reuses its buffer
    f.push(Buffer.from(" 4\n"));
    expect(got.out).toBe("a 1 2\npartial 3 4\n");
  });
});
