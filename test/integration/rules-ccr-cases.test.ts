/**
 * One hand-written relay.conf per feature of carbon-c-relay 3.7.3's routing,
 * with lines that hit and miss it: `polymurctl route test --json` must decide
 * every line as `carbon-c-relay -t` does (rules-ccr-compare.ts). The expected
 * decisions are carbon-c-relay's own; the comments say what it does.
 *
 * The last block pins a deliberate difference: polymur refuses back-references.
 *
 * Not covered, because carbon-c-relay is broken there (relay-conf.md, "Bugs not to
 * copy"): rewrite and route using on expressions without groups, aggregates with
 * send to whose expression matches after position 0, the optimiser (-t runs
 * with it off), and a match with neither send to nor validate (it crashes).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ccrTrace } from "../fixtures/ccr-trace.ts";
import { metricNames } from "../fixtures/names.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { expectSameAsCcr, polymurRouteTest } from "../fixtures/rules-ccr-compare.ts";

const withoutCcr = skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined);

interface FeatureCase {
  name: string;
  /** relay.conf, given the directory for file clusters. */
  config: (files: string) => string;
  /** Metric names, or whole lines when they have a space. */
  lines: readonly string[];
}

/** Names that stress hashing (UTF-8, tags, long ones), without blanks and control characters. */
const VARIED = metricNames(60, 11).filter(
  (n) => /^[\x21-\x7e\u00a1-\uffff]+$/u.test(n) && Buffer.byteLength(n) <= 1200,
);

