import { createLogger, type Logger } from "../../common/logger.ts";
import {
  formatHelp,
  parseConfigFile,
  type RawOptions,
  resolveOptions,
} from "../../common/options.ts";
import type { ControlSubscriber } from "../../dataplane/control/control-subscriber.ts";
import { type ApiKey, checkKeyName, parseDigest } from "../../dataplane/link/gateway/api-keys.ts";
import { GatewayNode } from "../../dataplane/nodes/gateway-node.ts";
import {
  buildGatewayOptions,
  GATEWAY_GO_FLAGS,
  GATEWAY_OPTIONS,
  type GatewayOptions,
} from "../../dataplane/nodes/gateway-options.ts";
import { reloadConfig } from "./reload-config.ts";
import { parseRoleArgv } from "./role-args.ts";
import { handleSignals, undeliveredTotal } from "./signals.ts";

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
  const flags = parseRoleArgv("gateway", GATEWAY_OPTIONS, argv, GATEWAY_GO_FLAGS);
  const path = flags.get("config") ?? process.env["POLYMUR_CONFIG"] ?? "";
  const load = (): RawOptions => {
    const file = path === "" ? new Map<string, string>() : parseConfigFile(GATEWAY_OPTIONS, path);
    return resolveOptions(GATEWAY_OPTIONS, flags, process.env, file);
  };
  const raw = load();
  const options = buildGatewayOptions(raw);
  const log = createLogger({ level: options.logLevel, bindings: { role: "gateway" } });
  const node = new GatewayNode(options, log);
  const subscriber = options.controlPlane === null ? null : await subscribe(node, options, log);
  const started = node.start();

  handleSignals("gateway", log, {
    ready: started,
    async stop() {
      const [undelivered] = await Promise.all([node.shutdown(), subscriber?.stop()]);
      return { undelivered: undeliveredTotal(undelivered) };
    },
    // SIGHUP: the keys file again, and (standalone) the config file's
    // reloadable routing and queue options, as a relay does.
    reload() {
      node.reloadKeys();
      const rulesPath = raw.get("rules") ?? "";
      if ((path === "" && rulesPath === "") || subscriber !== null) return;
      reloadConfig(
        GATEWAY_OPTIONS,
        raw,
        load,
        (next) => {
          const o = buildGatewayOptions(next);
          node.apply(o.routing, o.maxLineLength);
        },
        [path, rulesPath].filter((p) => p !== "").join(" and "),
        log,
      );
    },
  });
  await started;
}

/**
 * A managed gateway: destinations, routing and API key digests come from the
 * control plane. It listens only once it has a configuration (saved from an
 * earlier run, or the first snapshot): a gateway without its keys would turn
 * every proxy away, and a refused proxy stops for good.
 */
async function subscribe(
  node: GatewayNode,
  options: GatewayOptions,
  log: Logger,
): Promise<ControlSubscriber> {
  const cp = options.controlPlane!;
  const { subscribeUntilConfigured } = await import("../../dataplane/control/first-config.ts");
  const { nodeStatusFromStats, configFromSnapshot } = await import(
    "../../dataplane/control/control-config.ts"
  );
  return subscribeUntilConfigured(
    {
      url: cp.url,
      group: cp.group,
      role: "gateway",
      nodeToken: cp.nodeToken,
      ...(cp.stateDir === undefined ? {} : { stateDir: cp.stateDir }),
      ...(cp.ca === undefined ? {} : { ca: cp.ca }),
      log,
      onConfig(config) {
        // Check everything before changing anything: a bad snapshot is refused whole.
        const keys: ApiKey[] = config.keys.map((k) => {
          const where = `control plane key "${k.name}"`;
          checkKeyName(k.name, where);
          return { name: k.name, digest: parseDigest(k.digest, where) };
        });
        const routing = configFromSnapshot(options.routing, config);
        node.apply(routing);
        // Streams whose key is gone (deleted, or rotated to a new digest) are cut now.
        node.keys.replace(keys);
        log.info({ keys: node.keys.names() }, "API keys from the control plane applied");
      },
      status() {
        return nodeStatusFromStats(node.stats(), node.streams());
      },
    },
    "waiting for a configuration (destinations, API keys) from the control plane",
  );
}
