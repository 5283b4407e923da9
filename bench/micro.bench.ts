/**
 * Microbenchmarks of the data plane's hot paths, in process (no sockets):
 *
 *   framer             LineFramer.push() over 64 KiB chunks, every line valid
 *   framer-1pct-bad    the same with 1% bad lines (bad value, missing field, nan)
 *   route-uncached     HashRouter.route() per line name, carbon_ch to 3, no memo
 *   route-cached       the same with the route memo sized for every name
 *   table-broadcast    LineFramer -> RouteTable, broadcast to 2 (one view per run of lines)
 *   table-hash         LineFramer -> RouteTable, hash to 3 (per-line hash + accumulator copy)
 *   table-hash-cached  the same with the memo
 *
 * The lines are those relaybench's gen sends (its name and value generators ported
 * below, same seed: depth 4-9, ~48-character names, ~68 bytes a line), cut into 64 KiB
 * chunks at arbitrary offsets like a socket read. The route/table cases run only when
 * dataplane/route/hash/hash-router.ts exports createHashRouter. Each case runs in a child process
 * of its own so the JIT sees one kind of sink per call site; one untimed pass, then
 * --runs timed passes, median and best reported.
 *
 *   node bench/micro.bench.ts [--lines 2000000] [--names 100000] [--runs 5] [--quick]
 *                             [--case NAME]     (npm run bench -- micro [...])
 *   node bench/micro.bench.ts --print N [--names K]   the first N lines (= gen -P -n N -k K -s 1)
 */
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import { type FrameHandler, LineFramer } from "../dataplane/ingest/line-framer.ts";
import { RouteTable } from "../dataplane/route/route-table.ts";

const CHUNK = 64 * 1024;
const CASES = [
  "framer",
  "framer-1pct-bad",
  "route-uncached",
  "route-cached",
  "table-broadcast",
  "table-hash",
  "table-hash-cached",
] as const;
type CaseName = (typeof CASES)[number];

