/**
 * proxy → gateway → sink: throughput, CPU and bytes on the wire of polymur's
 * streaming link, against the Go polymur's approach (one gzip POST per batch
 * of 5000 lines, 3 concurrent workers, the gateway answering each request)
 * reproduced with plain HTTP/1.1 requests against the same gateway's /ingest.
 *
 *   npm run build && node bench/gateway.bench.ts [--lines 1000000] [--names 100000]
 *       [--conns 4] [--compression zstd,gzip] [--legacy-batch 5000] [--legacy-workers 3]
 *       [--replay-batch-bytes N]
 *       [--only stream-zstd,stream-gzip,legacy,replay-gzip,replay-zstd]
 *       [--proxy-args="--batch-size 512KiB"] [--gateway-args=ARGS] [--workers 1]
 *       [--label TEXT] [--cpu-prof DIR] [--node-args=--trace-gc]
 *       [--reps 1] [--quick]
 *
 * Scenarios (--only picks some; all by default):
 *
 * - `stream-<compression>` (one per --compression): gen → polymur proxy →
 *   one stream → gateway → sink, end to end.
 * - `legacy`: the Go proxy's way, batches of --legacy-batch lines gzipped
 *   (level 6, Go's default) before the clock starts, POST /ingest by
 *   --legacy-workers concurrent workers.
 * - `replay-gzip`: those same pre-made gzip batches on one polymur stream
 *   (Hello, then Batch after Batch, acknowledgements coming back): the two
 *   protocols with everything else equal.
 * - `replay-zstd`: the same lines in batches as the polymur proxy makes them
 *   (up to its --batch-size default, or --replay-batch-bytes, and dist/'s
 *   compressBatch), pre-made, on one stream: the link without the proxy's
 *   ingest.
 *
 * The proxy and the gateway run --workers processes each (default 1: one
 * stream into one gateway process, the comparison this bench is for).
 *
 * Lines come from relaybench's gen (realistic names: depth 4-9, ~48 characters,
 * ~68 bytes a line; see ../shared/bench/README.md), compiled into
 * .cache/relaybench/build/ if missing; the sink is relaybench's C sink. Every
 * process runs on this machine over 127.0.0.1, so "wire" means bytes that a
 * site-to-site link would carry, not time spent on one.
 *
 * Reported per scenario: datapoints/s end to end (first line sent → last line
 * at the sink), CPU seconds per million datapoints of the sending side (the
 * proxy process; for pre-made batches their compression, done here before
 * the clock starts and timed on its own), of the gateway, and of this
 * driver process while it sends pre-made batches (HTTP/1.1 requests or the
 * stream's protobuf encoding: what a sender pays on top of compressing),
 * payload bytes per datapoint and the compression ratio.
 *
 * Every run is appended as a JSON line to bench/results/gateway-<UTC date>.jsonl
 * (after a "meta" line: commit, load average, arguments), with --quick,
 * --cpu-prof or --node-args to .cache/relaybench/results/ instead. --cpu-prof DIR makes every polymur
 * process write a V8 CPU profile into DIR when it exits.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import zlib from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

const REPO = path.resolve(import.meta.dirname, "..");
const BIN = path.join(REPO, "bin/polymur.js");
const SHARED = process.env["RELAYBENCH_DIR"] ?? path.resolve(REPO, "../shared/bench");
const BUILD = path.join(REPO, ".cache/relaybench/build");
const TICK = 100; // clock ticks per second in /proc/<pid>/stat (USER_HZ)
const SECRET = "bench-secret-0123456789abcdef";

const { values: o } = parseArgs({
  options: {
    lines: { type: "string", default: "1000000" },
    names: { type: "string", default: "100000" },
    conns: { type: "string", default: "4" },
    compression: { type: "string", default: "zstd,gzip" },
    "legacy-batch": { type: "string", default: "5000" },
    "legacy-workers": { type: "string", default: "3" },
    "replay-batch-bytes": { type: "string", default: "" },
    only: { type: "string", default: "" },
    "proxy-args": { type: "string", default: "" },
    "gateway-args": { type: "string", default: "" },
    label: { type: "string", default: "" },
    workers: { type: "string", default: "1" },
    "cpu-prof": { type: "string", default: "" },
    "node-args": { type: "string", default: "" },
    reps: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
  },
});
const N = o.quick ? 200_000 : Number(o.lines);
const NAMES = Number(o.names);
const CONNS = Number(o.conns);
const REPS = Number(o.reps);
/** Scenario ids to run (--only a,b); all when empty. */
const ONLY = new Set(o.only.split(",").filter((x) => x !== ""));
const want = (id: string): boolean => ONLY.size === 0 || ONLY.has(id);
/** --cpu-prof DIR: every polymur process writes a V8 CPU profile there when it exits. */
const PROF = o["cpu-prof"] === "" ? "" : path.resolve(o["cpu-prof"]);
/** --node-args: node options for every polymur process (e.g. --trace-gc; its output goes to stderr). */
const NODE_ARGS = o["node-args"].split(" ").filter((x) => x !== "");
const PROXY_ARGS = o["proxy-args"].split(" ").filter((x) => x !== "");
const GATEWAY_ARGS = o["gateway-args"].split(" ").filter((x) => x !== "");

