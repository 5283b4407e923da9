import { readFileSync } from "node:fs";
import { homedir, hostname } from "node:os";
import { join } from "node:path";
import { ErrorCode, PolymurError } from "../common/errors.ts";
import {
  getAddress,
  getInt,
  getSeconds,
  getString,
  type OptionSpec,
  type RawOptions,
} from "../common/options.ts";
import type { Credentials } from "./auth.ts";
import { CONSUL_STORE_DEFAULTS, parseConsulUrl } from "./consul-store.ts";
import { NODE_EXPIRY_DEFAULTS } from "./node-expiry.ts";
import { HISTORY_DEFAULTS } from "./state-history.ts";

/** `polymur control` options: flags, POLYMUR_* variables, or `name = value` in --config. */
export const CONTROL_OPTIONS: readonly OptionSpec[] = [
  {
    name: "config",
    type: "string",
    default: "",
    help: "Config file of `name = value` lines (same names as the flags)",
  },
  {
    name: "listen-addr",
    type: "string",
    default: "127.0.0.1:7000",
    help: "Address serving the API (Connect, gRPC, gRPC-Web) and the web console, HTTP/2 and HTTP/1.1 on one port (port 0 picks a free one)",
  },
  {
    name: "state-dir",
    type: "string",
    default: "",
    help: "File store directory (default /var/lib/polymur/control as root, else ~/.local/state/polymur/control)",
  },
  {
    name: "store",
    type: "string",
    default: "",
    help: "Shared store instead of --state-dir: consul://host:port[,host:port…]/prefix (CONSUL_HTTP_TOKEN for ACLs)",
  },
  {
    name: "tls-cert",
    type: "string",
    default: "",
    help: "PEM certificate chain: serve TLS (ALPN h2 and http/1.1) instead of cleartext HTTP/2 and HTTP/1.1",
  },
  { name: "tls-key", type: "string", default: "", help: "PEM private key for --tls-cert" },
  {
    name: "admin-token",
    type: "string",
    default: "",
    help: "Admin credential for ControlService (polymurctl); required. Prefer POLYMUR_ADMIN_TOKEN: flags show in ps",
  },
  {
    name: "node-token",
    type: "string",
    default: "",
    help: "Node credential for NodeService (data-plane nodes). Prefer POLYMUR_NODE_TOKEN; unset = nodes are refused",
  },
  {
    name: "replica-id",
    type: "string",
    default: "",
    help: "This replica's name in node statuses (default <hostname>/<pid>)",
  },
  {
    name: "consul-wait",
    type: "seconds",
    default: String(CONSUL_STORE_DEFAULTS.waitSec),
    help: "Longest a Consul blocking query waits before it is renewed",
  },
  {
    name: "history-versions",
    type: "int",
    default: String(HISTORY_DEFAULTS.versions),
    help: `State versions kept in the store's history (polymurctl history, diff, rollback): the last N, 1-${HISTORY_DEFAULTS.maxVersions}; give every replica the same`,
  },
  {
    name: "node-expiry",
    type: "seconds",
    default: `${NODE_EXPIRY_DEFAULTS.expirySec / 3600}h`,
    help: "Remove the record of a node not connected and not seen for this long (nodes ls shows it as stale until then); 0 keeps records for ever",
  },
  {
    name: "log-level",
    type: "string",
    default: "info",
    choices: ["trace", "debug", "info", "warn", "error", "fatal"],
    help: "Log level",
  },
];

export type StoreChoice =
  | { kind: "file"; dir: string }
  | { kind: "consul"; url: string; addresses: { host: string; port: number }[]; prefix: string };

export interface ControlProcessOptions {
  listen: { host: string; port: number };
  store: StoreChoice;
  tls: { cert: Buffer; key: Buffer } | undefined;
  credentials: Credentials;
  replicaId: string;
  consulWaitSec: number;
  /** --history-versions. */
  historyVersions: number;
  /** --node-expiry in milliseconds; 0: never. */
  nodeExpiryMs: number;
  logLevel: string;
}

const fail = (message: string): never => {
  throw new PolymurError(ErrorCode.Config, message);
};

export function defaultStateDir(): string {
  if (process.getuid?.() === 0) return "/var/lib/polymur/control";
  const base = process.env["XDG_STATE_HOME"] || join(homedir(), ".local", "state");
  return join(base, "polymur", "control");
}

export function buildControlOptions(o: RawOptions): ControlProcessOptions {
  const listen = getAddress(o, "listen-addr") ?? fail("--listen-addr is required");
  const admin = getString(o, "admin-token").trim();
  if (admin === "") {
    fail(
      "no admin credential: set POLYMUR_ADMIN_TOKEN (for example to the output of `openssl rand -base64 32`); polymurctl sends the same value",
    );
  }
  const node = getString(o, "node-token").trim();
  if (node !== "" && node === admin) {
    fail(
      "POLYMUR_NODE_TOKEN must differ from POLYMUR_ADMIN_TOKEN: nodes must not hold the admin credential",
    );
  }
  const storeUrl = getString(o, "store");
  const stateDir = getString(o, "state-dir");
  let store: StoreChoice;
  if (storeUrl !== "") {
    if (stateDir !== "") fail("give --store or --state-dir, not both");
    store = { kind: "consul", url: storeUrl, ...parseConsulUrl(storeUrl) };
  } else {
    store = { kind: "file", dir: stateDir === "" ? defaultStateDir() : stateDir };
  }
  const certPath = getString(o, "tls-cert");
  const keyPath = getString(o, "tls-key");
  if ((certPath === "") !== (keyPath === "")) fail("--tls-cert and --tls-key go together");
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      return fail(`--${flag} ${path}: ${(err as Error).message}`);
    }
  };
  const historyVersions = getInt(o, "history-versions");
  if (historyVersions < 1 || historyVersions > HISTORY_DEFAULTS.maxVersions) {
    fail(`--history-versions must be 1 to ${HISTORY_DEFAULTS.maxVersions}; got ${historyVersions}`);
  }
  const tls =
    certPath === ""
      ? undefined
      : { cert: read("tls-cert", certPath), key: read("tls-key", keyPath) };
  return {
    listen,
    store,
    tls,
    credentials: { admin, node },
    replicaId: getString(o, "replica-id"),
    consulWaitSec: Math.max(1, Math.round(getSeconds(o, "consul-wait"))),
    historyVersions,
    nodeExpiryMs: Math.round(getSeconds(o, "node-expiry") * 1000),
    logLevel: getString(o, "log-level"),
  };
}

export function defaultReplicaId(): string {
  return `${hostname()}/${process.pid}`;
}
