/**
 * proxy → gateway → sink: throughput, CPU and bytes on the wire of polymur's
 * streaming link, against the Go polymur's approach (one gzip POST per batch
 * of 5000 lines, 3 concurrent workers, the gateway answering each request)
 * reproduced with plain HTTP/1.1 requests against the same gateway's /ingest.
 *
 *   npm run build && node bench/gateway.bench.ts [--lines 1000000] [--names 100000]
 *       [--conns 4] [--compression zstd,gzip] [--legacy-batch 5000] [--legacy-workers 3]
 *       [--reps 1] [--quick]
 *
 * Lines come from relaybench's gen (realistic names: depth 4-9, ~48 characters,
 * ~68 bytes a line; see ../shared/bench/README.md), compiled into
 * .cache/relaybench/build/ if missing; the sink is relaybench's C sink. Every
 * process runs on this machine over 127.0.0.1, so "wire" means bytes that a
 * site-to-site link would carry, not time spent on one.
 *
 * Reported per scenario: datapoints/s end to end (first line sent → last line
 * at the sink), CPU seconds per million datapoints of the sending side (the
 * proxy process; for the Go approach the gzip of its batches, done here
 * before the clock starts and timed on its own) and of the gateway, payload
 * bytes per datapoint and the compression ratio.
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
    reps: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
  },
});
const N = o.quick ? 200_000 : Number(o.lines);
const NAMES = Number(o.names);
const CONNS = Number(o.conns);
const REPS = Number(o.reps);

interface Result {
  scenario: string;
  dps: number;
  senderCpuPerM: number;
  gatewayCpuPerM: number;
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

/** user+sys CPU seconds of a process so far. */
function cpu(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) / TICK;
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
  const child = spawn(tool("sink"), ["-p", "0", "-e", String(n), "-t", "20"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
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
  const child = spawn(process.execPath, [BIN, role, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  child.stdout!.setEncoding("utf8");
  let buf = "";
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`${role} exited ${code}`)));
    child.stdout!.on("data", (d: string) => {
      buf += d;
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
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
    scenario: `polymur stream, ${compression}`,
    dps: n / (r.reached - g.start_mono),
    senderCpuPerM: ((cpu1[0]! - cpu0[0]!) / n) * 1e6,
    gatewayCpuPerM: ((cpu1[1]! - cpu0[1]!) / n) * 1e6,
    bytesPerDp: s.proxy.payloadBytes / n,
    ratio: s.proxy.rawBytes / s.proxy.payloadBytes,
  };
}

/**
 * The Go polymur-proxy's way: batches of `batch` lines, gzip (Go's default
 * level, 6) each, POST /ingest with X-Polymur-Key, `workers` requests in
 * flight on keep-alive HTTP/1.1 connections, the next batch only after a
 * worker's previous request was answered.
 */
interface PreparedBatches {
  bodies: Buffer[];
  lines: number[];
  raw: number[];
  gzipCpu: number;
}

/** The Go proxy's batches: `batch` lines each, gzip level 6 (Go's default), timed. */
function prepareBatches(text: Buffer): PreparedBatches {
  const batchLines = Number(o["legacy-batch"]);
  const p: PreparedBatches = { bodies: [], lines: [], raw: [], gzipCpu: 0 };
  const c0 = process.cpuUsage();
  let start = 0;
  while (start < text.length) {
    let end = start;
    let k = 0;
    for (; k < batchLines && end < text.length; k++) end = text.indexOf(0x0a, end) + 1;
    p.bodies.push(zlib.gzipSync(text.subarray(start, end), { level: 6 }));
    p.lines.push(k);
    p.raw.push(end - start);
    start = end;
  }
  const c1 = process.cpuUsage(c0);
  p.gzipCpu = (c1.user + c1.system) / 1e6;
  return p;
}

async function legacyRun(n: number, prepared: PreparedBatches): Promise<Result> {
  const batchLines = Number(o["legacy-batch"]);
  const workers = Number(o["legacy-workers"]);
  const { bodies, gzipCpu } = prepared;
  const raw = prepared.raw.reduce((a, b) => a + b, 0);
  const payload = bodies.reduce((a, b) => a + b.length, 0);
  const sink = await startSink(n);
  const gw = await startGateway(sink.port);
  const agent = new http.Agent({ keepAlive: true, maxSockets: workers });
  const cpuGw0 = cpu(gw.child.pid!);
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
  const r = await sink.done;
  const cpuGw1 = cpu(gw.child.pid!);
  agent.destroy();
  await stop(gw.child);
  await stop(sink.child);
  if (r.lines < n) throw new Error(`legacy: ${r.lines} of ${n} lines arrived`);
  return {
    scenario: `Go polymur-proxy style: gzip POST per ${batchLines} lines, ${workers} workers`,
    dps: n / (r.reached - t0),
    senderCpuPerM: (gzipCpu / n) * 1e6,
    gatewayCpuPerM: ((cpuGw1 - cpuGw0) / n) * 1e6,
    bytesPerDp: payload / n,
    ratio: raw / payload,
  };
}

/**
 * The same pre-made gzip batches as legacyRun, sent on one polymur stream
 * (Hello, then Batch after Batch without waiting, Acks coming back): the
 * gateway-side cost of the two protocols with everything else equal.
 */
async function replayRun(n: number, prepared: PreparedBatches): Promise<Result> {
  // The generated code uses TS enums, which type stripping cannot run: load
  // the compiled module from dist/.
  const gen = (await import(
    pathToFileURL(path.join(REPO, "dist/gen/polymur/ingest/v1/ingest_pb.js")).href
  )) as { IngestService: Parameters<typeof createClient>[0] };
  const sink = await startSink(n);
  const gw = await startGateway(sink.port);
  const client = createClient(
    gen.IngestService,
    createGrpcTransport({ baseUrl: `http://127.0.0.1:${gw.port}` }),
  ) as unknown as {
    stream(
      reqs: AsyncIterable<unknown>,
      opts: { headers: Record<string, string> },
    ): AsyncIterable<{ msg: { case: string } }>;
  };
  const GZIP = 2; // Compression.GZIP
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
            compression: GZIP,
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
  const t0 = monoNow();
  let acks = 0;
  for await (const r of client.stream(requests(), {
    headers: { authorization: `Bearer ${SECRET}` },
  })) {
    if (r.msg.case === "reject") throw new Error("batch rejected");
    if (r.msg.case === "ack" && ++acks === bodies.length) break;
  }
  done();
  const res = await sink.done;
  const cpuGw1 = cpu(gw.child.pid!);
  await stop(gw.child);
  await stop(sink.child);
  if (res.lines < n) throw new Error(`replay: ${res.lines} of ${n} lines arrived`);
  const raw = prepared.raw.reduce((a, b) => a + b, 0);
  const payload = bodies.reduce((a, b) => a + b.length, 0);
  return {
    scenario: `polymur stream, the same gzip batches pre-made`,
    dps: n / (res.reached - t0),
    senderCpuPerM: (prepared.gzipCpu / n) * 1e6,
    gatewayCpuPerM: ((cpuGw1 - cpuGw0) / n) * 1e6,
    bytesPerDp: payload / n,
    ratio: raw / payload,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  if (!fs.existsSync(path.join(REPO, "dist/cli/polymur/main.js"))) {
    throw new Error("dist/ is missing: npm run build first");
  }
  console.error(
    `[gateway bench] ${N} datapoints, ${NAMES} names, ${CONNS} sender connections, ${os.availableParallelism()} cores`,
  );
  const text = execFileSync(tool("gen"), ["-P", "-n", String(N), "-k", String(NAMES), "-s", "1"], {
    maxBuffer: 1 << 30,
    stdio: ["ignore", "pipe", "ignore"],
  });
  const prepared = prepareBatches(text);
  // Warm-up (JIT, page cache): a tenth of the work, not reported.
  await streamRun("zstd", Math.max(20_000, Math.floor(N / 10)));
  const results: Result[] = [];
  const runs = new Map<string, Result[]>();
  for (let rep = 0; rep < REPS; rep++) {
    for (const c of (o.compression ?? "zstd").split(",")) {
      const r = await streamRun(c, N);
      runs.set(r.scenario, [...(runs.get(r.scenario) ?? []), r]);
    }
    const r = await legacyRun(N, prepared);
    runs.set(r.scenario, [...(runs.get(r.scenario) ?? []), r]);
    const rr = await replayRun(N, prepared);
    runs.set(rr.scenario, [...(runs.get(rr.scenario) ?? []), rr]);
  }
  for (const [scenario, rs] of runs) {
    results.push({
      scenario,
      dps: median(rs.map((r) => r.dps)),
      senderCpuPerM: median(rs.map((r) => r.senderCpuPerM)),
      gatewayCpuPerM: median(rs.map((r) => r.gatewayCpuPerM)),
      bytesPerDp: median(rs.map((r) => r.bytesPerDp)),
      ratio: median(rs.map((r) => r.ratio)),
    });
  }
  const rows = results.map((r) => [
    r.scenario,
    Math.round(r.dps).toLocaleString("en"),
    r.senderCpuPerM.toFixed(2),
    r.gatewayCpuPerM.toFixed(2),
    r.bytesPerDp.toFixed(1),
    r.ratio.toFixed(2),
  ]);
  const head = [
    "scenario",
    "datapoints/s",
    "sender CPU s/M",
    "gateway CPU s/M",
    "wire B/dp",
    "ratio",
  ];
  console.log(`| ${head.join(" | ")} |\n|${head.map(() => " --- |").join("")}`);
  for (const row of rows) console.log(`| ${row.join(" | ")} |`);
  console.log(JSON.stringify({ lines: N, names: NAMES, conns: CONNS, reps: REPS, results }));
}

await main();
