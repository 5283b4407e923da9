/**
 * Side-by-side benchmark of polymur and carbon-c-relay with relaybench (the shared
 * Graphite relay harness: C load generator and sink, Python driver). See bench/README.md.
 *
 *   npm run bench -- <scenario> [options]        (= node bench/run.ts ...)
 *
 * relaybench is not part of this repo: it is copied from <repo>/../shared/bench (or
 * $RELAYBENCH_DIR) into .cache/relaybench/, where it compiles gen and sink into build/.
 * Every scenario runs polymur and carbon-c-relay in the same invocation, appends
 * relaybench's JSON lines to bench/results/<scenario>-<date>.jsonl and ends with
 * relaybench's side-by-side `report` table of this invocation's runs.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { runDiskReplay } from "./disk/replay.ts";
import { type DiskStatsRecord, diskStatsRecords, printDiskStats } from "./disk/spill-stats.ts";
import {
  CORES_RUNS,
  FIXED_RATE,
  type FixedRateScenario,
  fixedRateArgs,
  SETTLE_SECONDS,
  settleWarmup,
} from "./rate/fixed-rate.ts";
import { runWireIn } from "./wire/wire-in.ts";

const REPO = path.resolve(import.meta.dirname, "..");
const NODE = path.join(REPO, "node_modules/.bin/node");
const CACHE = path.join(REPO, ".cache/relaybench");
const RELAYBENCH_FILES = ["relaybench", "gen.c", "sink.c"];
const PYTHON = process.env["PYTHON"] ?? "python3";

const SCENARIOS = [
  "broadcast-max",
  "broadcast-sweep",
  "hash-sweep",
  "hash-max",
  "hash-check",
  "idle",
  "rules-sweep",
  "rules-max",
  "disk-spill",
  "disk-replay",
  "disk-idle",
  "wire-in",
  "rate-15k",
  "rate-10k",
  "senders-2000",
  "cores",
] as const;
type Scenario = (typeof SCENARIOS)[number];
type RelayName = "polymur" | "carbon-c-relay";

/** README of relaybench, "Hash-routing compatibility check": carbon_ch for this workload. */
/** The relay.conf both relays run in the rules-* scenarios (a relaybench --relay-config template). */
const RULES_CONFIG = path.join(REPO, "bench/rules/realistic.conf");
/** What the aggregation in RULES_CONFIG writes: not input lines, so the sinks do not count them. */
const RULES_OUTPUT_PREFIX = "agg.";

const REFERENCE_HASH = {
  perPort: [31444, 33244, 35312],
  digests: ["a01cea2f2b1826df", "50d20e3b84d0e85c", "1abfc70a4fec1c5e"],
};