/** Every process started here: killed if this one exits early (a failed run). */
const spawned = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of spawned) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
});

/** Remembers a child until it exits. */
function track(child: ChildProcess): ChildProcess {
  spawned.add(child);
  child.once("exit", () => spawned.delete(child));
  return child;
}

interface Result {
  id: string;
  scenario: string;
  dps: number;
  senderCpuPerM: number;
  gatewayCpuPerM: number;
  /** This process while it sends pre-made batches (null: the proxy sends). */
  driverCpuPerM: number | null;
  bytesPerDp: number;
  ratio: number;
}

function tool(name: "gen" | "sink"): string {
  const bin = path.join(BUILD, name);
  if (!fs.existsSync(bin)) {
    fs.mkdirSync(BUILD, { recursive: true });
    execFileSync("gcc", ["-O2", "-o", bin, path.join(SHARED, `${name}.c`)], { stdio: "inherit" });
  }
  return bin;
}

/**
 * user+sys CPU seconds so far of a process and of its live descendants (a
 * polymur role with --workers above 1 runs worker processes).
 */
function cpu(pid: number): number {
  let total = 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    total = (Number(f[11]) + Number(f[12])) / TICK;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const kids = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
      for (const k of kids === "" ? [] : kids.split(" ")) total += cpu(Number(k));
    }
  } catch {
    // Gone meanwhile.
  }
  return total;
}

/** user+sys CPU seconds of this process so far. */
function selfCpu(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
}

function monoNow(): number {
  return Number(process.hrtime.bigint()) / 1e9; // CLOCK_MONOTONIC, as gen and sink report
}

