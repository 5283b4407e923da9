import type { Destination } from "../forward/destination.ts";
import { Accumulator, type RouteCounts } from "./route-table.ts";
import type { LineRest, RulesProgram, RulesVisitor } from "./rules/rules-program.ts";

const NL = 0x0a;
const SP = 0x20;
const TAB = 0x09;

/** Where the points that aggregate rules take go: this process's aggregators, or the primary's. */
export interface AggregateSink {
  /** One point for aggregate rule `aggregate` (index into the program's aggregates), compute `compute`. */
  add(aggregate: number, compute: number, metric: string, value: number, timestamp: number): void;
}

/**
 * Routes framed lines by a relay.conf (a RulesProgram): per line, the rules
 * decide which cluster members get it, under which name, and which
 * aggregations take it. A line sent under its own name is copied byte for
 * byte; a rewritten one gets its new name before the rest of the line.
 * Like hash routing, lines accumulate per destination and reach the queues
 * at the end of the event-loop turn, or on `flush()`.
 *
 * Counted (RouteCounts): routed when the line reached a destination or an
 * aggregation; otherwise unrouted as no_match (no rule sent it anywhere),
 * blackhole, or validate (a validate clause stopped it).
 */
export class RulesTable implements RulesVisitor {
  readonly program: RulesProgram;
  /** Per program target: its destination, or null where this table does not forward (none yet). */
  readonly destinations: readonly Destination[];
  readonly #byTarget: readonly (Accumulator | null)[];
  readonly #accumulators: readonly Accumulator[];
  readonly #counts: RouteCounts;
  readonly #aggregates: AggregateSink;
  #flushScheduled = false;
  // The line being routed.
  #buf: Buffer = Buffer.alloc(0);
  #ls = 0;
  #ne = 0;
  #nl = 0;
  #name = "";
  /** The rest of the line being routed: a string only if a rule or an aggregate reads it. */
  readonly #rest = new BufferRest();
  #sent = false;
  #aggregated = false;
  #blackholed = false;
  #dropped = false;

  /** targets[i]: the destination for program target i (null for targets this table cannot serve). */
  constructor(
    program: RulesProgram,
    targets: readonly (Destination | null)[],
    counts: RouteCounts,
    aggregates: AggregateSink,
  ) {
    this.program = program;
    this.#counts = counts;
    this.#aggregates = aggregates;
    const accumulators: Accumulator[] = [];
    this.#byTarget = targets.map((d) => {
      if (d === null) return null;
      const a = new Accumulator(d);
      accumulators.push(a);
      return a;
    });
    this.#accumulators = accumulators;
    this.destinations = targets.filter((d): d is Destination => d !== null);
  }

  get mode(): "rules" {
    return "rules";
  }

  /** Whole valid lines in buf[start, end). */
  route(buf: Buffer, start: number, end: number, _lines: number): void {
    this.#routeLines(buf, start, end, false);
  }

  /** polymur's own metrics (valid lines): where the file's `statistics` says. */
  routeStatistics(buf: Buffer, start: number, end: number): void {
    this.#routeLines(buf, start, end, true);
  }

  #routeLines(buf: Buffer, start: number, end: number, statistics: boolean): void {
    const program = this.program;
    this.#buf = buf;
    let ls = start;
    while (ls < end) {
      const nl = buf.indexOf(NL, ls);
      let ne = ls;
      for (; ne < nl; ne++) {
        const c = buf[ne]!;
        if (c === SP || c === TAB) break;
      }
      this.#begin(ls, ne, nl);
      const name = buf.toString("latin1", ls, ne);
      this.#name = name;
      this.#rest.set(buf, ne, nl);
      if (statistics) program.routeStatistics(name, this.#rest.text(), this);
      else program.route(name, this.#rest, this);
      this.#count();
      ls = nl + 1;
    }
    this.#scheduleFlush();
  }

  /**
   * Routes a line polymur made (an aggregate's output), `name rest` without
   * the newline: to the aggregate's clusters, or through the rules when it
   * has none.
   */
  routeProduced(aggregate: number, name: string, rest: string): void {
    const line = Buffer.from(`${name}${rest}\n`, "latin1");
    this.#buf = line;
    this.#begin(0, name.length, line.length - 1);
    this.#name = name;
    this.#rest.set(line, name.length, line.length - 1);
    this.program.routeProduced(aggregate, name, rest, this);
    this.#count();
    this.#scheduleFlush();
  }

  #begin(ls: number, ne: number, nl: number): void {
    this.#ls = ls;
    this.#ne = ne;
    this.#nl = nl;
    this.#sent = false;
    this.#aggregated = false;
    this.#blackholed = false;
    this.#dropped = false;
  }

  #count(): void {
    const counts = this.#counts;
    if (this.#sent || this.#aggregated) counts.routed++;
    else if (this.#dropped) counts.validate++;
    else if (this.#blackholed) counts.blackhole++;
    else counts.noMatch++;
  }

  #scheduleFlush(): void {
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(flushTable, this);
    }
  }

  send(_cluster: string, target: number, metric: string): void {
    const a = this.#byTarget[target];
    if (a === undefined || a === null) return;
    this.#sent = true;
    if (metric === this.#name) {
      a.append(this.#buf, this.#ls, this.#nl + 1);
    } else {
      a.appendRenamed(metric, this.#buf, this.#ne, this.#nl + 1);
    }
  }

  blackhole(): void {
    this.#blackholed = true;
  }

  aggregate(aggregate: number, compute: number, metric: string): void {
    const point = parsePoint(this.#rest.text());
    if (point === null) return;
    this.#aggregated = true;
    this.#aggregates.add(aggregate, compute, metric, point.value, point.timestamp);
  }

  drop(_reason: "validate"): void {
    this.#dropped = true;
  }

  up(target: number): boolean {
    const a = this.#byTarget[target];
    return a?.destinationUp === true;
  }

  /** Hands every destination's accumulated lines to its queue. */
  flush(): void {
    this.#flushScheduled = false;
    for (const a of this.#accumulators) a.flush();
  }
}

/** buf[start, end) as a LineRest: the string is made on the first text() of each line. */
class BufferRest implements LineRest {
  #buf: Buffer = Buffer.alloc(0);
  #start = 0;
  #end = 0;
  #text: string | null = null;

  set(buf: Buffer, start: number, end: number): void {
    this.#buf = buf;
    this.#start = start;
    this.#end = end;
    this.#text = null;
  }

  get length(): number {
    return this.#end - this.#start;
  }

  text(): string {
    this.#text ??= this.#buf.toString("latin1", this.#start, this.#end);
    return this.#text;
  }
}

function flushTable(t: RulesTable): void {
  t.flush();
}

const point = { value: 0, timestamp: 0 };

/** The value and timestamp of ` value timestamp` (a valid line's rest), or null. */
function parsePoint(rest: string): { value: number; timestamp: number } | null {
  const fields = rest.trim().split(/[ \t]+/);
  if (fields.length !== 2) return null;
  const value = parseValue(fields[0]!);
  const timestamp = Math.trunc(Number(fields[1]));
  if (Number.isNaN(value) || !Number.isFinite(timestamp)) return null;
  point.value = value;
  point.timestamp = timestamp;
  return point;
}

/** A value as carbon-c-relay's strtod reads a valid line's value (Python float() forms included). */
function parseValue(text: string): number {
  const n = Number(text);
  if (!Number.isNaN(n)) return n;
  const m = /^([+-]?)inf(inity)?$/i.exec(text);
  return m === null ? Number.NaN : m[1] === "-" ? -Infinity : Infinity;
}
