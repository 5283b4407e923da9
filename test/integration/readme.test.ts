// The README's commands, run as written on a fresh clone. What is tested is
// what is COMMITTED: the clone is `git clone` of this checkout, i.e. its HEAD,
// without uncommitted changes. Every command line of the README's ```sh
// blocks (and of its `$ ` transcripts) must match exactly one entry of
// COMMANDS below, run or deliberately not run with the reason: a command added
// to the README fails this test until it is classified here.
//
// How the commands are run, and the only liberties taken:
//  - in `sh -c`, in the clone, with the PATH of this test (the system's npm,
//    as a reader would have it);
//  - the listeners a command does not name come from POLYMUR_* variables
//    (127.0.0.1, port 0), so a run never collides with other tests; a command
//    that names one (`--listen-addr 0.0.0.0:2003`) gets 127.0.0.1:0 instead;
//  - example destinations (10.0.5.30:2003, 127.0.0.1:2103, ...) become local
//    line sinks, and /etc/carbon-c-relay.conf and sample-lines temp files;
//  - `npm ci` runs with npm_config_prefer_offline (from npm's cache when it can).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import { waitFor } from "../fixtures/until.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Not run, and why: matched against each command line of the README. */
const NOT_RUN: ReadonlyArray<{ match: RegExp; why: string }> = [
  {
    match: /^bash scripts\/install-test-deps\.sh && npm test$/,
    why: "needs root and apt, then runs the whole suite",
  },
  {
    match: /^polymur gateway --listen-addr 0\.0\.0\.0:8443 --tls-cert gw\.pem/,
    why: "needs a TLS certificate and key",
  },
  {
    match: /^POLYMUR_API_KEY=… polymur proxy --gateway https:\/\/gw\.example\.com/,
    why: "needs a gateway at gw.example.com and a real API key",
  },
];

/** Run by the tests below: each names the command lines it runs. */
const RUN = {
  quickStart: /^npm ci && npx polymur$/,
  relayTwo: /^npx polymur relay --destinations 10\.0\.5\.30:2003,10\.0\.5\.31:2003$/,
  relayListen:
    /^npx polymur relay --listen-addr 0\.0\.0\.0:2003 --destinations 127\.0\.0\.1:2103,127\.0\.0\.1:2203$/,
  hashRoute:
    /^npx polymur relay --distribution hash-route --hash carbon_ch .*--destinations 10\.0\.5\.30:2003:a,10\.0\.5\.31:2003:b,10\.0\.5\.32:2003:c$/,
  rulesRelay: /^npx polymur relay --rules \/etc\/carbon-c-relay\.conf$/,
  routeTest: /^npx polymurctl route test --rules \/etc\/carbon-c-relay\.conf < sample-lines$/,
  lineApi: /^echo (putdest|getdest|deldest)\b.*\| nc -q1 127\.0\.0\.1 2030$/,
} as const;

interface ReadmeCommand {
  text: string;
  /** The output the README shows after a `$ ` command (transcripts only). */
  output: string[];
}

