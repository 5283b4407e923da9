/**
 * The `wire-in` scenario of bench/run.ts: what each way of sending data into
 * a relay costs, in one invocation, on one workload. relaybench's gen speaks
 * plaintext over TCP only, so this drives relaybench's sink (the counting
 * destination) itself and sends with bench/wire/sender.ts, from input made
 * beforehand (workload.ts: gen's own lines, per connection, as plaintext or
 * as carbon-relay's pickle frames):
 *
 *   polymur plaintext, polymur TLS (--tls-cert), polymur pickle
 *   (--pickle-addr), polymur pickle over TLS, carbon-c-relay plaintext,
 *   carbon-c-relay `transport plain ssl`
 *
 * each relay broadcasting to one sink. Two phases: as fast as the relay takes
 * the input (N lines, 50 connections; polymur warmed up first with 200000
 * lines of its run's input, as the *-max scenarios do), then a fixed rate
 * (100000 dp/s, 1M lines). The reps are interleaved (rep 1 of every variant,
 * then rep 2, ...), so that a disturbance of the machine spreads over all.
 *
 * Figures per run are relaybench's (its `run` and `summary` records, so that
 * its `report` shows them): `dps` = lines / (first byte sent -> the sink's
 * last expected line), `relay_cpu_per_m` = CPU of the relay's process tree
 * (/proc, as relaybench) in that window per million lines sent. The table
 * this prints adds each variant's ratios to polymur plaintext and to
 * carbon-c-relay `ssl`, and is kept as a `wire_in` record.
 */
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { jsonLines } from "../disk/json-lines.ts";
import { machineCpu, processTree, treeCpu, treeRssKib } from "../disk/proc-tree.ts";
import { CARBON_MAX_DATAPOINTS, checkAgainstPython } from "./carbon-pickle.ts";
import { type BenchPki, createBenchPki } from "./pki.ts";
import { type Encoding, makeWorkload } from "./workload.ts";

/** What runWireIn needs. */
export interface WireInOptions {
  /** Node 24 binary: polymur and the sender. */
  node: string;
  /** The checkout: bin/polymur.js, bench/wire/sender.ts. */
  repo: string;
  /** relaybench's compiled gen (for its lines) and sink. */
  gen: string;
  sink: string;
  /** Python 3: checks the pickle encoding against Python's own. */
  python: string;
  /** Lines per run as fast as possible. */
  lines: number;
  /** Fixed-rate phase: total dp/s (0 = skip the phase) and lines per run. */
  rate: number;
  rateLines: number;
  reps: number;
  conns: number;
  names: number;
  /** polymur warm-up lines (its run's input, sent as fast as possible). */
  warmup: number;
  /** polymur --workers, undefined = its default; the count shown in labels. */
  workers: number | undefined;
  shownWorkers: number;
  polymurArgs: string[];
  /** carbon-c-relay -w and more flags (-q 1000000). */
  ccrWorkers: number;
  ccrArgs: string[];
  relays: readonly ("polymur" | "carbon-c-relay")[];
  labelSuffix: string;
  /** Before each run, wait up to this many seconds for the machine to be quiet (0 = no). */
  waitQuiet: number;
  /** Where the input files, certificates and each run's directory are made (removed after). */
  tmpDir: string;
  /** JSON-lines file the records are appended to. */
  json: string;
  stopped: () => boolean;
}

/** One way of sending into one relay. */
interface Variant {
  relay: "polymur" | "carbon-c-relay";
  encoding: Encoding;
  tls: boolean;
  /** In the label and the table. */
  input: string;
}

const VARIANTS: readonly Variant[] = [
  { relay: "polymur", encoding: "plaintext", tls: false, input: "plaintext" },
  { relay: "polymur", encoding: "plaintext", tls: true, input: "tls" },
  { relay: "polymur", encoding: "pickle", tls: false, input: "pickle" },
  { relay: "polymur", encoding: "pickle", tls: true, input: "pickle+tls" },
  { relay: "carbon-c-relay", encoding: "plaintext", tls: false, input: "plaintext" },
  { relay: "carbon-c-relay", encoding: "plaintext", tls: true, input: "ssl" },
];