const { values: opts } = parseArgs({
  options: {
    lines: { type: "string" },
    names: { type: "string", default: "100000" },
    runs: { type: "string" },
    quick: { type: "boolean", default: false },
    case: { type: "string" },
    print: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opts.help) {
  console.log(
    "usage: node bench/micro.bench.ts [--lines N] [--names K] [--runs R] [--quick] [--case NAME]\n" +
      `cases: ${CASES.join(", ")}`,
  );
  process.exit(0);
}
const LINES = positiveInt("lines", opts.lines ?? (opts.quick ? "200000" : "2000000"));
const NAMES = positiveInt("names", opts.names);
const RUNS = positiveInt("runs", opts.runs ?? (opts.quick ? "3" : "5"));

function positiveInt(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n <= 0) {
    console.error(`micro.bench: --${name} must be a positive integer, got "${v}"`);
    process.exit(2);
  }
  return n;
}

// ---------------------------------------------------------------------------
// relaybench's gen.c workload (metric_name, render_value, build_pool), seed 1

const M64 = (1n << 64n) - 1n;
const SEED = 1n;

function mix64(x: bigint): bigint {
  x = (x + 0x9e3779b97f4a7c15n) & M64;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & M64;
  return x ^ (x >> 31n);
}
const rnd = (a: number, b: number): bigint => mix64(mix64(SEED ^ BigInt(a)) ^ BigInt(b));
const pick = (list: readonly string[], r: bigint | number): string =>
  list[Number(BigInt(r) % BigInt(list.length))]!;

const hostPrefix = ["web", "db", "cache", "api", "worker", "lb", "kafka", "search", "es", "redis"];
const cpuStat = ["user", "system", "idle", "iowait", "nice", "irq", "softirq", "steal"];
const memStat = [
  "free",
  "used",
  "cached",
  "buffers",
  "slab_recl",
  "slab_unrecl",
  "swap_free",
  "swap_used",
];
const diskDev = ["sda", "sdb", "sdc", "sdd", "nvme0n1", "nvme1n1"];
const diskStat = [
  "read_bytes",
  "write_bytes",
  "read_ops",
  "write_ops",
  "io_time",
  "weighted_io_time",
];
const netIf = ["eth0", "eth1", "bond0", "lo"];
const netStat = [
  "rx_bytes",
  "tx_bytes",
  "rx_packets",
  "tx_packets",
  "rx_errors",
  "tx_errors",
  "rx_dropped",
  "tx_dropped",
];
const apps = [
  "checkout",
  "search",
  "billing",
  "auth",
  "inventory",
  "recommendations",
  "payments",
  "notifications",
];
const envs = ["prod", "staging", "canary"];
const dcs = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
const endpoints = [
  "api_v1_users",
  "api_v1_orders_get",
  "api_v2_search",
  "healthz",
  "login",
  "logout",
  "cart_add",
  "cart_remove",
];
const statuses = ["2xx", "3xx", "4xx", "5xx"];
const timerStat = ["mean", "upper", "lower", "count", "p50", "p90", "p95", "p99", "std", "sum"];
const loadStat = ["shortterm", "midterm", "longterm"];
const namespaces = ["default", "kube-system", "monitoring", "ingress", "payments", "search"];
const containers = ["app", "istio-proxy", "log-shipper"];
const k8sStat = [
  "cpu_usage_seconds_total",
  "memory_working_set_bytes",
  "network_rx_bytes",
  "network_tx_bytes",
  "fs_reads_total",
  "fs_writes_total",
];

const hostName = (h: number): string => pick(hostPrefix, rnd(1, h)) + String(h).padStart(3, "0");

/** gen.c metric_name(): name number i, template i % 8. */
function metricName(i: number): string {
  let j = Math.floor(i / 8);
  let h: number;
  let per: number;
  switch (i % 8) {
    case 0:
      per = 16 * cpuStat.length;
      h = Math.floor(j / per);
      j %= per;
      return `servers.${hostName(h)}.cpu.cpu${Math.floor(j / cpuStat.length)}.${pick(cpuStat, j)}`;
    case 1:
      h = Math.floor(j / memStat.length);
      return `servers.${hostName(h)}.memory.${pick(memStat, j)}`;
    case 2:
      per = diskDev.length * diskStat.length;
      h = Math.floor(j / per);
      j %= per;
      return `servers.${hostName(h)}.disk.${diskDev[Math.floor(j / diskStat.length)]}.${pick(diskStat, j)}`;
    case 3:
      per = netIf.length * netStat.length;
      h = Math.floor(j / per);
      j %= per;
      return `servers.${hostName(h)}.network.${netIf[Math.floor(j / netStat.length)]}.${pick(netStat, j)}`;
    case 4:
      per = endpoints.length * statuses.length;
      h = Math.floor(j / per);
      j %= per;
      return (
        `apps.${pick(apps, h)}.${pick(envs, Math.floor(h / apps.length))}.${pick(dcs, rnd(2, h))}.` +
        `${hostName(h)}.requests.${endpoints[Math.floor(j / statuses.length)]}.${pick(statuses, j)}.count`
      );
    case 5:
      per = endpoints.length * timerStat.length;
      h = Math.floor(j / per);
      j %= per;
      return (
        `stats.timers.${pick(apps, h)}.${hostName(h)}.` +
        `${endpoints[Math.floor(j / timerStat.length)]}.${pick(timerStat, j)}`
      );
    case 6:
      h = Math.floor(j / loadStat.length);
      return `collectd.${hostName(h)}.load.load.${pick(loadStat, j)}`;
    default: {
      per = containers.length * k8sStat.length;
      h = Math.floor(j / per);
      j %= per;
      const pod36 = h < 36 ** 5 ? h.toString(36).padStart(5, "0") : `x${h}`;
      const hex = (rnd(5, h) & 0xfffffffffn).toString(16).padStart(9, "0");
      return (
        `k8s.prod-${pick(dcs, rnd(3, h))}.${pick(namespaces, rnd(4, h))}.${pick(apps, h)}-${hex}-${pod36}` +
        `.container.${containers[Math.floor(j / k8sStat.length)]}.${pick(k8sStat, j)}`
      );
    }
  }
}

/** gen.c render_value(): line j's value. */
function renderValue(j: number): string {
  const r = rnd(6, j);
  const v = r >> 8n;
  switch (Number(r % 4n)) {
    case 0:
      return String(v % 100n);
    case 1:
      return String(v % 10000000000n);
    case 2:
      return (Number(v % 100000n) / 100).toFixed(2);
    default:
      return (Number(v % 1000000000n) / 1000).toFixed(6);
  }
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** gen.c build_pool(): max(K, 256Ki) lines (at most N); gen sends the pool round robin. */
function buildPool(lines: number, names: number): string[] {
  const poolLines = Math.min(Math.max(names, 256 * 1024), lines);
  let a = Number(rnd(7, 0) % BigInt(names)) | 1;
  while (gcd(a, names) !== 1) a += 2;
  const b = Number(rnd(8, 0) % BigInt(names));
  const nameOf = new Map<number, string>();
  const pool: string[] = [];
  for (let j = 0; j < poolLines; j++) {
    const idx = Number((BigInt(j % names) * BigInt(a) + BigInt(b)) % BigInt(names));
    let name = nameOf.get(idx);
    if (name === undefined) {
      name = metricName(idx);
      nameOf.set(idx, name);
    }
    const ts = 1700000000 + Math.floor(j / names) * 10;
    pool.push(`${name} ${renderValue(j)} ${ts}`);
  }
  return pool;
}

interface Workload {
  buf: Buffer;
  chunks: Buffer[];
  /** Name of line i: buf[nameStart[i], nameEnd[i]). */
  nameStart: Int32Array;
  nameEnd: Int32Array;
  bad: number;
}

/** `lines` pool lines back to back; every 100th replaced by a bad line when badEvery100. */
function render(pool: readonly string[], lines: number, badEvery100: boolean): Workload {
  // bad value, missing timestamp, nan value
  const kinds = [
    (n: string) => `${n} abc 1700000000`,
    (n: string) => `${n} 42`,
    (n: string) => `${n} nan 1700000000`,
  ];
  let bytes = 0;
  for (const l of pool) bytes += l.length + 1;
  const buf = Buffer.allocUnsafe(Math.ceil((bytes / pool.length) * lines * 1.05) + 4096);
  const nameStart = new Int32Array(lines);
  const nameEnd = new Int32Array(lines);
  let at = 0;
  let bad = 0;
  for (let i = 0; i < lines; i++) {
    let line = pool[i % pool.length]!;
    const sp = line.indexOf(" ");
    if (badEvery100 && i % 100 === 50) line = kinds[bad++ % kinds.length]!(line.slice(0, sp));
    nameStart[i] = at;
    nameEnd[i] = at + sp;
    at += buf.write(line, at, "latin1");
    buf[at++] = 0x0a;
  }
  const used = buf.subarray(0, at);
  const chunks: Buffer[] = [];
  for (let o = 0; o < at; o += CHUNK) chunks.push(used.subarray(o, Math.min(at, o + CHUNK)));
  return { buf: used, chunks, nameStart, nameEnd, bad };
}

// ---------------------------------------------------------------------------
// hash router (optional: only when dataplane/route/hash/hash-router.ts exports createHashRouter)

interface RouterLike {
  route(key: Uint8Array, start: number, end: number, out: Uint8Array): number;
}
type CreateRouter = (members: unknown[], options: Record<string, unknown>) => RouterLike;

/** Loaded by a computed specifier so that this file type-checks without the module. */
async function loadHashRouter(): Promise<{ create: CreateRouter; members: unknown[] } | string> {
  const dir = new URL("../dataplane/", import.meta.url);
  let router: Record<string, unknown>;
  let specs: Record<string, unknown>;
  try {
    router = await import(new URL("route/hash/hash-router.ts", dir).href);
    specs = await import(new URL("forward/destination-spec.ts", dir).href);
  } catch (err) {
    return `dataplane/route/hash/hash-router.ts not loadable (${(err as Error).message.split("\n")[0]})`;
  }
  if (typeof router["createHashRouter"] !== "function") {
    return "dataplane/route/hash/hash-router.ts has no createHashRouter export";
  }
  const parse = specs["parseDestinationList"] as (list: string) => unknown[];
  // the destinations relaybench gives polymur in hash mode ({dests_inst}): instances a, b, c
  const members = parse("127.0.0.1:2101:a,127.0.0.1:2102:b,127.0.0.1:2103:c");
  return { create: router["createHashRouter"] as CreateRouter, members };
}

/** Memo big enough for every name (a relay sees the same series every interval). */
const cachedSlots = (): number => 2 ** Math.ceil(Math.log2(NAMES * 2));

// ---------------------------------------------------------------------------
// one case (child process)

interface CaseResult {
  case: CaseName;
  lines: number;
  runs: number;
  medianNs: number;
  bestNs: number;
  note: string;
  skipped?: string;
}

class CountingSink implements FrameHandler {
  lines = 0;
  rejects = 0;
  segment(_buf: Buffer, _start: number, _end: number, lines: number): void {
    this.lines += lines;
  }
  reject(): void {
    this.rejects++;
  }
}

/** A Destination stand-in: counts what RouteTable enqueues. */
class NullDestination {
  lines = 0;
  bytes = 0;
  enqueue(chunk: Uint8Array, lines: number): void {
    this.lines += lines;
    this.bytes += chunk.length;
  }
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function runCase(name: CaseName): Promise<CaseResult> {
  const t0 = performance.now();
  const pool = buildPool(LINES, NAMES);
  const w = render(pool, LINES, name === "framer-1pct-bad");
  const setup = `setup ${((performance.now() - t0) / 1000).toFixed(1)}s`;
  const base = { case: name, lines: LINES, runs: RUNS, medianNs: 0, bestNs: 0 };
  let pass: () => void;
  let check: () => string;

  if (name === "framer" || name === "framer-1pct-bad") {
    let sink = new CountingSink();
    pass = () => {
      sink = new CountingSink();
      const framer = new LineFramer(sink);
      for (const c of w.chunks) framer.push(c);
    };
    check = () => {
      if (sink.lines + sink.rejects !== LINES || sink.rejects !== w.bad) {
        throw new Error(`framer saw ${sink.lines} lines + ${sink.rejects} rejects of ${LINES}`);
      }
      return `${sink.rejects} rejected`;
    };
  } else {
    const hr = name === "table-broadcast" ? null : await loadHashRouter();
    if (typeof hr === "string") return { ...base, note: "", skipped: hr };
    const cached = name.endsWith("-cached");
    const router =
      hr === null
        ? null
        : hr.create(hr.members, {
            algo: "carbon_ch",
            compat: "carbon",
            replication: 1,
            cacheSize: cached ? cachedSlots() : 0,
          });
    const memo = cached ? `memo ${cachedSlots()} slots, ` : "";
    if (name === "route-uncached" || name === "route-cached") {
      const r = router!;
      const out = new Uint8Array(16);
      const perDest = new Float64Array(16);
      pass = () => {
        perDest.fill(0);
        const { buf, nameStart, nameEnd } = w;
        for (let i = 0; i < LINES; i++) {
          const k = r.route(buf, nameStart[i]!, nameEnd[i]!, out);
          for (let j = 0; j < k; j++) perDest[out[j]!]!++;
        }
      };
      check = () => `${memo}per dest ${Array.from(perDest.subarray(0, 3)).join("/")}`;
    } else {
      const dests = Array.from({ length: router === null ? 2 : 3 }, () => new NullDestination());
      type Dests = ConstructorParameters<typeof RouteTable>[0];
      type Hash = ConstructorParameters<typeof RouteTable>[1];
      const table = new RouteTable(dests as unknown as Dests, router as unknown as Hash, {
        routed: 0,
        noDestination: 0,
        noMatch: 0,
        blackhole: 0,
        validate: 0,
      });
      const sink: FrameHandler = {
        segment: (buf, start, end, lines) => table.route(buf, start, end, lines),
        reject: () => {},
      };
      pass = () => {
        const framer = new LineFramer(sink);
        for (const c of w.chunks) framer.push(c);
      };
      check = () => `${memo}per dest ${dests.map((d) => d.lines).join("/")} (all passes)`;
    }
  }

  pass(); // untimed: JIT warm-up
  await tick(); // let RouteTable flush its accumulators
  const ns: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const start = process.hrtime.bigint();
    pass();
    ns.push(Number(process.hrtime.bigint() - start) / LINES);
    await tick();
  }
  ns.sort((a, b) => a - b);
  return {
    ...base,
    medianNs: ns[Math.floor(ns.length / 2)]!,
    bestNs: ns[0]!,
    note: `${check()}, ${setup}`,
  };
}

// ---------------------------------------------------------------------------
// driver

function printTable(results: CaseResult[]): void {
  const header = [
    "case",
    "lines",
    "runs",
    "Mlines/s (med)",
    "ns/line (med)",
    "ns/line (best)",
    "note",
  ];
  const rows = results.map((r) =>
    r.skipped
      ? [r.case, "-", "-", "-", "-", "-", `skipped: ${r.skipped}`]
      : [
          r.case,
          String(r.lines),
          String(r.runs),
          (1000 / r.medianNs).toFixed(2),
          r.medianNs.toFixed(1),
          r.bestNs.toFixed(1),
          r.note,
        ],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const row of [header, ...rows]) {
    console.log(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join("  "));
  }
}

if (opts.print !== undefined) {
  const n = positiveInt("print", opts.print);
  const pool = buildPool(n, NAMES);
  for (let i = 0; i < n; i++) process.stdout.write(`${pool[i % pool.length]}\n`);
} else if (opts.case !== undefined) {
  if (!(CASES as readonly string[]).includes(opts.case)) {
    console.error(`micro.bench: unknown case "${opts.case}"; cases: ${CASES.join(", ")}`);
    process.exit(2);
  }
  console.log(JSON.stringify(await runCase(opts.case as CaseName)));
} else {
  console.error(
    `micro.bench: ${LINES} lines over ${NAMES} names in ${CHUNK / 1024} KiB chunks, ` +
      `${RUNS} timed runs per case, node ${process.version}`,
  );
  const results: CaseResult[] = [];
  const pass: string[] = [
    "--lines",
    String(LINES),
    "--names",
    String(NAMES),
    "--runs",
    String(RUNS),
  ];
  for (const c of CASES) {
    const child = spawnSync(process.execPath, [import.meta.filename, ...pass, "--case", c], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      maxBuffer: 1 << 20,
    });
    const last = child.stdout.trim().split("\n").pop() ?? "";
    if (child.status !== 0 || !last.startsWith("{")) {
      results.push({ case: c, lines: LINES, runs: 0, medianNs: 0, bestNs: 0, note: "" });
      results[results.length - 1]!.skipped = `failed (exit ${child.status ?? child.signal})`;
      process.exitCode = 1;
    } else {
      results.push(JSON.parse(last) as CaseResult);
    }
    console.error(`  ${c} done`);
  }
  printTable(results);
}
