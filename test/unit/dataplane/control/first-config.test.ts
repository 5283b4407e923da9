import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type {
  ControlSubscriber,
  ControlSubscriberOptions,
} from "../../../../dataplane/control/control-subscriber.ts";
import { subscribeUntilConfigured } from "../../../../dataplane/control/first-config.ts";
import type { NodeConfig } from "../../../../gen/polymur/control/v1/control_pb.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import {
  ALL_GROUPS,
  NODE_TOKEN,
  subscriberOptions,
  TestControlPlane,
} from "../../../fixtures/control-plane-server.ts";
import { freePort } from "../../../fixtures/line-sink.ts";
import { until } from "../../../fixtures/until.ts";

const WAITING = "waiting for a configuration from the control plane";

/** Lets every pending callback and promise continuation run. */
function settle(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

let control: TestControlPlane;
const subscribers: ControlSubscriber[] = [];

beforeEach(async () => {
  control = await TestControlPlane.open("polymur-first-config-");
});

afterEach(async () => {
  for (const s of subscribers.splice(0)) await s.stop();
  await control.close();
});

interface Managed {
  /** Resolves with the subscriber once subscribeUntilConfigured does. */
  done: Promise<ControlSubscriber>;
  /** onConfig calls (accepted and refused) and the resolution, in order. */
  events: string[];
  applied: NodeConfig[];
  logs: CapturedLine[];
}

/**
 * Starts a managed node's first-config wait; `refuse` makes onConfig throw
 * (the node refuses that snapshot).
 */
function manage(
  url: string,
  refuse: (c: NodeConfig) => boolean = () => false,
  options: Partial<ControlSubscriberOptions> = {},
): Managed {
  const { log, lines } = captureLog();
  const events: string[] = [];
  const applied: NodeConfig[] = [];
  const done = subscribeUntilConfigured(
    {
      ...subscriberOptions(url, log),
      onConfig(c) {
        if (refuse(c)) {
          events.push(`refused ${c.version}`);
          throw new Error(`version ${c.version} refused by the test`);
        }
        events.push(`applied ${c.version}`);
        applied.push(c);
      },
      ...options,
    },
    WAITING,
  ).then((s) => {
    events.push("resolved");
    subscribers.push(s);
    return s;
  });
  return { done, events, applied, logs: lines };
}

describe("subscribeUntilConfigured", () => {
  it("resolves once the control plane's first snapshot is applied, not before", async () => {
    await control.addDestination("10.0.0.1:2003");
    const port = await freePort();
    const m = manage(`http://127.0.0.1:${port}`);
    // No control plane yet: the subscriber tries, fails, and keeps waiting.
    await until("a failed attempt", () =>
      m.logs.some((l) => l.msg.startsWith("control plane unreachable")),
    );
    await settle();
    expect(m.events).toEqual([]);

    await control.up(port);
    const sub = await m.done;
    expect(m.events).toEqual(["applied 1", "resolved"]);
    expect(m.applied[0]).toMatchObject({ version: 1n, destinations: ["10.0.0.1:2003"] });
    expect(sub.appliedVersion).toBe(1n);
  });

  it("resolves with a running subscriber: later snapshots are applied too", async () => {
    const cp = await control.up();
    const m = manage(cp.url);
    const sub = await m.done;
    // Nobody has changed the control plane yet: version 0 is a configuration too.
    expect(m.events).toEqual(["applied 0", "resolved"]);
    await control.addDestination("10.0.0.2:2003");
    await until("version 1", () => sub.appliedVersion === 1n);
    expect(m.events).toEqual(["applied 0", "resolved", "applied 1"]);
  });

  it("does not count a refused first snapshot; a later good one resolves it", async () => {
    await control.addDestination("10.0.0.1:2003");
    await control.addDestination("10.0.0.66:2003");
    const cp = await control.up();
    const m = manage(cp.url, (c) => c.destinations.includes("10.0.0.66:2003"));
    await until("the refusal logged", () =>
      m.logs.some(
        (l) => l.msg === "control plane: configuration refused; keeping the previous one",
      ),
    );
    await settle();
    expect(m.events).toEqual(["refused 2"]);

    await control.admin.removeDestination({
      destination: { spec: "10.0.0.66:2003", scope: ALL_GROUPS },
    });
    const sub = await m.done;
    expect(m.events).toEqual(["refused 2", "applied 3", "resolved"]);
    expect(m.applied.map((c) => c.destinations)).toEqual([["10.0.0.1:2003"]]);
    expect(sub.appliedVersion).toBe(3n);
  });

  it("logs the wait first, naming the control plane, the group and the node id", async () => {
    const cp = await control.up();
    const m = manage(cp.url);
    const sub = await m.done;
    const waiting = m.logs.findIndex((l) => l.msg === WAITING);
    expect(waiting).toBe(0);
    expect(m.logs[waiting]).toMatchObject({
      level: 30,
      msg: WAITING,
      controlPlane: cp.url,
      group: "web",
      nodeId: sub.nodeId,
    });
    expect(sub.nodeId).not.toBe("");
    const applied = m.logs.findIndex((l) => l.msg.endsWith("applied"));
    expect(applied).toBeGreaterThan(waiting);
    // The node credential is not in the log.
    expect(JSON.stringify(m.logs)).not.toContain(NODE_TOKEN);
  });

  it("resolves at once on a configuration saved by an earlier run, control plane or not", async () => {
    await control.addDestination("10.0.0.1:2003");
    const stateDir = join(control.dir, "node");
    const cp = await control.up();
    const first = manage(cp.url, undefined, { stateDir });
    const earlier = await first.done;
    await earlier.stop();
    await control.down(cp);

    const m = manage(cp.url, undefined, { stateDir });
    const sub = await m.done;
    expect(m.events).toEqual(["applied 1", "resolved"]);
    expect(sub.nodeId).toBe(earlier.nodeId);
    expect(m.logs.find((l) => l.msg.endsWith("applied"))).toMatchObject({
      source: `saved in ${stateDir}`,
    });
  });
});
