import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { posix } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// docs/architecture.md, section "Import rules", is the single source of the rules:
// a module in folder F (its directory, exactly) may import modules in F, in common/,
// in gen/ and in the folders (or single files) listed in F's row; and there are no
// import cycles. The graph is hand-built (as madge would, without the dependency):
// every relative import of every module, type-only and dynamic ones included, and
// `new URL("./x", import.meta.url)` (a forked worker's entry): design dependencies all.

const SOURCE_ROOTS = ["dataplane", "controlplane", "cli", "common"];
/** Folders every module may import, subfolders included. */
const SHARED_ROOTS = ["common", "gen"];

type Rules = Map<string, string[]>;
type Graph = Map<string, string[]>;

/** The `| folder | may import |` table of the "Import rules" section of `markdown`. */
function parseRules(markdown: string): Rules {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => /^#+\s+Import rules\s*$/.test(l));
  if (start < 0) throw new Error('no "Import rules" heading');
  const level = lines[start]!.indexOf(" ");
  const end = lines.findIndex((l, i) => i > start && /^#+\s/.test(l) && l.indexOf(" ") <= level);
  const rows = lines
    .slice(start + 1, end < 0 ? undefined : end)
    .filter((l) => l.trim().startsWith("|"))
    .map((l) => l.trim().replace(/^\|/, "").replace(/\|$/, "").split("|"));
  const header = rows[0]?.map((c) => c.trim());
  if (header?.[0] !== "folder" || header[1] !== "may import" || header.length !== 2) {
    throw new Error('"Import rules" has no `| folder | may import |` table');
  }
  const rules: Rules = new Map();
  for (const cells of rows.slice(2)) {
    const [folder, ...extra] = backquoted(cells[0] ?? "");
    if (folder === undefined || extra.length > 0 || cells.length !== 2) {
      throw new Error(`bad import rules row: |${cells.join("|")}|`);
    }
    if (rules.has(folder)) throw new Error(`two import rules rows for ${folder}`);
    rules.set(folder, backquoted(cells[1]!));
  }
  if (rules.size === 0) throw new Error('"Import rules" table has no rows');
  return rules;
}

/** The backquoted paths of a table cell, which must hold nothing else. */
function backquoted(cell: string): string[] {
  if (cell.replace(/`[^`]+`/g, "").replace(/[\s,]/g, "") !== "") {
    throw new Error(`import rules cell holds more than backquoted paths: ${cell.trim()}`);
  }
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!.replace(/\/$/, ""));
}

/** The module specifiers that `source` imports, including `new URL("./x", import.meta.url)`. */
function importsOf(source: string): string[] {
  // TypeScript's own scanner: it skips comments and strings, and sees type-only,
  // re-export, side-effect and dynamic (even multi-line) imports.
  const specs = ts.preProcessFile(source, true, false).importedFiles.map((f) => f.fileName);
  const url =
    /new URL\(\s*[`'"](\.\.?\/[\w./-]+)(?:\$\{[^}]*\})?[`'"]\s*,\s*import\.meta\.url\s*\)/g;
  for (const m of source.matchAll(url)) specs.push(m[1]!);
  return specs;
}

/** The repo-relative module that `spec`, imported by `from`, names; null if none exists. */
function resolveImport(from: string, spec: string, exists: (path: string) => boolean) {
  const base = posix.join(posix.dirname(from), spec);
  const candidates = [base, base.replace(/\.js$/, ".ts"), `${base}.ts`, `${base}/index.ts`];
  return candidates.find((c) => c.endsWith(".ts") && exists(c)) ?? null;
}

/** Every import of `graph` that the rules forbid, and every folder the rules do not cover. */
function violations(graph: Graph, rules: Rules): string[] {
  const out: string[] = [];
  for (const [from, targets] of graph) {
    const folder = posix.dirname(from);
    const allowed = rules.get(folder);
    if (allowed === undefined) {
      out.push(`${from}: ${folder} has no row in the import rules`);
      continue;
    }
    for (const to of targets) {
      const target = posix.dirname(to);
      const ok =
        target === folder ||
        SHARED_ROOTS.some((r) => target === r || target.startsWith(`${r}/`)) ||
        allowed.includes(target) ||
        allowed.includes(to);
      if (!ok) {
        const may = [folder, ...SHARED_ROOTS, ...allowed].join(", ");
        out.push(`${from} imports ${to}: ${folder} may import only ${may}`);
      }
    }
  }
  return out;
}

/** The import cycles of `graph`, one per strongly connected component (Tarjan), as paths. */
function cycles(graph: Graph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1 || graph.get(v)?.includes(v)) found.push(shortestCycle(graph, scc));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/** One shortest cycle through the first (sorted) module of a strongly connected component. */
function shortestCycle(graph: Graph, scc: string[]): string[] {
  const members = new Set(scc);
  const start = [...scc].sort()[0]!;
  const parent = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    for (const w of graph.get(v) ?? []) {
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = parent.get(u)!) path.splice(1, 0, u);
        return [...path, start];
      }
      if (members.has(w) && !parent.has(w)) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return scc;
}

describe("import rule checker (synthetic inputs)", () => {
  const doc = [
    "# Arch",
    "## Import rules",
    "Prose.",
    "| folder | may import |",
    "| --- | --- |",
    "| `a` | |",
    "| `b` | `a`, `c/one.ts` |",
    "## Next",
    "| `z` | |",
  ].join("\n");

  it("parses the rules table of its section only", () => {
    expect(parseRules(doc)).toEqual(
      new Map([
        ["a", []],
        ["b", ["a", "c/one.ts"]],
      ]),
    );
  });

  it("fails clearly on a missing section, table or malformed row", () => {
    expect(() => parseRules("# Arch\n")).toThrow('no "Import rules" heading');
    expect(() => parseRules("## Import rules\nnone\n")).toThrow("no `| folder | may import |`");
    expect(() => parseRules(doc.replace("`a`, `c", "a, `c"))).toThrow("more than backquoted");
    expect(() => parseRules(doc.replace("| `b` |", "| `a` |"))).toThrow("two import rules rows");
  });

  it("finds every kind of import and no false ones", () => {
    const source = [
      'import type { A } from "./a.ts";',
      'import { type B, c } from "../b.ts";',
      'import "./side.ts";',
      'export * from "./star.ts";',
      'export type { T } from "./t.ts";',
      'import { readFileSync } from "node:fs";',
      '// import { x } from "./comment.ts";',
      "const s = \"import y from './string.ts'\";",
      "const m = await import(",
      '  "./split.ts"',
      ");",
      `const w = new URL(\`./worker\${extname(import.meta.url)}\`, import.meta.url);`,
    ].join("\n");
    expect(importsOf(source)).toEqual([
      "./a.ts",
      "../b.ts",
      "./side.ts",
      "./star.ts",
      "./t.ts",
      "node:fs",
      "./split.ts",
      "./worker",
    ]);
  });

  it("resolves specifiers to repo-relative modules", () => {
    const files = new Set(["x/y/z.ts", "x/w.ts", "x/v/index.ts"]);
    const exists = (p: string) => files.has(p);
    expect(resolveImport("x/y/a.ts", "./z.ts", exists)).toBe("x/y/z.ts");
    expect(resolveImport("x/y/a.ts", "../w.js", exists)).toBe("x/w.ts");
    expect(resolveImport("x/y/a.ts", "../w", exists)).toBe("x/w.ts");
    expect(resolveImport("x/y/a.ts", "../v", exists)).toBe("x/v/index.ts");
    expect(resolveImport("x/y/a.ts", "./missing.ts", exists)).toBeNull();
  });

  it("flags imports against the rules and folders without a row", () => {
    const rules: Rules = new Map([
      ["a", []],
      ["a/sub", []],
      ["b", ["a", "c/one.ts"]],
      ["c", []],
    ]);
    const graph: Graph = new Map([
      ["a/x.ts", ["a/y.ts", "common/log.ts", "gen/p/v1/m_pb.ts"]],
      ["a/sub/s.ts", ["a/x.ts"]],
      ["b/x.ts", ["a/x.ts", "c/one.ts", "c/two.ts"]],
      ["d/x.ts", []],
    ]);
    expect(violations(graph, rules)).toEqual([
      "a/sub/s.ts imports a/x.ts: a/sub may import only a/sub, common, gen",
      "b/x.ts imports c/two.ts: b may import only b, common, gen, a, c/one.ts",
      "d/x.ts: d has no row in the import rules",
    ]);
  });

  it("finds every cycle, self-imports included, and nothing in a DAG", () => {
    const graph: Graph = new Map([
      ["a", ["b"]],
      ["b", ["c", "d"]],
      ["c", ["a"]],
      ["d", ["e"]],
      ["e", []],
      ["f", ["f"]],
      ["g", ["a", "e"]],
    ]);
    expect(cycles(graph)).toEqual([
      ["a", "b", "c", "a"],
      ["f", "f"],
    ]);
    graph.set("c", []);
    graph.set("f", []);
    expect(cycles(graph)).toEqual([]);
  });
});

describe("import rules of docs/architecture.md (this repository)", () => {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const exists = (p: string) => existsSync(posix.join(root, p));
  const rules = parseRules(readFileSync(posix.join(root, "docs/architecture.md"), "utf8"));
  const modules = SOURCE_ROOTS.flatMap((r) =>
    readdirSync(posix.join(root, r), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
      .map((f) => posix.join(r, f.split("\\").join("/"))),
  ).sort();
  const unresolved: string[] = [];
  const graph: Graph = new Map();
  for (const file of modules) {
    const specs = importsOf(readFileSync(posix.join(root, file), "utf8"));
    const targets = new Set<string>();
    for (const spec of specs.filter((s) => s.startsWith("."))) {
      const to = resolveImport(file, spec, exists);
      if (to === null) unresolved.push(`${file} imports ${spec}, which does not exist`);
      else targets.add(to);
    }
    graph.set(file, [...targets].sort());
  }

  it("names only folders and files that exist", () => {
    const named = [...rules].flatMap(([folder, allowed]) => [folder, ...allowed]);
    const missing = named.filter((p) => {
      const path = posix.join(root, p);
      return !existsSync(path) || statSync(path).isDirectory() === p.endsWith(".ts");
    });
    expect(missing.map((p) => `import rules name ${p}, which does not exist`)).toEqual([]);
  });

  it("sees the modules and resolves every relative import", () => {
    expect(modules.length).toBeGreaterThan(50);
    expect(unresolved).toEqual([]);
  });

  it("has no import against the rules", () => {
    expect(violations(graph, rules)).toEqual([]);
  });

  it("has no import cycle", () => {
    expect(cycles(graph).map((c) => c.join(" → "))).toEqual([]);
  });
});
