import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import {
  HEALTH_READ_MAX_BYTES,
  HealthRegistry,
  ServingStatus,
} from "../../../common/health-registry.ts";
import { type AuthDenial, CredentialCheck } from "../../../controlplane/auth.ts";
import { createControlHandler } from "../../../controlplane/control-handler.ts";
import { REQUIRED_CREDENTIAL } from "../../../controlplane/control-server.ts";
import { Health } from "../../../gen/grpc/health/v1/health_pb.ts";
import { ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import { bearer } from "../../fixtures/control-plane.ts";
import { waitFor } from "../../fixtures/until.ts";

const ADMIN = "admin-secret-0123";
const NODE = "node-secret-0123";
const READ_MAX = 64 * 1024;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** createControlHandler over ControlService (listNodes only) and health, on h2c and HTTP/1.1. */
async function serve() {
  const calls: string[] = [];
  const denials: AuthDenial[] = [];
  const handler = createControlHandler({
    routes: (r) => {
      new HealthRegistry([ControlService.typeName]).register(r);
      r.service(ControlService, {
        listNodes: () => {
          calls.push("listNodes");
          return { nodes: [], version: 7n };
        },
      });
    },
    required: REQUIRED_CREDENTIAL,
    check: new CredentialCheck({ admin: ADMIN, node: NODE }),
    onDenied: (d) => denials.push(d),
    readMaxBytes: READ_MAX,
  });
  const h2 = http2.createServer(handler);
  const h1 = http.createServer(handler);
  for (const s of [h2, h1]) {
    await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  }
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
    h1.closeAllConnections();
    await Promise.all([h2, h1].map((s) => new Promise((r) => s.close(r))));
  });
  const port = (h2.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    h1Port: (h1.address() as AddressInfo).port,
    calls,
    denials,
  };
}

const transports = {
  grpc: (url: string, token?: string) =>
    createGrpcTransport({ baseUrl: url, interceptors: token ? [bearer(token)] : [] }),
  connect: (url: string, token?: string) =>
    createConnectTransport({
      baseUrl: url,
      httpVersion: "2",
      interceptors: token ? [bearer(token)] : [],
    }),
  "grpc-web": (url: string, token?: string) =>
    createGrpcWebTransport({
      baseUrl: url,
      httpVersion: "2",
      interceptors: token ? [bearer(token)] : [],
    }),
} satisfies Record<string, (url: string, token?: string) => Transport>;

async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("the call succeeded");
}

/**
 * A raw gRPC call: headers and a message envelope that declares `declared`
 * bytes, of which only the 5-byte prefix is sent; the request stays open.
 */
function openCall(url: string, path: string, declared: number, headers = {}) {
  const session = http2.connect(url);
  session.on("error", () => {});
  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
    ...headers,
  });
  stream.on("error", () => {});
  let trailers: http2.IncomingHttpHeaders | undefined;
  stream.on("trailers", (t) => {
    trailers = t;
  });
  stream.resume();
  const head = Buffer.alloc(5);
  head.writeUInt32BE(declared, 1);
  stream.write(head);
  cleanups.push(() => {
    session.destroy();
  });
  return { trailers: () => waitFor("the answer's trailers", () => trailers) };
}

