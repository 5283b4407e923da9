/**
 * deploy/grafana/polymur.json and deploy/prometheus/polymur-alerts.yml against what
 * polymur serves: real nodes (a relay with a TLS listener, a disk queue and a
 * destination; a gateway with a destination and a proxy streaming to it) take valid
 * and invalid lines, their /metrics are scraped, and every metric the dashboard's
 * queries and the rules' expressions name must have samples there, with every label
 * they select, group or print by. The files' structure is checked too, and with
 * promtool where it is installed (`promtool check rules`, and the rules' own unit tests
 * `promtool test rules deploy/prometheus/polymur-alerts.test.yml`); without it, the
 * structural check below stands in (Debian's `prometheus` package has promtool).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";
import { type MetricFamily, parseExposition } from "../fixtures/prometheus-exposition.ts";
import { startGateway, startProxy } from "../fixtures/proxy-gateway.ts";
import { createTestPki, type TestPki } from "../fixtures/tls.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DASHBOARD = path.join(ROOT, "deploy/grafana/polymur.json");
const RULES = path.join(ROOT, "deploy/prometheus/polymur-alerts.yml");
const RULE_TESTS = path.join(ROOT, "deploy/prometheus/polymur-alerts.test.yml");

/** Series Prometheus makes itself (not in polymur's /metrics), and their labels. */
const PROMETHEUS_OWN: Record<string, readonly string[]> = { up: [] };
/** Labels Prometheus adds to every scraped series (the target's). */
const TARGET_LABELS = ["job", "instance"];

// ---------------------------------------------------------------------------------------
// What a PromQL expression names

/** A metric selector in an expression, and the label names its matchers use. */
interface Selector {
  metric: string;
  labels: string[];
}

/** The selectors of a PromQL expression, and the labels it groups or matches by. */
interface PromqlRefs {
  selectors: Selector[];
  grouping: string[];
}

const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "atan2"]);
const GROUPING = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);
/** Aggregation operators: `sum by (x) (…)` puts their grouping before the parenthesis. */
const AGGREGATIONS = new Set([
  "sum",
  "min",
  "max",
  "avg",
  "group",
  "stddev",
  "stdvar",
  "count",
  "count_values",
  "bottomk",
  "topk",
  "quantile",
  "limitk",
  "limit_ratio",
]);

/**
 * Reads a PromQL expression (Grafana's `$variables` allowed) into its metric selectors
 * and grouping labels: a tokenizer, not a parser, enough for names. Strings, ranges
 * and subqueries (`[5m]`, `[$__rate_interval]`), numbers and durations, functions
 * (an identifier before `(`), operators and keywords are skipped; an identifier
 * before `{` or standing alone is a metric; `by (…)`, `without (…)`, `on (…)`,
 * `ignoring (…)`, `group_left (…)`, `group_right (…)` list labels. Throws on a
 * character it does not know, so a query it cannot read fails instead of passing.
 */
