import type { ComputeType } from "./rules-config.ts";

/**
 * What one bucket of an aggregate series holds, and the value each compute
 * writes from it, as carbon-c-relay 3.7.3's aggregator.c computes and prints
 * it (docs/rules.md, "Aggregation"). Pure functions: aggregator.ts keeps the
 * buckets.
 */

/** The points of one bucket: running figures, and the values themselves where a compute needs them. */
export interface BucketData {
  /** Points added. */
  count: number;
  /** Their sum, added in arrival order (so it is the same double carbon-c-relay prints). */
  sum: number;
  max: number;
  min: number;
  /** Every value in arrival order, for median, percentiles, variance and stddev; else null. */
  values: number[] | null;
}

/** Whether `type` needs a bucket's values, not just its running figures. */
export function needsValues(type: ComputeType): boolean {
  return type === "median" || type === "percentile" || type === "variance" || type === "stddev";
}

/** An empty bucket for a compute of type `type`. */
export function newBucketData(type: ComputeType): BucketData {
  return { count: 0, sum: 0, max: 0, min: 0, values: needsValues(type) ? [] : null };
}

/**
 * Adds one point. The first point sets sum, max and min; later ones replace
 * max (min) only when it compares less (greater) than the point, so a NaN
 * behaves as in carbon-c-relay too.
 */
export function addToBucket(b: BucketData, value: number): void {
  if (b.count === 0) {
    b.sum = value;
    b.max = value;
    b.min = value;
  } else {
    b.sum += value;
    if (b.max < value) b.max = value;
    if (b.min > value) b.min = value;
  }
  b.values?.push(value);
  b.count++;
}

/**
 * The nearest rank (1-based) of percentile `p` among `n` sorted values:
 * carbon-c-relay's `int(p/100 * n + 0.9)`, at least 1. (carbon-c-relay reads
 * before its array when that is 0, e.g. percentile5 of one value, and writes
 * whatever lies there.)
 */
export function nearestRank(p: number, n: number): number {
  return Math.min(n, Math.max(1, Math.trunc((p / 100) * n + 0.9)));
}

/**
 * The value text compute `type` writes for a bucket holding at least one
 * point: the count as an integer, everything else as C's `%f`.
 *
 * Median and percentiles sort numerically (NaN last). carbon-c-relay's sort
 * comparator truncates each difference to an int, so values less than 1
 * apart compare equal and differences beyond 2^31 overflow: its median of
 * 0.9 0.5 0.1 0.2 is 0.5, not 0.2.
 *
 * Variance is the population variance, computed as carbon-c-relay does: the
 * mean from the running sum, then the squared deviations summed in arrival
 * order and divided by the count; stddev is its square root.
 */
export function computeValue(type: ComputeType, percentile: number | null, b: BucketData): string {
  switch (type) {
    case "sum":
      return formatFixed(b.sum);
    case "count":
      return String(b.count);
    case "max":
      return formatFixed(b.max);
    case "min":
      return formatFixed(b.min);
    case "average":
      return formatFixed(b.sum / b.count);
    case "median":
    case "percentile": {
      const sorted = Float64Array.from(storedValues(b)).sort();
      const p = type === "median" ? 50 : (percentile ?? 50);
      return formatFixed(sorted[nearestRank(p, sorted.length) - 1]!);
    }
    case "variance":
    case "stddev": {
      const variance = populationVariance(b.sum, storedValues(b));
      return formatFixed(type === "variance" ? variance : Math.sqrt(variance));
    }
  }
}

function storedValues(b: BucketData): number[] {
  if (b.values === null || b.values.length === 0) {
    throw new Error("a median, percentile, variance or stddev bucket holds no values");
  }
  return b.values;
}

/**
 * Σ (v - mean)² / n, with the mean as sum / n, each square as d * d: GCC
 * compiles carbon-c-relay's `pow(d, 2)` to that multiplication (its binary
 * does not import pow), so the result is the same double.
 */
function populationVariance(sum: number, values: readonly number[]): number {
  const n = values.length;
  const mean = sum / n;
  let squares = 0;
  for (const v of values) {
    const d = v - mean;
    squares += d * d;
  }
  return squares / n;
}

const bits = new DataView(new ArrayBuffer(8));
const MICRO = 1_000_000n;

/**
 * `x` as C's printf `%f` prints it (glibc, C locale): the exact binary value
 * rounded to 6 decimals, ties to even (0.0078125 is `0.007812`; JavaScript's
 * toFixed rounds ties up), every integer digit written out (1e25 is
 * `10000000000000000905969664.000000`), the sign kept on zero (`-0.000000`),
 * and `inf`, `-inf`, `nan`, `-nan` (the sign of a NaN as computed: Infinity
 * minus Infinity is `-nan` on x86, as in carbon-c-relay).
 */
export function formatFixed(x: number): string {
  bits.setFloat64(0, x);
  const sign = (bits.getUint8(0) & 0x80) !== 0 ? "-" : "";
  if (Number.isNaN(x)) return `${sign}nan`;
  if (!Number.isFinite(x)) return `${sign}inf`;
  if (Number.isSafeInteger(x)) return `${sign}${Math.abs(x)}.000000`;
  const high = bits.getUint32(0);
  const exponentBits = (high >>> 20) & 0x7ff;
  // |x| = mantissa · 2^exponent, exactly.
  let mantissa = (BigInt(high & 0xfffff) << 32n) | BigInt(bits.getUint32(4));
  let exponent = -1074;
  if (exponentBits !== 0) {
    mantissa |= 1n << 52n;
    exponent = exponentBits - 1075;
  }
  let micros: bigint; // |x| · 10^6, rounded half to even
  if (exponent >= 0) {
    micros = (mantissa << BigInt(exponent)) * MICRO;
  } else {
    const shift = BigInt(-exponent);
    const scaled = mantissa * MICRO;
    micros = scaled >> shift;
    const rest = scaled - (micros << shift);
    const half = 1n << (shift - 1n);
    if (rest > half || (rest === half && (micros & 1n) === 1n)) micros++;
  }
  const digits = micros.toString().padStart(7, "0");
  return `${sign}${digits.slice(0, -6)}.${digits.slice(-6)}`;
}
