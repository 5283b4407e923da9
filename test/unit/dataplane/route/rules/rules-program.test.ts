/**
 * The compiled rules (rules-program.ts): what each line does under a relay.conf.
 * Every expectation below is what `carbon-c-relay -t` (3.7.3) prints for the same
 * configuration and line; the last block checks that against the relay itself.
 * (test/integration/rules-ccr*.test.ts compare whole random configurations.)
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RulesError } from "../../../../../dataplane/route/rules/rules-config.ts";
import { parseRules } from "../../../../../dataplane/route/rules/rules-parser.ts";
import {
  RulesProgram,
  type RulesVisitor,
  targetText,
} from "../../../../../dataplane/route/rules/rules-program.ts";
import { ccrTrace, type RouteDecision, sameDecision } from "../../../../fixtures/ccr-trace.ts";
import { ccrBinary } from "../../../../fixtures/references.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";

/** What a line did, in the shape `polymurctl route test --json` prints. */
class Decision implements RulesVisitor {
  readonly program: RulesProgram;
  readonly down: ReadonlySet<string>;
  sends: { cluster: string; destination: string; metric: string }[] = [];
  blackholed = false;
  aggregates: { cluster: string | null; metric: string }[] = [];
  computes: [number, number, string][] = [];
  dropped: "validate" | null = null;

  constructor(program: RulesProgram, down: readonly string[] = []) {
    this.program = program;
    this.down = new Set(down);
  }
  send(cluster: string, target: number, metric: string): void {
    this.sends.push({ cluster, destination: targetText(this.program.targets[target]!), metric });
  }
  blackhole(): void {
    this.blackholed = true;
  }
  aggregate(aggregate: number, compute: number, metric: string): void {
    this.computes.push([aggregate, compute, metric]);
    const to = this.program.aggregates[aggregate]!.sendTo;
    if (to === null) this.aggregates.push({ cluster: null, metric });
    else if (!to.blackhole)
      for (const cluster of to.clusters) this.aggregates.push({ cluster, metric });
  }
  drop(reason: "validate"): void {
    this.dropped = reason;
  }
  up(target: number): boolean {
    return !this.down.has(targetText(this.program.targets[target]!));
  }
  result(line: string): RouteDecision {
    const { sends, blackholed, aggregates, dropped } = this;
    return { line, sends, blackholed, aggregates, dropped };
  }
}

function compile(text: string): RulesProgram {
  return RulesProgram.compile(parseRules(text, "relay.conf"));
}

/** The decision for `line` (`name value timestamp`, single spaces). */
function decide(program: RulesProgram, line: string, down: readonly string[] = []): RouteDecision {
  const sp = line.indexOf(" ");
  const d = new Decision(program, down);
  program.route(line.slice(0, sp), line.slice(sp), d);
  return d.result(line);
}

/** Just where each line went: `cluster destination metric` per send, and markers. */
function summary(program: RulesProgram, line: string): string[] {
  const d = decide(program, line);
  return [
    ...d.sends.map((s) => `${s.cluster} ${s.destination} ${s.metric}`),
    ...d.aggregates.map((a) => `aggregate ${a.cluster ?? "-"} ${a.metric}`),
    ...(d.blackholed ? ["blackholed"] : []),
    ...(d.dropped === null ? [] : [`dropped ${d.dropped}`]),
  ];
}

