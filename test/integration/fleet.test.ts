import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  adminClient,
  ControlPlaneProcess,
  NODE_TOKEN,
  retrying,
} from "../fixtures/control-plane.ts";
import { LineSink } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";
import { waitFor } from "../fixtures/until.ts";

// Fleet-wide reconfiguration through the real control plane, with real
// managed relays under a steady load: the claims are "every node gets the
// change" and "no datapoint is lost doing it", so every datapoint is counted.

const relays: PolymurProcess[] = [];
const others: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  while (others.length > 0) await others.pop()!();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "polymur-fleet-"));
  others.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function controlPlane(stateDir: string): Promise<ControlPlaneProcess> {
  const cp = await ControlPlaneProcess.start(["--state-dir", stateDir]);
  others.push(() => cp.stop());
  return cp;
}

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  others.push(() => s.close());
  return s;
}

async function managed(url: string, group: string, stateDir?: string): Promise<PolymurProcess> {
  const args = ["--control-plane", url, "--group", group];
  if (stateDir !== undefined) args.push("--state-dir", stateDir);
  const r = await PolymurProcess.relay(args, { POLYMUR_NODE_TOKEN: NODE_TOKEN });
  relays.push(r);
  return r;
}

const all = { target: { case: "all" as const, value: true } };

/** A sender writing `perTick` datapoints every 10 ms on one connection, each line unique. */
class SteadySender {
  readonly sent: string[] = [];
  #socket: net.Socket;
  #timer: NodeJS.Timeout | null = null;
  #n = 0;

