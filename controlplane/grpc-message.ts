import type { connectNodeAdapter } from "@connectrpc/connect-node";

type NodeHandlerFn = ReturnType<typeof connectNodeAdapter>;

/**
 * Re-encodes the gRPC `grpc-message` header/trailer the way the gRPC spec
 * says (PROTOCOL-HTTP2.md, "Status-Message": percent-encode only bytes
 * outside 0x20-0x7E, and "%"). connect-es writes it with encodeURIComponent
 * (protocol-grpc/trailer-status.js), and grpc-js reads it with decodeURI
 * (subchannel-call.js), which leaves reserved characters encoded: a
 * grpc-js client would see "version 1%2C you expected 0%3B re-read" for
 * "version 1, you expected 0; re-read". Connect's own clients decode both.
 */
export function withSpecGrpcMessage(handler: NodeHandlerFn): NodeHandlerFn {
  return (req, res) => {
    const r = res as unknown as {
      addTrailers(h: Record<string, unknown>): void;
      writeHead(status: number, ...rest: unknown[]): unknown;
    };
    const addTrailers = r.addTrailers.bind(r);
    r.addTrailers = (h) => addTrailers(fix(h));
    const writeHead = r.writeHead.bind(r);
    r.writeHead = (status, ...rest) =>
      writeHead(
        status,
        ...rest.map((x) =>
          typeof x === "object" && x !== null ? fix(x as Record<string, unknown>) : x,
        ),
      );
    handler(req, res);
  };
}

function fix(headers: Record<string, unknown>): Record<string, unknown> {
  const v = headers["grpc-message"];
  if (typeof v !== "string") return headers;
  let text: string;
  try {
    text = decodeURIComponent(v);
  } catch {
    return headers;
  }
  return { ...headers, "grpc-message": encodeGrpcMessage(text) };
}

export function encodeGrpcMessage(text: string): string {
  let out = "";
  for (const b of Buffer.from(text, "utf8")) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
