import { readFileSync, statSync } from "node:fs";
import type tls from "node:tls";
import type { SecureContext } from "node:tls";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { lazyBuiltin } from "../../common/lazy-builtin.ts";
import { getString, type OptionSpec, optionLabel, type RawOptions } from "../../common/options.ts";

const loadTls = lazyBuiltin<typeof tls>("node:tls");

/**
 * How `tls://` and `pickle+tls://` destinations are reached: file paths, not
 * their contents, so that each process reads them itself, when it connects,
 * and reads them again when they change (DestinationTlsFiles). Plain data:
 * sent to worker processes in the RouterConfig.
 */
export interface DestinationTlsSettings {
  /** PEM CA bundle the destination's certificate must chain to; null = Node's default trust store. */
  caFile: string | null;
  /** PEM client certificate (chain) presented to the destination (mutual TLS); null = none. */
  certFile: string | null;
  /** PEM private key of certFile (may be the same file); null exactly when certFile is. */
  keyFile: string | null;
  /**
   * The name the destination's certificate must carry, and the SNI sent;
   * null = each destination's own host. An IP address is checked against
   * the certificate's IP addresses and sent as no SNI (RFC 6066).
   */
  serverName: string | null;
}

/** No flag set: Node's default trust store, no client certificate, each destination's host. */
export const DEFAULT_DESTINATION_TLS: DestinationTlsSettings = Object.freeze({
  caFile: null,
  certFile: null,
  keyFile: null,
  serverName: null,
});

const APPLIES = "tls:// and pickle+tls:// destinations";

/** The options of TLS to destinations: the relay's and the gateway's (through the relay's). */
export const DESTINATION_TLS_OPTIONS: readonly OptionSpec[] = [
  {
    name: "destination-tls-ca",
    type: "string",
    default: "",
    help: `PEM CA file the certificates of ${APPLIES} must chain to; re-read when it changes. Empty = Node's default trust store`,
  },
  {
    name: "destination-tls-cert",
    type: "string",
    default: "",
    help: `PEM client certificate (chain) file presented to ${APPLIES} (mutual TLS); re-read when it changes. Empty = none`,
  },
  {
    name: "destination-tls-key",
    type: "string",
    default: "",
    help: "PEM private key file for --destination-tls-cert (may be the same file); re-read when it changes",
  },
  {
    name: "destination-tls-server-name",
    type: "string",
    default: "",
    help: `Name the certificates of ${APPLIES} must carry, and the SNI sent (none for an IP address). Empty = each destination's host`,
  },
];

/**
 * The settings from --destination-tls-ca, --destination-tls-cert,
 * --destination-tls-key and --destination-tls-server-name (defaults when none
 * is set). The files are read once here, so that a path that is wrong fails
 * at start, naming the option; connections read them again as they change.
 */
