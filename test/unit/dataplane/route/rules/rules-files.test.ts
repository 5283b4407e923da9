import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../../../common/errors.ts";
import { RulesError } from "../../../../../dataplane/route/rules/rules-config.ts";
import { fileIncludeReader, loadRules } from "../../../../../dataplane/route/rules/rules-files.ts";
import {
  fnmatch,
  hasGlobMagic,
  posixGlob,
} from "../../../../../dataplane/route/rules/rules-glob.ts";

const root = mkdtempSync(join(tmpdir(), "rules-files-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;

/** A fresh directory holding `files` (relative path → text). */
function tree(files: Record<string, string>): string {
  const dir = join(root, String(n++));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(dir, rel, ".."), { recursive: true });
    writeFileSync(join(dir, rel), text, "latin1");
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

function loadError(path: string): RulesError {
  try {
    loadRules(path);
  } catch (err) {
    if (err instanceof RulesError) return err;
    throw err;
  }
  throw new Error("loaded without an error");
}

const cwd = process.cwd();
afterEach(() => process.chdir(cwd));

describe("loadRules", () => {
  it("reads a file and its includes, globs in sorted order", () => {
    const dir = tree({
      "conf.d/20-c.conf": "cluster c forward 127.0.0.3;\n",
      "conf.d/10-b.conf": "cluster b forward 127.0.0.2;\n",
      "conf.d/.hidden.conf": "this is not read",
      "conf.d/notes.txt": "nor is this",
    });
    const main = join(dir, "relay.conf");
    writeFileSync(
      main,
      `cluster a forward 127.0.0.1;\ninclude ${dir}/conf.d/*.conf;\nmatch * send to c;\n`,
    );
    const cfg = loadRules(main);
    expect(cfg.files).toEqual([main, `${dir}/conf.d/10-b.conf`, `${dir}/conf.d/20-c.conf`]);
    expect(cfg.clusters.map((c) => c.name)).toEqual(["a", "b", "c"]);
  });

  it("resolves include paths against the working directory, as carbon-c-relay does", () => {
    const dir = tree({
      "etc/relay.conf": "include inc/x.conf;\n",
      "etc/inc/x.conf": "cluster from_etc forward 127.0.0.1;\n",
      "inc/x.conf": "cluster from_cwd forward 127.0.0.1;\n",
    });
    process.chdir(dir);
    expect(loadRules("etc/relay.conf").clusters[0]!.name).toBe("from_cwd");
    expect(loadRules(join(dir, "etc/relay.conf")).files).toEqual([
      join(dir, "etc/relay.conf"),
      "inc/x.conf",
    ]);
  });

  it("reports include failures at the include's path", () => {
    const dir = tree({ "d/x": "", "self.conf": "" });
    const file = (text: string): string => {
      const p = join(dir, `m${n++}.conf`);
      writeFileSync(p, text);
      return p;
    };
    const e1 = loadError(file(`\n  include ${dir}/d/*.conf;\n`));
    expect(e1.pos).toMatchObject({ line: 2, column: 11 });
    expect(e1.detail).toBe(`no file matches "${dir}/d/*.conf"`);
    expect(loadError(file(`include ${dir}/none.conf;`)).detail).toBe(
      `cannot read "${dir}/none.conf": no such file`,
    );
    expect(loadError(file(`include ${dir}/d;`)).detail).toBe(
      `cannot read "${dir}/d": not a regular file`,
    );
    expect(loadError(file(`include ${dir}/[d];`)).detail).toBe(
      `cannot read "${dir}/d": not a regular file`,
    );
    const self = join(dir, "self.conf");
    writeFileSync(self, `include ${self};`);
    expect(loadError(self).message).toBe(
      `${self}:1:9: include cycle: "${self}" is already being read`,
    );
  });

  it("finds a cycle through another name of the same file", () => {
    const dir = tree({ "a.conf": "", "b.conf": "" });
    symlinkSync(join(dir, "a.conf"), join(dir, "alias.conf"));
    writeFileSync(join(dir, "a.conf"), `include ${dir}/b.conf;`);
    writeFileSync(join(dir, "b.conf"), `include ${dir}/alias.conf;`);
    expect(loadError(join(dir, "a.conf")).detail).toContain('include cycle: "');
  });

  it("throws PolymurError when the file itself cannot be read", () => {
    const dir = tree({});
    try {
      loadRules(join(dir, "missing.conf"));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(PolymurError);
      expect((err as PolymurError).code).toBe(ErrorCode.Rules);
      expect((err as Error).message).toContain("no such file");
    }
    expect(() => loadRules(dir)).toThrow("not a regular file");
  });

  it("reads bytes as latin1", () => {
    const dir = tree({});
    const p = join(dir, "r.conf");
    writeFileSync(p, Buffer.from('match "caf\xe9" send to blackhole;\n', "latin1"));
    const m = loadRules(p).rules[0]!;
    expect(m.kind === "match" && m.exprs![0]!.source).toBe("caf\xe9");
  });

  it("expands a plain path to itself", () => {
    const dir = tree({ "x.conf": "" });
    expect(fileIncludeReader.expand(join(dir, "x.conf"))).toEqual([join(dir, "x.conf")]);
  });
});

describe("posixGlob", () => {
  it("matches per component, sorted by bytes, with hidden files only for a leading dot", () => {
    const dir = tree({
      "a/1.conf": "",
      "a/B.conf": "",
      "a/.h.conf": "",
      "b/2.conf": "",
      "b/x/3.conf": "",
      "c.conf": "",
    });
    expect(posixGlob(`${dir}/*/*.conf`)).toEqual([
      `${dir}/a/1.conf`,
      `${dir}/a/B.conf`,
      `${dir}/b/2.conf`,
    ]);
    expect(posixGlob(`${dir}/a/.*`)).toEqual([`${dir}/a/.`, `${dir}/a/..`, `${dir}/a/.h.conf`]);
    expect(posixGlob(`${dir}/?/x/3.conf`)).toEqual([`${dir}/b/x/3.conf`]);
    expect(posixGlob(`${dir}/?/none.conf`)).toEqual([]);
    expect(posixGlob(`${dir}/[ab]/[![:digit:]]*`)).toEqual([`${dir}/a/B.conf`, `${dir}/b/x`]);
    process.chdir(dir);
    expect(posixGlob("*.conf")).toEqual(["c.conf"]);
  });

  it("implements fnmatch with FNM_PERIOD", () => {
    const cases: [string, string, boolean][] = [
      ["*.conf", "a.conf", true],
      ["*.conf", ".a.conf", false],
      [".*", ".a", true],
      ["?a", ".a", false],
      ["[.]a", ".a", false],
      ["a*b*c", "aXbYbc", true],
      ["a*b*c", "aXbY", false],
      ["[a-c]x", "bx", true],
      ["[!a-c]x", "bx", false],
      ["[^a-c]x", "dx", true],
      ["[]]", "]", true],
      ["[a-]", "-", true],
      ["[[:upper:]]*", "Q1", true],
      ["[[:upper:]]*", "q1", false],
      ["\\*", "*", true],
      ["\\*", "a", false],
      ["[ab", "[ab", true],
      ["", "", true],
    ];
    for (const [p, s, want] of cases) expect([p, s, fnmatch(p, s)]).toEqual([p, s, want]);
  });

  it("knows a glob as carbon-c-relay does", () => {
    expect(hasGlobMagic("a/*.conf")).toBe(true);
    expect(hasGlobMagic("a?")).toBe(true);
    expect(hasGlobMagic("a[1]")).toBe(true);
    expect(hasGlobMagic("a[1")).toBe(false);
    expect(hasGlobMagic("plain.conf")).toBe(false);
  });
});
