import { describe, expect, it, vi } from "vitest";
import { normalizeWait, waitTimeoutMs } from "../../../../../cli/polymurctl/client/rollout.ts";
import { main } from "../../../../../cli/polymurctl/main.ts";
import type { NodeSubscription } from "../../../../../controlplane/control-store.ts";
import { cliControlPlane } from "../control-plane.ts";
import { captureIO } from "../io.ts";

// polymurctl history, diff, rollback and --wait against a control plane in this
// process (the real ControlServer over a FileStore). Node records are written to
// its store as a replica writes a node's subscription; the real relay is in
// test/integration/controlplane-history.test.ts.

const cp = cliControlPlane("history");

async function ctl(...argv: string[]) {
  vi.stubEnv("POLYMUR_ADMIN_TOKEN", cp.admin);
  vi.stubEnv("POLYMUR_ACTOR", "tester@unit");
  const c = captureIO();
  const code = await main([...argv, "--server", cp.url], c.io);
  return { code, out: c.stdout(), err: c.stderr() };
}

function subscribed(nodeId: string, group: string, appliedVersion: number): NodeSubscription {
  const now = Date.now();
  return {
    nodeId,
    group,
    role: "relay",
    hostname: `${nodeId}.example`,
    appliedVersion,
    replica: "r1",
    streamId: `stream-${nodeId}`,
    open: true,
    sinceMs: now,
    lastSeenMs: now,
  };
}

describe("--wait's argument", () => {
  it("takes an optional duration; a number after --wait is its timeout", () => {
    expect(normalizeWait(["add", "1.2.3.4:2003", "--wait"])).toEqual([
      "add",
      "1.2.3.4:2003",
      "--wait=",
    ]);
    expect(normalizeWait(["--wait", "30s", "x"])).toEqual(["--wait=30s", "x"]);
    expect(normalizeWait(["--wait", "--json"])).toEqual(["--wait=", "--json"]);
    expect(normalizeWait(["--", "--wait"])).toEqual(["--", "--wait"]);
    expect(waitTimeoutMs(undefined)).toBeUndefined();
    expect(waitTimeoutMs("")).toBe(60_000);
    expect(waitTimeoutMs("2m")).toBe(120_000);
    expect(waitTimeoutMs("1.5")).toBe(1500);
    expect(() => waitTimeoutMs("soon")).toThrow(
      '--wait takes a timeout such as 30, 30s or 2m; got "soon"',
    );
    expect(() => waitTimeoutMs("0")).toThrow(/--wait takes a timeout/);
  });
});

describe("polymurctl history, diff and rollback", () => {
  it("history lists the writes, diff shows them, rollback restores a previous version", async () => {
    expect((await ctl("dest", "add", "10.0.0.1:2003", "--all")).code).toBe(0);
    expect((await ctl("dest", "add", "10.0.0.2:2003", "--group", "web")).code).toBe(0);
    expect((await ctl("dest", "rm", "10.0.0.1:2003")).code).toBe(0);
    let r = await ctl("history");
    expect(r.code).toBe(0);
    const rows = r.out.split("\n");
    expect(rows[0]).toMatch(/^VERSION +TIME +CHANGE +BY +REPLICA$/);
    expect(rows.slice(1, 4).map((l) => l.split(/ {2,}/))).toEqual([
      [
        "3",
        expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        "dest rm 10.0.0.1:2003 --all",
        "tester@unit",
        "r1",
      ],
      ["2", expect.any(String), "dest add 10.0.0.2:2003 --group web", "tester@unit", "r1"],
      ["1", expect.any(String), "dest add 10.0.0.1:2003 --all", "tester@unit", "r1"],
    ]);
    expect(rows[4]).toBe("(state version 3; the last 100 versions are kept)");
    r = await ctl("history", "--group", "db", "--json");
    expect(JSON.parse(r.out)).toMatchObject({
      version: 3,
      keptVersions: 100,
      group: "db",
      entries: [
        { version: 3, kind: "dest_remove", scopes: [{ all: true }], subject: "10.0.0.1:2003" },
        { version: 1, kind: "dest_add", actor: "tester@unit", replica: "r1" },
      ],
    });

    r = await ctl("diff", "1", "3");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(
      /^--- version 1 \(\S+, dest add 10\.0\.0\.1:2003 --all, by tester@unit\)\n\+\+\+ version 3 \(\S+, dest rm 10\.0\.0\.1:2003 --all, by tester@unit\)\n@@ -1 \+1 @@\n-dest 10\.0\.0\.1:2003 --all\n\+dest 10\.0\.0\.2:2003 --group web\n$/,
    );
    // V2 defaults to the current version; no change is exit 0 and no output.
    expect(await ctl("diff", "3")).toEqual({ code: 0, out: "", err: "" });
    r = await ctl("history", "show", "2");
    expect(r.out).toMatch(
      /^# version 2 \(.*\)\ndest 10\.0\.0\.1:2003 --all\ndest 10\.0\.0\.2:2003 --group web\n$/,
    );

    // Compare-and-set: the state is at 3, not 2.
    r = await ctl("rollback", "1", "--expected-version", "2");
    expect(r).toEqual({
      code: 1,
      out: "",
      err: "polymurctl rollback: state is at version 3, you expected 2; re-read and retry\n",
    });
    r = await ctl("rollback", "1", "--expected-version", "3");
    expect(r).toEqual({
      code: 0,
      out: "rolled back to version 1: destinations, routing and rules as they were then (state version 4)\n",
      err: "",
    });
    r = await ctl("dest", "ls", "--json");
    expect(JSON.parse(r.out).destinations).toEqual([
      { spec: "10.0.0.1:2003", scope: { all: true } },
    ]);
    expect(JSON.parse((await ctl("history", "--json")).out).entries[0]).toMatchObject({
      version: 4,
      kind: "rollback",
      rollbackTo: 1,
      withKeys: false,
      summary: "rollback to version 1 (API keys kept)",
    });
    // diff exits 2 (not 1, which is "changes") when a version is not kept.
    r = await ctl("diff", "99");
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^polymurctl diff: version 99 is not in the history/);
    expect((await ctl("rollback")).code).toBe(2);
    expect((await ctl("rollback", "x")).err).toMatch(/a version is a whole number; got "x"/);
  });

  it("rollback says which API keys it left as they are, or restored with --with-keys", async () => {
    const before = JSON.parse((await ctl("key", "create", "k1", "--json")).out).version;
    await ctl("key", "rotate", "k1");
    let r = await ctl("rollback", String(before));
    expect(r.out).toMatch(
      /\nAPI keys left as they are: k1 differs from version \d+'s \(--with-keys restores them too\)\n$/,
    );
    r = await ctl("rollback", String(before), "--with-keys", "--json");
    expect(JSON.parse(r.out)).toMatchObject({ withKeys: true, keysDiffering: ["k1"] });
  });
});