const CASES: readonly FeatureCase[] = [
  {
    name: "every cluster type, members chosen by name",
    config: (files) => `
cluster fw forward 127.0.1.1:2003 127.0.1.2:2004 ;
cluster any any_of 127.0.1.3:2003 127.0.1.4:2003 127.0.1.5:2003 ;
cluster fo failover 127.0.1.6:2003 127.0.1.7:2003 ;
cluster ch carbon_ch replication 2 127.0.1.8:2003=a 127.0.1.9:2003=b 127.0.1.10:2003 ;
cluster fnv fnv1a_ch 127.0.1.11:2003 127.0.1.12:2003=x 127.0.1.13:2003 proto udp ;
cluster jmp jump_fnv1a_ch replication 2
    127.0.1.14:2003 127.0.1.15:2003=j2 127.0.1.16:2003 127.0.1.17:2003 ;
cluster fl file ${files}/a.log ;
cluster fip file ip ${files}/b.log ${files}/c.log ;
match * send to fw any fo ch fnv jmp fl fip ;
`,
    lines: VARIED,
  },
  {
    name: "several expressions are several rules; stop ends at the first that matches",
    config: () => `
cluster a forward 127.0.2.1:2003 ;
cluster b forward 127.0.2.2:2003 ;
match ^web cpu send to a ;
match ^web mem send to b stop ;
match * send to a a ;
`,
    lines: ["web.cpu", "db.cpu", "db.load", "web.mem", "x.mem", "webcpu.mem"],
  },
  {
    name: "validate: else log and else drop, with and without stop or send to",
    config: () => `
cluster a forward 127.0.3.1:2003 ;
cluster b forward 127.0.3.2:2003 ;
match ^v1 validate ^[0-9]+ else drop send to a ;
match ^v2 validate ^[0-9]+ else log send to a stop ;
match ^v3 validate "^[0-9.]+ [0-9]+$" else drop ;
match ^v4 validate ^[[:digit:]] else log stop ;
match * send to b ;
`,
    lines: [
      "v1.x 1 1700000000",
      "v1.x -1 1700000000",
      "v2.x 7 1700000000",
      "v2.x -7 1700000000",
      "v3.x 1.5 1700000000",
      "v3.x 1.5 1700000000.5",
      "v4.x 3 1700000000",
      "v4.x -3 1700000000",
    ],
  },
  {
    name: "blackhole stops, and a line can reach it beside real sends",
    config: () => `
cluster a forward 127.0.4.1:2003 ;
match ^keep send to a ;
match ^drop other send to blackhole ;
match * send to blackhole ;
match * send to a ;
`,
    lines: ["keep.x", "drop.x", "keep.other", "else"],
  },
  {
    name: "rewrite: references, case and dot transforms, chains",
    config: () => `
cluster a forward 127.0.5.1:2003 ;
rewrite ^low\\.([A-Za-z]+)\\.(.*)$ into \\_1.\\^2 ;
rewrite ^dots\\.([^.]+)\\.(.*)$ into \\1.\\.2 ;
rewrite ^ld\\.([^.]+)\\.(.*)$ into \\_.2.x ;
rewrite ^ud\\.([^.]+)\\.(.*)$ into \\^.2_\\1 ;
rewrite ^b2b\\.([A-Z]+)\\.([A-Z]+)$ into \\_1\\2 ;
rewrite ^lit\\.([a-z]+)\\.([a-z]+)$ into \\1\\_2 ;
rewrite ^zero\\.([a-z]+)$ into z\\0.\\1 ;
rewrite ^(t)(e)(n)(a)(b)(c)(d)(e)(f)(g)\\.x$ into \\10.\\1\\2 ;
rewrite "^quoted\\\\.([a-z]+)" into "q.\\\\^1" ;
rewrite ^chain\\.(.*) into chained.\\1 ;
rewrite ^chained\\.(.*) into twice.\\1 ;
rewrite (cpu)([0-9]) into \\2\\1 ;
match * send to a ;
`,
    lines: [
      "low.MiXed.Rest.Of.It",
      "dots.a.b.c.d",
      "ld.X.Ab.Cd",
      "ud.X.Ab.cd",
      "b2b.AB.CD",
      "lit.ab.cd",
      "zero.abc",
      "tenabcdefg.x",
      "quoted.abc.def",
      "quotedXabc",
      "chain.a.b",
      "host.cpu0.idle",
      "nothing.here",
    ],
  },
  {
    name: "route using picks the hash key, sends the name",
    config: () => `
cluster h carbon_ch replication 2 127.0.6.1:2003 127.0.6.2:2003 127.0.6.3:2003 127.0.6.4:2003 ;
cluster j jump_fnv1a_ch 127.0.6.5:2003 127.0.6.6:2003 127.0.6.7:2003 ;
cluster f forward 127.0.6.8:2003 ;
match ^(web|db)\\.([a-z0-9]+)\\. route using \\1.\\2 send to h j f stop ;
match ([a-z]+)\\.cpu route using \\_1 send to h ;
`,
    lines: [
      ...Array.from({ length: 12 }, (_, i) => `web.host${i}.cpu.${i % 3}`),
      ...Array.from({ length: 12 }, (_, i) => `db.host${i % 4}.disk${i}`),
      "Host.cpu.total",
      "zz.aa.cpu",
      "a.b.cpu.c",
    ],
  },
  {
    name: "aggregates: computes, send to, re-routing, no groups, stop",
    config: () => `
cluster f forward 127.0.7.1:2003 ;
cluster h fnv1a_ch 127.0.7.2:2003 127.0.7.3:2003 ;
aggregate ^sys\\.([a-z]+)\\.(cpu|mem)$
    every 10 seconds expire after 20 seconds
    compute sum write to agg.\\1.\\2.sum
    compute percentile95 write to agg.\\1.\\2.p95
    compute count write to agg.\\^1.count
    send to f h ;
aggregate ([a-z]+)\\.requests
    every 60 seconds expire after 90 seconds timestamp at start of bucket
    compute average write to \\1.avg
    compute median write to \\.1.med ;
aggregate ^lit\\.total every 10 seconds expire after 20 seconds
    compute max write to total.max
    compute min write to total.\\1 ;
aggregate ^stop\\.([a-z]+) ^stop\\.(x[a-z]*) every 10 seconds expire after 20 seconds
    compute variance write to stopped.\\1
    compute stddev write to stopped.sd.\\1
    send to f stop ;
aggregate ^(a)\\. ^(a)\\.(b) every 5 seconds expire after 6 seconds timestamp at middle of bucket
    compute sum write to twice.\\1 ;
aggregate ^(void)\\.(.*) every 10 seconds expire after 20 seconds
    compute count write to void.\\2 send to blackhole ;
match * send to f ;
`,
    lines: [
      "sys.web.cpu",
      "sys.db.mem",
      "sys.db.disk",
      "a.web.requests.x",
      "web.requests",
      "lit.total",
      "lit.total.more",
      "stop.abc",
      "stop.xyz",
      "a.b.c",
      "void.x.y",
      "other",
    ],
  },
  {
    name: "POSIX ERE semantics",
    config: () => `
cluster f forward 127.0.8.1:2003 ;
rewrite ^(x|xy)(yz|z)$ into \\1-\\2 ;
rewrite (db|dbproxy)(-[0-9]+)? into DB\\2 ;
rewrite ^lazy\\.(a+?)(a*)$ into lazy.\\1.\\2 ;
rewrite ^dd\\.(x\\d+)$ into dd.\\1 ;
rewrite ^brace\\.(a{,2})(a*)$ into brace.\\1.\\2 ;
rewrite ^punct\\.([[:punct:]]+)(.*)$ into punct.\\2 ;
rewrite ^opt\\.(a)?(b)$ into opt.\\1.\\2 ;
rewrite ^(a*)*(b)$ into star.\\1.\\2 ;
match "^quoted\\.dot" send to f ;
match * send to f ;
`,
    lines: [
      "xyz",
      "x.dbproxy-3.y",
      "dbproxy",
      "lazy.aaaa",
      "dd.xddd",
      "dd.x123",
      "brace.aaaa",
      "punct.!!x",
      "opt.b",
      "opt.ab",
      "aab",
      "quotedXdot",
      "quoted.dot",
    ],
  },
  {
    name: "POSIX ERE corners: top-level alternation, empty and repeated groups, brackets, bytes",
    config: () => `
cluster f forward 127.0.12.1:2003 ;
rewrite ^top\\.(a)|(b)$ into [\\1\\2] ;
rewrite (^in|out$) into <\\1> ;
rewrite ^nest\\.((a+)(b+))+$ into nest.\\1.\\2.\\3 ;
rewrite ^empty\\.(a|)(b*)$ into empty.\\1.\\2 ;
rewrite ^cls\\.([[:upper:]]+)([^[:alnum:]]+)(.*)$ into cls.\\1.\\3 ;
rewrite ^brk\\.([]a-]+)(.*)$ into brk.\\1.\\2 ;
rewrite ^utf\\.(caf.)\\.(.*)$ into utf.\\1.\\2 ;
rewrite ^utf2\\.([^.]+)\\.(.*)$ into \\^2.\\1 ;
rewrite ^rep\\.(x{2}){2}(.*)$ into rep.\\1.\\2 ;
match * send to f ;
`,
    lines: [
      "top.a.x",
      "xb",
      "inside",
      "shout",
      "nest.abaabb",
      "empty.bb",
      "empty.ab",
      "cls.ABC--x",
      "brk.a]-x",
      "utf.caf\u00e9.x",
      "utf.cafe.x",
      "utf2.\u00e9t\u00e9.\u00fc",
      "rep.xxxxxy",
    ],
  },
  {
    name: "plain-word expressions are string comparisons",
    config: () => `
cluster f forward 127.0.9.1:2003 ;
cluster g forward 127.0.9.2:2003 ;
match ^web\\.cpu$ send to f ;
match cpu send to g ;
match load$ send to f ;
match ^db send to g ;
match ^a-b_c send to f ;
`,
    lines: ["web.cpu", "web.cpu.x", "xcpuy", "sys.load", "sys.loadx", "dbx", "a-b_c.d", "none"],
  },
  {
    name: "names with UTF-8 bytes: case transforms touch ASCII only",
    config: () => `
cluster any any_of 127.0.10.1:2003 127.0.10.2:2003 127.0.10.3:2003 ;
cluster f forward 127.0.10.4:2003 ;
rewrite ^up\\.(.*)$ into \\^1 ;
rewrite ^lo\\.(.*)$ into \\_1 ;
match * send to any f ;
`,
    lines: ["up.caf\u00e9.x", "lo.\u00c9T\u00c9.Y", "\u00fcber.x", "\u65e5\u672c.y", "up.\u00e9"],
  },
  {
    // Well away from the limit: at the edge -t (no newline in its buffer) and the
    // live relay (which keeps the newline) differ by a byte.
    name: "rewrites and route using keys longer than the relay's 32 KiB metric buffer",
    config: () => `
cluster h carbon_ch 127.0.11.1:2003 127.0.11.2:2003 127.0.11.3:2003 ;
cluster f forward 127.0.11.4:2003 ;
rewrite ^(big\\..*)$ into \\1.\\1.\\1 ;
match ^(big)\\.(.*)$ route using \\2.\\2.\\2 send to h f ;
match * send to f ;
`,
    lines: [
      `big.${"x".repeat(3000)}`,
      `big.${"y".repeat(1000)}`,
      "big.w",
      `big.${"v".repeat(500)}`,
    ],
  },
];

