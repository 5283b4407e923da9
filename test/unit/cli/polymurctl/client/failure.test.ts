import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../../../../cli/polymurctl/client/exit.ts";
import { codeName, describeFailure } from "../../../../../cli/polymurctl/client/failure.ts";
import { ErrorCode, PolymurError, UsageError } from "../../../../../common/errors.ts";

const HTTP = "http://127.0.0.1:7000";
const HTTPS = "https://cp.example:7443";

/** What connect-node throws when the socket fails: a ConnectError caused by a Node error. */
function nodeFailure(code: string, message: string, connectCode = Code.Unavailable): ConnectError {
  const cause = Object.assign(new Error(message), { code });
  return new ConnectError(message, connectCode, undefined, undefined, cause);
}

describe("polymurctl failures", () => {
  it("the exit statuses: 0 ok, 1 refused, 2 usage, 3 unreachable, 4 not applied (--wait)", () => {
    expect(EXIT).toEqual({ ok: 0, refused: 1, usage: 2, unreachable: 3, notApplied: 4 });
  });

  it("usage and configuration errors exit 2 with their own message", () => {
    expect(describeFailure(new UsageError("dest rm takes one destination"), HTTP)).toEqual({
      exit: 2,
      message: "dest rm takes one destination",
    });
    const spec = new PolymurError(ErrorCode.DestinationSpec, 'bad destination "x"');
    expect(describeFailure(spec, HTTP)).toEqual({ exit: 2, message: 'bad destination "x"' });
  });

  it("a refused connection exits 3 and says what to check", () => {
    const f = describeFailure(
      nodeFailure("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:7000"),
      HTTP,
    );
    expect(f).toEqual({
      exit: 3,
      message: `cannot reach control plane at ${HTTP}: connection refused; is \`polymur control\` running? set --server or POLYMUR_SERVER`,
      code: "unavailable",
    });
  });

  it.each([
    ["ENOTFOUND", "host not found"],
    ["EAI_AGAIN", "host name lookup failed"],
    ["ETIMEDOUT", "connection timed out"],
    ["EHOSTUNREACH", "host unreachable"],
    ["ENETUNREACH", "network unreachable"],
    ["EPIPE", "connection closed"],
  ])("%s exits 3: %s", (errno, words) => {
    const f = describeFailure(nodeFailure(errno, `${errno} something`), HTTPS);
    expect(f.exit).toBe(EXIT.unreachable);
    expect(f.code).toBe("unavailable");
    expect(f.message).toBe(
      `cannot reach control plane at ${HTTPS}: ${words}; is \`polymur control\` running? set --server or POLYMUR_SERVER`,
    );
  });

  it("finds the Node error deep in the cause chain, and uses its message when it has no words", () => {
    const inner = Object.assign(new Error("weird socket trouble"), { code: "EWEIRD" });
    const outer = new ConnectError(
      "wrapped",
      Code.Internal,
      undefined,
      undefined,
      new Error("mid", { cause: inner }),
    );
    const f = describeFailure(outer, HTTPS);
    expect(f.exit).toBe(3);
    expect(f.message).toBe(
      `cannot reach control plane at ${HTTPS}: weird socket trouble; is \`polymur control\` running? set --server or POLYMUR_SERVER`,
    );
  });

  it("suggests https:// when a cleartext connection is reset", () => {
    const reset = nodeFailure("ECONNRESET", "read ECONNRESET");
    expect(describeFailure(reset, HTTP).message).toMatch(
      /: connection reset; .*; if it serves TLS, use an https:\/\/ URL$/,
    );
    expect(describeFailure(reset, HTTPS).message).not.toContain("use an https:// URL");
    expect(describeFailure(nodeFailure("ERR_HTTP2_ERROR", "Protocol error"), HTTP).message).toMatch(
      /; if it serves TLS, use an https:\/\/ URL$/,
    );
  });

  it("an unverifiable certificate exits 3 and points at --ca", () => {
    const f = describeFailure(
      nodeFailure("DEPTH_ZERO_SELF_SIGNED_CERT", "self-signed certificate"),
      HTTPS,
    );
    expect(f).toEqual({
      exit: 3,
      message: `cannot verify the certificate of the control plane at ${HTTPS}: self-signed certificate; pass the CA that signed it with --ca FILE (or POLYMUR_CA)`,
      code: "unavailable",
    });
  });

  it("a failed TLS handshake with https:// suggests http://", () => {
    const ssl = nodeFailure("ERR_SSL_WRONG_VERSION_NUMBER", "wrong version number");
    expect(describeFailure(ssl, HTTPS)).toEqual({
      exit: 3,
      message: `TLS handshake with the control plane at ${HTTPS} failed (ERR_SSL_WRONG_VERSION_NUMBER); if it serves cleartext HTTP/2, use an http:// URL`,
      code: "unavailable",
    });
    expect(describeFailure(ssl, HTTP).message).toMatch(/^cannot reach .*: wrong version number;/);
  });

  it("connect-node's own transport failures exit 3", () => {
    const f = describeFailure(
      new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled),
      HTTP,
    );
    expect(f).toEqual({
      exit: 3,
      message: `cannot talk to control plane at ${HTTP}: http/2 stream closed with error code CANCEL (0x8); if it serves TLS, use an https:// URL`,
      code: "canceled",
    });
  });

  it("a deadline exits 3 and names --timeout", () => {
    expect(describeFailure(new ConnectError("timed out", Code.DeadlineExceeded), HTTP)).toEqual({
      exit: 3,
      message: `control plane at ${HTTP} did not answer in time; is it overloaded or behind a firewall? (--timeout SECS)`,
      code: "deadline_exceeded",
    });
  });

  it("an answer from the control plane exits 1 with its message, gRPC code and POLYMUR_ERR_* code", () => {
    const notFound = new ConnectError(
      "no destination 10.0.0.1:2003",
      Code.NotFound,
      new Headers({ "polymur-error-code": ErrorCode.NotFound }),
    );
    expect(describeFailure(notFound, HTTP)).toEqual({
      exit: 1,
      message: "no destination 10.0.0.1:2003",
      code: "not_found",
      polymurCode: "POLYMUR_ERR_NOT_FOUND",
    });
    expect(describeFailure(new ConnectError("busy", Code.FailedPrecondition), HTTP)).toEqual({
      exit: 1,
      message: "busy",
      code: "failed_precondition",
    });
  });

  it("a refused credential exits 1 and says where polymurctl takes it from", () => {
    for (const code of [Code.Unauthenticated, Code.PermissionDenied]) {
      const f = describeFailure(new ConnectError("bad token", code), HTTP);
      expect(f.exit).toBe(EXIT.refused);
      expect(f.message).toBe(
        "bad token (polymurctl sends POLYMUR_ADMIN_TOKEN, --token or token = … in its config file)",
      );
    }
    const f = describeFailure(new ConnectError("no such service", Code.Unimplemented), HTTP);
    expect(f).toMatchObject({
      exit: 1,
      message: `no such service (is ${HTTP} a polymur control plane?)`,
      code: "unimplemented",
    });
  });

  it("anything else exits 1 as unknown", () => {
    expect(describeFailure(new Error("boom"), HTTP)).toEqual({
      exit: 1,
      message: "boom",
      code: "unknown",
    });
  });

  it("names gRPC codes in snake_case", () => {
    expect(codeName(Code.DeadlineExceeded)).toBe("deadline_exceeded");
    expect(codeName(Code.ResourceExhausted)).toBe("resource_exhausted");
    expect(codeName(Code.Unavailable)).toBe("unavailable");
    expect(codeName(99 as Code)).toBe("99");
  });
});
