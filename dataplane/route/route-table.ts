import type { Destination } from "../forward/destination.ts";
import type { HashRouter } from "./hash/hash-router.ts";

const NL = 0x0a;
const SP = 0x20;
const TAB = 0x09;
/** Size of a destination's accumulator in hash routing. */
const ACCUMULATOR_BYTES = 64 * 1024;

/**
 * What routing did with the valid lines it was given: lines that went to at
 * least one destination, and lines that had none to go to. Shared by the
 * successive tables of one Router, so that a reconfiguration loses no count.
 */
export interface RouteCounts {
  routed: number;
  noDestination: number;
  /** Rules: no rule sent the line anywhere. */
  noMatch: number;
  /** Rules: the line reached only the blackhole. */
  blackhole: number;
  /** Rules: a validate clause stopped the line. */
  validate: number;
}

export function noRouteCounts(): RouteCounts {
  return { routed: 0, noDestination: 0, noMatch: 0, blackhole: 0, validate: 0 };
}

/**
 * Routes framed lines to destinations.
 *
 * Broadcast costs one view per run of valid lines, shared by every queue.
 * Hash routing is inherently per line: the name is hashed in place (no string)
 * and the line's bytes are appended to that destination's accumulator; what
 * accumulated goes to the queues at the end of the event-loop turn, or when
 * `flush()` is called (the Router does, before it replaces a table).
 */
export class RouteTable {
  readonly destinations: readonly Destination[];
  readonly #hash: HashRouter | null;
  readonly #accumulators: Accumulator[];
  readonly #out: Uint8Array;
  readonly #counts: RouteCounts;
  #flushScheduled = false;

  constructor(destinations: readonly Destination[], hash: HashRouter | null, counts: RouteCounts) {
    this.destinations = destinations;
    this.#hash = hash;
    this.#counts = counts;
    this.#out = new Uint8Array(Math.max(1, hash?.maxRoutes ?? 1));
    this.#accumulators = destinations.map((d) => new Accumulator(d));
  }

  get mode(): "broadcast" | "hash" {
    return this.#hash === null ? "broadcast" : "hash";
  }

  /** Whole valid lines in buf[start, end). */
  route(buf: Buffer, start: number, end: number, lines: number): void {
    const dests = this.destinations;
    const counts = this.#counts;
    if (this.#hash === null) {
      if (dests.length === 0) {
        counts.noDestination += lines;
        return;
      }
      counts.routed += lines;
      const view = buf.subarray(start, end);
      for (let i = 0; i < dests.length; i++) dests[i]!.enqueue(view, lines);
      return;
    }
    const hash = this.#hash;
    const out = this.#out;
    const accumulators = this.#accumulators;
    let unrouted = 0;
    let ls = start;
    while (ls < end) {
      const nl = buf.indexOf(NL, ls);
      let ne = ls;
      for (; ne < nl; ne++) {
        const c = buf[ne]!;
        if (c === SP || c === TAB) break;
      }
      const k = hash.route(buf, ls, ne, out);
      if (k === 0) unrouted++;
      for (let j = 0; j < k; j++) accumulators[out[j]!]!.append(buf, ls, nl + 1);
      ls = nl + 1;
    }
    counts.routed += lines - unrouted;
    counts.noDestination += unrouted;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(flushTable, this);
    }
  }

  /** Hands every destination's accumulated lines to its queue. */
  flush(): void {
    this.#flushScheduled = false;
    for (const a of this.#accumulators) a.flush();
  }
}

function flushTable(t: RouteTable): void {
  t.flush();
}

/** One destination's routed lines, copied together so that its queue gets one chunk per turn. */
export class Accumulator {
  readonly #dest: Destination;
  #buf: Buffer = Buffer.allocUnsafe(ACCUMULATOR_BYTES);
  #pos = 0;
  #lines = 0;

  constructor(dest: Destination) {
    this.#dest = dest;
  }

  append(src: Buffer, s: number, e: number): void {
    const n = e - s;
    if (this.#pos + n > this.#buf.length) {
      this.flush();
      if (n > this.#buf.length) {
        this.#dest.enqueue(Buffer.from(src.subarray(s, e)), 1);
        return;
      }
    }
    const dst = this.#buf;
    let p = this.#pos;
    if (n < 96) {
      // Short copies are cheaper in a JS loop than through Buffer#copy's C++ call.
      for (let i = s; i < e; i++) dst[p++] = src[i]!;
    } else {
      p += src.copy(dst, p, s, e);
    }
    this.#pos = p;
    this.#lines++;
  }

  /** Appends a line under another name: `name`, then src[s, e) (the rest of the line, newline included). */
  appendRenamed(name: string, src: Buffer, s: number, e: number): void {
    const n = name.length + (e - s);
    if (this.#pos + n > this.#buf.length) {
      this.flush();
      if (n > this.#buf.length) {
        const line = Buffer.allocUnsafe(n);
        line.write(name, 0, "latin1");
        src.copy(line, name.length, s, e);
        this.#dest.enqueue(line, 1);
        return;
      }
    }
    this.#pos += this.#buf.write(name, this.#pos, "latin1");
    this.#pos += src.copy(this.#buf, this.#pos, s, e);
    this.#lines++;
  }

  /** Whether the destination is connected or still trying (not failing). */
  get destinationUp(): boolean {
    return this.#dest.state !== "backoff" && this.#dest.state !== "closed";
  }

  flush(): void {
    if (this.#lines === 0) return;
    const pos = this.#pos;
    let chunk: Buffer;
    if (pos < ACCUMULATOR_BYTES / 4) {
      // A small chunk gets its own exact-size copy so a queue of small chunks
      // (a slow destination at a low rate) does not hold 64 KiB per chunk.
      chunk = Buffer.allocUnsafe(pos);
      this.#buf.copy(chunk, 0, 0, pos);
    } else {
      chunk = this.#buf.subarray(0, pos);
      this.#buf = Buffer.allocUnsafe(ACCUMULATOR_BYTES);
    }
    const lines = this.#lines;
    this.#pos = 0;
    this.#lines = 0;
    this.#dest.enqueue(chunk, lines);
  }
}
