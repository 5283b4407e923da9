import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  encodePickleFrames,
  PICKLE_FRAME_TARGET_BYTES,
  PICKLE_MAX_DATAPOINTS,
  PICKLE_MAX_FRAME_BYTES,
} from "../../../../dataplane/forward/pickle-encoder.ts";

/** One datapoint as Python read it: name, timestamp (int as decimal text, float as IEEE hex), value (IEEE hex). */
type Point = [name: string, ts: string, value: string];

interface Frame {
  /** The declared length. */
  length: number;
  /** Byte for byte what `pickletools.optimize(pickle.dumps(items, protocol=2))` gives. */
  sameAsPython: boolean;
  points: Point[];
}

/**
 * Real Python: splits `bytes` into frames (4-byte big-endian length, then a
 * pickle) and unpickles each with an Unpickler that refuses every global, as
 * carbon's SafeUnpickler does. Every item must be `(str, (int|float, float))`.
 */
const DECODE = `
import json, pickle, pickletools, struct, sys
class Safe(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("global %s.%s" % (module, name))
data = sys.stdin.buffer.read()
frames = []
i = 0
while i < len(data):
    (n,) = struct.unpack("!I", data[i:i + 4])
    body = data[i + 4:i + 4 + n]
    assert len(body) == n, "short frame"
    i += 4 + n
    items = Safe(__import__("io").BytesIO(body)).load()
    assert type(items) is list
    points = []
    for item in items:
        name, (ts, value) = item
        assert type(item) is tuple and type(item[1]) is tuple and type(name) is str, repr(item)
        assert type(value) is float, repr(value)
        if type(ts) is int:
            t = "int:" + str(ts)
        else:
            assert type(ts) is float, repr(ts)
            t = "float:" + struct.pack(">d", ts).hex()
        points.append([name, t, struct.pack(">d", value).hex()])
    ref = pickletools.optimize(pickle.dumps(items, protocol=2))
    frames.append({"length": n, "sameAsPython": ref == body, "points": points})
print(json.dumps(frames))
`;

