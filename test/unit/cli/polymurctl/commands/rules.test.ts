import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { rulesCommand } from "../../../../../cli/polymurctl/commands/rules.ts";
import { main } from "../../../../../cli/polymurctl/main.ts";
import { ControlServer } from "../../../../../controlplane/control-server.ts";
import { FileStore } from "../../../../../controlplane/file-store.ts";
import { captureIO } from "../io.ts";

// polymurctl rules against a control plane in this process (the real server, on a port).

const ADMIN = "admin-token-for-rules-cli";
const FLEET = "cluster sinks forward 127.0.0.1:2103 127.0.0.1:2104;\nmatch * send to sinks;\n";
const WEB = "cluster web forward 127.0.0.1:2203;\nmatch * send to web;\n";

let dir: string;
let store: FileStore;
let server: ControlServer;
let server2Url: string;

/** Writes `text` to a file in the test directory; returns its path. */
function file(name: string, text: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

async function ctl(...argv: string[]) {
  const c = captureIO();
  const status = await rulesCommand.run(["--server", server2Url, ...argv], c.io);
  return { status, out: c.stdout(), err: c.stderr() };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "polymurctl-rules-"));
  vi.stubEnv("XDG_CONFIG_HOME", join(dir, "config"));
  vi.stubEnv("POLYMURCTL_CONFIG", "");
  vi.stubEnv("POLYMUR_SERVER", "");
  vi.stubEnv("POLYMUR_ADMIN_TOKEN", ADMIN);
  store = new FileStore(join(dir, "state"));
  await store.open();
  server = await ControlServer.start({
    store,
    credentials: { admin: ADMIN, node: "node-token-for-rules-cli" },
    host: "127.0.0.1",
    port: 0,
    replica: "r1",
    log: pino({ level: "silent" }),
    closeGraceMs: 100,
  });
  server2Url = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server.close();
  await store.close();
  vi.unstubAllEnvs();
  rmSync(dir, { recursive: true, force: true });
});