/** Starts the C sink expecting `n` lines; resolves its port and, later, its result. */
async function startSink(n: number): Promise<{
  port: number;
  done: Promise<{ reached: number; lines: number }>;
  child: ChildProcess;
}> {
  const child = track(
    spawn(tool("sink"), ["-p", "0", "-e", String(n), "-t", "20"], {
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  let buf = "";
  const jsons: Array<Record<string, unknown>> = [];
  let wake: (() => void) | null = null;
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (d: string) => {
    buf += d;
    for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
      jsons.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
      buf = buf.slice(nl + 1);
      wake?.();
    }
  });
  const next = async (): Promise<Record<string, unknown>> => {
    while (jsons.length === 0) await new Promise<void>((r) => (wake = r));
    return jsons.shift()!;
  };
  const ready = await next();
  const port = (ready["ports"] as number[])[0]!;
  const done = next().then((r) => ({
    reached: Number(r["reached_mono"]) || Number(r["last_mono"]),
    lines: Number(r["total_lines"]),
  }));
  return { port, done, child };
}

/** Spawns a polymur role and waits for its "listening" line. */
async function polymur(
  role: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; port: number; statsPort: number }> {
  const prof =
    PROF === ""
      ? []
      : [
          "--cpu-prof",
          "--cpu-prof-dir",
          PROF,
          "--cpu-prof-name",
          `${role}-${Date.now()}.cpuprofile`,
        ];
  const child = track(
    spawn(process.execPath, [...prof, ...NODE_ARGS, BIN, role, ...args], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, ...env },
    }),
  );
  child.stdout!.setEncoding("utf8");
  let buf = "";
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${role} exited ${code}`)));
    child.stdout!.on("data", (d: string) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        // What node itself prints (--node-args --trace-gc …), not polymur's JSON log.
        if (!line.startsWith("{")) console.error(`[${role} ${child.pid}] ${line}`);
        if (!line.includes('"listening"')) continue;
        const j = JSON.parse(line) as { port: number; statsPort: number };
        resolve({ child, port: j.port, statsPort: j.statsPort });
      }
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(t);
}

function keysFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "polymur-bench-"));
  const f = path.join(dir, "keys");
  fs.writeFileSync(f, `bench ${SECRET}\n`);
  return f;
}

async function startGateway(
  sinkPort: number,
): Promise<{ child: ChildProcess; port: number; statsPort: number }> {
  return polymur("gateway", [
    "--listen-addr",
    "127.0.0.1:0",
    "--stat-addr",
    "127.0.0.1:0",
    "--keys-file",
    keysFile(),
    "--destinations",
    `127.0.0.1:${sinkPort}`,
    "--queue-size",
    "512MiB",
    "--overflow",
    "block",
    "--metrics-flush",
    "0",
    // Measurements end before it is stopped: no need to wait for the
    // destination's drain (which otherwise takes the default 15 s).
    "--shutdown-timeout",
    "1",
    "--workers",
    o.workers,
    ...GATEWAY_ARGS,
  ]);
}

/** polymur proxy → gateway, fed by gen over `CONNS` TCP connections. */
async function streamRun(compression: string, n: number): Promise<Result> {
  const sink = await startSink(n);
  const gw = await startGateway(sink.port);
  const px = await polymur(
    "proxy",
    [
      "--listen-addr",
      "127.0.0.1:0",
      "--stat-addr",
      "127.0.0.1:0",
      "--gateway",
      `http://127.0.0.1:${gw.port}`,
      "--compression",
      compression,
      "--buffer-size",
      "256MiB",
      "--workers",
      o.workers,
      ...PROXY_ARGS,
    ],
    { POLYMUR_API_KEY: SECRET },
  );
  const cpu0 = [cpu(px.child.pid!), cpu(gw.child.pid!)];
  const genOut = execFileSync(
    tool("gen"),
    ["-p", String(px.port), "-c", String(CONNS), "-n", String(n), "-k", String(NAMES), "-s", "1"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] },
  );
  const g = JSON.parse(genOut.trim().split("\n").pop()!) as { start_mono: number };
  const r = await sink.done;
  const cpu1 = [cpu(px.child.pid!), cpu(gw.child.pid!)];
  const s = (await (await fetch(`http://127.0.0.1:${px.statsPort}/stats`)).json()) as {
    proxy: { rawBytes: number; payloadBytes: number };
  };
  await stop(px.child);
  await stop(gw.child);
  await stop(sink.child);
  if (r.lines < n) throw new Error(`stream ${compression}: ${r.lines} of ${n} lines arrived`);
  return {
    id: `stream-${compression}`,
    scenario: `polymur proxy → one stream, ${compression}`,
    dps: n / (r.reached - g.start_mono),
    senderCpuPerM: ((cpu1[0]! - cpu0[0]!) / n) * 1e6,
    gatewayCpuPerM: ((cpu1[1]! - cpu0[1]!) / n) * 1e6,
    driverCpuPerM: null,
    bytesPerDp: s.proxy.payloadBytes / n,
    ratio: s.proxy.rawBytes / s.proxy.payloadBytes,
  };
}

/** Batches made before the clock starts, and what making them cost. */
interface PreparedBatches {
  compression: "gzip" | "zstd";
  /** How they were cut, for the scenario's name. */
  label: string;
  bodies: Buffer[];
  lines: number[];
  raw: number[];
  /** CPU seconds spent compressing them. */
  compressCpu: number;
}

