import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CONSUL_BIN, haveConsul, startConsulDev } from "../fixtures/consul.ts";
import {
  adminClient,
  ControlPlaneProcess,
  NODE_TOKEN,
  retrying,
  runCtl,
} from "../fixtures/control-plane.ts";
import { datapoints, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { waitFor } from "../fixtures/until.ts";

// relay.conf rules held by the real control plane and run by real managed
// relays: set with `polymurctl rules set --all` while senders send, every
// datapoint is counted at the sinks (before the switch at the destination the
// nodes had, after it where the rules say); a broken file changes nothing;
// a group's rules override the fleet's; through Consul, rules set at one
// replica reach a node of another, and outlive both.

const withoutConsul = skipUnlessAvailable(`Consul (${CONSUL_BIN})`, haveConsul);

const relays: PolymurProcess[] = [];
const others: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.stop()));
  while (others.length > 0) await others.pop()!();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "polymur-cp-rules-"));
  others.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function controlPlane(): Promise<ControlPlaneProcess> {
  const cp = await ControlPlaneProcess.start(["--state-dir", await tempDir()]);
  others.push(() => cp.stop());
  return cp;
}

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  others.push(() => s.close());
  return s;
}

async function managed(url: string, group: string): Promise<PolymurProcess> {
  const r = await PolymurProcess.relay(["--control-plane", url, "--group", group], {
    POLYMUR_NODE_TOKEN: NODE_TOKEN,
  });
  relays.push(r);
  return r;
}

/** A sender writing `perTick` datapoints every 10 ms on one connection, each line unique. */
class SteadySender {
  readonly sent: string[] = [];
  readonly #socket: net.Socket;
  readonly #timer: NodeJS.Timeout;
  #n = 0;

