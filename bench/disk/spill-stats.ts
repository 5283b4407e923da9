/**
 * What the disk-queue scenarios driven by relaybench (disk-spill, disk-idle) add
 * to its records: per run, the relay's last /stats (written by relay-stats.sh
 * into the run's work directory, `final-stats.json`), turned into a `disk_stats`
 * record, and a table of them. relaybench's `report` ignores the record type.
 *
 * Lossless, for a run with a destination down: every line reached the live sink
 * (relaybench's `lost` = 0 and the live destination forwarded every line the
 * relay received), and every line routed to the dead destination went to its
 * disk queue (`disk.spilled` = `routed`, `dropped` = 0).
 */
import fs from "node:fs";
import path from "node:path";
import type { SettledStats, StatsDestination } from "./settle-stats.ts";

/** One destination's figures in a `disk_stats` record. */
export interface DestinationFigures {
  id: string;
  routed: number;
  forwarded: number;
  dropped: number;
  /** Memory and disk. */
  queued_lines: number;
  disk_lines: number;
  disk_spilled: number;
  disk_failures: number;
  connects: number;
}

/** The `disk_stats` record of one relaybench run. */
export interface DiskStatsRecord {
  type: "disk_stats";
  scenario: string;
  label: string;
  rep: number;
  /** From the run's end (relaybench's SIGTERM) to the last /stats read. */
  waited_ms: number;
  /** Every memory queue was empty at the last /stats read. */
  caught_up: boolean;
  /**
   * The dead destination's disk queue: the share of its final bytes already on
   * disk when the live sink had every line (100 = the spill kept up), and how
   * long after that its segments last grew (null: no dead destination, or none
   * of its lines went to disk).
   */
  on_disk_at_end_pct: number | null;
  spill_lag_ms: number | null;
  /** Relay CPU from shortly after the run's end to the segments' last growth (not in relay_cpu_s). */
  lag_cpu_s: number;
  received: number;
  live: DestinationFigures[];
  /** The destination that was down for the whole run (disk-spill), null without one. */
  dead: DestinationFigures | null;
  /** Datapoints that went to disk over all destinations (disk-idle: should be 0). */
  spilled: number;
  /** Every line reached the live sinks: relaybench lost none, each live destination forwarded all. */
  lossless_live: boolean;
  /** Every line for the dead destination is on its disk queue (null: no dead destination). */
  lossless_dead: boolean | null;
  /** Input lines over relaybench's e2e plus spill_lag_ms: the rate at which both destinations had all. */
  dps_with_lag: number | null;
  /** relay_cpu_s plus lag_cpu_s, per million input lines (null as dps_with_lag). */
  cpu_per_m_with_lag: number | null;
}

function figures(d: StatsDestination): DestinationFigures {
  return {
    id: d.id,
    routed: d.routed,
    forwarded: d.forwarded,
    dropped: d.dropped,
    queued_lines: d.queuedLines,
    disk_lines: d.disk?.lines ?? 0,
    disk_spilled: d.disk?.spilled ?? 0,
    disk_failures: d.disk?.failures ?? 0,
    connects: d.connects,
  };
}

/** The destinations of a rendered polymur command line (`--destinations a,b`). */
function destinationsOf(relayCmd: string): string[] {
  const m = /--destinations[= ](\S+)/.exec(relayCmd);
  return m ? m[1]!.split(",") : [];
}

/**
 * The `disk_stats` records of one relaybench invocation: `runs` are its `run`
 * records, `workdir` the --workdir it was given (one `rep<N>/` per run). With
 * `deadLast`, the last destination of the relay's command line is the one down.
 */