function promqlRefs(expr: string): PromqlRefs {
  const selectors: Selector[] = [];
  const grouping: string[] = [];
  let i = 0;
  const n = expr.length;
  const skipSpace = (): void => {
    while (i < n && /\s/.test(expr[i]!)) i++;
  };
  const readString = (): void => {
    const q = expr[i]!;
    i++;
    while (i < n && expr[i] !== q) i += expr[i] === "\\" && q !== "`" ? 2 : 1;
    if (i >= n) throw new Error(`unterminated string in ${expr}`);
    i++;
  };
  const ident = (): string => {
    const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i));
    if (m === null) throw new Error(`expected a name at ${i} in ${expr}`);
    i += m[0].length;
    return m[0];
  };
  /** `{a="x", b=~"y"}` at i: the label names. */
  const matchers = (): string[] => {
    const names: string[] = [];
    i++; // {
    for (;;) {
      skipSpace();
      if (expr[i] === "}") break;
      if (expr[i] === ",") {
        i++;
        continue;
      }
      names.push(ident());
      skipSpace();
      const op = /^(=~|!~|!=|=)/.exec(expr.slice(i));
      if (op === null) throw new Error(`expected a matcher operator at ${i} in ${expr}`);
      i += op[0].length;
      skipSpace();
      if (!/["'`]/.test(expr[i] ?? "")) throw new Error(`expected a string at ${i} in ${expr}`);
      readString();
    }
    i++; // }
    return names;
  };
  /** `(a, b)` at i: the names. */
  const labelList = (): string[] => {
    const names: string[] = [];
    i++; // (
    for (;;) {
      skipSpace();
      if (expr[i] === ")") break;
      if (expr[i] === ",") {
        i++;
        continue;
      }
      names.push(ident());
    }
    i++; // )
    return names;
  };
  while (i < n) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"' || c === "'" || c === "`") {
      readString();
    } else if (c === "[") {
      const end = expr.indexOf("]", i);
      if (end < 0) throw new Error(`unterminated [ in ${expr}`);
      i = end + 1;
    } else if (c === "{") {
      // A selector without a metric name ({__name__=~"…"}): a query this test cannot check.
      throw new Error(`a selector without a metric name in ${expr}`);
    } else if (c === "$") {
      i++;
      if (expr[i] === "{") i = expr.indexOf("}", i) + 1;
      else ident();
    } else if (/[0-9.]/.test(c)) {
      const m = /^(0x[0-9a-fA-F]+|[0-9.]+(e[+-]?[0-9]+)?([a-z]+[0-9]*)*)/i.exec(expr.slice(i));
      i += m![0].length;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const name = ident();
      skipSpace();
      const next = expr[i];
      if (GROUPING.has(name)) {
        if (next === "(") grouping.push(...labelList());
      } else if (next === "(" || KEYWORDS.has(name) || AGGREGATIONS.has(name)) {
        // a function, or an operator keyword
      } else if (next === "{") {
        selectors.push({ metric: name, labels: matchers() });
      } else {
        selectors.push({ metric: name, labels: [] });
      }
    } else if ("()+-*/%^=!<>,".includes(c)) {
      i++;
    } else {
      throw new Error(`unexpected "${c}" at ${i} in ${expr}`);
    }
  }
  return { selectors, grouping };
}

// ---------------------------------------------------------------------------------------
// The queries of the files

/** One query: where it is (for messages), its PromQL, and the labels it prints. */
interface Query {
  where: string;
  expr: string;
  /** Labels its text names: Grafana's `{{label}}` legends, the rules' `$labels.label`. */
  printed: string[];
  /** For a Grafana label_values() variable: the label whose values it lists. */
  lists?: string;
}

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos?: { h: number; w: number; x: number; y: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; legendFormat?: string; refId: string }[];
  panels?: Panel[];
}

interface Dashboard {
  title: string;
  uid: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown }[] };
}

const printedIn = (text: string): string[] =>
  [...text.matchAll(/\{\{\s*\$?labels\.([a-zA-Z_]\w*)\s*\}\}|\{\{\s*([a-zA-Z_]\w*)\s*\}\}/g)].map(
    (m) => (m[1] ?? m[2])!,
  );

function dashboardQueries(d: Dashboard): Query[] {
  const out: Query[] = [];
  const visit = (ps: Panel[]): void => {
    for (const p of ps) {
      for (const t of p.targets ?? []) {
        out.push({
          where: `panel "${p.title}" ${t.refId}`,
          expr: t.expr,
          printed: printedIn(t.legendFormat ?? ""),
        });
      }
      visit(p.panels ?? []);
    }
  };
  visit(d.panels);
  for (const v of d.templating.list) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : (v.query as { query: string }).query;
    const m = /^label_values\((.+),\s*([a-zA-Z_]\w*)\)$/.exec(q);
    if (m === null) throw new Error(`variable ${v.name}: not label_values(query, label): ${q}`);
    out.push({ where: `variable ${v.name}`, expr: m[1]!, printed: [], lists: m[2]! });
  }
  return out;
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function rulesQueries(groups: { name: string; rules: Rule[] }[]): Query[] {
  return groups.flatMap((g) =>
    g.rules.map((r) => ({
      where: `rule ${r.alert ?? r.record}`,
      expr: r.expr,
      printed: Object.values(r.annotations ?? {}).flatMap(printedIn),
    })),
  );
}

