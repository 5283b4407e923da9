import { availableParallelism } from "node:os";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import {
  bytesText,
  getAddress,
  getBytes,
  getInt,
  getSeconds,
  getString,
  type LegacyFlag,
  type OptionSpec,
  type RawOptions,
  readOptionFile,
} from "../../common/options.ts";
import type { ListenerConfig } from "../ingest/line-listener.ts";
import type { CompressionName } from "../link/batch-codec.ts";
import { GATEWAY_LINK_DEFAULTS } from "../link/proxy/gateway-link.ts";
import { LINE_BATCHER_DEFAULTS } from "../link/proxy/line-batcher.ts";
import { buildRelayConfig, RELAY_OPTIONS } from "./relay-options.ts";

/** Ingest options the proxy shares with the relay (same names, same meaning). */
const SHARED = [
  "config",
  "listen-addr",
  "udp-addr",
  "pickle-addr",
  "unix-socket",
  "tls-cert",
  "tls-key",
  "tls-client-ca",
  "tls-handshake-timeout",
  "max-line-length",
  "max-connections",
  "idle-timeout",
  "read-wait",
  "stat-addr",
  "shutdown-timeout",
  "log-level",
  "workers",
];

/**
 * The Go polymur-proxy's flags that polymur has no option of that name for
 * (its -cert is an alias of --ca; -api-key, -gateway, -listen-addr and
 * -stat-addr are polymur's options of the same name; its -workers, the
 * number of its senders to the gateway, is taken as polymur's --workers,
 * processes that each have a stream to the gateway).
 */
export const PROXY_GO_FLAGS: readonly LegacyFlag[] = [
  {
    name: "queue-cap",
    takesValue: true,
    action: "ignore",
    advice:
      "polymur proxy bounds what it holds in bytes: --buffer-size in memory, --spool-size on disk",
  },
  {
    name: "metrics-flush",
    takesValue: true,
    action: "ignore",
    advice: "a proxy's own metrics are at --stat-addr /metrics",
  },
  {
    name: "console-out",
    takesValue: false,
    action: "refuse",
    advice: "a proxy does not print datapoints: run `polymur relay --console-out`",
  },
];

/** `polymur proxy`: the relay's ingest options plus the link to the gateway. */
export const PROXY_OPTIONS: readonly OptionSpec[] = [
  // A proxy reloads nothing (SIGHUP is only logged), so none of these is reloadable here.
  ...RELAY_OPTIONS.filter((s) => SHARED.includes(s.name)).map(({ reloadable: _, ...s }) =>
    s.name === "config"
      ? { ...s, help: "Config file of `name = value` lines (same names as the flags)" }
      : s.name === "workers"
        ? {
            ...s,
            help: "Processes sharing the listen ports (SO_REUSEPORT), each with its own stream to the gateway, its share of --buffer-size and --spool-size, and its own spool under --spool-dir; 0 = one per available core",
          }
        : s,
  ),
  {
    name: "gateway",
    type: "string",
    default: "",
    help: "Gateway URL(s), comma-separated: https://host:port (TLS) or http://host:port (cleartext HTTP/2); tried in turn on failure",
  },
  {
    name: "api-key",
    type: "string",
    default: "",
    help: "API key the gateway knows this proxy by; prefer POLYMUR_API_KEY (flags show in ps)",
  },
  {
    name: "ca",
    type: "string",
    default: "",
    aliases: ["cert"], // the Go polymur-proxy's -cert: the certificate to trust for the gateway
    help: "PEM file of CA certificate(s) to trust for https gateways (default: the system's)",
  },
  {
    name: "compression",
    type: "string",
    default: "zstd",
    choices: ["zstd", "gzip", "none"],
    help: "Batch compression",
  },
  {
    name: "batch-size",
    type: "bytes",
    default: bytesText(LINE_BATCHER_DEFAULTS.maxBytes),
    help: "Largest batch, uncompressed",
  },
  {
    name: "batch-delay",
    type: "seconds",
    default: `${LINE_BATCHER_DEFAULTS.maxDelayMs}ms`,
    help: "Longest a datapoint waits for its batch to fill",
  },
  {
    name: "buffer-size",
    type: "bytes",
    default: "64MiB",
    help: "Compressed batches kept in memory until the gateway acknowledges them; when full (and no spool), the proxy stops reading from its senders",
  },
  {
    name: "spool-dir",
    type: "string",
    default: "",
    help: "Directory for an on-disk spool of unacknowledged batches that survives restarts; empty = memory only",
  },
  {
    name: "spool-size",
    type: "bytes",
    default: "1GiB",
    help: "Bound of the spool on disk; when full, the proxy stops reading from its senders",
  },
  {
    name: "ping-interval",
    type: "seconds",
    default: String(GATEWAY_LINK_DEFAULTS.pingIntervalMs / 1000),
    help: "HTTP/2 PING interval on the link when no data arrives",
  },
  {
    name: "ping-timeout",
    type: "seconds",
    default: String(GATEWAY_LINK_DEFAULTS.pingTimeoutMs / 1000),
    help: "An unanswered PING closes the link after this long",
  },
  {
    name: "backoff-min",
    type: "seconds",
    default: String(GATEWAY_LINK_DEFAULTS.backoffMinMs / 1000),
    help: "First reconnect delay to the gateway",
  },
  {
    name: "backoff-max",
    type: "seconds",
    default: String(GATEWAY_LINK_DEFAULTS.backoffMaxMs / 1000),
    help: "Longest reconnect delay to the gateway",
  },
];