const USAGE = `usage: npm run bench -- <scenario> [options]     (node bench/run.ts ...)

scenarios (each runs polymur and carbon-c-relay):
  broadcast-max    as fast as possible, 50 conns, broadcast to 2, 5M lines (polymur --warmup 200000)
  broadcast-sweep  highest lossless rate, broadcast to 2 (bisection; polymur hi 4M, carbon-c-relay hi 1M)
  hash-sweep       highest lossless rate, carbon_ch hash to 3
  hash-max         as fast as possible, carbon_ch hash to 3, 5M lines
  hash-check       100000 lines at 10000/s, --check-hash: do polymur and carbon-c-relay
                   send every name to the same destination? (exit 1 if not)
  idle             5000 idle connections, hash to 3: RSS per connection, idle CPU (polymur idle
                   for ${SETTLE_SECONDS} s before they connect)
  rules-sweep      highest lossless rate, both relays running bench/rules/realistic.conf
                   (30 rules, 3 carbon_ch clusters over the 3 sinks, rewrites, an aggregation;
                   polymur hi 2M, carbon-c-relay hi 500k)
  rules-max        as fast as possible, the same file, 5M lines
  disk-spill       as fast as possible, broadcast to 2 of which one is down for the whole run
                   (a port nobody listens on), 5M lines: polymur --queue-dir, polymur memory
                   only, carbon-c-relay; dp/s at the live sink and, from polymur's last /stats,
                   what reached the dead destination's disk queue
  disk-replay      polymur --queue-dir alone: N lines (--lines, default 20M) queued on disk for a
                   destination that is down, then its sink starts: dp/s and CPU of the replay
  disk-idle        broadcast-max with every destination up: polymur --queue-dir beside polymur
                   memory only and carbon-c-relay (the cost of the option when nothing spills)
  wire-in          the cost of the input protocol, broadcast to 1, 50 conns, own sender (bench/wire/):
                   polymur plaintext, TLS, pickle, pickle over TLS; carbon-c-relay plaintext and
                   ssl; as fast as possible (5M lines) and at 100000 dp/s (1M lines)
  rate-15k         ${FIXED_RATE["rate-15k"].what}, 30 s after polymur's ${SETTLE_SECONDS} s warm-up
  rate-10k         ${FIXED_RATE["rate-10k"].what}, 30 s after the warm-up
  senders-2000     ${FIXED_RATE["senders-2000"].what}, 30 s after the warm-up
  cores            broadcast-max with the relay pinned to 1 core (gen and sinks on the other),
                   then on both cores (shared with gen and sinks)
  all              all of the above, in this order
  micro            bench/micro.bench.ts (in-process hot paths; no relaybench)
  link             bench/gateway.bench.ts: proxy → gateway → sink, one acknowledged stream
                   beside the Go polymur's gzip POSTs (3 workers); no relaybench

options:
  --quick                 small, fast runs (smoke test of the harness; results go to
                          .cache/relaybench/results/, not bench/results/)
  --reps N                repetitions (default 3; sweeps 2; hash-check always 1)
  --lines N               lines per run of the *-max and disk-* scenarios (default 5000000;
                          disk-replay 20000000)
  --rules FILE            relay.conf template for the rules-* scenarios
                          (default bench/rules/realistic.conf)
  --only NAME             polymur or carbon-c-relay
  --label S               suffix for the result labels (e.g. a branch or an experiment)
  --workers N             polymur --workers (default: polymur's own, one per core)
  --polymur-args "..."    extra polymur relay flags (relaybench placeholders allowed)
  --ccr-workers N         carbon-c-relay -w (default 2)
  --ccr-args "..."        carbon-c-relay flags (default "-q 1000000")
  --warmup N              polymur warm-up lines (default 200000 for *-max, 20000 per sweep probe,
                          the rate × ${SETTLE_SECONDS} s at a fixed rate)
  --probe-seconds S       seconds of traffic per sweep probe (default 8)
  --wait-quiet S          before each run, wait up to S s for the machine to be quiet
  --rb-args "..."         more relaybench options, e.g. "--relay-cpus 1 --load-cpus 0"
  --out DIR               results directory (default bench/results)
  --disk-dir DIR          disk-* scenarios: where each run's temporary directory (relaybench's
                          work directory, the queue directory) is made and removed (default $TMPDIR)
  --no-build              do not run \`npm run build\` when dist/ is older than the sources
  (micro: --lines N --names K --runs R --quick are passed to micro.bench.ts)`;

// ---------------------------------------------------------------------------
// options

function die(msg: string, code = 1): never {
  console.error(`bench: ${msg}`);
  process.exit(code);
}

const parsed = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        quick: { type: "boolean", default: false },
        reps: { type: "string" },
        lines: { type: "string" },
        rules: { type: "string" },
        names: { type: "string" },
        runs: { type: "string" },
        only: { type: "string" },
        label: { type: "string" },
        workers: { type: "string" },
        "polymur-args": { type: "string", default: "" },
        "ccr-workers": { type: "string", default: "2" },
        "ccr-args": { type: "string", default: "-q 1000000" },
        warmup: { type: "string" },
        "probe-seconds": { type: "string" },
        "wait-quiet": { type: "string" },
        "rb-args": { type: "string", default: "" },
        out: { type: "string" },
        "disk-dir": { type: "string" },
        "no-build": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    return die(`${(err as Error).message} (see --help)`, 2);
  }
})();
const opts = parsed.values;
const [scenarioArg, ...extra] = parsed.positionals;
if (opts.help || scenarioArg === undefined) {
  console.log(USAGE);
  process.exit(opts.help ? 0 : 2);
}
if (extra.length > 0) die(`unexpected arguments: ${extra.join(" ")} (see --help)`, 2);
if (opts.only !== undefined && opts.only !== "polymur" && opts.only !== "carbon-c-relay") {
  die(`--only must be polymur or carbon-c-relay, got "${opts.only}"`, 2);
}

function intOpt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) die(`--${name} must be a whole number, got "${v}"`, 2);
  return n;
}

function numOpt(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) die(`--${name} must be a positive number, got "${v}"`, 2);
  return n;
}

const quick = opts.quick;
const reps = intOpt("reps", opts.reps);
const lines = intOpt("lines", opts.lines);
const workers = intOpt("workers", opts.workers);
const ccrWorkers = intOpt("ccr-workers", opts["ccr-workers"]);
const warmup = intOpt("warmup", opts.warmup);
const probeSeconds = numOpt("probe-seconds", opts["probe-seconds"]);
const waitQuiet = numOpt("wait-quiet", opts["wait-quiet"]);
const relays: RelayName[] = opts.only ? [opts.only as RelayName] : ["polymur", "carbon-c-relay"];
const labelSuffix = opts.label ? ` ${opts.label}` : "";
const diskDir = path.resolve(opts["disk-dir"] ?? os.tmpdir());
const outDir = path.resolve(
  opts.out ?? (quick ? path.join(CACHE, "results") : path.join(REPO, "bench/results")),
);

// ---------------------------------------------------------------------------
// micro: in-process benchmarks, no relaybench

