/**
 * polymur routes like carbon-c-relay 3.7.3: for seeded random relay.conf files
 * (test/fixtures/rules-gen.ts; hand-written ones, one per feature, are in
 * rules-ccr-cases.test.ts), the decision `polymurctl route test --json` prints for every line equals the one
 * `carbon-c-relay -t` prints (test/fixtures/ccr-trace.ts): the same sends
 * (cluster, member, name), the same aggregate outputs, blackhole and validate
 * drops, sends and aggregates compared as multisets (rules-ccr-compare.ts). Each
 * side runs once per config with all its lines. The first block checks the trace reader against
 * traces read by hand, on carbon-c-relay alone.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ccrTrace, parseCcrLineTrace } from "../fixtures/ccr-trace.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { expectSameAsCcr } from "../fixtures/rules-ccr-compare.ts";
import { generateRulesCase } from "../fixtures/rules-gen.ts";

const withoutCcr = skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined);

/** 60 configs of 100 lines: 6,000 lines (RULES_CCR_CONFIGS=N for a longer run). */
const SEEDS = Array.from(
  { length: Number(process.env["RULES_CCR_CONFIGS"] ?? 60) },
  (_, i) => i + 1,
);
const LINES_PER_CONFIG = 100;

let dir = "";
let files = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "polymur-rules-ccr-"));
  files = join(dir, "files");
  mkdirSync(files);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConf(name: string, text: string): string {
  const path = join(dir, `${name}.conf`);
  writeFileSync(path, text);
  return path;
}

describe("the carbon-c-relay -t trace reader", () => {
  const none = { sends: [], blackholed: false, aggregates: [], dropped: null };

  it("reads sends, route using, aggregates with send to, validate and blackhole blocks", () => {
    const trace = [
      "aggregation",
      "    ^web\\.([a-z]+)\\.cpu (regex) -> web.x.cpu",
      "    sum(agg.\\1.sum) -> agg.x.sum 1 2",
      "    percentile95(agg.\\1.p95) -> agg.x.p95 1 2",
      "    carbon_ch(h)",
      "    forward(f)",
      "        127.0.0.4:2003",
      "match",
      "    ^web [strncmp: web]",
      "    -> web.x.cpu",
      "    carbon_ch(h)",
      "        using(\\1) -> x.x.cpu 1 2",
      "        127.0.0.1:2003",
      "        127.0.0.2:2003",
      "    file ip(fi)",
      "        /tmp/out.txt",
      "match",
      "    * -> web.x.cpu",
      "    blackholed",
      "    stop",
      "",
    ].join("\n");
    const sends = (cluster: string, destination: string) => ({
      cluster,
      destination,
      metric: "web.x.cpu",
    });
    expect(parseCcrLineTrace("web.x.cpu 1 2", trace)).toEqual({
      line: "web.x.cpu 1 2",
      sends: [
        sends("h", "127.0.0.1:2003"),
        sends("h", "127.0.0.2:2003"),
        sends("fi", "/tmp/out.txt"),
      ],
      blackholed: true,
      aggregates: [
        { cluster: "h", metric: "agg.x.sum" },
        { cluster: "f", metric: "agg.x.sum" },
        { cluster: "h", metric: "agg.x.p95" },
        { cluster: "f", metric: "agg.x.p95" },
      ],
      dropped: null,
    });
    expect(parseCcrLineTrace("foo 1 2", "nothing matched foo\n")).toEqual({
      line: "foo 1 2",
      ...none,
    });
    const failed = (stop: boolean) =>
      [
        "rewrite",
        "    ^sys\\.([a-z]+)\\.(.*) (regex) -> sys.abc.x.y",
        "    into(SYS.\\^1.\\.2) -> SYS.ABC.x_y",
        "match",
        "    ^SYS [strncmp: SYS]",
        "    -> SYS.ABC.x_y",
        "    validate",
        "        ^[0-9]+ -> z 2",
        "        fail -> drop",
        ...(stop ? ["    stop"] : []),
        "aggregation",
        "    xx [strstr: xx]",
        "    -> SYS.ABC.x_y",
        "    sum -> s.\\1",
        "",
      ].join("\n");
    expect(parseCcrLineTrace("l", failed(true))).toEqual({
      line: "l",
      ...none,
      aggregates: [{ cluster: null, metric: "s.\\1" }],
      dropped: "validate",
    });
    expect(parseCcrLineTrace("l", failed(false)).dropped).toBeNull();
    expect(() => parseCcrLineTrace("l", "match\n    * -> l\n    odd\n")).toThrow(/unexpected/);
  });

  it.skipIf(withoutCcr)(
    "cuts the output into lines even when the rules match and rename the marker",
    () => {
      const conf = writeConf(
        "reader",
        [
          "cluster f forward 127.0.0.4:2003 127.0.0.5:2004 ;",
          "cluster a any_of 127.0.0.6:2003 127.0.0.7:2003 ;",
          "rewrite ^([a-z]+)-(.*)$ into \\2.\\^1 ;",
          "match * send to f ;",
          "aggregate ^(.*)\\.cpu$ every 10 seconds expire after 20 seconds compute count write to n.\\1 ;",
          "match ^quiet validate ^[0-9] else drop ;",
          "match [a-z] send to a stop ;",
          "",
        ].join("\n"),
      );
      const f = (metric: string) => [
        { cluster: "f", destination: "127.0.0.4:2003", metric },
        { cluster: "f", destination: "127.0.0.5:2004", metric },
      ];
      expect(ccrTrace(conf, ["web.cpu 1 1", "7 1 1", "quiet x 1", "up-host.cpu 1 1"])).toEqual([
        {
          line: "web.cpu 1 1",
          sends: [
            ...f("web.cpu"),
            { cluster: "a", destination: "127.0.0.7:2003", metric: "web.cpu" },
          ],
          blackholed: false,
          aggregates: [{ cluster: null, metric: "n.web" }],
          dropped: null,
        },
        { line: "7 1 1", ...none, sends: f("7") },
        { line: "quiet x 1", ...none, sends: f("quiet"), dropped: "validate" },
        {
          line: "up-host.cpu 1 1",
          sends: [
            ...f("host.cpu.UP"),
            { cluster: "a", destination: "127.0.0.6:2003", metric: "host.cpu.UP" },
          ],
          blackholed: false,
          aggregates: [],
          dropped: null,
        },
      ]);
    },
  );
});

describe.skipIf(withoutCcr)("polymurctl route test agrees with carbon-c-relay -t", () => {
  for (const seed of SEEDS) {
    it(`on generated relay.conf, seed ${seed}`, async () => {
      const g = generateRulesCase(seed, { fileDir: files, lines: LINES_PER_CONFIG });
      await expectSameAsCcr(writeConf(`seed-${seed}`, g.config), g.config, g.lines);
    });
  }
});
