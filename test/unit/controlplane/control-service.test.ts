import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Interceptor,
} from "@connectrpc/connect";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HealthRegistry, ServingStatus } from "../../../common/health-registry.ts";
import { controlRoutes } from "../../../controlplane/control-server.ts";
import { FileStore } from "../../../controlplane/file-store.ts";
import { Health } from "../../../gen/grpc/health/v1/health_pb.ts";
import {
  ControlService,
  Distribution,
  NodeService,
} from "../../../gen/polymur/control/v1/control_pb.ts";
import { refusal } from "../../fixtures/refusal.ts";
import { until } from "../../fixtures/until.ts";

const ADMIN = "admin-secret-token";
const NODE = "node-secret-token";
const all = { target: { case: "all" as const, value: true } };
const group = (g: string) => ({ target: { case: "group" as const, value: g } });

function bearer(token: string | undefined): Interceptor {
  return (next) => async (req) => {
    if (token !== undefined) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

let dir: string;
let store: FileStore;
let health: HealthRegistry;
let shutdown: AbortController;
let logText: string;
let now: number;
let clients: {
  transport: (token?: string) => ReturnType<typeof createRouterTransport>;
  admin: Client<typeof ControlService>;
  node: Client<typeof NodeService>;
};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "polymur-svc-"));
  store = new FileStore(dir);
  await store.open();
  health = new HealthRegistry([ControlService.typeName, NodeService.typeName]);
  shutdown = new AbortController();
  logText = "";
  now = Date.now();
  const log = pino(
    { level: "debug" },
    new Writable({
      write(chunk, _enc, cb) {
        logText += chunk.toString();
        cb();
      },
    }),
  );
  const routes = controlRoutes({
    store,
    credentials: { admin: ADMIN, node: NODE },
    health,
    replica: "r1",
    log,
    heartbeatMs: 50,
    now: () => now,
  });
  const transport = (token?: string) =>
    createRouterTransport(routes, {
      transport: { interceptors: [bearer(token)] },
      router: { shutdownSignal: shutdown.signal },
    });
  clients = {
    transport,
    admin: createClient(ControlService, transport(ADMIN)),
    node: createClient(NodeService, transport(NODE)),
  };
});

