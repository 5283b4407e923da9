import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RulesError } from "../../dataplane/route/rules/rules-config.ts";
import { loadRules } from "../../dataplane/route/rules/rules-files.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";

/**
 * Generated relay.conf files, most of them damaged (tokens dropped, glued,
 * replaced; characters inserted, deleted, replaced), read by carbon-c-relay
 * 3.7.3 (`-t -f FILE < /dev/null`) and by polymur's parser: the verdicts
 * must agree except for the documented differences (knownDifference).
 * Damage turns words into host names, which carbon-c-relay resolves: it runs
 * in a network namespace of its own (unshare -n), so nothing leaves the machine.
 */

const CASES = 400;
const isolate = spawnSync("unshare", ["-n", "true"], { stdio: "ignore" }).status === 0;

/** A small deterministic generator (LCG), so every run reads the same files. */
function generator(seed: number): { rnd: () => number; pick: <T>(a: readonly T[]) => T } {
  let s = seed;
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  return { rnd, pick: (a) => a[Math.floor(rnd() * a.length)]! };
}

function makeConfig(dir: string, g: ReturnType<typeof generator>): string {
  const { rnd, pick } = g;
  const maybe = (p: number, s: string): string => (rnd() < p ? s : "");
  const n = (k: number): number => 1 + Math.floor(rnd() * k);
  const ips = [
    "127.0.0.1",
    "127.0.0.2:2004",
    "[::1]:2003",
    "127.0.0.3:2003=a",
    "127.0.0.1:2003=b",
    "10.0.0.1=1",
    "[::1]",
    "127.1:2005",
  ];
  const names = ["a", "b", "c"];
  const exprs = ["^a\\.b", '"x y"', "foo", "b[0-9]+", '"^c\\\\.d"', "(.*)", "x\\ y"];
  const member = (): string =>
    pick(ips) +
    maybe(0.2, ` proto ${pick(["udp", "tcp"])}`) +
    maybe(0.1, " type linemode") +
    maybe(0.1, " transport plain");
  const dst = (): string =>
    rnd() < 0.2 ? "blackhole" : Array.from({ length: n(2) }, () => pick(names)).join(" ");
  const statement = (): string => {
    switch (Math.floor(rnd() * 8)) {
      case 0:
      case 1: {
        const t = pick([
          "forward",
          "any_of",
          "failover",
          "carbon_ch",
          "fnv1a_ch",
          "jump_fnv1a_ch",
          "file",
        ]);
        if (t === "file")
          return `cluster ${pick(names)} file${maybe(0.3, " ip")} ${dir}/out${n(3)}`;
        const opts = t.endsWith("_ch")
          ? maybe(0.5, ` replication ${pick(["1", "2", "3", "0"])}`) + maybe(0.3, " dynamic")
          : maybe(0.3, " useall");
        return `cluster ${pick(["d", "e", "f"])} ${t}${opts} ${Array.from({ length: n(3) }, member).join(" ")}`;
      }
      case 2:
        return (
          `match ${rnd() < 0.3 ? "*" : Array.from({ length: n(2) }, () => pick(exprs)).join(" ")}` +
          maybe(0.3, ` validate ${pick(exprs)} else ${pick(["log", "drop"])}`) +
          maybe(0.2, " route using \\1") +
          maybe(0.8, ` send to ${dst()}`) +
          maybe(0.4, " stop")
        );
      case 3:
        return `rewrite ${pick(exprs)} into ${pick(["\\1", '"a.\\\\1"', "x"])}`;
      case 4:
        return (
          `aggregate ${pick(exprs)} every ${pick(["5", "10", "60"])} seconds expire after ${pick(["10", "20", "70", "5"])} seconds` +
          maybe(0.3, ` timestamp at ${pick(["start", "middle", "end"])} of bucket`) +
          Array.from(
            { length: n(2) },
            () =>
              ` compute ${pick(["sum", "cnt", "percentile50", "percentile", "median", "avg", "stddev"])} write to ${pick(["x.\\1", "y"])}`,
          ).join("") +
          maybe(0.3, ` send to ${dst()}${maybe(0.5, " stop")}`)
        );
      case 5:
        return (
          "statistics" +
          maybe(0.4, ` submit every ${pick(["10", "0", "60"])} seconds`) +
          maybe(0.3, " reset counters after interval") +
          maybe(0.3, " prefix with p.\\.1") +
          maybe(0.3, ` send to ${dst()}${maybe(0.5, " stop")}`)
        );
      case 6:
        return (
          `listen type linemode${maybe(0.2, " transport plain")} ` +
          Array.from({ length: n(2) }, () =>
            pick([
              "2103 proto tcp",
              "127.0.0.1:2104 proto udp",
              "[::1]:2103 proto tcp",
              `${dir}/s proto unix`,
              "2105 proto udp",
            ]),
          ).join(" ")
        );
      default:
        return rnd() < 0.5
          ? `send statistics to ${dst()}`
          : `include ${dir}/inc${pick(["1", "*", "9"])}.conf`;
    }
  };
  const clusters =
    "cluster a forward 127.0.0.1:2010;\ncluster b carbon_ch 127.0.0.2:2010 127.0.0.3:2010;\ncluster c any_of 127.0.0.4:2010;\n";
  let text = `${clusters}${Array.from({ length: n(5) }, () => `${statement()} ;`).join("\n")}\n`;
  const damage = rnd();
  if (damage < 0.35) {
    const vocab = [
      ";",
      '"',
      "=",
      "*",
      "stop",
      "send",
      "to",
      "match",
      "cluster",
      "every",
      "seconds",
      "#c\n",
      "\\",
      "blackhole",
      "proto",
      "udp",
      "ip",
      "10",
      "x",
      '"q"',
      "using",
      "route",
    ];
    const t = text.split(" ");
    for (let k = n(4); k > 0; k--) {
      const j = Math.floor(rnd() * t.length);
      const op = Math.floor(rnd() * 4);
      if (op === 0) t.splice(j, 1);
      else if (op === 1) t.splice(j, 0, pick(vocab));
      else if (op === 2 && j + 1 < t.length) t.splice(j, 2, t[j]! + t[j + 1]!);
      else t.splice(j, 1, pick(vocab));
    }
    text = t.join(" ");
  } else if (damage < 0.7) {
    const chars = [..."\"\\#=;* \n\tabz09.:[]()_-+{}@!'~,/stopendcomputesum"];
    for (let k = n(3); k > 0; k--) {
      const j = Math.floor(rnd() * text.length);
      const op = rnd();
      if (op < 0.4) text = text.slice(0, j) + pick(chars) + text.slice(j);
      else if (op < 0.7) text = text.slice(0, j) + text.slice(j + 1);
      else text = text.slice(0, j) + pick(chars) + text.slice(j + 1);
    }
  }
  return text;
}

