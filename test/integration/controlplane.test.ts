import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  create,
  type DescMessage,
  type DescService,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.ts";
import { ControlService, NodeService } from "../../gen/polymur/control/v1/control_pb.ts";
import {
  ADMIN_TOKEN,
  adminClient,
  bearer,
  ControlPlaneProcess,
  NODE_TOKEN,
  Subscription,
  waitFor,
} from "../fixtures/control-plane.ts";

// The control plane as a real process: standard gRPC clients (grpc-js, built from the
// generated descriptors: no second codegen), Connect and gRPC-Web over HTTP/2, TLS,
// credentials, SIGTERM, and its file store across a restart.

// biome-ignore lint/suspicious/noExplicitAny: grpc-js's generic client deals in plain objects
type Plain = any;
const codec = (s: DescMessage) => ({
  serialize: (v: Plain) => {
    const u = toBinary(s, create(s, v));
    return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  },
  deserialize: (b: Buffer) => fromBinary(s, b),
});
function grpcDef(svc: DescService): grpc.ServiceDefinition {
  return Object.fromEntries(
    svc.methods.map((m) => [
      m.localName,
      {
        path: `/${svc.typeName}/${m.name}`,
        originalName: m.name,
        requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
        responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
        requestSerialize: codec(m.input).serialize,
        requestDeserialize: codec(m.input).deserialize,
        responseSerialize: codec(m.output).serialize,
        responseDeserialize: codec(m.output).deserialize,
      },
    ]),
  ) as grpc.ServiceDefinition;
}
function grpcClient(svc: DescService, port: number): Plain {
  const Ctor = grpc.makeGenericClientConstructor(grpcDef(svc), svc.typeName);
  return new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}
function md(token?: string): grpc.Metadata {
  const m = new grpc.Metadata();
  if (token !== undefined) m.set("authorization", `Bearer ${token}`);
  return m;
}
function unary(client: Plain, method: string, req: object, token?: string): Promise<Plain> {
  return new Promise((resolve, reject) => {
    client[method](req, md(token), (err: grpc.ServiceError | null, res: Plain) =>
      err ? reject(err) : resolve(res),
    );
  });
}

describe("control plane over the network", () => {
  let dir: string;
  let cp: ControlPlaneProcess;
  const grpcClients: Plain[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "polymur-cp-"));
    cp = await ControlPlaneProcess.start(["--state-dir", join(dir, "state")]);
  });
  afterAll(async () => {
    for (const c of grpcClients) c.close();
    await cp?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints the listening line with its port", () => {
    const line = cp.logs.find((l) => l.msg === "listening")!;
    expect(line).toMatchObject({ level: "info", host: "127.0.0.1", tls: false, version: 0 });
    expect(line["port"]).toBe(cp.port);
    expect(line["store"]).toMatch(/^file:/);
  });

  it("@grpc/grpc-js: unary calls, a server stream, and the status codes", async () => {
    const control = grpcClient(ControlService, cp.port);
    const node = grpcClient(NodeService, cp.port);
    grpcClients.push(control, node);
    const sub = node.subscribe({ nodeId: "grpc-js-node", group: "web" }, md(NODE_TOKEN));
    const configs: Plain[] = [];
    sub.on("data", (r: Plain) => configs.push(r.config));
    sub.on("error", () => {});
    await waitFor("first snapshot", () => configs[0]);
    const v0 = configs[0].version as bigint;

    const added = await unary(
      control,
      "addDestination",
      {
        destination: { spec: "10.0.5.30:2003", scope: { target: { case: "group", value: "web" } } },
      },
      ADMIN_TOKEN,
    );
    expect(added.version).toBe(v0 + 1n);
    const list = await unary(control, "listDestinations", {}, ADMIN_TOKEN);
    expect(list.destinations.map((d: Plain) => d.spec)).toContain("10.0.5.30:2003");
    const next = await waitFor("snapshot after the change", () =>
      configs.find((c) => c.version === v0 + 1n),
    );
    expect(next.destinations).toContain("10.0.5.30:2003");

    const conflict = await unary(
      control,
      "addDestination",
      {
        destination: { spec: "10.0.5.31:2003", scope: { target: { case: "all", value: true } } },
        expectedVersion: 0n,
      },
      ADMIN_TOKEN,
    ).catch((e: grpc.ServiceError) => e);
    expect(conflict.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(conflict.details).toMatch(
      /^state is at version \d+, you expected 0; re-read and retry$/,
    );
    expect(conflict.metadata.get("polymur-error-code")).toEqual(["POLYMUR_ERR_VERSION_CONFLICT"]);
    sub.cancel();
  });

  it("@grpc/grpc-js: health Check and Watch, without credentials", async () => {
    const health = grpcClient(Health, cp.port);
    grpcClients.push(health);
    const ok = await unary(health, "check", { service: "" });
    expect(ok.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const svc = await unary(health, "check", { service: "polymur.control.v1.NodeService" });
    expect(svc.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const unknown = await unary(health, "check", { service: "nope" }).catch((e) => e);
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    const w = health.watch({ service: "nope" }, md());
    const first = await new Promise<Plain>((resolve) => w.once("data", resolve));
    expect(first.status).toBe(HealthCheckResponse_ServingStatus.SERVICE_UNKNOWN);
    w.on("error", () => {});
    w.cancel();
  });

  it("refuses calls without the right credential", async () => {
    const control = grpcClient(ControlService, cp.port);
    const node = grpcClient(NodeService, cp.port);
    grpcClients.push(control, node);
    const cases: Array<[Plain, string, object, string | undefined, grpc.status]> = [
      [control, "listKeys", {}, undefined, grpc.status.UNAUTHENTICATED],
      [control, "listKeys", {}, "garbage", grpc.status.UNAUTHENTICATED],
      [control, "createKey", { name: "x" }, NODE_TOKEN, grpc.status.PERMISSION_DENIED],
      [node, "reportStatus", { nodeId: "n" }, ADMIN_TOKEN, grpc.status.PERMISSION_DENIED],
      [node, "reportStatus", { nodeId: "n" }, undefined, grpc.status.UNAUTHENTICATED],
      [node, "reportStatus", { nodeId: "n" }, "garbage", grpc.status.UNAUTHENTICATED],
    ];
    for (const [client, method, req, token, code] of cases) {
      const err = await unary(client, method, req, token).catch((e: grpc.ServiceError) => e);
      expect([method, token, err.code]).toEqual([method, token, code]);
    }
    // A server stream is refused the same way, before its first message.
    const sub = node.subscribe({ nodeId: "n" }, md(ADMIN_TOKEN));
    const err = await new Promise<grpc.ServiceError>((resolve) => sub.once("error", resolve));
    expect(err.code).toBe(grpc.status.PERMISSION_DENIED);
    const keys = await unary(control, "listKeys", {}, ADMIN_TOKEN);
    expect(keys.keys.map((k: Plain) => k.name)).not.toContain("x");
  });

  it("speaks Connect and gRPC-Web too (HTTP/2 prior knowledge)", async () => {
    for (const transport of [
      createConnectTransport({
        baseUrl: cp.url,
        httpVersion: "2",
        interceptors: [bearer(ADMIN_TOKEN)],
      }),
      createGrpcWebTransport({
        baseUrl: cp.url,
        httpVersion: "2",
        interceptors: [bearer(ADMIN_TOKEN)],
      }),
    ]) {
      const r = await createClient(ControlService, transport).getRouting({});
      expect(r.version).toBeGreaterThan(0n);
    }
  });

  it("keeps its state across a restart (file store)", async () => {
    const admin = adminClient(cp.url);
    await admin.createKey({ name: "survivor" });
    const before = await admin.listDestinations({});
    expect(await cp.stop()).toBe(0);
    cp = await ControlPlaneProcess.start(["--state-dir", join(dir, "state")]);
    const after = await adminClient(cp.url).listDestinations({});
    expect(after).toEqual(before);
    expect((await adminClient(cp.url).listKeys({})).keys.map((k) => k.name)).toContain("survivor");
  });

  it("on SIGTERM: health NOT_SERVING, streams end with UNAVAILABLE, exit 0", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: cp.url }));
    const seen: HealthCheckResponse_ServingStatus[] = [];
    const watching = (async () => {
      for await (const r of health.watch({ service: "" })) seen.push(r.status);
    })().catch((e: unknown) => e);
    const sub = new Subscription(cp.url, "n-term", "web");
    await sub.waitForVersion(1);
    await waitFor("health watch", () => (seen.length > 0 ? true : undefined));
    cp.kill("SIGTERM");
    expect(await cp.exited()).toBe(0);
    await sub.done;
    expect((sub.error as { code?: Code }).code).toBe(Code.Unavailable);
    await watching;
    expect(seen).toEqual([
      HealthCheckResponse_ServingStatus.SERVING,
      HealthCheckResponse_ServingStatus.NOT_SERVING,
    ]);
    expect(cp.logs.map((l) => l.msg)).toContain("stopped");
  });
});

