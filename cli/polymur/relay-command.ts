import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import {
  formatHelp,
  parseConfigFile,
  type RawOptions,
  readOptionFile,
  resolveOptions,
} from "../../common/options.ts";
import type { ControlSubscriber } from "../../dataplane/control/control-subscriber.ts";
import { fileLimitText, raiseFileLimit } from "../../dataplane/nodes/file-limit.ts";
import type { RelayConfig } from "../../dataplane/nodes/relay-config.ts";
import { RelayNode } from "../../dataplane/nodes/relay-node.ts";
import {
  buildNodeOptions,
  buildRelayConfig,
  RELAY_GO_FLAGS,
  RELAY_OPTIONS,
  type RelayNodeOptions,
} from "../../dataplane/nodes/relay-options.ts";
import type { NodeConfig } from "../../gen/polymur/control/v1/control_pb.ts";
import { reloadConfig } from "./reload-config.ts";
import { parseRoleArgv } from "./role-args.ts";
import { handleSignals, undeliveredTotal } from "./signals.ts";

/** `polymur relay`: runs in the foreground until SIGTERM/SIGINT; SIGHUP reloads. */
export async function runRelay(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(formatHelp("usage: polymur relay [options]", RELAY_OPTIONS));
    return;
  }
  const flags = parseRoleArgv("relay", RELAY_OPTIONS, argv, RELAY_GO_FLAGS);
  const load = (): RawOptions => {
    const path = flags.get("config") ?? process.env["POLYMUR_CONFIG"] ?? "";
    const file = path === "" ? new Map<string, string>() : parseConfigFile(RELAY_OPTIONS, path);
    return resolveOptions(RELAY_OPTIONS, flags, process.env, file);
  };
  // Before the options are read (--max-connections auto derives from the
  // limit) and before worker processes are forked (they inherit it).
  const files = raiseFileLimit();
  const raw = load();
  const proc = buildNodeOptions(raw);
  const rulesPath = raw.get("rules") ?? "";
  if (rulesPath !== "" && proc.controlPlane !== "") {
    throw new PolymurError(
      ErrorCode.Config,
      "--rules and --control-plane are exclusive: a managed relay's rules come from the control plane (polymurctl rules set)",
    );
  }
  const config = buildRelayConfig(raw);
  const log = createLogger({ level: proc.logLevel, bindings: { role: "relay" } });
  log[files.error === undefined ? "info" : "warn"](
    { openFiles: files.limit, maxConnections: config.maxConnections },
    fileLimitText(files, config.maxConnections),
  );
  const node = new RelayNode(config, proc, log);
  const control = proc.controlPlane === "" ? null : await subscribe(node, proc, config, log);
  const started = node.start();

  handleSignals("relay", log, {
    ready: started,
    async stop() {
      await control?.subscriber.stop();
      return { undelivered: undeliveredTotal(await node.shutdown()) };
    },
    reload() {
      if (proc.configPath === "" && rulesPath === "") {
        log.warn("SIGHUP: no --config or --rules file to reload");
        return;
      }
      reloadConfig(
        RELAY_OPTIONS,
        raw,
        load,
        (next) => {
          const base = buildRelayConfig(next);
          if (control === null) node.reload(base);
          else node.apply(control.overlay(base));
        },
        [proc.configPath, rulesPath].filter((p) => p !== "").join(" and "),
        log,
      );
    },
  });
  await started;
}

/**
 * A managed node: its destinations and routing come from the control plane.
 * It starts listening only once it has a configuration (saved from an earlier
 * run, or the first snapshot), so nothing it accepts is lost for want of
 * destinations; senders wait in the TCP backlog meanwhile.
 */
async function subscribe(
  node: RelayNode,
  proc: RelayNodeOptions,
  initial: RelayConfig,
  log: Logger,
): Promise<{ subscriber: ControlSubscriber; overlay(base: RelayConfig): RelayConfig }> {
  // Loaded only for managed nodes: the Connect client and generated code cost
  // a standalone relay process some 25 MB it would never use.
  const { subscribeUntilConfigured } = await import("../../dataplane/control/first-config.ts");
  const { nodeStatusFromStats, configFromSnapshot } = await import(
    "../../dataplane/control/control-config.ts"
  );
  let base = initial;
  let snapshot: NodeConfig | null = null;
  const subscriber = await subscribeUntilConfigured(
    {
      url: proc.controlPlane,
      group: proc.group,
      role: "relay",
      nodeToken: proc.nodeToken,
      ...(proc.stateDir === "" ? {} : { stateDir: proc.stateDir }),
      ...(proc.controlCa === "" ? {} : { ca: readOptionFile(proc.controlCa, "control-ca") }),
      log,
      onConfig(config) {
        node.apply(configFromSnapshot(base, config));
        snapshot = config;
      },
      status() {
        return nodeStatusFromStats(node.stats());
      },
    },
    "waiting for a configuration from the control plane",
  );
  return {
    subscriber,
    overlay(next: RelayConfig): RelayConfig {
      base = next;
      return snapshot === null ? next : configFromSnapshot(next, snapshot);
    },
  };
}
