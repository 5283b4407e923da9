// The Node version check of both launchers (bin/polymur.js, bin/polymurctl.js).
// Under an older Node (a service unit's system node), polymur fails later in
// ways that do not say why (a relay's workers die with EADDRINUSE:
// `reusePort` needs Node 22.12). The least version is package.json's
// "engines", read here so that it is written in one place. This file keeps to
// what Node 18 and 20 can run.
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * Exits with status 2 and says what to do when this Node is older than
 * package.json's engines. `program`: the name in the message; `launcher`:
 * the launcher's import.meta.url; `lacks` and `hint`: what would break, and
 * where to set the Node, appended to the message's two lines.
 */
export function requireNode(program, launcher, lacks = "", hint = "") {
  const engines = (() => {
    try {
      return JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).engines
        .node;
    } catch {
      return undefined; // no package.json beside us: nothing to check against
    }
  })();
  const least = Number(/\d+/.exec(engines ?? "")?.[0] ?? 0);
  const major = Number(process.versions.node.split(".")[0]);
  if (major >= least) return;
  const bundled = fileURLToPath(new URL("../node_modules/.bin/node", import.meta.url));
  const self = fileURLToPath(launcher);
  const how = existsSync(bundled)
    ? `run it with the Node that \`npm ci\` installed: ${bundled} ${self} ...`
    : `install Node.js ${least} (https://nodejs.org) and run it with that node`;
  console.error(
    `${program}: needs Node.js ${least} or newer (package.json engines: "${engines}"); this is Node.js ${process.version} at ${process.execPath}${lacks}.\n` +
      `${program}: ${how}${hint}`,
  );
  process.exit(2);
}