  private constructor(socket: net.Socket, prefix: string, perTick: number) {
    this.#socket = socket;
    this.#timer = setInterval(() => {
      const lines: string[] = [];
      for (let i = 0; i < perTick; i++)
        lines.push(`${prefix}.m${this.#n % 50} ${this.#n++} 1700000000`);
      this.sent.push(...lines);
      socket.write(lines.join("\n") + "\n");
    }, 10);
  }

  static async start(port: number, prefix: string, perTick = 20): Promise<SteadySender> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    return new SteadySender(socket, prefix, perTick);
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await new Promise<void>((r) => this.#socket.end(() => r()));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("fleet-wide reconfiguration", () => {
  it("dest add --all under load reaches every node, and no datapoint is lost", async () => {
    const cp = await controlPlane(await tempDir());
    const admin = adminClient(cp.url);
    const first = await sink();
    const second = await sink();
    await retrying(
      () => admin.addDestination({ destination: { spec: first.address, scope: all } }),
      10_000,
    );
    const nodes = [
      await managed(cp.url, "web"),
      await managed(cp.url, "web"),
      await managed(cp.url, "db"),
    ];
    const senders = await Promise.all(nodes.map((n, i) => SteadySender.start(n.port, `node${i}`)));
    await sleep(500);
    const { version } = await admin.addDestination({
      destination: { spec: second.address, scope: all },
    });
    for (const n of nodes) {
      await n.waitForLog(
        (l) => l.msg === `control plane: configuration version ${version} applied`,
      );
    }
    await sleep(500);
    await Promise.all(senders.map((s) => s.stop()));
    const sent = senders.flatMap((s) => s.sent);
    // The destination that was there all along has every datapoint.
    await first.waitForLines(sent.length);
    expect(first.lines.length).toBe(sent.length);
    expect(new Set(first.lines)).toEqual(new Set(sent));
    // The new one has, from each node, an unbroken tail of that node's stream.
    // (Its queue is its own: wait until each stream's last line is there too.)
    const last = senders.map((s) => s.sent.at(-1)!);
    await waitFor("the new destination has every stream's last line", () =>
      last.every((l) => second.lines.includes(l)) ? true : undefined,
    );
    for (const s of senders) {
      const got = second.lines.filter((l) => l.startsWith(s.sent[0]!.split(".")[0]! + "."));
      expect(got.length).toBeGreaterThan(0);
      expect(got).toEqual(s.sent.slice(s.sent.length - got.length));
    }
    // The control plane sees every node at the new version.
    const listed = await retrying(
      async () => {
        const res = await admin.listNodes({});
        if (res.nodes.filter((n) => n.appliedVersion === version).length < 3) {
          throw new Error(
            `nodes: ${res.nodes.map((n) => `${n.id}@${n.appliedVersion}`).join(",")}`,
          );
        }
        return res;
      },
      15_000,
      () => true,
    );
    expect(listed.nodes.map((n) => n.group).sort()).toEqual(["db", "web", "web"]);
  });

  it("group scope: a destination for one group reaches only that group", async () => {
    const cp = await controlPlane(await tempDir());
    const admin = adminClient(cp.url);
    const common = await sink();
    const webOnly = await sink();
    await retrying(
      () => admin.addDestination({ destination: { spec: common.address, scope: all } }),
      10_000,
    );
    const web = await managed(cp.url, "web");
    const db = await managed(cp.url, "db");
    const { version } = await admin.addDestination({
      destination: { spec: webOnly.address, scope: { target: { case: "group", value: "web" } } },
    });
    await web.waitForLog(
      (l) => l.msg === `control plane: configuration version ${version} applied`,
    );
    await sleep(300);
    const getdest = async (n: PolymurProcess) =>
      (await n.stats()).destinations.map((d) => d.spec).sort();
    expect(await getdest(web)).toEqual([common.address, webOnly.address].sort());
    expect(await getdest(db)).toEqual([common.address]);
  });

  it("nodes keep forwarding while the control plane is killed and restarted, and take the next change", async () => {
    const state = await tempDir();
    let cp = await controlPlane(state);
    const admin = adminClient(cp.url);
    const a = await sink();
    await retrying(
      () => admin.addDestination({ destination: { spec: a.address, scope: all } }),
      10_000,
    );
    const node = await managed(cp.url, "web", await tempDir());
    const sender = await SteadySender.start(node.port, "cpkill");
    await sleep(300);
    const port = cp.port;
    cp.kill("SIGKILL");
    await cp.stop();
    await sleep(1_000);
    const during = a.lines.length;
    await sleep(500);
    expect(a.lines.length).toBeGreaterThan(during); // still forwarding with the control plane gone
    cp = await ControlPlaneProcess.start([
      "--state-dir",
      state,
      "--listen-addr",
      `127.0.0.1:${port}`,
    ]);
    others.push(() => cp.stop());
    const b = await sink();
    const { version } = await retrying(
      () => adminClient(cp.url).addDestination({ destination: { spec: b.address, scope: all } }),
      10_000,
    );
    await node.waitForLog(
      (l) => l.msg === `control plane: configuration version ${version} applied`,
      20_000,
    );
    await sender.stop();
    await a.waitForLines(sender.sent.length);
    expect(new Set(a.lines)).toEqual(new Set(sender.sent));
    await waitForStats(node, (s) => s.destinations.length === 2);
  });

  it("a node restarted while the control plane is down forwards with its saved configuration", async () => {
    const cp = await controlPlane(await tempDir());
    const a = await sink();
    await retrying(
      () => adminClient(cp.url).addDestination({ destination: { spec: a.address, scope: all } }),
      10_000,
    );
    const nodeState = await tempDir();
    const first = await managed(cp.url, "web", nodeState);
    await first.waitForLog((l) => String(l.msg).includes("applied"));
    await first.stop();
    relays.splice(relays.indexOf(first), 1);
    await cp.stop();
    const again = await managed(cp.url, "web", nodeState);
    const sender = await SteadySender.start(again.port, "restart");
    await sleep(300);
    await sender.stop();
    await a.waitForLines(sender.sent.length);
    expect(new Set(a.lines)).toEqual(new Set(sender.sent));
  });
});
