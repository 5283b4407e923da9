/**
 * What to tell an operator whose client cannot talk to an HTTP/2 server
 * because of a URL or TLS mistake: the hint texts polymurctl (the control
 * plane) and the proxy (its gateways) share, and how a failure is told apart
 * from its cause chain. Node reports these mistakes as "The pending stream
 * has been canceled (caused by: …)" or an RST_STREAM CANCEL, which say
 * nothing of the fix.
 */

/** Certificate verification failures (Node/OpenSSL codes): the client does not trust the server's CA. */
export const TLS_VERIFY_CODES: ReadonlySet<string> = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
]);

/** The certificate does not name the host the URL does. */
export const TLS_HOST_CODE = "ERR_TLS_CERT_ALTNAME_INVALID";

/** An https:// URL for a server that answered in cleartext (OpenSSL: "wrong version number"). */
export const HINT_USE_HTTP = "if it serves cleartext HTTP/2, use an http:// URL";
/** An http:// URL for a TLS server (it resets the cleartext HTTP/2 preface). */
export const HINT_USE_HTTPS = "if it serves TLS, use an https:// URL";

/** The fix for an untrusted certificate: `option` says how this client is given a CA. */
export function caHint(option: string): string {
  return `pass the CA that signed it with ${option}`;
}

/** The fix for a certificate that does not name the URL's host. */
export function hostHint(url: string): string {
  const host = hostOf(url);
  return `the certificate does not name ${host}: use a host name it names in the URL, or reissue it with ${host} in its subjectAltName`;
}

/** A URL or TLS mistake, told from a failure's cause chain. */
export type ConnectionMistake =
  | { kind: "untrusted"; code: string; message: string }
  | { kind: "wrong-host"; code: string; message: string }
  | { kind: "https-to-cleartext"; code: string; message: string }
  | { kind: "http-to-tls"; code: string; message: string };

/** The first Node error code (errno, TLS, HTTP/2) in an error's cause chain, with its message. */
export function causeCode(err: unknown): { code: string; message: string } | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && /^[A-Z][A-Z0-9_]+$/.test(code)) {
      // Node's stream-cancel wrapper says nothing itself: its cause does.
      if (code === "ERR_HTTP2_STREAM_CANCEL" && e.cause instanceof Error) continue;
      return { code, message: e.message.trim() };
    }
  }
  return undefined;
}

/**
 * Which URL or TLS mistake `err` (a failed call to `url`) shows, if any.
 * `extra`: what else the client saw (its HTTP/2 session's own error, which
 * a stream's error may not carry).
 */
export function connectionMistake(
  err: unknown,
  url: string,
  extra?: unknown,
): ConnectionMistake | undefined {
  const n = causeCode(err) ?? causeCode(extra);
  const https = url.startsWith("https://");
  const text = `${n?.message ?? ""} ${err instanceof Error ? err.message : ""}`;
  if (n !== undefined && TLS_VERIFY_CODES.has(n.code)) return { kind: "untrusted", ...n };
  if (n !== undefined && n.code === TLS_HOST_CODE) return { kind: "wrong-host", ...n };
  if (
    https &&
    n !== undefined &&
    (n.code.startsWith("ERR_SSL_") || /wrong version number/.test(text))
  )
    return { kind: "https-to-cleartext", ...n };
  if (https && /wrong version number|packet length too long/.test(text))
    return {
      kind: "https-to-cleartext",
      code: "ERR_SSL_WRONG_VERSION_NUMBER",
      message: text.trim(),
    };
  if (
    !https &&
    (/CANCEL \(0x8\)|PROTOCOL_ERROR \(0x1\)/.test(text) ||
      n?.code === "ECONNRESET" ||
      (n?.code.startsWith("ERR_HTTP2") ?? false))
  )
    return { kind: "http-to-tls", code: n?.code ?? "CANCEL", message: text.trim() };
  return undefined;
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return url;
  }
}
