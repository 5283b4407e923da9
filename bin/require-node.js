// The Node choice of both launchers (bin/polymur.js, bin/polymurctl.js).
// polymur needs the Node it depends on (package.json's dependencies.node, a
// Node binary from npm at node_modules/node/bin/node); under an older Node
// it fails later in ways that do not say why (a relay's workers die with
// EADDRINUSE: `reusePort` needs Node 22.12). Started by an older Node (a
// service unit's /usr/bin/node, `npx` under the system's npm), a launcher
// runs the same program again under that bundled Node, with the same
// arguments, environment and stdio, and stays only to pass signals on and to
// exit as the program did. It refuses, saying what to install, only when no
// such Node is there. This file keeps to what Node 18 and 20 can run.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";

/** Signals a service manager or a terminal sends, passed on to the program. */
const FORWARDED = ["SIGTERM", "SIGINT", "SIGHUP"];

/**
 * The least major version polymur runs on: that of the Node it depends on
 * (package.json's dependencies.node, `^24.21.0` → 24), read here so that it
 * is written in one place; 0 when there is no package.json beside us.
 */
function leastMajor() {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    return { least: Number(/\d+/.exec(pkg.dependencies.node)[0]), range: pkg.dependencies.node };
  } catch {
    return { least: 0, range: "" };
  }
}

/**
 * The Node binaries npm installs with the package, where npm puts them both
 * in a checkout (`npm ci`) and in a global install (`npm install -g`, where
 * the dependency lives in the package's own node_modules).
 */
export function bundledNodes() {
  return ["../node_modules/node/bin/node", "../node_modules/.bin/node"].map((p) =>
    fileURLToPath(new URL(p, import.meta.url)),
  );
}

/** The major version of the Node at `path`, or null when it does not run here. */
function majorOf(path) {
  const r = spawnSync(path, ["-p", "process.versions.node"], { encoding: "utf8", timeout: 10_000 });
  return r.status === 0 ? Number(r.stdout.trim().split(".")[0]) : null;
}

/** The first bundled Node that runs here and is new enough, or null. */
function findNode(least) {
  const self = realpathSync(process.execPath);
  for (const path of bundledNodes()) {
    if (!existsSync(path) || realpathSync(path) === self) continue;
    const major = majorOf(path);
    if (major !== null && major >= least) return path;
  }
  return null;
}

/**
 * Runs `launcher` (its import.meta.url) under `node` with this process's Node
 * flags, arguments, environment and stdio. This process then only forwards
 * SIGTERM, SIGINT and SIGHUP to it and, when it ends, exits with its status
 * or is killed by the same signal.
 */
function handOver(program, node, launcher) {
  const child = spawn(
    node,
    [...process.execArgv, fileURLToPath(launcher), ...process.argv.slice(2)],
    { stdio: "inherit", env: process.env },
  );
  const forward = (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of FORWARDED) process.on(signal, forward);
  child.on("error", (err) => {
    console.error(`${program}: cannot run ${node}: ${err.message}`);
    process.exit(2);
  });
  child.on("exit", (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    for (const s of FORWARDED) process.off(s, forward);
    // Ended by a signal: end the same way, so that whoever started us sees it.
    try {
      process.kill(process.pid, signal);
    } catch {
      // a signal this platform cannot send to itself: the shell's convention
    }
    setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 100);
  });
}

/**
 * True when this Node runs polymur (it is new enough): the launcher goes on
 * to load the program. Otherwise false: the program was handed over to the
 * bundled Node (this process now only relays signals and the exit), or no
 * Node new enough was found and the process exits with status 2 after saying
 * what to do. `program`: the name in messages; `launcher`: the launcher's
 * import.meta.url; `lacks`: what would break, appended to the refusal.
 */
export function requireNode(program, launcher, lacks = "") {
  const { least, range } = leastMajor();
  const major = Number(process.versions.node.split(".")[0]);
  if (major >= least) return true;
  const node = findNode(least);
  if (node !== null) {
    handOver(program, node, launcher);
    return false;
  }
  console.error(
    `${program}: needs Node.js ${least} or newer (package.json dependencies: node@${range}); this is Node.js ${process.version} at ${process.execPath}${lacks}, and no newer Node was installed with polymur (looked for ${bundledNodes().join(", ")}).\n` +
      `${program}: run \`npm ci\` (or \`npm install -g\`) again so that npm installs its Node, or install Node.js ${least} (https://nodejs.org) and run ${fileURLToPath(launcher)} with that node.`,
  );
  process.exit(2);
  return false;
}