afterEach(async () => {
  shutdown.abort(new ConnectError("test over", Code.Unavailable));
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("credentials", () => {
  it("ControlService: none or unknown is UNAUTHENTICATED, the node's is PERMISSION_DENIED", async () => {
    const none = createClient(ControlService, clients.transport());
    const garbage = createClient(ControlService, clients.transport("garbage"));
    const node = createClient(ControlService, clients.transport(NODE));
    let e = await refusal(none.listDestinations({}));
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.rawMessage).toMatch(/POLYMUR_ADMIN_TOKEN/);
    e = await refusal(
      garbage.addDestination({ destination: { spec: "1.2.3.4:2003", scope: all } }),
    );
    expect(e.code).toBe(Code.Unauthenticated);
    e = await refusal(node.listKeys({}));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.rawMessage).toBe(
      "that is the node credential; ControlService needs the admin credential (POLYMUR_ADMIN_TOKEN)",
    );
    expect(store.current()?.state.version).toBe(0);
  });

  it("NodeService: the admin credential is PERMISSION_DENIED, a missing one UNAUTHENTICATED", async () => {
    const admin = createClient(NodeService, clients.transport(ADMIN));
    const none = createClient(NodeService, clients.transport());
    let e = await refusal(admin.reportStatus({ nodeId: "n1" }));
    expect(e.code).toBe(Code.PermissionDenied);
    e = await refusal(
      (async () => {
        for await (const _ of none.subscribe({ nodeId: "n1" })) break;
      })(),
    );
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.rawMessage).toMatch(/POLYMUR_NODE_TOKEN/);
  });

  it("health needs no credential", async () => {
    const h = createClient(Health, clients.transport());
    expect((await h.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect((await h.check({ service: ControlService.typeName })).status).toBe(
      ServingStatus.SERVING,
    );
    expect((await refusal(h.check({ service: "nope" }))).code).toBe(Code.NotFound);
    expect(Object.keys((await h.list({})).statuses).sort()).toEqual([
      "",
      ControlService.typeName,
      NodeService.typeName,
    ]);
  });
});

describe("ControlService", () => {
  it("versions every change; expected_version is compare-and-set", async () => {
    const { admin } = clients;
    const r1 = await admin.addDestination({ destination: { spec: "10.0.5.30:2003", scope: all } });
    expect(r1.version).toBe(1n);
    const e = await refusal(
      admin.addDestination({
        destination: { spec: "10.0.5.31:2003", scope: all },
        expectedVersion: 0n,
      }),
    );
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.rawMessage).toBe("state is at version 1, you expected 0; re-read and retry");
    expect(e.metadata.get("polymur-error-code")).toBe("POLYMUR_ERR_VERSION_CONFLICT");
    const r2 = await admin.addDestination({
      destination: { spec: "10.0.5.31:2003", scope: group("web") },
      expectedVersion: 1n,
    });
    expect(r2.version).toBe(2n);
    const list = await admin.listDestinations({});
    expect(list.version).toBe(2n);
    expect(list.destinations.map((d) => [d.spec, d.scope?.target.value])).toEqual([
      ["10.0.5.30:2003", true],
      ["10.0.5.31:2003", "web"],
    ]);
  });

  it("says what is wrong and what to do", async () => {
    const { admin } = clients;
    let e = await refusal(admin.addDestination({ destination: { spec: "10.0.5.30", scope: all } }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(/expected host:port, host:port:instance or host:port=instance/);
    e = await refusal(admin.addDestination({ destination: { spec: "10.0.5.30:2003" } }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(/--all or --group NAME/);
    await admin.addDestination({ destination: { spec: "10.0.5.30:2003", scope: all } });
    e = await refusal(
      admin.addDestination({ destination: { spec: "10.0.5.30:2003", scope: all } }),
    );
    expect(e.code).toBe(Code.AlreadyExists);
    e = await refusal(
      admin.removeDestination({ destination: { spec: "10.0.5.30:2003", scope: group("web") } }),
    );
    expect(e.code).toBe(Code.NotFound);
    expect(e.rawMessage).toMatch(/is in all nodes, not in group web/);
    e = await refusal(
      admin.setRouting({
        scope: all,
        routing: { distribution: Distribution.HASH_ROUTE, hash: "crc32", replication: 1 },
      }),
    );
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(/routing.hash must be one of carbon_ch, fnv1a_ch/);
    expect(store.current()?.state.version).toBe(1);
  });

  it("routing: set per scope, shown, and inherited again", async () => {
    const { admin } = clients;
    await admin.setRouting({
      scope: group("web"),
      routing: { distribution: Distribution.HASH_ROUTE, replication: 2, diverseReplicas: true },
    });
    await admin.setRouting({ scope: all, routing: { distribution: Distribution.BROADCAST } });
    let r = await admin.getRouting({});
    expect(r.routing.map((g) => [g.scope?.target.value, g.routing?.distribution])).toEqual([
      [true, Distribution.BROADCAST],
      ["web", Distribution.HASH_ROUTE],
    ]);
    expect(r.routing[1]?.routing).toMatchObject({
      hash: "carbon_ch",
      replication: 2,
      compat: "carbon",
    });
    await admin.setRouting({ scope: group("web"), routing: {} });
    r = await admin.getRouting({});
    expect(r.routing).toHaveLength(1);
    expect(r.version).toBe(3n);
  });

  it("API keys: the secret is returned once, only its digest is kept, and never logged", async () => {
    const { admin } = clients;
    const created = await admin.createKey({ name: "product-A" });
    expect(created.secret).toMatch(/^pmk_[A-Za-z0-9_-]{43}$/);
    const digest = `sha256:${createHash("sha256").update(created.secret).digest("hex")}`;
    expect(created.key?.digest).toBe(digest);
    expect(created.key?.createdAt).toBeDefined();
    const listed = await admin.listKeys({});
    expect(listed.keys.map((k) => [k.name, k.digest])).toEqual([["product-A", digest]]);
    expect(readFileSync(join(dir, "state.json"), "utf8")).not.toContain(created.secret);
    const rotated = await admin.rotateKey({ name: "product-A" });
    expect(rotated.secret).not.toBe(created.secret);
    expect(rotated.key?.digest).not.toBe(digest);
    expect(rotated.key?.rotatedAt).toBeDefined();
    expect((await refusal(admin.createKey({ name: "product-A" }))).code).toBe(Code.AlreadyExists);
    expect((await refusal(admin.rotateKey({ name: "nope" }))).code).toBe(Code.NotFound);
    expect((await refusal(admin.createKey({ name: "bad name" }))).code).toBe(Code.InvalidArgument);
    expect((await admin.deleteKey({ name: "product-A" })).version).toBe(3n);
    expect(logText).toContain('"op":"key create"');
    expect(logText).not.toContain(created.secret);
    expect(logText).not.toContain(rotated.secret);
    expect(logText).not.toContain(ADMIN);
  });
});

describe("NodeService", () => {
  it("streams a snapshot at once and after each change, for the node's group", async () => {
    const { admin, node } = clients;
    await admin.addDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    await admin.addDestination({ destination: { spec: "10.0.0.2:2003", scope: group("db") } });
    const ac = new AbortController();
    const it = node
      .subscribe({ nodeId: "n1", group: "web" }, { signal: ac.signal })
      [Symbol.asyncIterator]();
    const first = (await it.next()).value!.config!;
    expect(first.version).toBe(2n);
    expect(first.group).toBe("web");
    expect(first.destinations).toEqual(["10.0.0.1:2003"]);
    expect(first.routing?.distribution).toBe(Distribution.BROADCAST);
    await admin.addDestination({ destination: { spec: "10.0.0.3:2003", scope: group("web") } });
    const second = (await it.next()).value!.config!;
    expect(second.version).toBe(3n);
    expect(second.destinations).toEqual(["10.0.0.1:2003", "10.0.0.3:2003"]);
    await admin.createKey({ name: "k" });
    const third = (await it.next()).value!.config!;
    expect(third.keys.map((k: { name: string }) => k.name)).toEqual(["k"]);
    ac.abort();
  });

  it("coalesces changes a slow node has not read yet into the latest snapshot", async () => {
    const { admin, node } = clients;
    const ac = new AbortController();
    const it = node
      .subscribe({ nodeId: "n1", group: "" }, { signal: ac.signal })
      [Symbol.asyncIterator]();
    expect((await it.next()).value!.config!.version).toBe(0n);
    for (let i = 1; i <= 20; i++) {
      await admin.addDestination({ destination: { spec: `10.0.0.${i}:2003`, scope: all } });
    }
    const versions: bigint[] = [];
    for (;;) {
      const c = (await it.next()).value!.config!;
      versions.push(c.version);
      if (c.version === 20n) {
        expect(c.destinations).toHaveLength(20);
        break;
      }
    }
    expect(versions.length).toBeLessThan(5);
    ac.abort();
  });

  it("ends streams with UNAVAILABLE on shutdown, after health goes NOT_SERVING", async () => {
    const { node } = clients;
    const h = createClient(Health, clients.transport());
    const watch = h.watch({ service: "" })[Symbol.asyncIterator]();
    expect((await watch.next()).value!.status).toBe(ServingStatus.SERVING);
    const it = node.subscribe({ nodeId: "n1" })[Symbol.asyncIterator]();
    await it.next();
    health.shutdown();
    expect((await watch.next()).value!.status).toBe(ServingStatus.NOT_SERVING);
    shutdown.abort(new ConnectError("shutting down", Code.Unavailable));
    const e = await refusal(it.next());
    expect(e.code).toBe(Code.Unavailable);
  });

  it("records nodes: connected while subscribed, what they applied, their counters", async () => {
    const { admin, node } = clients;
    const ac = new AbortController();
    const it = node
      .subscribe(
        { nodeId: "n1", group: "web", role: "relay", hostname: "h1" },
        { signal: ac.signal },
      )
      [Symbol.asyncIterator]();
    await it.next();
    await node.reportStatus({
      nodeId: "n1",
      group: "web",
      role: "relay",
      hostname: "h1",
      appliedVersion: 0n,
      counters: { received: 10n, forwarded: 9n, dropped: 1n },
      destinations: [{ spec: "10.0.0.1:2003", state: "connected", forwarded: 9n }],
    });
    await node.reportStatus({ nodeId: "n2", group: "db", role: "gateway", hostname: "h2" });
    let nodes = (await admin.listNodes({})).nodes;
    expect(nodes.map((n) => [n.id, n.group, n.role, n.connected])).toEqual([
      ["n2", "db", "gateway", false],
      ["n1", "web", "relay", true],
    ]);
    expect(nodes[1]?.counters?.received).toBe(10n);
    expect(nodes[1]?.destinations[0]?.state).toBe("connected");
    ac.abort();
    await expect(it.next()).rejects.toThrow();
    await until(async () => {
      nodes = (await admin.listNodes({})).nodes;
      return nodes.find((n) => n.id === "n1")?.connected === false;
    });
    // A stream that stopped refreshing (its replica died) stops counting after 15 s.
    const it2 = node.subscribe({ nodeId: "n3" })[Symbol.asyncIterator]();
    await it2.next();
    expect((await admin.listNodes({})).nodes.find((n) => n.id === "n3")?.connected).toBe(true);
    now += 16_000;
    await until(async () => {
      const n3 = (await admin.listNodes({})).nodes.find((n) => n.id === "n3");
      // the heartbeat (50 ms here) catches up with the clock: connected again
      return n3?.connected === true && n3.lastSeen!.seconds >= BigInt(Math.floor(now / 1000));
    });
  });

  it("records each destination's disk queue, as the node reported it; 0 without one", async () => {
    const { admin, node } = clients;
    await node.reportStatus({
      nodeId: "n1",
      destinations: [
        {
          spec: "10.0.0.1:2003",
          state: "backoff",
          queued: 1_500n,
          queuedBytes: 640n,
          diskDatapoints: 1_200n,
          diskBytes: 65_536n,
          oldestQueuedSeconds: 42.5,
        },
        { spec: "10.0.0.2:2003", state: "connected", queued: 3n },
        // A negative or non-finite age is no age.
        { spec: "10.0.0.3:2003", state: "connected", oldestQueuedSeconds: Number.NaN },
      ],
    });
    const [n1] = (await admin.listNodes({})).nodes;
    expect(
      n1?.destinations.map((d) => [d.spec, d.diskDatapoints, d.diskBytes, d.oldestQueuedSeconds]),
    ).toEqual([
      ["10.0.0.1:2003", 1_200n, 65_536n, 42.5],
      ["10.0.0.2:2003", 0n, 0n, 0],
      ["10.0.0.3:2003", 0n, 0n, 0],
    ]);
    expect((await store.listNodes())[0]?.report?.destinations[0]).toMatchObject({
      diskDatapoints: 1_200,
      diskBytes: 65_536,
      oldestQueuedSeconds: 42.5,
    });
    // A report recorded by an older control plane (a shared Consul store) has none: 0.
    await store.putReport({
      nodeId: "n0",
      group: "",
      role: "relay",
      hostname: "h0",
      appliedVersion: 0,
      counters: { received: 0, forwarded: 0, dropped: 0, rejected: 0, connections: 0 },
      destinations: [
        {
          spec: "10.0.0.9:2003",
          state: "connected",
          forwarded: 1,
          dropped: 0,
          queued: 2,
          queuedBytes: 3,
          resent: 0,
        },
      ],
      lastSeenMs: now,
    });
    const n0 = (await admin.listNodes({})).nodes.find((n) => n.id === "n0");
    expect(n0?.destinations[0]).toMatchObject({
      queued: 2n,
      diskDatapoints: 0n,
      diskBytes: 0n,
      oldestQueuedSeconds: 0,
    });
  });

  it("records drops, rejects and unrouted lines by reason and each destination's last error, bounded", async () => {
    const { admin, node } = clients;
    // More reasons than polymur has, a long reason name, a long error: what a node
    // sending anything at all could make of its record.
    const many = Object.fromEntries(
      Array.from({ length: 50 }, (_, i) => [`reason_${String(i).padStart(2, "0")}`, 1n]),
    );
    await node.reportStatus({
      nodeId: "n1",
      counters: {
        rejected: 5n,
        rejectedBy: { field_count: 3n, bad_value: 2n, nan_value: 0n },
        unroutedBy: { no_match: 4n, [`x${"y".repeat(100)}`]: 1n },
        droppedBy: many,
      },
      destinations: [
        {
          spec: "10.0.0.1:2003",
          state: "backoff",
          dropped: 7n,
          droppedBy: { queue_full: 7n, closed: 0n },
          lastError: `connect ECONNREFUSED 10.0.0.1:2003${" and more".repeat(50)}`,
        },
        { spec: "10.0.0.2:2003", state: "connected" },
      ],
    });
    const [n1] = (await admin.listNodes({})).nodes;
    // Reasons at zero are not kept.
    expect(n1?.counters?.rejectedBy).toEqual({ field_count: 3n, bad_value: 2n });
    expect(n1?.counters?.unroutedBy).toEqual({ no_match: 4n, [`x${"y".repeat(63)}`]: 1n });
    expect(Object.keys(n1?.counters?.droppedBy ?? {})).toHaveLength(32);
    expect(n1?.destinations.map((d) => [d.spec, d.droppedBy, d.lastError.length])).toEqual([
      ["10.0.0.1:2003", { queue_full: 7n }, 200],
      ["10.0.0.2:2003", {}, 0],
    ]);
    expect(n1?.destinations[0]?.lastError).toMatch(
      /^connect ECONNREFUSED 10\.0\.0\.1:2003 and more/,
    );
    // A report recorded by an older control plane has none: empty.
    await store.putReport({
      nodeId: "n0",
      group: "",
      role: "relay",
      hostname: "h0",
      appliedVersion: 0,
      counters: { received: 0, forwarded: 0, dropped: 0, rejected: 0, connections: 0 },
      destinations: [
        {
          spec: "10.0.0.9:2003",
          state: "connected",
          forwarded: 1,
          dropped: 0,
          queued: 2,
          queuedBytes: 3,
          resent: 0,
        },
      ],
      lastSeenMs: now,
    });
    const n0 = (await admin.listNodes({})).nodes.find((n) => n.id === "n0");
    expect([n0?.counters?.rejectedBy, n0?.counters?.droppedBy]).toEqual([{}, {}]);
    expect([n0?.destinations[0]?.droppedBy, n0?.destinations[0]?.lastError]).toEqual([{}, ""]);
  });

  it("refuses a subscription without a node id", async () => {
    const e = await refusal(
      (async () => {
        for await (const _ of clients.node.subscribe({ nodeId: "" })) break;
      })(),
    );
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(/node_id/);
  });
});
