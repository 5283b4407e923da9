// Lines of a carbon.conf for a carbon daemon (carbon-cache, carbon-relay)
// that a polymur program starts itself: private directories, receivers on
// given ports, none of carbon's own housekeeping.

/** Where a carbon daemon keeps its files. */
export interface CarbonDirs {
  /** STORAGE_DIR. */
  readonly storage: string;
  /** CONF_DIR: carbon.conf, storage-schemas.conf. */
  readonly conf: string;
  /** LOG_DIR. */
  readonly log: string;
  /** PID_DIR. */
  readonly pid: string;
}

/** The ports a carbon daemon listens on; `query` (the cache query port) only for carbon-cache. */
export interface CarbonPorts {
  readonly line: number;
  readonly pickle: number;
  readonly query?: number;
}

/**
 * Settings every daemon started this way has: its directories, no
 * logrotation, no user switch, no UDP listener, no metrics of its own.
 */
export function carbonDaemonSettings(dirs: CarbonDirs): string[] {
  return [
    `STORAGE_DIR = ${dirs.storage}`,
    `CONF_DIR = ${dirs.conf}`,
    `LOG_DIR = ${dirs.log}`,
    `PID_DIR = ${dirs.pid}`,
    "ENABLE_LOGROTATION = False",
    "USER =",
    "ENABLE_UDP_LISTENER = False",
    "CARBON_METRIC_INTERVAL = 0",
  ];
}

/** A carbon-cache without limits: it caches, writes and creates as fast as it can. */
export const UNTHROTTLED_CACHE_SETTINGS: readonly string[] = [
  "MAX_CACHE_SIZE = inf",
  "MAX_UPDATES_PER_SECOND = inf",
  "MAX_CREATES_PER_MINUTE = inf",
];

/** The receivers (line, pickle and, when given, cache query) on `host` at `ports`. */
export function carbonReceiverSettings(host: string, ports: CarbonPorts): string[] {
  const lines = [
    `LINE_RECEIVER_INTERFACE = ${host}`,
    `LINE_RECEIVER_PORT = ${ports.line}`,
    `PICKLE_RECEIVER_INTERFACE = ${host}`,
    `PICKLE_RECEIVER_PORT = ${ports.pickle}`,
  ];
  if (ports.query !== undefined) {
    lines.push(`CACHE_QUERY_INTERFACE = ${host}`, `CACHE_QUERY_PORT = ${ports.query}`);
  }
  return lines;
}
