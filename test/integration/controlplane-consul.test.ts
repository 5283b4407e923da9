import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { ConsulStore } from "../../controlplane/consul-store.ts";
import { addKey } from "../../controlplane/control-state.ts";
import { type StoredState, updateState } from "../../controlplane/control-store.ts";
import { CONSUL_BIN, type ConsulProcess, haveConsul, startConsulDev } from "../fixtures/consul.ts";
import {
  adminClient,
  ControlPlaneProcess,
  nodeClient,
  Subscription,
  waitFor,
} from "../fixtures/control-plane.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";

// Consul KV as the shared store, against a real Consul dev agent: compare-and-set
// between writers, changes seen through blocking queries, two control-plane replicas
// sharing state, and what happens when Consul goes away.

const all = { target: { case: "all" as const, value: true } };
// Skipped without Consul; with CI=true, a missing Consul fails this file instead.
const withoutConsul = skipUnlessAvailable(`Consul (${CONSUL_BIN})`, haveConsul);
const key = (name: string) => ({ name, digest: `sha256:${name}`, createdAtMs: 1, rotatedAtMs: 0 });
let prefixes = 0;
const freshPrefix = () => `polymur-test-${process.pid}-${++prefixes}`;

describe.skipIf(withoutConsul)("ConsulStore (dev agent)", () => {
  let consul: ConsulProcess;
  const stores: ConsulStore[] = [];
  const open = async (prefix: string): Promise<ConsulStore> => {
    const s = new ConsulStore({
      addresses: [{ host: "127.0.0.1", port: consul.ports.http }],
      prefix,
      waitSec: 10,
      requestTimeoutMs: 2000,
    });
    await s.open();
    stores.push(s);
    return s;
  };

  beforeAll(async () => {
    consul = await startConsulDev();
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await consul?.stop();
  });

  it("compare-and-set on ModifyIndex: the second writer on the same base loses", async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const baseA = await a.read();
    const baseB = await b.read();
    expect(baseA.revision).toBe(0n);
    const wrote = await a.compareAndSet(baseA, { ...addKey(baseA.state, key("a")), version: 1 });
    expect(wrote?.revision).toBeGreaterThan(0n);
    expect(
      await b.compareAndSet(baseB, { ...addKey(baseB.state, key("b")), version: 1 }),
    ).toBeNull();
    // Writers racing through updateState all land, in some order, without loss.
    await Promise.all(
      ["c", "d", "e", "f"].map((n, i) => updateState(i % 2 ? a : b, (s) => addKey(s, key(n)))),
    );
    const final = await b.read();
    expect(final.state.version).toBe(5);
    expect(final.state.keys.map((k) => k.name).sort()).toEqual(["a", "c", "d", "e", "f"]);
  });

  it("a write through one store reaches another's watcher within a second (blocking query)", async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    // Let b's blocking query settle on the current index: it must wake on the change,
    // not be answering its first (index 0) request.
    await new Promise((r) => setTimeout(r, 200));
    const seen: StoredState[] = [];
    b.watch((s) => seen.push(s));
    for (let i = 1; i <= 3; i++) {
      const t0 = Date.now();
      await updateState(a, (s) => addKey(s, key(`k${i}`)));
      await waitFor(`version ${i} at b`, () => seen.find((s) => s.state.version === i), 1000);
      expect(Date.now() - t0).toBeLessThan(1000);
    }
  });

  it("node statuses written by one store are listed by another", async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    await a.putSubscription({
      nodeId: "node/1",
      group: "web",
      role: "relay",
      hostname: "h",
      appliedVersion: 3,
      replica: "a",
      streamId: "s1",
      open: true,
      sinceMs: 1,
      lastSeenMs: 2,
    });
    await b.putReport({
      nodeId: "node/1",
      group: "web",
      role: "relay",
      hostname: "h",
      appliedVersion: 4,
      counters: { received: 1, forwarded: 1, dropped: 0, rejected: 0, connections: 1 },
      destinations: [],
      lastSeenMs: 3,
    });
    const nodes = await b.listNodes();
    expect(nodes).toHaveLength(1);
    expect(nodes[0]?.nodeId).toBe("node/1");
    expect(nodes[0]?.subscription?.streamId).toBe("s1");
    expect(nodes[0]?.report?.appliedVersion).toBe(4);
    // Closing someone else's stream does nothing; closing ours marks it closed.
    await a.endSubscription("node/1", "other", 9);
    expect((await b.listNodes())[0]?.subscription?.open).toBe(true);
    await a.endSubscription("node/1", "s1", 9);
    expect((await b.listNodes())[0]?.subscription).toMatchObject({ open: false, lastSeenMs: 9 });
  });
});