export interface ProxyOptions {
  /** Where the proxy takes lines from senders (the relay's listen options). */
  listener: ListenerConfig;
  /**
   * Processes (--workers; 0 = one per available core), each a whole proxy
   * pipeline with its own stream to the gateway, sharing the listen ports.
   */
  workers: number;
  gateways: string[];
  apiKey: string;
  ca: string | undefined;
  compression: CompressionName;
  batchBytes: number;
  batchDelayMs: number;
  bufferBytes: number;
  spoolDir: string | null;
  spoolBytes: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  statAddr: { host: string; port: number } | null;
  shutdownTimeoutSec: number;
  logLevel: string;
}

export function buildProxyOptions(o: RawOptions): ProxyOptions {
  const gateways = getString(o, "gateway")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (gateways.length === 0) {
    throw new PolymurError(
      ErrorCode.Config,
      "--gateway is required: the URL of a polymur gateway, e.g. https://gw.example.com:8443",
    );
  }
  for (const g of gateways) {
    let u: URL;
    try {
      u = new URL(g);
    } catch {
      throw new PolymurError(ErrorCode.Config, `--gateway: "${g}" is not a URL`);
    }
    if (u.protocol !== "https:" && u.protocol !== "http:") {
      throw new PolymurError(
        ErrorCode.Config,
        `--gateway: "${g}" must start with https:// (TLS) or http:// (cleartext HTTP/2)`,
      );
    }
  }
  const apiKey = getString(o, "api-key");
  if (apiKey === "") {
    throw new PolymurError(
      ErrorCode.Config,
      "an API key is required: set POLYMUR_API_KEY (or --api-key, which shows in ps)",
    );
  }
  const caPath = getString(o, "ca");
  const ca = caPath === "" ? undefined : readOptionFile(caPath, "ca");
  const batchBytes = getBytes(o, "batch-size");
  const maxLine = getInt(o, "max-line-length");
  if (batchBytes < Math.max(4096, maxLine + 1)) {
    throw new PolymurError(
      ErrorCode.Config,
      `--batch-size must be at least 4KiB and larger than --max-line-length (${maxLine})`,
    );
  }
  // The relay's table is the source of every ingest setting; options that a
  // proxy does not have (destinations, routing) keep their defaults.
  const full = new Map(o);
  for (const s of RELAY_OPTIONS) if (!full.has(s.name)) full.set(s.name, s.default);
  full.set("destinations", "");
  full.set("distribution", "broadcast");
  const spoolDir = getString(o, "spool-dir");
  const workers = getInt(o, "workers");
  return {
    listener: buildRelayConfig(full),
    workers: workers > 0 ? workers : availableParallelism(),
    gateways,
    apiKey,
    ca,
    compression: getString(o, "compression") as CompressionName,
    batchBytes,
    batchDelayMs: Math.max(1, getSeconds(o, "batch-delay") * 1000),
    bufferBytes: Math.max(1024 * 1024, getBytes(o, "buffer-size")),
    spoolDir: spoolDir === "" ? null : spoolDir,
    spoolBytes: Math.max(1024 * 1024, getBytes(o, "spool-size")),
    pingIntervalMs: Math.max(100, getSeconds(o, "ping-interval") * 1000),
    pingTimeoutMs: Math.max(100, getSeconds(o, "ping-timeout") * 1000),
    backoffMinMs: Math.max(1, getSeconds(o, "backoff-min") * 1000),
    backoffMaxMs: Math.max(1, getSeconds(o, "backoff-max") * 1000),
    statAddr: getAddress(o, "stat-addr"),
    shutdownTimeoutSec: getSeconds(o, "shutdown-timeout"),
    logLevel: getString(o, "log-level"),
  };
}
