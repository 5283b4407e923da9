import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type AddResult,
  type AggregateSpec,
  Aggregator,
} from "../../dataplane/route/rules/aggregator.ts";
import { freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { waitFor } from "../fixtures/until.ts";

// The live carbon-c-relay 3.7.3 aggregates points; the same points go through
// polymur's Aggregator; every produced value and timestamp must agree.
//
// Timing. carbon-c-relay reads the time when it takes a point (`now`, at
// least our T, at most T + SLACK) and draws each series' splay p (0 … every-1)
// at random. It takes a point when its bucket is among ceil(expire/every) + 2
// from the oldest bucket not yet due, and writes a bucket S once now > S +
// expire + p. So a bucket S is safe, whatever p and `now` in [T, T + SLACK]:
// complete before it can be written when S + expire >= T + SLACK, and within
// the window when its last second is below the smallest upper bound. Only
// safe buckets get points: nothing depends on where in a second the test runs.

const SLACK = 2;

const COMPUTES: AggregateSpec["computes"] = [
  { type: "sum", percentile: null },
  { type: "count", percentile: null },
  { type: "max", percentile: null },
  { type: "min", percentile: null },
  { type: "average", percentile: null },
  { type: "median", percentile: null },
  { type: "percentile", percentile: 25 },
  { type: "percentile", percentile: 75 },
  { type: "percentile", percentile: 99 },
  { type: "variance", percentile: null },
  { type: "stddev", percentile: null },
];

const RULES: AggregateSpec[] = [
  { every: 1, expire: 3, timestamp: "start", computes: COMPUTES },
  { every: 1, expire: 3, timestamp: "middle", computes: COMPUTES }, // start + 0
  { every: 2, expire: 3, timestamp: "middle", computes: COMPUTES }, // start + 1
  { every: 2, expire: 3, timestamp: "end", computes: COMPUTES },
];

/** How many points each series gets per bucket (several series, one-value buckets among them). */
const SERIES: Record<string, number> = {
  one: 1,
  two: 2,
  four: 4,
  seven: 7,
  neg: 3,
  dec: 5,
  many: 12,
};

function computeText(c: AggregateSpec["computes"][number]): string {
  return c.type === "percentile" ? `percentile${c.percentile}` : c.type;
}

function relayConf(listenPort: number, sinkPort: number): string {
  const rules = RULES.map((r, i) =>
    [
      `aggregate ^r${i}\\.([a-z0-9]+)$`,
      `    every ${r.every} seconds expire after ${r.expire} seconds timestamp at ${r.timestamp} of bucket`,
      ...r.computes.map((c, j) => `    compute ${computeText(c)} write to r${i}.c${j}.\\1`),
      "    send to sink",
      "    ;",
    ].join("\n"),
  );
  return [
    `listen type linemode 127.0.0.1:${listenPort} proto tcp ;`,
    "statistics submit every 900 seconds ;",
    `cluster sink forward 127.0.0.1:${sinkPort} ;`,
    ...rules,
    "",
  ].join("\n");
}

const ceilTo = (x: number, m: number): number => Math.ceil(x / m) * m;

/** Bucket starts of `r` that are safe for any splay and any `now` in [t, t + SLACK]. */
function safeBuckets(r: AggregateSpec, t: number): number[] {
  const windowSec = (Math.ceil(r.expire / r.every) + 2) * r.every;
  const upper = ceilTo(t - r.expire - (r.every - 1), r.every) + windowSec; // smallest upper bound
  const starts: number[] = [];
  for (let s = ceilTo(t + SLACK - r.expire, r.every); s + r.every <= upper; s += r.every) {
    starts.push(s);
  }
  return starts;
}

/** A seeded generator (LCG): the same values in every run. */
function generator(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x / 2 ** 32;
  };
}

const FRACTIONS = [0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 0.0078125, 0.0234375, 1 / 3, 0.999];

/**
 * n values, at least 1 apart (carbon-c-relay's sort comparator truncates
 * differences to integers, so closer values would sort in no defined order),
 * with decimals, negative when `negative`.
 */
function values(rand: () => number, n: number, negative: boolean): number[] {
  const ints = Array.from({ length: 41 }, (_, i) => (negative ? -2 * i - 1 : 2 * i - 40));
  for (let i = ints.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [ints[i], ints[j]] = [ints[j]!, ints[i]!];
  }
  return ints.slice(0, n).map((k) => k + FRACTIONS[Math.floor(rand() * FRACTIONS.length)]!);
}

interface Point {
  rule: number;
  series: string;
  value: number;
  timestamp: number;
  want: AddResult;
}