describe.skipIf(withoutConsul)("two control-plane replicas on one Consul", () => {
  let consul: ConsulProcess;
  let a: ControlPlaneProcess;
  let b: ControlPlaneProcess;
  const subs: Subscription[] = [];

  beforeAll(async () => {
    consul = await startConsulDev();
    const store = `consul://127.0.0.1:${consul.ports.http}/${freshPrefix()}`;
    [a, b] = await Promise.all([
      ControlPlaneProcess.start(["--store", store, "--replica-id", "A"]),
      ControlPlaneProcess.start(["--store", store, "--replica-id", "B"]),
    ]);
  });
  afterAll(async () => {
    await Promise.all(subs.map((s) => s.close()));
    await Promise.all([a?.stop(), b?.stop()]);
    await consul?.stop();
  });

  it("a change through replica A reaches a node subscribed to replica B within a second", async () => {
    const sub = new Subscription(b.url, "node-on-b", "web");
    subs.push(sub);
    await sub.waitForVersion(0);
    await new Promise((r) => setTimeout(r, 200)); // B's blocking query is parked on the key
    const admin = adminClient(a.url);
    for (let i = 1; i <= 3; i++) {
      const t0 = Date.now();
      const { version } = await admin.addDestination({
        destination: { spec: `10.0.5.${30 + i}:2003`, scope: all },
      });
      const got = await sub.waitForVersion(Number(version), 1000);
      expect(got.at - t0).toBeLessThan(1000);
      expect(got.destinations).toContain(`10.0.5.${30 + i}:2003`);
    }
    // Both replicas answer reads with the same state, and list the node B holds.
    const [la, lb] = await Promise.all([
      admin.listDestinations({}),
      adminClient(b.url).listDestinations({}),
    ]);
    expect(lb).toEqual(la);
    const nodes = (await admin.listNodes({})).nodes;
    expect(nodes.find((n) => n.id === "node-on-b")).toMatchObject({
      group: "web",
      connected: true,
    });
  });

  it("expected_version is checked against the shared state, whichever replica is asked", async () => {
    const { version } = await adminClient(a.url).createKey({ name: "shared" });
    const err = await adminClient(b.url)
      .deleteKey({ name: "shared", expectedVersion: version - 1n })
      .then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
    expect(err?.code).toBe(Code.FailedPrecondition);
    await adminClient(b.url).deleteKey({ name: "shared", expectedVersion: version });
  });

  it("with Consul gone: reads from the last state, writes refused clearly, streams stay up", async () => {
    const sub = new Subscription(b.url, "node-2", "");
    subs.push(sub);
    const before = await adminClient(a.url).listDestinations({});
    await sub.waitForVersion(Number(before.version));
    await consul.kill("SIGKILL");

    const after = await adminClient(a.url).listDestinations({});
    expect(after).toEqual(before);
    const err = await adminClient(a.url)
      .addDestination({ destination: { spec: "10.9.9.9:2003", scope: all } })
      .then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
    expect(err?.code).toBe(Code.Unavailable);
    expect(err?.rawMessage).toMatch(
      new RegExp(
        `^state store consul://127\\.0\\.0\\.1:\\d+/\\S+ is unreachable \\(.*ECONNREFUSED.*\\); reads are served from the last state seen \\(version ${before.version}\\), writes are refused until it is back$`,
      ),
    );
    expect(err?.metadata.get("polymur-error-code")).toBe(ErrorCode.StoreUnavailable);
    // A node can still subscribe and gets the last state; its status report is refused.
    const late = new Subscription(b.url, "node-3", "");
    subs.push(late);
    await late.waitForVersion(Number(before.version));
    expect(sub.error).toBeUndefined();
    const report = await nodeClient(b.url)
      .reportStatus({ nodeId: "node-3" })
      .then(
        () => null,
        (e: unknown) => ConnectError.from(e),
      );
    expect(report?.code).toBe(Code.Unavailable);
    // The replica noticed on its own (its blocking query failed), and said so once.
    await b.waitForLog((l) => /state store unreachable/.test(l.msg), 10_000);
  });
});

describe("PolymurError for an unreachable Consul", () => {
  it("is POLYMUR_ERR_STORE_UNAVAILABLE, with nothing read yet", async () => {
    const s = new ConsulStore({
      addresses: [{ host: "127.0.0.1", port: 1 }],
      prefix: "x",
      requestTimeoutMs: 500,
    });
    const err = await s.read().then(
      () => null,
      (e: unknown) => e as PolymurError,
    );
    expect(err).toBeInstanceOf(PolymurError);
    expect(err?.code).toBe(ErrorCode.StoreUnavailable);
    expect(err?.message).toMatch(/no state has been read yet/);
    await s.close();
  });
});
