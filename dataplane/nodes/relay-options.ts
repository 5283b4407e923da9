import { availableParallelism, hostname } from "node:os";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { isLoopbackHost } from "../../common/loopback.ts";
import {
  addressText,
  bytesText,
  bytesValue,
  getAddress,
  getBool,
  getBytes,
  getInt,
  getSeconds,
  getString,
  type LegacyFlag,
  type OptionSpec,
  optionLabel,
  type RawOptions,
} from "../../common/options.ts";
import { DEFAULT_API_ADDR } from "../control/line-api.ts";
import {
  DESTINATION_DEFAULTS,
  OVERFLOW_POLICIES,
  type OverflowPolicy,
} from "../forward/destination.ts";
import { DISK_QUEUE_DEFAULTS, type DiskQueueSettings } from "../forward/destination-options.ts";
import { parseDestination, parseDestinationList } from "../forward/destination-spec.ts";
import { DESTINATION_TLS_OPTIONS, destinationTlsSettings } from "../forward/destination-tls.ts";
import { FSYNC_POLICIES, type FsyncPolicy } from "../forward/disk-queue.ts";
import { DEFAULT_MAX_LINE_LENGTH } from "../ingest/line-framer.ts";
import { LISTENER_TLS_OPTIONS } from "../ingest/listener-tls-settings.ts";
import { DEFAULT_READ_WAIT_MS } from "../ingest/read-pacer.ts";
import { DEFAULT_STAT_ADDR } from "../observe/stats-server.ts";
import {
  type HashAlgo,
  type HashCompat,
  type HashRouterKind,
  resolveOptions as resolveHashOptions,
} from "../route/hash/hash-config.ts";
import type { Distribution } from "../route/router.ts";
import { loadRules } from "../route/rules/rules-files.ts";
import { autoMaxConnections, readFileLimit } from "./file-limit.ts";
import type { RelayConfig } from "./relay-config.ts";
import { rulesListeners, rulesListenerTls } from "./rules-listeners.ts";