describe("createControlHandler", () => {
  it("answers a call without a credential before reading its body", async () => {
    const s = await serve();
    // 1 GiB declared, 5 bytes sent: an answer now cannot have waited for the body.
    const call = openCall(s.url, "/polymur.control.v1.ControlService/ListNodes", 1 << 30);
    const t = await call.trailers();
    expect(t["grpc-status"]).toBe(String(Code.Unauthenticated));
    expect(t["polymur-error-code"]).toBe("POLYMUR_ERR_UNAUTHENTICATED");
    expect(s.calls).toEqual([]);
    expect(s.denials).toMatchObject([
      { service: ControlService.typeName, method: "ListNodes", code: Code.Unauthenticated },
    ]);
  });

  it("reads no message over its limit from a caller with the credential", async () => {
    const s = await serve();
    const call = openCall(s.url, "/polymur.control.v1.ControlService/ListNodes", READ_MAX + 1, {
      authorization: `Bearer ${ADMIN}`,
    });
    const t = await call.trailers();
    expect(t["grpc-status"]).toBe(String(Code.ResourceExhausted));
    expect(s.calls).toEqual([]);
  });

  for (const [protocol, transport] of Object.entries(transports)) {
    it(`${protocol}: UNAUTHENTICATED without, PERMISSION_DENIED with the other credential, served with its own`, async () => {
      const s = await serve();
      const none = createClient(ControlService, transport(s.url));
      let e = await refusal(none.listNodes({}));
      expect(e.code).toBe(Code.Unauthenticated);
      expect(e.rawMessage).toMatch(/POLYMUR_ADMIN_TOKEN/);
      expect(e.metadata.get("polymur-error-code")).toBe("POLYMUR_ERR_UNAUTHENTICATED");
      const node = createClient(ControlService, transport(s.url, NODE));
      e = await refusal(node.listNodes({}));
      expect(e.code).toBe(Code.PermissionDenied);
      expect(e.metadata.get("polymur-error-code")).toBe("POLYMUR_ERR_PERMISSION_DENIED");
      expect(s.calls).toEqual([]);
      const admin = createClient(ControlService, transport(s.url, ADMIN));
      expect((await admin.listNodes({})).version).toBe(7n);
      expect(s.calls).toEqual(["listNodes"]);
    });
  }

  it("Connect with a declared length over the limit and no credential: 401, not 429", async () => {
    const s = await serve();
    const ask = (token?: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const session = http2.connect(s.url);
        session.on("error", reject);
        const st = session.request({
          ":method": "POST",
          ":path": "/polymur.control.v1.ControlService/ListNodes",
          "content-type": "application/proto",
          "content-length": String(1 << 30),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        });
        st.on("error", () => {});
        let status = 0;
        let body = "";
        st.on("response", (h) => {
          status = Number(h[":status"]);
        });
        st.setEncoding("utf8");
        st.on("data", (d: string) => {
          body += d;
        });
        st.on("end", () => {
          session.destroy();
          resolve({ status, body });
        });
      });
    const none = await ask();
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body)).toMatchObject({ code: "unauthenticated" });
    const admin = await ask(ADMIN);
    expect(admin.status).toBe(429);
    expect(JSON.parse(admin.body)).toMatchObject({ code: "resource_exhausted" });
  });

  it("health is open, with its own small read limit", async () => {
    const s = await serve();
    const health = createClient(Health, transports.grpc(s.url));
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    const call = openCall(s.url, "/grpc.health.v1.Health/Check", HEALTH_READ_MAX_BYTES + 1);
    expect((await call.trailers())["grpc-status"]).toBe(String(Code.ResourceExhausted));
    expect(s.denials).toEqual([]);
  });

  it("an unknown path is 404; a request with no authority is 400, and the server carries on", async () => {
    const s = await serve();
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const c = net.connect(s.h1Port, "127.0.0.1");
        let out = "";
        c.setEncoding("utf8");
        c.on("data", (d: string) => {
          out += d;
        });
        c.on("error", reject);
        c.on("close", () => resolve(out));
        c.end(text);
      });
    const noHost = await raw(
      "POST /grpc.health.v1.Health/Check HTTP/1.0\r\ncontent-type: application/proto\r\ncontent-length: 0\r\n\r\n",
    );
    expect(noHost).toMatch(/^HTTP\/1\.1 400 /);
    const unknown = await raw("POST /nope HTTP/1.0\r\nhost: x\r\ncontent-length: 0\r\n\r\n");
    expect(unknown).toMatch(/^HTTP\/1\.1 404 /);
    const health = createClient(Health, transports.grpc(s.url));
    expect((await health.check({ service: "" })).status).toBe(ServingStatus.SERVING);
  });
});
