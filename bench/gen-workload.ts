/**
 * relaybench's workload, ported from its gen.c (metric_name, render_value,
 * build_pool) with seed 1: the same lines `gen -P -n N -k K -s 1` prints, byte
 * for byte. Names have depth 4-9 and about 48 characters (servers.*, apps.*,
 * stats.timers.*, collectd.*, k8s.*), lines about 68 bytes. Used by the
 * microbenchmarks (bench/micro.bench.ts) and by the test of the rules file the
 * relay benchmarks run (test/integration/bench-rules.test.ts).
 */

/** The size of the chunks render() cuts the lines into, like socket reads. */
export const CHUNK = 64 * 1024;

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
export function metricName(i: number): string {
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
export function renderValue(j: number): string {
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
export function buildPool(lines: number, names: number): string[] {
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

/** Lines rendered into one buffer, and that buffer cut into CHUNK-byte reads. */
export interface Workload {
  buf: Buffer;
  chunks: Buffer[];
  /** Name of line i: buf[nameStart[i], nameEnd[i]). */
  nameStart: Int32Array;
  nameEnd: Int32Array;
  bad: number;
}

/** `lines` pool lines back to back; every 100th replaced by a bad line when badEvery100. */
export function render(pool: readonly string[], lines: number, badEvery100: boolean): Workload {
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