/** The relay's options. Names follow the Go polymur where it had them. */
export const RELAY_OPTIONS: readonly OptionSpec[] = [
  {
    name: "config",
    type: "string",
    default: "",
    help: "Config file of `name = value` lines (same names as the flags); SIGHUP re-reads it",
  },
  {
    name: "rules",
    type: "string",
    default: "",
    reloadable: true,
    help: "carbon-c-relay relay.conf: clusters, match, rewrite and aggregate rules decide where datapoints go (instead of --destinations and --distribution); its listen blocks replace --listen-addr and --udp-addr, a unix receptor --unix-socket, and `transport plain ssl PEM` --tls-cert and --tls-key; SIGHUP re-reads it",
  },
  {
    name: "listen-addr",
    type: "string",
    default: "0.0.0.0:2003",
    help: "TCP plaintext listen address",
  },
  {
    name: "udp-addr",
    type: "string",
    default: "",
    help: "UDP plaintext listen address; empty = no UDP listener",
  },
  {
    name: "unix-socket",
    type: "string",
    default: "",
    help: "Path of a unix stream socket taking Graphite plaintext, as carbon-c-relay's `listen linemode unix`; a stale socket file is replaced, a live one refused. Taken by the primary process; empty = off",
  },
  {
    name: "pickle-addr",
    type: "string",
    default: "",
    help: "carbon's pickle protocol (TCP; carbon's usual port is 2004) listen address, as carbon-relay and carbon's clients send it; every datapoint is validated and routed as a plaintext line would be. Shared by the worker processes, as the plaintext port is; empty = off",
  },
  ...LISTENER_TLS_OPTIONS,
  {
    name: "destinations",
    type: "string",
    default: "",
    reloadable: true,
    help: "Comma-separated destinations: host:port, host:port:instance or host:port=instance (plaintext lines over TCP), each optionally after pickle:// for carbon's pickle protocol (a carbon-cache's pickle port, usually 2004), tls:// for plaintext lines over TLS (carbon-c-relay's `transport plain ssl`) or pickle+tls:// for pickle over TLS (see --destination-tls-*)",
  },
  ...DESTINATION_TLS_OPTIONS,
  {
    name: "distribution",
    type: "string",
    default: "broadcast",
    reloadable: true,
    choices: ["broadcast", "hash-route"],
    help: "broadcast (every destination gets every datapoint) or hash-route (consistent hashing)",
  },
  {
    name: "hash",
    type: "string",
    // Unset: the router's own default (carbon_ch; mmh3_ch for fast-hashing).
    default: "",
    reloadable: true,
    choices: ["carbon_ch", "fnv1a_ch", "mmh3_ch", "jump_fnv1a_ch"],
    help: "Hash algorithm for hash-route (default carbon_ch; mmh3_ch with --router fast-hashing, as carbon)",
  },
  {
    name: "compat",
    type: "string",
    default: "carbon",
    reloadable: true,
    choices: ["carbon", "carbon-c-relay"],
    help: "Whose ring to reproduce bit for bit: graphite-carbon 1.1.x or carbon-c-relay",
  },
  {
    name: "replication",
    type: "int",
    default: "1",
    reloadable: true,
    help: "Destinations per datapoint in hash-route",
  },
  {
    name: "diverse-replicas",
    type: "bool",
    default: "",
    reloadable: true,
    help: "carbon's DIVERSE_REPLICAS: replicas on distinct hosts (default true under carbon compat; carbon-c-relay has no such option)",
  },
  {
    name: "router",
    type: "string",
    default: "consistent-hashing",
    reloadable: true,
    choices: ["consistent-hashing", "fast-hashing"],
    help: "carbon's router for hash-route (carbon compat)",
  },
  {
    name: "hash-normalize",
    type: "string",
    default: "none",
    reloadable: true,
    choices: ["none", "sorted-tags", "cleanse"],
    help: "Key normalisation before hashing: carbon's TAG_RELAY_NORMALIZED (sorted-tags) or carbon-c-relay's cleansing",
  },
  {
    name: "eject-after",
    type: "int",
    default: "0",
    reloadable: true,
    help: "hash-route: take a destination out of the ring after this many failed connection attempts in a row and re-route its queue (carbon's DYNAMIC_ROUTER); it rejoins when it reconnects. 0 = never: keep queueing for it",
  },
  {
    name: "queue-size",
    type: "string",
    default: bytesText(DESTINATION_DEFAULTS.queueBytes),
    reloadable: true,
    help: "Queue bound per destination in bytes (shared by the worker processes); per destination: 128MiB,10.0.5.30:2003@1GiB",
  },
  {
    name: "overflow",
    type: "string",
    default: DESTINATION_DEFAULTS.overflow,
    reloadable: true,
    help: "When a queue is full: drop-oldest, drop-newest, or block (pause reading from senders); per destination: drop-oldest,10.0.5.30:2003@block",
  },
  {
    name: "queue-dir",
    type: "string",
    default: "",
    help: "Directory for on-disk destination queues: what a destination's memory queue cannot hold, what comes while it is down, and what is left at shutdown go to disk, in order, and are sent from there (also after a restart or a crash); empty = memory only. One directory per polymur",
  },
  {
    name: "queue-disk-size",
    type: "string",
    default: bytesText(DISK_QUEUE_DEFAULTS.maxBytes),
    help: "Bytes on disk per destination (--queue-dir; shared by the worker processes); beyond it, the memory queue's --overflow policy applies",
  },
  {
    name: "queue-disk-total",
    type: "string",
    default: bytesText(DISK_QUEUE_DEFAULTS.totalBytes),
    help: "Bytes on disk over all destinations (--queue-dir); beyond it, or when the disk is full, the memory queue's --overflow policy applies",
  },
  {
    name: "queue-fsync",
    type: "string",
    default: DISK_QUEUE_DEFAULTS.fsync,
    choices: [...FSYNC_POLICIES],
    help: "When disk queues are flushed to the disk: interval (every --queue-fsync-interval) or write (after every record written); a crash of polymur itself loses nothing written either way, an OS crash or power cut loses at most the interval",
  },
  {
    name: "queue-fsync-interval",
    type: "seconds",
    default: String(DISK_QUEUE_DEFAULTS.fsyncIntervalMs / 1000),
    help: "Interval of --queue-fsync interval",
  },
  {
    name: "resend-window",
    type: "string",
    default: DESTINATION_DEFAULTS.resendBytes,
    reloadable: true,
    help: "Recently written bytes resent to a destination after its connection fails, per destination and worker process; auto = what this host's send buffer and the peer's receive buffer can hold (Linux: tcp_wmem max + tcp_rmem max); 0 = off",
  },
  {
    name: "backoff-min",
    type: "seconds",
    default: String(DESTINATION_DEFAULTS.backoffMinMs / 1000),
    reloadable: true,
    help: "First reconnect delay",
  },
  {
    name: "backoff-max",
    type: "seconds",
    default: String(DESTINATION_DEFAULTS.backoffMaxMs / 1000),
    reloadable: true,
    help: "Longest reconnect delay",
  },
  {
    name: "max-line-length",
    type: "int",
    default: String(DEFAULT_MAX_LINE_LENGTH),
    reloadable: true,
    help: "Longest accepted line in bytes (carbon's limit); longer lines are rejected, the connection stays",
  },
  {
    name: "max-connections",
    type: "string",
    default: "auto",
    help: "Most open sender connections per process (the primary and each worker); more are refused and counted. auto = the open-file limit (raised to the hard limit at start) less a reserve of an eighth of it (at least 256, at most half) for destinations' sockets, the stats endpoint, the line API, IPC and files; 0 = no limit",
  },
  {
    name: "idle-timeout",
    type: "seconds",
    default: "10m",
    reloadable: true,
    help: "Close a sender connection that sends nothing for this long (carbon-c-relay's default: 10 minutes; not counted while reading is paused); 0 = never; a reload applies to new connections",
  },
  {
    name: "read-wait",
    type: "seconds",
    default: String(DEFAULT_READ_WAIT_MS / 1000),
    help: "Longest a slow sender's datapoints wait before they are routed: a connection sending less than 16 KiB in that time is read about once per half of it, so that one read takes many of its writes (the CPU of a relay at low rates); faster connections and TLS ones are read at once; 0 = read every connection at once",
  },
  {
    name: "api-addr",
    type: "string",
    default: addressText(DEFAULT_API_ADDR),
    help: "Line API (putdest/deldest/getdest) address; empty = off",
  },
  {
    name: "api-token",
    type: "string",
    default: "",
    help: "Token the line API requires (`auth TOKEN` first); required when api-addr is not loopback",
  },
  {
    name: "stat-addr",
    type: "string",
    default: addressText(DEFAULT_STAT_ADDR),
    help: "HTTP address for /metrics (Prometheus), /healthz, /readyz, /stats, /debug/rejects; empty = off",
  },
  {
    name: "metrics-flush",
    type: "seconds",
    default: "60",
    reloadable: true,
    help: "Interval for sending polymur's own metrics through the relay to its destinations; 0 = off",
  },
  {
    name: "metrics-prefix",
    type: "string",
    default: "",
    reloadable: true,
    help: "Prefix of polymur's own metrics (default polymur.<hostname>)",
  },
  {
    name: "console-out",
    type: "bool",
    default: "false",
    help: "Also print every forwarded line to stdout",
  },
  {
    name: "workers",
    type: "int",
    default: "0",
    help: "Processes the relay runs at most; 0 = one per available core. All run from the start; above --workers-min they retire while the load is low and start again when it needs them",
  },
  {
    name: "workers-min",
    type: "int",
    default: "1",
    help: "Processes that run even when idle; 0 = --workers (all, always). 1 = the primary alone at low rates, the others while the load needs them",
  },
  {
    name: "workers-idle",
    type: "seconds",
    default: "60",
    help: "How long the load must stay low enough for one fewer process before the newest worker hands its connections back and retires",
  },
  {
    name: "control-plane",
    type: "string",
    default: "",
    help: "Control plane URL (http:// or https://): destinations and routing come from it, not from flags",
  },
  {
    name: "group",
    type: "string",
    default: "default",
    help: "This node's group at the control plane",
  },
  {
    name: "node-token",
    type: "string",
    default: "",
    help: "Node credential for the control plane; prefer POLYMUR_NODE_TOKEN: flags show in ps",
  },
  {
    name: "state-dir",
    type: "string",
    default: "",
    help: "Directory keeping the last configuration applied from the control plane, for restarts while it is unreachable",
  },
  {
    name: "control-ca",
    type: "string",
    default: "",
    help: "PEM file of the CA that signed an https control plane's certificate",
  },
  {
    name: "shutdown-timeout",
    type: "seconds",
    default: "30",
    help: "On SIGTERM, how long to drain queues before giving up",
  },
  {
    name: "log-level",
    type: "string",
    default: "info",
    choices: ["trace", "debug", "info", "warn", "error", "fatal"],
    help: "Log level",
  },
];

