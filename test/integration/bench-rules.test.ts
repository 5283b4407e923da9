import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { buildPool } from "../../bench/gen-workload.ts";
import { manyRulesConf, renderTemplate } from "../../bench/rules/rules-workload.ts";
import { canonicalDecision, ccrTrace, type RouteDecision } from "../fixtures/ccr-trace.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { polymurRouteTest } from "../fixtures/rules-ccr-compare.ts";

/**
 * The relay.conf that `npm run bench -- rules-max | rules-sweep` gives both
 * relays (bench/rules/realistic.conf, a relaybench template): relaybench counts
 * in hash mode, every input line once over all sinks, so every line of its
 * workload must reach exactly one destination (none blackholed, dropped or
 * duplicated) and the aggregation's output must carry the prefix the scenarios
 * ignore (`agg.`). Checked on relaybench's own names (bench/gen-workload.ts, =
 * `gen -P`), with polymur's `route test` and with carbon-c-relay's `-t`, which
 * must decide the same.
 */

const TEMPLATE = fileURLToPath(new URL("../../bench/rules/realistic.conf", import.meta.url));
const AGGREGATE_PREFIX = "agg.";
/** Every template of gen's names, over many hosts: 4000 distinct names, one line each. */
const LINES = buildPool(4000, 4000);

let confPath = "";
let manyPath = "";

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), "bench-rules-"));
  confPath = join(dir, "relay.conf");
  writeFileSync(confPath, renderTemplate(readFileSync(TEMPLATE, "utf8")));
  manyPath = join(dir, "many.conf");
  writeFileSync(manyPath, manyRulesConf(70), "latin1");
});

/**
 * Lines the 70 added rules of the micro benchmark's 100-rule file match (none of
 * relaybench's does): each kind, near misses, and names a rewrite renames into
 * their reach.
 */
function hittingLines(): string[] {
  const names: string[] = [];
  for (const n of ["00", "07", "13", "42", "69"]) {
    names.push(
      `team${n}.x.y`,
      `teams${n}.x`,
      `svc${n}.a.b`,
      `job${n}.a`,
      `web.host${n}.cpu`,
      `web9.host${n}.cpu`,
      `x.metric${n}`,
      `x.counter${n}.y`,
      `legacy${n}.y`,
      `a.legacy${n}.b`,
      `alegacy${n}.b`,
    );
  }
  return names.map((n, i) => `${n} ${i} 1700000000`);
}

function expectOneDestination(decisions: readonly RouteDecision[]): void {
  const wrong = decisions.filter((d) => d.sends.length !== 1 || d.blackholed || d.dropped !== null);
  expect(wrong.slice(0, 5)).toEqual([]);
  const unprefixed = decisions.flatMap((d) =>
    d.aggregates.filter((a) => !a.metric.startsWith(AGGREGATE_PREFIX)),
  );
  expect(unprefixed.slice(0, 5)).toEqual([]);
}

describe("bench/rules/realistic.conf", () => {
  it("sends every line of relaybench's workload to exactly one destination (polymur)", async () => {
    const decisions = await polymurRouteTest(confPath, LINES);
    expect(decisions.map((d) => d.line)).toEqual(LINES);
    expectOneDestination(decisions);
    // the file exercises what it says: all three clusters, renames, the aggregation
    const clusters = new Set(decisions.map((d) => d.sends[0]!.cluster));
    expect([...clusters].sort()).toEqual(["apps", "infra", "main"]);
    const renamed = decisions.filter((d) => d.sends[0]!.metric !== d.line.split(" ")[0]);
    expect(renamed.length).toBeGreaterThan(LINES.length / 4);
    expect(decisions.some((d) => d.aggregates.length > 0)).toBe(true);
  });

  describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
    "carbon-c-relay -t",
    () => {
      it("decides every line as polymur does", async () => {
        const want = ccrTrace(confPath, LINES);
        expectOneDestination(want);
        const got = await polymurRouteTest(confPath, LINES);
        const differ = LINES.flatMap((_, i) => {
          const a = canonicalDecision(got[i]!);
          const b = canonicalDecision(want[i]!);
          return JSON.stringify(a) === JSON.stringify(b) ? [] : [{ polymur: a, ccr: b }];
        });
        expect(differ.slice(0, 3)).toEqual([]);
      });

      it("decides the micro benchmark's 100-rule file as polymur does", async () => {
        const lines = [...LINES.slice(0, 1500), ...hittingLines()];
        const want = ccrTrace(manyPath, lines);
        const got = await polymurRouteTest(manyPath, lines);
        const differ = lines.flatMap((_, i) => {
          const a = canonicalDecision(got[i]!);
          const b = canonicalDecision(want[i]!);
          return JSON.stringify(a) === JSON.stringify(b) ? [] : [{ polymur: a, ccr: b }];
        });
        expect(differ.slice(0, 3)).toEqual([]);
      });
    },
  );
});
