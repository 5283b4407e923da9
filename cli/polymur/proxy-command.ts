import { Code } from "@connectrpc/connect";
import { ErrorCode } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { formatHelp, parseConfigFile, resolveOptions } from "../../common/options.ts";
import { fileLimitText, raiseFileLimit } from "../../dataplane/nodes/file-limit.ts";
import { ProxyNode } from "../../dataplane/nodes/proxy-node.ts";
import {
  buildProxyOptions,
  PROXY_GO_FLAGS,
  PROXY_OPTIONS,
} from "../../dataplane/nodes/proxy-options.ts";
import { parseRoleArgv } from "./role-args.ts";
import { handleSignals } from "./signals.ts";

/**
 * `polymur proxy`: Graphite plaintext in (like a relay), one HTTP/2 stream out
 * to a gateway. Runs until SIGTERM/SIGINT; exits 2 with a one-line reason if
 * the gateway refuses the API key.
 */
export async function runProxy(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(formatHelp("usage: polymur proxy --gateway URL [options]", PROXY_OPTIONS));
    return;
  }
  const flags = parseRoleArgv("proxy", PROXY_OPTIONS, argv, PROXY_GO_FLAGS);
  const path = flags.get("config") ?? process.env["POLYMUR_CONFIG"] ?? "";
  const file = path === "" ? new Map<string, string>() : parseConfigFile(PROXY_OPTIONS, path);
  // Before --max-connections auto is derived from the limit (as the relay does).
  const files = raiseFileLimit();
  const options = buildProxyOptions(resolveOptions(PROXY_OPTIONS, flags, process.env, file));
  const log = createLogger({ level: options.logLevel, bindings: { role: "proxy" } });
  log[files.error === undefined ? "info" : "warn"](
    { openFiles: files.limit, maxConnections: options.listener.maxConnections },
    fileLimitText(files, options.listener.maxConnections),
  );
  const node = new ProxyNode(options, log);

  let stopping = false;
  node.onFatal((err, gateway) => {
    if (stopping) return;
    stopping = true;
    const what = err.code === Code.PermissionDenied ? "refused" : "does not accept";
    const reason = `gateway ${gateway} ${what} the API key (${Code[err.code]}: ${err.rawMessage}); not retrying: check POLYMUR_API_KEY`;
    log.error({ gateway, code: Code[err.code], errorCode: ErrorCode.Auth }, reason);
    void node.close().finally(() => {
      console.error(`polymur proxy: ${ErrorCode.Auth}: ${reason}`);
      process.exit(2);
    });
  });
  const started = node.start();

  // Nothing of a proxy is reloadable: SIGHUP is logged as reloading nothing.
  handleSignals("proxy", log, {
    ready: started,
    stop() {
      stopping = true;
      // Datapoints kept in the spool are sent by the next start: only lost ones count.
      return node.shutdown().then((exit) => ({ undelivered: exit.lostLines }));
    },
  });
  await started;
}
