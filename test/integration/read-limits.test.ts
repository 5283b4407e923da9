// Read limits on every Connect/gRPC listener, with real processes: a 400 MB
// request, streamed (never held in this process), to the control plane, the
// gateway and each health endpoint, with and without a credential. Each is
// answered with its documented code at once, the server's memory stays far
// below the request's size, the server stops taking the body long before its
// end, and other callers are answered meanwhile.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DRAIN_AFTER_ANSWER_BYTES } from "../../common/drain-when-answered.ts";
import { HEALTH_READ_MAX_BYTES } from "../../common/health-registry.ts";
import { MAX_CONCURRENT_STREAMS } from "../../common/http2-limits.ts";
import { CONTROL_READ_MAX_BYTES } from "../../controlplane/control-server.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.ts";
import { ControlService } from "../../gen/polymur/control/v1/control_pb.ts";
import {
  Compression,
  IngestService,
  StreamRequestSchema,
} from "../../gen/polymur/ingest/v1/ingest_pb.ts";
import {
  ADMIN_TOKEN,
  adminClient,
  bearer,
  ControlPlaneProcess,
  NODE_TOKEN,
} from "../fixtures/control-plane.ts";
import { LineSink } from "../fixtures/line-sink.ts";
import type { PolymurProcess } from "../fixtures/polymur.ts";
import { startGateway, TempDir } from "../fixtures/proxy-gateway.ts";
import { waitFor } from "../fixtures/until.ts";

const MiB = 1024 * 1024;
/** The request every test sends: larger than any limit, never allocated here. */
const HUGE = 400 * MiB;
/** How far a server's resident memory may grow while a HUGE request comes in. */
const GROWTH_LIMIT = 128 * MiB;
/**
 * What a server may take of a refused HUGE request's body before it stops
 * the caller: the drain after the answer, what the flow-control windows let
 * through (1 MiB per stream and per connection at the gateway), and slack for
 * what is buffered on this side.
 */
const TAKEN_LIMIT = DRAIN_AFTER_ANSWER_BYTES + 16 * MiB;

const API_KEY = "big-key";
const API_SECRET = "big-secret-0123456789";

/** Peak resident memory of a process, sampled from /proc while something runs. */
class RssSampler {
  readonly baseline: number;
  peak: number;
  readonly #pid: number;
  readonly #timer: NodeJS.Timeout;

  constructor(pid: number) {
    this.#pid = pid;
    this.baseline = this.#read();
    this.peak = this.baseline;
    this.#timer = setInterval(() => {
      this.peak = Math.max(this.peak, this.#read());
    }, 10);
  }

  #read(): number {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.#pid}/status`, "utf8"));
      return m === null ? 0 : Number(m[1]) * 1024;
    } catch {
      return 0; // the process is gone: its peak is already recorded
    }
  }

  stop(): { baseline: number; peak: number; growth: number } {
    clearInterval(this.#timer);
    this.peak = Math.max(this.peak, this.#read());
    return { baseline: this.baseline, peak: this.peak, growth: this.peak - this.baseline };
  }
}

interface HugeAnswer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: string;
  /** grpc-status, from trailers or a trailers-only answer; null for the Connect protocol. */
  grpcStatus: number | null;
  /** Bytes this side handed to the stream before it ended. */
  sent: number;
  rstCode: number;
}

interface HugeOptions {
  url: string;
  path: string;
  protocol: "grpc" | "connect";
  headers?: Record<string, string>;
  /** gRPC: whole messages sent before the huge one (a Hello). */
  before?: Uint8Array[];
  /** gRPC: send the huge message once the first response bytes arrive (after a Welcome). */
  afterFirstResponse?: boolean;
  /** Connect: declare the length (Content-Length) instead of streaming an unknown length. */
  declareLength?: boolean;
}

/**
 * One call whose body is HUGE bytes, written 64 KiB at a time as the stream
 * takes them, and kept writing, as a hostile caller would, until the server
 * ends the stream: the call ends only when the server releases it.
 */
class HugeCall {
  sent = 0;
  readonly done: Promise<HugeAnswer>;

  constructor(o: HugeOptions) {
    this.done = this.#run(o);
  }

