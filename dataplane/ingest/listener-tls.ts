import { X509Certificate } from "node:crypto";
import fs from "node:fs";
import type net from "node:net";
import type tls from "node:tls";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { lazyBuiltin } from "../../common/lazy-builtin.ts";
import { ThrottledWarning } from "../../common/log-throttle.ts";
import type { Logger } from "../../common/logger.ts";
import {
  type ListenerCounters,
  TLS_REJECT_REASONS,
  type TlsRejectReason,
} from "./listener-counters.ts";
import type { ListenerTlsSettings } from "./listener-tls-settings.ts";

const loadTls = lazyBuiltin<typeof tls>("node:tls");

/** How often the certificate, key and client CA files are checked for a change. */
const CHECK_INTERVAL_MS = 5_000;

/** Least time between two log lines about refused handshakes, per reason. */
const LOG_INTERVAL_MS = 10_000;

/**
 * Failed handshakes from one address within a second after which its next
 * connections are closed before a handshake (`throttled`), for a second, then
 * two, up to THROTTLE_MAX_MS while it keeps failing.
 */
const THROTTLE_FAILURES = 20;
const THROTTLE_MAX_MS = 30_000;
/** Addresses tracked at most; the oldest is forgotten first. */
const THROTTLE_ADDRESSES = 10_000;

/** OpenSSL's and Node's errors for a client that did not speak TLS. */
const NOT_TLS = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_HTTP_REQUEST",
  "ERR_SSL_HTTPS_PROXY_REQUEST",
  "ERR_SSL_UNKNOWN_PROTOCOL",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ERR_SSL_RECORD_LENGTH_MISMATCH",
]);

