import { readFileSync } from "node:fs";

/**
 * polymur's version: package.json's, the one above this module whether it
 * runs from source (common/) or compiled (dist/common/). "unknown" without one.
 */
export function polymurVersion(): string {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      const p = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as {
        name?: string;
        version?: string;
      };
      if (p.name === "polymur" && typeof p.version === "string") return p.version;
    } catch {}
  }
  return "unknown";
}

/** What `--version` prints: the program, its version, and the Node it runs on. */
export function versionLine(program: string): string {
  return `${program} ${polymurVersion()} (Node.js ${process.version})`;
}
