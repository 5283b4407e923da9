import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { Code, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { HealthRegistry } from "../../common/health-registry.ts";
import { ConsulStore } from "../../controlplane/consul-store.ts";
import { controlRoutes } from "../../controlplane/control-server.ts";
import { addKey, type ControlState } from "../../controlplane/control-state.ts";
import { updateState } from "../../controlplane/control-store.ts";
import type { ChangeRecord } from "../../controlplane/state-history.ts";
import { ControlService, NodeService } from "../../gen/polymur/control/v1/control_pb.ts";
import { CONSUL_BIN, type ConsulProcess, haveConsul, startConsulDev } from "../fixtures/consul.ts";
import { refusal } from "../fixtures/refusal.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";

// The change history in Consul KV, against a real Consul dev agent: two keys per
// version kept (record, gzipped state) written in the state's own transaction,
// pruned to the last historyVersions, a baseline for a state written before
// history, a state too large to share a transaction with its record, node records
// expired (deleted with delete-cas), and rollback's compare-and-set between two
// replicas.

const withoutConsul = skipUnlessAvailable(`Consul (${CONSUL_BIN})`, haveConsul);
const key = (name: string) => ({ name, digest: `sha256:${name}`, createdAtMs: 1, rotatedAtMs: 0 });
const record = (name: string) => (): ChangeRecord => ({
  kind: "key create",
  scopes: [{ all: true }],
  subject: name,
  actor: "tester",
  replica: "r",
  atMs: 1_700_000_000_000,
});
let prefixes = 0;
const freshPrefix = () => `polymur-history-${process.pid}-${++prefixes}`;

describe.skipIf(withoutConsul)("ConsulStore history (dev agent)", () => {
  let consul: ConsulProcess;
  const stores: ConsulStore[] = [];
  /** What the stores logged at warn and above: nothing, unless a test says otherwise. */
  const warnings: string[] = [];
  const log = pino(
    { level: "warn" },
    new Writable({
      write(chunk, _enc, cb) {
        warnings.push(String(chunk));
        cb();
      },
    }),
  );
  const open = async (prefix: string, historyVersions?: number): Promise<ConsulStore> => {
    const s = new ConsulStore({
      addresses: [{ host: "127.0.0.1", port: consul.ports.http }],
      prefix,
      waitSec: 10,
      requestTimeoutMs: 5000,
      log,
      ...(historyVersions === undefined ? {} : { historyVersions }),
    });
    await s.open();
    stores.push(s);
    return s;
  };
  /** The keys under `<prefix>/history/`, as Consul lists them. */
  const historyKeys = async (prefix: string): Promise<string[]> => {
    const res = await fetch(`http://${consul.httpAddr}/v1/kv/${prefix}/history/?keys`);
    if (res.status === 404) return [];
    return ((await res.json()) as string[]).map((k) => k.slice(`${prefix}/history/`.length));
  };
  const v = (n: number) => String(n).padStart(20, "0");

  beforeAll(async () => {
    consul = await startConsulDev();
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await consul?.stop();
  });
  afterEach(() => {
    expect(warnings.splice(0)).toEqual([]);
  });

  it("keeps every version written, exactly once, though two replicas race", async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    await Promise.all(
      ["a", "b", "c", "d", "e", "f"].map((n, i) =>
        updateState(i % 2 ? a : b, (s) => addKey(s, key(n)), record(n)),
      ),
    );
    const h = await b.listHistory();
    expect(h.map((e) => e.version)).toEqual([6, 5, 4, 3, 2, 1]);
    // Each record names the key its version added, and its state is that version's.
    for (const e of h) {
      const kept = await a.getVersion(e.version);
      expect(kept?.entry).toEqual(e);
      expect(kept?.state.version).toBe(e.version);
      expect(kept?.state.keys).toHaveLength(e.version);
      expect(kept?.state.keys.at(-1)?.name).toBe(e.subject);
    }
    expect(await a.getVersion(7)).toBeUndefined();
    expect(await historyKeys(prefix)).toHaveLength(12);
  });

  it("keeps the last historyVersions: the write that makes version N deletes N - kept", async () => {
    const prefix = freshPrefix();
    const s = await open(prefix, 3);
    for (const n of ["a", "b", "c", "d", "e"])
      await updateState(s, (st) => addKey(st, key(n)), record(n));
    expect((await s.listHistory()).map((e) => e.version)).toEqual([5, 4, 3]);
    expect((await historyKeys(prefix)).sort()).toEqual([
      `changes/${v(3)}`,
      `changes/${v(4)}`,
      `changes/${v(5)}`,
      `states/${v(3)}`,
      `states/${v(4)}`,
      `states/${v(5)}`,
    ]);
    // A replica that keeps fewer drops the rest when it opens.
    const fewer = await open(prefix, 1);
    expect((await fewer.listHistory()).map((e) => e.version)).toEqual([5]);
    expect((await historyKeys(prefix)).sort()).toEqual([`changes/${v(5)}`, `states/${v(5)}`]);
  });

  it("a state written before history was kept gets one baseline record, whoever opens first", async () => {
    const prefix = freshPrefix();
    const old = await open(prefix);
    await updateState(old, (st) => addKey(st, key("a")));
    await updateState(old, (st) => addKey(st, key("b")));
    expect(await old.listHistory()).toEqual([]);
    const [x, y] = await Promise.all([open(prefix), open(prefix)]);
    const h = await x.listHistory();
    expect(h).toHaveLength(1);
    expect(h[0]).toMatchObject({ version: 2, kind: "baseline" });
    expect((await y.getVersion(2))?.state.keys.map((k) => k.name)).toEqual(["a", "b"]);
  });

  it("a state too large to share a transaction with its record is still kept", async () => {
    const prefix = freshPrefix();
    const s = await open(prefix);
    // 250 KiB of rules: the state (base64) and its record (gzipped, base64) exceed
    // Consul's 512 KiB transaction together, not alone.
    // Random text: gzip cannot make it small.
    const text = randomBytes(190 * 1024)
      .toString("base64url")
      .slice(0, 250 * 1024);
    const big = (st: ControlState): ControlState => ({
      ...st,
      rules: [{ scope: { all: true }, rules: { text, fileName: "big.conf" } }],
    });
    const doc = JSON.stringify({ ...big(s.current()!.state), version: 1 });
    const together =
      Buffer.from(doc).toString("base64").length + gzipSync(doc).toString("base64").length;
    expect(together).toBeGreaterThan(512 * 1024);
    const written = await updateState(s, big, () => ({
      ...record("x")(),
      kind: "rules set",
      subject: "big.conf",
    }));
    expect(written.version).toBe(1);
    const kept = await s.getVersion(1);
    expect(kept?.entry.kind).toBe("rules set");
    expect(kept?.state.rules[0]?.rules.text).toBe(text);
  });

  it("removeNodes deletes a node's keys for every replica, and leaves the others", async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const sub = (nodeId: string, lastSeenMs: number) => ({
      nodeId,
      group: "web",
      role: "relay",
      hostname: "h",
      appliedVersion: 0,
      replica: "a",
      streamId: `s-${nodeId}`,
      open: false,
      sinceMs: 0,
      lastSeenMs,
    });
    await a.putSubscription(sub("old", 1));
    await a.putReport({
      nodeId: "old",
      group: "web",
      role: "relay",
      hostname: "h",
      appliedVersion: 0,
      counters: { received: 0, forwarded: 0, dropped: 0, rejected: 0, connections: 0 },
      destinations: [],
      lastSeenMs: 1,
    });
    await a.putSubscription(sub("new", 1000));
    const removed = await b.removeNodes((r) => (r.subscription?.lastSeenMs ?? 0) < 10);
    expect(removed.map((r) => r.nodeId)).toEqual(["old"]);
    expect((await a.listNodes()).map((r) => r.nodeId)).toEqual(["new"]);
    const res = await fetch(`http://${consul.httpAddr}/v1/kv/${prefix}/nodes/?keys`);
    expect(await res.json()).toEqual([`${prefix}/nodes/new/subscription`]);
  });

  it("rollback through one replica is compare-and-set against writes through the other", async () => {
    const prefix = freshPrefix();
    const a = await open(prefix);
    const b = await open(prefix);
    const client = (store: ConsulStore, replica: string) => {
      const routes = controlRoutes({
        store,
        credentials: { admin: "adm", node: "nod" },
        health: new HealthRegistry([ControlService.typeName, NodeService.typeName]),
        replica,
      });
      const bearer: Interceptor = (next) => async (req) => {
        req.header.set("authorization", "Bearer adm");
        return next(req);
      };
      return createClient(
        ControlService,
        createRouterTransport(routes, { transport: { interceptors: [bearer] } }),
      );
    };
    const ca = client(a, "A");
    const cb = client(b, "B");
    const all = { target: { case: "all" as const, value: true } };
    await ca.addDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    await cb.removeDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    await cb.addDestination({ destination: { spec: "10.0.0.2:2003", scope: all } });
    // A's operator read version 2 and rolls back; B's write made it 3 meanwhile.
    const e = await refusal(ca.rollback({ version: 1n, expectedVersion: 2n }));
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.rawMessage).toBe("state is at version 3, you expected 2; re-read and retry");
    const r = await ca.rollback({ version: 1n, expectedVersion: 3n });
    expect(r.version).toBe(4n);
    const h = await cb.listHistory({});
    expect(h.entries.map((x) => [Number(x.version), x.summary, x.replica])).toEqual([
      [4, "rollback to version 1 (API keys kept)", "A"],
      [3, "dest add 10.0.0.2:2003 --all", "B"],
      [2, "dest rm 10.0.0.1:2003 --all", "B"],
      [1, "dest add 10.0.0.1:2003 --all", "A"],
    ]);
    expect((await cb.listDestinations({})).destinations.map((d) => d.spec)).toEqual([
      "10.0.0.1:2003",
    ]);
  });
});
