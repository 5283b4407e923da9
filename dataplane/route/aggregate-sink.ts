import { aggregateKey, type KeyedPoints } from "./aggregation.ts";
import type { RulesProgram } from "./rules/rules-program.ts";
import type { AggregateSink } from "./rules-table.ts";

/**
 * A worker process's aggregate sink: the points its aggregate rules take are
 * batched per event-loop turn, keyed by their aggregation (aggregateKey, the
 * same in every process), and handed to `remote` (sent to the primary,
 * which aggregates for the group).
 */
export function remoteAggregateSink(
  program: RulesProgram,
  remote: (points: KeyedPoints) => void,
): AggregateSink {
  const keys = program.aggregates.map(aggregateKey);
  let batch: KeyedPoints | null = null;
  return {
    add(aggregate, compute, metric, value, timestamp) {
      if (batch === null) {
        batch = {};
        const b = batch;
        setImmediate(() => {
          batch = null;
          remote(b);
        });
      }
      const key = keys[aggregate]!;
      const list = batch[key];
      if (list === undefined) batch[key] = [compute, metric, value, timestamp];
      else list.push(compute, metric, value, timestamp);
    },
  };
}
