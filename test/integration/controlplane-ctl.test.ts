import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSUL_BIN, type ConsulProcess, haveConsul, startConsulDev } from "../fixtures/consul.ts";
import {
  ADMIN_TOKEN,
  ControlPlaneProcess,
  CTL_BIN,
  NODE_TOKEN,
  Subscription,
  waitFor,
} from "../fixtures/control-plane.ts";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { createTestPki } from "../fixtures/tls.ts";

// polymurctl as operators run it: the real binary against a real control plane,
// its tables, its --json, its exit codes (0 ok, 1 refused, 2 usage, 3 unreachable)
// and the one-line reasons; then fleet-wide reconfiguration of real managed relays.

// The fleet test through Consul is skipped without it; with CI=true, a missing Consul
// fails this file instead.
const withoutConsul = skipUnlessAvailable(`Consul (${CONSUL_BIN})`, haveConsul);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

let home: string;

function ctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CTL_BIN, ...args],
      {
        // A clean environment: no config file, server or credential from the machine.
        env: {
          PATH: process.env["PATH"],
          HOME: home,
          XDG_CONFIG_HOME: join(home, ".config"),
          ...env,
        },
        timeout: 30_000,
      },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("polymurctl against a control plane", () => {
  let cp: ControlPlaneProcess;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "polymurctl-home-"));
    cp = await ControlPlaneProcess.start(["--state-dir", join(home, "state")]);
    env = { POLYMUR_SERVER: cp.url, POLYMUR_ADMIN_TOKEN: ADMIN_TOKEN };
  });
  afterAll(async () => {
    await cp?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("dest add/ls/rm: a table for people, JSON for scripts", async () => {
    let r = await ctl(["dest", "add", "10.0.5.30:2003", "--all"], env);
    expect(r).toEqual({
      code: 0,
      stdout: "added 10.0.5.30:2003 for all nodes (state version 1)\n",
      stderr: "",
    });
    r = await ctl(["dest", "add", "10.0.6.1:2003", "10.0.6.2:2003=b", "--group", "web"], env);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      "added 10.0.6.1:2003 for group web (state version 2)\nadded 10.0.6.2:2003=b for group web (state version 3)\n",
    );
    r = await ctl(["dest", "ls"], env);
    expect(r.stdout).toBe(
      [
        "DESTINATION      SCOPE",
        "10.0.5.30:2003   all",
        "10.0.6.1:2003    group web",
        "10.0.6.2:2003=b  group web",
        "(state version 3)",
        "",
      ].join("\n"),
    );
    r = await ctl(["dest", "ls", "--json"], env);
    expect(JSON.parse(r.stdout)).toEqual({
      version: 3,
      destinations: [
        { spec: "10.0.5.30:2003", scope: { all: true } },
        { spec: "10.0.6.1:2003", scope: { group: "web" } },
        { spec: "10.0.6.2:2003=b", scope: { group: "web" } },
      ],
    });
    // rm finds the scope itself when the destination is in only one.
    r = await ctl(["dest", "rm", "10.0.6.2:2003:b", "--json"], env);
    expect(JSON.parse(r.stdout)).toEqual({
      version: 4,
      removed: "10.0.6.2:2003:b",
      scope: { group: "web" },
    });
  });

  it("exit 1 with the control plane's reason when it refuses; --json error object", async () => {
    let r = await ctl(["dest", "add", "10.0.5.30:2003", "--all"], env);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      "polymurctl dest add: destination 10.0.5.30:2003 is already in all nodes\n",
    );
    r = await ctl(
      ["dest", "add", "10.0.5.40:2003", "--all", "--expected-version", "1", "--json"],
      env,
    );
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual({
      error: {
        message: expect.stringMatching(
          /^state is at version \d+, you expected 1; re-read and retry$/,
        ),
        exit: 1,
        code: "failed_precondition",
        polymurCode: "POLYMUR_ERR_VERSION_CONFLICT",
      },
    });
    r = await ctl(["key", "ls"], { ...env, POLYMUR_ADMIN_TOKEN: NODE_TOKEN });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^polymurctl key ls: that is the node credential; ControlService needs the admin credential/,
    );
  });

  it("exit 2 for usage and configuration, saying what to do", async () => {
    const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
      [["dest", "add", "10.0.5.31:2003"], env, /say where: --all \(every node\) or --group NAME/],
      [["dest", "add", "10.0.5.31", "--all"], env, /missing :port \(expected host:port/],
      [["dest", "frobnicate"], env, /unknown dest command "frobnicate"/],
      [["route", "set", "--all", "inherit"], env, /only a group can inherit/],
      [["key", "ls", "--bogus"], env, /unknown option --bogus /],
      [["key", "ls"], { POLYMUR_SERVER: cp.url }, /no admin credential: set POLYMUR_ADMIN_TOKEN/],
      [["key", "ls", "--server", "ftp://x"], env, /--server must be http:\/\/ or https:\/\//],
      [["key", "ls", "--ca", "/nonexistent.pem"], env, /--ca \/nonexistent.pem: ENOENT/],
    ];
    for (const [args, e, message] of cases) {
      const r = await ctl(args, e);
      expect([args.join(" "), r.code]).toEqual([args.join(" "), 2]);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    }
  });

  it("exit 3 when the control plane cannot be reached", async () => {
    const r = await ctl(["dest", "ls", "--json"], { ...env, POLYMUR_SERVER: "http://127.0.0.1:1" });
    expect(r.code).toBe(3);
    expect(r.stderr).toBe(
      "polymurctl dest ls: cannot reach control plane at http://127.0.0.1:1: connection refused; is `polymur control` running? set --server or POLYMUR_SERVER\n",
    );
    expect(JSON.parse(r.stdout).error.exit).toBe(3);
    const tls = await ctl(["status"], {
      ...env,
      POLYMUR_SERVER: cp.url.replace("http:", "https:"),
    });
    expect(tls.code).toBe(3);
    expect(tls.stderr).toMatch(/TLS handshake .* failed .*use an http:\/\/ URL/);
  });

  it("key create prints the secret once; only its digest is listed", async () => {
    let r = await ctl(["key", "create", "product-A"], env);
    expect(r.code).toBe(0);
    const [head, secretLine, warning] = r.stdout.split("\n");
    expect(head).toMatch(/^created API key product-A \(state version \d+\)$/);
    const secret = /^secret: (pmk_[A-Za-z0-9_-]{43})$/.exec(secretLine!)![1]!;
    expect(warning).toMatch(/shown once and cannot be shown again/);
    r = await ctl(["key", "ls", "--json"], env);
    const keys = JSON.parse(r.stdout).keys;
    expect(keys).toEqual([
      {
        name: "product-A",
        digest: `sha256:${createHash("sha256").update(secret).digest("hex")}`,
        createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        rotatedAt: null,
      },
    ]);
    expect(r.stdout).not.toContain(secret);
    r = await ctl(["key", "ls"], env);
    expect(r.stdout).toMatch(
      /^NAME {7}DIGEST {20}CREATED {15}ROTATED\nproduct-A {2}sha256:[0-9a-f]{16}… +\S+ +-\n/,
    );
    r = await ctl(["key", "rotate", "product-A", "--json"], env);
    const rotated = JSON.parse(r.stdout);
    expect(rotated.secret).not.toBe(secret);
    expect(rotated.rotatedAt).not.toBeNull();
    expect(cp.stdout).not.toContain(secret);
    expect(cp.stdout).not.toContain(rotated.secret);
    r = await ctl(["key", "rm", "product-A"], env);
    expect(r.stdout).toMatch(/^removed API key product-A \(state version \d+\)\n$/);
  });

  it("route set/show", async () => {
    let r = await ctl(["route", "set", "--all", "hash-route", "--replication", "2"], env);
    expect(r.stdout).toMatch(/^all nodes: hash-route \(state version \d+\)\n$/);
    r = await ctl(
      [
        "route",
        "set",
        "--group",
        "web",
        "hash-route",
        "--compat",
        "carbon-c-relay",
        "--hash",
        "jump_fnv1a_ch",
      ],
      env,
    );
    expect(r.code).toBe(0);
    r = await ctl(["route", "show"], env);
    expect(r.stdout.split("\n").slice(0, 3)).toEqual([
      "SCOPE      DISTRIBUTION  HASH           COMPAT          REPLICATION  DIVERSE  ROUTER              NORMALIZE",
      "all        hash-route    carbon_ch      carbon          2            true     consistent-hashing  none",
      "group web  hash-route    jump_fnv1a_ch  carbon-c-relay  1            false    consistent-hashing  none",
    ]);
    r = await ctl(["route", "show", "--group", "db", "--json"], env);
    expect(JSON.parse(r.stdout)).toMatchObject({
      group: "db",
      from: "all (inherited)",
      routing: { distribution: "hash-route", replication: 2 },
    });
    r = await ctl(["route", "set", "--group", "web", "inherit"], env);
    expect(r.stdout).toMatch(/^group web now follows the fleet-wide routing/);
    r = await ctl(
      ["route", "set", "--all", "hash-route", "--compat", "carbon-c-relay", "--hash", "mmh3_ch"],
      env,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/mmh3_ch exists only in carbon/);
  });

  it("nodes ls and status see subscribed nodes", async () => {
    const sub = new Subscription(cp.url, "node-a", "web");
    try {
      await waitFor("snapshot", () => sub.configs[0]);
      let r = await ctl(["nodes", "ls", "--json"], env);
      const nodes = JSON.parse(r.stdout).nodes;
      expect(nodes).toHaveLength(1);
      expect(nodes[0]).toMatchObject({
        id: "node-a",
        group: "web",
        role: "relay",
        connected: true,
      });
      r = await ctl(["nodes", "ls"], env);
      expect(r.stdout).toMatch(
        /^NODE +GROUP +ROLE +HOST +APPLIED +CONNECTED +LAST SEEN +RECEIVED +FORWARDED +DROPPED\nnode-a +web +relay +test +0 \(behind\) +yes +\d+s ago +0 +0 +0\n/,
      );
      r = await ctl(["status"], env);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(
        new RegExp(
          `^control plane  ${cp.url}  SERVING\nstate          version \\d+: \\d+ destinations?, \\d+ routing polic(y|ies), \\d+ API keys?\nnodes          1 connected \\(0 at version \\d+, 1 behind\\), 0 disconnected\n$`,
        ),
      );
      r = await ctl(["status", "--json"], { POLYMUR_SERVER: cp.url });
      expect(JSON.parse(r.stdout)).toEqual({ server: cp.url, health: "SERVING" });
    } finally {
      await sub.close();
    }
  });

  it("reads the server and credential from its config file, and warns when others can read it", async () => {
    const path = join(home, "ctl.conf");
    writeFileSync(path, `# polymurctl\nserver = ${cp.url}\ntoken = ${ADMIN_TOKEN}\n`);
    chmodSync(path, 0o600);
    let r = await ctl(["dest", "ls", "--json"], { POLYMURCTL_CONFIG: path });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    chmodSync(path, 0o644);
    r = await ctl(["dest", "ls", "--json"], { POLYMURCTL_CONFIG: path });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/readable by others; chmod 600/);
    // The default location works too.
    const dflt = join(home, ".config", "polymur", "polymurctl.conf");
    await import("node:fs").then((fs) =>
      fs.mkdirSync(join(home, ".config", "polymur"), { recursive: true }),
    );
    writeFileSync(dflt, `server = ${cp.url}\ntoken = ${ADMIN_TOKEN}\n`, { mode: 0o600 });
    r = await ctl(["key", "ls", "--json"]);
    expect(r.code).toBe(0);
    // The flag wins over the file; --token is accepted with a warning.
    r = await ctl(["key", "ls", "--token", "wrong"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--token is visible to other users/);
    rmSync(dflt);
    r = await ctl(["dest", "ls"], { POLYMURCTL_CONFIG: join(home, "missing.conf") });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read config file/);
  });
});