const HOST = "127.0.0.1";
/** A fixed rate's sender ticks (gen's -m 10). */
const TICK_MS = 10;
/**
 * The sink gives up after this many seconds without a line (relaybench's
 * --sink-idle is 5: polymur's primary process can spend 4 s in one
 * event-loop turn under a pickle-over-TLS burst, see bench/RESULTS.md).
 */
const SINK_IDLE_S = 10;

type Phase = "max" | "rate";

/** The input files of one phase and encoding. */
interface Input {
  data: string;
  index: string;
  lines: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((r) => child.once("exit", () => r()));
}

/** SIGTERM to the relay's process group, SIGKILL after 10 s (relaybench's stop_group). */
async function stopGroup(child: ChildProcess): Promise<void> {
  try {
    process.kill(-child.pid!, "SIGTERM");
  } catch {
    return;
  }
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // gone
    }
  }, 10_000);
  await exited(child);
  clearTimeout(timer);
}

/** relaybench's wait_quiet: until less than 15% of the machine is busy over a second, at most `s` seconds. */
async function waitQuiet(s: number): Promise<number | null> {
  if (s <= 0) return null;
  const end = performance.now() + s * 1000;
  const cpus = os.availableParallelism();
  for (;;) {
    const b0 = machineCpu().busy;
    await sleep(1000);
    const busy = (machineCpu().busy - b0) / cpus;
    if (busy < 0.15 || performance.now() >= end) return busy;
    console.error(`bench: wire-in: machine ${(100 * busy).toFixed(0)}% busy, waiting`);
  }
}

/** carbon-c-relay's relay.conf: relaybench's preset (broadcast, a `forward` cluster), TLS listener with `ssl`. */
function ccrConfig(listen: number, dest: number, pki: BenchPki | null): string {
  const transport = pki === null ? "" : ` transport plain ssl ${pki.combinedFile}`;
  return (
    "# generated by bench/wire/wire-in.ts\n" +
    `listen\n    type linemode${transport}\n        ${HOST}:${listen} proto tcp\n    ;\n\n` +
    `cluster dests\n    forward\n        ${HOST}:${dest}\n    ;\n\n` +
    "match *\n    send to dests\n    stop\n    ;\n"
  );
}

