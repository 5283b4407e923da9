import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlPlaneProcess, NODE_TOKEN, runCtl, waitFor } from "../fixtures/control-plane.ts";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";

// Change history, rollback and watched rollouts end to end: a real control plane
// (file store), a real managed relay (default worker count) subscribed to it,
// real line receivers as destinations, and the polymurctl binary. A node that
// cannot apply a change is a real relay stopped with SIGSTOP: its stream stays
// open (it counts as connected) but it applies nothing. Node expiry runs against
// a second control plane with a short --node-expiry.

interface NodeJson {
  id: string;
  appliedVersion: number;
  connected: boolean;
  stale: boolean;
  expiresAt?: string;
}

describe("history, diff, rollback and --wait with a managed relay", () => {
  let home: string;
  let cp: ControlPlaneProcess;
  let relay: PolymurProcess | undefined;
  let a: LineSink;
  let b: LineSink;
  let c: LineSink;
  const ctl = (...args: string[]) => runCtl(cp.url, args);

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), "polymur-history-it-"));
    cp = await ControlPlaneProcess.start(["--state-dir", join(home, "state")]);
    [a, b, c] = await Promise.all([LineSink.start(), LineSink.start(), LineSink.start()]);
  });
  afterAll(async () => {
    relay?.kill("SIGCONT");
    await relay?.stop();
    await Promise.all([a?.close(), b?.close(), c?.close(), cp?.stop()]);
    rmSync(home, { recursive: true, force: true });
  });

  it("lists the writes, diffs them, rolls back, and the relay forwards to the restored destination", async () => {
    // v1: destination A for every node; a managed relay starts on it.
    expect((await ctl("dest", "add", a.address, "--all")).code).toBe(0);
    relay = await PolymurProcess.relay(["--control-plane", cp.url, "--group", "web"], {
      POLYMUR_NODE_TOKEN: NODE_TOKEN,
    });
    await relay.waitForLog((l) => l.msg === "control plane: configuration version 1 applied");

    // v2 and v3: B for group web, then A removed; --wait returns once the relay applied each.
    let r = await ctl("dest", "add", b.address, "--group", "web", "--wait", "30s");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n")[0]).toBe(`added ${b.address} for group web (state version 2)`);
    expect(r.stdout).toMatch(/\nversion 2: 1 of 1 nodes \(group web\) applied in \d+\.\ds\n$/);
    r = await ctl("dest", "rm", a.address, "--wait", "--json");
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      version: 3,
      removed: a.address,
      rollout: { ok: true, version: 3, scope: "every node", nodes: 1, applied: 1, pending: [] },
    });
    await sendLines(relay.port, "web.before 1 1700000000\n");
    await b.waitForLines(1);
    expect(b.lines).toEqual(["web.before 1 1700000000"]);

    // history lists the three writes, newest first.
    r = await ctl("history", "--json");
    const h = JSON.parse(r.stdout);
    expect(
      h.entries.map((e: { version: number; kind: string; subject: string }) => [
        e.version,
        e.kind,
        e.subject,
      ]),
    ).toEqual([
      [3, "dest_remove", a.address],
      [2, "dest_add", b.address],
      [1, "dest_add", a.address],
    ]);
    r = await ctl("history");
    expect(r.stdout.split("\n")[1]).toMatch(
      new RegExp(`^3 +\\S+Z +dest rm ${a.address} --all +\\S+@\\S+ +\\S+$`),
    );

    // diff 1 3: A went, B came.
    r = await ctl("diff", "1", "3");
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n").slice(2)).toEqual([
      "@@ -1 +1 @@",
      `-dest ${a.address} --all`,
      `+dest ${b.address} --group web`,
      "",
    ]);

    // Rollback to 1 is compare-and-set: refused against a stale version, then made.
    r = await ctl("rollback", "1", "--expected-version", "2");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      "polymurctl rollback: state is at version 3, you expected 2; re-read and retry\n",
    );
    r = await ctl("rollback", "1", "--expected-version", "3", "--wait", "30s");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^rolled back to version 1: destinations, routing and rules as they were then \(state version 4\)\n(version 4: .*\n)*version 4: 1 of 1 nodes \(every node\) applied in \d+\.\ds\n$/,
    );
    // The relay forwards to A again, and no longer to B.
    await sendLines(relay.port, "web.after 2 1700000000\n");
    await a.waitForLines(1);
    expect(a.lines).toEqual(["web.after 2 1700000000"]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(b.lines).toEqual(["web.before 1 1700000000"]);
    r = await ctl("diff", "1", "4");
    expect(r).toMatchObject({ code: 0, stdout: "" });
    expect(JSON.parse((await ctl("history", "--json")).stdout).entries[0]).toMatchObject({
      version: 4,
      kind: "rollback",
      rollbackTo: 1,
      summary: "rollback to version 1 (API keys kept)",
    });
  });

  it("--wait fails (exit 4) naming a node that does not apply the change in time", async () => {
    const nodes = JSON.parse((await ctl("nodes", "ls", "--json")).stdout).nodes as NodeJson[];
    expect(nodes).toHaveLength(1);
    const id = nodes[0]!.id;
    // Stopped: its stream stays open (connected), but it reads and applies nothing.
    relay!.kill("SIGSTOP");
    try {
      const r = await ctl("dest", "add", c.address, "--all", "--wait", "3s");
      expect(r.code).toBe(4);
      expect(r.stdout.split("\n")[0]).toBe(`added ${c.address} for all nodes (state version 5)`);
      expect(r.stdout).toMatch(
        /\nversion 5: 0 of 1 nodes \(every node\) applied; \d+\.\ds passed\n$/,
      );
      expect(r.stderr).toMatch(
        new RegExp(
          `^polymurctl dest add: version 5 not applied within 3s by 1 of 1 nodes \\(every node\\): ${id} \\(group web, host \\S+, at version 4\\)\\n$`,
        ),
      );
    } finally {
      relay!.kill("SIGCONT");
    }
    // Running again, it catches up on its own.
    await waitFor(
      "the relay at version 5",
      async () => {
        const n = JSON.parse((await ctl("nodes", "ls", "--json")).stdout).nodes as NodeJson[];
        return n[0]?.appliedVersion === 5 ? n : undefined;
      },
      30_000,
    );
  });
});

