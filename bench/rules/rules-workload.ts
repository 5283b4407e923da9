/**
 * The routing-rules cases of bench/micro.bench.ts: LineFramer → RulesTable
 * (the data path of `polymur relay --rules`) over relaybench's lines, with the
 * destinations replaced by counters.
 *
 *   rules-realistic  bench/rules/realistic.conf, what `npm run bench -- rules-*` runs:
 *                    30 rules, a line meets 25 to 28 expressions before the one
 *                    that sends it
 *   rules-100        the same file with 70 more rules of the same kinds (team
 *                    prefixes, anchored and unanchored expressions) that match no
 *                    line of the workload, before the file's own: 100 rules, a line
 *                    meets 95 to 98 expressions
 */
import { readFileSync } from "node:fs";
import type { Destination } from "../../dataplane/forward/destination.ts";
import { noRouteCounts, type RouteCounts } from "../../dataplane/route/route-table.ts";
import { parseRules } from "../../dataplane/route/rules/rules-parser.ts";
import { RulesProgram } from "../../dataplane/route/rules/rules-program.ts";
import { type AggregateSink, RulesTable } from "../../dataplane/route/rules-table.ts";

/** What relaybench fills in (the ports only name destinations here). */
const PLACEHOLDERS: Record<string, string> = {
  host: "127.0.0.1",
  listen: "2003",
  d1: "2101",
  d2: "2102",
  d3: "2103",
};

/** relaybench's rendering of a --relay-config template (Python str.format). */
export function renderTemplate(text: string): string {
  return text.replace(/\{\{|\}\}|\{(\w+)\}/g, (m, name: string | undefined) => {
    if (name === undefined) return m[0]!;
    const v = PLACEHOLDERS[name];
    if (v === undefined) throw new Error(`unknown placeholder {${name}}`);
    return v;
  });
}

/** bench/rules/realistic.conf as relaybench renders it. */
export function realisticConf(): string {
  const url = new URL("realistic.conf", import.meta.url);
  return renderTemplate(readFileSync(url, "latin1"));
}

/**
 * `extra` rules that match no name of relaybench's workload, in five kinds
 * that cycle: a literal prefix (compared as a string), an anchored expression
 * with an alternation, an anchored one whose first part is a class, an
 * unanchored suffix, an unanchored `(^|\.)` word.
 */
export function unmatchedRules(extra: number): string {
  const out: string[] = [];
  for (let i = 0; i < extra; i++) {
    const n = String(i).padStart(2, "0");
    const to = ["main", "apps", "infra"][i % 3]!;
    const expr = [
      `^team${n}\\.`,
      `^(svc${n}|job${n})\\.[^.]+\\.`,
      `^[a-z]+\\.host${n}\\.`,
      `\\.(metric${n}|counter${n})$`,
      `(^|\\.)legacy${n}\\.`,
    ][i % 5]!;
    out.push(`match ${expr} send to ${to} stop;`);
  }
  return out.join("\n");
}

/** realistic.conf with `extra` unmatched rules before its first rule. */
export function manyRulesConf(extra: number): string {
  const conf = realisticConf();
  const first = conf.search(/^match /m);
  return `${conf.slice(0, first)}${unmatchedRules(extra)}\n\n${conf.slice(first)}`;
}

/** A Destination stand-in: counts what the table hands to it. */
export class NullDestination {
  lines = 0;
  bytes = 0;
  readonly state = "connected";
  enqueue(chunk: Uint8Array, lines: number): void {
    this.lines += lines;
    this.bytes += chunk.length;
  }
}

/** Counts the points the aggregate rules take. */
export class CountingAggregates implements AggregateSink {
  points = 0;
  add(): void {
    this.points++;
  }
}

/** A RulesTable over `conf` with a NullDestination per target. */
export function rulesTable(conf: string): {
  table: RulesTable;
  dests: NullDestination[];
  counts: RouteCounts;
  aggregates: CountingAggregates;
} {
  const program = RulesProgram.compile(parseRules(conf, "bench.conf"));
  const dests = program.targets.map(() => new NullDestination());
  const counts = noRouteCounts();
  const aggregates = new CountingAggregates();
  const table = new RulesTable(program, dests as unknown as Destination[], counts, aggregates);
  return { table, dests, counts, aggregates };
}
