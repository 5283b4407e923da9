import type { Destination } from "../forward/destination.ts";
import type { LineRun } from "../forward/memory-only-lines.ts";

/** Bytes of a disk queue re-routed at once. */
const REROUTE_BYTES = 4 * 1024 * 1024;

/**
 * Moves the disk part of `d` to `route` (the rest of the ring), a few
 * megabytes at a time with a turn of the event loop in between (so that the
 * destinations take each part before the next is read), until it is empty
 * or `away()` turns false (`d` is routed to again). Resolves with the
 * datapoints moved; `d` counts them as rerouted.
 */
export async function rerouteDisk(
  d: Destination,
  route: (runs: LineRun[]) => void,
  away: () => boolean,
): Promise<number> {
  let moved = 0;
  while (away()) {
    const runs = await d.takeDisk(REROUTE_BYTES);
    if (runs.length === 0) break;
    route(runs);
    for (const r of runs) moved += r.lines;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return moved;
}
