/**
 * The scenarios of "cheap at every rate" (bench/run.ts): a relay at the
 * rates most relays run, and with one core or two. Each runs polymur and
 * carbon-c-relay in the same invocation, with relaybench's gen in rate mode
 * (every connection writes its share every 10 ms).
 */

import { RELAY_OPTIONS } from "../../dataplane/nodes/relay-options.ts";

/**
 * Seconds of warm-up traffic, at the scenario's rate, before polymur's
 * measured run: its --workers-idle default and 10 s more. Every relay
 * process runs from the start, and the workers the load does not need
 * retire after --workers-idle, so the measured run sees the process count a
 * relay settles into at that rate, as it runs for days (carbon-c-relay's
 * threads do not change with the load: it needs none).
 */
export const SETTLE_SECONDS =
  Number(RELAY_OPTIONS.find((o) => o.name === "workers-idle")?.default ?? 60) + 10;

/** A fixed-rate workload: topology, sender connections, datapoints/s, seconds of traffic. */
export interface FixedRate {
  mode: "broadcast" | "hash";
  dests: number;
  conns: number;
  rate: number;
  seconds: number;
  /** Spread the connections' start over this many seconds (relaybench --stagger). */
  stagger: number;
  what: string;
}

export const FIXED_RATE = {
  "rate-15k": {
    mode: "broadcast",
    dests: 2,
    conns: 50,
    rate: 15_000,
    seconds: 30,
    stagger: 0,
    what: "15,000 dp/s from 50 connections, broadcast to 2 (the Go polymur's figure: 5% of a core)",
  },
  "rate-10k": {
    mode: "hash",
    dests: 3,
    conns: 50,
    rate: 10_000,
    seconds: 30,
    stagger: 0,
    what: "10,000 dp/s from 50 connections, carbon_ch hash to 3",
  },
  "senders-2000": {
    mode: "broadcast",
    dests: 2,
    conns: 2_000,
    rate: 20_000,
    seconds: 30,
    stagger: 1,
    what: "2,000 connections sending 10 dp/s each, broadcast to 2",
  },
} as const satisfies Record<string, FixedRate>;

export type FixedRateScenario = keyof typeof FIXED_RATE;

/** polymur's relaybench --warmup for a fixed-rate scenario: SETTLE_SECONDS at its rate (--quick: none). */
export function settleWarmup(s: FixedRateScenario, quick: boolean): string[] {
  return quick ? [] : ["--warmup", String(FIXED_RATE[s].rate * SETTLE_SECONDS)];
}

/** relaybench options of a fixed-rate scenario (--quick: 3 s of traffic). */
export function fixedRateArgs(s: FixedRateScenario, quick: boolean): string[] {
  const f: FixedRate = FIXED_RATE[s];
  const seconds = quick ? 3 : f.seconds;
  return [
    ...["--mode", f.mode, "--dests", String(f.dests), "--conns", String(f.conns)],
    ...["--rate", String(f.rate), "--lines", String(f.rate * seconds)],
    ...(f.stagger > 0 ? ["--stagger", String(f.stagger)] : []),
  ];
}

/**
 * The "cores" scenario: broadcast-max with the relay pinned to one core
 * (gen and the sinks on the other) and then given both (shared with gen and
 * the sinks), for each relay: relaybench --relay-cpus / --load-cpus.
 */
export const CORES_RUNS = [
  { cores: 1, rb: ["--relay-cpus", "0", "--load-cpus", "1"] },
  { cores: 2, rb: ["--relay-cpus", "0,1", "--load-cpus", "0,1"] },
] as const;
