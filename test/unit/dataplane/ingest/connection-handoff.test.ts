import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { type FrameHandler, LineFramer } from "../../../../dataplane/ingest/line-framer.ts";
import { PickleFramer } from "../../../../dataplane/ingest/pickle-framer.ts";

// A connection moved to another process takes what its framer held
// (carryOver): pushed into a new framer, followed by the rest of the stream,
// it gives exactly the lines one framer would have given, wherever the cut.

function collect(): FrameHandler & { lines: string[]; rejects: string[] } {
  const lines: string[] = [];
  const rejects: string[] = [];
  return {
    lines,
    rejects,
    segment(buf, start, end) {
      lines.push(...buf.toString("utf8", start, end).split("\n").slice(0, -1));
    },
    reject(reason) {
      rejects.push(reason);
    },
  };
}

type Framer = LineFramer | PickleFramer;

/** Lines and rejects of `stream` cut at `at`: the first part framed by one framer, the rest by a new one. */
function moved(make: (h: FrameHandler) => Framer, stream: Buffer, at: number) {
  const h = collect();
  const first = make(h);
  first.push(stream.subarray(0, at));
  const carry = first.carryOver();
  expect(carry).not.toBe(false);
  const second = make(h);
  if (carry !== null && carry !== false) second.push(carry);
  second.push(stream.subarray(at));
  second.end();
  return h;
}

function whole(make: (h: FrameHandler) => Framer, stream: Buffer) {
  const h = collect();
  const f = make(h);
  f.push(stream);
  f.end();
  return h;
}

describe("carryOver: a framer's state moves with its connection", () => {
  it("plaintext: every cut, inside a line or between lines, gives the same lines and rejects", () => {
    const stream = Buffer.from("a.b 1 1700000000\nbad line\nc.d 2.5 1700000001\ne 3 1700000002\n");
    const make = (h: FrameHandler) => new LineFramer(h);
    const want = whole(make, stream);
    expect(want.lines).toHaveLength(3);
    for (let at = 0; at <= stream.length; at++) {
      const got = moved(make, stream, at);
      expect({ at, lines: got.lines, rejects: got.rejects }).toEqual({
        at,
        lines: want.lines,
        rejects: want.rejects,
      });
    }
  });

  it("pickle: every cut, inside a header or a message, gives the same lines", () => {
    const py = `import pickle,struct,sys
for pts in ([("a.b", (1700000000, 1.5)), ("c", (1700000001, 2))], [("z", (1700000002, -1))]):
    p = pickle.dumps(pts, protocol=2)
    sys.stdout.buffer.write(struct.pack("!L", len(p)) + p)`;
    const stream = execFileSync("python3", ["-c", py]);
    const make = (h: FrameHandler) => new PickleFramer(h);
    const want = whole(make, stream);
    expect(want.lines).toEqual(["a.b 1.5 1700000000", "c 2 1700000001", "z -1 1700000002"]);
    for (let at = 0; at <= stream.length; at++) {
      expect({ at, lines: moved(make, stream, at).lines }).toEqual({ at, lines: want.lines });
    }
  });

  it("a framer dropping an over-long line cannot move (false): the connection stays", () => {
    const f = new LineFramer(collect(), { maxLineLength: 8 });
    f.push(Buffer.from("much.too.long.a.line"));
    expect(f.carryOver()).toBe(false);
    f.push(Buffer.from(" 1 1700000000\n"));
    expect(f.carryOver()).toBeNull();
  });
});