describe("node records expire", () => {
  it("a relay that stopped is listed as stale, then removed and logged after --node-expiry", async () => {
    const home = mkdtempSync(join(tmpdir(), "polymur-expiry-it-"));
    const cp = await ControlPlaneProcess.start([
      "--state-dir",
      join(home, "state"),
      "--node-expiry",
      "3s",
    ]);
    const sink = await LineSink.start();
    let relay: PolymurProcess | undefined;
    try {
      expect((await runCtl(cp.url, ["dest", "add", sink.address, "--all"])).code).toBe(0);
      relay = await PolymurProcess.relay(["--control-plane", cp.url, "--group", "web"], {
        POLYMUR_NODE_TOKEN: NODE_TOKEN,
      });
      const nodes = async () =>
        JSON.parse((await runCtl(cp.url, ["nodes", "ls", "--json"])).stdout).nodes as NodeJson[];
      const [up] = await waitFor("the relay listed", async () => {
        const n = await nodes();
        return n.length === 1 && n[0]!.connected ? n : undefined;
      });
      expect(up).toMatchObject({ connected: true, stale: false });
      expect(up!.expiresAt).toBeUndefined();
      await relay.stop();
      relay = undefined;
      // Not connected any more: stale, with the time it expires.
      const [stale] = await waitFor("the relay stale", async () => {
        const n = await nodes();
        return n[0]?.stale === true ? n : undefined;
      });
      expect(Date.parse(stale!.expiresAt!)).toBeGreaterThan(Date.now() - 3000);
      const table = (await runCtl(cp.url, ["nodes", "ls"])).stdout;
      expect(table).toMatch(/ no \(stale, expires in \ds\) /);
      // Then gone from the list, removed from the store, and logged.
      await waitFor(
        "the record expired",
        async () => ((await nodes()).length === 0 ? true : undefined),
        15_000,
      );
      const logged = await cp.waitForLog(
        (l) => l.msg.startsWith("node record expired") && l["node"] === up!.id,
        15_000,
      );
      expect(logged).toMatchObject({ group: "web", expirySec: 3 });
    } finally {
      await relay?.stop();
      await sink.close();
      await cp.stop();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
