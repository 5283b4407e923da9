import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import {
  type Client,
  Code,
  createClient,
  createRouterTransport,
  type Interceptor,
} from "@connectrpc/connect";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HealthRegistry } from "../../../common/health-registry.ts";
import { controlRoutes } from "../../../controlplane/control-server.ts";
import { FileStore } from "../../../controlplane/file-store.ts";
import { NodeExpiry } from "../../../controlplane/node-expiry.ts";
import {
  ChangeKind,
  ControlService,
  Distribution,
  NodeService,
} from "../../../gen/polymur/control/v1/control_pb.ts";
import { refusal } from "../../fixtures/refusal.ts";

// History, rollback and node expiry through the real ControlService routes over a
// FileStore in a temp directory (in memory transport; the clock is the test's).

const ADMIN = "admin-token-history";
const NODE = "node-token-history";
const all = { target: { case: "all" as const, value: true } };
const group = (g: string) => ({ target: { case: "group" as const, value: g } });
const HOUR = 3_600_000;

let dir: string;
let store: FileStore;
let now: number;
let logText: string;
let admin: Client<typeof ControlService>;
let node: Client<typeof NodeService>;
let actor: string | undefined;

function headers(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    if (actor !== undefined) req.header.set("polymur-actor", actor);
    return next(req);
  };
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "polymur-svc-history-"));
  store = new FileStore(dir, { historyVersions: 5 });
  await store.open();
  now = 1_700_000_000_000;
  logText = "";
  actor = "alice@laptop";
  const log = pino(
    { level: "info" },
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
    health: new HealthRegistry([ControlService.typeName, NodeService.typeName]),
    replica: "r1",
    log,
    now: () => now,
    nodeExpiryMs: 24 * HOUR,
  });
  const transport = (token: string) =>
    createRouterTransport(routes, { transport: { interceptors: [headers(token)] } });
  admin = createClient(ControlService, transport(ADMIN));
  node = createClient(NodeService, transport(NODE));
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const dests = async (): Promise<string[]> =>
  (await admin.listDestinations({})).destinations.map(
    (d) => `${d.spec} ${d.scope?.target.case === "group" ? d.scope.target.value : "all"}`,
  );

describe("ListHistory and GetVersion", () => {
  it("records every change: kind, scopes, summary, who (as the caller says), replica, time", async () => {
    await admin.addDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    now += 1000;
    await admin.addDestination({ destination: { spec: "10.0.0.2:2003", scope: group("web") } });
    actor = undefined;
    await admin.setRouting({
      scope: group("db"),
      routing: { distribution: Distribution.BROADCAST },
    });
    actor = "ci-job\u0007 with a bell";
    await admin.createKey({ name: "product-A" });
    await admin.setRouting({ scope: group("db"), routing: {} });
    const h = await admin.listHistory({});
    expect(h.version).toBe(5n);
    expect(h.keptVersions).toBe(5);
    expect(
      h.entries.map((e) => [Number(e.version), ChangeKind[e.kind], e.summary, e.actor]),
    ).toEqual([
      [5, "ROUTING_INHERIT", "route set --group db inherit", "ci-job with a bell"],
      [4, "KEY_CREATE", "key create product-A", "ci-job with a bell"],
      [3, "ROUTING_SET", "route set --group db broadcast", ""],
      [2, "DEST_ADD", "dest add 10.0.0.2:2003 --group web", "alice@laptop"],
      [1, "DEST_ADD", "dest add 10.0.0.1:2003 --all", "alice@laptop"],
    ]);
    expect(h.entries[3]).toMatchObject({ replica: "r1", subject: "10.0.0.2:2003" });
    expect(Number(h.entries[3]!.time!.seconds)).toBe((now - 0) / 1000);
    // A group's history: its own changes and the fleet's (keys go to every node).
    const web = await admin.listHistory({ group: "web" });
    expect(web.entries.map((e) => Number(e.version))).toEqual([4, 2, 1]);
    const e = await refusal(admin.listHistory({ group: "no/slash" }));
    expect(e.code).toBe(Code.InvalidArgument);
  });

  it("GetVersion: a kept version's whole configuration; NOT_FOUND saying what is kept", async () => {
    await admin.addDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    await admin.setRules({
      scope: group("web"),
      rules: { content: Buffer.from("match *\n  send to blackhole\n  ;\n"), fileName: "web.conf" },
    });
    await admin.removeDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    const v2 = await admin.getVersion({ version: 2n });
    expect(v2.currentVersion).toBe(3n);
    expect(v2.entry?.summary).toBe("rules set web.conf --group web");
    expect(v2.config?.destinations.map((d) => d.spec)).toEqual(["10.0.0.1:2003"]);
    expect(Buffer.from(v2.config!.rules[0]!.rules!.content).toString()).toMatch(/^match \*/);
    const v3 = await admin.getVersion({ version: 3n });
    expect(v3.config?.destinations).toEqual([]);
    expect(v3.entry?.summary).toBe("dest rm 10.0.0.1:2003 --all");
    const e = await refusal(admin.getVersion({ version: 9n }));
    expect(e.code).toBe(Code.NotFound);
    expect(e.rawMessage).toBe(
      "version 9 is not in the history (the history keeps versions 1 to 3, the last 5 at most; polymurctl history lists them)",
    );
  });

  it("keeps the last --history-versions versions", async () => {
    for (let i = 1; i <= 8; i++) {
      await admin.addDestination({ destination: { spec: `10.0.0.${i}:2003`, scope: all } });
    }
    const h = await admin.listHistory({});
    expect(h.entries.map((e) => Number(e.version))).toEqual([8, 7, 6, 5, 4]);
    expect((await refusal(admin.getVersion({ version: 3n }))).code).toBe(Code.NotFound);
  });
});

