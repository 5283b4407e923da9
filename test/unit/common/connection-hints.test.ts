import { describe, expect, it } from "vitest";
import { connectionMistake } from "../../../common/connection-hints.ts";

/** A Node-style error with a code, and optionally a cause. */
function nodeError(code: string, message: string, cause?: Error): Error {
  const e = new Error(message, cause === undefined ? {} : { cause }) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

describe("connectionMistake", () => {
  it("looks through Node's stream-cancel wrapper to its cause", () => {
    const tls = nodeError(
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      "unable to verify the first certificate",
    );
    const cancel = nodeError(
      "ERR_HTTP2_STREAM_CANCEL",
      "The pending stream has been canceled",
      tls,
    );
    expect(connectionMistake(cancel, "https://g:443")).toEqual({
      kind: "untrusted",
      code: "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
      message: "unable to verify the first certificate",
    });
  });

  it("tells each mistake apart, by scheme", () => {
    const host = nodeError("ERR_TLS_CERT_ALTNAME_INVALID", "Hostname/IP does not match");
    expect(connectionMistake(host, "https://g:443")?.kind).toBe("wrong-host");
    const version = nodeError("ERR_SSL_WRONG_VERSION_NUMBER", "wrong version number");
    expect(connectionMistake(version, "https://g:443")?.kind).toBe("https-to-cleartext");
    const cancel = new Error("http/2 stream closed with error code CANCEL (0x8)");
    expect(connectionMistake(cancel, "http://g:80")?.kind).toBe("http-to-tls");
    // The same reset on an https URL is not a scheme mistake.
    expect(connectionMistake(cancel, "https://g:443")).toBeUndefined();
  });

  it("uses the session's own error when the stream's says nothing", () => {
    const stream = new Error("The pending stream has been canceled");
    const session = nodeError("DEPTH_ZERO_SELF_SIGNED_CERT", "self-signed certificate");
    expect(connectionMistake(stream, "https://g:443", session)?.kind).toBe("untrusted");
  });

  it("a refused connection is no URL or TLS mistake", () => {
    const refused = nodeError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1");
    expect(connectionMistake(refused, "https://127.0.0.1:1")).toBeUndefined();
  });
});
