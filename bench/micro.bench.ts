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
 *   rules-realistic    LineFramer -> RulesTable, bench/rules/realistic.conf (30 rules; what
 *                      `npm run bench -- rules-*` runs)
 *   rules-100          the same with 70 more rules that match nothing: 100 rules
 *                      (bench/rules/rules-workload.ts)
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
import { buildPool, CHUNK, render } from "./gen-workload.ts";
import {
  manyRulesConf,
  NullDestination,
  realisticConf,
  rulesTable,
} from "./rules/rules-workload.ts";

const CASES = [
  "framer",
  "framer-1pct-bad",
  "route-uncached",
  "route-cached",
  "table-broadcast",
  "table-hash",
  "table-hash-cached",
  "rules-realistic",
  "rules-100",
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
  /** CPU time of the process (user + system) per line, median: steadier than wall time on a busy machine. */
  cpuNs: number;
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

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function runCase(name: CaseName): Promise<CaseResult> {
  const t0 = performance.now();
  const pool = buildPool(LINES, NAMES);
  const w = render(pool, LINES, name === "framer-1pct-bad");
  const setup = `setup ${((performance.now() - t0) / 1000).toFixed(1)}s`;
  const base = { case: name, lines: LINES, runs: RUNS, medianNs: 0, bestNs: 0, cpuNs: 0 };
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
  } else if (name === "rules-realistic" || name === "rules-100") {
    const conf = name === "rules-100" ? manyRulesConf(70) : realisticConf();
    const { table, dests, counts, aggregates } = rulesTable(conf);
    const sink: FrameHandler = {
      segment: (buf, start, end, lines) => table.route(buf, start, end, lines),
      reject: () => {},
    };
    pass = () => {
      const framer = new LineFramer(sink);
      for (const c of w.chunks) framer.push(c);
    };
    check = () => {
      const unrouted = counts.noMatch + counts.blackhole + counts.validate + counts.noDestination;
      if (unrouted !== 0) throw new Error(`${unrouted} lines not routed`);
      const rules = table.program.config.rules.length;
      return (
        `${rules} rules, per dest ${dests.map((d) => d.lines).join("/")}, ` +
        `${aggregates.points} aggregated (all passes)`
      );
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
  const cpu: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    const cpu0 = process.cpuUsage();
    const start = process.hrtime.bigint();
    pass();
    ns.push(Number(process.hrtime.bigint() - start) / LINES);
    const used = process.cpuUsage(cpu0);
    cpu.push(((used.user + used.system) * 1000) / LINES);
    await tick();
  }
  ns.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  return {
    ...base,
    medianNs: ns[Math.floor(ns.length / 2)]!,
    bestNs: ns[0]!,
    cpuNs: cpu[Math.floor(cpu.length / 2)]!,
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
    "cpu ns/line (med)",
    "note",
  ];
  const rows = results.map((r) =>
    r.skipped
      ? [r.case, "-", "-", "-", "-", "-", "-", `skipped: ${r.skipped}`]
      : [
          r.case,
          String(r.lines),
          String(r.runs),
          (1000 / r.medianNs).toFixed(2),
          r.medianNs.toFixed(1),
          r.bestNs.toFixed(1),
          r.cpuNs.toFixed(1),
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
      results.push({ case: c, lines: LINES, runs: 0, medianNs: 0, bestNs: 0, cpuNs: 0, note: "" });
      results[results.length - 1]!.skipped = `failed (exit ${child.status ?? child.signal})`;
      process.exitCode = 1;
    } else {
      results.push(JSON.parse(last) as CaseResult);
    }
    console.error(`  ${c} done`);
  }
  printTable(results);
}
