/**
 * The `wire-in` scenario's input, made before any relay runs: what
 * relaybench's gen would send, connection by connection, as plaintext lines
 * or as carbon-relay's pickle frames (carbon-pickle.ts), written to a file
 * that bench/wire/sender.ts sends as it is.
 *
 * The lines are gen's: `gen -P` prints its pool (max(K, 262144) lines over K
 * names, capped at N), and connection i of C sends N/C of them starting at
 * pool line i * pool / C, wrapping round, as gen's own connections do
 * (gen.c, main and next_chunk). So the plaintext file holds, per
 * connection, the very bytes gen would write; the pickle file holds the same
 * datapoints in frames of `perUnit` (500, carbon's most, when sending as
 * fast as possible; a fixed rate's per-tick share otherwise, as carbon-relay
 * sends what it has queued).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { encodeCarbonPickle } from "./carbon-pickle.ts";

/** gen.c's MIN_POOL_LINES and MAX_POOL_LINES. */
const MIN_POOL_LINES = 256 * 1024;
const MAX_POOL_LINES = 8 * 1024 * 1024;

/** How the datapoints go on the wire. */
export type Encoding = "plaintext" | "pickle";

/** What makeWorkload writes. */
export interface WorkloadSpec {
  /** relaybench's compiled gen. */
  gen: string;
  /** Datapoints in all. */
  lines: number;
  conns: number;
  /** Distinct names (gen -k). */
  names: number;
  /** gen -s. */
  seed: number;
  encoding: Encoding;
  /** Datapoints per unit: a pickle frame, or a group of lines; the sender's fixed rate sends whole units. */
  perUnit: number;
}

/** One connection's part of the file (workload index, JSON). */
export interface ConnSlice {
  /** Its bytes: file[offset, offset + length). */
  offset: number;
  length: number;
  lines: number;
  /** End of each unit (perUnit datapoints, the last maybe fewer), relative to offset. */
  unitEnds: number[];
}

/** The index file beside the data file. */
export interface WorkloadIndex {
  spec: Omit<WorkloadSpec, "gen">;
  /** Lines in gen's pool. */
  poolLines: number;
  bytes: number;
  conns: ConnSlice[];
}

/** gen's pool for these names and seed, as `gen -P` prints it. */
function genPool(spec: WorkloadSpec): { text: Buffer; offsets: Uint32Array } {
  let pool = Math.max(spec.names, MIN_POOL_LINES);
  if (pool > spec.lines && spec.lines > 0) pool = spec.lines;
  pool = Math.min(pool, MAX_POOL_LINES);
  const r = spawnSync(
    spec.gen,
    ["-P", "-q", "-n", String(pool), "-k", String(spec.names), "-s", String(spec.seed)],
    { maxBuffer: 1 << 30 },
  );
  if (r.status !== 0) throw new Error(`gen -P failed: ${r.stderr?.toString() ?? r.error}`);
  const text = r.stdout;
  const offsets = new Uint32Array(pool + 1);
  let line = 0;
  for (let i = text.indexOf(10); i >= 0; i = text.indexOf(10, i + 1)) offsets[++line] = i + 1;
  if (line !== pool) throw new Error(`gen -P printed ${line} lines, expected ${pool}`);
  return { text, offsets };
}

/** Lines [from, from + count) of the pool, wrapping round. */
function poolLines(
  pool: { text: Buffer; offsets: Uint32Array },
  from: number,
  count: number,
): Buffer {
  const n = pool.offsets.length - 1;
  const parts: Buffer[] = [];
  let at = from;
  while (count > 0) {
    const take = Math.min(count, n - at);
    parts.push(pool.text.subarray(pool.offsets[at]!, pool.offsets[at + take]!));
    count -= take;
    at = 0;
  }
  return Buffer.concat(parts);
}

/** Unit ends of plaintext lines: after every perUnit-th newline, and at the end. */
function lineUnitEnds(buf: Buffer, perUnit: number): number[] {
  const ends: number[] = [];
  let n = 0;
  for (let i = buf.indexOf(10); i >= 0; i = buf.indexOf(10, i + 1)) {
    if (++n === perUnit) {
      ends.push(i + 1);
      n = 0;
    }
  }
  if (n > 0) ends.push(buf.length);
  return ends;
}

/** Writes the workload to `dataFile` and its index (returned) to `indexFile`. */
export function makeWorkload(
  spec: WorkloadSpec,
  dataFile: string,
  indexFile: string,
): WorkloadIndex {
  const pool = genPool(spec);
  const poolN = pool.offsets.length - 1;
  const fd = fs.openSync(dataFile, "w");
  const conns: ConnSlice[] = [];
  let offset = 0;
  try {
    for (let i = 0; i < spec.conns; i++) {
      // gen.c: remaining = n / c (+1 for the first n % c), line = i * pool / c
      const lines = Math.floor(spec.lines / spec.conns) + (i < spec.lines % spec.conns ? 1 : 0);
      const from = Number((BigInt(i) * BigInt(poolN)) / BigInt(spec.conns));
      const text = poolLines(pool, from, lines);
      let bytes: Buffer;
      let unitEnds: number[];
      if (spec.encoding === "pickle") {
        const p = encodeCarbonPickle(text, spec.perUnit);
        bytes = p.bytes;
        unitEnds = p.frameEnds;
      } else {
        bytes = text;
        unitEnds = lineUnitEnds(text, spec.perUnit);
      }
      fs.writeSync(fd, bytes);
      conns.push({ offset, length: bytes.length, lines, unitEnds });
      offset += bytes.length;
    }
  } finally {
    fs.closeSync(fd);
  }
  const { gen: _gen, ...rest } = spec;
  const index: WorkloadIndex = { spec: rest, poolLines: poolN, bytes: offset, conns };
  fs.writeFileSync(indexFile, JSON.stringify(index));
  return index;
}
