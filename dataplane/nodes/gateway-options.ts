import { availableParallelism, hostname } from "node:os";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import {
  copyOptions,
  getAddress,
  getBool,
  getBytes,
  getInt,
  getSeconds,
  getString,
  type LegacyFlag,
  type OptionSpec,
  type RawOptions,
  readOptionFile,
} from "../../common/options.ts";
import { TrustedProxies } from "../link/gateway/client-address.ts";
import { DEDUP_TABLE_DEFAULTS } from "../link/gateway/dedup-table.ts";
import type { RouterConfig } from "../route/router.ts";
import { RulesError } from "../route/rules/rules-config.ts";
import { buildRelayConfig, RELAY_GO_FLAGS, RELAY_OPTIONS } from "./relay-options.ts";

/** Relay options a gateway does not have: it has no plaintext listener or line API. */
const NOT_FOR_GATEWAY = new Set([
  "listen-addr",
  "udp-addr",
  "pickle-addr",
  "unix-socket",
  "tls-cert",
  "tls-key",
  "tls-client-ca",
  "tls-handshake-timeout",
  "max-connections",
  "idle-timeout",
  "read-wait",
  "api-addr",
  "api-token",
  "console-out",
]);

/** `polymur gateway`: the relay's routing and queue options plus the proxy-facing listener. */
export const GATEWAY_OPTIONS: readonly OptionSpec[] = [
  {
    name: "listen-addr",
    type: "string",
    default: "0.0.0.0:8443",
    help: "Listen address for proxy streams (HTTP/2) and polymur-proxy requests (HTTP/1.1)",
  },
  {
    name: "tls-cert",
    type: "string",
    default: "",
    aliases: ["cert"], // the Go polymur-gateway's -cert
    help: "PEM certificate (chain) file: serve HTTPS; without it the listener is cleartext (TLS terminated in front)",
  },
  {
    name: "tls-key",
    type: "string",
    default: "",
    aliases: ["key"], // the Go polymur-gateway's -key
    help: "PEM private key file for --tls-cert",
  },
  {
    name: "keys-file",
    type: "string",
    default: "",
    help: "API keys: lines of `name secret` or `name sha256:<hex>`; re-read when it changes and on SIGHUP; a file without keys needs the line `# polymur: no keys`",
  },
  {
    name: "key-prefix",
    type: "bool",
    default: "false",
    help: "Prefix every metric name with its API key's name (`product-A.web01.cpu`)",
  },
  {
    name: "max-batch-bytes",
    type: "bytes",
    default: "4MiB",
    help: "Largest batch accepted, compressed or not; larger ones are rejected",
  },
  {
    name: "trusted-proxies",
    type: "string",
    default: "",
    help: "Addresses/CIDRs of load balancers whose X-Forwarded-For names the client (logs, per-client counters)",
  },
  {
    name: "dedup-proxies",
    type: "int",
    default: String(DEDUP_TABLE_DEFAULTS.maxProxies),
    help: "Proxies remembered for de-duplicating resent batches (least recently seen forgotten first)",
  },
  ...RELAY_OPTIONS.filter((s) => !NOT_FOR_GATEWAY.has(s.name)),
];

/**
 * The Go polymur-gateway's flags that polymur has no option of that name for
 * (its -cert and -key are aliases of --tls-cert and --tls-key; -listen-addr,
 * -stat-addr, -destinations, -distribution, -metrics-flush and -key-prefix
 * are polymur's options of the same name).
 */
export const GATEWAY_GO_FLAGS: readonly LegacyFlag[] = [
  ...RELAY_GO_FLAGS.filter((f) => f.name !== "listen-port"),
  ...["listen-http-port", "listen-https-port"].map(
    (name): LegacyFlag => ({
      name,
      takesValue: true,
      action: "refuse",
      advice:
        "give host:port in --listen-addr; the listener serves HTTPS when --tls-cert and --tls-key are set",
    }),
  ),
  {
    name: "dev-mode",
    takesValue: false,
    action: "refuse",
    advice: "polymur has no built-in test key: put one in --keys-file (a line `name secret`)",
  },
  {
    name: "api-addr",
    takesValue: true,
    action: "ignore",
    advice:
      "a gateway has no line API: its destinations come from --destinations, --rules or the control plane",
  },
  {
    name: "console-out",
    takesValue: false,
    action: "refuse",
    advice: "a gateway does not print datapoints: run `polymur relay --console-out` behind it",
  },
];