describe("Rollback", () => {
  /** v1 dest A all, v2 key k, v3 dest B web, v4 rules web, v5 rm A, v6 rotate k. */
  async function history(): Promise<string> {
    await admin.addDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    await admin.createKey({ name: "k" });
    await admin.addDestination({ destination: { spec: "10.0.0.2:2003", scope: group("web") } });
    await admin.setRules({
      scope: group("web"),
      rules: { content: Buffer.from("match *\n  send to blackhole\n  ;\n"), fileName: "w.conf" },
    });
    await admin.removeDestination({ destination: { spec: "10.0.0.1:2003", scope: all } });
    const rotated = await admin.rotateKey({ name: "k" });
    return rotated.key!.digest;
  }

  it("makes a new version with the target's destinations, routing and rules; API keys kept", async () => {
    const digestNow = await history();
    const v2 = (await admin.getVersion({ version: 2n })).config!;
    const r = await admin.rollback({ version: 2n, expectedVersion: 6n });
    expect(r).toMatchObject({ version: 7n, restored: 2n, withKeys: false, keysDiffering: ["k"] });
    expect(await dests()).toEqual(["10.0.0.1:2003 all"]);
    expect((await admin.getRules({})).rules).toEqual([]);
    // The rotated key stays rotated: the old secret must not work again.
    expect((await admin.listKeys({})).keys.map((k) => k.digest)).toEqual([digestNow]);
    const top = (await admin.listHistory({})).entries[0]!;
    expect(top).toMatchObject({
      version: 7n,
      kind: ChangeKind.ROLLBACK,
      rollbackTo: 2n,
      withKeys: false,
      summary: "rollback to version 2 (API keys kept)",
    });
    // It changed the fleet's destinations and group web's: both in the record.
    expect(top.scopes.map((s) => s.target.value)).toEqual([true, "web"]);
    // Its content is version 2's (now out of the last 5 kept), but for the keys.
    const v7 = (await admin.getVersion({ version: 7n })).config!;
    expect({ ...v7, version: 0n, keys: [] }).toEqual({ ...v2, version: 0n, keys: [] });
    expect(logText).toMatch(/"op":"rollback".*"to":2.*"actor":"alice@laptop".*"version":7/);
  });

  it("--with-keys restores the keys too", async () => {
    await history();
    const v2keys = (await admin.getVersion({ version: 2n })).config!.keys;
    const r = await admin.rollback({ version: 2n, withKeys: true });
    expect(r).toMatchObject({ version: 7n, withKeys: true, keysDiffering: ["k"] });
    expect((await admin.listKeys({})).keys).toEqual(v2keys);
    expect((await admin.listHistory({})).entries[0]!.summary).toBe(
      "rollback to version 2 (API keys restored too)",
    );
  });

  it("compare-and-set: a stale --expected-version changes nothing", async () => {
    await history();
    const e = await refusal(admin.rollback({ version: 2n, expectedVersion: 5n }));
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.rawMessage).toBe("state is at version 6, you expected 5; re-read and retry");
    expect(e.metadata.get("polymur-error-code")).toBe("POLYMUR_ERR_VERSION_CONFLICT");
    expect(store.current()?.state.version).toBe(6);
    expect((await admin.listHistory({})).entries).toHaveLength(5);
  });

  it("concurrent writers: a rollback lands on the latest state, keeping what it does not restore", async () => {
    await history();
    // Both start from version 6; the store serializes them and updateState re-applies the loser.
    const [rb, key] = await Promise.all([
      admin.rollback({ version: 2n }),
      admin.createKey({ name: "late" }),
    ]);
    expect([rb.version, key.version].sort()).toEqual([7n, 8n]);
    expect((await admin.listKeys({})).keys.map((k) => k.name).sort()).toEqual(["k", "late"]);
    expect(await dests()).toEqual(["10.0.0.1:2003 all"]);
  });

  it("a version not kept is NOT_FOUND, and nothing changes", async () => {
    await history();
    const e = await refusal(admin.rollback({ version: 40n }));
    expect(e.code).toBe(Code.NotFound);
    expect(store.current()?.state.version).toBe(6);
    // Only the last 5 are kept: version 1 has gone.
    expect((await refusal(admin.rollback({ version: 1n }))).code).toBe(Code.NotFound);
  });
});

