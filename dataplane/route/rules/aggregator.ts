import {
  addToBucket,
  type BucketData,
  computeValue,
  needsValues,
  newBucketData,
} from "./aggregate-compute.ts";
import type { ComputeType } from "./rules-config.ts";

/**
 * The buckets of one aggregate rule, as carbon-c-relay 3.7.3's aggregator.c
 * keeps them: which points a bucket takes, when it is written, and the value
 * and timestamp written. Pure: the caller passes the time and takes the
 * produced datapoints.
 *
 * A series is one compute's produced name. Buckets are `every` seconds wide,
 * aligned to multiples of `every` since the epoch. A bucket starting at S is
 * written once `now > S + expire + splay`, where the splay (0 … every - 1)
 * spreads the writes of many series over an interval; carbon-c-relay draws
 * it with rand(), polymur derives it from the series name (`expireSplay`).
 * A point is taken when its bucket is one of the `ceil(expire / every) + 2`
 * buckets from the oldest one not yet due: older points are `too_old`, later
 * ones `too_new`. With every 60 and expire 120 that is 1 to 3 minutes either
 * way of now, depending on the time and the splay; there is no other bound.
 */

/** The parts of an aggregate rule the aggregator needs (an `AggregateRule` is one). */
export interface AggregateSpec {
  /** Bucket width, seconds (an integer >= 1). */
  readonly every: number;
  /** Seconds from a bucket's start until it is written (an integer > every). */
  readonly expire: number;
  /** The timestamp written: the bucket's start, start + floor(every / 2), or start + every. */
  readonly timestamp: "start" | "middle" | "end";
  readonly computes: readonly {
    readonly type: ComputeType;
    /** For `percentile`: NN of percentileNN (0 < NN <= 100). Ignored otherwise. */
    readonly percentile: number | null;
  }[];
}

export interface AggregatorOptions {
  /** The most series (compute, produced name) open at once; a point of a new series beyond it is `series_cap`. */
  readonly maxSeries: number;
  /**
   * The most values held at once for median, percentile, variance and
   * stddev, which need every value of a bucket; a point needing one beyond
   * it is `values_cap`. Default DEFAULT_MAX_VALUES.
   */
  readonly maxValues?: number;
}

/** The default AggregatorOptions.maxValues: 10 million (about 80 MB). */
export const DEFAULT_MAX_VALUES = 10_000_000;

/** What became of a point: aggregated, or not and why. */
export type AddResult = "ok" | "too_old" | "too_new" | "series_cap" | "values_cap";

/** Takes one produced datapoint: the compute's index, the series name, the value text, the timestamp. */
export type AggregateEmit = (
  compute: number,
  name: string,
  value: string,
  timestamp: number,
) => void;

interface Series {
  readonly compute: number;
  readonly name: string;
  readonly splay: number;
  /** Open buckets, oldest first. */
  readonly buckets: Bucket[];
}

interface Bucket extends BucketData {
  readonly series: Series;
  readonly start: number;
}

/**
 * The splay of a series: its name's 32-bit FNV-1a hash (over its chars, one
 * per byte) modulo `every`. Deterministic, and spread over the interval.
 */
export function expireSplay(name: string, every: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return (h >>> 0) % every;
}

/** a mod m in 0 … m - 1, for integers. */
function mod(a: number, m: number): number {
  return ((a % m) + m) % m;
}

function checkSpec(spec: AggregateSpec): void {
  if (!Number.isSafeInteger(spec.every) || spec.every < 1) {
    throw new RangeError(`aggregate interval must be an integer >= 1, not ${spec.every}`);
  }
  if (!Number.isSafeInteger(spec.expire) || spec.expire <= spec.every) {
    throw new RangeError(
      `aggregate expiry must be an integer greater than the interval (${spec.every}), not ${spec.expire}`,
    );
  }
  for (const c of spec.computes) {
    const p = c.percentile;
    if (c.type === "percentile" && (p === null || !(p > 0 && p <= 100))) {
      throw new RangeError(`percentile must be in (0, 100], not ${p}`);
    }
  }
}

