import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { createLogger } from "../../common/logger.ts";
import { isLoopbackHost } from "../../common/loopback.ts";
import { formatHelp, parseConfigFile, resolveOptions } from "../../common/options.ts";
import { ConsulStore } from "../../controlplane/consul-store.ts";
import {
  buildControlOptions,
  CONTROL_OPTIONS,
  defaultReplicaId,
} from "../../controlplane/control-options.ts";
import { ControlServer } from "../../controlplane/control-server.ts";
import type { ControlStore } from "../../controlplane/control-store.ts";
import { FileStore } from "../../controlplane/file-store.ts";
import { parseRoleArgv } from "./role-args.ts";
import { handleSignals } from "./signals.ts";

/** `polymur control`: the control plane, in the foreground until SIGTERM/SIGINT. */
export async function runControl(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(formatHelp("usage: polymur control [options]", CONTROL_OPTIONS));
    return;
  }
  const flags = parseRoleArgv("control", CONTROL_OPTIONS, argv);
  const configPath = flags.get("config") ?? process.env["POLYMUR_CONFIG"] ?? "";
  const file =
    configPath === "" ? new Map<string, string>() : parseConfigFile(CONTROL_OPTIONS, configPath);
  const o = buildControlOptions(resolveOptions(CONTROL_OPTIONS, flags, process.env, file));
  const log = createLogger({ level: o.logLevel, bindings: { role: "control" } });

  const store: ControlStore =
    o.store.kind === "file"
      ? new FileStore(o.store.dir, { historyVersions: o.historyVersions })
      : new ConsulStore({
          addresses: o.store.addresses,
          prefix: o.store.prefix,
          waitSec: o.consulWaitSec,
          historyVersions: o.historyVersions,
          log,
          ...(process.env["CONSUL_HTTP_TOKEN"] ? { token: process.env["CONSUL_HTTP_TOKEN"] } : {}),
        });
  await store.open();
  if (o.credentials.node === "") {
    log.warn("POLYMUR_NODE_TOKEN is not set: every node subscription will be refused");
  }
  if (o.tls === undefined && !isLoopbackHost(o.listen.host)) {
    log.warn(
      { host: o.listen.host },
      "serving cleartext HTTP/2 and HTTP/1.1 beyond loopback: credentials (polymurctl's, the nodes', and the admin token a browser sends to the web console) cross the network unencrypted; set --tls-cert and --tls-key",
    );
  }
  let server: ControlServer;
  try {
    server = await ControlServer.start({
      store,
      credentials: o.credentials,
      host: o.listen.host,
      port: o.listen.port,
      ...(o.tls === undefined ? {} : { tls: o.tls }),
      replica: o.replicaId === "" ? defaultReplicaId() : o.replicaId,
      log,
      nodeExpiryMs: o.nodeExpiryMs,
    });
  } catch (err) {
    await store.close();
    throw new PolymurError(
      ErrorCode.Config,
      `cannot listen on ${o.listen.host}:${o.listen.port}: ${(err as Error).message}`,
    );
  }

  // server.close() turns health to NOT_SERVING first, then ends the streams.
  handleSignals("control plane", log, {
    async stop() {
      await server.close();
      await store.close();
      log.info("stopped");
    },
  });
  // Said once the handlers are in place: a signal sent at "listening" finds them.
  const cur = store.current();
  log.info(
    {
      host: o.listen.host,
      port: server.port,
      tls: o.tls !== undefined,
      store: store.description,
      version: cur?.state.version ?? null,
    },
    "listening",
  );
}