describe("polymurctl rules", () => {
  it("is a polymurctl command, and its usage says diff's exit statuses", async () => {
    const c = captureIO();
    expect(await main(["rules", "--help"], c.io)).toBe(0);
    expect(c.stdout()).toMatch(/^usage: polymurctl rules set \(--all \| --group NAME\) -f FILE/);
    expect(c.stdout()).toMatch(/Exit status as diff\(1\): 0 no\s+change, 1 changes, 2 trouble/);
    const top = captureIO();
    await main(["--help"], top.io);
    expect(top.stdout()).toMatch(/^ {2}rules +set, show, diff and unset relay\.conf rules/m);
  });

  it("shows that there are none, then sets, shows and diffs the fleet's and a group's", async () => {
    let r = await ctl("show");
    expect(r).toMatchObject({ status: 0, err: "" });
    expect(r.out).toMatch(
      /^no rules for the fleet: its nodes route by destinations and routing policy \(state version \d+\)\n$/,
    );

    const fleet = file("fleet.conf", FLEET);
    r = await ctl("set", "--all", "-f", fleet);
    expect(r).toMatchObject({ status: 0, err: "" });
    expect(r.out).toMatch(
      new RegExp(`^rules ${fleet} set for all nodes \\(state version (\\d+)\\)\\n$`),
    );
    const v = Number(/state version (\d+)/.exec(r.out)![1]);

    r = await ctl("show");
    expect(r.out).toBe(
      `# rules of the fleet: the fleet's (--all), file ${fleet} (state version ${v})\n${FLEET}`,
    );
    r = await ctl("show", "--group", "web");
    expect(r.out).toBe(
      `# rules of group web: the fleet's (group web inherits them), file ${fleet} (state version ${v})\n${FLEET}`,
    );

    // diff: nothing for the same file (0), a unified diff for another (1).
    r = await ctl("diff", "-f", fleet);
    expect(r).toEqual({ status: 0, out: "", err: "" });
    const web = file("web.conf", WEB);
    r = await ctl("diff", "--group", "web", "-f", web);
    expect(r.status).toBe(1);
    expect(r.out).toBe(
      [
        `--- group web: the fleet's (group web inherits them), file ${fleet} (state version ${v})`,
        `+++ ${web}`,
        "@@ -1,2 +1,2 @@",
        "-cluster sinks forward 127.0.0.1:2103 127.0.0.1:2104;",
        "-match * send to sinks;",
        "+cluster web forward 127.0.0.1:2203;",
        "+match * send to web;",
        "",
      ].join("\n"),
    );

    r = await ctl("set", "--group", "web", "-f", web, "--expected-version", String(v));
    expect(r).toMatchObject({
      status: 0,
      out: `rules ${web} set for group web (state version ${v + 1})\n`,
    });
    r = await ctl("show", "--group", "web");
    expect(r.out).toBe(
      `# rules of group web: group web's own, file ${web} (state version ${v + 1})\n${WEB}`,
    );
    r = await ctl("show");
    expect(r.out.split("\n")[0]).toBe(
      `# rules of the fleet: the fleet's (--all), file ${fleet}; groups with rules of their own: web (state version ${v + 1})`,
    );
    r = await ctl("diff", "--group", "web", "-f", web);
    expect(r.status).toBe(0);

    r = await ctl("show", "--group", "web", "--json");
    expect(JSON.parse(r.out)).toEqual({
      version: v + 1,
      scope: { group: "web" },
      from: "group",
      fileName: web,
      text: WEB,
    });

    r = await ctl("unset", "--group", "web");
    expect(r.out).toBe(
      `group web now follows the fleet's rules, if any (state version ${v + 2})\n`,
    );
    r = await ctl("unset", "--group", "web");
    expect(r).toMatchObject({ status: 1, out: "" });
    expect(r.err).toBe(
      "polymurctl rules unset: group web has no rules of its own (polymurctl rules show --group web)\n",
    );
    r = await ctl("unset", "--all", "--json");
    expect(JSON.parse(r.out)).toEqual({ version: v + 3, scope: { all: true }, unset: true });
  });

  it("a broken file is refused with file:line:column as given, and nothing changes", async () => {
    const before = (await ctl("show", "--json")).out;
    const bad = file("bad.conf", "cluster a forward 127.0.0.1:2103;\nmatch * send to nowhere;\n");
    const r = await ctl("set", "--all", "-f", bad);
    expect(r.status).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toMatch(new RegExp(`^polymurctl rules set: ${bad}:2:\\d+: .*nowhere`));
    const j = await ctl("set", "--all", "-f", bad, "--json");
    expect(JSON.parse(j.out).error).toMatchObject({
      exit: 1,
      code: "invalid_argument",
      polymurCode: "POLYMUR_ERR_RULES",
    });
    expect((await ctl("show", "--json")).out).toBe(before);
  });

  it("diff of bytes, and its statuses: 2 for trouble, not 1", async () => {
    const latin = file("latin.conf", Buffer.from("# caf\xe9\n", "latin1"));
    const r = await ctl("diff", "--all", "-f", latin);
    expect(r.status).toBe(1);
    expect(Buffer.from(r.out, "utf8").includes(Buffer.from("+# caf\xef\xbf\xbd", "latin1"))).toBe(
      true,
    );
    // A refused call (a wrong credential) is trouble: 2.
    vi.stubEnv("POLYMUR_ADMIN_TOKEN", "wrong");
    try {
      const refused = await ctl("diff", "-f", latin);
      expect(refused.status).toBe(2);
      expect(refused.err).toMatch(/^polymurctl rules diff: /);
    } finally {
      vi.stubEnv("POLYMUR_ADMIN_TOKEN", ADMIN);
    }
    expect((await ctl("diff", "-f", join(dir, "missing.conf"))).status).toBe(2);
  });

  it("usage errors exit 2 with a one-line reason", async () => {
    const fleet = file("fleet2.conf", FLEET);
    for (const [argv, message] of [
      [["set", "-f", fleet], "say where: --all (every node) or --group NAME"],
      [["set", "--all"], "say which file: -f relay.conf"],
      [["set", "--all", "--group", "g", "-f", fleet], "give --all or --group NAME, not both"],
      [["show", "--all"], "rules show shows the fleet's rules; --group NAME for a group's"],
      [["unset", "--all", "-f", fleet], "rules unset takes no file"],
      [
        ["set", "--all", "-f", join(dir, "nope.conf")],
        `-f ${join(dir, "nope.conf")}: no such file`,
      ],
      [["frob"], 'unknown rules command "frob" (set, unset, show, diff)'],
      [[], "rules needs set, unset, show or diff (see --help)"],
    ] as const) {
      const r = await ctl(...argv);
      expect(r.status, argv.join(" ")).toBe(2);
      expect(r.err).toBe(
        `polymurctl rules${argv[0] === undefined ? "" : ` ${argv[0]}`}: ${message}\n`,
      );
    }
  });
});