/** Why a handshake failed, from the error the TLS server reported. */
export function tlsRejectReason(err: NodeJS.ErrnoException): TlsRejectReason {
  const code = err.code ?? "";
  if (code === "ERR_TLS_HANDSHAKE_TIMEOUT") return "handshake_timeout";
  if (NOT_TLS.has(code)) return "not_tls";
  if (code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE") return "client_cert_refused";
  return "handshake_failed";
}

/** The files' identity: a change to any of them is a rotation to load. */
function filesStamp(files: readonly string[]): string {
  return files
    .map((f) => {
      try {
        const s = fs.statSync(f);
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return "missing";
      }
    })
    .join("|");
}

interface Material {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
}

/**
 * TLS for a process's data listeners (plaintext and pickle over TCP):
 * builds their servers, keeps their certificate current, and accounts for
 * every connection that ends before its data.
 *
 * - Rotation: the certificate, key and client CA files are checked every
 *   few seconds (and on reload()); a change is loaded into every server for
 *   new connections, open ones keep theirs. Files that do not load (a key
 *   not yet matching its new certificate, mid-rotation) leave the current
 *   certificate in place, with a warning, and are tried again when they
 *   change again.
 * - Mutual TLS (clientCaFile): the client certificate is verified against
 *   that CA; a connection without one, or with one it did not sign, is
 *   closed once the handshake is done, before anything it sent is read, and
 *   counted (client_cert_refused).
 * - Hostile clients: the handshake must finish within handshakeTimeoutMs;
 *   every failure is counted per reason and logged at most once per 10 s per
 *   reason; an address that fails THROTTLE_FAILURES handshakes within a
 *   second (carbon-c-relay retries at once, thousands of times a second,
 *   when it distrusts a certificate) has its next connections closed before
 *   any handshake, for a growing while (throttled), so that it costs next
 *   to nothing and other senders are not slowed.
 */
export class ListenerTls {
  readonly #s: ListenerTlsSettings;
  readonly #log: Logger;
  #material: Material;
  #stamp: string;
  readonly #servers = new Set<tls.Server>();
  readonly #warnings = new Map<TlsRejectReason, ThrottledWarning>();
  readonly #throttle = new Map<
    string,
    { windowAt: number; failures: number; until: number; penaltyMs: number }
  >();
  #timer: NodeJS.Timeout | null = null;
  /** Each connection's address as accepted, and whether it was closed before its handshake (throttled). */
  readonly #peers = new WeakMap<net.Socket, { remote: string | undefined; throttled: boolean }>();

  /** Loads the files now: one that cannot be read or used is a configuration error. */
  constructor(settings: ListenerTlsSettings, log: Logger) {
    this.#s = settings;
    this.#log = log;
    this.#stamp = filesStamp(this.#files());
    try {
      this.#material = this.#load();
    } catch (err) {
      throw new PolymurError(ErrorCode.Config, (err as Error).message);
    }
    for (const r of TLS_REJECT_REASONS) {
      this.#warnings.set(
        r,
        new ThrottledWarning(
          log,
          LOG_INTERVAL_MS,
          `TLS sender connections closed before their data: ${r}`,
        ),
      );
    }
  }

  get mutual(): boolean {
    return this.#s.clientCaFile !== null;
  }

  #files(): string[] {
    const s = this.#s;
    return s.clientCaFile === null
      ? [s.certFile, s.keyFile]
      : [s.certFile, s.keyFile, s.clientCaFile];
  }

  /** Reads the files and checks they make a context (a key that matches its certificate). */
  #load(): Material {
    const s = this.#s;
    const read = (file: string, what: string): Buffer => {
      try {
        return fs.readFileSync(file);
      } catch (err) {
        throw new Error(`${what} ${file}: ${(err as Error).message}`);
      }
    };
    const m: Material = {
      cert: read(s.certFile, "--tls-cert"),
      key: read(s.keyFile, "--tls-key"),
      ca: s.clientCaFile === null ? undefined : read(s.clientCaFile, "--tls-client-ca"),
    };
    try {
      loadTls().createSecureContext({ cert: m.cert, key: m.key, ca: m.ca });
    } catch (err) {
      throw new Error(
        `--tls-cert ${s.certFile} with --tls-key ${s.keyFile}${s.clientCaFile === null ? "" : ` and --tls-client-ca ${s.clientCaFile}`}: ${(err as Error).message}`,
      );
    }
    return m;
  }

  /**
   * A TLS server whose secure connections go to `accept`, counting in
   * `counters`; it is kept current by the checks until close().
   */
  createServer(counters: ListenerCounters, accept: (socket: tls.TLSSocket) => void): tls.Server {
    const m = this.#material;
    const server = loadTls().createServer(
      {
        cert: m.cert,
        key: m.key,
        ca: m.ca,
        minVersion: "TLSv1.2",
        requestCert: this.mutual,
        // Verified below, so that a refusal is counted with its reason
        // (Node closes a refused certificate without telling the server).
        rejectUnauthorized: false,
        handshakeTimeout: this.#s.handshakeTimeoutMs,
        noDelay: true,
      },
      (socket) => {
        if (this.mutual && !socket.authorized) {
          const cert = socket.getPeerCertificate();
          const why =
            cert === null || Object.keys(cert).length === 0
              ? "no client certificate"
              : `client certificate "${cert.subject?.CN ?? "?"}" refused: ${String(socket.authorizationError)}`;
          this.#refuse(counters, "client_cert_refused", socket.remoteAddress, why);
          socket.destroy();
          return;
        }
        accept(socket);
      },
    );
    // Before the TLS server wraps the connection: a throttled address is
    // closed without a handshake.
    server.prependListener("connection", (raw: net.Socket) => {
      // Its address, kept: a connection that fails is often gone (and has
      // no address any more) by the time its failure is reported.
      const throttled = this.#throttled(raw.remoteAddress);
      this.#peers.set(raw, { remote: raw.remoteAddress, throttled });
      if (throttled) {
        counters.tlsRejectedBy!.throttled++;
        this.#warnings.get("throttled")!.note({
          listener: counters.name,
          remote: raw.remoteAddress,
          reason: "throttled",
          detail: `${THROTTLE_FAILURES} failed handshakes within a second`,
        });
        raw.destroy();
      }
    });
    server.on("tlsClientError", (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      const raw = (socket as unknown as { _parent?: net.Socket })._parent;
      const peer = raw === undefined ? undefined : this.#peers.get(raw);
      // The TLS server still wraps a connection closed above, and reports
      // it as failed: it was counted (throttled) already.
      if (peer?.throttled === true) return;
      const reason = tlsRejectReason(err);
      // OpenSSL's own words ("wrong version number"), not its whole error stack.
      const detail = (err as { reason?: string }).reason ?? err.message;
      this.#refuse(counters, reason, socket.remoteAddress ?? peer?.remote, detail);
      socket.destroy();
    });
    this.#servers.add(server);
    server.once("close", () => this.#servers.delete(server));
    this.#timer ??= setInterval(() => this.reload(), CHECK_INTERVAL_MS).unref();
    return server;
  }

  #refuse(
    counters: ListenerCounters,
    reason: TlsRejectReason,
    remote: string | undefined,
    detail: string,
  ): void {
    counters.tlsRejectedBy![reason]++;
    this.#warnings.get(reason)!.note({ listener: counters.name, remote, reason, detail });
    if (remote !== undefined && reason !== "client_cert_refused") this.#failed(remote);
  }

  /** Counts a failed handshake from `remote`; enough within a second starts (or lengthens) its penalty. */
  #failed(remote: string): void {
    const now = Date.now();
    let t = this.#throttle.get(remote);
    if (t === undefined) {
      if (this.#throttle.size >= THROTTLE_ADDRESSES) {
        this.#throttle.delete(this.#throttle.keys().next().value!);
      }
      t = { windowAt: now, failures: 0, until: 0, penaltyMs: 0 };
      this.#throttle.set(remote, t);
    }
    if (now - t.windowAt >= 1000) {
      t.windowAt = now;
      t.failures = 0;
    }
    t.failures++;
    if (t.failures >= THROTTLE_FAILURES) {
      t.penaltyMs = Math.min(THROTTLE_MAX_MS, t.penaltyMs === 0 ? 1000 : t.penaltyMs * 2);
      t.until = now + t.penaltyMs;
      t.failures = 0;
    }
  }

  #throttled(remote: string | undefined): boolean {
    if (remote === undefined) return false;
    const t = this.#throttle.get(remote);
    if (t === undefined) return false;
    const now = Date.now();
    if (now < t.until) return true;
    // A quiet address is forgotten: its next failures start from nothing.
    if (t.until !== 0 && now - t.until > THROTTLE_MAX_MS) this.#throttle.delete(remote);
    return false;
  }

  /** Loads the files into every server if they changed since they were last tried. */
  reload(): void {
    const stamp = filesStamp(this.#files());
    if (stamp === this.#stamp) return;
    this.#stamp = stamp;
    let m: Material;
    try {
      m = this.#load();
    } catch (err) {
      this.#log.warn(
        { err: (err as Error).message },
        "TLS certificate files changed but cannot be used; the listeners keep the current certificate until they change again",
      );
      return;
    }
    this.#material = m;
    for (const server of this.#servers)
      server.setSecureContext({ cert: m.cert, key: m.key, ca: m.ca });
    this.#log.info(
      { certFile: this.#s.certFile, validTo: certificateEnd(m.cert) },
      "TLS certificate reloaded: new sender connections get it",
    );
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

/** When the first certificate of a PEM chain expires (for the log), or null if it cannot be read. */
function certificateEnd(pem: Buffer): string | null {
  try {
    return new Date(new X509Certificate(pem).validTo).toISOString();
  } catch {
    return null;
  }
}