/** The cases checked here and against carbon-c-relay: config, and line → summary. */
const CASES: { name: string; config: string; expect: Record<string, string[]> }[] = [
  {
    name: "each expression is a rule; stop ends at the first match that has it",
    config: `cluster a forward 127.0.0.1:2001 ;
cluster b forward 127.0.0.1:2002 ;
match ^web cpu send to a ;
match ^web mem send to b stop ;
match * send to a ;`,
    expect: {
      "web.cpu 1 2": [
        "a 127.0.0.1:2001 web.cpu",
        "a 127.0.0.1:2001 web.cpu",
        "b 127.0.0.1:2002 web.cpu",
      ],
      "db.load 1 2": ["a 127.0.0.1:2001 db.load"],
      "web.mem 1 2": ["a 127.0.0.1:2001 web.mem", "b 127.0.0.1:2002 web.mem"],
      "x.mem 1 2": ["b 127.0.0.1:2002 x.mem"],
    },
  },
  {
    name: "validate: skips the send to; stops with stop or without send to",
    config: `cluster a forward 127.0.0.1:2001 ;
cluster b forward 127.0.0.1:2002 ;
match ^v1 validate ^[0-9]+ else drop send to a ;
match ^v2 validate ^[0-9]+ else log send to a stop ;
match ^v3 validate "^[0-9.]+ [0-9]+$" else drop ;
match * send to b ;`,
    expect: {
      "v1.x 1 2": ["a 127.0.0.1:2001 v1.x", "b 127.0.0.1:2002 v1.x"],
      "v1.x abc 2": ["b 127.0.0.1:2002 v1.x"],
      "v2.x 7 2": ["a 127.0.0.1:2001 v2.x"],
      "v2.x -7 2": ["dropped validate"],
      "v3.x 1.5 2": ["b 127.0.0.1:2002 v3.x"],
      "v3.x 1.5 2.5": ["dropped validate"],
    },
  },
  {
    name: "blackhole always stops, and can follow real sends",
    config: `cluster a forward 127.0.0.1:2001 ;
match ^keep send to a ;
match ^drop other send to blackhole ;
match * send to a ;`,
    expect: {
      "keep.x 1 2": ["a 127.0.0.1:2001 keep.x", "a 127.0.0.1:2001 keep.x"],
      "keep.other 1 2": ["a 127.0.0.1:2001 keep.other", "blackholed"],
      "drop.x 1 2": ["blackholed"],
    },
  },
  {
    name: "rewrite renames for the rules after it, keeping the name outside the match",
    config: `cluster a forward 127.0.0.1:2001 ;
match ^pre send to a ;
rewrite ^low\\.([A-Za-z]+)\\. into \\_1_ ;
rewrite (cpu)([0-9]) into \\2\\1 ;
rewrite ^chain\\.(.*) into chained.\\1 ;
rewrite ^chained\\.(.*) into twice.\\1 ;
rewrite ^lit into LIT ;
match * send to a ;`,
    expect: {
      "low.MiXed.rest 1 2": ["a 127.0.0.1:2001 mixed_rest"],
      "host.cpu0.idle 1 2": ["a 127.0.0.1:2001 host.0cpu.idle"],
      "chain.a.b 1 2": ["a 127.0.0.1:2001 twice.a.b"],
      "literal.x 1 2": ["a 127.0.0.1:2001 LITeral.x"],
      "pre.cpu1 1 2": ["a 127.0.0.1:2001 pre.cpu1", "a 127.0.0.1:2001 pre.1cpu"],
    },
  },
  {
    name: "route using sets the hash key of the match's hash clusters only",
    config: `cluster h carbon_ch replication 2 127.0.1.1:2003 127.0.1.2:2003 127.0.1.3:2003 127.0.1.4:2003 ;
cluster f forward 127.0.0.1:2005 ;
match ^(web|db)\\.([a-z0-9]+)\\.(.*)$ route using \\1.\\2 send to h f stop ;
match * send to h ;`,
    expect: {},
  },
  {
    name: "aggregates: per compute and expression, no groups = the template, stop",
    config: `cluster a forward 127.0.0.1:2001 ;
aggregate ^sys\\.([a-z]+)\\.cpu ^sys\\.(web)\\.
  every 10 seconds expire after 20 seconds
  compute sum write to agg.\\1.sum
  compute max write to agg.\\_1.max
  send to a ;
aggregate ^all\\.
  every 10 seconds expire after 20 seconds
  compute count write to all.count
  send to a
  stop ;
aggregate ^cnt\\.
  every 10 seconds expire after 20 seconds
  compute count write to cnt.total ;
match * send to a ;`,
    expect: {
      "sys.web.cpu 1 2": [
        "a 127.0.0.1:2001 sys.web.cpu",
        "aggregate a agg.web.sum",
        "aggregate a agg.web.max",
        "aggregate a agg.web.sumcpu",
        "aggregate a agg.web.maxcpu",
      ],
      "sys.DB.cpu 1 2": ["a 127.0.0.1:2001 sys.DB.cpu"],
      "all.x 1 2": ["aggregate a all.count"],
      "cnt.x 1 2": ["a 127.0.0.1:2001 cnt.x", "aggregate - cnt.total"],
    },
  },
  {
    name: "string comparisons: contains, prefix, suffix, whole name",
    config: `cluster a forward 127.0.0.1:2001 ;
cluster b forward 127.0.0.1:2002 ;
cluster c forward 127.0.0.1:2003 ;
cluster d forward 127.0.0.1:2004 ;
match cpu send to a ;
match ^web send to b ;
match load$ send to c ;
match ^exact$ send to d ;`,
    expect: {
      "x.cpu.y 1 2": ["a 127.0.0.1:2001 x.cpu.y"],
      "web.load 1 2": ["b 127.0.0.1:2002 web.load", "c 127.0.0.1:2003 web.load"],
      "exact 1 2": ["d 127.0.0.1:2004 exact"],
      "exactly 1 2": [],
    },
  },
];