export function diskStatsRecords(
  scenario: string,
  runs: readonly Record<string, unknown>[],
  workdir: string,
  deadLast: boolean,
): DiskStatsRecord[] {
  const records: DiskStatsRecord[] = [];
  for (const run of runs) {
    const rep = Number(run["rep"]);
    const file = path.join(workdir, `rep${rep}`, "final-stats.json");
    if (!fs.existsSync(file)) {
      console.error(`bench: ${scenario} rep ${rep}: no ${file} (the relay's last /stats)`);
      continue;
    }
    const settled = JSON.parse(fs.readFileSync(file, "utf8")) as SettledStats;
    if (settled.stats === null) {
      console.error(`bench: ${scenario} rep ${rep}: the relay's /stats could not be read`);
      continue;
    }
    const ids = destinationsOf(String(run["relay_cmd"] ?? ""));
    const deadId = deadLast ? ids.at(-1) : undefined;
    const rows = settled.stats.destinations.map(figures);
    const dead = rows.find((d) => d.id === deadId) ?? null;
    const live = rows.filter((d) => d !== dead);
    const received = settled.stats.datapoints.received;
    const lines = Number(run["lines"]);
    const e2e = Number(run["e2e_s"]);
    const relayCpu = Number(run["relay_cpu_s"]);
    const spool = settled.spool !== null && settled.spool.final > 0 ? settled.spool : null;
    const lag = spool !== null && settled.caughtUp ? spool.lastGrowthMs : null;
    records.push({
      type: "disk_stats",
      scenario,
      label: String(run["label"]),
      rep,
      waited_ms: settled.waitedMs,
      caught_up: settled.caughtUp,
      on_disk_at_end_pct: spool === null ? null : (100 * spool.atEnd) / spool.final,
      spill_lag_ms: lag,
      lag_cpu_s: settled.lagCpuS,
      received,
      live,
      dead,
      spilled: rows.reduce((n, d) => n + d.disk_spilled, 0),
      lossless_live: Number(run["lost"]) === 0 && live.every((d) => d.forwarded === received),
      lossless_dead: dead === null ? null : dead.dropped === 0 && dead.disk_spilled === dead.routed,
      dps_with_lag: lag !== null && e2e > 0 ? lines / (e2e + lag / 1000) : null,
      cpu_per_m_with_lag:
        lag !== null && lines > 0 ? (relayCpu + settled.lagCpuS) / (lines / 1e6) : null,
    });
  }
  return records;
}

const int = (n: number) => n.toLocaleString("en-US");

/** Prints the disk_stats records as a table. */
export function printDiskStats(records: readonly DiskStatsRecord[]): void {
  if (records.length === 0) return;
  const hdr = [
    "label",
    "rep",
    "received",
    "live fwd",
    "dead routed",
    "dead on disk",
    "dead in memory",
    "dead dropped",
    "spilled (all)",
    "on disk at end",
    "spill lag s",
    "dp/s w/ lag",
    "CPU s/M w/ lag",
    "lossless live/dead",
  ];
  const rows = records.map((r) => [
    r.label,
    String(r.rep),
    int(r.received),
    r.live.map((d) => int(d.forwarded)).join(" "),
    r.dead ? int(r.dead.routed) : "-",
    r.dead ? int(r.dead.disk_lines) : "-",
    r.dead ? int(r.dead.queued_lines - r.dead.disk_lines) : "-",
    r.dead ? int(r.dead.dropped) : "-",
    int(r.spilled),
    r.on_disk_at_end_pct === null ? "-" : `${r.on_disk_at_end_pct.toFixed(1)}%`,
    r.spill_lag_ms === null ? "-" : (r.spill_lag_ms / 1000).toFixed(2),
    r.dps_with_lag === null ? "-" : r.dps_with_lag.toFixed(0),
    r.cpu_per_m_with_lag === null ? "-" : r.cpu_per_m_with_lag.toFixed(2),
    `${r.lossless_live ? "yes" : "NO"}/${r.lossless_dead === null ? "-" : r.lossless_dead ? "yes" : "NO"}`,
  ]);
  const widths = hdr.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log(fmt(hdr));
  for (const r of rows) console.log(fmt(r));
}
