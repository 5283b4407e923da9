import { datapointTotals, type PipelineStats } from "./pipeline-stats.ts";

/** Graphite-safe path element: dots, spaces and other separators become `_`. */
export function pathElement(s: string): string {
  return s.replace(/[^A-Za-z0-9_-]/g, "_");
}

/**
 * polymur's own metrics as Graphite plaintext lines, as carbon-c-relay and
 * carbon do for themselves: counters are the increase since the previous
 * flush, gauges the current value. A destination with a disk queue
 * (--queue-dir) also has `recovered`, `disk.{datapoints,bytes,spilled,
 * replayed,failures}` and `oldest_queued_seconds`.
 */
export class SelfMetrics {
  readonly #prefix: string;
  readonly #cumulative: boolean;
  #prev = new Map<string, number>();

  /** `cumulative`: counters as totals since start (carbon-c-relay's `statistics` default), not increases. */
  constructor(prefix: string, cumulative = false) {
    this.#prefix = prefix;
    this.#cumulative = cumulative;
  }

  lines(s: PipelineStats, nowSec: number): string {
    const out: string[] = [];
    const counter = (name: string, v: number): void => {
      const before = this.#cumulative ? 0 : (this.#prev.get(name) ?? 0);
      this.#prev.set(name, v);
      out.push(`${this.#prefix}.${name} ${v - before} ${nowSec}`);
    };
    const gauge = (name: string, v: number): void => {
      out.push(`${this.#prefix}.${name} ${v} ${nowSec}`);
    };
    const t = datapointTotals(s);
    counter("received", t.received);
    counter("generated", t.generated);
    for (const [r, n] of Object.entries(t.rejectedBy)) counter(`rejected.${r}`, n);
    for (const [r, n] of Object.entries(t.unroutedBy)) counter(`unrouted.${r}`, n);
    gauge("connections", s.connections);
    const a = s.aggregation;
    if (a !== null) {
      counter("aggregation.points", a.points);
      for (const [r, n] of Object.entries(a.droppedBy)) counter(`aggregation.dropped.${r}`, n);
      counter("aggregation.produced", a.produced);
      gauge("aggregation.open_series", a.openSeries);
    }
    counter("undelivered", t.undelivered);
    for (const d of s.destinations) {
      const p = `destinations.${pathElement(d.spec)}`;
      counter(`${p}.forwarded`, d.forwarded);
      counter(`${p}.resent`, d.resent);
      counter(`${p}.dropped`, d.dropped);
      counter(`${p}.undelivered`, d.undelivered);
      counter(`${p}.unconfirmed`, d.unconfirmed);
      gauge(`${p}.queued`, d.queuedLines);
      gauge(`${p}.up`, d.state === "connected" ? 1 : 0);
      // Only for a destination with a disk queue: no new series for the others.
      const q = d.disk;
      if (q !== undefined) {
        counter(`${p}.recovered`, d.recovered);
        gauge(`${p}.disk.datapoints`, q.lines);
        gauge(`${p}.disk.bytes`, q.bytes);
        counter(`${p}.disk.spilled`, q.spilled);
        counter(`${p}.disk.replayed`, q.replayed);
        counter(`${p}.disk.failures`, q.failures);
        gauge(`${p}.oldest_queued_seconds`, q.oldestAgeMs / 1000);
      }
    }
    return out.join("\n") + "\n";
  }
}
