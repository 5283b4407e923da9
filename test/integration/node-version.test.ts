// polymur and polymurctl started by a Node older than package.json's
// "engines" (the system node a service unit would use) say which Node they
// need and how to run them, and exit non-zero before doing anything else:
// under Node 20 a relay's workers used to die with EADDRINUSE instead.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { RELAY_TEST_ARGS } from "../fixtures/polymur.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const POLYMUR = `${ROOT}bin/polymur.js`;
const POLYMURCTL = `${ROOT}bin/polymurctl.js`;
const ENGINES = (
  JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as {
    engines: { node: string };
  }
).engines.node;
const LEAST = Number(/\d+/.exec(ENGINES)![0]);

function majorOf(node: string): number | null {
  const r = spawnSync(node, ["-p", "process.versions.node"], { encoding: "utf8" });
  return r.status === 0 ? Number(r.stdout.trim().split(".")[0]) : null;
}

/** An installed Node older than the engines field, if this machine has one. */
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

function run(node: string, args: string[]) {
  return spawnSync(node, args, { encoding: "utf8", timeout: 30_000, cwd: ROOT });
}

describe("a start under a Node older than package.json's engines", () => {
  it.skipIf(old === null)(
    "polymur relay says which Node it needs and how to run it, and exits 2",
    () => {
      const r = run(old!.path, [POLYMUR, "relay", ...RELAY_TEST_ARGS, "--workers", "2"]);
      expect(r.signal, "it exits by itself, without starting").toBeNull();
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`polymur: needs Node.js ${LEAST} or newer`);
      expect(r.stderr).toContain(`this is Node.js ${old!.version} at ${old!.path}`);
      expect(r.stderr).toContain(`${ROOT}node_modules/.bin/node ${POLYMUR}`);
      expect(r.stdout).not.toContain("listening");
      expect(r.stderr).not.toContain("EADDRINUSE");
    },
  );

  it.skipIf(old === null)("polymurctl says the same and exits 2", () => {
    const r = run(old!.path, [POLYMURCTL, "status"]);
    expect(r.signal).toBeNull();
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`polymurctl: needs Node.js ${LEAST} or newer`);
    expect(r.stderr).toContain(`${ROOT}node_modules/.bin/node ${POLYMURCTL}`);
  });

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
    const { version } = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as {
      version: string;
    };
    for (const [bin, name] of [
      [POLYMUR, "polymur"],
      [POLYMURCTL, "polymurctl"],
    ] as const) {
      const r = run(process.execPath, [bin, "--version"]);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${name} ${version} (Node.js ${process.version})\n`);
    }
  });
});