/**
 * The open buckets of one aggregate rule. Memory is bounded by
 * `maxSeries` and `maxValues`; a series is freed as soon as its last bucket
 * is written (as carbon-c-relay frees it), and since which points a series
 * takes depends only on the time and its name, nothing is lost by that.
 *
 * Time is whole seconds (fractions are dropped, as time() and atoll() drop
 * them in carbon-c-relay). `add` judges a point at `nowSec` as if every
 * bucket due by then had been written: carbon-c-relay writes them in a
 * thread that wakes every 250 ms, and until it does it still takes points
 * for them, including, when it first sees a series, for a bucket that is
 * already due (it writes that bucket with whatever arrived in the meantime).
 */
export class Aggregator {
  readonly #every: number;
  readonly #expire: number;
  readonly #offset: number;
  readonly #windowSec: number;
  readonly #computes: readonly {
    readonly type: ComputeType;
    readonly percentile: number | null;
    readonly storesValues: boolean;
  }[];
  readonly #maxSeries: number;
  readonly #maxValues: number;
  /** Per compute: series by name. */
  readonly #series: Map<string, Series>[];
  /** Buckets by the second they fall due (start + expire + splay), each list in creation order. */
  readonly #due = new Map<number, Bucket[]>();
  /** The keys of #due, ascending. */
  readonly #dueKeys: number[] = [];
  #seriesCount = 0;
  #bucketCount = 0;
  #pointCount = 0;
  #valueCount = 0;

  constructor(spec: AggregateSpec, options: AggregatorOptions) {
    checkSpec(spec);
    this.#every = spec.every;
    this.#expire = spec.expire;
    this.#offset =
      spec.timestamp === "start"
        ? 0
        : spec.timestamp === "middle"
          ? Math.floor(spec.every / 2)
          : spec.every;
    this.#windowSec = (Math.ceil(spec.expire / spec.every) + 2) * spec.every;
    this.#computes = spec.computes.map((c) => ({
      type: c.type,
      percentile: c.percentile,
      storesValues: needsValues(c.type),
    }));
    this.#maxSeries = options.maxSeries;
    this.#maxValues = options.maxValues ?? DEFAULT_MAX_VALUES;
    this.#series = this.#computes.map(() => new Map<string, Series>());
  }

  /** Series with at least one open bucket. */
  get openSeries(): number {
    return this.#seriesCount;
  }

  /** Buckets holding at least one point. */
  get openBuckets(): number {
    return this.#bucketCount;
  }

  /** Points held in open buckets (not yet written). */
  get openPoints(): number {
    return this.#pointCount;
  }

  /**
   * Adds one point to series `name` of compute `compute` (an index into the
   * spec's computes), at `nowSec` (Unix seconds).
   */
  add(
    compute: number,
    name: string,
    value: number,
    timestampSec: number,
    nowSec: number,
  ): AddResult {
    const c = this.#computes[compute];
    if (c === undefined) throw new RangeError(`no compute ${compute} in this aggregate`);
    const now = Math.floor(nowSec);
    const ts = Math.floor(timestampSec);
    const bySeries = this.#series[compute]!;
    let series = bySeries.get(name);
    const splay = series?.splay ?? expireSplay(name, this.#every);
    // The oldest bucket not due at `now`: the first start S with S + expire + splay >= now.
    const dueBy = now - this.#expire - splay;
    const oldest = dueBy + mod(-dueBy, this.#every);
    if (!(ts >= oldest)) return "too_old"; // NaN too
    if (ts >= oldest + this.#windowSec) return "too_new";
    if (c.storesValues && this.#valueCount >= this.#maxValues) return "values_cap";
    if (series === undefined) {
      if (this.#seriesCount >= this.#maxSeries) return "series_cap";
      series = { compute, name, splay, buckets: [] };
      bySeries.set(name, series);
      this.#seriesCount++;
    }
    const bucket = this.#bucketFor(series, ts - mod(ts, this.#every), c.type);
    addToBucket(bucket, value);
    this.#pointCount++;
    if (c.storesValues) this.#valueCount++;
    return "ok";
  }

  /**
   * Writes every bucket due at `nowSec` (start + expire + splay < nowSec):
   * in the order they fell due, and buckets due in the same second in the
   * order they were opened. Call it every second or more often. `emit` may
   * call `add` (a produced name can come back to its own aggregate).
   */
  expire(nowSec: number, emit: AggregateEmit): void {
    this.#writeDueBefore(Math.floor(nowSec), emit);
  }

  /**
   * At shutdown, as carbon-c-relay does: writes the buckets that have ended
   * (start + every <= nowSec) in the order of `expire`, and drops the ones
   * still open, whose values would be partial. Returns the points dropped.
   * Leaves the aggregator empty (but for points `emit` adds).
   */
  flush(nowSec: number, emit: AggregateEmit): number {
    const now = Math.floor(nowSec);
    let dropped = 0;
    const open: Bucket[] = [];
    for (const list of this.#due.values()) {
      for (const bucket of list) if (bucket.start + this.#every > now) open.push(bucket);
    }
    for (const bucket of open) {
      dropped += bucket.count;
      this.#undue(bucket);
      this.#detach(bucket);
    }
    this.#writeDueBefore(Number.POSITIVE_INFINITY, emit);
    return dropped;
  }

  /** Takes `bucket` out of the due lists. */
  #undue(bucket: Bucket): void {
    const key = bucket.start + this.#expire + bucket.series.splay;
    const list = this.#due.get(key);
    if (list === undefined) return;
    list.splice(list.indexOf(bucket), 1);
    if (list.length === 0) {
      this.#due.delete(key);
      this.#dueKeys.splice(this.#dueKeys.indexOf(key), 1);
    }
  }

  #bucketFor(series: Series, start: number, type: ComputeType): Bucket {
    const buckets = series.buckets;
    let i = buckets.length;
    while (i > 0 && buckets[i - 1]!.start > start) i--;
    const before = buckets[i - 1];
    if (before !== undefined && before.start === start) return before;
    const bucket: Bucket = { ...newBucketData(type), series, start };
    buckets.splice(i, 0, bucket);
    this.#bucketCount++;
    const key = start + this.#expire + series.splay;
    const list = this.#due.get(key);
    if (list !== undefined) list.push(bucket);
    else {
      this.#due.set(key, [bucket]);
      this.#insertKey(key);
    }
    return bucket;
  }

  #insertKey(key: number): void {
    const keys = this.#dueKeys;
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    keys.splice(lo, 0, key);
  }

  /**
   * Takes every bucket due before `now` out of its series first, then emits
   * them: so an `add` from `emit` never reaches a bucket being written, and
   * points it adds are written by a later call, not this one.
   */
  #writeDueBefore(now: number, emit: AggregateEmit): void {
    const keys = this.#dueKeys;
    const ready: Bucket[] = [];
    while (keys.length > 0 && keys[0]! < now) {
      const key = keys.shift()!;
      for (const bucket of this.#due.get(key)!) {
        this.#detach(bucket);
        ready.push(bucket);
      }
      this.#due.delete(key);
    }
    for (const bucket of ready) {
      const { compute, name } = bucket.series;
      const c = this.#computes[compute]!;
      emit(compute, name, computeValue(c.type, c.percentile, bucket), bucket.start + this.#offset);
    }
  }

  /** Takes `bucket` out of its series, and the series out when it was its last. */
  #detach(bucket: Bucket): void {
    const series = bucket.series;
    series.buckets.splice(series.buckets.indexOf(bucket), 1);
    this.#bucketCount--;
    this.#pointCount -= bucket.count;
    if (bucket.values !== null) this.#valueCount -= bucket.values.length;
    if (series.buckets.length === 0) {
      this.#series[series.compute]!.delete(series.name);
      this.#seriesCount--;
    }
  }
}