const QUEUE_IN_BYTES = `polymur bounds each destination's queue in bytes, not datapoints: --queue-size (default ${bytesText(DESTINATION_DEFAULTS.queueBytes)})`;

/**
 * The Go polymur's relay flags (cmd/polymur, and the earlier graphite
 * multiplier) that polymur has no option of that name for; the others
 * (-listen-addr, -api-addr, -stat-addr, -destinations, -distribution,
 * -metrics-flush, -console-out) are polymur's options of the same name.
 */
export const RELAY_GO_FLAGS: readonly LegacyFlag[] = [
  { name: "queue-cap", takesValue: true, action: "ignore", advice: QUEUE_IN_BYTES },
  { name: "outgoing-queue-cap", takesValue: true, action: "ignore", advice: QUEUE_IN_BYTES },
  {
    name: "incoming-queue-cap",
    takesValue: true,
    action: "ignore",
    advice:
      "polymur has no shared incoming queue: lines go straight to each destination's queue (--queue-size), and --overflow block pauses reading from senders when one is full",
  },
  {
    name: "listen-port",
    takesValue: true,
    action: "refuse",
    advice: "give the port in --listen-addr host:port",
  },
];

/** Node-level settings around the pipeline: workers, line API, stats, self-metrics, control plane. */
export interface RelayNodeOptions {
  apiAddr: { host: string; port: number } | null;
  apiToken: string;
  statAddr: { host: string; port: number } | null;
  metricsFlushSec: number;
  metricsPrefix: string;
  consoleOut: boolean;
  /** Processes (--workers). */
  workers: number;
  /** Processes that run even when idle (--workers-min, at most `workers`). */
  workersMin: number;
  /** Low load, in seconds, before the newest worker retires (--workers-idle). */
  workersIdleSec: number;
  shutdownTimeoutSec: number;
  logLevel: string;
  configPath: string;
  controlPlane: string;
  group: string;
  nodeToken: string;
  stateDir: string;
  controlCa: string;
}

