import { describe, expect, it } from "vitest";
import { formatFixed } from "../../../../../dataplane/route/rules/aggregate-compute.ts";
import {
  type AggregateSpec,
  Aggregator,
  expireSplay,
} from "../../../../../dataplane/route/rules/aggregator.ts";
import type { ComputeType } from "../../../../../dataplane/route/rules/rules-config.ts";

type Out = [compute: number, name: string, value: string, timestamp: number];

function collect(): { out: Out[]; emit: (c: number, n: string, v: string, t: number) => void } {
  const out: Out[] = [];
  return { out, emit: (c, n, v, t) => out.push([c, n, v, t]) };
}

function spec(
  every: number,
  expire: number,
  computes: readonly ComputeType[] = ["sum"],
  timestamp: AggregateSpec["timestamp"] = "start",
): AggregateSpec {
  return {
    every,
    expire,
    timestamp,
    computes: computes.map((type) => ({ type, percentile: type === "percentile" ? 75 : null })),
  };
}

const T0 = 1_700_000_040; // a multiple of 60

/** A name whose splay with `every` is `want`. */
function nameWithSplay(every: number, want: number, prefix = "s"): string {
  for (let i = 0; ; i++) if (expireSplay(`${prefix}${i}`, every) === want) return `${prefix}${i}`;
}

const byKey = (a: Out, b: Out): number =>
  a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || a[3] - b[3];

describe("Aggregator: which points a bucket takes", () => {
  it("takes points from the oldest bucket not yet due to ceil(expire/every) + 2 buckets on", () => {
    // every 60, expire 120: 4 buckets. With splay 0 at T0 + 10, the bucket
    // starting at T0 - 120 falls due at T0 + 1 (start + 120 < now): the
    // oldest not due is T0 - 60.
    const name = nameWithSplay(60, 0);
    const a = new Aggregator(spec(60, 120), { maxSeries: 10 });
    const now = T0 + 10;
    expect(a.add(0, name, 1, T0 - 61, now)).toBe("too_old");
    expect(a.add(0, name, 1, T0 - 60, now)).toBe("ok");
    expect(a.add(0, name, 1, T0 + 179, now)).toBe("ok");
    expect(a.add(0, name, 1, T0 + 180, now)).toBe("too_new");
    // A point three hours old or ahead is out whatever the splay.
    expect(a.add(0, "other", 1, now - 3 * 3600, now)).toBe("too_old");
    expect(a.add(0, "other", 1, now + 3 * 3600, now)).toBe("too_new");
  });

  it("lets a bucket take points until start + expire + splay, then writes it the second after", () => {
    const name = nameWithSplay(10, 7);
    const a = new Aggregator(spec(10, 30), { maxSeries: 10 });
    const { out, emit } = collect();
    expect(a.add(0, name, 2, T0, T0)).toBe("ok");
    // Due when now > T0 + 30 + 7.
    expect(a.add(0, name, 3, T0 + 9, T0 + 37)).toBe("ok");
    a.expire(T0 + 37, emit);
    expect(out).toEqual([]);
    expect(a.add(0, name, 4, T0 + 9, T0 + 38)).toBe("too_old");
    a.expire(T0 + 38, emit);
    expect(out).toEqual([[0, name, "5.000000", T0]]);
  });

  it("does not take points for a bucket already due when a series is first seen", () => {
    // every 60, expire 120, splay 0, now T0 + 150: floor((now - 120)/60)*60 = T0,
    // and T0 + 120 < now. carbon-c-relay would take this point until its
    // expiry thread runs, then write the bucket with it alone.
    const name = nameWithSplay(60, 0);
    const a = new Aggregator(spec(60, 120), { maxSeries: 10 });
    expect(a.add(0, name, 1, T0 + 5, T0 + 150)).toBe("too_old");
    expect(a.add(0, name, 1, T0 + 60, T0 + 150)).toBe("ok");
  });

  it("aligns buckets to multiples of every, and drops fractions of seconds", () => {
    const a = new Aggregator(spec(5, 12, ["count"]), { maxSeries: 10 });
    const { out, emit } = collect();
    for (const ts of [T0 + 5, T0 + 7, T0 + 9.9, T0 + 10])
      expect(a.add(0, "x", 1, ts, T0 + 10.8)).toBe("ok");
    a.flush(Number.POSITIVE_INFINITY, emit);
    expect(out).toEqual([
      [0, "x", "3", T0 + 5],
      [0, "x", "1", T0 + 10],
    ]);
  });

  it("at shutdown writes the buckets that have ended and drops (and counts) the open ones", () => {
    const a = new Aggregator(spec(10, 20, ["sum"]), { maxSeries: 10 });
    const { out, emit } = collect();
    a.add(0, "x", 1, T0, T0 + 12);
    a.add(0, "x", 2, T0 + 10, T0 + 12);
    a.add(0, "x", 4, T0 + 11, T0 + 12);
    expect(a.flush(T0 + 12, emit)).toBe(2);
    expect(out).toEqual([[0, "x", "1.000000", T0]]);
    expect(a.openPoints).toBe(0);
    expect(a.openSeries).toBe(0);
  });

  it("counts each compute's series apart, by produced name", () => {
    const a = new Aggregator(spec(10, 20, ["sum", "count"]), { maxSeries: 10 });
    const { out, emit } = collect();
    a.add(0, "same", 1, T0, T0);
    a.add(1, "same", 1, T0, T0);
    a.add(0, "same", 2, T0, T0);
    a.add(0, "other", 5, T0, T0);
    expect(a.openSeries).toBe(3);
    a.flush(Number.POSITIVE_INFINITY, emit);
    expect(out.sort(byKey)).toEqual([
      [0, "other", "5.000000", T0],
      [0, "same", "3.000000", T0],
      [1, "same", "1", T0],
    ]);
  });
});