if (scenarioArg === "link") {
  const pass: string[] = quick ? ["--quick"] : ["--reps", String(reps ?? 3)];
  if (opts.label) pass.push("--label", opts.label);
  const link = path.join(import.meta.dirname, "gateway.bench.ts");
  const r = spawnSync(process.execPath, [link, ...pass], { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

if (scenarioArg === "micro") {
  const pass: string[] = quick ? ["--quick"] : [];
  for (const k of ["lines", "names", "runs"] as const) if (opts[k]) pass.push(`--${k}`, opts[k]);
  const micro = path.join(import.meta.dirname, "micro.bench.ts");
  const r = spawnSync(process.execPath, [micro, ...pass], { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

const scenarios: readonly Scenario[] =
  scenarioArg === "all"
    ? SCENARIOS
    : (SCENARIOS as readonly string[]).includes(scenarioArg)
      ? [scenarioArg as Scenario]
      : die(`unknown scenario "${scenarioArg}" (see --help)`, 2);

// ---------------------------------------------------------------------------
// scenario -> relaybench arguments

/** Quotes a word for relaybench's shlex.split of the command template. */
function shq(s: string): string {
  return /^[\w@%+=:,./{}-]+$/.test(s) ? s : `'${s.replaceAll("'", `'"'"'`)}'`;
}

type Routing = "broadcast" | "hash" | "rules";

function polymurTemplate(routing: Routing): string {
  const words = [NODE, path.join(REPO, "bin/polymur.js"), "relay"];
  if (routing === "rules") {
    // the file's listen block says where ({host}:{listen}), its clusters where to
    words.push("--rules", "{config}");
  } else {
    words.push("--listen-addr", "{host}:{listen}");
  }
  if (routing === "broadcast") {
    words.push("--destinations", "{dests}", "--distribution", "broadcast");
  } else if (routing === "hash") {
    words.push("--destinations", "{dests_inst}", "--distribution", "hash-route");
    words.push("--hash", "carbon_ch", "--compat", "carbon", "--replication", "1");
  }
  words.push("--api-addr=", "--stat-addr=", "--metrics-flush", "0");
  if (workers !== undefined) words.push("--workers", String(workers));
  const cmd = words.map(shq).join(" ");
  return opts["polymur-args"] ? `${cmd} ${opts["polymur-args"]}` : cmd;
}

/** carbon-c-relay on a given relay.conf: relaybench's preset command, with our file. */
const CCR_RULES_TEMPLATE = "carbon-c-relay -f {config} -w {workers} -s -B 1024 {relay_args}";

const polymurWorkers = workers || os.availableParallelism();

/** One relaybench invocation of a scenario. */
interface RunPlan {
  relay: RelayName;
  /** Names its JSON file in .cache/relaybench/runs/. */
  tag: string;
  /** relaybench options for this relay. */
  args: string[];
  /**
   * The relay runs under bench/disk/relay-stats.sh, which keeps its last /stats:
   * "dead" when the last of its destinations is down for the whole run.
   */
  finalStats: "dead" | "up" | null;
}

interface Plan {
  /** relaybench options shared by the runs. */
  common: string[];
  runs: RunPlan[];
  checkHash: boolean;
}

/** relaybench --relay-cmd wrapper that keeps the relay's last /stats (disk-spill, disk-idle). */
const DISK_WRAPPER = path.join(REPO, "bench/disk/relay-stats.sh");
/** carbon-c-relay's relay.conf for disk-spill: broadcast to the sink and to a port nobody listens on. */
const CCR_ONE_DOWN = path.join(REPO, "bench/disk/ccr-one-down.conf");

/**
 * polymur for disk-spill (`dead`: broadcast to the sink and to {free3}, a port
 * nobody listens on) and disk-idle (broadcast to the 2 sinks), with or without
 * --queue-dir (in the run's work directory: fresh for every run), under
 * relay-stats.sh: /stats on {free2}, written to {workdir}/final-stats.json when
 * relaybench stops the relay. A short --shutdown-timeout: a memory-only relay
 * would otherwise wait for the dead destination.
 */
function polymurDiskTemplate(dead: boolean, queueDir: boolean): string {
  const words = [
    ...["sh", DISK_WRAPPER, NODE, "http://{host}:{free2}/stats", "{workdir}/final-stats.json"],
    ...["{workdir}/queue", dead ? "{host}:{free3}" : "-"],
    ...[NODE, path.join(REPO, "bin/polymur.js"), "relay", "--listen-addr", "{host}:{listen}"],
    ...[
      "--destinations",
      dead ? "{dests},{host}:{free3}" : "{dests}",
      "--distribution",
      "broadcast",
    ],
    ...["--api-addr=", "--stat-addr", "{host}:{free2}", "--metrics-flush", "0"],
    ...["--shutdown-timeout", "2"],
  ];
  if (queueDir) words.push("--queue-dir", "{workdir}/queue");
  if (workers !== undefined) words.push("--workers", String(workers));
  const cmd = words.map(shq).join(" ");
  return opts["polymur-args"] ? `${cmd} ${opts["polymur-args"]}` : cmd;
}

/**
 * disk-spill and disk-idle: polymur with --queue-dir, polymur memory only and
 * carbon-c-relay on the broadcast-max workload. disk-spill runs one sink, which
 * relaybench counts in broadcast mode (every line there once), and gives each
 * relay a second destination that is down for the whole run.
 */
function diskPlan(s: "disk-spill" | "disk-idle"): Plan {
  const dead = s === "disk-spill";
  const common = ["--mode", "broadcast", "--dests", dead ? "1" : "2", "--conns", "50"];
  common.push("--lines", String(lines ?? (quick ? 200_000 : 5_000_000)));
  common.push("--reps", String(reps ?? (quick ? 1 : 3)));
  if (waitQuiet !== undefined) common.push("--wait-quiet", String(waitQuiet));
  if (opts["rb-args"]) common.push(...splitWords(opts["rb-args"]));
  const warm = ["--warmup", String(warmup ?? (quick ? 20_000 : 200_000))];
  const polymur = (queueDir: boolean): RunPlan => {
    const variant = queueDir ? "queue-dir" : "memory";
    return {
      relay: "polymur",
      tag: `polymur-${variant}`,
      args: [
        `--relay-cmd=${polymurDiskTemplate(dead, queueDir)}`,
        `--label=polymur -w${polymurWorkers} ${variant}${labelSuffix}`,
        ...warm,
      ],
      finalStats: dead ? "dead" : "up",
    };
  };
  const ccr: RunPlan = {
    relay: "carbon-c-relay",
    tag: "carbon-c-relay",
    args: [
      ...(dead
        ? [`--relay-cmd=${CCR_RULES_TEMPLATE}`, "--relay-config", CCR_ONE_DOWN]
        : ["--peer=carbon-c-relay"]),
      `--workers=${ccrWorkers}`,
      `--relay-args=${opts["ccr-args"]}`,
      `--label=carbon-c-relay${labelSuffix}`,
    ],
    finalStats: null,
  };
  return { common, runs: [polymur(true), polymur(false), ccr], checkHash: false };
}

/** rate-15k, rate-10k, senders-2000: polymur with its defaults beside carbon-c-relay at a fixed rate. */
function fixedRatePlan(s: FixedRateScenario): Plan {
  const f = FIXED_RATE[s];
  const common = fixedRateArgs(s, quick);
  if (reps !== undefined || quick) common.push("--reps", String(reps ?? 1));
  else common.push("--reps", "3");
  if (waitQuiet !== undefined) common.push("--wait-quiet", String(waitQuiet));
  if (opts["rb-args"]) common.push(...splitWords(opts["rb-args"]));
  return {
    common,
    runs: [
      {
        relay: "polymur",
        tag: "polymur",
        args: [
          `--relay-cmd=${polymurTemplate(f.mode)}`,
          `--label=polymur -w${polymurWorkers}${labelSuffix}`,
          ...(warmup === undefined ? settleWarmup(s, quick) : ["--warmup", String(warmup)]),
        ],
        finalStats: null,
      },
      {
        relay: "carbon-c-relay",
        tag: "carbon-c-relay",
        args: [
          "--peer=carbon-c-relay",
          `--workers=${ccrWorkers}`,
          `--relay-args=${opts["ccr-args"]}`,
          `--label=carbon-c-relay${labelSuffix}`,
        ],
        finalStats: null,
      },
    ],
    checkHash: false,
  };
}

/** cores: broadcast-max on 1 core and on 2, for each relay (CORES_RUNS). */
function coresPlan(): Plan {
  const common = ["--mode", "broadcast", "--dests", "2", "--conns", "50"];
  common.push("--lines", String(lines ?? (quick ? 200_000 : 5_000_000)));
  common.push("--reps", String(reps ?? (quick ? 1 : 3)));
  if (waitQuiet !== undefined) common.push("--wait-quiet", String(waitQuiet));
  if (opts["rb-args"]) common.push(...splitWords(opts["rb-args"]));
  const runs: RunPlan[] = [];
  for (const { cores, rb } of CORES_RUNS) {
    runs.push({
      relay: "polymur",
      tag: `polymur-${cores}core`,
      args: [
        ...rb,
        `--relay-cmd=${polymurTemplate("broadcast")}`,
        `--label=polymur ${cores} core${cores > 1 ? "s" : ""}${labelSuffix}`,
        "--warmup",
        String(warmup ?? (quick ? 20_000 : 200_000)),
      ],
      finalStats: null,
    });
    runs.push({
      relay: "carbon-c-relay",
      tag: `carbon-c-relay-${cores}core`,
      args: [
        ...rb,
        "--peer=carbon-c-relay",
        `--workers=${ccrWorkers}`,
        `--relay-args=${opts["ccr-args"]}`,
        `--label=carbon-c-relay ${cores} core${cores > 1 ? "s" : ""}${labelSuffix}`,
      ],
      finalStats: null,
    });
  }
  return { common, runs, checkHash: false };
}

function plan(s: Exclude<Scenario, "disk-replay" | "wire-in">): Plan {
  if (s === "disk-spill" || s === "disk-idle") return diskPlan(s);
  if (s === "rate-15k" || s === "rate-10k" || s === "senders-2000") return fixedRatePlan(s);
  if (s === "cores") return coresPlan();
  const routing: Routing = s.startsWith("broadcast")
    ? "broadcast"
    : s.startsWith("rules")
      ? "rules"
      : "hash";
  // rules: relaybench counts as in hash mode, each line once over the 3 sinks
  const mode = routing === "broadcast" ? "broadcast" : "hash";
  const topology = ["--mode", mode, "--dests", mode === "broadcast" ? "2" : "3", "--conns", "50"];
  const polymur = [
    `--relay-cmd=${polymurTemplate(routing)}`,
    `--label=polymur -w${polymurWorkers}${labelSuffix}`,
  ];
  const ccr = [
    routing === "rules" ? `--relay-cmd=${CCR_RULES_TEMPLATE}` : "--peer=carbon-c-relay",
    `--workers=${ccrWorkers}`,
    `--relay-args=${opts["ccr-args"]}`,
    `--label=carbon-c-relay${labelSuffix}`,
  ];
  const common = [...topology];
  if (routing === "rules") {
    const file = path.resolve(opts.rules ?? RULES_CONFIG);
    if (!fs.existsSync(file)) die(`--rules: no file ${file}`, 2);
    common.push("--relay-config", file, "--ignore-prefix", RULES_OUTPUT_PREFIX);
  }
  const r = (dflt: number) => ["--reps", String(reps ?? (quick ? 1 : dflt))];
  switch (s) {
    case "broadcast-max":
    case "hash-max":
    case "rules-max":
      common.push("--lines", String(lines ?? (quick ? 200_000 : 5_000_000)), ...r(3));
      polymur.push("--warmup", String(warmup ?? (quick ? 20_000 : 200_000)));
      break;
    case "broadcast-sweep":
    case "hash-sweep":
    case "rules-sweep":
      common.push("--sweep", "--sweep-secs", String(probeSeconds ?? (quick ? 1 : 8)), ...r(2));
      // relaybench sends the warm-up at the probe's rate, before every probe
      polymur.push("--warmup", String(warmup ?? (quick ? 2_000 : 20_000)));
      if (quick) {
        // two or three probes of a second: proves the loop, measures nothing
        common.push("--sweep-lo", "20000", "--sweep-step", "2.5", "--sink-idle", "2");
        polymur.push("--sweep-hi", "80000");
        ccr.push("--sweep-hi", "80000");
      } else {
        // with rules both relays run well below their hash-routing ceilings
        polymur.push("--sweep-hi", s === "rules-sweep" ? "2000000" : "4000000");
        ccr.push("--sweep-hi", s === "rules-sweep" ? "500000" : "1000000");
      }
      break;
    case "hash-check":
      // the workload of relaybench's README compatibility check; the rate does not change
      // which names go where, so --quick only sends faster
      common.push("--lines", "100000", "--names", "100000", "--seed", "1", "--reps", "1");
      common.push("--rate", quick ? "100000" : "10000", "--check-hash");
      break;
    case "idle":
      common.push("--idle-conns", quick ? "300" : "5000", ...r(3));
      if (quick) common.push("--idle-hold", "1");
      else {
        // The median of 30 s idle: a process gives its unused heap back
        // after 10 s idle (HeapTrim), as it does once per idle spell.
        common.push("--idle-hold", "30");
        // The senders connect to a relay that has run idle for SETTLE_SECONDS,
        // as they find one that runs for days: its workers the load does not
        // need have retired (--workers-idle).
        polymur.push("--settle", String(SETTLE_SECONDS));
      }
      break;
  }
  if (waitQuiet !== undefined) common.push("--wait-quiet", String(waitQuiet));
  if (opts["rb-args"]) common.push(...splitWords(opts["rb-args"]));
  return {
    common,
    runs: [
      { relay: "polymur", tag: "polymur", args: polymur, finalStats: null },
      { relay: "carbon-c-relay", tag: "carbon-c-relay", args: ccr, finalStats: null },
    ],
    checkHash: s === "hash-check",
  };
}

/** Splits "--a 1 --b 'x y'" into words (single and double quotes, no escapes). */
function splitWords(s: string): string[] {
  const words: string[] = [];
  for (const m of s.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

// ---------------------------------------------------------------------------
// preparation: relaybench copy, tools, build

function locateRelaybench(): string {
  const env = process.env["RELAYBENCH_DIR"];
  const dir = env ? path.resolve(env) : path.resolve(REPO, "../shared/bench");
  if (RELAYBENCH_FILES.every((f) => fs.existsSync(path.join(dir, f)))) return dir;
  return die(
    `relaybench not found: looked for ${RELAYBENCH_FILES.join(", ")} in ${dir}.\n` +
      "  It lives next to the repo (<repo>/../shared/bench); set RELAYBENCH_DIR=/path/to/bench " +
      "to use another copy.",
  );
}

/** Copies relaybench, gen.c and sink.c into .cache/relaybench when they differ. */
function installRelaybench(src: string): string {
  fs.mkdirSync(CACHE, { recursive: true });
  for (const f of RELAYBENCH_FILES) {
    const from = path.join(src, f);
    const to = path.join(CACHE, f);
    const data = fs.readFileSync(from);
    if (!fs.existsSync(to) || !fs.readFileSync(to).equals(data)) {
      fs.rmSync(to, { force: true }); // the previous copy may be read-only
      fs.writeFileSync(to, data);
    }
    // the source is read-only for us; the copy must be writable (and relaybench runnable)
    fs.chmodSync(to, f === "relaybench" ? 0o755 : 0o644);
  }
  return path.join(CACHE, "relaybench");
}

function requireTool(cmd: string, args: string[], why: string): string {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  if (r.error || r.status !== 0)
    die(`${cmd} is needed (${why}) but \`${cmd} ${args.join(" ")}\` failed`);
  return `${r.stdout}${r.stderr}`.trim().split("\n")[0] ?? "";
}

function newestMtime(dir: string): number {
  let newest = 0;
  if (!fs.existsSync(dir)) return 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name.endsWith(".ts")) {
      newest = Math.max(newest, fs.statSync(path.join(e.parentPath, e.name)).mtimeMs);
    }
  }
  return newest;
}

/** `npm run build` when a source (see tsconfig.build.json) is newer than dist/. */
function buildIfStale(): void {
  if (!relays.includes("polymur")) return;
  const entry = path.join(REPO, "dist/cli/polymur/main.js");
  const built = fs.existsSync(entry) ? fs.statSync(entry).mtimeMs : 0;
  const sources = ["dataplane", "controlplane", "cli", "common", "gen"].map((d) =>
    path.join(REPO, d),
  );
  const newest = Math.max(
    ...sources.map(newestMtime),
    ...["tsconfig.json", "tsconfig.build.json"].map((f) => fs.statSync(path.join(REPO, f)).mtimeMs),
  );
  if (built >= newest) return;
  if (opts["no-build"]) {
    console.error("bench: warning: dist/ is older than the sources (--no-build given)");
    return;
  }
  console.error("bench: dist/ is older than the sources: npm run build");
  const r = spawnSync("npm", ["run", "build", "--silent"], { cwd: REPO, stdio: "inherit" });
  if (r.status !== 0)
    die("npm run build failed; fix the build, or use --no-build to run dist/ as it is");
}

function gitState(): { commit: string; dirty: boolean } {
  const git = (...args: string[]) =>
    spawnSync("git", args, { cwd: REPO, encoding: "utf8" }).stdout?.trim() ?? "";
  return { commit: git("rev-parse", "HEAD"), dirty: git("status", "--porcelain", "-uno") !== "" };
}

// ---------------------------------------------------------------------------
// running relaybench

let interrupted = false;
let child: ChildProcess | null = null;
/** disk-replay is running: its gen and sink got the SIGINT too, and it stops its relay. */
let replaying = false;
process.on("SIGINT", () => {
  // the terminal sent SIGINT to relaybench too: let it stop its relay, sink and gen
  interrupted = true;
  if (child === null && !replaying) process.exit(130);
});

function relaybench(rb: string, args: string[]): Promise<number> {
  return new Promise((resolve) => {
    child = spawn(PYTHON, [rb, ...args], { cwd: REPO, stdio: "inherit" });
    child.on("error", (err) => {
      console.error(`bench: cannot run ${PYTHON}: ${err.message}`);
      resolve(127);
    });
    child.on("exit", (code, signal) => {
      child = null;
      resolve(code ?? (signal === "SIGINT" ? 130 : 1));
    });
  });
}

function readJsonLines(file: string): Record<string, unknown>[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

interface HashRun {
  label: string;
  perPort: number[];
  digests: string[];
  multiPort: number;
  lost: number;
}

/** Compares the relays' per-destination name-set digests; returns true when all agree. */
/**
 * Results are committed: this machine's paths (the checkout, the temporary
 * work directories) become $REPO and $TMPDIR, as in relaybench's baseline files.
 */
function portablePaths(text: string): string {
  const tmp = os.tmpdir();
  return text.split(REPO).join("$REPO").split(`${tmp}/`).join("$TMPDIR/");
}

function reportHashCheck(runs: Map<RelayName, HashRun>, resultsFile: string): boolean {
  console.log("\nhash-check (carbon_ch, 3 destinations, 100000 names, seed 1): d1=a d2=b d3=c");
  const eq = (a: unknown[], b: unknown[]) => JSON.stringify(a) === JSON.stringify(b);
  for (const [name, r] of runs) {
    const ref = eq(r.digests, REFERENCE_HASH.digests)
      ? "= relaybench README"
      : "!= relaybench README";
    console.log(
      `  ${name.padEnd(15)} lines ${JSON.stringify(r.perPort)}  digests ${r.digests.join(",")}` +
        `  (${ref}; names on >1 port: ${r.multiPort}, lost ${r.lost})`,
    );
  }
  const p = runs.get("polymur");
  const c = runs.get("carbon-c-relay");
  let same: boolean | null = null;
  if (p && c) {
    same = eq(p.digests, c.digests) && eq(p.perPort, c.perPort) && p.multiPort === 0;
    console.log(
      `  polymur per-destination digests ${same ? "EQUAL" : "DIFFER FROM"} carbon-c-relay's` +
        (same ? "" : " <-- polymur does not route like carbon-c-relay's carbon_ch"),
    );
  } else {
    console.log("  (only one relay ran: compared with relaybench's README only)");
  }
  const record = {
    type: "hash_check",
    equal: same,
    reference: REFERENCE_HASH,
    relays: Object.fromEntries(runs),
  };
  fs.appendFileSync(resultsFile, `${JSON.stringify(record)}\n`);
  const lone = p ?? c;
  return same ?? (lone !== undefined && eq(lone.digests, REFERENCE_HASH.digests));
}

/** A results path as shown: relative to the checkout when inside it. */
function shownPath(file: string): string {
  return file.startsWith(REPO + path.sep) ? path.relative(REPO, file) : file;
}

/** A driver's own results file (disk-replay, wire-in): appended to the scenario's, and reported. */
function keepResults(s: Scenario, tmp: string, resultsFile: string, reportFiles: string[]): void {
  if (fs.existsSync(tmp)) {
    fs.appendFileSync(resultsFile, portablePaths(fs.readFileSync(tmp, "utf8")));
    reportFiles.push(tmp);
  }
  console.error(`bench: ${s}: results appended to ${shownPath(resultsFile)}`);
}

async function main(): Promise<number> {
  const rb = installRelaybench(locateRelaybench());
  requireTool(PYTHON, ["--version"], "relaybench is a Python 3 script");
  requireTool(process.env["CC"] ?? "gcc", ["--version"], "relaybench compiles gen.c and sink.c");
  let ccrVersion = "";
  if (relays.includes("carbon-c-relay")) {
    ccrVersion = requireTool("carbon-c-relay", ["-v"], "the reference relay");
  }
  if (relays.includes("polymur") && !fs.existsSync(NODE)) {
    die(`${NODE} not found: run npm ci (polymur needs Node 24 from devDependencies)`);
  }
  buildIfStale();
  if ((await relaybench(rb, ["build"])) !== 0) die("relaybench could not build gen and sink");

  fs.mkdirSync(outDir, { recursive: true });
  const runDir = path.join(CACHE, "runs");
  fs.mkdirSync(runDir, { recursive: true });
  const now = new Date();
  const date = now.toISOString().slice(0, 10);
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
  const rbHash = createHash("sha256").update(fs.readFileSync(rb)).digest("hex").slice(0, 16);
  const reportFiles: string[] = [];
  const diskRecords: DiskStatsRecord[] = [];
  let failures = 0;

  for (const s of scenarios) {
    if (s === "disk-replay" && !relays.includes("polymur")) {
      console.error("bench: disk-replay runs polymur only (no disk queue elsewhere): skipped");
      continue;
    }
    const resultsFile = path.join(outDir, `${s}-${date}.jsonl`);
    const meta = {
      type: "meta",
      scenario: s,
      time: now.toISOString(),
      quick,
      git: gitState(),
      node: spawnSync(NODE, ["--version"], { encoding: "utf8" }).stdout?.trim(),
      carbon_c_relay: ccrVersion || null,
      relaybench_sha256: rbHash,
      cpus: os.availableParallelism(),
      loadavg: os.loadavg(),
      argv: process.argv.slice(2),
    };
    fs.appendFileSync(resultsFile, `${JSON.stringify(meta)}\n`);
    if (s === "disk-replay") {
      const tmp = path.join(runDir, `${stamp}-${s}-polymur.jsonl`);
      console.error(`\n=== ${s}: polymur --queue-dir`);
      replaying = true;
      failures += await runDiskReplay({
        node: NODE,
        repo: REPO,
        gen: path.join(CACHE, "build/gen"),
        sink: path.join(CACHE, "build/sink"),
        lines: lines ?? (quick ? 500_000 : 20_000_000),
        reps: reps ?? (quick ? 1 : 3),
        conns: 50,
        names: 100_000,
        workers,
        polymurArgs: splitWords(opts["polymur-args"]),
        label: `polymur -w${polymurWorkers} queue-dir replay${labelSuffix}`,
        diskDir,
        json: tmp,
        stopped: () => interrupted,
      });
      replaying = false;
      keepResults(s, tmp, resultsFile, reportFiles);
      if (interrupted) break;
      continue;
    }
    if (s === "wire-in") {
      const tmp = path.join(runDir, `${stamp}-${s}.jsonl`);
      console.error(`\n=== ${s}`);
      replaying = true; // its sender and sink got the SIGINT too; it stops its relay
      failures += await runWireIn({
        node: NODE,
        repo: REPO,
        gen: path.join(CACHE, "build/gen"),
        sink: path.join(CACHE, "build/sink"),
        python: PYTHON,
        lines: lines ?? (quick ? 200_000 : 5_000_000),
        rate: 100_000,
        rateLines: quick ? 100_000 : 1_000_000,
        reps: reps ?? (quick ? 1 : 3),
        conns: 50,
        names: 100_000,
        warmup: warmup ?? (quick ? 20_000 : 200_000),
        workers,
        shownWorkers: polymurWorkers,
        polymurArgs: splitWords(opts["polymur-args"]),
        ccrWorkers: ccrWorkers ?? 2,
        ccrArgs: splitWords(opts["ccr-args"]),
        relays,
        labelSuffix,
        waitQuiet: waitQuiet ?? 0,
        tmpDir: os.tmpdir(),
        json: tmp,
        stopped: () => interrupted,
      });
      replaying = false;
      keepResults(s, tmp, resultsFile, reportFiles);
      if (interrupted) break;
      continue;
    }
    const p = plan(s);
    const hashRuns = new Map<RelayName, HashRun>();
    for (const { relay, tag, args: relayArgs, finalStats } of p.runs) {
      if (interrupted) break;
      if (!relays.includes(relay)) continue;
      const tmp = path.join(runDir, `${stamp}-${s}-${tag}.jsonl`);
      const args = [...p.common, ...relayArgs, "--json", tmp];
      // relaybench removes its work directories unless given one: this keeps the relay's
      // last /stats (and the queue directory) until read
      const workdir =
        finalStats === null ? null : fs.mkdtempSync(path.join(diskDir, `polymur-${s}-`));
      if (workdir !== null) args.push("--workdir", workdir);
      console.error(`\n=== ${s}: ${tag}\nbench: relaybench ${args.map(shq).join(" ")}`);
      const code = await relaybench(rb, args);
      const records = readJsonLines(tmp);
      if (workdir !== null) {
        const runs = records.filter((r) => r["type"] === "run");
        const disk = diskStatsRecords(s, runs, workdir, finalStats === "dead");
        diskRecords.push(...disk);
        fs.rmSync(workdir, { recursive: true, force: true });
        if (disk.length > 0)
          fs.appendFileSync(tmp, disk.map((r) => `${JSON.stringify(r)}\n`).join(""));
        for (const r of disk.filter((d) => !d.lossless_live || d.lossless_dead === false)) {
          if (tag !== "polymur-queue-dir" && r.lossless_live) continue; // memory only: expected
          console.error(`bench: ${s}: ${r.label} rep ${r.rep} was not lossless (see the table)`);
        }
      }
      if (records.length > 0) {
        fs.appendFileSync(resultsFile, portablePaths(fs.readFileSync(tmp, "utf8")));
        reportFiles.push(tmp);
      }
      if (code !== 0) {
        failures++;
        console.error(`bench: relaybench failed for ${tag} in ${s} (exit ${code})`);
        continue;
      }
      const run = records.find((r) => r["type"] === "run");
      if (p.checkHash && run) {
        hashRuns.set(relay, {
          label: String(run["label"]),
          perPort: run["per_port"] as number[],
          digests: run["digest_per_port"] as string[],
          multiPort: run["multi_port_names"] as number,
          lost: run["lost"] as number,
        });
      }
    }
    if (p.checkHash && hashRuns.size > 0 && !reportHashCheck(hashRuns, resultsFile)) failures++;
    console.error(`bench: ${s}: results appended to ${shownPath(resultsFile)}`);
    if (interrupted) break;
  }

  if (reportFiles.length > 0) {
    console.log(`\n=== report (${scenarios.join(", ")}${quick ? ", --quick" : ""})`);
    await relaybench(rb, ["report", ...reportFiles]);
  }
  if (diskRecords.length > 0) {
    console.log(
      "\n=== polymur's last /stats (disk-spill: the last destination was down for the whole run;" +
        " 'on disk at end': its segment bytes when the live sink had every line, of their final" +
        " size; 'spill lag': how long they grew after that)",
    );
    printDiskStats(diskRecords);
  }
  if (interrupted) return 130;
  return failures > 0 ? 1 : 0;
}

process.exitCode = await main();
