import { ErrorCode, PolymurError } from "../common/errors.ts";
import { createLogger } from "../common/logger.ts";
import { formatHelp, parseArgv, parseConfigFile, resolveOptions } from "../common/options.ts";
import { GatewayNode } from "../dataplane/gateway-node.ts";
import { buildGatewayOptions, GATEWAY_OPTIONS } from "../dataplane/gateway-options.ts";

/**
 * `polymur gateway`: proxy streams in (HTTP/2, TLS or cleartext), API keys
 * checked, datapoints out to destinations like a relay. Runs until
 * SIGTERM/SIGINT; SIGHUP re-reads --keys-file.
 */
export async function runGateway(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(
      formatHelp(
        "usage: polymur gateway (--keys-file FILE | --control-plane URL) [options]",
        GATEWAY_OPTIONS,
      ),
    );
    return;
  }
  const { flags, positional } = parseArgv(GATEWAY_OPTIONS, argv);
  if (positional.length > 0) {
    throw new PolymurError(ErrorCode.Config, `unexpected argument "${positional[0]}" (see --help)`);
  }
  const path = flags.get("config") ?? process.env["POLYMUR_CONFIG"] ?? "";
  const file = path === "" ? new Map<string, string>() : parseConfigFile(GATEWAY_OPTIONS, path);
  const options = buildGatewayOptions(resolveOptions(GATEWAY_OPTIONS, flags, process.env, file));
  const log = createLogger({ level: options.logLevel, bindings: { role: "gateway" } });
  const node = new GatewayNode(options, log);
  await node.start();

  process.on("SIGHUP", () => node.reloadKeys());
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
