// polymur and polymurctl started by a Node older than the one polymur
// depends on (package.json's dependencies.node; the system node a service
// unit or `npx` uses) run again under the Node npm installed with polymur,
// with arguments, exit status and signals passed through; with no such Node
// they say what to install and exit 2 before doing anything else (under Node
// 20 a relay's workers used to die with EADDRINUSE instead).
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { RELAY_TEST_ARGS } from "../fixtures/polymur.ts";
import { waitFor } from "../fixtures/until.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const POLYMUR = `${ROOT}bin/polymur.js`;
const POLYMURCTL = `${ROOT}bin/polymurctl.js`;
const PACKAGE = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as {
  version: string;
  dependencies: { node: string };
};
const LEAST = Number(/\d+/.exec(PACKAGE.dependencies.node)![0]);
const BUNDLED = `${ROOT}node_modules/node/bin/node`;
const BUNDLED_VERSION = spawnSync(BUNDLED, ["--version"], { encoding: "utf8" }).stdout.trim();

function majorOf(node: string): number | null {
  const r = spawnSync(node, ["-p", "process.versions.node"], { encoding: "utf8" });
  return r.status === 0 ? Number(r.stdout.trim().split(".")[0]) : null;
}

/** An installed Node older than polymur needs, if this machine has one. */
function olderNode(): { path: string; version: string } | null {
  const which = spawnSync("which", ["-a", "node"], { encoding: "utf8" });
  const candidates = new Set([
    "/usr/bin/node",
    "/usr/local/bin/node",
    ...(which.stdout ?? "").split("\n").filter((l) => l !== ""),
  ]);
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    const major = majorOf(path);
    if (major !== null && major < LEAST) {
      const version = spawnSync(path, ["--version"], { encoding: "utf8" }).stdout.trim();
      return { path, version };
    }
  }
  return null;
}

const old = olderNode();
if (old === null) {
  console.warn(`node-version.test.ts: no Node older than ${LEAST} on this machine: skipped`);
}

function run(node: string, args: string[], cwd = ROOT) {
  return spawnSync(node, args, { encoding: "utf8", timeout: 30_000, cwd });
}

/** Whether process `pid` exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A relay started by the older Node, once it says "listening"; `pid`: the relay's own. */
async function oldRelay(): Promise<{ launcher: ChildProcess; pid: number; out: () => string }> {
  const launcher = spawn(old!.path, [POLYMUR, "relay", ...RELAY_TEST_ARGS, "--workers", "1"], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  launcher.stdout!.on("data", (b: Buffer) => {
    out += b.toString();
  });
  launcher.stderr!.on("data", (b: Buffer) => {
    out += b.toString();
  });
  const listening = await waitFor("the relay says listening", () =>
    out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; pid: number })
      .find((l) => l.msg === "listening"),
  );
  return { launcher, pid: listening.pid, out: () => out };
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
    } else child.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

describe("a start under a Node older than polymur depends on", () => {
  it.skipIf(old === null)("polymur and polymurctl run under the bundled Node", () => {
    expect(majorOf(BUNDLED)).toBeGreaterThanOrEqual(LEAST);
    for (const [bin, name] of [
      [POLYMUR, "polymur"],
      [POLYMURCTL, "polymurctl"],
    ] as const) {
      const r = run(old!.path, [bin, "--version"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${name} ${PACKAGE.version} (Node.js ${BUNDLED_VERSION})\n`);
      expect(r.stderr).toBe("");
    }
  });

  it.skipIf(old === null)("arguments and the exit status pass through", () => {
    const r = run(old!.path, [POLYMUR, "no-such-role"]);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`polymur: unknown role "no-such-role"`);
    const ok = run(old!.path, [POLYMUR, "relay", "--help"]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain("usage: polymur relay");
  });

  it.skipIf(old === null)(
    "a relay stops cleanly on SIGTERM to the launcher, and reloads on SIGHUP",
    async () => {
      const { launcher, pid, out } = await oldRelay();
      expect(pid).not.toBe(launcher.pid);
      launcher.kill("SIGHUP");
      await waitFor("the relay answers SIGHUP", () =>
        out().includes("SIGHUP: no --config or --rules file to reload") ? true : undefined,
      );
      expect(alive(pid)).toBe(true);
      launcher.kill("SIGTERM");
      expect(await exited(launcher)).toEqual({ code: 0, signal: null });
      expect(out()).toContain('"signal":"SIGTERM","msg":"stopping"');
      expect(alive(pid)).toBe(false);
    },
  );

  it.skipIf(old === null)("a relay killed by a signal takes the launcher with it", async () => {
    const { launcher, pid } = await oldRelay();
    process.kill(pid, "SIGKILL");
    expect(await exited(launcher)).toEqual({ code: null, signal: "SIGKILL" });
  });

  it.skipIf(old === null)(
    "with no Node new enough installed with it, it says what to do and exits 2",
    () => {
      // The package without node_modules: the launchers and package.json only.
      const dir = mkdtempSync(path.join(tmpdir(), "polymur-nonode-"));
      try {
        cpSync(`${ROOT}bin`, `${dir}/bin`, { recursive: true });
        cpSync(`${ROOT}package.json`, `${dir}/package.json`);
        for (const [bin, name] of [
          ["bin/polymur.js", "polymur"],
          ["bin/polymurctl.js", "polymurctl"],
        ] as const) {
          const r = run(old!.path, [`${dir}/${bin}`, "relay", ...RELAY_TEST_ARGS], dir);
          expect(r.signal, "it exits by itself, without starting").toBeNull();
          expect(r.status).toBe(2);
          expect(r.stderr).toContain(`${name}: needs Node.js ${LEAST} or newer`);
          expect(r.stderr).toContain(`this is Node.js ${old!.version} at ${old!.path}`);
          expect(r.stderr).toContain(`${dir}/node_modules/node/bin/node`);
          expect(r.stderr).toContain("npm ci");
          expect(r.stdout).toBe("");
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it("the Node running these tests passes the check", () => {
    expect(majorOf(process.execPath)).toBeGreaterThanOrEqual(LEAST);
    for (const bin of [POLYMUR, POLYMURCTL]) {
      const r = run(process.execPath, [bin, "--help"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).not.toContain("needs Node.js");
      expect(r.stdout).toContain("usage:");
    }
  });

  it("--version names the program, package.json's version and the Node it runs on", () => {
    for (const [bin, name] of [
      [POLYMUR, "polymur"],
      [POLYMURCTL, "polymurctl"],
    ] as const) {
      const r = run(process.execPath, [bin, "--version"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${name} ${PACKAGE.version} (Node.js ${process.version})\n`);
    }
  });
});
