import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import type { FrameHandler } from "../../../../dataplane/ingest/line-framer.ts";
import { PickleFramer } from "../../../../dataplane/ingest/pickle-framer.ts";

/** A framer's handler that keeps what it was given. */
function collect(): FrameHandler & { lines: string[]; rejects: Array<[string, string]> } {
  const lines: string[] = [];
  const rejects: Array<[string, string]> = [];
  return {
    lines,
    rejects,
    segment(buf, start, end) {
      lines.push(...buf.toString("utf8", start, end).split("\n").slice(0, -1));
    },
    reject(reason, detail) {
      rejects.push([reason, detail]);
    },
  };
}

/** What carbon's senders write: `struct.pack("!L", len) + pickle.dumps(points, protocol)`, by Python itself. */
function frames(points: string, protocol = 2): Buffer {
  const py = `import pickle,struct,sys
p = pickle.dumps(${points}, protocol=${protocol})
sys.stdout.buffer.write(struct.pack("!L", len(p)) + p)`;
  return execFileSync("python3", ["-c", py]);
}

function frame(payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(payload.length, 0);
  return Buffer.concat([h, payload]);
}

describe("PickleFramer", () => {
  it("turns each datapoint of carbon's pickle messages into a validated plaintext line, across any chunking", () => {
    const msg = frames(
      `[("a.b.c", (1700000000, 1.5)), ("x.y", (1700000001, 2)), ("big", (1700000002, 2**70))]`,
    );
    const two = Buffer.concat([msg, frames(`[("z", (1700000003, -0.25))]`, 0)]);
    for (const size of [1, 3, 4, 5, 17, two.length]) {
      const h = collect();
      const f = new PickleFramer(h);
      for (let at = 0; at < two.length; at += size) f.push(two.subarray(at, at + size));
      f.end();
      expect(h.rejects).toEqual([]);
      expect(h.lines).toEqual([
        "a.b.c 1.5 1700000000",
        "x.y 2 1700000001",
        "big 1180591620717411303424 1700000002",
        "z -0.25 1700000003",
      ]);
      expect(f.pendingBytes).toBe(0);
    }
  });

  it("validates each datapoint as a plaintext line: NaN and a bad timestamp are rejected, the rest pass", () => {
    const h = collect();
    const f = new PickleFramer(h);
    f.push(
      frames(
        `[("ok", (1700000000, 1)), ("nan", (1700000000, float("nan"))), ("ok2", (1700000000, 3))]`,
      ),
    );
    expect(h.lines).toEqual(["ok 1 1700000000", "ok2 3 1700000000"]);
    expect(h.rejects.map(([r]) => r)).toEqual(["nan_value"]);
  });

  it("skips a message declared larger than the limit without buffering it, and reads the next one", () => {
    const h = collect();
    const f = new PickleFramer(h, { maxMessageBytes: 64 });
    const big = frame(Buffer.alloc(1000, 0x41));
    const good = frames(`[("after", (1700000000, 7))]`);
    f.push(Buffer.concat([big.subarray(0, 10)]));
    expect(f.pendingBytes).toBe(0);
    f.push(Buffer.concat([big.subarray(10), good]));
    expect(h.rejects).toEqual([
      [
        "pickle_too_large",
        "pickle message of 1000 bytes declared, more than the 64 accepted; skipped",
      ],
    ]);
    expect(h.lines).toEqual(["after 7 1700000000"]);
  });

  it("refuses a message that does not decode, once, and reads the next one", () => {
    const h = collect();
    const f = new PickleFramer(h);
    // GLOBAL os.system: never executed, refused.
    const evil = frame(Buffer.from("cos\nsystem\n(S'true'\ntR.", "latin1"));
    f.push(Buffer.concat([evil, frames(`[("next", (1700000000, 1))]`)]));
    expect(h.rejects).toHaveLength(1);
    expect(h.rejects[0]![0]).toBe("bad_pickle");
    expect(h.rejects[0]![1]).toMatch(/GLOBAL/);
    expect(h.lines).toEqual(["next 1 1700000000"]);
  });

  it("rejects items of another shape one by one, and a message cut short at the end", () => {
    const h = collect();
    const f = new PickleFramer(h);
    f.push(frames(`[("good", (1700000000, 1)), ("bad",), 42]`));
    expect(h.lines).toEqual(["good 1 1700000000"]);
    expect(h.rejects.map(([r]) => r)).toEqual(["bad_pickle", "bad_pickle"]);
    const cut = frames(`[("late", (1700000000, 1))]`);
    f.push(cut.subarray(0, cut.length - 3));
    f.end();
    expect(h.rejects.at(-1)).toEqual([
      "bad_pickle",
      "connection ended 3 bytes short of a " + (cut.length - 4) + "-byte pickle message",
    ]);
  });

  it("rejects a name with a line break instead of splitting it into two lines", () => {
    const h = collect();
    const f = new PickleFramer(h);
    f.push(frames(`[("a\\nb 1 1700000000", (1700000000, 1)), ("c", (1700000000, 2))]`));
    expect(h.lines).toEqual(["c 2 1700000000"]);
    expect(h.rejects).toEqual([["bad_name", "line break in metric name"]]);
  });
});
