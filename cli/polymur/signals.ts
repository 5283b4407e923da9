import type { Logger } from "../../common/logger.ts";

export interface SignalHandlers {
  /** SIGTERM and SIGINT: runs once, then the process exits 0 (1 if it failed). */
  stop(): Promise<unknown>;
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
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, "shutdown failed");
          process.exit(1);
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
