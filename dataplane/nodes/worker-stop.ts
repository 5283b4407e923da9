import type { ChildProcess } from "node:child_process";

/**
 * Asks a worker process to stop (`message`, its pool's shutdown message)
 * and resolves with its own report of the stop (`report` picks it out of
 * the messages it sends), or, if it exits without one (killed, or hung and
 * killed `killAfterMs` after the ask), with what `missing` makes of its
 * last known counters. The relay's, the gateway's and the proxy's pools
 * stop their workers this way.
 */
export function stopWorker<R>(
  child: ChildProcess,
  message: unknown,
  killAfterMs: number,
  report: (m: unknown) => R | null,
  missing: () => R,
): Promise<R> {
  return new Promise((resolve) => {
    let result: R | null = null;
    let kill: NodeJS.Timeout | undefined;
    child.on("message", (m: unknown) => {
      const r = report(m);
      if (r !== null) result = r;
    });
    const exited = (): void => {
      clearTimeout(kill);
      resolve(result ?? missing());
    };
    if (child.exitCode !== null || child.signalCode !== null) {
      exited();
      return;
    }
    child.once("exit", exited);
    kill = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    kill.unref();
    // A closed channel (the worker is exiting) is no error: "exit" accounts for it.
    child.send(message as object, noop);
  });
}

function noop(): void {}

/**
 * stopWorker for the relay's and the gateway's workers, which share the
 * protocol: `{t: "shutdown", deadlineMs}` asks them to drain for up to
 * `deadlineMs`, `{t: "done", undelivered}` is their report (datapoints
 * per destination they could not deliver), and one that has not exited 5 s
 * after the deadline is killed. `missing` accounts for one that exits
 * without its report.
 */
export function drainWorker(
  child: ChildProcess,
  deadlineMs: number,
  missing: () => Record<string, number>,
): Promise<Record<string, number>> {
  return stopWorker(
    child,
    { t: "shutdown", deadlineMs },
    deadlineMs + 5_000,
    (m) => {
      const r = m as { t?: unknown; undelivered?: Record<string, number> };
      return r.t === "done" && r.undelivered !== undefined ? r.undelivered : null;
    },
    missing,
  );
}
