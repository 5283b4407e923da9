/**
 * Microbenchmark of HashRouter.route(): ns per call over realistic Graphite names, for
 * each algorithm, with the name memo warm (20,000 names seen before, as a relay sees the
 * same series every interval) and cold (every name new). Each case runs in its own
 * process (a relay has one or two routers, so the JIT sees one kind), best of 5 runs.
 *
 *   node bench/hash.bench.ts [names=1000000]
 */
import { spawnSync } from "node:child_process";
import { parseDestinationList } from "../dataplane/forward/destination-spec.ts";
import {
  createHashRouter,
  type HashRouter,
  type HashRouterOptions,
} from "../dataplane/route/hash/hash-router.ts";

const count = Number(process.argv[2] ?? 1_000_000);
const only = process.argv[3];
const enc = new TextEncoder();

/** `count` distinct names (~45 bytes) packed into one buffer, as a receive buffer holds them. */
function makeNames(
  n: number,
  salt: string,
): { buf: Uint8Array; starts: Int32Array; ends: Int32Array } {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    const name = enc.encode(
      `servers.dc${i % 7}.host${(i * 7919) % 5003}.${salt}.cpu${i % 64}.user_${i}`,
    );
    parts.push(name);
    total += name.length + 1;
  }
  const buf = new Uint8Array(total);
  const starts = new Int32Array(n);
  const ends = new Int32Array(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    buf.set(parts[i]!, at);
    starts[i] = at;
    ends[i] = at + parts[i]!.length;
    at = ends[i]! + 1;
  }
  return { buf, starts, ends };
}

const members = parseDestinationList(
  "10.0.0.1:2003:a 10.0.0.2:2003:b 10.0.0.3:2003:c 10.0.0.4:2003:d 10.0.0.5:2003:e 10.0.0.6:2003:f",
);
const ccrMembers = parseDestinationList(
  "10.0.0.1:2003=a 10.0.0.2:2003=b 10.0.0.3:2003=c 10.0.0.4:2003=d 10.0.0.5:2003=e 10.0.0.6:2003=f",
);

interface Case {
  label: string;
  options: HashRouterOptions;
  ccr?: boolean;
}
const cases: Case[] = [
  { label: "carbon carbon_ch r=2", options: { algo: "carbon_ch", replication: 2 } },
  {
    label: "carbon carbon_ch r=2 memo",
    options: { algo: "carbon_ch", replication: 2, cacheSize: 65536 },
  },
  { label: "carbon fnv1a_ch r=2", options: { algo: "fnv1a_ch", replication: 2 } },
  { label: "carbon mmh3_ch r=2", options: { algo: "mmh3_ch", replication: 2 } },
  { label: "carbon fast-hashing mmh3 r=2", options: { router: "fast-hashing", replication: 2 } },
  {
    label: "carbon carbon_ch sorted-tags",
    options: { algo: "carbon_ch", normalize: "sorted-tags" },
  },
  {
    label: "ccr carbon_ch r=2",
    options: { compat: "carbon-c-relay", algo: "carbon_ch", replication: 2 },
    ccr: true,
  },
  {
    label: "ccr fnv1a_ch r=2",
    options: { compat: "carbon-c-relay", algo: "fnv1a_ch", replication: 2 },
    ccr: true,
  },
  {
    label: "ccr jump_fnv1a_ch r=2",
    options: { compat: "carbon-c-relay", algo: "jump_fnv1a_ch", replication: 2 },
    ccr: true,
  },
  {
    label: "ccr jump_fnv1a_ch r=2 (no memo)",
    options: { compat: "carbon-c-relay", algo: "jump_fnv1a_ch", replication: 2, cacheSize: 0 },
    ccr: true,
  },
  {
    label: "ccr carbon_ch cleanse",
    options: { compat: "carbon-c-relay", algo: "carbon_ch", normalize: "cleanse" },
    ccr: true,
  },
];

// A working set that fits the memo (warm), and one name stream that never repeats (cold).
const warm = makeNames(Math.min(count, 20_000), "warm");
const cold = makeNames(count, "cold");
const out = new Uint8Array(8);

function run(router: HashRouter, set: typeof warm, n: number): number {
  let sink = 0;
  const m = set.starts.length;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const j = i % m;
    sink += router.route(set.buf, set.starts[j]!, set.ends[j]!, out);
  }
  const ns = Number(process.hrtime.bigint() - t0);
  if (sink < 0) console.log(sink);
  return ns / n;
}

function measure(c: Case): [number, number] {
  const warmRouter = createHashRouter(c.ccr === true ? ccrMembers : members, c.options);
  // Fill the memo and warm up the JIT; past the memo's first judging window (a cold start
  // is all misses, so the memo sits out its first million names).
  run(warmRouter, warm, 1_200_000);
  let w = Number.POSITIVE_INFINITY;
  let k = Number.POSITIVE_INFINITY;
  for (let rep = 0; rep < 5; rep++) {
    w = Math.min(w, run(warmRouter, warm, count));
    // A fresh router per cold run, so its memo has never seen these names.
    const coldRouter = createHashRouter(c.ccr === true ? ccrMembers : members, c.options);
    k = Math.min(k, run(coldRouter, cold, count));
  }
  return [w, k];
}

if (only !== undefined) {
  const [w, k] = measure(cases[Number(only)]!);
  console.log(`${w} ${k}`);
} else {
  console.log(`route() over ${count} names (~45 bytes), ns per call, best of 5 (lower is better)`);
  console.log(`${"case".padEnd(32)} ${"warm".padStart(8)} ${"cold".padStart(8)}`);
  for (let i = 0; i < cases.length; i++) {
    const r = spawnSync(process.execPath, [process.argv[1]!, String(count), String(i)], {
      encoding: "utf8",
    });
    const [w, k] = r.stdout.trim().split(" ").map(Number) as [number, number];
    console.log(
      `${cases[i]!.label.padEnd(32)} ${w.toFixed(1).padStart(8)} ${k.toFixed(1).padStart(8)}`,
    );
  }
}