function points(t: number): Point[] {
  const rand = generator(20211109);
  const out: Point[] = [];
  RULES.forEach((r, rule) => {
    const buckets = safeBuckets(r, t);
    expect(buckets.length, `safe buckets of rule ${rule}`).toBeGreaterThanOrEqual(2);
    buckets.forEach((start, b) => {
      for (const [series, n] of Object.entries(SERIES)) {
        for (const value of values(rand, n, series === "neg")) {
          // Spread over the bucket's seconds.
          const timestamp = start + Math.floor(rand() * r.every);
          out.push({ rule, series, value, timestamp, want: "ok" });
        }
      }
      // A series with points in one bucket only.
      if (b === 0) out.push({ rule, series: "sparse", value: 12.5, timestamp: start, want: "ok" });
    });
    out.push({ rule, series: "old", value: 1, timestamp: t - 60, want: "too_old" });
    out.push({ rule, series: "ahead", value: 1, timestamp: t + 60, want: "too_new" });
  });
  // Sent in time order, the rules interleaved.
  return out.sort((a, b) => a.timestamp - b.timestamp || a.rule - b.rule);
}

/** polymur's output for `pts` taken at `now`: "name timestamp" → value. */
function polymur(pts: readonly Point[], now: number): Map<string, string> {
  const aggregators = RULES.map((r) => new Aggregator(r, { maxSeries: 10_000 }));
  for (const p of pts) {
    COMPUTES.forEach((_, c) => {
      const result = aggregators[p.rule]!.add(
        c,
        `r${p.rule}.c${c}.${p.series}`,
        p.value,
        p.timestamp,
        now,
      );
      expect([p.series, p.timestamp, now, result]).toEqual([p.series, p.timestamp, now, p.want]);
    });
  }
  const out = new Map<string, string>();
  for (const a of aggregators) {
    a.expire(now + 3600, (_c, name, value, timestamp) => {
      const key = `${name} ${timestamp}`;
      expect(out.has(key), key).toBe(false);
      out.set(key, value);
    });
    expect(a.openSeries).toBe(0);
  }
  return out;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Kills carbon-c-relay (nothing it still holds matters here) and waits for it to go. */
async function kill(relay: ChildProcess): Promise<void> {
  if (relay.exitCode !== null || relay.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => relay.once("exit", () => resolve()));
  relay.kill("SIGKILL");
  await exited;
}

describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
  "aggregation against carbon-c-relay 3.7.3",
  () => {
    it("writes the same values and timestamps for every compute and timestamp mode", async () => {
      const sink = await LineSink.start();
      const dir = await mkdtemp(join(tmpdir(), "polymur-aggregate-ccr-"));
      let relay: ChildProcess | undefined;
      let stderr = "";
      try {
        const port = await freePort();
        const conf = join(dir, "relay.conf");
        await writeFile(conf, relayConf(port, sink.port));
        relay = spawn(ccrBinary!, ["-f", conf, "-w", "1"], { stdio: ["ignore", "ignore", "pipe"] });
        relay.stderr!.on("data", (c: Buffer) => {
          stderr += c.toString();
        });
        await waitFor(
          "carbon-c-relay listening",
          async () => ((await canConnect(port)) ? true : undefined),
          20_000,
          50,
        );

        const t = Math.floor(Date.now() / 1000);
        const pts = points(t);
        await sendLines(
          port,
          pts.map((p) => `r${p.rule}.${p.series} ${p.value} ${p.timestamp}\n`).join(""),
        );

        const ours = polymur(pts, t);
        expect(polymur(pts, t + SLACK)).toEqual(ours);
        const produced = (line: string): boolean => /^r\d\.c\d+\./.test(line);
        await waitFor(
          `carbon-c-relay writing ${ours.size} aggregates`,
          () => (sink.lines.filter(produced).length >= ours.size ? true : undefined),
          60_000,
          50,
        ).catch((err: unknown) => {
          throw new Error(
            `${String(err)}; got ${sink.lines.filter(produced).length}; stderr: ${stderr}`,
          );
        });

        const theirs = new Map<string, string>();
        for (const line of sink.lines.filter(produced)) {
          const [name, value, timestamp] = line.split(" ");
          const key = `${name} ${timestamp}`;
          expect(theirs.has(key), key).toBe(false);
          theirs.set(key, value!);
        }
        expect(theirs.size).toBe(ours.size);
        expect(Object.fromEntries([...ours].sort())).toEqual(
          Object.fromEntries([...theirs].sort()),
        );
        // Every compute, rule and series was compared.
        const names = [...ours.keys()].map((k) => k.split(" ")[0]!);
        for (let r = 0; r < RULES.length; r++) {
          for (let c = 0; c < COMPUTES.length; c++) {
            for (const series of [...Object.keys(SERIES), "sparse"]) {
              expect(names, `r${r}.c${c}.${series}`).toContain(`r${r}.c${c}.${series}`);
            }
          }
        }
      } finally {
        if (relay !== undefined) await kill(relay);
        await sink.close();
        await rm(dir, { recursive: true, force: true });
      }
    }, 90_000);
  },
);
