import type { Logger } from "../../common/logger.ts";
import type { OptionSpec, RawOptions } from "../../common/options.ts";

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
