// Children started in their own process group (`detached`), tracked so that
// a normal exit of this process does not leave them running.

/** Process groups started and not yet seen to exit; killed if this process exits first. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

/**
 * Tracks the process group `pgid` (a detached child's pid) until
 * untrackGroup(): if this process exits before, the group is sent SIGKILL.
 */
export function trackGroup(pgid: number): void {
  installExitHook();
  liveGroups.add(pgid);
}

/** The group `pgid` has exited (or was killed): no longer killed at exit. */
export function untrackGroup(pgid: number): void {
  liveGroups.delete(pgid);
}

/** Sends `signal` to every process of the group `pgid`; a group already gone is not an error. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // no such process group: already exited
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const pgid of liveGroups) signalGroup(pgid, "SIGKILL");
  });
}
