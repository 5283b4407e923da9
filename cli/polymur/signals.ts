import type { Logger } from "../../common/logger.ts";

/**
 * Exit statuses of `polymur` (every role); docs/errors.md "Exit codes" is
 * the table operators read, keep the two in step.
 */
export const EXIT = {
  /** Stopped by SIGTERM/SIGINT, every datapoint delivered (or kept in a proxy's spool). */
  ok: 0,
  /** The shutdown failed, or an unexpected error. */
  failed: 1,
  /** Usage or configuration error (cli/polymur/main.ts), or a proxy whose API key is refused. */
  usage: 2,
  /** Stopped, but datapoints were left undelivered at the shutdown deadline and are lost. */
  undelivered: 3,
} as const;

/** What a role's stop handler reports: datapoints it could not deliver (and did not keep). */
export interface ShutdownOutcome {
  undelivered: number;
}

/** The total of an undelivered-per-destination record (RelayNode/GatewayNode.shutdown()). */
export function undeliveredTotal(perDestination: Record<string, number>): number {
  let n = 0;
  for (const v of Object.values(perDestination)) n += v;
  return n;
}

/** The exit status for a stop handler's result: EXIT.undelivered if it lost datapoints. */
export function exitStatus(outcome: ShutdownOutcome | undefined): number {
  return outcome !== undefined && outcome.undelivered > 0 ? EXIT.undelivered : EXIT.ok;
}

export interface SignalHandlers {
  /**
   * SIGTERM and SIGINT: runs once, then the process exits: 0, or 3 if it
   * reports datapoints left undelivered (1 if it failed).
   */
  stop(): Promise<ShutdownOutcome | undefined>;
  /**
   * SIGHUP. Without one, SIGHUP is logged as reloading nothing (instead of
   * killing the process, its default action).
   */
  reload?(): void;
  /**
   * The node's start. Handlers are installed before it (a signal that comes
   * as soon as the node says "listening" must not find the default action,
   * which kills the process); a signal during the start is answered once it
   * has settled.
   */
  ready?: Promise<unknown>;
}

/** How every role (relay, proxy, gateway, control) answers signals. */
export function handleSignals(role: string, log: Logger, handlers: SignalHandlers): void {
  let stopping = false;
  const ready = (handlers.ready ?? Promise.resolve()).catch(() => {});
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    void ready
      .then(() => handlers.stop())
      .then(
        (outcome) => {
          const code = exitStatus(outcome);
          if (code === EXIT.undelivered) {
            log.warn(
              { exitCode: code, undelivered: outcome?.undelivered },
              `exiting with status ${code}: ${outcome?.undelivered} datapoints were left undelivered`,
            );
          }
          process.exit(code);
        },
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          process.exit(EXIT.failed);
        },
      );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  const reload =
    handlers.reload ??
    (() => log.warn(`SIGHUP: a ${role} reloads nothing; restart it to change options`));
  process.on("SIGHUP", () => {
    void ready.then(() => {
      if (!stopping) reload();
    });
  });
}