  async #run(o: HugeOptions): Promise<HugeAnswer> {
    const session = http2.connect(o.url);
    session.on("error", () => {});
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": o.path,
      ...(o.protocol === "grpc"
        ? { "content-type": "application/grpc", te: "trailers" }
        : { "content-type": "application/proto" }),
      ...(o.declareLength ? { "content-length": String(HUGE) } : {}),
      ...o.headers,
    };
    const stream = session.request(headers);
    stream.on("error", () => {});
    let status = 0;
    let resHeaders: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const body: Buffer[] = [];
    let bodyBytes = 0;
    let responded = false;
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      resHeaders = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    const chunk = Buffer.alloc(64 * 1024);
    let left = HUGE;
    const write = (b: Uint8Array): boolean => {
      this.sent += b.byteLength;
      return stream.write(b);
    };
    const pump = (): void => {
      while (left > 0 && !stream.closed && !stream.destroyed) {
        const n = Math.min(chunk.length, left);
        left -= n;
        if (!write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
          stream.once("drain", pump);
          return;
        }
      }
      if (left === 0 && !stream.closed) stream.end();
    };
    const startHuge = (): void => {
      if (o.protocol === "grpc") {
        const head = Buffer.alloc(5);
        head.writeUInt32BE(HUGE - 5, 1);
        write(head);
        left -= 5;
      }
      pump();
    };
    for (const m of o.before ?? []) write(envelope(m));
    stream.on("data", (d: Buffer) => {
      if (bodyBytes < 64 * 1024) body.push(d);
      bodyBytes += d.length;
      if (!responded && o.afterFirstResponse) startHuge();
      responded = true;
    });
    if (!o.afterFirstResponse) startHuge();
    await new Promise<void>((resolve) => stream.once("close", () => resolve()));
    session.close();
    const grpc = trailers["grpc-status"] ?? resHeaders["grpc-status"];
    return {
      status,
      headers: resHeaders,
      trailers,
      body: Buffer.concat(body).toString("utf8"),
      grpcStatus: grpc === undefined ? null : Number(grpc),
      sent: this.sent,
      rstCode: stream.rstCode ?? 0,
    };
  }
}

function envelope(m: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(m.byteLength, 1);
  return Buffer.concat([head, m]);
}

/** Until the call is released, or a clear failure (the server kept it: the old hang). */
function released(call: HugeCall): Promise<HugeAnswer> {
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `the server did not release a refused call within 60 s (${(call.sent / MiB).toFixed(1)} MiB sent)`,
          ),
        ),
      60_000,
    );
  });
  return Promise.race([call.done, stuck]).finally(() => clearTimeout(timer));
}

/**
 * Sends one HUGE call while sampling the server's memory; once the call has
 * started sending, runs `meanwhile` (other callers' requests) beside it.
 */
async function hugeCall(
  pid: number,
  o: HugeOptions,
  meanwhile: () => Promise<void>,
): Promise<{ answer: HugeAnswer; growth: number }> {
  const rss = new RssSampler(pid);
  try {
    const call = new HugeCall(o);
    await waitFor("the huge call to start sending", () => (call.sent > 0 ? true : undefined));
    const [answer] = await Promise.all([released(call), meanwhile()]);
    return { answer, growth: rss.stop().growth };
  } finally {
    rss.stop();
  }
}

function healthClient(url: string) {
  return createClient(Health, createGrpcTransport({ baseUrl: url }));
}

async function expectServing(url: string): Promise<void> {
  const res = await healthClient(url).check({ service: "" });
  expect(res.status).toBe(ServingStatus.SERVING);
}

function expectBounded(r: { answer: HugeAnswer; growth: number }): void {
  expect(r.growth, `memory grew ${(r.growth / MiB).toFixed(0)} MiB`).toBeLessThan(GROWTH_LIMIT);
  expect(r.answer.sent, "the server stopped taking the body long before its end").toBeLessThan(
    TAKEN_LIMIT,
  );
}