export function buildRelayConfig(o: RawOptions): RelayConfig {
  const listen = getAddress(o, "listen-addr");
  if (listen === null) throw new PolymurError(ErrorCode.Config, "--listen-addr is required");
  const replication = getInt(o, "replication");
  if (replication < 1) {
    throw new PolymurError(ErrorCode.Config, `${optionLabel(o, "replication")} must be at least 1`);
  }
  const maxLineLength = getInt(o, "max-line-length");
  if (maxLineLength < 64) {
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, "max-line-length")} must be at least 64`,
    );
  }
  const router = getString(o, "router") as HashRouterKind;
  const algo = getString(o, "hash");
  const normalize = getString(o, "hash-normalize") as "none" | "sorted-tags" | "cleanse";
  const rulesPath = getString(o, "rules");
  const rules = rulesPath === "" ? null : loadRules(rulesPath);
  if (rules !== null && getString(o, "destinations") !== "") {
    throw new PolymurError(
      ErrorCode.Config,
      "--rules and --destinations are exclusive: with a rules file, its clusters are the destinations",
    );
  }
  const listeners = rules === null ? null : rulesListeners(rules);
  return {
    listen: listeners?.listen ?? listen,
    udp: listeners === null ? getAddress(o, "udp-addr") : listeners.udp,
    pickle: getAddress(o, "pickle-addr"),
    unix: listeners?.unix ?? (getString(o, "unix-socket") || null),
    tls: rulesListenerTls(listeners, o),
    destinations: parseDestinationList(getString(o, "destinations")),
    destinationTls: destinationTlsSettings(o),
    distribution: getString(o, "distribution") as Distribution,
    hash: {
      // An unset --hash is the router's default, not carbon_ch for every router.
      algo: algo === "" ? resolveHashOptions({ router }).algo : (algo as HashAlgo),
      compat: getString(o, "compat") as HashCompat,
      replication,
      // Unset: the chosen reference's default (true for carbon, absent in carbon-c-relay).
      ...(getString(o, "diverse-replicas") === ""
        ? {}
        : { diverseReplicas: getBool(o, "diverse-replicas") }),
      router,
      normalize,
    },
    ejectAfter: getInt(o, "eject-after"),
    rules,
    disk: diskQueueSettings(o),
    ...perDestination(o, "queue-size", "queueBytes", "queueBytesFor", bytesValue),
    ...perDestination(o, "overflow", "overflow", "overflowFor", parseOverflow),
    resendBytes: getString(o, "resend-window") === "auto" ? "auto" : getBytes(o, "resend-window"),
    backoffMinMs: Math.max(1, getSeconds(o, "backoff-min") * 1000),
    backoffMaxMs: Math.max(1, getSeconds(o, "backoff-max") * 1000),
    maxLineLength,
    maxConnections: maxConnections(o),
    idleTimeoutMs: getSeconds(o, "idle-timeout") * 1000,
    readWaitMs: getSeconds(o, "read-wait") * 1000,
  };
}

export function buildNodeOptions(o: RawOptions): RelayNodeOptions {
  const apiAddr = getAddress(o, "api-addr");
  const apiToken = getString(o, "api-token");
  if (apiAddr !== null && apiToken === "" && !isLoopbackHost(apiAddr.host)) {
    throw new PolymurError(
      ErrorCode.Config,
      `--api-addr ${apiAddr.host} is not a loopback address: set --api-token, since the line API changes destinations`,
    );
  }
  const workers = getInt(o, "workers");
  const max = workers > 0 ? workers : availableParallelism();
  const min = getInt(o, "workers-min");
  if (min < 0) {
    throw new PolymurError(ErrorCode.Config, `--workers-min must be 0 (all) or more; got ${min}`);
  }
  const controlPlane = getString(o, "control-plane");
  if (controlPlane !== "") {
    if (!/^https?:\/\//.test(controlPlane)) {
      throw new PolymurError(
        ErrorCode.Config,
        `--control-plane must be an http:// or https:// URL; got "${controlPlane}"`,
      );
    }
    if (getString(o, "destinations") !== "") {
      throw new PolymurError(
        ErrorCode.Config,
        "--destinations and --control-plane cannot both be set: a managed node takes its destinations from the control plane (polymurctl dest add)",
      );
    }
    if (getString(o, "node-token") === "") {
      throw new PolymurError(
        ErrorCode.Config,
        "--control-plane needs the node credential: set POLYMUR_NODE_TOKEN",
      );
    }
  }
  return {
    apiAddr,
    apiToken,
    statAddr: getAddress(o, "stat-addr"),
    metricsFlushSec: getSeconds(o, "metrics-flush"),
    metricsPrefix: getString(o, "metrics-prefix") || `polymur.${hostname().split(".")[0]}`,
    consoleOut: getBool(o, "console-out"),
    workers: max,
    workersMin: min === 0 ? max : Math.min(min, max),
    workersIdleSec: getSeconds(o, "workers-idle"),
    shutdownTimeoutSec: getSeconds(o, "shutdown-timeout"),
    logLevel: getString(o, "log-level"),
    configPath: getString(o, "config"),
    controlPlane: getString(o, "control-plane"),
    group: getString(o, "group"),
    nodeToken: getString(o, "node-token"),
    stateDir: getString(o, "state-dir"),
    controlCa: getString(o, "control-ca"),
  };
}

