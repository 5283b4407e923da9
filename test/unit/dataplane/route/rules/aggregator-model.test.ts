import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addToBucket,
  type BucketData,
  computeValue,
  newBucketData,
} from "../../../../../dataplane/route/rules/aggregate-compute.ts";
import {
  type AddResult,
  type AggregateSpec,
  Aggregator,
  expireSplay,
} from "../../../../../dataplane/route/rules/aggregator.ts";
import type { ComputeType } from "../../../../../dataplane/route/rules/rules-config.ts";

// The Aggregator judges points with a formula (the oldest bucket not yet due,
// and a window from it); carbon-c-relay keeps a ring of buckets per series
// and moves it along. This checks the two agree on random streams.

type Out = [compute: number, name: string, value: string, timestamp: number];

function collect(): { out: Out[]; emit: (c: number, n: string, v: string, t: number) => void } {
  const out: Out[] = [];
  return { out, emit: (c, n, v, t) => out.push([c, n, v, t]) };
}

function spec(
  every: number,
  expire: number,
  computes: readonly ComputeType[],
  timestamp: AggregateSpec["timestamp"],
): AggregateSpec {
  return {
    every,
    expire,
    timestamp,
    computes: computes.map((type) => ({ type, percentile: type === "percentile" ? 75 : null })),
  };
}

const T0 = 1_700_000_040;

const byKey = (a: Out, b: Out): number =>
  a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || a[3] - b[3];

interface RefSeries {
  readonly type: ComputeType;
  readonly splay: number;
  readonly buckets: (BucketData & { start: number })[];
}

/**
 * carbon-c-relay's bookkeeping, modelled from aggregator.c for these tests: a
 * series gets ceil(expire/every) + 2 buckets starting at
 * floor((now - expire) / every) * every when it is first seen; a pass at
 * `now` writes and recycles every leading bucket with start + expire + splay
 * < now, and frees a series whose buckets are all empty. Passes run at every
 * second before its points, and after a series is made (the "ideal" expiry
 * thread); the splay is polymur's.
 */
class ReferenceModel {
  readonly #s: AggregateSpec;
  readonly #count: number;
  readonly #series: Map<string, RefSeries>[];

  constructor(s: AggregateSpec) {
    this.#s = s;
    this.#count = Math.ceil(s.expire / s.every) + 2;
    this.#series = s.computes.map(() => new Map());
  }

  get openSeries(): number {
    return this.#series.reduce((n, m) => n + m.size, 0);
  }

  get openBuckets(): number {
    let n = 0;
    for (const m of this.#series)
      for (const inv of m.values()) n += inv.buckets.filter((b) => b.count > 0).length;
    return n;
  }

  put(compute: number, name: string, value: number, ts: number, now: number): AddResult {
    const { every, expire } = this.#s;
    const type = this.#s.computes[compute]!.type;
    let inv = this.#series[compute]!.get(name);
    if (inv === undefined) {
      const start0 = Math.floor((now - expire) / every) * every;
      inv = {
        type,
        splay: expireSplay(name, every),
        buckets: Array.from({ length: this.#count }, (_, i) => ({
          ...newBucketData(type),
          start: start0 + i * every,
        })),
      };
      this.#series[compute]!.set(name, inv);
      this.#recycle(inv, now, () => {});
    }
    const itime = ts - inv.buckets[0]!.start;
    if (itime < 0) return "too_old";
    if (itime >= this.#count * every) return "too_new";
    addToBucket(inv.buckets[Math.floor(itime / every)]!, value);
    return "ok";
  }

  pass(now: number, emit: (o: Out) => void): void {
    this.#series.forEach((m, compute) => {
      for (const [name, inv] of m) {
        this.#recycle(inv, now, (b) =>
          emit([compute, name, this.#value(compute, b), b.start + this.#offset()]),
        );
        if (inv.buckets.every((b) => b.count === 0)) m.delete(name);
      }
    });
  }

  /** Everything with data, as flush does. */
  all(emit: (o: Out) => void): void {
    this.#series.forEach((m, compute) => {
      for (const [name, inv] of m) {
        for (const b of inv.buckets) {
          if (b.count > 0) emit([compute, name, this.#value(compute, b), b.start + this.#offset()]);
        }
      }
      m.clear();
    });
  }

  #recycle(inv: RefSeries, now: number, write: (b: BucketData & { start: number }) => void): void {
    const { every, expire } = this.#s;
    while (inv.buckets[0]!.start + expire + inv.splay < now) {
      const b = inv.buckets.shift()!;
      if (b.count > 0) write(b);
      const last = inv.buckets[inv.buckets.length - 1]!;
      inv.buckets.push({ ...newBucketData(inv.type), start: last.start + every });
    }
  }

  #value(compute: number, b: BucketData): string {
    const c = this.#s.computes[compute]!;
    return computeValue(c.type, c.percentile, b);
  }

  #offset(): number {
    const { every, timestamp } = this.#s;
    return timestamp === "start" ? 0 : timestamp === "middle" ? Math.floor(every / 2) : every;
  }
}

describe("Aggregator against a model of carbon-c-relay's bucket ring", () => {
  it("matches a model of carbon-c-relay's bucket ring on random streams", () => {
    const types: ComputeType[] = [
      "sum",
      "count",
      "max",
      "min",
      "average",
      "median",
      "percentile",
      "variance",
      "stddev",
    ];
    fc.assert(
      fc.property(
        fc.record({
          every: fc.constantFrom(1, 2, 3, 5, 10, 60),
          extra: fc.integer({ min: 1, max: 130 }),
          timestamp: fc.constantFrom("start" as const, "middle" as const, "end" as const),
          computes: fc.subarray(types, { minLength: 1 }),
          steps: fc.array(
            fc.record({
              advance: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 400 })),
              points: fc.array(
                fc.record({
                  compute: fc.nat(),
                  name: fc.constantFrom("a", "b", "c.d", "\xe9"),
                  value: fc.double({ min: -1e6, max: 1e6, noNaN: true }),
                  offset: fc.integer({ min: -200, max: 200 }),
                }),
                { maxLength: 6 },
              ),
            }),
            { maxLength: 60 },
          ),
        }),
        ({ every, extra, timestamp, computes, steps }) => {
          const s = spec(every, every + extra, computes, timestamp);
          const a = new Aggregator(s, { maxSeries: 1000 });
          const ref = new ReferenceModel(s);
          let now = T0 + 17;
          for (const step of steps) {
            now += step.advance;
            const got = collect();
            const want: Out[] = [];
            a.expire(now, got.emit);
            ref.pass(now, (o) => want.push(o));
            expect(got.out.sort(byKey)).toEqual(want.sort(byKey));
            expect([a.openSeries, a.openBuckets]).toEqual([ref.openSeries, ref.openBuckets]);
            for (const p of step.points) {
              const compute = p.compute % computes.length;
              const ts = now + p.offset;
              expect(a.add(compute, p.name, p.value, ts, now)).toBe(
                ref.put(compute, p.name, p.value, ts, now),
              );
            }
          }
          const got = collect();
          const want: Out[] = [];
          a.flush(Number.POSITIVE_INFINITY, got.emit);
          ref.all((o) => want.push(o));
          expect(got.out.sort(byKey)).toEqual(want.sort(byKey));
          expect([a.openSeries, a.openBuckets, a.openPoints]).toEqual([0, 0, 0]);
        },
      ),
      { numRuns: 300, seed: 20211109 },
    );
  });
});