/**
 * What is wrong with `queries` against scraped families: a metric with no sample, a
 * label a selector, a grouping, a legend or an annotation names that none of the
 * query's metrics has.
 */
function problemsWith(queries: Query[], families: Map<string, MetricFamily>): string[] {
  const problems: string[] = [];
  const labelsOf = (metric: string): Set<string> | undefined => {
    const own = PROMETHEUS_OWN[metric];
    if (own !== undefined) return new Set([...own, ...TARGET_LABELS]);
    const f = families.get(metric);
    if (f === undefined || f.samples.length === 0) return undefined;
    return new Set([...f.samples.flatMap((s) => Object.keys(s.labels)), ...TARGET_LABELS]);
  };
  for (const q of queries) {
    let refs: PromqlRefs;
    try {
      refs = promqlRefs(q.expr);
    } catch (err) {
      problems.push(`${q.where}: ${(err as Error).message}`);
      continue;
    }
    if (refs.selectors.length === 0) problems.push(`${q.where}: names no metric: ${q.expr}`);
    const all = new Set<string>();
    for (const s of refs.selectors) {
      const labels = labelsOf(s.metric);
      if (labels === undefined) {
        problems.push(`${q.where}: ${s.metric} is not in polymur's /metrics`);
        continue;
      }
      for (const l of labels) all.add(l);
      for (const l of s.labels) {
        if (!labels.has(l)) problems.push(`${q.where}: ${s.metric} has no label "${l}"`);
      }
    }
    for (const l of [...refs.grouping, ...q.printed, ...(q.lists === undefined ? [] : [q.lists])]) {
      if (!all.has(l)) problems.push(`${q.where}: no metric of "${q.expr}" has label "${l}"`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------

const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as Dashboard;
const rulesFile = parseYaml(readFileSync(RULES, "utf8")) as {
  groups: { name: string; rules: Rule[] }[];
};
const queries = [...dashboardQueries(dashboard), ...rulesQueries(rulesFile.groups)];

describe("promqlRefs", () => {
  it("finds the metrics and labels of the queries polymur's files use", () => {
    expect(
      promqlRefs(
        'sum by (destination, reason) (rate(polymur_destination_dropped_total{job=~"$job", instance=~"$instance"}[$__rate_interval])) > 0',
      ),
    ).toEqual({
      selectors: [{ metric: "polymur_destination_dropped_total", labels: ["job", "instance"] }],
      grouping: ["destination", "reason"],
    });
    expect(
      promqlRefs(
        "polymur_destination_queued_bytes > 64 * 1024 * 1024\nand deriv(polymur_destination_queued_bytes[10m]) > 0",
      ).selectors.map((s) => s.metric),
    ).toEqual(["polymur_destination_queued_bytes", "polymur_destination_queued_bytes"]);
    expect(
      promqlRefs('count(a{x="}"} == 0) or vector(0) offset 5m + on (i) group_left (j) b').selectors,
    ).toEqual([
      { metric: "a", labels: ["x"] },
      { metric: "b", labels: [] },
    ]);
    expect(() => promqlRefs('{__name__=~"polymur_.*"}')).toThrow(/without a metric name/);
    expect(() => promqlRefs("rate(x[5m]) # comment")).toThrow(/unexpected "#"/);
  });
});

describe("the dashboard and the alert rules: their structure", () => {
  it("the dashboard: Grafana's JSON model, a Prometheus data source variable, job and instance", () => {
    expect(dashboard).toMatchObject({ title: "polymur", uid: "polymur" });
    const vars = dashboard.templating.list;
    expect(vars.map((v) => [v.name, v.type])).toEqual([
      ["datasource", "datasource"],
      ["job", "query"],
      ["instance", "query"],
    ]);
    const ids = new Set<number>();
    let queriesSeen = 0;
    for (const p of dashboard.panels) {
      expect(ids.has(p.id), `panel id ${p.id} twice`).toBe(false);
      ids.add(p.id);
      expect(p.gridPos!.x + p.gridPos!.w, p.title).toBeLessThanOrEqual(24);
      if (p.type === "row") continue;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable, not a template
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(p.targets!.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) {
        queriesSeen++;
        // Every query follows the job and instance variables.
        expect(t.expr, `${p.title} ${t.refId}`).toMatch(/job=~"\$job", instance=~"\$instance"/);
      }
    }
    expect(queriesSeen).toBeGreaterThan(50);
    // No two panels overlap.
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const g = p.gridPos!;
      for (let y = g.y; y < g.y + g.h; y++) {
        for (let x = g.x; x < g.x + g.w; x++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });

  it("the rules: groups of alerts, each with expr, severity, summary and description", () => {
    const text = readFileSync(RULES, "utf8");
    const doc = parseYaml(text) as Record<string, unknown>;
    expect(Object.keys(doc)).toEqual(["groups"]);
    const names = new Set<string>();
    for (const g of rulesFile.groups) {
      expect(Object.keys(g).sort()).toEqual(["name", "rules"]);
      expect(names.has(g.name)).toBe(false);
      names.add(g.name);
      for (const r of g.rules) {
        const where = `${g.name}/${r.alert}`;
        expect(
          Object.keys(r).every((k) =>
            ["alert", "expr", "for", "labels", "annotations"].includes(k),
          ),
          where,
        ).toBe(true);
        expect(r.alert, where).toMatch(/^Polymur[A-Z][A-Za-z]+$/);
        expect(names.has(r.alert!), `${where} twice`).toBe(false);
        names.add(r.alert!);
        expect(typeof r.expr, where).toBe("string");
        if (r.for !== undefined) expect(r.for, where).toMatch(/^[0-9]+[smh]$/);
        expect(Object.keys(r.labels ?? {}), where).toEqual(["severity"]);
        expect(["warning", "critical"], where).toContain(r.labels!["severity"]);
        expect(Object.keys(r.annotations ?? {}).sort(), where).toEqual(["description", "summary"]);
      }
    }
    expect(names.size).toBeGreaterThan(15);
  });

  const promtool = spawnSync("promtool", ["--version"], { encoding: "utf8" }).status === 0;
  if (!promtool) {
    console.warn("observability-files.test.ts: no promtool here: rules checked structurally only");
  }
  it.skipIf(!promtool)("promtool checks the rules and runs their unit tests", () => {
    const check = spawnSync("promtool", ["check", "rules", RULES], { encoding: "utf8" });
    expect(check.stdout + check.stderr).toMatch(/SUCCESS: \d+ rules found/);
    expect(check.status).toBe(0);
    const test = spawnSync("promtool", ["test", "rules", path.basename(RULE_TESTS)], {
      cwd: path.dirname(RULE_TESTS),
      encoding: "utf8",
    });
    expect(test.stdout + test.stderr).toContain("SUCCESS");
    expect(test.status).toBe(0);
  });
});

describe("the dashboard and the alert rules name only what polymur serves", () => {
  let pki: TestPki;
  let dir: string;
  const stops: (() => Promise<unknown>)[] = [];
  /** The families of every role's /metrics, merged. */
  const families = new Map<string, MetricFamily>();

  beforeAll(async () => {
    pki = createTestPki();
    dir = mkdtempSync(path.join(tmpdir(), "polymur-observability-"));
    const relayOut = await LineSink.start();
    const gatewayOut = await LineSink.start();
    stops.push(
      () => relayOut.close(),
      () => gatewayOut.close(),
    );
    // A relay with a TLS listener (TLS rejects by reason), a disk queue (the disk
    // families) and one destination.
    const relay = await PolymurProcess.relay([
      "--destinations",
      relayOut.address,
      "--queue-dir",
      path.join(dir, "queues"),
      "--tls-cert",
      pki.certFile,
      "--tls-key",
      pki.keyFile,
      "--workers",
      "1",
    ]);
    stops.push(() => relay.stop());
    // A gateway with a destination, and a proxy (with a spool) streaming to it.
    const keys = path.join(dir, "keys");
    writeFileSync(keys, "site-a s3cret-site-a-0123456789\n");
    const gateway = await startGateway(["--keys-file", keys, "--destinations", gatewayOut.address]);
    stops.push(() => gateway.stop());
    const proxy = await startProxy(`http://127.0.0.1:${gateway.port}`, "s3cret-site-a-0123456789", [
      "--spool-dir",
      path.join(dir, "spool"),
    ]);
    stops.push(() => proxy.stop());

    const good = Array.from({ length: 200 }, (_, i) => `obs.m${i % 20} ${i} 1700000000\n`).join("");
    const bad = "no-value-here\nobs.bad notanumber 1700000000\n";
    const socket = tls.connect({
      port: relay.port,
      host: "127.0.0.1",
      ca: pki.ca,
      servername: "localhost",
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", () => resolve());
      socket.once("error", reject);
    });
    await new Promise<void>((resolve) => socket.end(good + bad, () => resolve()));
    await sendLines(proxy.port, good + bad);
    await waitForStats(relay, (s) => s.datapoints.forwarded === 200 && s.datapoints.rejected === 2);
    await waitForStats(gateway, (s) => s.datapoints.forwarded === 200);
    for (const p of [relay, gateway, proxy]) {
      const res = await p.get("/metrics");
      expect(res.status).toBe(200);
      for (const [name, f] of parseExposition(res.body)) {
        const have = families.get(name);
        if (have === undefined) families.set(name, { ...f, samples: [...f.samples] });
        else have.samples.push(...f.samples);
      }
    }
  }, 60_000);

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    pki?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it("every metric and label of every query is in the scraped /metrics", () => {
    expect(problemsWith(queries, families)).toEqual([]);
    // The dashboard shows most of what polymur serves (the rest is listed here).
    const shown = new Set(
      queries.flatMap((q) => promqlRefs(q.expr).selectors.map((s) => s.metric)),
    );
    const notShown = [...families.keys()].filter((f) => !shown.has(f)).sort();
    expect(notShown).toEqual(["polymur_gateway_legacy_requests_total"]);
  });

  it("would catch a misspelled metric, a missing label and an unknown grouping", () => {
    const bad: Query[] = [
      { where: "a", expr: "rate(polymur_destination_dropped_totl[5m])", printed: [] },
      { where: "b", expr: 'polymur_destination_up{reason="x"}', printed: [] },
      { where: "c", expr: "sum by (destination) (rate(polymur_received_total[5m]))", printed: [] },
      { where: "d", expr: "polymur_proxy_link_up == 0", printed: ["destination"] },
      { where: "e", expr: "polymur_connections", printed: [], lists: "listener" },
    ];
    expect(problemsWith(bad, families)).toEqual([
      "a: polymur_destination_dropped_totl is not in polymur's /metrics",
      'b: polymur_destination_up has no label "reason"',
      'c: no metric of "sum by (destination) (rate(polymur_received_total[5m]))" has label "destination"',
      'd: no metric of "polymur_proxy_link_up == 0" has label "destination"',
      'e: no metric of "polymur_connections" has label "listener"',
    ]);
  });
});
