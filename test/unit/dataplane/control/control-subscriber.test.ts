import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type ControlSubscriber,
  type ControlSubscriberOptions,
  createControlSubscriber,
} from "../../../../dataplane/control/control-subscriber.ts";
import type { NodeConfig } from "../../../../gen/polymur/control/v1/control_pb.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import {
  ALL_GROUPS,
  NODE_TOKEN,
  subscriberOptions,
  TestControlPlane,
} from "../../../fixtures/control-plane-server.ts";
import { until } from "../../../fixtures/until.ts";

let control: TestControlPlane;
const subscribers: ControlSubscriber[] = [];

beforeEach(async () => {
  control = await TestControlPlane.open("polymur-subscriber-");
});

afterEach(async () => {
  for (const s of subscribers.splice(0)) await s.stop();
  await control.close();
});

interface Node {
  sub: ControlSubscriber;
  applied: NodeConfig[];
  logs: CapturedLine[];
}

function subscriber(url: string, options: Partial<ControlSubscriberOptions> = {}): Node {
  const { log, lines } = captureLog();
  const applied: NodeConfig[] = [];
  const sub = createControlSubscriber({
    ...subscriberOptions(url, log),
    onConfig: (c) => {
      applied.push(c);
    },
    ...options,
  });
  subscribers.push(sub);
  return { sub, applied, logs: lines };
}

const versions = (n: Node): number[] => n.applied.map((c) => Number(c.version));