/** Until `port` takes a connection (a TLS handshake for a TLS listener); throws if the relay exits first. */
async function waitListening(relay: ChildProcess, port: number, ca: Buffer | null, log: string) {
  const end = performance.now() + 30_000;
  for (;;) {
    if (relay.exitCode !== null || relay.signalCode !== null) {
      throw new Error(`the relay exited before listening: see ${log}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s =
        ca === null ? net.connect({ host: HOST, port }) : tls.connect({ host: HOST, port, ca });
      s.once(ca === null ? "connect" : "secureConnect", () => {
        s.end();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > end) throw new Error(`the relay did not listen on ${port}: see ${log}`);
    await sleep(50);
  }
}

/** What a run keeps of polymur's /stats. */
interface DatapointStats {
  received: number;
  forwarded: number;
  dropped: number;
  droppedBy?: Record<string, number>;
}

/**
 * polymur's /stats `datapoints` once they have not moved for 1.5 s (worker
 * processes report once a second), or after 5 s; null if it cannot be read.
 */
async function settledStats(url: string): Promise<DatapointStats | null> {
  let last: DatapointStats | null = null;
  let lastText = "";
  let since = performance.now();
  const end = performance.now() + 5000;
  while (performance.now() < end) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      const d = ((await res.json()) as { datapoints: DatapointStats }).datapoints;
      const text = JSON.stringify([d.received, d.forwarded, d.dropped]);
      if (text !== lastText) [lastText, since] = [text, performance.now()];
      last = d;
      if (performance.now() - since >= 1500) break;
    } catch {
      // not up, or busy: try again
    }
    await sleep(100);
  }
  return last;
}

/** One run: a fresh relay and sink, polymur's warm-up, the measured send; the `run` record. */
async function oneRun(
  o: WireInOptions,
  v: Variant,
  phase: Phase,
  rep: number,
  input: Input,
  warm: Input | null,
  pki: BenchPki,
): Promise<Record<string, unknown>> {
  const dir = fs.mkdtempSync(path.join(o.tmpDir, "run-"));
  const warmLines = warm?.lines ?? 0;
  const n = input.lines;
  const rate = phase === "rate" ? o.rate : 0;
  let relay: ChildProcess | null = null;
  let sink: ChildProcess | null = null;
  let sender: ChildProcess | null = null;
  try {
    const quiet = await waitQuiet(o.waitQuiet);
    sink = spawn(
      o.sink,
      ["-p", "0", "-H", HOST, "-e", String(warmLines + n), "-t", String(SINK_IDLE_S)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const sinkOut = jsonLines(sink);
    const ready = await sinkOut(10_000);
    const dest = (ready?.["ports"] as number[] | undefined)?.[0];
    if (ready?.["ready"] !== true || dest === undefined) throw new Error("the sink did not start");

    const [listen, pickle, stat] = [await freePort(), await freePort(), await freePort()];
    let argv: string[];
    if (v.relay === "polymur") {
      argv = [o.node, path.join(o.repo, "bin/polymur.js"), "relay"];
      argv.push("--listen-addr", `${HOST}:${listen}`, "--destinations", `${HOST}:${dest}`);
      // /stats: what became of the lines the sink did not get (read after the run)
      argv.push("--distribution", "broadcast", "--api-addr=", "--stat-addr", `${HOST}:${stat}`);
      argv.push("--metrics-flush", "0");
      if (v.encoding === "pickle") argv.push("--pickle-addr", `${HOST}:${pickle}`);
      if (v.tls) argv.push("--tls-cert", pki.certFile, "--tls-key", pki.keyFile);
      if (o.workers !== undefined) argv.push("--workers", String(o.workers));
      argv.push(...o.polymurArgs);
    } else {
      const conf = path.join(dir, "relay.conf");
      fs.writeFileSync(conf, ccrConfig(listen, dest, v.tls ? pki : null));
      argv = ["carbon-c-relay", "-f", conf, "-w", String(o.ccrWorkers), "-s", "-B", "1024"];
      argv.push(...o.ccrArgs);
    }
    const port = v.encoding === "pickle" ? pickle : listen;
    const relayCmd = argv.join(" ");
    if (rep === 1) console.error(`bench: wire-in: relay: ${relayCmd}`);
    const logFile = path.join(dir, "relay.log");
    const logFd = fs.openSync(logFile, "w");
    relay = spawn(argv[0]!, argv.slice(1), {
      cwd: dir,
      detached: true,
      stdio: ["ignore", logFd, logFd],
    });
    fs.closeSync(logFd);
    const ca = v.tls ? fs.readFileSync(pki.caFile) : null;
    await waitListening(relay, port, ca, logFile);
    await sleep(500); // relaybench's --settle: polymur's worker processes bind too

    const send = (what: Input, sendRate: number): ChildProcess => {
      const args = [path.join(o.repo, "bench/wire/sender.ts"), "--port", String(port)];
      args.push("--data", what.data, "--index", what.index, "--rate", String(sendRate));
      args.push("--tick-ms", String(TICK_MS));
      if (v.tls) args.push("--tls-ca", pki.caFile);
      return spawn(o.node, args, { stdio: ["ignore", "pipe", "inherit"] });
    };
    let peakKib = 0;
    const sample = () => {
      peakKib = Math.max(peakKib, treeRssKib(processTree(relay!.pid!)));
    };
    let warmupLost = 0;
    if (warm !== null) {
      sender = send(warm, 0);
      await exited(sender);
      sender = null;
      // until the sink has it all, or nothing new came for 3 s (relaybench's warm-up)
      let last = -1;
      let since = performance.now();
      const end = performance.now() + 60_000;
      let total = 0;
      while (performance.now() < end && performance.now() - since < 3000) {
        sink.kill("SIGUSR1");
        let snap = await sinkOut(5000);
        while (snap !== null && snap["reason"] !== "snapshot") snap = await sinkOut(5000);
        total = Number(snap?.["total_lines"] ?? 0);
        if (total >= warmLines) break;
        if (total !== last) [last, since] = [total, performance.now()];
        await sleep(200);
      }
      warmupLost = Math.max(0, warmLines - total);
      sample();
    }

    const cpu0 = treeCpu(processTree(relay.pid!));
    const box0 = machineCpu();
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    sender = send(input, rate);
    const senderOut = jsonLines(sender);
    const senderExited = exited(sender);
    let senderDone: number | null = null;
    void senderExited.then(() => {
      senderDone = performance.now();
    });
    const sinkExited = exited(sink);
    let sinkDone = false;
    void sinkExited.then(() => {
      sinkDone = true;
    });
    const deadline = t0 + 1_800_000;
    let sent: Record<string, unknown> | null = null;
    const readSender = async () => {
      sent ??= await senderOut(0);
    };
    while (!sinkDone) {
      sample();
      await readSender();
      const now = performance.now();
      if (now > deadline || (senderDone !== null && now > senderDone + 60_000)) {
        sink.kill("SIGTERM");
        break;
      }
      await sleep(100);
    }
    const cpu1 = treeCpu(processTree(relay.pid!));
    const box1 = machineCpu();
    const self = process.cpuUsage(self0);
    sample();
    const stats = v.relay === "polymur" ? await settledStats(`http://${HOST}:${stat}/stats`) : null;
    const sinkRes = await sinkOut(10_000);
    if (sent === null) {
      sent = await senderOut(120_000);
    }
    if (sinkRes === null) throw new Error("the sink gave no result");
    if (sent === null) throw new Error("the sender gave no result");
    const s = sent as Record<string, unknown>;
    const lines = Number(s["lines"]);
    const received = Number(sinkRes["total_lines"]) - warmLines + warmupLost;
    const perPort = [received];
    const lost = Math.max(0, lines - received);
    const end =
      sinkRes["reason"] === "expected"
        ? Number(sinkRes["reached_mono"])
        : Number(sinkRes["last_mono"]);
    const e2e = end > 0 ? end - Number(s["start_mono"]) : Number.NaN;
    const relayCpu = cpu1 - cpu0;
    const senderCpu = Number(s["cpu_user_s"]) + Number(s["cpu_sys_s"]);
    const senderTotal = Number(s["cpu_total_s"]);
    const sinkCpu = Number(sinkRes["cpu_user_s"]) + Number(sinkRes["cpu_sys_s"]);
    const selfCpu = (self.user + self.system) / 1e6;
    const t = s["tls"] as { protocol: string; cipher: string } | null;
    return {
      type: "run",
      label: label(o, v),
      peer: v.relay === "polymur" ? "custom" : "carbon-c-relay",
      mode: "broadcast",
      dests: 1,
      conns: o.conns,
      lines,
      names: o.names,
      rate,
      rep,
      warmup: warmLines,
      stagger: 0,
      workers: v.relay === "polymur" ? null : String(o.ccrWorkers),
      relay_cmd: relayCmd,
      input: v.input,
      encoding: v.encoding,
      tls: v.tls,
      phase,
      e2e_s: e2e,
      // a fixed rate: how long after the schedule (lines / rate) the last line arrived
      lag_s: rate > 0 ? e2e - lines / rate : null,
      dps: e2e > 0 ? lines / e2e : 0,
      out_lps: e2e > 0 ? received / e2e : 0,
      delivered_dps: e2e > 0 ? received / e2e : 0,
      lost_pct: lines > 0 ? (100 * lost) / lines : 0,
      gen_s: Number(s["elapsed_s"]),
      gen_lps: Number(s["lines_per_s"]),
      relay_cpu_s: relayCpu,
      relay_cpu_per_m: lines > 0 ? relayCpu / (lines / 1e6) : 0,
      relay_cores: e2e > 0 ? relayCpu / e2e : 0,
      peak_rss_mib: peakKib / 1024,
      sampled_peak_rss_mib: peakKib / 1024,
      expected: warmLines + n,
      received,
      lost,
      extra: Math.max(0, received - lines),
      bad: Number(sinkRes["bad"]),
      ignored: Number(sinkRes["ignored"]),
      sink_reason: sinkRes["reason"],
      per_port: perPort,
      per_port_conns: (sinkRes["ports"] as { conns: number }[]).map((p) => p.conns),
      wire_bytes: Number(s["bytes"]),
      tls_protocol: t?.protocol ?? null,
      tls_cipher: t?.cipher ?? null,
      connect_s: Number(s["connect_s"]),
      gen_cpu_s: senderCpu,
      gen_cpu_total_s: senderTotal,
      sink_cpu_s: sinkCpu,
      driver_cpu_s: selfCpu,
      other_cpu_s: box1.busy - box0.busy - relayCpu - senderTotal - sinkCpu - selfCpu,
      nice_s: box1.nice - box0.nice,
      gen_errors: Number(s["errors"]),
      relay_exit: relay.exitCode,
      warmup_lost: warmupLost,
      // polymur's /stats after the run (warm-up included): where the lines the sink lacks went
      relay_received: stats?.received ?? null,
      relay_forwarded: stats?.forwarded ?? null,
      relay_dropped: stats?.dropped ?? null,
      relay_dropped_queue_full: stats?.droppedBy?.["queue_full"] ?? null,
      box_busy_before: quiet,
    };
  } finally {
    for (const c of [sender, sink]) if (c && c.exitCode === null) c.kill("SIGTERM");
    if (relay !== null) await stopGroup(relay);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function label(o: WireInOptions, v: Variant): string {
  return v.relay === "polymur"
    ? `polymur -w${o.shownWorkers} ${v.input}${o.labelSuffix}`
    : `carbon-c-relay ${v.input}${o.labelSuffix}`;
}

/** median/min/max, as relaybench's summary. */
function spread(values: number[]): { median: number; min: number; max: number } | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v.at(-1)! };
}

/** relaybench's `summary` record of one variant's runs in one phase. */
function summarize(runs: readonly Record<string, unknown>[]): Record<string, unknown> {
  const r0 = runs[0]!;
  const s: Record<string, unknown> = {
    type: "summary",
    reps: runs.length,
    ...Object.fromEntries(
      ["label", "peer", "mode", "dests", "conns", "lines", "rate", "workers", "stagger"].map(
        (k) => [k, r0[k]],
      ),
    ),
    input: r0["input"],
    phase: r0["phase"],
  };
  const keys = [
    ...["dps", "delivered_dps", "relay_cpu_per_m", "relay_cores", "peak_rss_mib", "lost"],
    ...[
      "lost_pct",
      "other_cpu_s",
      "gen_cpu_s",
      "sink_cpu_s",
      "e2e_s",
      "nice_s",
      "wire_bytes",
      "lag_s",
    ],
  ];
  for (const k of keys) s[k] = spread(runs.map((r) => Number(r[k] ?? Number.NaN)));
  return s;
}

/** A variant's medians in the table. */
interface Row {
  label: string;
  relay: Variant["relay"];
  input: string;
  max: Record<string, unknown> | null;
  rate: Record<string, unknown> | null;
}

const med = (s: Record<string, unknown> | null, k: string): number =>
  (s?.[k] as { median: number } | null | undefined)?.median ?? Number.NaN;

/** Prints the comparison table; returns it as a `wire_in` record. */
function table(o: WireInOptions, rows: Row[]): Record<string, unknown> {
  const ref = (relay: Variant["relay"], input: string) =>
    rows.find((r) => r.relay === relay && r.input === input) ?? null;
  const plain = ref("polymur", "plaintext");
  const ssl = ref("carbon-c-relay", "ssl");
  const ratio = (a: number, b: number) => (Number.isFinite(a / b) ? a / b : null);
  const cpu = (x: Record<string, unknown> | null | undefined) => med(x ?? null, "relay_cpu_per_m");
  const got = (x: Record<string, unknown> | null | undefined) => med(x ?? null, "delivered_dps");
  const out = rows.map((r) => ({
    label: r.label,
    input: r.input,
    dps: med(r.max, "dps"),
    delivered_dps: got(r.max),
    delivered_vs_polymur_plaintext: ratio(got(r.max), got(plain?.max)),
    delivered_vs_ccr_ssl: ratio(got(r.max), got(ssl?.max)),
    lost_pct: med(r.max, "lost_pct"),
    cpu_per_m: cpu(r.max),
    cpu_vs_polymur_plaintext: ratio(cpu(r.max), cpu(plain?.max)),
    cpu_vs_ccr_ssl: ratio(cpu(r.max), cpu(ssl?.max)),
    cores: med(r.max, "relay_cores"),
    bytes_per_dp: med(r.max, "wire_bytes") / Number(r.max?.["lines"]),
    rate_cpu_per_m: cpu(r.rate),
    rate_cpu_vs_polymur_plaintext: ratio(cpu(r.rate), cpu(plain?.rate)),
    rate_cpu_vs_ccr_ssl: ratio(cpu(r.rate), cpu(ssl?.rate)),
    rate_lost_pct: med(r.rate, "lost_pct"),
    rate_lag_s: med(r.rate, "lag_s"),
  }));
  const f = (x: number | null, d: number) =>
    x === null || !Number.isFinite(x) ? "-" : x.toFixed(d);
  const hdr = [
    ...["variant", "delivered dp/s", "x pm plain", "x ccr ssl", "lost %", "CPU s/M"],
    ...["x pm plain", "x ccr ssl", "cores", "wire B/dp", `@${o.rate}/s CPU s/M`],
    ...["x pm plain", "x ccr ssl", "lost %", "lag s"],
  ];
  const lines = out.map((r) => [
    r.label,
    f(r.delivered_dps, 0),
    f(r.delivered_vs_polymur_plaintext, 2),
    f(r.delivered_vs_ccr_ssl, 2),
    f(r.lost_pct, 1),
    f(r.cpu_per_m, 2),
    f(r.cpu_vs_polymur_plaintext, 2),
    f(r.cpu_vs_ccr_ssl, 2),
    f(r.cores, 2),
    f(r.bytes_per_dp, 1),
    f(r.rate_cpu_per_m, 2),
    f(r.rate_cpu_vs_polymur_plaintext, 2),
    f(r.rate_cpu_vs_ccr_ssl, 2),
    f(r.rate_lost_pct, 1),
    f(r.rate_lag_s, 2),
  ]);
  const w = hdr.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  console.log(
    `\n=== wire-in: medians; broadcast to 1 sink, ${o.conns} connections; CPU s/M = relay CPU s per million lines sent; x = ratio`,
  );
  console.log(hdr.map((h, i) => h.padEnd(w[i]!)).join("  "));
  for (const l of lines) console.log(l.map((c, i) => c.padEnd(w[i]!)).join("  "));
  return { type: "wire_in", rate: o.rate, conns: o.conns, dests: 1, rows: out };
}

/**
 * Makes the inputs, runs every variant `reps` times in each phase, appends the
 * `run` records, a `summary` per variant and phase and the `wire_in` table
 * to o.json. Returns the number of runs that failed or lost lines.
 */
export async function runWireIn(o: WireInOptions): Promise<number> {
  const variants = VARIANTS.filter((v) => o.relays.includes(v.relay));
  fs.mkdirSync(o.tmpDir, { recursive: true });
  const base = fs.mkdtempSync(path.join(o.tmpDir, "polymur-wire-in-"));
  const tmp = { ...o, tmpDir: base };
  let failures = 0;
  try {
    const pki = createBenchPki(base);
    const perTick = Math.max(
      1,
      Math.min(CARBON_MAX_DATAPOINTS, Math.round((o.rate / o.conns) * (TICK_MS / 1000))),
    );
    const encodings = [...new Set(variants.map((v) => v.encoding))];
    const make = (
      phase: string,
      encoding: Encoding,
      lines: number,
      seed: number,
      perUnit: number,
    ): Input => {
      const data = path.join(base, `${phase}-${encoding}.dat`);
      const index = path.join(base, `${phase}-${encoding}.json`);
      makeWorkload(
        { gen: o.gen, lines, conns: o.conns, names: o.names, seed, encoding, perUnit },
        data,
        index,
      );
      return { data, index, lines };
    };
    const t0 = performance.now();
    const inputs = new Map<string, Input>();
    for (const e of encodings) {
      inputs.set(`max-${e}`, make("max", e, o.lines, 1, CARBON_MAX_DATAPOINTS));
      if (o.rate > 0) inputs.set(`rate-${e}`, make("rate", e, o.rateLines, 1, perTick));
      if (o.warmup > 0 && o.relays.includes("polymur")) {
        // relaybench's warm-up: other lines (seed + 1000)
        inputs.set(`warm-${e}`, make("warm", e, o.warmup, 1001, CARBON_MAX_DATAPOINTS));
      }
    }
    if (encodings.includes("pickle")) {
      // the encoder against Python's pickle, on the first lines of the workload
      // (pickle is polymur's only, and polymur plaintext always runs beside it)
      const sample = fs.readFileSync(inputs.get("max-plaintext")!.data);
      const cut = sample.subarray(0, 1 + nthNewline(sample, 1001));
      checkAgainstPython(o.python, cut, CARBON_MAX_DATAPOINTS);
      checkAgainstPython(o.python, cut, perTick);
    }
    console.error(
      `bench: wire-in: inputs made in ${((performance.now() - t0) / 1000).toFixed(1)} s in ${base}` +
        ` (pickle frames: ${CARBON_MAX_DATAPOINTS} dp as fast as possible, ${perTick} dp at ${o.rate}/s;` +
        " byte-identical to Python's pickle.dumps(protocol=2))",
    );
    const phases: Phase[] = o.rate > 0 ? ["max", "rate"] : ["max"];
    const runs = new Map<string, Record<string, unknown>[]>();
    for (const phase of phases) {
      for (let rep = 1; rep <= o.reps; rep++) {
        for (const v of variants) {
          if (o.stopped()) break;
          const input = inputs.get(`${phase}-${v.encoding}`)!;
          const warm = v.relay === "polymur" ? (inputs.get(`warm-${v.encoding}`) ?? null) : null;
          const key = `${phase}|${label(o, v)}`;
          let r: Record<string, unknown>;
          try {
            r = await oneRun(tmp, v, phase, rep, input, warm, pki);
          } catch (err) {
            console.error(
              `bench: wire-in ${phase} ${label(o, v)} rep ${rep}: ${(err as Error).message}`,
            );
            failures++;
            continue;
          }
          runs.set(key, [...(runs.get(key) ?? []), r]);
          fs.appendFileSync(o.json, `${JSON.stringify(r)}\n`);
          const g = (k: string, d = 0) => Number(r[k]).toFixed(d);
          console.error(
            `${phase} rep ${rep}/${o.reps} ${String(r["label"]).padEnd(28)} ${g("dps").padStart(8)} dp/s` +
              ` (e2e ${g("e2e_s", 2)} s, delivered ${g("delivered_dps")} dp/s)  relay CPU ${g("relay_cpu_s", 2)} s` +
              ` = ${g("relay_cpu_per_m", 2)} s/M, ${g("relay_cores", 2)} cores  RSS ${g("peak_rss_mib", 1)} MiB` +
              `  lost ${g("lost")}  [sender ${g("gen_cpu_s", 2)} s, sink ${g("sink_cpu_s", 2)} s,` +
              ` other ${g("other_cpu_s", 2)} s cpu]${r["tls_cipher"] ? ` ${r["tls_protocol"]} ${r["tls_cipher"]}` : ""}`,
          );
          if (Number(r["lost"]) > 0 && phase === "rate") failures++;
          else if (Number(r["lost"]) > 0 && v.relay === "polymur") {
            console.error(
              `bench: wire-in: polymur dropped ${String(r["relay_dropped"])} lines` +
                ` (queue_full ${String(r["relay_dropped_queue_full"])}) of this burst`,
            );
          }
        }
      }
    }
    const summaries: Record<string, unknown>[] = [];
    const rows: Row[] = variants.map((v) => {
      const get = (phase: Phase) => {
        const rs = runs.get(`${phase}|${label(o, v)}`);
        if (!rs || rs.length === 0) return null;
        const s = summarize(rs);
        summaries.push(s);
        return s;
      };
      return {
        label: label(o, v),
        relay: v.relay,
        input: v.input,
        max: get("max"),
        rate: get("rate"),
      };
    });
    const record = table(o, rows);
    fs.appendFileSync(o.json, [...summaries, record].map((r) => `${JSON.stringify(r)}\n`).join(""));
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
  return failures;
}

/** Offset of the n-th newline (1-based) in buf, or its last byte. */
function nthNewline(buf: Buffer, n: number): number {
  let at = -1;
  for (let i = 0; i < n; i++) {
    const next = buf.indexOf(10, at + 1);
    if (next < 0) return buf.length - 1;
    at = next;
  }
  return at;
}