describe("the control plane reads no more than its limits, and no body without a credential", () => {
  let cp: ControlPlaneProcess;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "polymur-limits-cp-"));
    cp = await ControlPlaneProcess.start(["--state-dir", dir]);
  });
  afterAll(async () => {
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const meanwhile = async (): Promise<void> => {
    await expectServing(cp.url);
    const res = await adminClient(cp.url).listDestinations({});
    expect(res.destinations).toEqual([]);
  };

  it(`tells HTTP/2 clients they may open at most ${MAX_CONCURRENT_STREAMS} streams at once`, async () => {
    const session = http2.connect(cp.url);
    session.on("error", () => {});
    try {
      const settings = await new Promise<http2.Settings>((resolve) =>
        session.once("remoteSettings", resolve),
      );
      expect(settings.maxConcurrentStreams).toBe(MAX_CONCURRENT_STREAMS);
    } finally {
      session.destroy();
    }
  });

  it("gRPC, no credential: UNAUTHENTICATED, before a byte of the body is read", async () => {
    const r = await hugeCall(
      cp.child.pid!,
      { url: cp.url, path: "/polymur.control.v1.ControlService/ListNodes", protocol: "grpc" },
      meanwhile,
    );
    expect(r.answer.grpcStatus).toBe(Code.Unauthenticated);
    expect(r.answer.trailers["polymur-error-code"]).toBe("POLYMUR_ERR_UNAUTHENTICATED");
    expect(r.answer.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expectBounded(r);
  });

  it("Connect, no credential, a declared 400 MB length: UNAUTHENTICATED (401), not RESOURCE_EXHAUSTED", async () => {
    const r = await hugeCall(
      cp.child.pid!,
      {
        url: cp.url,
        path: "/polymur.control.v1.NodeService/ReportStatus",
        protocol: "connect",
        declareLength: true,
      },
      meanwhile,
    );
    expect(r.answer.status).toBe(401);
    expect(JSON.parse(r.answer.body)).toMatchObject({ code: "unauthenticated" });
    expectBounded(r);
  });

  it("gRPC, the other kind's credential: PERMISSION_DENIED, before the body is read", async () => {
    const r = await hugeCall(
      cp.child.pid!,
      {
        url: cp.url,
        path: "/polymur.control.v1.ControlService/ListNodes",
        protocol: "grpc",
        headers: { authorization: `Bearer ${NODE_TOKEN}` },
      },
      meanwhile,
    );
    expect(r.answer.grpcStatus).toBe(Code.PermissionDenied);
    expectBounded(r);
  });

  it("with a credential, a message over the limit: RESOURCE_EXHAUSTED (gRPC and Connect)", async () => {
    const grpc = await hugeCall(
      cp.child.pid!,
      {
        url: cp.url,
        path: "/polymur.control.v1.NodeService/ReportStatus",
        protocol: "grpc",
        headers: { authorization: `Bearer ${NODE_TOKEN}` },
      },
      meanwhile,
    );
    expect(grpc.answer.grpcStatus).toBe(Code.ResourceExhausted);
    expect(decodeURIComponent(String(grpc.answer.trailers["grpc-message"]))).toContain(
      `readMaxBytes ${CONTROL_READ_MAX_BYTES}`,
    );
    expectBounded(grpc);
    // No declared length: read up to the limit, then refused.
    const connect = await hugeCall(
      cp.child.pid!,
      {
        url: cp.url,
        path: "/polymur.control.v1.ControlService/ListNodes",
        protocol: "connect",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      },
      meanwhile,
    );
    expect(connect.answer.status).toBe(429);
    expect(JSON.parse(connect.answer.body)).toMatchObject({ code: "resource_exhausted" });
    expectBounded(connect);
  });

  it("health (open to all): RESOURCE_EXHAUSTED past its own small limit, gRPC and Connect", async () => {
    const grpc = await hugeCall(
      cp.child.pid!,
      { url: cp.url, path: "/grpc.health.v1.Health/Check", protocol: "grpc" },
      meanwhile,
    );
    expect(grpc.answer.grpcStatus).toBe(Code.ResourceExhausted);
    expect(decodeURIComponent(String(grpc.answer.trailers["grpc-message"]))).toContain(
      `readMaxBytes ${HEALTH_READ_MAX_BYTES}`,
    );
    expectBounded(grpc);
    const connect = await hugeCall(
      cp.child.pid!,
      { url: cp.url, path: "/grpc.health.v1.Health/Check", protocol: "connect" },
      meanwhile,
    );
    expect(connect.answer.status).toBe(429);
    expectBounded(connect);
  });

  it("a standard client with a wrong credential: UNAUTHENTICATED, with its POLYMUR_ERR code", async () => {
    const wrong = createClient(
      ControlService,
      createGrpcTransport({ baseUrl: cp.url, interceptors: [bearer("wrong")] }),
    );
    const err = await wrong.listNodes({}).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect((err as ConnectError).metadata.get("polymur-error-code")).toBe(
      "POLYMUR_ERR_UNAUTHENTICATED",
    );
  });
});

describe("the gateway reads no more than its limits", () => {
  let gw: PolymurProcess;
  let sink: LineSink;
  let tmp: TempDir;
  let url: string;

  beforeAll(async () => {
    tmp = new TempDir();
    sink = await LineSink.start();
    const keys = tmp.file("keys", `${API_KEY} ${API_SECRET}\n`);
    gw = await startGateway(["--keys-file", keys, "--destinations", sink.address]);
    url = `http://127.0.0.1:${gw.port}`;
  });
  afterAll(async () => {
    await gw?.stop();
    await sink?.close();
    tmp?.close();
  });

  const meanwhile = async (): Promise<void> => {
    await expectServing(url);
  };

  it("health, gRPC and Connect: RESOURCE_EXHAUSTED at once, and the caller is released", async () => {
    const grpc = await hugeCall(
      gw.child.pid!,
      { url, path: "/grpc.health.v1.Health/Check", protocol: "grpc" },
      meanwhile,
    );
    expect(grpc.answer.grpcStatus).toBe(Code.ResourceExhausted);
    expect(grpc.answer.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expectBounded(grpc);
    const connect = await hugeCall(
      gw.child.pid!,
      { url, path: "/grpc.health.v1.Health/Check", protocol: "connect" },
      meanwhile,
    );
    expect(connect.answer.status).toBe(429);
    expect(JSON.parse(connect.answer.body)).toMatchObject({ code: "resource_exhausted" });
    expectBounded(connect);
  });

  it("a proxy stream without an API key: UNAUTHENTICATED, before the body is read", async () => {
    const r = await hugeCall(
      gw.child.pid!,
      { url, path: "/polymur.ingest.v1.IngestService/Stream", protocol: "grpc" },
      meanwhile,
    );
    expect(r.answer.grpcStatus).toBe(Code.Unauthenticated);
    expectBounded(r);
  });

  it("a proxy stream's message over the limit, after Hello: RESOURCE_EXHAUSTED, not ENHANCE_YOUR_CALM", async () => {
    const hello = toBinary(
      StreamRequestSchema,
      create(StreamRequestSchema, { msg: { case: "hello", value: { proxyId: "huge" } } }),
    );
    const r = await hugeCall(
      gw.child.pid!,
      {
        url,
        path: "/polymur.ingest.v1.IngestService/Stream",
        protocol: "grpc",
        headers: { authorization: `Bearer ${API_SECRET}` },
        before: [hello],
        afterFirstResponse: true,
      },
      meanwhile,
    );
    expect(r.answer.grpcStatus).toBe(Code.ResourceExhausted);
    expect(r.answer.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
    expectBounded(r);
  });

  it("a Connect client's batch over the limit: RESOURCE_EXHAUSTED", async () => {
    // 9 MiB: over the gateway's limit (twice --max-batch-bytes, 4 MiB, plus
    // framing), under what a Node client may hold unsent and still read an
    // answer (its maxSessionMemory, 10 MB).
    const client = createClient(
      IngestService,
      createGrpcTransport({ baseUrl: url, interceptors: [bearer(API_SECRET)] }),
    );
    const stream = client.stream(
      (async function* () {
        yield { msg: { case: "hello" as const, value: { proxyId: "connect-huge" } } };
        yield {
          msg: {
            case: "batch" as const,
            value: {
              seq: 1n,
              compression: Compression.NONE,
              payload: new Uint8Array(9 * MiB),
              lines: 1,
              rawBytes: 9 * MiB,
            },
          },
        };
        // Keep the request open: the answer must come from the gateway.
        await new Promise((r) => setTimeout(r, 60_000).unref());
      })(),
    );
    const seen: string[] = [];
    const err = await (async () => {
      for await (const res of stream) seen.push(res.msg.case ?? "");
    })().catch((e: unknown) => ConnectError.from(e));
    expect(seen).toEqual(["welcome"]);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
  });

  it("the stats endpoint's /healthz takes a 400 MB HTTP/1.1 request with bounded memory", async () => {
    const rss = new RssSampler(gw.child.pid!);
    try {
      let sent = 0;
      const req = http.request({
        host: "127.0.0.1",
        port: gw.statsPort,
        path: "/healthz",
        method: "GET",
        headers: { "content-type": "application/octet-stream" },
      });
      // Node's HTTP/1.1 server answers, then closes the connection rather
      // than read the rest: the close resets it (unread data), which now and
      // then reaches this side before the answer does. The end of this call
      // either way, not a failure.
      req.on("error", () => {});
      let answer: { status: number; body: string } | null = null;
      req.on("response", (r) => {
        let body = "";
        r.setEncoding("utf8");
        r.on("data", (d: string) => {
          body += d;
        });
        r.on("end", () => {
          answer = { status: r.statusCode ?? 0, body };
        });
      });
      const ended = new Promise<void>((resolve) => req.once("close", () => resolve()));
      const chunk = Buffer.alloc(64 * 1024);
      const pump = (): void => {
        while (sent < HUGE && !req.destroyed) {
          sent += chunk.length;
          if (!req.write(chunk)) {
            req.once("drain", pump);
            return;
          }
        }
        if (!req.destroyed) req.end();
      };
      pump();
      await ended;
      if (answer !== null) expect(answer).toEqual({ status: 200, body: "ok\n" });
      const { growth } = rss.stop();
      expect(growth, `memory grew ${(growth / MiB).toFixed(0)} MiB`).toBeLessThan(GROWTH_LIMIT);
      // And it answers the next caller.
      expect(await gw.get("/healthz")).toEqual({ status: 200, body: "ok\n" });
      await meanwhile();
    } finally {
      rss.stop();
    }
  });
});
