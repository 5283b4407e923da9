/**
 * The `disk-replay` scenario of bench/run.ts: how fast polymur sends a disk
 * queue to a destination that comes back. relaybench cannot stop a sink and
 * start it later, so this drives relaybench's gen and sink binaries itself:
 *
 *   1. polymur relay --queue-dir (a fresh directory) with one destination, a
 *      port nobody listens on yet;
 *   2. fill: gen sends N lines as fast as polymur takes them; wait until
 *      /stats shows all N on the destination's disk queue;
 *   3. replay: start a sink on the destination's port; measure until it has
 *      counted all N lines, then check /stats says the disk queue is empty.
 *
 * Figures per rep, as relaybench `run` records (so that `relaybench report`
 * shows them beside the other scenarios), mode "replay": `dps` = N / (sink
 * start -> last line), `relay_cpu_per_m` = polymur's CPU in that window per
 * million, `peak_rss_mib` = sampled peak in that window; and
 * `connect_s` (sink start -> first line: polymur's reconnect delay, which
 * `--backoff-max 0.2` keeps short), `drain_dps` = N / (first line -> last),
 * `fill_dps` / `fill_cpu_per_m` (gen start -> all N on disk, one destination).
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { jsonLines } from "./json-lines.ts";
import { machineCpu, processTree, treeCpu, treeRssKib } from "./proc-tree.ts";
import type { Stats } from "./settle-stats.ts";

/** What runDiskReplay needs. */
export interface ReplayOptions {
  /** Node 24 binary that runs polymur. */
  node: string;
  /** The checkout: bin/polymur.js. */
  repo: string;
  /** relaybench's compiled gen and sink. */
  gen: string;
  sink: string;
  /** Datapoints to queue and replay per rep. */
  lines: number;
  reps: number;
  /** gen connections while filling (50). */
  conns: number;
  /** Distinct names (gen -k, 100000 as relaybench). */
  names: number;
  /** polymur --workers, undefined = its default. */
  workers: number | undefined;
  /** More polymur relay flags, already split into words. */
  polymurArgs: string[];
  /** Result label, e.g. "polymur -w2 queue-dir". */
  label: string;
  /** Where each rep's temporary directory (queue, log) is made. */
  diskDir: string;
  /** JSON-lines file the records are appended to. */
  json: string;
  /** True once the user interrupted: no further rep starts. */
  stopped: () => boolean;
}

const HOST = "127.0.0.1";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, HOST, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A child's stdout JSON lines one at a time, with a timeout; none coming is an error here. */
function jsonLinesOrFail(
  child: ChildProcess,
): (timeoutMs: number) => Promise<Record<string, unknown>> {
  const next = jsonLines(child);
  return async (timeoutMs) => {
    const line = await next(timeoutMs);
    if (line === null) throw new Error("no output (timed out or exited)");
    return line;
  };
}

async function stats(url: string): Promise<Stats | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok ? ((await res.json()) as Stats) : null;
  } catch {
    return null;
  }
}

/** Polls /stats every intervalMs until ok(stats) or timeoutMs; returns the last read. */
async function pollStats(
  url: string,
  ok: (s: Stats) => boolean,
  timeoutMs: number,
  intervalMs: number,
  tick: () => void = () => {},
): Promise<{ stats: Stats | null; ok: boolean }> {
  const end = performance.now() + timeoutMs;
  let last: Stats | null = null;
  while (performance.now() < end) {
    tick();
    const s = await stats(url);
    if (s !== null) {
      last = s;
      if (ok(s)) return { stats: s, ok: true };
    }
    await sleep(intervalMs);
  }
  return { stats: last, ok: false };
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => child.once("exit", () => r()));
}

/** SIGTERM to the relay's process group, SIGKILL after 10 s. */
async function stopGroup(child: ChildProcess): Promise<void> {
  const pid = child.pid!;
  try {
    process.kill(-pid, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {
      // gone
    }
  }, 10_000);
  await exited(child);
  clearTimeout(timer);
}