describe("createControlSubscriber", () => {
  it("applies the first snapshot, then every change, once each", async () => {
    await control.addDestination("10.0.0.1:2003");
    const cp = await control.up();
    const n = subscriber(cp.url);
    expect(n.sub.appliedVersion).toBe(0n);
    n.sub.start();
    await until("version 1", () => n.sub.appliedVersion === 1n);
    expect(n.applied[0]).toMatchObject({
      version: 1n,
      group: "web",
      destinations: ["10.0.0.1:2003"],
    });

    await control.addDestination("10.0.0.2:2003");
    await until("version 2", () => n.sub.appliedVersion === 2n);
    expect(n.applied.at(-1)?.destinations).toEqual(["10.0.0.1:2003", "10.0.0.2:2003"]);
    expect(versions(n)).toEqual([1, 2]);
    expect(n.logs.filter((l) => l.msg.endsWith("applied")).map((l) => l.msg)).toEqual([
      "control plane: configuration version 1 applied",
      "control plane: configuration version 2 applied",
    ]);
    // The node identifies itself on the stream.
    const [node] = await control.store.listNodes();
    expect(node?.nodeId).toBe(n.sub.nodeId);
    expect(node?.subscription).toMatchObject({ group: "web", role: "relay", open: true });
  });

  it("applies version 0 of a control plane nobody has changed yet", async () => {
    const cp = await control.up();
    const n = subscriber(cp.url);
    n.sub.start();
    await until("a snapshot", () => n.applied.length === 1);
    expect(n.applied[0]).toMatchObject({ version: 0n, destinations: [] });
    expect(n.sub.appliedVersion).toBe(0n);
  });

  it("logs a snapshot onConfig refuses and keeps the previous one (not saved either)", async () => {
    await control.addDestination("10.0.0.1:2003");
    const cp = await control.up();
    const stateDir = join(control.dir, "node");
    const n = subscriber(cp.url, {
      stateDir,
      onConfig: (c) => {
        if (c.destinations.includes("10.0.0.66:2003")) throw new Error("destination 66 is evil");
        n.applied.push(c);
      },
    });
    n.sub.start();
    await until("version 1", () => n.sub.appliedVersion === 1n);
    const saved = readFileSync(join(stateDir, "control-config.json"), "utf8");
    // The state directory and its files are private (key digests, node identity).
    expect(statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(stateDir, "control-config.json")).mode & 0o777).toBe(0o600);
    expect(statSync(join(stateDir, "node-id")).mode & 0o777).toBe(0o600);

    await control.addDestination("10.0.0.66:2003"); // version 2: refused
    await until("the refusal logged", () => n.logs.some((l) => l.msg.includes("refused")));
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

    await control.admin.removeDestination({
      destination: { spec: "10.0.0.66:2003", scope: ALL_GROUPS },
    });
    await until("version 3", () => n.sub.appliedVersion === 3n);
    expect(versions(n)).toEqual([1, 3]);
    const latest = JSON.parse(readFileSync(join(stateDir, "control-config.json"), "utf8"));
    expect(latest).toMatchObject({ version: "3", destinations: ["10.0.0.1:2003"] });
  });

  it("sends the node token on every call; a wrong one is refused, logged and retried", async () => {
    const cp = await control.up();
    const ok = subscriber(cp.url, { reportIntervalMs: 20 });
    ok.sub.start();
    await until("applied", () => ok.applied.length === 1);
    await until("a report", () => cp.calls.some((c) => c.method === "ReportStatus"));
    expect(cp.calls.length).toBeGreaterThanOrEqual(2);
    for (const c of cp.calls) expect(c.authorization).toBe(`Bearer ${NODE_TOKEN}`);

    const bad = subscriber(cp.url, { nodeToken: "not-the-node-token" });
    bad.sub.start();
    const refusals = (): CapturedLine[] =>
      bad.logs.filter((l) => l.msg.startsWith("control plane refused the node credential"));
    const wrongCalls = () =>
      cp.calls.filter((c) => c.authorization === "Bearer not-the-node-token");
    await until("refused three times (it keeps retrying)", () => wrongCalls().length >= 3);
    // Said once, not once per retry (again only after logRepeatMs, 60 s by default).
    expect(refusals()).toHaveLength(1);
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
    await control.addDestination("10.0.0.1:2003");
    const cp = await control.up();
    const n = subscriber(cp.url);
    n.sub.start();
    await until("version 1", () => n.sub.appliedVersion === 1n);

    await control.down(cp);
    await until("unreachable logged", () =>
      n.logs.some((l) => l.msg.startsWith("control plane unreachable")),
    );
    const warn = n.logs.find((l) => l.msg.startsWith("control plane unreachable"));
    expect(warn).toMatchObject({ level: 40, code: "Unavailable", url: cp.url, applied: "1" });
    expect(warn?.msg).toMatch(/forwarding on configuration version 1$/);
    await control.addDestination("10.0.0.2:2003"); // version 2, while the node cannot hear it

    const again = await control.up(cp.port);
    await until("version 2", () => n.sub.appliedVersion === 2n);
    expect(versions(n)).toEqual([1, 2]);
    // One line for the outage, however many retries, and one when it is back.
    expect(n.logs.filter((l) => l.msg.startsWith("control plane unreachable"))).toHaveLength(1);
    const back = n.logs.filter((l) => l.msg.startsWith("control plane reachable again"));
    expect(back).toHaveLength(1);
    expect(back[0]).toMatchObject({ level: 30, url: cp.url });
    expect(back[0]?.msg).toMatch(
      /^control plane reachable again after \d+ s \(\d+ failed attempts\)$/,
    );
    expect(again.subscribes()).toBeGreaterThanOrEqual(1);

    // Another restart with nothing changed: the same version again is not re-applied.
    await control.down(again);
    const third = await control.up(cp.port);
    await until("resubscribed", () => third.subscribes() >= 1);
    // The node says what it applied when it subscribes again.
    await until(
      "the new subscription recorded",
      async () => (await control.store.listNodes())[0]?.subscription?.appliedVersion === 2,
    );
    expect(versions(n)).toEqual([1, 2]);
  });

  it("while it stays unreachable, says so again once per logRepeatMs with the count of failed attempts", async () => {
    const cp = await control.up();
    const n = subscriber(cp.url, { logRepeatMs: 1, backoffMinMs: 5, backoffMaxMs: 10 });
    n.sub.start();
    await until("applied", () => n.applied.length === 1);
    await control.down(cp);
    const repeats = (): CapturedLine[] =>
      n.logs.filter((l) => l.msg.startsWith("control plane still unreachable"));
    await until("two repeats", () => repeats().length >= 2);
    expect(n.logs.filter((l) => l.msg.startsWith("control plane unreachable"))).toHaveLength(1);
    expect(repeats()[0]).toMatchObject({ level: 40, code: "Unavailable", url: cp.url });
    const counts = repeats().map((l) => Number(l["count"]));
    const totals = repeats().map((l) => Number(l["total"]));
    // total is the running sum of count: every failed attempt is in exactly one line.
    expect(totals).toEqual(counts.map((_, i) => counts.slice(0, i + 1).reduce((a, b) => a + b)));
  });

  it("with a state dir, a restart while the control plane is down applies the saved config and keeps the node id", async () => {
    await control.addDestination("10.0.0.1:2003");
    const cp = await control.up();
    const stateDir = join(control.dir, "node");
    const first = subscriber(cp.url, { stateDir });
    first.sub.start();
    await until("version 1", () => first.sub.appliedVersion === 1n);
    await first.sub.stop();
    await control.down(cp);

    const second = subscriber(cp.url, { stateDir });
    expect(second.sub.nodeId).toBe(first.sub.nodeId);
    second.sub.start();
    // Applied at once, from disk, before any answer from the network.
    expect(versions(second)).toEqual([1]);
    expect(second.applied[0]?.destinations).toEqual(["10.0.0.1:2003"]);
    expect(second.sub.appliedVersion).toBe(1n);
    expect(second.logs[0]).toMatchObject({ source: `saved in ${stateDir}` });
    await until("unreachable logged", () =>
      second.logs.some((l) => l.msg.startsWith("control plane unreachable")),
    );

    // The control plane comes back with a newer version: the node catches up and saves it.
    await control.addDestination("10.0.0.2:2003");
    await control.up(cp.port);
    await until("version 2", () => second.sub.appliedVersion === 2n);
    expect(versions(second)).toEqual([1, 2]);
    const saved = JSON.parse(readFileSync(join(stateDir, "control-config.json"), "utf8"));
    expect(saved).toMatchObject({ version: "2", destinations: ["10.0.0.1:2003", "10.0.0.2:2003"] });
  });

  it("ignores an unreadable saved config (logged) and starts without one", async () => {
    const stateDir = join(control.dir, "node");
    const cp = await control.up();
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
    await until("then the live snapshot", () => second.applied.length === 1);
    expect(second.sub.nodeId).toBe(first.sub.nodeId);
  });

  it("reports its status right after applying a snapshot, and then every interval", async () => {
    await control.addDestination("10.0.0.1:2003");
    const cp = await control.up();
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
      (await control.store.listNodes()).find((r) => r.nodeId === id)?.report;
    await until(
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
    await until(
      "several periodic reports",
      async () => ((await reportOf(m.sub.nodeId))?.counters.received ?? 0) >= 15,
    );
    expect(await reportOf(m.sub.nodeId)).toMatchObject({ role: "relay", appliedVersion: 1 });
  });
});
