import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  addToBucket,
  type BucketData,
  computeValue,
  formatFixed,
  nearestRank,
  needsValues,
  newBucketData,
} from "../../../../../dataplane/route/rules/aggregate-compute.ts";
import type { ComputeType } from "../../../../../dataplane/route/rules/rules-config.ts";

function bucket(type: ComputeType, values: readonly number[]): BucketData {
  const b = newBucketData(type);
  for (const v of values) addToBucket(b, v);
  return b;
}

const compute = (type: ComputeType, values: readonly number[], percentile: number | null = null) =>
  computeValue(type, percentile, bucket(type, values));

describe("formatFixed (C's %f)", () => {
  it("writes six decimals, rounding the exact binary value", () => {
    expect(formatFixed(0)).toBe("0.000000");
    expect(formatFixed(1.5)).toBe("1.500000");
    expect(formatFixed(-2.25)).toBe("-2.250000");
    expect(formatFixed(0.1)).toBe("0.100000");
    expect(formatFixed(1 / 3)).toBe("0.333333");
    expect(formatFixed(2 / 3)).toBe("0.666667");
    // 5e-7 is 4.99999999999999977e-7 in binary: rounds down.
    expect(formatFixed(5e-7)).toBe("0.000000");
    expect(formatFixed(1.0000005)).toBe("1.000001"); // 1.00000050000000002876...
  });

  it("rounds an exact tie to even, where toFixed rounds it up", () => {
    expect(formatFixed(0.0078125)).toBe("0.007812");
    expect((0.0078125).toFixed(6)).toBe("0.007813");
    expect(formatFixed(0.0234375)).toBe("0.023438"); // 23437.5 micros: up to even
    expect(formatFixed(-0.0078125)).toBe("-0.007812");
  });

  it("writes every integer digit of a large value", () => {
    expect(formatFixed(1e25)).toBe("10000000000000000905969664.000000");
    expect(formatFixed(2 ** 53 + 2)).toBe("9007199254740994.000000");
    expect(formatFixed(-1e21)).toBe("-1000000000000000000000.000000");
    expect(formatFixed(Number.MAX_VALUE)).toMatch(/^17976931348623157\d{292}\.000000$/);
  });

  it("keeps the sign of zero and of a negative value that rounds to zero", () => {
    expect(formatFixed(-0)).toBe("-0.000000");
    expect(formatFixed(-1e-7)).toBe("-0.000000");
    expect(formatFixed(5e-324)).toBe("0.000000");
  });

  it("writes infinities and NaN as glibc does, NaN with its sign", () => {
    expect(formatFixed(Number.POSITIVE_INFINITY)).toBe("inf");
    expect(formatFixed(Number.NEGATIVE_INFINITY)).toBe("-inf");
    const bits = new DataView(new ArrayBuffer(8));
    bits.setUint32(0, 0x7ff80000);
    expect(formatFixed(bits.getFloat64(0))).toBe("nan");
    bits.setUint32(0, 0xfff80000);
    expect(formatFixed(bits.getFloat64(0))).toBe("-nan");
  });

  it("agrees with toFixed(6) but for ties and the sign of zero", () => {
    fc.assert(
      fc.property(fc.double({ min: -1e9, max: 1e9, noNaN: true }), (x) => {
        const s = formatFixed(x);
        expect(s).toMatch(/^-?\d+\.\d{6}$/);
        expect(Math.abs(Number(s) - x)).toBeLessThanOrEqual(6e-7);
        const t = x.toFixed(6);
        // A tie: the two differ by one in the last decimal.
        if (Number(s) !== Number(t)) expect(Math.abs(Number(s) - Number(t))).toBeLessThan(1.2e-6);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("nearestRank", () => {
  it("is int(p/100 · n + 0.9)", () => {
    expect(nearestRank(50, 1)).toBe(1);
    expect(nearestRank(50, 2)).toBe(1);
    expect(nearestRank(50, 3)).toBe(2);
    expect(nearestRank(50, 4)).toBe(2); // the median of 4 values is the 2nd smallest
    expect(nearestRank(50, 5)).toBe(3);
    expect(nearestRank(75, 4)).toBe(3);
    expect(nearestRank(90, 10)).toBe(9);
    expect(nearestRank(99, 100)).toBe(99);
    expect(nearestRank(100, 7)).toBe(7);
  });

  it("is at least 1 where carbon-c-relay's formula gives 0 (it reads before its array)", () => {
    expect(nearestRank(5, 1)).toBe(1); // 0.05 + 0.9 < 1
    expect(nearestRank(1, 9)).toBe(1);
  });
});

describe("computeValue", () => {
  const values = [1.5, -2.25, 3, 0.5];

  it("sum, count, max, min and average of the points", () => {
    expect(compute("sum", values)).toBe("2.750000");
    expect(compute("count", values)).toBe("4");
    expect(compute("max", values)).toBe("3.000000");
    expect(compute("min", values)).toBe("-2.250000");
    expect(compute("average", values)).toBe("0.687500");
  });

  it("sums in arrival order", () => {
    // 1e16 + 1 + 1 loses both ones one at a time; 1 + 1 + 1e16 keeps them.
    expect(compute("sum", [1e16, 1, 1])).toBe("10000000000000000.000000");
    expect(compute("sum", [1, 1, 1e16])).toBe("10000000000000002.000000");
  });

  it("median and percentiles take the nearest rank of the values sorted numerically", () => {
    expect(compute("median", values)).toBe("0.500000"); // 2nd of -2.25 0.5 1.5 3
    expect(compute("median", [7])).toBe("7.000000");
    expect(compute("median", [3, 1, 2])).toBe("2.000000");
    expect(compute("percentile", values, 75)).toBe("1.500000");
    expect(compute("percentile", values, 99)).toBe("3.000000");
    expect(compute("percentile", values, 10)).toBe("-2.250000");
    expect(compute("percentile", [4.5], 5)).toBe("4.500000"); // rank 0 in carbon-c-relay
    // carbon-c-relay's comparator truncates differences to int: it gives 0.5 and 0.
    expect(compute("median", [0.9, 0.5, 0.1, 0.2])).toBe("0.200000");
    expect(compute("median", [3e9, 0, 1, 2])).toBe("1.000000");
  });

  it("median ignores the percentile given", () => {
    expect(computeValue("median", 90, bucket("median", [1, 2, 3, 4, 5]))).toBe("3.000000");
  });

  it("variance is the population variance, stddev its square root", () => {
    expect(compute("variance", [2, 4, 4, 4, 5, 5, 7, 9])).toBe("4.000000");
    expect(compute("stddev", [2, 4, 4, 4, 5, 5, 7, 9])).toBe("2.000000");
    expect(compute("variance", [1.5])).toBe("0.000000");
    expect(compute("variance", [1, 2])).toBe("0.250000");
    expect(compute("stddev", [1, 2, 4])).toBe(formatFixed(Math.sqrt(14 / 9)));
  });

  it("max and min compare as C does: a first NaN stays, a later one is ignored", () => {
    expect(compute("max", [Number.NaN, 5])).toBe("nan");
    expect(compute("max", [5, Number.NaN, 7])).toBe("7.000000");
    expect(compute("min", [5, Number.NaN, 2])).toBe("2.000000");
  });

  it("keeps values only for the computes that need them", () => {
    const kept: ComputeType[] = ["median", "percentile", "variance", "stddev"];
    const running: ComputeType[] = ["sum", "count", "max", "min", "average"];
    for (const t of kept)
      expect([t, needsValues(t), bucket(t, [1, 2]).values]).toEqual([t, true, [1, 2]]);
    for (const t of running)
      expect([t, needsValues(t), bucket(t, [1, 2]).values]).toEqual([t, false, null]);
  });
});