describe("RulesProgram", () => {
  for (const c of CASES) {
    it(c.name, () => {
      const program = compile(c.config);
      for (const [line, want] of Object.entries(c.expect))
        expect(summary(program, line)).toEqual(want);
    });
  }

  it("route using: the key is hashed, the name is sent", () => {
    const program = compile(CASES[4]!.config);
    const a = decide(program, "web.host1.cpu 1 2");
    const b = decide(program, "web.host1.mem 1 2");
    expect(a.sends.map((s) => s.destination)).toEqual(b.sends.map((s) => s.destination));
    expect(a.sends.map((s) => s.metric)).toEqual(Array(3).fill("web.host1.cpu"));
    expect(a.sends.map((s) => s.cluster)).toEqual(["h", "h", "f"]);
  });

  it("route using after validate hashes the match's groups (carbon-c-relay: the validate's)", () => {
    const program = compile(`cluster h carbon_ch 127.0.1.1:2003 127.0.1.2:2003 127.0.1.3:2003 ;
match ^cache\\.([0-9]+)\\.(tx)$ validate "^[0-9.]+ [0-9]+$" else drop route using \\^2 send to h stop ;
match ^(x)$ route using TX send to h ;`);
    const key = decide(program, "x 1 2").sends[0]!.destination;
    for (const value of ["1.5", "0.000001", "123456789.123456789"]) {
      expect(decide(program, `cache.166.tx ${value} 1700000006`).sends).toEqual([
        { cluster: "h", destination: key, metric: "cache.166.tx" },
      ]);
    }
  });

  it("a match without send to ignores stop", () => {
    const program = compile(`cluster a forward 127.0.0.1:2001 ;
match ^x validate ^[0-9] else drop stop ;
match * send to a ;`);
    expect(summary(program, "x.y 1 2")).toEqual(["a 127.0.0.1:2001 x.y"]);
  });

  it("validate matches the value and timestamp, blanks collapsed", () => {
    const program = compile(`cluster a forward 127.0.0.1:2001 ;
match * validate "^[0-9]+ [0-9]+$" else drop send to a ;`);
    const d = new Decision(program);
    program.route("x", " \t1  \t 2", d);
    expect(d.sends).toHaveLength(1);
  });

  it("reports aggregate and compute indices", () => {
    const program = compile(CASES[5]!.config);
    const d = new Decision(program);
    program.route("sys.db.cpu", " 1 2", d);
    expect(d.computes).toEqual([
      [0, 0, "agg.db.sum"],
      [0, 1, "agg.db.max"],
    ]);
    expect(program.aggregates).toHaveLength(3);
  });

  it("routes an aggregate's output to its send to, or through the rules when it has none", () => {
    const program = compile(CASES[5]!.config);
    const to = new Decision(program);
    program.routeProduced(0, "agg.web.sum", " 3 10", to);
    expect(to.sends).toEqual([
      { cluster: "a", destination: "127.0.0.1:2001", metric: "agg.web.sum" },
    ]);
    const rules = new Decision(program);
    program.routeProduced(2, "cnt.total", " 3 10", rules);
    // cnt.total matches ^cnt\. again: it is aggregated (once: no loop), and sent by match *.
    expect(rules.computes).toEqual([[2, 0, "cnt.total"]]);
    expect(rules.sends).toEqual([
      { cluster: "a", destination: "127.0.0.1:2001", metric: "cnt.total" },
    ]);
  });

  it("keeps the name object when nothing renames it", () => {
    const program = compile(CASES[0]!.config);
    const name = ["db", "load"].join(".");
    let seen: string | null = null;
    const v = new Decision(program);
    v.send = (_c, _t, metric) => {
      seen = metric;
    };
    program.route(name, " 1 2", v);
    expect(seen).toBe(name);
  });

  it("fails over within failover and any_of clusters by the visitor's up()", () => {
    const program = compile(`cluster fo failover 127.0.0.1:2001 127.0.0.1:2002 ;
cluster any any_of 127.0.0.1:2003 127.0.0.1:2004 ;
match * send to fo any ;`);
    const d = decide(program, "n 1 2", ["127.0.0.1:2001", "127.0.0.1:2003", "127.0.0.1:2004"]);
    expect(d.sends.map((s) => s.destination)).toEqual(["127.0.0.1:2002", expect.any(String)]);
  });

  it("numbers one target per server, file paths after", () => {
    const program = compile(`cluster a forward 127.0.0.1:2001 127.0.0.1:2002 ;
cluster f file /tmp/polymur-rules-program-test.log ;
cluster b carbon_ch 127.0.0.1:2002 127.0.0.1:2003 ;
match * send to a f b ;`);
    expect(program.targets.map(targetText)).toEqual([
      "127.0.0.1:2001",
      "127.0.0.1:2002",
      "127.0.0.1:2003",
      "/tmp/polymur-rules-program-test.log",
    ]);
  });

  it("throws RulesError at the expression for a bad regular expression", () => {
    const text = "cluster a forward 127.0.0.1:2001 ;\nmatch ^a(b send to a ;\n";
    let err: unknown;
    try {
      compile(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RulesError);
    expect((err as RulesError).pos.line).toBe(2);
    expect((err as RulesError).message).toMatch(/^relay\.conf:2:\d+: .*\^a\(b/);
  });
});

describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
  "RulesProgram against carbon-c-relay -t",
  () => {
    it("decides every case above as carbon-c-relay does", () => {
      const dir = mkdtempSync(join(tmpdir(), "polymur-rules-program-"));
      try {
        const extra: Record<string, string[]> = {
          "route using sets the hash key of the match's hash clusters only": [
            "web.host1.cpu 1 2",
            "web.host1.mem 1 2",
            "db.h2.x 1 2",
            "other.x 1 2",
          ],
        };
        for (const [i, c] of CASES.entries()) {
          const path = join(dir, `case${i}.conf`);
          writeFileSync(path, `${c.config}\n`);
          const lines = [...Object.keys(c.expect), ...(extra[c.name] ?? [])];
          const want = ccrTrace(path, lines);
          const program = compile(c.config);
          lines.forEach((line, j) => {
            const got = decide(program, line);
            expect(
              sameDecision(got, want[j]!),
              `${c.name}: ${line}\n${JSON.stringify(want[j])}\n${JSON.stringify(got)}`,
            ).toBe(true);
          });
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