/** Command lines of ```sh blocks and of `$ ` transcripts, continuations joined, comments dropped. */
function readmeCommands(readme: string): ReadmeCommand[] {
  const commands: ReadmeCommand[] = [];
  for (const m of readme.matchAll(/^( *)```(\w*)\n([\s\S]*?)^\1```$/gm)) {
    const lines = m[3]!.split("\n").map((l) => l.slice(m[1]!.length));
    const transcript = lines.some((l) => l.startsWith("$ "));
    if (m[2] !== "sh" && !transcript) continue;
    for (let i = 0; i < lines.length; i++) {
      let line = lines[i]!;
      if (transcript && !line.startsWith("$ ")) {
        commands.at(-1)?.output.push(line);
        continue;
      }
      line = line.replace(/^\$ /, "");
      while (line.endsWith("\\") && i + 1 < lines.length)
        line = `${line.slice(0, -1)} ${lines[++i]!.trim()}`;
      line = line.replace(/\s+#.*$/, "").trim();
      if (line !== "") commands.push({ text: line.replace(/\s+/g, " "), output: [] });
    }
  }
  return commands;
}

function run(command: string, cwd: string, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      "sh",
      ["-c", command],
      { cwd, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`${command}: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

/** A long-running README command in its own process group, its stdout parsed for JSON log lines. */
class Running {
  readonly child: ChildProcess;
  out = "";
  readonly exit: Promise<number | null>;

  constructor(command: string, cwd: string, env: NodeJS.ProcessEnv) {
    this.child = spawn("sh", ["-c", command], {
      cwd,
      env: { ...process.env, ...env },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child.stdout!.setEncoding("utf8").on("data", (d: string) => {
      this.out += d;
    });
    this.child.stderr!.setEncoding("utf8").on("data", (d: string) => {
      this.out += d;
    });
    this.exit = new Promise((resolve) => this.child.once("close", (code) => resolve(code)));
  }

  logLines(): Array<Record<string, unknown>> {
    return this.out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async listening(timeoutMs = 20_000): Promise<Record<string, unknown>> {
    try {
      return await waitFor(
        "listening",
        () => this.logLines().find((l) => l["msg"] === "listening"),
        timeoutMs,
        50,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; output:\n${this.out}`);
    }
  }

  /**
   * SIGTERM to the group (sh, npx, polymur), as a terminal's Ctrl-C reaches
   * them all; resolves with polymur's own account of its stop (npm, killed by
   * the signal too, reports no status of its own), once the whole group is gone.
   */
  async stop(): Promise<string> {
    try {
      process.kill(-this.child.pid!, "SIGTERM");
    } catch {
      // gone
    }
    await this.exit;
    await waitFor(
      "the process group to be gone",
      () => (groupGone(this.child.pid!) ? true : undefined),
      15_000,
      20,
    );
    return this.logLines().find((l) => String(l["msg"]).startsWith("shutdown complete"))?.[
      "msg"
    ] as string;
  }
}

function groupGone(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return false;
  } catch {
    return true;
  }
}

const PORTS_ENV = {
  POLYMUR_LISTEN_ADDR: "127.0.0.1:0",
  POLYMUR_API_ADDR: "127.0.0.1:0",
  POLYMUR_STAT_ADDR: "127.0.0.1:0",
  POLYMUR_METRICS_FLUSH: "0",
  POLYMUR_WORKERS: "1",
};

