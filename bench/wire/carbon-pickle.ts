/**
 * Graphite plaintext lines as carbon-relay sends them over its pickle
 * protocol, for the `wire-in` scenario's sender: each frame is a 4-byte
 * big-endian length and `pickle.dumps(datapoints, protocol=2)` of a list of
 * `(name, (float(timestamp), float(value)))` (carbon's client.py), byte for
 * byte what Python 3 writes (checkAgainstPython):
 *
 *   PROTO 2, EMPTY_LIST, BINPUT 0, then MARK, the items, APPENDS (one item:
 *   the item, APPEND), STOP; an item is BINUNICODE name, BINPUT, BINFLOAT
 *   timestamp, BINFLOAT value, TUPLE2, BINPUT, TUPLE2, BINPUT; memo indices
 *   past 255 are LONG_BINPUT.
 *
 * (dataplane/forward/pickle-encoder.ts, polymur's own output, writes integral
 * timestamps as integers and no memo; this is the input carbon-relay sends,
 * specs/peer-wire-notes.md.)
 */
import { spawnSync } from "node:child_process";

/** carbon's MAX_DATAPOINTS_PER_MESSAGE. */
export const CARBON_MAX_DATAPOINTS = 500;

const PROTO = 0x80;
const EMPTY_LIST = 0x5d;
const BINPUT = 0x71;
const LONG_BINPUT = 0x72;
const MARK = 0x28;
const APPEND = 0x61;
const APPENDS = 0x65;
const STOP = 0x2e;
const BINUNICODE = 0x58;
const BINFLOAT = 0x47;
const TUPLE2 = 0x86;
const NL = 0x0a;
const SP = 0x20;

/** What encodeCarbonPickle made. */
export interface CarbonPickle {
  /** The frames, back to back. */
  bytes: Buffer;
  /** Where each frame ends in `bytes` (its header included). */
  frameEnds: number[];
  /** Datapoints encoded. */
  datapoints: number;
}

/**
 * Encodes `name value timestamp\n` lines (ASCII, one space between fields,
 * as relaybench's gen writes them) as frames of `perFrame` datapoints (the
 * last may hold fewer).
 */
export function encodeCarbonPickle(lines: Buffer, perFrame: number): CarbonPickle {
  if (perFrame < 1 || perFrame > CARBON_MAX_DATAPOINTS) {
    throw new Error(`perFrame must be 1..${CARBON_MAX_DATAPOINTS}, got ${perFrame}`);
  }
  // name + 40 bytes of opcodes at most per datapoint, 12 per frame
  let out = Buffer.allocUnsafe(Math.ceil(lines.length * 1.7) + 64);
  let pos = 0;
  const frameEnds: number[] = [];
  let datapoints = 0;
  let frameStart = -1;
  let inFrame = 0;
  let memo = 0;
  const put = (): void => {
    if (memo < 256) {
      out[pos++] = BINPUT;
      out[pos++] = memo;
    } else {
      out[pos++] = LONG_BINPUT;
      pos = out.writeUInt32LE(memo, pos);
    }
    memo++;
  };
  const close = (): void => {
    out[pos++] = inFrame === 1 ? APPEND : APPENDS;
    out[pos++] = STOP;
    out.writeUInt32BE(pos - frameStart - 4, frameStart);
    frameEnds.push(pos);
    frameStart = -1;
  };
  // An item's bytes are only known once it is written; a one-item frame has
  // no MARK, so the MARK is put in place when the second item comes.
  let markAt = -1;
  for (let start = 0; start < lines.length; ) {
    const nl = lines.indexOf(NL, start);
    if (nl < 0) throw new Error("input does not end with a newline");
    const s1 = lines.indexOf(SP, start);
    const s2 = lines.indexOf(SP, s1 + 1);
    if (s1 < 0 || s2 < 0 || s2 > nl) {
      throw new Error(`not "name value timestamp": ${lines.toString("latin1", start, nl)}`);
    }
    const value = Number(lines.toString("latin1", s1 + 1, s2));
    const ts = Number(lines.toString("latin1", s2 + 1, nl));
    const nameLen = s1 - start;
    if (pos + nameLen + 64 > out.length) {
      const next = Buffer.allocUnsafe(out.length * 2);
      out.copy(next, 0, 0, pos);
      out = next;
    }
    if (frameStart < 0) {
      frameStart = pos;
      pos += 4;
      out[pos++] = PROTO;
      out[pos++] = 2;
      out[pos++] = EMPTY_LIST;
      memo = 0;
      put();
      markAt = pos;
      inFrame = 0;
    }
    if (inFrame === 1) {
      // a second item: the frame is MARK ... APPENDS after all
      out.copy(out, markAt + 1, markAt, pos);
      out[markAt] = MARK;
      pos++;
    }
    out[pos++] = BINUNICODE;
    pos = out.writeUInt32LE(nameLen, pos);
    pos += lines.copy(out, pos, start, s1);
    put();
    out[pos++] = BINFLOAT;
    pos = out.writeDoubleBE(ts, pos);
    out[pos++] = BINFLOAT;
    pos = out.writeDoubleBE(value, pos);
    out[pos++] = TUPLE2;
    put();
    out[pos++] = TUPLE2;
    put();
    inFrame++;
    datapoints++;
    if (inFrame === perFrame) close();
    start = nl + 1;
  }
  if (frameStart >= 0) close();
  return { bytes: out.subarray(0, pos), frameEnds, datapoints };
}

/** What Python's pickle writes for the same lines and frame size (carbon's client.py, Python 3). */
const PYTHON_ENCODER = `
import pickle, struct, sys
n = int(sys.argv[1])
pts = []
for line in sys.stdin.buffer.read().decode().splitlines():
    name, value, ts = line.split()
    pts.append((name, (float(ts), float(value))))
out = sys.stdout.buffer
for i in range(0, len(pts), n):
    data = pickle.dumps(pts[i:i + n], protocol=2)
    out.write(struct.pack("!L", len(data)) + data)
`;

/**
 * Throws unless encodeCarbonPickle writes, for `lines`, the bytes Python 3's
 * pickle writes (frames of `perFrame`; give more than 256 lines per frame to
 * cover LONG_BINPUT, and a count that leaves a one-item frame for APPEND).
 */
export function checkAgainstPython(python: string, lines: Buffer, perFrame: number): void {
  const r = spawnSync(python, ["-c", PYTHON_ENCODER, String(perFrame)], {
    input: lines,
    maxBuffer: 1 << 30,
  });
  if (r.status !== 0) throw new Error(`${python} failed: ${r.stderr?.toString() ?? r.error}`);
  const ours = encodeCarbonPickle(lines, perFrame).bytes;
  if (!ours.equals(r.stdout)) {
    let i = 0;
    while (i < ours.length && ours[i] === r.stdout[i]) i++;
    throw new Error(
      `the bench's pickle differs from Python's at byte ${i} (ours ${ours.length} bytes, Python ${r.stdout.length})`,
    );
  }
}