export function destinationTlsSettings(o: RawOptions): DestinationTlsSettings {
  const caFile = getString(o, "destination-tls-ca");
  const certFile = getString(o, "destination-tls-cert");
  const keyFile = getString(o, "destination-tls-key");
  const serverName = getString(o, "destination-tls-server-name");
  if ((certFile === "") !== (keyFile === "")) {
    const [set, missing] =
      certFile === ""
        ? ["destination-tls-key", "--destination-tls-cert"]
        : ["destination-tls-cert", "--destination-tls-key"];
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, set)} needs ${missing}: the client certificate and its key go together (they may be one file)`,
    );
  }
  if (serverName !== "" && !/^[^\s/]+$/.test(serverName)) {
    throw new PolymurError(
      ErrorCode.Config,
      `${optionLabel(o, "destination-tls-server-name")} must be a host name or an IP address; got "${serverName}"`,
    );
  }
  if (caFile === "" && certFile === "" && serverName === "") return DEFAULT_DESTINATION_TLS;
  const settings: DestinationTlsSettings = {
    caFile: caFile || null,
    certFile: certFile || null,
    keyFile: keyFile || null,
    serverName: serverName || null,
  };
  try {
    new DestinationTlsFiles(settings).context();
  } catch (err) {
    throw new PolymurError(ErrorCode.Config, (err as Error).message);
  }
  return settings;
}

/** What a file was when it was read: a rotation changes one of these. */
function fileStamp(path: string, option: string): string {
  try {
    const s = statSync(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    throw new Error(`destination TLS: cannot read --${option} ${path}: ${(err as Error).message}`);
  }
}

/** What a PEM file must hold: its marker, and how a message names it. */
interface PemKind {
  readonly marker: RegExp;
  readonly name: string;
}
const CERTIFICATE: PemKind = { marker: /-----BEGIN CERTIFICATE-----/, name: "certificate" };
const PRIVATE_KEY: PemKind = { marker: /-----BEGIN [A-Z ]*PRIVATE KEY-----/, name: "private key" };

/** The text of a PEM file holding `kind`; an Error naming the option and the file otherwise. */
function readPem(path: string, option: string, kind: PemKind): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`destination TLS: cannot read --${option} ${path}: ${(err as Error).message}`);
  }
  if (!kind.marker.test(text)) {
    throw new Error(`destination TLS: --${option} ${path} holds no PEM ${kind.name}`);
  }
  return text;
}

/**
 * The TLS context of destination connections, from the files that
 * `settings` name: made at the first connect, kept while the files stay as
 * they were (device, inode, size, modification and change times), and made
 * again from the files at the first connect after one of them changed, so
 * that a renewed certificate or CA is used without a restart. The files are
 * checked (stat) on every connect attempt; read only when they changed.
 *
 * context() throws an Error saying which file and why when a file cannot be
 * read, or they do not make a context (a key that does not match its
 * certificate): that connect attempt fails, and the next one reads again.
 */
export class DestinationTlsFiles {
  readonly settings: DestinationTlsSettings;
  #stamp: string | null = null;
  #context: SecureContext | null = null;

  constructor(settings: DestinationTlsSettings) {
    this.settings = settings;
  }

  context(): SecureContext {
    const { caFile, certFile, keyFile } = this.settings;
    const stamp = [
      caFile === null ? "" : fileStamp(caFile, "destination-tls-ca"),
      certFile === null ? "" : fileStamp(certFile, "destination-tls-cert"),
      keyFile === null ? "" : fileStamp(keyFile, "destination-tls-key"),
    ].join("|");
    if (this.#context !== null && stamp === this.#stamp) return this.#context;
    const ca = caFile === null ? undefined : readPem(caFile, "destination-tls-ca", CERTIFICATE);
    const clientCert =
      certFile === null ? undefined : readPem(certFile, "destination-tls-cert", CERTIFICATE);
    const key = keyFile === null ? undefined : readPem(keyFile, "destination-tls-key", PRIVATE_KEY);
    let context: SecureContext;
    try {
      context = loadTls().createSecureContext({
        minVersion: "TLSv1.2",
        ...(ca === undefined ? {} : { ca }),
        ...(clientCert === undefined ? {} : { cert: clientCert, key }),
      });
    } catch (err) {
      const names = [caFile, certFile, keyFile].filter((f) => f !== null).join(", ");
      throw new Error(
        `destination TLS: ${names} do not make a TLS context: ${(err as Error).message}`,
      );
    }
    this.#context = context;
    this.#stamp = stamp;
    return context;
  }
}

/** One DestinationTlsFiles per settings object: the destinations of a process share one context. */
const shared = new WeakMap<DestinationTlsSettings, DestinationTlsFiles>();

/** The DestinationTlsFiles of `settings` (DEFAULT_DESTINATION_TLS for null), shared by every caller. */
export function destinationTlsFiles(settings: DestinationTlsSettings | null): DestinationTlsFiles {
  const s = settings ?? DEFAULT_DESTINATION_TLS;
  let files = shared.get(s);
  if (files === undefined) {
    files = new DestinationTlsFiles(s);
    shared.set(s, files);
  }
  return files;
}