describe("--wait", () => {
  it("waits for the connected nodes of the group; exit 4 naming those that did not apply", async () => {
    // Nobody connected in group solo: nothing to wait for.
    let r = await ctl("dest", "add", "10.0.9.1:2003", "--group", "solo", "--wait");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/\nversion \d+: no connected nodes \(group solo\) to wait for\n$/);

    const current = Number(JSON.parse((await ctl("dest", "ls", "--json")).out).version);
    await cp.store.putSubscription(subscribed("fast-1", "wt", current));
    await cp.store.putSubscription(subscribed("slow-1", "wt", current));
    // Another group's node, and a node of the group that is not connected: not waited for.
    await cp.store.putSubscription(subscribed("other-1", "elsewhere", 0));
    await cp.store.putSubscription({ ...subscribed("gone-1", "wt", 0), open: false });
    const next = current + 1;
    // fast-1 applies the next version as soon as it exists; slow-1 never does.
    const applying = setInterval(() => {
      void cp.store.putSubscription(subscribed("fast-1", "wt", next));
    }, 50);
    try {
      r = await ctl("dest", "add", "10.0.9.2:2003", "--group", "wt", "--wait", "1.5s");
    } finally {
      clearInterval(applying);
    }
    expect(r.code).toBe(4);
    expect(r.out.split("\n")[0]).toBe(`added 10.0.9.2:2003 for group wt (state version ${next})`);
    // Not a terminal: plain lines, one each time the count changes, then the outcome.
    expect(r.out).toMatch(
      new RegExp(
        `\\nversion ${next}: 1 of 2 nodes \\(group wt\\) applied; \\d+\\.\\ds passed; 1 not connected, not waited for\\n$`,
      ),
    );
    expect(r.err).toBe(
      `polymurctl dest add: version ${next} not applied within 1.5s by 1 of 2 nodes (group wt): slow-1 (group wt, host slow-1.example, at version ${current})\n`,
    );

    // slow-1 catches up: the next change's wait succeeds, with --json's rollout.
    await cp.store.putSubscription(subscribed("slow-1", "wt", next + 1));
    await cp.store.putSubscription(subscribed("fast-1", "wt", next + 1));
    r = await ctl("route", "set", "--group", "wt", "broadcast", "--wait", "5s", "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({
      version: next + 1,
      rollout: { ok: true, nodes: 2, applied: 2, pending: [], notConnected: 1 },
    });
  });

  it("is refused where nothing changes, before anything is done", async () => {
    const r = await ctl("dest", "ls", "--wait");
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      "polymurctl dest ls: --wait is for changes (dest add, dest rm), not dest ls\n",
    );
    const bad = await ctl("dest", "add", "10.0.9.9:2003", "--all", "--wait=soon");
    expect(bad.code).toBe(2);
    expect(JSON.parse((await ctl("dest", "ls", "--json")).out).destinations).not.toContainEqual({
      spec: "10.0.9.9:2003",
      scope: { all: true },
    });
  });
});