/** dist/'s batch codec and the proxy's batcher defaults, so pre-made batches follow the proxy's. */
async function proxyCodec(): Promise<{
  compressBatch(raw: Buffer, name: string): Buffer;
  batchBytes: number;
}> {
  const codec = (await import(
    pathToFileURL(path.join(REPO, "dist/dataplane/link/batch-codec.js")).href
  )) as { compressBatch(raw: Buffer, name: string): Buffer };
  const batcher = (await import(
    pathToFileURL(path.join(REPO, "dist/dataplane/link/proxy/line-batcher.js")).href
  )) as { LINE_BATCHER_DEFAULTS: { maxBytes: number } };
  return { compressBatch: codec.compressBatch, batchBytes: batcher.LINE_BATCHER_DEFAULTS.maxBytes };
}

/**
 * The lines cut into batches, each compressed alone and timed: gzip level 6
 * in batches of --legacy-batch lines, as the Go proxy makes them (Go's
 * default level); or zstd as the polymur proxy makes them: its codec
 * (dist/'s compressBatch) on batches of up to --replay-batch-bytes (default:
 * the proxy's --batch-size default), cut at a line's end.
 */
async function prepareBatches(
  text: Buffer,
  compression: "gzip" | "zstd",
): Promise<PreparedBatches> {
  const codec = await proxyCodec();
  const batchLines = compression === "gzip" ? Number(o["legacy-batch"]) : Infinity;
  const batchBytes =
    compression === "gzip"
      ? Infinity
      : o["replay-batch-bytes"] === ""
        ? codec.batchBytes
        : Number(o["replay-batch-bytes"]);
  const p: PreparedBatches = {
    compression,
    label:
      compression === "gzip"
        ? `${batchLines} lines`
        : `up to ${Math.round(batchBytes / 1024)} KiB (the proxy's batches)`,
    bodies: [],
    lines: [],
    raw: [],
    compressCpu: 0,
  };
  const c0 = process.cpuUsage();
  let start = 0;
  while (start < text.length) {
    let end = start;
    let k = 0;
    for (; k < batchLines && end < text.length; k++) {
      const next = text.indexOf(0x0a, end) + 1;
      if (next - start > batchBytes) break;
      end = next;
    }
    const raw = text.subarray(start, end);
    p.bodies.push(
      compression === "gzip" ? zlib.gzipSync(raw, { level: 6 }) : codec.compressBatch(raw, "zstd"),
    );
    p.lines.push(k);
    p.raw.push(end - start);
    start = end;
  }
  const c1 = process.cpuUsage(c0);
  p.compressCpu = (c1.user + c1.system) / 1e6;
  return p;
}

/**
 * The Go polymur-proxy's way: POST /ingest with X-Polymur-Key, one
 * pre-made gzip batch each, `workers` requests in flight on keep-alive
 * HTTP/1.1 connections, the next batch only after a worker's previous
 * request was answered.
 */
async function legacyRun(n: number, prepared: PreparedBatches): Promise<Result> {
  const batchLines = Number(o["legacy-batch"]);
  const workers = Number(o["legacy-workers"]);
  const { bodies, compressCpu } = prepared;
  const raw = prepared.raw.reduce((a, b) => a + b, 0);
  const payload = bodies.reduce((a, b) => a + b.length, 0);
  const sink = await startSink(n);
  const gw = await startGateway(sink.port);
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const cpuGw0 = cpu(gw.child.pid!);
  const self0 = selfCpu();
  const t0 = monoNow();
  let nextBody = 0;
  const post = (body: Buffer): Promise<number> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port: gw.port,
          path: "/ingest",
          method: "POST",
          agent,
          headers: { "X-Polymur-Key": SECRET, "content-length": String(body.length) },
        },
        (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (nextBody < bodies.length) {
        const status = await post(bodies[nextBody++]!);
        if (status !== 200) throw new Error(`/ingest answered ${status}`);
      }
    }),
  );
  const self1 = selfCpu();
  const r = await sink.done;
  const cpuGw1 = cpu(gw.child.pid!);
  agent.destroy();
  await stop(gw.child);
  await stop(sink.child);
  if (r.lines < n) throw new Error(`legacy: ${r.lines} of ${n} lines arrived`);
  return {
    id: "legacy",
    scenario: `Go polymur-proxy style: gzip POST per ${batchLines} lines, ${workers} workers`,
    dps: n / (r.reached - t0),
    senderCpuPerM: (compressCpu / n) * 1e6,
    gatewayCpuPerM: ((cpuGw1 - cpuGw0) / n) * 1e6,
    driverCpuPerM: ((self1 - self0) / n) * 1e6,
    bytesPerDp: payload / n,
    ratio: raw / payload,
  };
}