describe("polymurctl and a TLS control plane", () => {
  it("trusts the CA given with --ca (or POLYMUR_CA), and says what to do without it", async () => {
    home = mkdtempSync(join(tmpdir(), "polymurctl-tls-"));
    const pki = createTestPki();
    const cp = await ControlPlaneProcess.start([
      "--state-dir",
      join(home, "state"),
      "--tls-cert",
      pki.certFile,
      "--tls-key",
      pki.keyFile,
    ]);
    try {
      const url = `https://127.0.0.1:${cp.port}`;
      const env = { POLYMUR_SERVER: url, POLYMUR_ADMIN_TOKEN: ADMIN_TOKEN };
      let r = await ctl(["dest", "add", "10.0.5.30:2003", "--all", "--ca", pki.caFile], env);
      expect(r).toMatchObject({ code: 0, stderr: "" });
      r = await ctl(["dest", "ls", "--json"], { ...env, POLYMUR_CA: pki.caFile });
      expect(JSON.parse(r.stdout).version).toBe(1);
      r = await ctl(["dest", "ls"], env);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(
        /^polymurctl dest ls: cannot verify the certificate of the control plane at https:\/\/127\.0\.0\.1:\d+: .*; pass the CA that signed it with --ca FILE \(or POLYMUR_CA\)\n$/,
      );
      r = await ctl(["dest", "ls", "--ca", pki.otherCaFile], env);
      expect(r.code).toBe(3);
      r = await ctl(["status"], { ...env, POLYMUR_SERVER: url.replace("https:", "http:") });
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/if it serves TLS, use an https:\/\/ URL/);
    } finally {
      await cp.stop();
      pki.close();
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("fleet-wide reconfiguration with polymurctl", () => {
  it("dest add --all reaches managed relays; nodes ls shows them at the new version", async () => {
    home = mkdtempSync(join(tmpdir(), "polymurctl-fleet-"));
    const cp = await ControlPlaneProcess.start(["--state-dir", join(home, "state")]);
    const env = { POLYMUR_SERVER: cp.url, POLYMUR_ADMIN_TOKEN: ADMIN_TOKEN };
    const a = await LineSink.start();
    const b = await LineSink.start();
    const relays: PolymurProcess[] = [];
    try {
      expect((await ctl(["dest", "add", a.address, "--all"], env)).code).toBe(0);
      for (const group of ["web", "db"]) {
        relays.push(
          await PolymurProcess.relay(["--control-plane", cp.url, "--group", group], {
            POLYMUR_NODE_TOKEN: NODE_TOKEN,
          }),
        );
      }
      const r = await ctl(["dest", "add", b.address, "--group", "web", "--json"], env);
      const { version } = JSON.parse(r.stdout);
      for (const relay of relays) {
        await relay.waitForLog(
          (l) => l.msg === `control plane: configuration version ${version} applied`,
        );
      }
      await sendLines(relays[0]!.port, "web.x 1 1700000000\n");
      await sendLines(relays[1]!.port, "db.x 2 1700000000\n");
      await a.waitForLines(2);
      await b.waitForLines(1);
      expect(a.lines.sort()).toEqual(["db.x 2 1700000000", "web.x 1 1700000000"]);
      expect(b.lines).toEqual(["web.x 1 1700000000"]);
      // The relays report what they applied (every 5 s, and at once after applying).
      await waitFor(
        "both nodes at the new version",
        async () => {
          const run = await ctl(["nodes", "ls", "--json"], env);
          if (run.code !== 0) throw new Error(`nodes ls: exit ${run.code}: ${run.stderr}`);
          const n = JSON.parse(run.stdout).nodes;
          return n.length === 2 &&
            n.every(
              (x: { appliedVersion: number; connected: boolean }) =>
                x.appliedVersion === version && x.connected,
            )
            ? n
            : undefined;
        },
        30_000,
      );
      const status = JSON.parse((await ctl(["status", "--json"], env)).stdout);
      expect(status.nodes).toEqual({ connected: 2, current: 2, behind: 0, disconnected: 0 });
    } finally {
      await Promise.all(relays.map((r) => r.stop()));
      await Promise.all([a.close(), b.close(), cp.stop()]);
      rmSync(home, { recursive: true, force: true });
    }
  });

  it.skipIf(withoutConsul)(
    "through replica A of a Consul-backed control plane, to relays subscribed to replica B",
    async () => {
      home = mkdtempSync(join(tmpdir(), "polymurctl-fleet-"));
      let consul: ConsulProcess | undefined;
      const procs: Array<{ stop(): Promise<unknown> }> = [];
      const first = await LineSink.start();
      const sink = await LineSink.start();
      try {
        consul = await startConsulDev();
        const store = `consul://127.0.0.1:${consul.ports.http}/fleet`;
        const [cpA, cpB] = await Promise.all([
          ControlPlaneProcess.start(["--store", store]),
          ControlPlaneProcess.start(["--store", store]),
        ]);
        procs.push(cpA, cpB);
        const envA = { POLYMUR_SERVER: cpA.url, POLYMUR_ADMIN_TOKEN: ADMIN_TOKEN };
        // A managed relay starts listening once it has a first configuration.
        expect((await ctl(["dest", "add", first.address, "--all"], envA)).code).toBe(0);
        const relay = await PolymurProcess.relay(["--control-plane", cpB.url, "--group", "web"], {
          POLYMUR_NODE_TOKEN: NODE_TOKEN,
        });
        procs.unshift(relay);
        const t0 = Date.now();
        const r = await ctl(["dest", "add", sink.address, "--group", "web", "--json"], envA);
        expect(r.code).toBe(0);
        const { version } = JSON.parse(r.stdout);
        const appliedMsg = `control plane: configuration version ${version} applied`;
        const applied = await relay.waitForLog((l) => l.msg === appliedMsg, 5_000);
        // polymurctl's own start-up is most of this; replica to replica is milliseconds.
        expect(Date.parse(applied["time"] as string) - t0).toBeLessThan(3_000);
        await sendLines(relay.port, "web.y 3 1700000000\n");
        await sink.waitForLines(1);
        await first.waitForLines(1);
        expect(sink.lines).toEqual(["web.y 3 1700000000"]);
        const nodes = JSON.parse(
          (
            await ctl(["nodes", "ls", "--json"], {
              POLYMUR_SERVER: cpA.url,
              POLYMUR_ADMIN_TOKEN: ADMIN_TOKEN,
            })
          ).stdout,
        ).nodes;
        expect(nodes).toHaveLength(1);
        expect(nodes[0]).toMatchObject({ group: "web", connected: true });
      } finally {
        for (const p of procs) await p.stop();
        await Promise.all([first.close(), sink.close()]);
        await consul?.stop();
        rmSync(home, { recursive: true, force: true });
      }
    },
  );
});