describe("control plane startup", () => {
  it("refuses to start without an admin credential, naming the variable", async () => {
    const p = ControlPlaneProcess.spawn(["--state-dir", mkdtempSync(join(tmpdir(), "pcp-"))], {
      POLYMUR_ADMIN_TOKEN: "",
    });
    expect(await p.exited()).toBe(2);
    expect(p.stderr).toMatch(/no admin credential: set POLYMUR_ADMIN_TOKEN/);
  });

  it("serves TLS with ALPN h2 when given a certificate", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-tls-"));
    try {
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-keyout",
          join(dir, "key.pem"),
          "-out",
          join(dir, "cert.pem"),
          "-days",
          "1",
          "-subj",
          "/CN=127.0.0.1",
          "-addext",
          "subjectAltName=IP:127.0.0.1",
        ],
        { stdio: "ignore" },
      );
      const cp = await ControlPlaneProcess.start([
        "--state-dir",
        join(dir, "state"),
        "--tls-cert",
        join(dir, "cert.pem"),
        "--tls-key",
        join(dir, "key.pem"),
      ]);
      try {
        const ca = readFileSync(join(dir, "cert.pem"));
        const url = `https://127.0.0.1:${cp.port}`;
        const admin = createClient(
          ControlService,
          createGrpcTransport({
            baseUrl: url,
            nodeOptions: { ca },
            interceptors: [bearer(ADMIN_TOKEN)],
          }),
        );
        expect(
          (
            await admin.addDestination({
              destination: {
                spec: "10.0.0.1:2003",
                scope: { target: { case: "all", value: true } },
              },
            })
          ).version,
        ).toBe(1n);
        // grpc-js with TLS
        const Ctor = grpc.makeGenericClientConstructor(grpcDef(Health), Health.typeName);
        const h = new Ctor(`127.0.0.1:${cp.port}`, grpc.credentials.createSsl(ca));
        const ok = await unary(h, "check", { service: "" });
        expect(ok.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
        h.close();
        // Without the CA, the certificate is refused.
        const untrusting = createClient(ControlService, createGrpcTransport({ baseUrl: url }));
        const err = await untrusting.listKeys({}).then(
          () => null,
          (e: unknown) => e as Error,
        );
        expect(err?.message).toMatch(/self.signed certificate/);
      } finally {
        await cp.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