/**
 * Pre-made batches sent on one polymur stream (Hello, then Batch after
 * Batch without waiting, Acks coming back): with the gzip batches of
 * legacyRun, the gateway-side cost of the two protocols with everything
 * else equal.
 */
async function replayRun(n: number, prepared: PreparedBatches): Promise<Result> {
  // The generated code uses TS enums, which type stripping cannot run: load
  // the compiled module from dist/.
  const gen = (await import(
    pathToFileURL(path.join(REPO, "dist/gen/polymur/ingest/v1/ingest_pb.js")).href
  )) as {
    IngestService: Parameters<typeof createClient>[0];
    Compression: Record<"GZIP" | "ZSTD", number>;
  };
  const sink = await startSink(n);
  const gw = await startGateway(sink.port);
  const client = createClient(
    gen.IngestService,
    createGrpcTransport({ baseUrl: `http://127.0.0.1:${gw.port}` }),
  ) as unknown as {
    stream(
      reqs: AsyncIterable<unknown>,
      opts: { headers: Record<string, string> },
    ): AsyncIterable<{ msg: { case: string; value?: unknown } }>;
  };
  const code = gen.Compression[prepared.compression === "gzip" ? "GZIP" : "ZSTD"];
  const { bodies } = prepared;
  let done: () => void = () => {};
  const finished = new Promise<void>((r) => {
    done = r;
  });
  async function* requests(): AsyncGenerator<unknown> {
    yield { msg: { case: "hello", value: { proxyId: `bench-${process.pid}-${Date.now()}` } } };
    for (let i = 0; i < bodies.length; i++) {
      yield {
        msg: {
          case: "batch",
          value: {
            seq: BigInt(i + 1),
            compression: code,
            payload: bodies[i],
            lines: prepared.lines[i],
            rawBytes: prepared.raw[i],
          },
        },
      };
    }
    await finished;
  }
  const cpuGw0 = cpu(gw.child.pid!);
  const self0 = selfCpu();
  const t0 = monoNow();
  let acks = 0;
  for await (const r of client.stream(requests(), {
    headers: { authorization: `Bearer ${SECRET}` },
  })) {
    if (r.msg.case === "reject")
      throw new Error(`batch rejected: ${(r.msg.value as { reason?: string }).reason}`);
    if (r.msg.case === "ack" && ++acks === bodies.length) break;
  }
  const self1 = selfCpu();
  done();
  const res = await sink.done;
  const cpuGw1 = cpu(gw.child.pid!);
  await stop(gw.child);
  await stop(sink.child);
  if (res.lines < n) throw new Error(`replay: ${res.lines} of ${n} lines arrived`);
  const raw = prepared.raw.reduce((a, b) => a + b, 0);
  const payload = bodies.reduce((a, b) => a + b.length, 0);
  return {
    id: `replay-${prepared.compression}`,
    scenario: `one polymur stream carrying pre-made ${prepared.compression} batches of ${prepared.label}`,
    dps: n / (res.reached - t0),
    senderCpuPerM: (prepared.compressCpu / n) * 1e6,
    gatewayCpuPerM: ((cpuGw1 - cpuGw0) / n) * 1e6,
    driverCpuPerM: ((self1 - self0) / n) * 1e6,
    bytesPerDp: payload / n,
    ratio: raw / payload,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** The commit and whether tracked files were modified. */
function gitState(): { commit: string; dirty: boolean } {
  const run = (args: string[]): string =>
    execFileSync("git", args, { cwd: REPO, encoding: "utf8" }).trim();
  try {
    return {
      commit: run(["rev-parse", "HEAD"]),
      dirty: run(["status", "--porcelain", "--untracked-files=no"]) !== "",
    };
  } catch {
    return { commit: "unknown", dirty: true };
  }
}

/** Appends a JSON line to this invocation's results file. */
function record(file: string, obj: Record<string, unknown>): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.appendFileSync(file, `${JSON.stringify(obj)}\n`);
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(REPO, "dist/cli/polymur/main.js"))) {
    throw new Error("dist/ is missing: npm run build first");
  }
  if (PROF !== "") fs.mkdirSync(PROF, { recursive: true });
  const date = new Date().toISOString().slice(0, 10);
  // Quick, profiled or traced runs are not results to keep.
  const file =
    o.quick || PROF !== "" || NODE_ARGS.length > 0
      ? path.join(REPO, `.cache/relaybench/results/gateway-${date}.jsonl`)
      : path.join(REPO, `bench/results/gateway-${date}.jsonl`);
  record(file, {
    type: "meta",
    scenario: "gateway",
    time: new Date().toISOString(),
    quick: o.quick,
    label: o.label,
    git: gitState(),
    node: process.version,
    cpus: os.availableParallelism(),
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    argv: process.argv.slice(2),
    lines: N,
    names: NAMES,
    conns: CONNS,
  });
  console.error(
    `[gateway bench] ${N} datapoints, ${NAMES} names, ${CONNS} sender connections, ${os.availableParallelism()} cores, load ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(" ")}`,
  );
  const text = execFileSync(tool("gen"), ["-P", "-n", String(N), "-k", String(NAMES), "-s", "1"], {
    maxBuffer: 1 << 30,
    stdio: ["ignore", "pipe", "ignore"],
  });
  const gzipped = await prepareBatches(text, "gzip");
  const zstded = want("replay-zstd") ? await prepareBatches(text, "zstd") : null;
  const streams = o.compression.split(",").filter((c) => want(`stream-${c}`));
  // Warm-up (JIT, page cache): a tenth of the work, not reported.
  if (streams.length > 0) await streamRun(streams[0]!, Math.max(20_000, Math.floor(N / 10)));
  const runs = new Map<string, Result[]>();
  const add = (r: Result, rep: number): void => {
    runs.set(r.scenario, [...(runs.get(r.scenario) ?? []), r]);
    record(file, {
      type: "run",
      label: o.label,
      rep: rep + 1,
      lines: N,
      loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
      ...r,
    });
    console.error(
      `  ${r.id}: ${Math.round(r.dps).toLocaleString("en")} dp/s, sender ${r.senderCpuPerM.toFixed(2)}, gateway ${r.gatewayCpuPerM.toFixed(2)}${r.driverCpuPerM === null ? "" : `, driver ${r.driverCpuPerM.toFixed(2)}`} CPU s/M; load ${os.loadavg()[0]!.toFixed(2)}`,
    );
  };
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of streams) add(await streamRun(c, N), rep);
    if (want("legacy")) add(await legacyRun(N, gzipped), rep);
    if (want("replay-gzip")) add(await replayRun(N, gzipped), rep);
    if (zstded !== null) add(await replayRun(N, zstded), rep);
  }
  const results: Result[] = [];
  for (const [, rs] of runs) {
    const m = (f: (r: Result) => number): number => median(rs.map(f));
    results.push({
      id: rs[0]!.id,
      scenario: rs[0]!.scenario,
      dps: m((r) => r.dps),
      senderCpuPerM: m((r) => r.senderCpuPerM),
      gatewayCpuPerM: m((r) => r.gatewayCpuPerM),
      driverCpuPerM: rs[0]!.driverCpuPerM === null ? null : m((r) => r.driverCpuPerM!),
      bytesPerDp: m((r) => r.bytesPerDp),
      ratio: m((r) => r.ratio),
    });
  }
  const head = [
    "scenario",
    "datapoints/s",
    "sender CPU s/M",
    "gateway CPU s/M",
    "driver CPU s/M",
    "wire B/dp",
    "ratio",
  ];
  console.log(`| ${head.join(" | ")} |\n|${head.map(() => " --- |").join("")}`);
  for (const r of results) {
    const row = [
      r.scenario,
      Math.round(r.dps).toLocaleString("en"),
      r.senderCpuPerM.toFixed(2),
      r.gatewayCpuPerM.toFixed(2),
      r.driverCpuPerM === null ? "" : r.driverCpuPerM.toFixed(2),
      r.bytesPerDp.toFixed(1),
      r.ratio.toFixed(2),
    ];
    console.log(`| ${row.join(" | ")} |`);
  }
  record(file, { type: "summary", label: o.label, reps: REPS, results });
  console.error(`[gateway bench] results appended to ${path.relative(REPO, file)}`);
}

await main();
