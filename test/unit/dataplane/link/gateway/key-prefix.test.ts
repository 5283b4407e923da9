import { describe, expect, it } from "vitest";
import type { LineSink } from "../../../../../dataplane/ingest/line-sink.ts";
import { KeyPrefixSink } from "../../../../../dataplane/link/gateway/key-prefix.ts";

/** A LineSink that keeps each call's run as text, with its line count and range. */
class Recorder implements LineSink {
  readonly calls: Array<{ text: string; lines: number; start: number; end: number }> = [];

  write(buf: Buffer, start: number, end: number, lines: number): void {
    this.calls.push({ text: buf.toString("utf8", start, end), lines, start, end });
  }
}

function run(prefix: string, text: string, lines: number): Recorder {
  const r = new Recorder();
  const b = Buffer.from(text);
  new KeyPrefixSink(r, prefix).write(b, 0, b.length, lines);
  return r;
}

describe("KeyPrefixSink", () => {
  it("prefixes one line with `<key>.`", () => {
    const r = run("key", "a.b 1 1700000000\n", 1);
    const want = "key.a.b 1 1700000000\n";
    expect(r.calls).toEqual([{ text: want, lines: 1, start: 0, end: want.length }]);
  });

  it("prefixes every line of a run, in one call downstream", () => {
    const r = run("tenant-a", "a 1 1\nb.c 2 2\nd.e.f 3 3\n", 3);
    expect(r.calls).toHaveLength(1);
    expect(r.calls[0]?.text).toBe("tenant-a.a 1 1\ntenant-a.b.c 2 2\ntenant-a.d.e.f 3 3\n");
    expect(r.calls[0]?.lines).toBe(3);
  });

  it("keeps tags after the name: the prefix goes before the name only", () => {
    const r = run("key", "a.b;dc=eu 1 2\nx;k=v;z=w 3 4\n", 2);
    expect(r.calls[0]?.text).toBe("key.a.b;dc=eu 1 2\nkey.x;k=v;z=w 3 4\n");
  });

  it("passes the line count through as given", () => {
    for (const n of [1, 2, 5]) {
      const text = Array.from({ length: n }, (_, i) => `m${i} ${i} 1700000000\n`).join("");
      const r = run("p", text, n);
      expect(r.calls[0]?.lines).toBe(n);
      expect(r.calls[0]?.text.split("\n").filter((l) => l !== "")).toHaveLength(n);
    }
  });

  it("respects start > 0 and end < length: bytes outside the run are not passed on", () => {
    const b = Buffer.from("junk.before 0 0\na.b 1 1\nc.d 2 2\njunk.after 9 9\n");
    const start = b.indexOf("a.b");
    const end = b.indexOf("junk.after");
    const r = new Recorder();
    new KeyPrefixSink(r, "k").write(b, start, end, 2);
    expect(r.calls).toEqual([
      { text: "k.a.b 1 1\nk.c.d 2 2\n", lines: 2, start: 0, end: "k.a.b 1 1\nk.c.d 2 2\n".length },
    ]);
    // The input is not modified (the sink may keep views of it).
    expect(b.toString()).toBe("junk.before 0 0\na.b 1 1\nc.d 2 2\njunk.after 9 9\n");
  });

  it("copies: the output does not alias the input buffer", () => {
    const b = Buffer.from("a 1 1\n");
    let got: Buffer | null = null;
    const sink: LineSink = {
      write(buf, start, end) {
        got = buf.subarray(start, end);
      },
    };
    new KeyPrefixSink(sink, "k").write(b, 0, b.length, 1);
    b.fill(0x78);
    expect(String(got)).toBe("k.a 1 1\n");
  });

  it("takes a dotted key name as it is", () => {
    const r = run("team.product-A", "cpu 1 1\n", 1);
    expect(r.calls[0]?.text).toBe("team.product-A.cpu 1 1\n");
  });

  it("writes each run separately: one downstream call per upstream call", () => {
    const r = new Recorder();
    const s = new KeyPrefixSink(r, "k");
    const b = Buffer.from("a 1 1\nb 2 2\nc 3 3\n");
    s.write(b, 0, 6, 1);
    s.write(b, 6, 18, 2);
    expect(r.calls.map((c) => [c.text, c.lines])).toEqual([
      ["k.a 1 1\n", 1],
      ["k.b 2 2\nk.c 3 3\n", 2],
    ]);
  });
});