function pythonDecode(bytes: Buffer): Frame[] {
  const r = spawnSync("python3", ["-c", DECODE], { input: bytes, maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return JSON.parse(String(r.stdout)) as Frame[];
}

const f64 = (n: number): string => {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(n);
  return b.toString("hex");
};
const int = (v: bigint | number): string => `int:${BigInt(v)}`;
const float = (n: number): string => `float:${f64(n)}`;

/** Encodes `text`, decodes it with Python, and returns the frames and the counts. */
function roundTrip(text: string | Buffer) {
  const enc = encodePickleFrames(Buffer.isBuffer(text) ? text : Buffer.from(text));
  const frames = enc.bytes.length === 0 ? [] : pythonDecode(enc.bytes);
  expect(frames).toHaveLength(enc.frames);
  for (const f of frames) {
    expect(f.length).toBeLessThanOrEqual(PICKLE_MAX_FRAME_BYTES);
    if (f.points.length >= 2) expect(f.sameAsPython).toBe(true);
  }
  return { ...enc, frames, points: frames.flatMap((f) => f.points) };
}

describe("encodePickleFrames", () => {
  it("encodes each line as (name, (timestamp, value)), byte for byte as Python's pickle protocol 2", () => {
    const r = roundTrip("a.b.c 1.5 1700000000\nd.e 42 1700000060\nf -0.25 1700000120\n");
    expect(r).toMatchObject({ encoded: 3, skipped: 0 });
    expect(r.frames).toHaveLength(1);
    expect(r.points).toEqual([
      ["a.b.c", int(1700000000), f64(1.5)],
      ["d.e", int(1700000060), f64(42)],
      ["f", int(1700000120), f64(-0.25)],
    ]);
  });

  it("a single datapoint makes a valid frame too", () => {
    const r = roundTrip("only.one 7 1700000000\n");
    expect(r.points).toEqual([["only.one", int(1700000000), f64(7)]]);
  });

  it("timestamps: each integer width (BININT1/2, BININT, LONG1 for big ones), fractions as floats", () => {
    const ts = [
      ["0", int(0)],
      ["255", int(255)],
      ["256", int(256)],
      ["65535", int(65535)],
      ["65536", int(65536)],
      ["2147483647", int(2147483647)],
      ["2147483648", int(2147483648)],
      ["4294967296", int(4294967296)],
      ["-1", int(-1)],
      ["-2147483648", int(-2147483648)],
      ["-2147483649", int(-2147483649)],
      ["9223372036854775808", int(9223372036854775808n)],
      ["123456789012345678901234567890", int(123456789012345678901234567890n)],
      ["-123456789012345678901234567890", int(-123456789012345678901234567890n)],
      ["1_700_000_000", int(1700000000)],
      ["1e20", int(100000000000000000000n)],
      ["1700000000.0", int(1700000000)],
      ["+1700000000", int(1700000000)],
      ["1700000000.5", float(1700000000.5)],
      ["1.25e9", int(1250000000)],
      ["0.001", float(0.001)],
      ["-0.5", float(-0.5)],
    ] as const;
    const r = roundTrip(ts.map(([t], i) => `m.${i} 1 ${t}\n`).join(""));
    expect(r.skipped).toBe(0);
    expect(r.points.map((p) => p[1])).toEqual(ts.map(([, want]) => want));
    // And Python reads the same number from the text (carbon float()s both).
    expect(r.points.map((p) => p[0])).toEqual(ts.map((_, i) => `m.${i}`));
  });

  it("values: every spelling Python's float() takes, as doubles", () => {
    const values = [
      ["1.5", 1.5],
      ["-0", -0],
      ["0.1", 0.1],
      [".5", 0.5],
      ["5.", 5],
      ["1e308", 1e308],
      ["1e400", Infinity],
      ["4.9e-324", 4.9e-324],
      ["1_000.5", 1000.5],
      ["+7", 7],
      ["inf", Infinity],
      ["-Infinity", -Infinity],
      ["123456789012345678901234567890", 1.2345678901234568e29],
    ] as const;
    const r = roundTrip(values.map(([v], i) => `v.${i} ${v} 1700000000\n`).join(""));
    expect(r.skipped).toBe(0);
    expect(r.points.map((p) => p[2])).toEqual(values.map(([, n]) => f64(n)));
  });

  it("unicode names (UTF-8), tagged names whole, any Python whitespace between fields", () => {
    const r = roundTrip(
      [
        "métrique.température 1 1700000000",
        "温度.東京 2 1700000000",
        "emoji.🚀.x 3 1700000000",
        "disk.used;host=a;dc=eu-west 4 1700000000",
        "tabs\t5\t\t1700000000",
        "spaces   6    1700000000",
        "ideographic\u30007\u3000\u00a01700000000",
        "  surrounded 8 1700000000 \r",
      ]
        .map((l) => `${l}\n`)
        .join(""),
    );
    expect(r.skipped).toBe(0);
    expect(r.points).toEqual([
      ["métrique.température", int(1700000000), f64(1)],
      ["温度.東京", int(1700000000), f64(2)],
      ["emoji.🚀.x", int(1700000000), f64(3)],
      ["disk.used;host=a;dc=eu-west", int(1700000000), f64(4)],
      ["tabs", int(1700000000), f64(5)],
      ["spaces", int(1700000000), f64(6)],
      ["ideographic", int(1700000000), f64(7)],
      ["surrounded", int(1700000000), f64(8)],
    ]);
  });

  it(`splits at ${PICKLE_MAX_DATAPOINTS} datapoints per frame, in order`, () => {
    const n = 2 * PICKLE_MAX_DATAPOINTS + 234;
    let text = "";
    for (let i = 0; i < n; i++) text += `s.${i} ${i} ${1700000000 + i}\n`;
    const r = roundTrip(text);
    expect(r).toMatchObject({ encoded: n, skipped: 0 });
    expect(r.frames.map((f) => f.points.length)).toEqual([500, 500, 234]);
    expect(r.points).toEqual(
      Array.from({ length: n }, (_, i) => [`s.${i}`, int(1700000000 + i), f64(i)]),
    );
  });

  it("keeps frames well under the receiver's 1 MiB with long names: fewer datapoints per frame", () => {
    const name = (i: number) => `${"n".repeat(16_000)}.${i}`;
    let text = "";
    for (let i = 0; i < 100; i++) text += `${name(i)} ${i} 1700000000\n`;
    const r = roundTrip(text);
    expect(r.encoded).toBe(100);
    expect(r.frames.length).toBeGreaterThan(1);
    for (const f of r.frames) expect(f.length).toBeLessThanOrEqual(PICKLE_FRAME_TARGET_BYTES);
    expect(r.points.map((p) => p[0])).toEqual(Array.from({ length: 100 }, (_, i) => name(i)));
  });

  it("skips and counts lines that do not parse or could never fit a frame; a trailing piece is not a line", () => {
    const huge = "h".repeat(PICKLE_MAX_FRAME_BYTES);
    const r = roundTrip(
      [
        "ok.1 1 1700000000\n",
        "\n",
        "two fields\n",
        "four 1 2 3\n",
        "bad.value x 1700000000\n",
        "bad.ts 1 soon\n",
        "inf.ts 1 inf\n",
        "0x.value 0x10 1700000000\n",
        `${huge} 1 1700000000\n`,
        "ok.2 2 1700000000\n",
        "no.newline 3 1700000000",
      ].join(""),
    );
    expect(r).toMatchObject({ encoded: 2, skipped: 8 });
    expect(r.points).toEqual([
      ["ok.1", int(1700000000), f64(1)],
      ["ok.2", int(1700000000), f64(2)],
    ]);
  });

  it("nothing to encode: no frame at all", () => {
    expect(encodePickleFrames(Buffer.alloc(0))).toMatchObject({
      frames: 0,
      encoded: 0,
      skipped: 0,
    });
    expect(encodePickleFrames(Buffer.from("junk\n"))).toMatchObject({
      frames: 0,
      encoded: 0,
      skipped: 1,
    });
    expect(encodePickleFrames(Buffer.from("junk\n")).bytes.length).toBe(0);
  });
});