  private constructor(socket: net.Socket, prefix: string, perTick: number) {
    this.#socket = socket;
    this.#timer = setInterval(() => {
      const lines: string[] = [];
      for (let i = 0; i < perTick; i++)
        lines.push(`${prefix}.m${this.#n % 50} ${this.#n++} 1700000000`);
      this.sent.push(...lines);
      socket.write(`${lines.join("\n")}\n`);
    }, 10);
  }

  static async start(port: number, prefix: string, perTick = 20): Promise<SteadySender> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    return new SteadySender(socket, prefix, perTick);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await new Promise<void>((r) => this.#socket.end(() => r()));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const all = { target: { case: "all" as const, value: true } };
const group = (g: string) => ({ target: { case: "group" as const, value: g } });
const rules = (text: string, fileName: string) => ({ content: Buffer.from(text), fileName });

/** The version a node says it applied, from its log. */
function applied(n: PolymurProcess, version: bigint | number) {
  return n.waitForLog((l) => l.msg === `control plane: configuration version ${version} applied`);
}

/**
 * Waits until a relay's destinations are `specs` and no others (a removed one
 * is listed while it drains its queue, then marked removed).
 */
async function forwardsTo(n: PolymurProcess, specs: string[]): Promise<void> {
  const want = [...specs].sort();
  await waitFor(`relay forwarding to ${want.join(", ")} only`, async () => {
    const now = (await n.stats()).destinations
      .filter((d) => d.removed !== true)
      .map((d) => d.spec)
      .sort();
    return JSON.stringify(now) === JSON.stringify(want) ? true : undefined;
  });
}

describe("rules from the control plane", () => {
  it("rules set --all under load: both relays switch, and every datapoint arrives where the rules say", async () => {
    const cp = await controlPlane();
    const admin = adminClient(cp.url);
    const before = await sink();
    const low = await sink();
    const high = await sink();
    await retrying(
      () => admin.addDestination({ destination: { spec: before.address, scope: all } }),
      10_000,
    );
    const nodes = [await managed(cp.url, "web"), await managed(cp.url, "db")];
    const senders = await Promise.all(nodes.map((n, i) => SteadySender.start(n.port, `node${i}`)));
    await sleep(500);

    // .m10 to .m19 go to low (and stop there); everything else to high.
    const file = join(await tempDir(), "relay.conf");
    await writeFile(
      file,
      `cluster low\n    forward ${low.address}\n    ;\ncluster high\n    forward ${high.address}\n    ;\nmatch [.]m1[0-9]$\n    send to low\n    stop\n    ;\nmatch *\n    send to high\n    ;\n`,
    );
    const set = await runCtl(cp.url, ["rules", "set", "--all", "-f", file]);
    expect(set.stderr).toBe("");
    expect(set.code).toBe(0);
    const version = Number(/state version (\d+)/.exec(set.stdout)![1]);
    expect(set.stdout).toBe(`rules ${file} set for all nodes (state version ${version})\n`);
    for (const n of nodes) await applied(n, version);
    await sleep(500);
    await Promise.all(senders.map((s) => s.stop()));

    // Both relays forward to the clusters' members now, and only to them.
    for (const n of nodes) await forwardsTo(n, [low.address, high.address]);
    const isLow = (l: string) => /\.m1[0-9] /.test(l);
    const sent = senders.flatMap((s) => s.sent);
    const total = () => before.lines.length + low.lines.length + high.lines.length;
    await retrying(
      async () => {
        if (total() < sent.length) throw new Error(`${total()} of ${sent.length} lines arrived`);
      },
      20_000,
      () => true,
    );
    await sleep(200);
    expect(total()).toBe(sent.length);
    for (const s of senders) {
      const prefix = `${s.sent[0]!.split(".")[0]!}.`;
      const mine = (lines: string[]) => lines.filter((l) => l.startsWith(prefix));
      // Before the switch, the stream's head at the old destination; after it, its tail by the rules.
      const k = mine(before.lines).length;
      expect(k).toBeGreaterThan(0);
      expect(k).toBeLessThan(s.sent.length);
      expect(mine(before.lines)).toEqual(s.sent.slice(0, k));
      expect(mine(low.lines)).toEqual(s.sent.slice(k).filter(isLow));
      expect(mine(high.lines)).toEqual(s.sent.slice(k).filter((l) => !isLow(l)));
    }
  });

  it("a broken file is refused with file:line:column, and nothing changes", async () => {
    const cp = await controlPlane();
    const admin = adminClient(cp.url);
    const a = await sink();
    const { version } = await retrying(
      () =>
        admin.setRules({
          scope: all,
          rules: rules(`cluster a forward ${a.address};\nmatch * send to a;\n`, "good.conf"),
        }),
      10_000,
    );
    const node = await managed(cp.url, "web");
    await applied(node, version);

    const dir = await tempDir();
    const broken = join(dir, "broken.conf");
    await writeFile(broken, `cluster a forward ${a.address};\nmatch * send to b;\n`);
    let r = await runCtl(cp.url, ["rules", "set", "--all", "-f", broken]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(
      new RegExp(`^polymurctl rules set: ${broken}:2:\\d+: unknown cluster "b"`),
    );
    const included = join(dir, "included.conf");
    await writeFile(
      included,
      `cluster a forward ${a.address};\ninclude conf.d/*.conf;\nmatch * send to a;\n`,
    );
    r = await runCtl(cp.url, ["rules", "set", "--all", "-f", included, "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error).toMatchObject({
      code: "invalid_argument",
      polymurCode: "POLYMUR_ERR_RULES",
    });
    expect(r.stderr).toMatch(
      new RegExp(
        `^polymurctl rules set: ${included}:2:9: include "conf.d/\\*.conf": .*inline them`,
      ),
    );

    // The state and the node are where they were, and the node still routes by good.conf.
    const got = await admin.getRules({});
    expect(got.version).toBe(version);
    expect(got.rules.map((x) => x.rules?.fileName)).toEqual(["good.conf"]);
    const lines = datapoints("after", 100);
    await sendLines(node.port, `${lines.join("\n")}\n`);
    await a.waitForLines(100);
    expect(a.lines).toEqual(lines);
    const versions = node.logs.flatMap((l) => {
      const m = /^control plane: configuration version (\d+) applied$/.exec(l.msg);
      return m === null ? [] : [BigInt(m[1]!)];
    });
    expect(versions).toEqual([version]);
  });

  it("a group's rules override the fleet's; unset, the group follows the fleet's again", async () => {
    const cp = await controlPlane();
    const admin = adminClient(cp.url);
    const fleetSink = await sink();
    const webSink = await sink();
    await retrying(
      () =>
        admin.setRules({
          scope: all,
          rules: rules(
            `cluster f forward ${fleetSink.address};\nmatch * send to f;\n`,
            "fleet.conf",
          ),
        }),
      10_000,
    );
    const { version } = await admin.setRules({
      scope: group("web"),
      rules: rules(`cluster w forward ${webSink.address};\nmatch * send to w;\n`, "web.conf"),
    });
    const web = await managed(cp.url, "web");
    const db = await managed(cp.url, "db");
    await applied(web, version);
    await applied(db, version);
    await forwardsTo(web, [webSink.address]);
    await forwardsTo(db, [fleetSink.address]);

    const fromWeb = datapoints("web", 200);
    const fromDb = datapoints("db", 150);
    await sendLines(web.port, `${fromWeb.join("\n")}\n`);
    await sendLines(db.port, `${fromDb.join("\n")}\n`);
    await webSink.waitForLines(200);
    await fleetSink.waitForLines(150);
    await sleep(200);
    expect(webSink.lines).toEqual(fromWeb);
    expect(fleetSink.lines).toEqual(fromDb);

    const unset = await runCtl(cp.url, ["rules", "unset", "--group", "web"]);
    expect(unset.code).toBe(0);
    const v2 = Number(/state version (\d+)/.exec(unset.stdout)![1]);
    await applied(web, v2);
    await forwardsTo(web, [fleetSink.address]);
    const later = datapoints("web2", 50);
    await sendLines(web.port, `${later.join("\n")}\n`);
    await fleetSink.waitForLines(200);
    expect(fleetSink.lines.slice(150)).toEqual(later);
    expect(webSink.lines).toHaveLength(200);

    const show = await runCtl(cp.url, ["rules", "show", "--group", "web", "--json"]);
    expect(JSON.parse(show.stdout)).toMatchObject({
      from: "fleet",
      fileName: "fleet.conf",
      version: v2,
    });
  });

  it.skipIf(withoutConsul)(
    "Consul: set through one replica, run by a node of another, kept across restarts",
    async () => {
      const consul = await startConsulDev();
      others.push(() => consul.stop());
      const store = `consul://127.0.0.1:${consul.ports.http}/polymur-rules-${process.pid}`;
      const start = async (id: string) => {
        const cp = await ControlPlaneProcess.start(["--store", store, "--replica-id", id]);
        others.push(() => cp.stop());
        return cp;
      };
      const [a, b] = [await start("A"), await start("B")];
      const s1 = await sink();
      const node = await managed(b.url, "web");
      const { version } = await retrying(
        () =>
          adminClient(a.url).setRules({
            scope: group("web"),
            rules: rules(`cluster s forward ${s1.address};\nmatch * send to s;\n`, "web.conf"),
          }),
        10_000,
      );
      await applied(node, version);
      await forwardsTo(node, [s1.address]);
      const lines = datapoints("consul", 100);
      await sendLines(node.port, `${lines.join("\n")}\n`);
      await s1.waitForLines(100);
      expect(s1.lines).toEqual(lines);

      await a.stop();
      await b.stop();
      const c = await start("C");
      const got = await retrying(() => adminClient(c.url).getRules({}), 10_000);
      expect(got.version).toBe(version);
      expect(got.rules.map((r) => [r.scope?.target, r.rules?.fileName])).toEqual([
        [{ case: "group", value: "web" }, "web.conf"],
      ]);
    },
  );
});