describe("Aggregator: what it writes", () => {
  it("writes the start, the middle (start + every/2, integer division) or the end of the bucket", () => {
    for (const [timestamp, every, offset] of [
      ["start", 5, 0],
      ["middle", 5, 2],
      ["middle", 1, 0],
      ["middle", 60, 30],
      ["end", 5, 5],
    ] as const) {
      const a = new Aggregator(spec(every, every + 1, ["sum"], timestamp), { maxSeries: 1 });
      const { out, emit } = collect();
      a.add(0, "x", 1, T0, T0);
      a.flush(Number.POSITIVE_INFINITY, emit);
      expect([timestamp, every, out]).toEqual([
        timestamp,
        every,
        [[0, "x", "1.000000", T0 + offset]],
      ]);
    }
  });

  it("writes every compute of a bucket, each from its own points", () => {
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
    const a = new Aggregator(spec(10, 20, types), { maxSeries: 100 });
    const { out, emit } = collect();
    types.forEach((_, i) => {
      for (const v of [4.5, -1, 2, 10.25]) a.add(i, `m${i}`, v, T0 + 3, T0);
    });
    a.expire(T0 + 31, emit); // the splays of these names with every 10 are < 10
    expect(out.sort(byKey).map(([, n, v]) => [n, v])).toEqual([
      ["m0", "15.750000"],
      ["m1", "4"],
      ["m2", "10.250000"],
      ["m3", "-1.000000"],
      ["m4", "3.937500"],
      ["m5", "2.000000"],
      ["m6", "4.500000"],
      // Deviations from 3.9375: 0.5625 -4.9375 -1.9375 6.3125; squares sum to 68.296875.
      ["m7", "17.074219"],
      ["m8", formatFixed(Math.sqrt(17.07421875))],
    ]);
  });

  it("writes in the order buckets fell due, then the order they were opened", () => {
    const early = nameWithSplay(10, 1, "e");
    const late = nameWithSplay(10, 8, "l");
    const a = new Aggregator(spec(10, 20), { maxSeries: 10 });
    const { out, emit } = collect();
    a.add(0, late, 1, T0, T0);
    a.add(0, early, 2, T0 + 10, T0);
    a.add(0, early, 3, T0, T0);
    a.add(0, late, 4, T0 + 10, T0);
    a.expire(T0 + 100, emit);
    expect(out).toEqual([
      [0, early, "3.000000", T0], // due T0 + 21
      [0, late, "1.000000", T0], // due T0 + 28
      [0, early, "2.000000", T0 + 10], // due T0 + 31
      [0, late, "4.000000", T0 + 10], // due T0 + 38
    ]);
  });

  it("takes an add from emit into a later bucket, never the one being written", () => {
    const a = new Aggregator(spec(10, 20), { maxSeries: 10 });
    const out: Out[] = [];
    a.add(0, "loop", 1, T0, T0);
    const now = T0 + 40;
    a.expire(now, (c, n, v, t) => {
      out.push([c, n, v, t]);
      expect(a.add(0, n, Number(v), now, now)).toBe("ok");
    });
    expect(out).toEqual([[0, "loop", "1.000000", T0]]);
    expect([a.openSeries, a.openBuckets, a.openPoints]).toEqual([1, 1, 1]);
  });
});

