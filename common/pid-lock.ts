import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { PRIVATE_FILE_MODE } from "./private-files.ts";

/** Why a lock file could not be taken: another live process holds it, or the file system said no. */
export type PidLockRefusal =
  | { readonly kind: "in-use"; readonly pid: number }
  | { readonly kind: "failed"; readonly err: Error };

/** The lock files this process holds. */
const held = new Set<string>();

/**
 * Takes `file` as a lock holding this process's pid (created exclusively,
 * owner-only). A lock left by a process that is gone is taken over, one with
 * this process's own pid included when this process does not hold it (a
 * container's pid 1 restarted). Returns null when taken, or why not: the
 * caller says it in its own words.
 */
export function takePidLock(file: string): PidLockRefusal | null {
  const key = resolve(file);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: PRIVATE_FILE_MODE });
      held.add(key);
      return null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
        return { kind: "failed", err: err as Error };
      }
    }
    let pid = Number.NaN;
    try {
      pid = Number.parseInt(readFileSync(file, "utf8"), 10);
    } catch {}
    if (pid === process.pid ? held.has(key) : Number.isInteger(pid) && pid > 0 && alive(pid)) {
      return { kind: "in-use", pid };
    }
    rmSync(file, { force: true }); // left by a process that is gone
  }
  return { kind: "failed", err: new Error(`${file} keeps coming back`) };
}

/** Lets go of a lock taken by takePidLock. */
export function releasePidLock(file: string): void {
  held.delete(resolve(file));
  rmSync(file, { force: true });
}

/** Whether a process with this pid exists (EPERM: it does, under another user). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