describe("node expiry", () => {
  const report = (nodeId: string) =>
    node.reportStatus({ nodeId, group: "web", role: "relay", hostname: "h", appliedVersion: 3n });

  it("ListNodes: a node not connected is stale until it expires, then gone", async () => {
    await report("n1");
    now += HOUR;
    let n = (await admin.listNodes({})).nodes;
    expect(n).toHaveLength(1);
    expect(n[0]).toMatchObject({ id: "n1", connected: false });
    // Last seen an hour ago: expires 23 hours from now.
    expect(Number(n[0]!.expiresAt!.seconds) * 1000 - now).toBe(23 * HOUR);
    now += 23 * HOUR + 1000;
    n = (await admin.listNodes({})).nodes;
    expect(n).toEqual([]);
    // Still in the store until a sweep removes it.
    expect(await store.listNodes()).toHaveLength(1);
  });

  it("NodeExpiry removes expired records from the store and logs each; connected nodes stay", async () => {
    const lines: string[] = [];
    const log = pino(
      { level: "info" },
      new Writable({
        write(chunk, _enc, cb) {
          lines.push(chunk.toString());
          cb();
        },
      }),
    );
    await report("gone");
    // A node with an open subscription, refreshed (as its replica does every 5 s).
    await store.putSubscription({
      nodeId: "here",
      group: "web",
      role: "relay",
      hostname: "h",
      appliedVersion: 0,
      replica: "r1",
      streamId: "s1",
      open: true,
      sinceMs: now,
      lastSeenMs: now,
    });
    const expiry = new NodeExpiry({ store, expiryMs: 60_000, log, now: () => now });
    now += 30_000;
    expect(await expiry.sweep()).toEqual([]);
    now += 31_000;
    // "here" was refreshed 61 s ago too, but is it connected? Not any more (15 s):
    // refresh it, as its replica would.
    const sub = (await store.listNodes()).find((r) => r.nodeId === "here")!.subscription!;
    await store.putSubscription({ ...sub, lastSeenMs: now });
    const removed = await expiry.sweep();
    expect(removed.map((r) => r.nodeId)).toEqual(["gone"]);
    expect((await store.listNodes()).map((r) => r.nodeId)).toEqual(["here"]);
    expect(lines.join("")).toMatch(
      /"node":"gone","group":"web","hostname":"h","lastSeen":"[^"]+","expirySec":60,"msg":"node record expired/,
    );
    // 0: records are kept for ever.
    now += 10 * 24 * HOUR;
    expect(await new NodeExpiry({ store, expiryMs: 0, now: () => now }).sweep()).toEqual([]);
  });
});