let dir = "";
let files = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "polymur-rules-ccr-cases-"));
  files = join(dir, "files");
  mkdirSync(files);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(withoutCcr)("polymurctl route test agrees with carbon-c-relay -t on", () => {
  CASES.forEach((c, i) => {
    it(c.name, async () => {
      const config = c.config(files);
      const conf = join(dir, `case-${i}.conf`);
      writeFileSync(conf, config);
      const lines = c.lines.map((l) => (l.includes(" ") ? l : `${l} 1 1700000000`));
      await expectSameAsCcr(conf, config, lines);
    });
  });
});

describe.skipIf(withoutCcr)("where polymur differs from carbon-c-relay on purpose", () => {
  it("refuses back-references (\\1 in an expression), which glibc's ERE accepts", async () => {
    const config = "cluster f forward 127.0.13.1:2003 ;\nmatch ^([a-z])\\1 send to f ;\n";
    const conf = join(dir, "backref.conf");
    writeFileSync(conf, config);
    expect(ccrTrace(conf, ["aab 1 1", "abb 1 1"]).map((d) => d.sends.length)).toEqual([1, 0]);
    await expect(polymurRouteTest(conf, ["aab 1 1"])).rejects.toThrow(
      /backref\.conf:2:\d+: invalid expression '\^\(\[a-z\]\)\\1': Back references/,
    );
  });
});
