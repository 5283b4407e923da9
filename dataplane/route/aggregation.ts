import type { Logger } from "../../common/logger.ts";
import { Aggregator } from "./rules/aggregator.ts";
import type { AggregateRule } from "./rules/rules-config.ts";
import type { AggregateSink } from "./rules-table.ts";

/** Why a point an aggregate rule took was not aggregated. */
export type AggregateDropReason =
  | "too_old"
  | "too_new"
  | "series_cap"
  | "values_cap"
  | "rule_removed"
  | "shutdown";
export const AGGREGATE_DROP_REASONS: readonly AggregateDropReason[] = [
  "too_old",
  "too_new",
  "series_cap",
  "values_cap",
  "rule_removed",
  "shutdown",
];

/** What the aggregations of a process did. */
export interface AggregationStats {
  /** Points given to aggregations (one per compute and aggregate rule that took a line). */
  points: number;
  /** Of points: not aggregated, per reason. */
  droppedBy: Record<AggregateDropReason, number>;
  /** Datapoints the aggregations wrote (each routed like a received line, counted as generated). */
  produced: number;
  /** Series with an open bucket now. */
  openSeries: number;
}

export function noAggregation(): AggregationStats {
  return {
    points: 0,
    droppedBy: {
      too_old: 0,
      too_new: 0,
      series_cap: 0,
      values_cap: 0,
      rule_removed: 0,
      shutdown: 0,
    },
    produced: 0,
    openSeries: 0,
  };
}

/** Points from a worker process for one aggregate rule (by key): compute, metric, value, timestamp, ... */
export type KeyedPoints = Record<string, (string | number)[]>;

/** The same aggregation across reloads: everything that decides what it computes and where it goes. */
export function aggregateKey(rule: AggregateRule): string {
  return JSON.stringify([
    rule.exprs.map((e) => e.source),
    rule.every,
    rule.expire,
    rule.timestamp,
    rule.computes.map((c) => [c.type, c.percentile, c.writeTo]),
    rule.sendTo,
    rule.stop,
  ]);
}

/** Where the produced datapoints go: `name rest` (rest is " value timestamp"). */
export type ProducedSink = (aggregate: number, name: string, rest: string) => void;

/** How often buckets are checked for expiry. */
const TICK_MS = 1_000;
/** The default cap on open series, over every aggregation of a node. */
export const DEFAULT_MAX_SERIES = 1_000_000;

/**
 * The aggregate rules of a node, run in one process (a relay's primary: its
 * workers send their points there, so every point of a series meets in one
 * bucket). A new rules file keeps the open buckets of aggregations it did
 * not change (same expressions, interval, expiry, computes and targets);
 * the points held by an aggregation it removed are counted `rule_removed`.
 */
export class Aggregation implements AggregateSink {
  readonly #log: Logger;
  readonly #maxSeries: number;
  #byIndex: Aggregator[] = [];
  #keys: string[] = [];
  #byKey = new Map<string, { index: number; aggregator: Aggregator }>();
  readonly #stats = noAggregation();
  #timer: NodeJS.Timeout | null = null;
  #sink: ProducedSink | null = null;
  #capWarned = false;
  /** Set by flush(): points that come later are counted as dropped at shutdown. */
  #closed = false;

  constructor(log: Logger, maxSeries = DEFAULT_MAX_SERIES) {
    this.#log = log;
    this.#maxSeries = maxSeries;
  }

