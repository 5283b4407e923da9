import { ErrorCode, PolymurError } from "../common/errors.ts";
import { createLogger } from "../common/logger.ts";
import {
  formatHelp,
  parseArgv,
  parseConfigFile,
  type RawOptions,
  resolveOptions,
} from "../common/options.ts";
import { RelayNode } from "../dataplane/relay-node.ts";
import {
  buildProcessOptions,
  buildRelayConfig,
  RELAY_OPTIONS,
} from "../dataplane/relay-options.ts";

/** `polymur relay`: runs in the foreground until SIGTERM/SIGINT; SIGHUP reloads. */
export async function runRelay(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(formatHelp("usage: polymur relay [options]", RELAY_OPTIONS));
    return;
  }
  const { flags, positional } = parseArgv(RELAY_OPTIONS, argv);
  if (positional.length > 0) {
    throw new PolymurError(ErrorCode.Config, `unexpected argument "${positional[0]}" (see --help)`);
  }
  const load = (): RawOptions => {
    const path = flags.get("config") ?? process.env["POLYMUR_CONFIG"] ?? "";
    const file = path === "" ? new Map<string, string>() : parseConfigFile(RELAY_OPTIONS, path);
    return resolveOptions(RELAY_OPTIONS, flags, process.env, file);
  };
  const raw = load();
  const proc = buildProcessOptions(raw);
  const config = buildRelayConfig(raw);
  const log = createLogger({ level: proc.logLevel, bindings: { role: "relay" } });
  const node = new RelayNode(config, proc, log);
  await node.start();

  process.on("SIGHUP", () => {
    if (proc.configPath === "") {
      log.warn("SIGHUP: no --config file to reload");
      return;
    }
    try {
      const next = load();
      for (const spec of RELAY_OPTIONS) {
        if (!spec.reloadable && next.get(spec.name) !== raw.get(spec.name)) {
          log.warn(
            { option: spec.name },
            `SIGHUP: --${spec.name} changed but needs a restart; keeping the running value`,
          );
        }
      }
      node.apply(buildRelayConfig(next));
      log.info({ config: proc.configPath }, "SIGHUP: configuration reloaded");
    } catch (err) {
      log.error(
        { err: (err as Error).message },
        "SIGHUP: reload failed; keeping the running configuration",
      );
    }
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "stopping");
    void node.shutdown().then(
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