describe("Aggregator: memory", () => {
  it("frees a series once its last bucket is written, and starts it afresh", () => {
    const a = new Aggregator(spec(10, 20, ["median"]), { maxSeries: 1 });
    const { out, emit } = collect();
    expect(a.add(0, "x", 1, T0, T0)).toBe("ok");
    expect(a.add(0, "y", 1, T0, T0)).toBe("series_cap");
    expect([a.openSeries, a.openBuckets, a.openPoints]).toEqual([1, 1, 1]);
    a.expire(T0 + 40, emit);
    expect([a.openSeries, a.openBuckets, a.openPoints]).toEqual([0, 0, 0]);
    expect(a.add(0, "y", 7, T0 + 40, T0 + 40)).toBe("ok");
    a.flush(Number.POSITIVE_INFINITY, emit);
    expect(out).toEqual([
      [0, "x", "1.000000", T0],
      [0, "y", "7.000000", T0 + 40],
    ]);
  });

  it("caps the series open at once, not judging points out of time", () => {
    const a = new Aggregator(spec(10, 20), { maxSeries: 2 });
    expect(a.add(0, "a", 1, T0, T0)).toBe("ok");
    expect(a.add(0, "b", 1, T0, T0)).toBe("ok");
    expect(a.add(0, "a", 1, T0 + 10, T0)).toBe("ok");
    expect(a.add(0, "c", 1, T0, T0)).toBe("series_cap");
    expect(a.add(0, "c", 1, T0 - 3600, T0)).toBe("too_old");
    expect([a.openSeries, a.openBuckets, a.openPoints]).toEqual([2, 3, 3]);
  });

  it("caps the values held for median, percentile, variance and stddev", () => {
    const a = new Aggregator(spec(10, 20, ["sum", "median", "variance"]), {
      maxSeries: 10,
      maxValues: 3,
    });
    const { out, emit } = collect();
    expect(a.add(1, "m", 1, T0, T0)).toBe("ok");
    expect(a.add(1, "m", 2, T0, T0)).toBe("ok");
    expect(a.add(2, "v", 3, T0, T0)).toBe("ok");
    expect(a.add(2, "v", 4, T0, T0)).toBe("values_cap");
    expect(a.add(0, "s", 4, T0, T0)).toBe("ok"); // sum keeps no values
    a.expire(T0 + 40, emit);
    expect(out).toHaveLength(3);
    expect(a.add(2, "v", 4, T0 + 40, T0 + 40)).toBe("ok");
  });

  it("holds only buckets with points: a series fed once an hour keeps one", () => {
    const a = new Aggregator(spec(60, 120, ["count"]), { maxSeries: 10 });
    const { out, emit } = collect();
    for (let h = 0; h < 24; h++) {
      const now = T0 + h * 3600;
      a.expire(now, emit);
      expect(a.add(0, "hourly", 1, now, now)).toBe("ok");
      expect(a.openBuckets).toBe(1);
    }
    a.flush(Number.POSITIVE_INFINITY, emit);
    expect(out.map(([, , , t]) => t)).toEqual(Array.from({ length: 24 }, (_, h) => T0 + h * 3600));
  });
});

describe("Aggregator: flush", () => {
  it("writes every open bucket, complete or not, and leaves nothing open", () => {
    const a = new Aggregator(spec(10, 20, ["sum", "count"]), { maxSeries: 10 });
    const { out, emit } = collect();
    a.add(0, "x", 1, T0, T0 + 5);
    a.add(0, "x", 2, T0 + 10, T0 + 5);
    a.add(1, "x", 3, T0 + 10, T0 + 5);
    a.flush(Number.POSITIVE_INFINITY, emit);
    expect(out.sort(byKey)).toEqual([
      [0, "x", "1.000000", T0],
      [0, "x", "2.000000", T0 + 10],
      [1, "x", "1", T0 + 10],
    ]);
    expect([a.openSeries, a.openBuckets, a.openPoints]).toEqual([0, 0, 0]);
  });
});

describe("Aggregator: spec", () => {
  it("refuses an interval below 1, an expiry not above it, and a percentile out of range", () => {
    expect(() => new Aggregator(spec(0, 5), { maxSeries: 1 })).toThrow(RangeError);
    expect(() => new Aggregator(spec(10, 10), { maxSeries: 1 })).toThrow(RangeError);
    expect(() => new Aggregator(spec(1.5, 5), { maxSeries: 1 })).toThrow(RangeError);
    const bad = { ...spec(10, 20), computes: [{ type: "percentile" as const, percentile: 0 }] };
    expect(() => new Aggregator(bad, { maxSeries: 1 })).toThrow(RangeError);
    expect(() => new Aggregator(spec(10, 20), { maxSeries: 1 }).add(1, "x", 1, T0, T0)).toThrow(
      RangeError,
    );
  });

  it("spreads the splays of many series over the interval", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) seen.add(expireSplay(`host${i}.cpu`, 60));
    expect(seen.size).toBe(60);
    expect(expireSplay("anything", 1)).toBe(0);
  });
});