  /** Starts checking for expired buckets; produced datapoints go to `sink`. */
  start(sink: ProducedSink): void {
    this.#sink = sink;
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => this.expire(Math.floor(Date.now() / 1000)), TICK_MS);
    this.#timer.unref();
  }

  /** Takes the aggregate rules of a new program, keeping the aggregators of unchanged rules. */
  setRules(rules: readonly AggregateRule[]): void {
    const next = new Map<string, { index: number; aggregator: Aggregator }>();
    const byIndex: Aggregator[] = [];
    const keys: string[] = [];
    rules.forEach((rule, index) => {
      const key = aggregateKey(rule);
      const aggregator =
        this.#byKey.get(key)?.aggregator ??
        new Aggregator(
          {
            every: rule.every,
            expire: rule.expire,
            timestamp: rule.timestamp,
            computes: rule.computes,
          },
          { maxSeries: this.#maxSeries },
        );
      next.set(key, { index, aggregator });
      byIndex.push(aggregator);
      keys.push(key);
    });
    for (const [key, { aggregator }] of this.#byKey) {
      if (next.has(key)) continue;
      const open = aggregator.openPoints;
      if (open > 0) {
        this.#stats.droppedBy.rule_removed += open;
        this.#log.warn(
          { points: open, buckets: aggregator.openBuckets },
          `an aggregation the new rules no longer have held ${open} points in open buckets; they are not written (counted as rule_removed)`,
        );
      }
    }
    this.#byKey = next;
    this.#byIndex = byIndex;
    this.#keys = keys;
  }

  /** The key of aggregate `index` of the current rules (what a worker sends with its points). */
  keyOf(index: number): string {
    return this.#keys[index] ?? "";
  }

  add(aggregate: number, compute: number, metric: string, value: number, timestamp: number): void {
    const a = this.#byIndex[aggregate];
    this.#stats.points++;
    if (this.#closed) {
      this.#stats.droppedBy.shutdown++;
      return;
    }
    if (a === undefined) {
      this.#stats.droppedBy.rule_removed++;
      return;
    }
    this.#count(a.add(compute, metric, value, timestamp, Math.floor(Date.now() / 1000)));
  }

  /** Points a worker process sent, by aggregate key. */
  addKeyed(points: KeyedPoints): void {
    const now = Math.floor(Date.now() / 1000);
    for (const [key, list] of Object.entries(points)) {
      const entry = this.#byKey.get(key);
      const n = list.length / 4;
      this.#stats.points += n;
      if (this.#closed) {
        this.#stats.droppedBy.shutdown += n;
        continue;
      }
      if (entry === undefined) {
        this.#stats.droppedBy.rule_removed += n;
        continue;
      }
      for (let i = 0; i < list.length; i += 4) {
        this.#count(
          entry.aggregator.add(
            list[i] as number,
            list[i + 1] as string,
            list[i + 2] as number,
            list[i + 3] as number,
            now,
          ),
        );
      }
    }
  }

  #count(result: string): void {
    if (result === "ok") return;
    const reason = result as AggregateDropReason;
    this.#stats.droppedBy[reason]++;
    if ((reason === "series_cap" || reason === "values_cap") && !this.#capWarned) {
      this.#capWarned = true;
      this.#log.warn(
        { maxSeries: this.#maxSeries, reason },
        reason === "series_cap"
          ? `an aggregation holds ${this.#maxSeries} open series, the most allowed; points of new series are not aggregated (counted as series_cap)`
          : "an aggregation holds the most values allowed for medians, percentiles and variances; more are not aggregated (counted as values_cap)",
      );
    }
  }

  /** Writes every bucket due at `nowSec`. */
  expire(nowSec: number): void {
    const sink = this.#sink;
    if (sink === null) return;
    let open = 0;
    this.#byIndex.forEach((a, index) => {
      a.expire(nowSec, (_compute, name, value, timestamp) => {
        this.#stats.produced++;
        sink(index, name, ` ${value} ${timestamp}`);
      });
      open += a.openSeries;
    });
    this.#stats.openSeries = open;
    if (open < this.#maxSeries) this.#capWarned = false;
  }

  /**
   * At shutdown, as carbon-c-relay does: writes the buckets that have ended
   * and drops the ones still open (their values would be partial), counted
   * as `shutdown` and logged; so are points that arrive afterwards.
   */
  flush(): void {
    const sink = this.#sink;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#closed = true;
    const now = Math.floor(Date.now() / 1000);
    let dropped = 0;
    this.#byIndex.forEach((a, index) => {
      dropped += a.flush(now, (_compute, name, value, timestamp) => {
        this.#stats.produced++;
        sink?.(index, name, ` ${value} ${timestamp}`);
      });
    });
    this.#stats.droppedBy.shutdown += dropped;
    if (dropped > 0) {
      this.#log.warn(
        { points: dropped, reason: "shutdown" },
        `${dropped} points in aggregation buckets that had not ended are not written (counted as aggregation dropped, reason shutdown)`,
      );
    }
  }

  stats(): AggregationStats {
    let open = 0;
    for (const a of this.#byIndex) open += a.openSeries;
    return { ...this.#stats, droppedBy: { ...this.#stats.droppedBy }, openSeries: open };
  }
}
