import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Client } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileStore } from "../../../../controlplane/file-store.ts";
import {
  type ControlSubscriber,
  type ControlSubscriberOptions,
  createControlSubscriber,
} from "../../../../dataplane/control/control-subscriber.ts";
import type { ControlService, NodeConfig } from "../../../../gen/polymur/control/v1/control_pb.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import {
  ALL_GROUPS,
  ControlPlaneServer,
  NODE_TOKEN,
  routerAdminClient,
} from "../../../fixtures/control-plane-server.ts";

async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let dir: string;
let store: FileStore;
let admin: Client<typeof ControlService>;
const planes: ControlPlaneServer[] = [];
const subscribers: ControlSubscriber[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "polymur-subscriber-"));
  store = new FileStore(join(dir, "control"));
  await store.open();
  admin = routerAdminClient(store);
});

afterEach(async () => {
  for (const s of subscribers.splice(0)) await s.stop();
  for (const p of planes.splice(0)) await p.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function plane(port = 0): Promise<ControlPlaneServer> {
  const p = await ControlPlaneServer.start(store, port);
  planes.push(p);
  return p;
}

/** Closes `p` (a control plane that went away); it is no longer closed in afterEach. */
async function down(p: ControlPlaneServer): Promise<void> {
  planes.splice(planes.indexOf(p), 1);
  await p.close();
}

async function addDestination(spec: string): Promise<number> {
  const r = await admin.addDestination({ destination: { spec, scope: ALL_GROUPS } });
  return Number(r.version);
}

interface Node {
  sub: ControlSubscriber;
  applied: NodeConfig[];
  logs: CapturedLine[];
}

function subscriber(url: string, options: Partial<ControlSubscriberOptions> = {}): Node {
  const { log, lines } = captureLog();
  const applied: NodeConfig[] = [];
  const sub = createControlSubscriber({
    url,
    group: "web",
    role: "relay",
    nodeToken: NODE_TOKEN,
    log,
    onConfig: (c) => {
      applied.push(c);
    },
    status: () => ({ counters: {}, destinations: [] }),
    reportIntervalMs: 3_600_000,
    backoffMinMs: 5,
    backoffMaxMs: 20,
    ...options,
  });
  subscribers.push(sub);
  return { sub, applied, logs: lines };
}

const versions = (n: Node): number[] => n.applied.map((c) => Number(c.version));

describe("createControlSubscriber", () => {
  it("applies the first snapshot, then every change, once each", async () => {
    await addDestination("10.0.0.1:2003");
    const cp = await plane();
    const n = subscriber(cp.url);
    expect(n.sub.appliedVersion).toBe(0n);
    n.sub.start();
    await waitFor("version 1", () => n.sub.appliedVersion === 1n);
    expect(n.applied[0]).toMatchObject({
      version: 1n,
      group: "web",
      destinations: ["10.0.0.1:2003"],
    });

    await addDestination("10.0.0.2:2003");
    await waitFor("version 2", () => n.sub.appliedVersion === 2n);
    expect(n.applied.at(-1)?.destinations).toEqual(["10.0.0.1:2003", "10.0.0.2:2003"]);
    expect(versions(n)).toEqual([1, 2]);
    expect(n.logs.filter((l) => l.msg.endsWith("applied")).map((l) => l.msg)).toEqual([
      "control plane: configuration version 1 applied",
      "control plane: configuration version 2 applied",
    ]);
    // The node identifies itself on the stream.
    const [node] = await store.listNodes();
    expect(node?.nodeId).toBe(n.sub.nodeId);
    expect(node?.subscription).toMatchObject({ group: "web", role: "relay", open: true });
  });

  it("applies version 0 of a control plane nobody has changed yet", async () => {
    const cp = await plane();
    const n = subscriber(cp.url);
    n.sub.start();
    await waitFor("a snapshot", () => n.applied.length === 1);
    expect(n.applied[0]).toMatchObject({ version: 0n, destinations: [] });
    expect(n.sub.appliedVersion).toBe(0n);
  });

  it("logs a snapshot onConfig refuses and keeps the previous one (not saved either)", async () => {
    await addDestination("10.0.0.1:2003");
    const cp = await plane();
    const stateDir = join(dir, "node");
    const n = subscriber(cp.url, {
      stateDir,
      onConfig: (c) => {
        if (c.destinations.includes("10.0.0.66:2003")) throw new Error("destination 66 is evil");
        n.applied.push(c);
      },
    });
    n.sub.start();
    await waitFor("version 1", () => n.sub.appliedVersion === 1n);
    const saved = readFileSync(join(stateDir, "control-config.json"), "utf8");

    await addDestination("10.0.0.66:2003"); // version 2: refused
    await waitFor("the refusal logged", () => n.logs.some((l) => l.msg.includes("refused")));
    const refusal = n.logs.find((l) => l.msg.includes("refused"));
    expect(refusal).toMatchObject({
      level: 50,
      msg: "control plane: configuration refused; keeping the previous one",
      version: "2",
      err: "destination 66 is evil",
      source: "control plane",
    });
    expect(n.sub.appliedVersion).toBe(1n);
    expect(readFileSync(join(stateDir, "control-config.json"), "utf8")).toBe(saved);

    await admin.removeDestination({ destination: { spec: "10.0.0.66:2003", scope: ALL_GROUPS } });
    await waitFor("version 3", () => n.sub.appliedVersion === 3n);
    expect(versions(n)).toEqual([1, 3]);
    const latest = JSON.parse(readFileSync(join(stateDir, "control-config.json"), "utf8"));
    expect(latest).toMatchObject({ version: "3", destinations: ["10.0.0.1:2003"] });
  });

  it("sends the node token on every call; a wrong one is refused, logged and retried", async () => {
    const cp = await plane();
    const ok = subscriber(cp.url, { reportIntervalMs: 20 });
    ok.sub.start();
    await waitFor("applied", () => ok.applied.length === 1);
    await waitFor("a report", () => cp.calls.some((c) => c.method === "ReportStatus"));
    expect(cp.calls.length).toBeGreaterThanOrEqual(2);
    for (const c of cp.calls) expect(c.authorization).toBe(`Bearer ${NODE_TOKEN}`);

    const bad = subscriber(cp.url, { nodeToken: "not-the-node-token" });
    bad.sub.start();
    const refusals = (): CapturedLine[] =>
      bad.logs.filter((l) => l.msg.startsWith("control plane refused the node credential"));
    await waitFor("refused three times (it keeps retrying)", () => refusals().length >= 3);
    expect(refusals()[0]).toMatchObject({ level: 50, code: "Unauthenticated" });
    expect(refusals()[0]?.msg).toMatch(/check POLYMUR_NODE_TOKEN \(retrying\)$/);
    expect(bad.applied).toEqual([]);
    expect(bad.sub.appliedVersion).toBe(0n);
    const wrong = cp.calls.filter((c) => c.authorization === "Bearer not-the-node-token");
    expect(wrong.length).toBeGreaterThanOrEqual(3);
    expect(new Set(wrong.map((c) => c.method))).toEqual(new Set(["Subscribe"]));
    // The credential never reaches a log line.
    expect(JSON.stringify(bad.logs)).not.toContain("not-the-node-token");
  });

  it("reconnects after the control plane restarts and catches up on what changed meanwhile", async () => {
    await addDestination("10.0.0.1:2003");
    const cp = await plane();
    const n = subscriber(cp.url);
    n.sub.start();
    await waitFor("version 1", () => n.sub.appliedVersion === 1n);

    await down(cp);
    await waitFor("unreachable logged", () =>
      n.logs.some((l) => l.msg.startsWith("control plane unreachable")),
    );
    const warn = n.logs.find((l) => l.msg.startsWith("control plane unreachable"));
    expect(warn).toMatchObject({ level: 40, code: "Unavailable", url: cp.url, applied: "1" });
    expect(warn?.msg).toMatch(/forwarding on configuration version 1$/);
    await addDestination("10.0.0.2:2003"); // version 2, while the node cannot hear it

    const again = await plane(cp.port);
    await waitFor("version 2", () => n.sub.appliedVersion === 2n);
    expect(versions(n)).toEqual([1, 2]);
    expect(again.subscribes()).toBeGreaterThanOrEqual(1);

    // Another restart with nothing changed: the same version again is not re-applied.
    await down(again);
    const third = await plane(cp.port);
    await waitFor("resubscribed", () => third.subscribes() >= 1);
    // The node says what it applied when it subscribes again.
    await waitFor(
      "the new subscription recorded",
      async () => (await store.listNodes())[0]?.subscription?.appliedVersion === 2,
    );
    expect(versions(n)).toEqual([1, 2]);
  });

  it("with a state dir, a restart while the control plane is down applies the saved config and keeps the node id", async () => {
    await addDestination("10.0.0.1:2003");
    const cp = await plane();
    const stateDir = join(dir, "node");
    const first = subscriber(cp.url, { stateDir });
    first.sub.start();
    await waitFor("version 1", () => first.sub.appliedVersion === 1n);
    await first.sub.stop();
    await down(cp);

    const second = subscriber(cp.url, { stateDir });
    expect(second.sub.nodeId).toBe(first.sub.nodeId);
    second.sub.start();
    // Applied at once, from disk, before any answer from the network.
    expect(versions(second)).toEqual([1]);
    expect(second.applied[0]?.destinations).toEqual(["10.0.0.1:2003"]);
    expect(second.sub.appliedVersion).toBe(1n);
    expect(second.logs[0]).toMatchObject({ source: `saved in ${stateDir}` });
    await waitFor("unreachable logged", () =>
      second.logs.some((l) => l.msg.startsWith("control plane unreachable")),
    );

    // The control plane comes back with a newer version: the node catches up and saves it.
    await addDestination("10.0.0.2:2003");
    await plane(cp.port);
    await waitFor("version 2", () => second.sub.appliedVersion === 2n);
    expect(versions(second)).toEqual([1, 2]);
    const saved = JSON.parse(readFileSync(join(stateDir, "control-config.json"), "utf8"));
    expect(saved).toMatchObject({ version: "2", destinations: ["10.0.0.1:2003", "10.0.0.2:2003"] });
  });

  it("ignores an unreadable saved config (logged) and starts without one", async () => {
    const stateDir = join(dir, "node");
    const cp = await plane();
    const first = subscriber(cp.url, { stateDir });
    await first.sub.stop();
    writeFileSync(join(stateDir, "control-config.json"), "{not json");
    const second = subscriber(`http://127.0.0.1:${cp.port}`, { stateDir });
    second.sub.start();
    expect(second.applied).toEqual([]);
    expect(second.logs[0]).toMatchObject({
      level: 50,
      msg: "control plane: saved configuration unreadable; ignoring it",
    });
    await waitFor("then the live snapshot", () => second.applied.length === 1);
    expect(second.sub.nodeId).toBe(first.sub.nodeId);
  });

  it("reports its status right after applying a snapshot, and then every interval", async () => {
    await addDestination("10.0.0.1:2003");
    const cp = await plane();
    let received = 10n;
    const n = subscriber(cp.url, {
      role: "gateway",
      status: () => ({
        counters: { received, forwarded: 9n, dropped: 1n },
        destinations: [{ spec: "10.0.0.1:2003", state: "connected", forwarded: 9n, queued: 2n }],
      }),
    });
    n.sub.start();
    const reportOf = async (id: string) =>
      (await store.listNodes()).find((r) => r.nodeId === id)?.report;
    await waitFor(
      "a report after the snapshot",
      async () => (await reportOf(n.sub.nodeId)) !== undefined,
    );
    expect(await reportOf(n.sub.nodeId)).toMatchObject({
      nodeId: n.sub.nodeId,
      group: "web",
      role: "gateway",
      appliedVersion: 1,
      counters: { received: 10, forwarded: 9, dropped: 1, rejected: 0, connections: 0 },
      destinations: [
        {
          spec: "10.0.0.1:2003",
          state: "connected",
          forwarded: 9,
          dropped: 0,
          queued: 2,
          queuedBytes: 0,
          resent: 0,
        },
      ],
    });
    await n.sub.stop();

    // Periodic reports: fresh counters each time.
    const m = subscriber(cp.url, {
      reportIntervalMs: 20,
      status: () => ({ counters: { received: received++ }, destinations: [] }),
    });
    m.sub.start();
    await waitFor(
      "several periodic reports",
      async () => ((await reportOf(m.sub.nodeId))?.counters.received ?? 0) >= 15,
    );
    expect(await reportOf(m.sub.nodeId)).toMatchObject({ role: "relay", appliedVersion: 1 });
  });
});