/** One rep: fill, replay; the `run` record. */
async function oneRep(o: ReplayOptions, rep: number): Promise<Record<string, unknown>> {
  fs.mkdirSync(o.diskDir, { recursive: true });
  const base = fs.mkdtempSync(path.join(o.diskDir, "polymur-replay-"));
  const [listen, statPort, destPort] = [await freePort(), await freePort(), await freePort()];
  const url = `http://${HOST}:${statPort}/stats`;
  const args = [
    path.join(o.repo, "bin/polymur.js"),
    "relay",
    "--listen-addr",
    `${HOST}:${listen}`,
    "--destinations",
    `${HOST}:${destPort}`,
    "--distribution",
    "broadcast",
    "--api-addr=",
    "--stat-addr",
    `${HOST}:${statPort}`,
    "--metrics-flush",
    "0",
    "--queue-dir",
    path.join(base, "queue"),
    "--backoff-max",
    "0.2",
    "--shutdown-timeout",
    "2",
    ...(o.workers === undefined ? [] : ["--workers", String(o.workers)]),
    ...o.polymurArgs,
  ];
  const relayCmd = [o.node, ...args].join(" ");
  if (rep === 1) console.error(`bench: disk-replay: relay: ${relayCmd}`);
  const log = fs.openSync(path.join(base, "relay.log"), "w");
  const relay = spawn(o.node, args, { cwd: base, detached: true, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  let gen: ChildProcess | null = null;
  let sink: ChildProcess | null = null;
  try {
    const up = await pollStats(url, () => true, 30_000, 100);
    if (!up.ok) throw new Error(`polymur did not serve ${url}: see ${base}/relay.log`);
    const n = o.lines;
    let peakKib = 0;
    const sample = () => {
      peakKib = Math.max(peakKib, treeRssKib(processTree(relay.pid!)));
    };

    // 1. fill: everything for the destination goes to disk while it is down
    const fillCpu0 = treeCpu(processTree(relay.pid!));
    const fillT0 = performance.now();
    gen = spawn(
      o.gen,
      ["-H", HOST, "-p", String(listen), "-c", String(o.conns), "-n", String(n)].concat([
        "-k",
        String(o.names),
        "-s",
        "1",
        "-r",
        "0",
        "-q",
      ]),
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const genOut = jsonLinesOrFail(gen);
    const genRes = await genOut(600_000 + n / 10);
    await exited(gen);
    gen = null;
    const onDisk = (s: Stats) => {
      const d = s.destinations[0];
      return (
        s.datapoints.received >= n &&
        d !== undefined &&
        d.disk?.lines === d.routed &&
        d.queuedLines === d.routed
      );
    };
    const filled = await pollStats(url, onDisk, 120_000 + n / 100, 100, sample);
    const fillS = (performance.now() - fillT0) / 1000;
    const fillCpu = treeCpu(processTree(relay.pid!)) - fillCpu0;
    const fillPeakKib = peakKib;
    const d0 = filled.stats?.destinations[0];
    if (!filled.ok || d0 === undefined) {
      throw new Error(
        `the disk queue did not take all ${n} lines: /stats destination ${JSON.stringify(d0)}` +
          ` (gen sent ${String(genRes["lines"])}); see ${base}/relay.log`,
      );
    }
    const diskBytes = d0.disk?.bytes ?? 0;
    console.error(
      `bench: disk-replay rep ${rep}: ${n} lines on disk (${(diskBytes / 2 ** 20).toFixed(0)} MiB)` +
        ` after ${fillS.toFixed(2)} s (${(n / fillS).toFixed(0)} dp/s); starting the sink`,
    );

    // 2. replay: the destination comes back
    peakKib = 0;
    const cpu0 = treeCpu(processTree(relay.pid!));
    const box0 = machineCpu();
    const self0 = process.cpuUsage();
    sink = spawn(
      o.sink,
      ["-p", String(destPort), "-H", HOST, "-e", String(n), "-t", "10"].concat([
        "-T",
        String(Math.ceil(120 + n / 50_000)),
      ]),
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const sinkOut = jsonLinesOrFail(sink);
    const ready = await sinkOut(10_000);
    if (ready["ready"] !== true) throw new Error(`sink did not start: ${JSON.stringify(ready)}`);
    const sinkExited = exited(sink);
    let done = false;
    void sinkExited.then(() => {
      done = true;
    });
    while (!done) {
      sample();
      await sleep(100);
    }
    const sinkRes = await sinkOut(5_000);
    const cpu1 = treeCpu(processTree(relay.pid!));
    const box1 = machineCpu();
    const self1 = process.cpuUsage(self0);
    sink = null;
    const drained = await pollStats(url, (s) => s.destinations[0]?.disk?.lines === 0, 10_000, 100);
    const dEnd = drained.stats?.destinations[0];

    const received = Number(sinkRes["total_lines"]);
    const start = Number(sinkRes["start_mono"]);
    const first = Number(sinkRes["first_mono"]);
    const end =
      sinkRes["reason"] === "expected"
        ? Number(sinkRes["reached_mono"])
        : Number(sinkRes["last_mono"]);
    const e2e = end - start;
    const relayCpu = cpu1 - cpu0;
    const sinkCpu = Number(sinkRes["cpu_user_s"]) + Number(sinkRes["cpu_sys_s"]);
    const selfCpu = (self1.user + self1.system) / 1e6;
    const lost = Math.max(0, n - received);
    return {
      type: "run",
      label: o.label,
      peer: "custom",
      mode: "replay",
      dests: 1,
      conns: o.conns,
      lines: n,
      names: o.names,
      rate: 0,
      rep,
      warmup: 0,
      stagger: 0,
      workers: null,
      relay_cmd: relayCmd,
      e2e_s: e2e,
      dps: e2e > 0 ? n / e2e : 0,
      out_lps: e2e > 0 ? received / e2e : 0,
      delivered_dps: e2e > 0 ? received / e2e : 0,
      lost_pct: (100 * lost) / n,
      relay_cpu_s: relayCpu,
      relay_cpu_per_m: relayCpu / (n / 1e6),
      relay_cores: e2e > 0 ? relayCpu / e2e : 0,
      peak_rss_mib: peakKib / 1024,
      sampled_peak_rss_mib: peakKib / 1024,
      expected: n,
      received,
      lost,
      extra: Math.max(0, received - n),
      bad: Number(sinkRes["bad"]),
      sink_reason: sinkRes["reason"],
      per_port: [received],
      gen_cpu_s: 0,
      sink_cpu_s: sinkCpu,
      driver_cpu_s: selfCpu,
      other_cpu_s: box1.busy - box0.busy - relayCpu - sinkCpu - selfCpu,
      nice_s: box1.nice - box0.nice,
      connect_s: first > 0 ? first - start : null,
      drain_s: first > 0 ? end - first : null,
      drain_dps: first > 0 && end > first ? received / (end - first) : 0,
      disk_lines_after: dEnd?.disk?.lines ?? null,
      disk_replayed: dEnd?.disk?.replayed ?? null,
      forwarded_after: dEnd?.forwarded ?? null,
      disk_bytes: diskBytes,
      fill_s: fillS,
      fill_dps: n / fillS,
      fill_cpu_s: fillCpu,
      fill_cpu_per_m: fillCpu / (n / 1e6),
      fill_peak_rss_mib: fillPeakKib / 1024,
      relay_exit: relay.exitCode,
    };
  } finally {
    for (const c of [gen, sink]) if (c && c.exitCode === null) c.kill("SIGTERM");
    await stopGroup(relay);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

/** median/min/max over the reps, as relaybench's summary. */
function spread(values: number[]): { median: number; min: number; max: number } | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v.at(-1)! };
}

/** relaybench's `summary` record (its `report` prints it), plus the replay's own figures. */
function summarize(runs: readonly Record<string, unknown>[]): Record<string, unknown> {
  const r0 = runs[0]!;
  const s: Record<string, unknown> = {
    type: "summary",
    label: r0["label"],
    peer: r0["peer"],
    mode: r0["mode"],
    dests: r0["dests"],
    conns: r0["conns"],
    lines: r0["lines"],
    rate: 0,
    workers: null,
    stagger: 0,
    reps: runs.length,
  };
  const keys = [
    "dps",
    "delivered_dps",
    "relay_cpu_per_m",
    "relay_cores",
    "peak_rss_mib",
    "lost",
    "lost_pct",
    "other_cpu_s",
    "gen_cpu_s",
    "sink_cpu_s",
    "e2e_s",
    "nice_s",
    "connect_s",
    "drain_dps",
    "fill_dps",
    "fill_cpu_per_m",
  ];
  for (const k of keys) s[k] = spread(runs.map((r) => Number(r[k])));
  return s;
}

/**
 * Runs the reps, appends their `run` records and a `summary` to o.json and
 * prints a line per rep. Returns the number of reps that failed or lost lines.
 */
export async function runDiskReplay(o: ReplayOptions): Promise<number> {
  const runs: Record<string, unknown>[] = [];
  let failures = 0;
  for (let rep = 1; rep <= o.reps && !o.stopped(); rep++) {
    let r: Record<string, unknown>;
    try {
      r = await oneRep(o, rep);
    } catch (err) {
      console.error(`bench: disk-replay rep ${rep}: ${(err as Error).message}`);
      failures++;
      continue;
    }
    runs.push(r);
    const f = (k: string, d = 0) => Number(r[k]).toFixed(d);
    console.error(
      `rep ${rep}/${o.reps}: replay ${f("dps")} dp/s (sink start -> last line ${f("e2e_s", 2)} s;` +
        ` connect ${f("connect_s", 2)} s, then ${f("drain_dps")} dp/s)  relay CPU ${f("relay_cpu_s", 2)} s` +
        ` = ${f("relay_cpu_per_m", 2)} s/M dp, ${f("relay_cores", 2)} cores  RSS ${f("peak_rss_mib", 1)} MiB` +
        `  lost ${f("lost")}, left on disk ${String(r["disk_lines_after"])}` +
        `  | fill ${f("fill_dps")} dp/s, ${f("fill_cpu_per_m", 2)} s/M dp [sink ${f("sink_cpu_s", 2)}s` +
        ` other ${f("other_cpu_s", 2)}s cpu]`,
    );
    if (Number(r["lost"]) > 0 || r["disk_lines_after"] !== 0) failures++;
  }
  if (runs.length > 0) {
    const out = [...runs, summarize(runs)].map((r) => `${JSON.stringify(r)}\n`).join("");
    fs.appendFileSync(o.json, out);
  }
  return failures;
}
