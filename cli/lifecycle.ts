import type { Logger } from "../common/logger.ts";
import type { OptionSpec, RawOptions } from "../common/options.ts";

/**
 * SIGHUP's reload of a config file: re-reads the options, warns about changed
 * options that need a restart (their running values stay), and applies the
 * rest. A file that does not parse or apply changes nothing.
 */
export function reloadConfig(
  specs: readonly OptionSpec[],
  running: RawOptions,
  load: () => RawOptions,
  apply: (next: RawOptions) => void,
  path: string,
  log: Logger,
): void {
  try {
    const next = load();
    for (const spec of specs) {
      if (!spec.reloadable && next.get(spec.name) !== running.get(spec.name)) {
        log.warn(
          { option: spec.name },
          `SIGHUP: --${spec.name} changed but needs a restart; keeping the running value`,
        );
      }
    }
    apply(next);
    log.info({ config: path }, "SIGHUP: configuration reloaded");
  } catch (err) {
    log.error(
      { err: (err as Error).message },
      "SIGHUP: reload failed; keeping the running configuration",
    );
  }
}

/** SIGTERM and SIGINT run `shutdown` once, then exit 0 (or 1 if it failed). */
export function stopOnSignals(log: Logger, shutdown: () => Promise<unknown>): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    void shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}
