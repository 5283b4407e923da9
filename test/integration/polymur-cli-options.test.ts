// How `polymur` answers a command line it cannot run: one line on stderr in
// our words (with the POLYMUR_ERR_* code when the error has one), exit 2; and
// a Go polymur command line still starts a relay.
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";
import { until } from "../fixtures/until.ts";

const BIN = fileURLToPath(new URL("../../bin/polymur.js", import.meta.url));

/** Runs `polymur ...args` to completion (each case fails before listening on anything). */
function polymur(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe("polymur option errors", () => {
  it.each([
    [
      ["relay", "--hsah", "carbon_ch"],
      {},
      "polymur relay: unknown option --hsah; did you mean --hash?",
    ],
    [
      ["--frobnicate", "1"],
      {},
      "polymur relay: unknown option --frobnicate (see polymur relay --help)",
    ],
    [["relay", "--listen-addr"], {}, "polymur relay: option --listen-addr needs a value"],
    [
      ["relay", "--distribution", "random"],
      {},
      'polymur relay: POLYMUR_ERR_CONFIG: --distribution must be one of broadcast, hash-route; got "random"',
    ],
    [
      ["relay"],
      { POLYMUR_DISTRIBUTION: "foo" },
      'polymur relay: POLYMUR_ERR_CONFIG: POLYMUR_DISTRIBUTION must be one of broadcast, hash-route; got "foo"',
    ],
    [
      ["relay", "-listen-port", "2005"],
      {},
      "polymur relay: -listen-port is a Go polymur option that polymur does not have: give the port in --listen-addr host:port",
    ],
    [
      ["relay", "stray"],
      {},
      'polymur relay: unexpected argument "stray" (see polymur relay --help)',
    ],
    [
      ["gateway", "--keys-fiel", "k"],
      {},
      "polymur gateway: unknown option --keys-fiel; did you mean --keys-file?",
    ],
    [
      ["gateway", "-dev-mode"],
      {},
      "polymur gateway: -dev-mode is a Go polymur option that polymur does not have: polymur has no built-in test key: put one in --keys-file (a line `name secret`)",
    ],
    [
      ["proxy", "--gatway", "https://gw:1"],
      {},
      "polymur proxy: unknown option --gatway; did you mean --gateway?",
    ],
    [
      ["control", "--bogus"],
      {},
      "polymur control: unknown option --bogus (see polymur control --help)",
    ],
  ] as const)("%j %j: one line, exit 2", (args, env, line) => {
    const r = polymur([...args], env);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 2, stderr: `${line}\n` });
  });

  it("a rules file error carries POLYMUR_ERR_RULES and file:line:column", () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-cli-"));
    const rules = join(dir, "relay.conf");
    writeFileSync(
      rules,
      "cluster c\n  forward\n    127.0.0.1:2003\n  ;\nmatch * send to nowhere;\n",
    );
    const r = polymur(["relay", "--rules", rules, "--stat-addr", "", "--api-addr", ""]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      new RegExp(
        `^polymur relay: POLYMUR_ERR_RULES: ${rules.replaceAll("/", "\\/")}:5:\\d+: [^\\n]+\\n$`,
      ),
    );
  });

  it("a config file's bad value is named by its line", () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-cli-"));
    const conf = join(dir, "polymur.conf");
    writeFileSync(conf, "# relay\nreplication = 0\n");
    const r = polymur(["relay", "--config", conf]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({
      code: 2,
      stderr: `polymur relay: POLYMUR_ERR_CONFIG: ${conf}:2: replication must be at least 1\n`,
    });
  });

  it("an unknown role is suggested a close one", () => {
    const r = polymur(["rely"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n")[0]).toBe('polymur: unknown role "rely"; did you mean relay?');
  });
});

describe("a Go polymur command line", () => {
  let relay: PolymurProcess | undefined;
  let sink: LineSink | undefined;
  afterEach(async () => {
    await relay?.stop();
    await sink?.close();
  });

  it("starts a relay that forwards, with a note for each flag polymur does differently", async () => {
    sink = await LineSink.start();
    relay = await PolymurProcess.role("relay", [
      "-listen-addr=127.0.0.1:0",
      "-api-addr=127.0.0.1:0",
      "-stat-addr=127.0.0.1:0",
      `-destinations=${sink.address}`,
      "-distribution=broadcast",
      "-outgoing-queue-cap=4096",
      "-incoming-queue-cap=32768",
      "-metrics-flush=0",
    ]);
    await sendLines(relay.port, "go.polymur.cpu 1 1700000000\n");
    await until("the line reaches the destination", () => sink!.lines.length === 1);
    expect(sink.lines).toEqual(["go.polymur.cpu 1 1700000000"]);
    const notes = relay.stderr.split("\n").filter((l) => l !== "");
    expect(notes).toHaveLength(2);
    expect(notes[0]).toMatch(
      /^polymur relay: -outgoing-queue-cap \(a Go polymur option\) is ignored: polymur bounds each destination's queue in bytes/,
    );
    expect(notes[1]).toMatch(
      /^polymur relay: -incoming-queue-cap \(a Go polymur option\) is ignored: /,
    );
  });
});