function parseOverflow(v: string, label: string): OverflowPolicy {
  if (!(OVERFLOW_POLICIES as readonly string[]).includes(v)) {
    throw new PolymurError(
      ErrorCode.Config,
      `${label} must be one of ${OVERFLOW_POLICIES.join(", ")}; got "${v}"`,
    );
  }
  return v as OverflowPolicy;
}

/**
 * A value with per-destination overrides: `DEFAULT[,SPEC@VALUE...]`, e.g.
 * `--overflow drop-oldest,10.0.5.30:2003@block`.
 */
function perDestination<T, K extends string, KF extends string>(
  o: RawOptions,
  name: string,
  key: K,
  keyFor: KF,
  parse: (v: string, label: string) => T,
): Record<K, T> & Record<KF, Record<string, T>> {
  const label = optionLabel(o, name);
  let def: T | undefined;
  const overrides: Record<string, T> = {};
  for (const item of getString(o, name).split(",")) {
    const part = item.trim();
    if (part === "") continue;
    const at = part.lastIndexOf("@");
    if (at < 0) {
      def = parse(part, label);
    } else {
      overrides[parseDestination(part.slice(0, at)).id] = parse(part.slice(at + 1), label);
    }
  }
  if (def === undefined) {
    const spec = RELAY_OPTIONS.find((s) => s.name === name)!;
    def = parse(spec.default, `--${name}`);
  }
  return { [key]: def, [keyFor]: overrides } as Record<K, T> & Record<KF, Record<string, T>>;
}

