import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../../../../common/logger.ts";
import { Aggregation, aggregateKey } from "../../../../dataplane/route/aggregation.ts";
import type { AggregateRule } from "../../../../dataplane/route/rules/rules-config.ts";
import { parseRules } from "../../../../dataplane/route/rules/rules-parser.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";

/** A multiple of 10; the rules write a bucket at its end (the default timestamp). */
const NOW = 1_700_000_040;

function aggregates(text: string): readonly AggregateRule[] {
  return parseRules(`cluster c forward 127.0.0.1:2003;\n${text}`, "relay.conf").rules.filter(
    (r): r is AggregateRule => r.kind === "aggregate",
  );
}

const SUM =
  "aggregate ^a\\.(.*) every 10 seconds expire after 20 seconds compute sum write to s.\\1 send to c;";
const COUNT =
  "aggregate ^b\\.(.*) every 10 seconds expire after 20 seconds compute count write to n.\\1 send to c;";

function produced(a: Aggregation): [number, string, string][] {
  const out: [number, string, string][] = [];
  a.start((aggregate, name, rest) => out.push([aggregate, name, rest]));
  return out;
}

afterEach(() => {
  vi.useRealTimers();
});

describe("Aggregation", () => {
  it("keeps the open buckets of an aggregate rule a new file leaves unchanged, wherever it moved", () => {
    vi.useFakeTimers({ now: NOW * 1000 });
    const a = new Aggregation(createLogger({ level: "silent" }));
    const out = produced(a);
    a.setRules(aggregates(`${SUM}\n${COUNT}`));
    a.add(0, 0, "s.x", 5, NOW);
    a.add(1, 0, "n.y", 1, NOW);
    // A new file: the count rule first, the sum rule unchanged but second, a new rule third.
    a.setRules(aggregates(`${COUNT}\n${SUM}\n${SUM.replace("^a", "^z")}`));
    a.add(1, 0, "s.x", 7, NOW);
    a.expire(NOW + 60);
    expect(out.sort()).toEqual([
      [0, "n.y", ` 1 ${NOW + 10}`],
      [1, "s.x", ` 12.000000 ${NOW + 10}`],
    ]);
    expect(a.stats()).toMatchObject({ points: 3, produced: 2, openSeries: 0 });
  });

  it("counts (and logs) the points held by an aggregation the new file removed", () => {
    vi.useFakeTimers({ now: NOW * 1000 });
    const log = captureLog();
    const a = new Aggregation(log.log);
    const out = produced(a);
    a.setRules(aggregates(`${SUM}\n${COUNT}`));
    a.add(0, 0, "s.x", 5, NOW);
    a.add(0, 0, "s.x", 6, NOW);
    a.setRules(aggregates(COUNT));
    a.expire(NOW + 60);
    expect(out).toEqual([]);
    expect(a.stats().droppedBy.rule_removed).toBe(2);
    expect(log.lines.some((l) => /2 points in open buckets/.test(String(l.msg)))).toBe(true);
  });

  it("takes the points of worker processes by rule key, and counts those of a rule it no longer has", () => {
    vi.useFakeTimers({ now: NOW * 1000 });
    const a = new Aggregation(createLogger({ level: "silent" }));
    const out = produced(a);
    const rules = aggregates(SUM);
    a.setRules(rules);
    a.addKeyed({
      [aggregateKey(rules[0]!)]: [0, "s.x", 1, NOW, 0, "s.x", 2, NOW],
      gone: [0, "s.y", 1, NOW],
    });
    a.expire(NOW + 60);
    expect(out).toEqual([[0, "s.x", ` 3.000000 ${NOW + 10}`]]);
    expect(a.stats()).toMatchObject({ points: 3, droppedBy: { rule_removed: 1 } });
  });

  it("at shutdown writes ended buckets, and counts the open one and later points as shutdown", () => {
    vi.useFakeTimers({ now: (NOW + 12) * 1000 });
    const a = new Aggregation(createLogger({ level: "silent" }));
    const out = produced(a);
    a.setRules(aggregates(SUM));
    a.add(0, 0, "s.x", 1, NOW);
    a.add(0, 0, "s.x", 2, NOW + 10);
    a.flush();
    a.add(0, 0, "s.x", 3, NOW + 10);
    expect(out).toEqual([[0, "s.x", ` 1.000000 ${NOW + 10}`]]);
    expect(a.stats()).toMatchObject({ points: 3, produced: 1, droppedBy: { shutdown: 2 } });
  });

  it("counts points beyond the series cap once warned", () => {
    vi.useFakeTimers({ now: NOW * 1000 });
    const log = captureLog();
    const a = new Aggregation(log.log, 2);
    a.setRules(aggregates(SUM));
    for (const n of ["s.a", "s.b", "s.c", "s.d"]) a.add(0, 0, n, 1, NOW);
    expect(a.stats().droppedBy.series_cap).toBe(2);
    expect(log.lines.filter((l) => /series_cap/.test(String(l.msg)))).toHaveLength(1);
  });
});
