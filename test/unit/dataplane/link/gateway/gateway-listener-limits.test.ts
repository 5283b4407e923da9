import http2 from "node:http2";
import net from "node:net";
import { Code, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { DRAIN_AFTER_ANSWER_BYTES } from "../../../../../common/drain-when-answered.ts";
import { HealthRegistry, ServingStatus } from "../../../../../common/health-registry.ts";
import { GatewayListener } from "../../../../../dataplane/link/gateway/gateway-listener.ts";
import { Health } from "../../../../../gen/grpc/health/v1/health_pb.ts";

const MiB = 1024 * 1024;
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A cleartext listener serving health through connect-node, as the gateway does. */
async function start(): Promise<{ port: number; url: string }> {
  const listener = new GatewayListener({
    host: "127.0.0.1",
    port: 0,
    tls: null,
    handler: connectNodeAdapter({ routes: (r) => new HealthRegistry().register(r) }),
  });
  const port = await listener.listen();
  cleanups.push(() => {
    listener.close();
    listener.destroy();
  });
  return { port, url: `http://127.0.0.1:${port}` };
}

async function serving(url: string): Promise<boolean> {
  const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
  return (await health.check({ service: "" })).status === ServingStatus.SERVING;
}

describe("GatewayListener read limits", () => {
  it("answers 400 to a request with no authority (HTTP/1.0 without Host) instead of ending the process", async () => {
    const { port, url } = await start();
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect(port, "127.0.0.1");
      let out = "";
      c.setEncoding("utf8");
      c.on("data", (d: string) => {
        out += d;
      });
      c.on("error", reject);
      c.on("close", () => resolve(out));
      c.end(
        "POST /grpc.health.v1.Health/Check HTTP/1.0\r\ncontent-type: application/proto\r\ncontent-length: 0\r\n\r\n",
      );
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(await serving(url)).toBe(true);
  });

  it("releases a caller that keeps sending after a RESOURCE_EXHAUSTED answer", async () => {
    const { url } = await start();
    const session = http2.connect(url);
    session.on("error", () => {});
    cleanups.push(() => {
      session.destroy();
    });
    const stream = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/grpc",
      te: "trailers",
    });
    stream.on("error", () => {});
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.resume();
    const total = 256 * MiB;
    const head = Buffer.alloc(5);
    head.writeUInt32BE(total, 1);
    stream.write(head);
    let sent = 5;
    const chunk = Buffer.alloc(64 * 1024);
    const pump = (): void => {
      while (sent < total && !stream.closed && !stream.destroyed) {
        sent += chunk.length;
        if (!stream.write(chunk)) {
          stream.once("drain", pump);
          return;
        }
      }
      if (!stream.closed) stream.end();
    };
    pump();
    await new Promise<void>((resolve) => stream.once("close", () => resolve()));
    expect(trailers?.["grpc-status"]).toBe(String(Code.ResourceExhausted));
    expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expect(sent).toBeLessThan(DRAIN_AFTER_ANSWER_BYTES + 8 * MiB);
    expect(await serving(url)).toBe(true);
  });
});