export interface GatewayOptions {
  /** Where lines go: destinations, routing and queues (the relay's options). */
  routing: RouterConfig;
  /** Longest line in a proxy's batch, newline excluded (--max-line-length). */
  maxLineLength: number;
  listen: { host: string; port: number };
  tls: { cert: string; key: string } | null;
  keysFile: string | null;
  controlPlane: {
    url: string;
    nodeToken: string;
    group: string;
    stateDir?: string;
    ca?: string;
  } | null;
  keyPrefix: boolean;
  maxBatchBytes: number;
  trustedProxies: TrustedProxies;
  /** --trusted-proxies as given (a worker process builds its own TrustedProxies from it). */
  trustedProxiesSpec: string;
  dedupProxies: number;
  /**
   * Processes sharing the listen port (--workers; 0 given: one per available
   * core): the primary and `workers - 1` worker processes (gateway-pool.ts).
   */
  workers: number;
  statAddr: { host: string; port: number } | null;
  metricsFlushSec: number;
  metricsPrefix: string;
  shutdownTimeoutSec: number;
  logLevel: string;
  configPath: string;
}

export function buildGatewayOptions(o: RawOptions): GatewayOptions {
  const listen = getAddress(o, "listen-addr");
  if (listen === null) throw new PolymurError(ErrorCode.Config, "--listen-addr is required");
  const certPath = getString(o, "tls-cert");
  const keyPath = getString(o, "tls-key");
  if ((certPath === "") !== (keyPath === "")) {
    throw new PolymurError(ErrorCode.Config, "--tls-cert and --tls-key go together");
  }
  const tls =
    certPath === ""
      ? null
      : { cert: readOptionFile(certPath, "tls-cert"), key: readOptionFile(keyPath, "tls-key") };
  const keysFile = getString(o, "keys-file");
  const cpUrl = getString(o, "control-plane");
  if (keysFile !== "" && cpUrl !== "") {
    throw new PolymurError(
      ErrorCode.Config,
      "--keys-file and --control-plane are exclusive: with a control plane, keys come from it",
    );
  }
  if (keysFile === "" && cpUrl === "") {
    throw new PolymurError(
      ErrorCode.Config,
      "a gateway needs API keys: --keys-file FILE (lines of `name secret`) or --control-plane URL",
    );
  }
  let controlPlane: GatewayOptions["controlPlane"] = null;
  if (cpUrl !== "") {
    if (getString(o, "destinations") !== "") {
      throw new PolymurError(
        ErrorCode.Config,
        "--destinations and --control-plane are exclusive: with a control plane, destinations come from it",
      );
    }
    if (getString(o, "rules") !== "") {
      throw new PolymurError(
        ErrorCode.Config,
        "--rules and --control-plane are exclusive: a managed gateway's rules come from the control plane (polymurctl rules set)",
      );
    }
    const nodeToken = getString(o, "node-token");
    if (nodeToken === "") {
      throw new PolymurError(
        ErrorCode.Config,
        "--control-plane needs a node credential: set POLYMUR_NODE_TOKEN",
      );
    }
    const stateDir = getString(o, "state-dir");
    const caPath = getString(o, "control-ca");
    controlPlane = {
      url: cpUrl,
      nodeToken,
      group: getString(o, "group"),
      ...(stateDir === "" ? {} : { stateDir }),
      ...(caPath === "" ? {} : { ca: readOptionFile(caPath, "control-ca") }),
    };
  }
  const full = copyOptions(o);
  for (const s of RELAY_OPTIONS) if (NOT_FOR_GATEWAY.has(s.name)) full.set(s.name, s.default);
  full.set("udp-addr", "");
  const maxBatchBytes = getBytes(o, "max-batch-bytes");
  if (maxBatchBytes < 64 * 1024) {
    throw new PolymurError(ErrorCode.Config, "--max-batch-bytes must be at least 64KiB");
  }
  const workers = getInt(o, "workers");
  const relay = buildRelayConfig(full);
  const listenBlock = relay.rules?.listen[0];
  if (listenBlock !== undefined) {
    throw new RulesError(
      listenBlock.pos,
      "a gateway listens for proxies on its --listen-addr: remove the listen block from its rules",
    );
  }
  return {
    routing: relay,
    maxLineLength: relay.maxLineLength,
    listen,
    tls,
    keysFile: keysFile === "" ? null : keysFile,
    controlPlane,
    keyPrefix: getBool(o, "key-prefix"),
    maxBatchBytes,
    trustedProxies: new TrustedProxies(getString(o, "trusted-proxies")),
    trustedProxiesSpec: getString(o, "trusted-proxies"),
    dedupProxies: getInt(o, "dedup-proxies"),
    workers: workers > 0 ? workers : availableParallelism(),
    statAddr: getAddress(o, "stat-addr"),
    metricsFlushSec: getSeconds(o, "metrics-flush"),
    metricsPrefix: getString(o, "metrics-prefix") || `polymur.${hostname().split(".")[0]}`,
    shutdownTimeoutSec: getSeconds(o, "shutdown-timeout"),
    logLevel: getString(o, "log-level"),
    configPath: getString(o, "config"),
  };
}
