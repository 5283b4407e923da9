/**
 * `polymurctl route test`: a relay.conf's decisions for lines on stdin, without a
 * control plane (test/integration/rules-ccr*.test.ts compare it with carbon-c-relay).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { routeCommand } from "../../../../../cli/polymurctl/commands/route.ts";
import { captureIO } from "../io.ts";

let dir = "";
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "polymur-route-test-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function conf(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const RULES = `cluster a forward 127.0.0.1:2001 [::1]:2002 ;
cluster h carbon_ch 127.0.1.1:2003 127.0.1.2:2003 ;
rewrite ^old\\.(.*) into new.\\1 ;
match ^drop send to blackhole ;
match * validate ^[0-9] else drop ;
aggregate ^(agg)\\.x every 10 seconds expire after 20 seconds compute sum write to \\1.sum ;
match ^new send to a stop ;
match * send to h ;
`;

async function run(argv: readonly string[], input: string) {
  const c = captureIO(input);
  const status = await routeCommand.run(argv, c.io);
  return { status, out: c.stdout(), err: c.stderr() };
}

describe("polymurctl route test", () => {
  it("prints one JSON object per input line, in order", async () => {
    const path = conf("a.conf", RULES);
    const input = [
      "old.x 1 1700000000",
      "drop.me 1 1700000000",
      "v.x abc 1700000000",
      "bad line",
      "agg.x 2 1700000000",
      "",
      "caf\u00e9.x 1 1700000000\r",
    ].join("\n");
    const r = await run(["test", "--rules", path, "--json"], input);
    expect(r.err).toBe("");
    expect(r.status).toBe(0);
    const lines = r.out
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.line)).toEqual([
      "old.x 1 1700000000",
      "drop.me 1 1700000000",
      "v.x abc 1700000000",
      "bad line",
      "agg.x 2 1700000000",
      "",
      "caf\u00e9.x 1 1700000000",
    ]);
    expect(lines[0]).toEqual({
      line: "old.x 1 1700000000",
      sends: [
        { cluster: "a", destination: "127.0.0.1:2001", metric: "new.x" },
        { cluster: "a", destination: "[::1]:2002", metric: "new.x" },
      ],
      blackholed: false,
      aggregates: [],
      dropped: null,
    });
    expect(lines[1]).toMatchObject({ sends: [], blackholed: true, dropped: null });
    // An invalid line: the line validator's reason (a valid value would reach validate).
    expect(lines[2]).toMatchObject({ sends: [], dropped: "bad_value" });
    expect(lines[3]).toMatchObject({ sends: [], dropped: "field_count" });
    expect(lines[4]).toMatchObject({ aggregates: [{ cluster: null, metric: "agg.sum" }] });
    expect(lines[4].sends).toHaveLength(1);
    expect(lines[5]).toMatchObject({ dropped: "empty_line" });
    expect(lines[6].sends).toEqual([
      {
        cluster: "h",
        destination: expect.stringMatching(/^127\.0\.1\.[12]:2003$/),
        metric: "caf\u00e9.x",
      },
    ]);
  });

  it("reports a validate drop", async () => {
    const path = conf(
      "v.conf",
      "cluster a forward 127.0.0.1:2001 ;\nmatch * validate ^[0-9] else drop ;\nmatch * send to a ;\n",
    );
    const r = await run(["test", "--rules", path, "--json"], "x -1.5 1700000000\n");
    expect(JSON.parse(r.out)).toEqual({
      line: "x -1.5 1700000000",
      sends: [],
      blackholed: false,
      aggregates: [],
      dropped: "validate",
    });
  });

  it("prints a readable trace without --json", async () => {
    const path = conf("b.conf", RULES);
    const r = await run(["test", "--rules", path], "old.x 1 2\nzzz 1 2\nfoo\n");
    expect(r.status).toBe(0);
    expect(r.out).toContain(
      "old.x 1 2\n    send a 127.0.0.1:2001 new.x\n    send a [::1]:2002 new.x\n",
    );
    expect(r.out).toMatch(/zzz 1 2\n {4}send h 127\.0\.1\.[12]:2003 zzz\n/);
    expect(r.out).toContain("foo\n    dropped: field_count\n");
  });

  it("streams: a long input in many chunks, lines split across them", async () => {
    const path = conf("c.conf", RULES);
    const n = 20000;
    const text = Array.from({ length: n }, (_, i) => `old.m${i} ${i} 1700000000\n`).join("");
    const chunks: Buffer[] = [];
    for (let i = 0; i < text.length; i += 997) chunks.push(Buffer.from(text.slice(i, i + 997)));
    let out = "";
    let writes = 0;
    const status = await routeCommand.run(["test", "--rules", path, "--json"], {
      stdin: Readable.from(chunks),
      stdout: new Writable({
        highWaterMark: 1024,
        write(chunk, _e, cb) {
          writes++;
          out += String(chunk);
          setImmediate(cb);
        },
      }),
      stderr: new Writable({ write: (_c, _e, cb) => cb() }),
    });
    expect(status).toBe(0);
    const lines = out.trimEnd().split("\n");
    expect(lines).toHaveLength(n);
    expect(JSON.parse(lines[n - 1]!).sends[0].metric).toBe(`new.m${n - 1}`);
    expect(writes).toBeGreaterThan(1);
  });

  it("an error in the rules file prints file:line:column and exits 2", async () => {
    const path = conf("bad.conf", "cluster a forward 127.0.0.1:2001 ;\nmatch ^a( send to a ;\n");
    const r = await run(["test", "--rules", path], "a 1 2\n");
    expect(r.status).toBe(2);
    expect(r.err).toMatch(new RegExp(`^polymurctl route test: ${path}:2:\\d+: `));
    expect(r.out).toBe("");
  });

  it("needs --rules, and a readable file", async () => {
    let r = await run(["test"], "");
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/needs --rules/);
    r = await run(["test", "--rules", join(dir, "missing.conf")], "");
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/missing\.conf/);
  });
});