/** The differences docs/rules.md lists, as they show in a verdict pair. */
function knownDifference(
  text: string,
  ccr: { ok: boolean; out: string; crashed: boolean },
  ourError: string,
): boolean {
  if (ccr.ok) return /not supported by polymur|cannot be a polymur destination/.test(ourError);
  const ccrOut = ccr.out;
  return (
    // `useall` with a name that does not resolve crashes carbon-c-relay 3.7.3 (fixed upstream).
    (ccr.crashed && text.includes("useall")) ||
    // carbon-c-relay opens file and socket paths, and resolves listener names, while it parses.
    /failed to open file|invalid listener/.test(ccrOut) ||
    // A comment that ends the file, `#` in quotes, an aggregate's stop without send to.
    (/#[^\n]*$/.test(text) && !text.endsWith("\n")) ||
    text.includes('"#') ||
    /write to \S+ +stop/.test(text)
  );
}

const dir = mkdtempSync(join(tmpdir(), "rules-fuzz-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(
  skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined) ||
    skipUnlessAvailable("unshare -n (a network namespace)", isolate),
)("relay.conf: generated and damaged files, polymur's parser against carbon-c-relay 3.7.3", () => {
  it(`decides ${CASES} files as carbon-c-relay does`, () => {
    writeFileSync(join(dir, "inc1.conf"), "cluster c forward 127.0.0.9;\n");
    const g = generator(20_260_101);
    const file = join(dir, "relay.conf");
    const mismatches: string[] = [];
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const text = makeConfig(dir, g);
      writeFileSync(file, text, "latin1");
      const r = spawnSync("unshare", ["-n", ccrBinary!, "-t", "-f", file], {
        stdio: ["ignore", "pipe", "pipe"],
        encoding: "latin1",
        timeout: 20_000,
      });
      const ccrOk = r.status === 0;
      let error = "";
      try {
        loadRules(file);
      } catch (err) {
        if (!(err instanceof RulesError)) throw err;
        error = err.message;
      }
      if (ccrOk) accepted++;
      if (
        ccrOk === (error === "") ||
        knownDifference(
          text,
          { ok: ccrOk, out: `${r.stdout}${r.stderr}`, crashed: r.signal !== null },
          error,
        )
      )
        continue;
      mismatches.push(
        `carbon-c-relay ${ccrOk ? "accepts" : "rejects"}, polymur: ${error || "accepts"}\n${text}`,
      );
    }
    expect(mismatches).toEqual([]);
    // Both kinds of verdict were exercised.
    expect(accepted).toBeGreaterThan(CASES / 10);
    expect(accepted).toBeLessThan(CASES - CASES / 10);
  });
});