describe("README commands, on a fresh clone of HEAD", () => {
  let tmp = "";
  let clone = "";
  let commands: ReadmeCommand[] = [];
  let quickStart: Running | undefined;
  const sinks: LineSink[] = [];

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), "polymur-readme-"));
    clone = path.join(tmp, "polymur");
    await run(`git clone -q ${JSON.stringify(ROOT)} ${JSON.stringify(clone)}`, tmp);
    commands = readmeCommands(await readFile(path.join(clone, "README.md"), "utf8"));
    for (let i = 0; i < 3; i++) sinks.push(await LineSink.start());
  }, 60_000);

  afterAll(async () => {
    await quickStart?.stop();
    for (const s of sinks) await s.close();
    // npx keeps a link to the clone in its cache (<cache>/_npx/<hash of the path>): remove it.
    if (clone !== "") {
      const cache = (await run("npm config get cache", tmp).catch(() => "")).trim();
      const hash = createHash("sha512").update(clone).digest("hex").slice(0, 16);
      if (cache !== "") await rm(path.join(cache, "_npx", hash), { recursive: true, force: true });
    }
    if (tmp !== "") await rm(tmp, { recursive: true, force: true });
  });

  /** The README command matching `re` (exactly one must). */
  function command(re: RegExp): ReadmeCommand {
    const found = commands.filter((c) => re.test(c.text));
    expect(
      found.map((c) => c.text),
      String(re),
    ).toHaveLength(1);
    return found[0]!;
  }

  /** Replaces the README's example destinations with the local sinks. */
  function withSinks(text: string): string {
    const [a, b, c] = sinks.map((s) => s.address) as [string, string, string];
    return text
      .replaceAll("10.0.5.30:2003", a)
      .replaceAll("10.0.5.31:2003", b)
      .replaceAll("10.0.5.32:2003", c)
      .replaceAll("127.0.0.1:2103", a)
      .replaceAll("127.0.0.1:2203", b)
      .replaceAll("--listen-addr 0.0.0.0:2003", "--listen-addr 127.0.0.1:0");
  }

  it("every command in the README is run here or listed as not run", () => {
    const patterns = [...Object.values(RUN), ...NOT_RUN.map((n) => n.match)];
    const unclassified = commands.filter(
      (c) => patterns.filter((p) => p.test(c.text)).length !== 1,
    );
    expect(unclassified.map((c) => c.text)).toEqual([]);
    expect(commands.length).toBeGreaterThan(5);
  });

  it("quick start: npm ci && npx polymur (a relay; it says it has no destinations)", async () => {
    const c = command(RUN.quickStart);
    quickStart = new Running(c.text, clone, {
      ...PORTS_ENV,
      npm_config_prefer_offline: "true",
      npm_config_audit: "false",
      npm_config_fund: "false",
    });
    const l = await quickStart.listening(85_000);
    expect(l["role"]).toBe("relay");
    expect(quickStart.out).toMatch(/no destinations/i);
    expect(await quickStart.stop()).toMatch(/^shutdown complete/);
  }, 100_000);

  for (const [name, re, expectAt] of [
    ["npx polymur relay --destinations (two)", RUN.relayTwo, [0, 1]],
    ["npx polymur relay --listen-addr ... (the sample run)", RUN.relayListen, [0, 1]],
    ["npx polymur relay --distribution hash-route ...", RUN.hashRoute, []],
  ] as const) {
    it(`${name}: forwards to its destinations`, async () => {
      const c = command(re);
      const relay = new Running(withSinks(c.text), clone, PORTS_ENV);
      try {
        const l = await relay.listening();
        // The sample output's "listening" line has the same fields as the real one.
        const sample = c.output.find((o) => o.includes('"msg":"listening"'));
        if (sample !== undefined) {
          expect(Object.keys(l).sort()).toEqual(
            Object.keys(JSON.parse(sample.replaceAll("…", "x"))).sort(),
          );
        }
        const metric = `readme.${name.length}.${Date.now()}`;
        await sendLines(l["port"] as number, `${metric} 1 1700000000\n`);
        const at = expectAt.length > 0 ? expectAt : [0, 1, 2];
        const want = expectAt.length > 0 ? expectAt.length : 1; // hash-route: exactly one of three
        await waitFor(
          `${metric} at ${want} sink(s)`,
          () =>
            at.filter((i) => sinks[i]!.lines.some((x) => x.startsWith(metric))).length === want
              ? true
              : undefined,
          10_000,
          20,
        );
      } finally {
        expect(await relay.stop()).toMatch(/^shutdown complete/);
      }
    });
  }

  it("npx polymur relay --rules and npx polymurctl route test --rules", async () => {
    const rules = path.join(tmp, "carbon-c-relay.conf");
    await writeFile(
      rules,
      `cluster caches forward ${sinks[0]!.address} ${sinks[1]!.address};\n` +
        "match ^dropped\\. send to blackhole stop;\nmatch * send to caches;\n",
    );
    await writeFile(
      path.join(tmp, "sample-lines"),
      "app.requests 1 1700000000\ndropped.x 1 1700000000\n",
    );
    const fromTmp = (t: string): string =>
      t
        .replaceAll("/etc/carbon-c-relay.conf", rules)
        .replace("< sample-lines", `< ${JSON.stringify(path.join(tmp, "sample-lines"))}`);
    const routed = await run(fromTmp(command(RUN.routeTest).text), clone);
    expect(routed).toContain(sinks[0]!.address);
    expect(routed).toMatch(/blackhole/);

    const relay = new Running(fromTmp(command(RUN.rulesRelay).text), clone, PORTS_ENV);
    try {
      const l = await relay.listening();
      await sendLines(
        l["port"] as number,
        "rules.readme 1 1700000000\ndropped.readme 1 1700000000\n",
      );
      await waitFor(
        "rules.readme at both",
        () =>
          sinks.slice(0, 2).every((s) => s.lines.some((x) => x.startsWith("rules.readme ")))
            ? true
            : undefined,
        10_000,
        20,
      );
      expect(sinks.some((s) => s.lines.some((x) => x.startsWith("dropped.readme")))).toBe(false);
    } finally {
      expect(await relay.stop()).toMatch(/^shutdown complete/);
    }
  });

  it("the line API transcript, against a relay started with 10.0.5.31:2003 as it implies", async () => {
    const transcript = commands.filter((c) => RUN.lineApi.test(c.text));
    expect(transcript.length).toBe(3);
    const relay = new Running("npx polymur relay --destinations 10.0.5.31:2003", clone, PORTS_ENV);
    try {
      const l = await relay.listening();
      for (const c of transcript) {
        const out = await run(c.text.replace(/ 2030$/, ` ${l["apiPort"] as number}`), clone);
        expect(out.trimEnd().split("\n"), c.text).toEqual(c.output.filter((o) => o !== ""));
      }
    } finally {
      expect(await relay.stop()).toMatch(/^shutdown complete/);
    }
  });
});