/** --max-connections: `auto` (from the open-file limit in effect), or a count, 0 = no limit. */
function maxConnections(o: RawOptions): number {
  const v = getString(o, "max-connections");
  if (v === "auto") return autoMaxConnections(readFileLimit());
  if (!/^\d+$/.test(v)) {
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, "max-connections")} must be auto or a whole number (0 = no limit); got "${v}"`,
    );
  }
  return Number(v);
}

/** --queue-dir and its options; null without --queue-dir. */
export function diskQueueSettings(o: RawOptions): DiskQueueSettings | null {
  const dir = getString(o, "queue-dir");
  if (dir === "") return null;
  const maxBytes = getBytes(o, "queue-disk-size");
  const totalBytes = getBytes(o, "queue-disk-total");
  if (maxBytes <= 0 || totalBytes <= 0) {
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, maxBytes <= 0 ? "queue-disk-size" : "queue-disk-total")} must be more than 0`,
    );
  }
  const intervalMs = getSeconds(o, "queue-fsync-interval") * 1000;
  if (intervalMs <= 0) {
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, "queue-fsync-interval")} must be more than 0`,
    );
  }
  return {
    dir,
    maxBytes,
    totalBytes,
    fsync: getString(o, "queue-fsync") as FsyncPolicy,
    fsyncIntervalMs: intervalMs,
  };
}
