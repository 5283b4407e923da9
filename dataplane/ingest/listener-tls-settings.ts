import { ErrorCode, PolymurError } from "../../common/errors.ts";
import {
  getSeconds,
  getString,
  type OptionSpec,
  optionLabel,
  type RawOptions,
} from "../../common/options.ts";

/**
 * TLS on the TCP listeners that take Graphite data (plaintext and pickle):
 * file paths, not their contents, so that each process reads them itself
 * and reads them again when they change (listener-tls.ts). Plain data: sent
 * to worker processes.
 */
export interface ListenerTlsSettings {
  /** PEM certificate (chain) file. */
  certFile: string;
  /** PEM private key file (may be certFile, when both are in one file, as carbon-c-relay takes them). */
  keyFile: string;
  /** PEM CA bundle: clients must present a certificate it signed (mutual TLS); null = no client certificate asked. */
  clientCaFile: string | null;
  /** A connection that has not finished its handshake by then is closed and counted. */
  handshakeTimeoutMs: number;
}

/** How long a client may take over its TLS handshake (--tls-handshake-timeout). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The options that make the data listeners TLS: the relay's and the proxy's. */
export const LISTENER_TLS_OPTIONS: readonly OptionSpec[] = [
  {
    name: "tls-cert",
    type: "string",
    default: "",
    help: "PEM certificate (chain) file: the plaintext and pickle listeners speak TLS (carbon-c-relay's `transport plain ssl`); re-read when it changes. Empty = cleartext",
  },
  {
    name: "tls-key",
    type: "string",
    default: "",
    help: "PEM private key file for --tls-cert (may be the same file); re-read when it changes",
  },
  {
    name: "tls-client-ca",
    type: "string",
    default: "",
    help: "PEM CA file: with --tls-cert, senders must present a client certificate signed by it (mutual TLS); re-read when it changes. Empty = no client certificate asked",
  },
  {
    name: "tls-handshake-timeout",
    type: "seconds",
    default: String(DEFAULT_HANDSHAKE_TIMEOUT_MS / 1000),
    help: "Close a TLS sender connection that has not finished its handshake in this long (counted)",
  },
];

/** The listeners' TLS from --tls-cert, --tls-key and --tls-client-ca; null when --tls-cert is not set. */
export function listenerTlsSettings(o: RawOptions): ListenerTlsSettings | null {
  const certFile = getString(o, "tls-cert");
  const keyFile = getString(o, "tls-key");
  const clientCaFile = getString(o, "tls-client-ca");
  if (certFile === "" && keyFile === "" && clientCaFile === "") return null;
  if (certFile === "" || keyFile === "") {
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, certFile === "" ? "tls-key" : "tls-cert")} needs ${certFile === "" ? "--tls-cert" : "--tls-key"}: the listeners' certificate and its key go together`,
    );
  }
  const handshakeTimeoutMs = getSeconds(o, "tls-handshake-timeout") * 1000;
  if (handshakeTimeoutMs <= 0) {
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, "tls-handshake-timeout")} must be more than 0`,
    );
  }
  return { certFile, keyFile, clientCaFile: clientCaFile || null, handshakeTimeoutMs };
}

/** The data listeners' TLS in one word, for the "listening" log line: off, server (--tls-cert) or mutual (--tls-client-ca). */
export function tlsMode(t: ListenerTlsSettings | null): "off" | "server" | "mutual" {
  if (t === null) return "off";
  return t.clientCaFile === null ? "server" : "mutual";
}
