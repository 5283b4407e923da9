import { describe, expect, it, vi } from "vitest";
import { statusCommand } from "../../../../../cli/polymurctl/commands/status.ts";
import { cliControlPlane } from "../control-plane.ts";
import { captureIO } from "../io.ts";

// polymurctl status against a control plane in this process: its exit
// statuses are those of docs/control-plane.md (1 only when not SERVING).

const cp = cliControlPlane("status");
const ADMIN = cp.admin;

async function status(token: string, ...argv: string[]) {
  vi.stubEnv("POLYMUR_ADMIN_TOKEN", token);
  const c = captureIO();
  const code = await statusCommand.run(["--server", cp.url, ...argv], c.io);
  return { code, out: c.stdout(), err: c.stderr() };
}

describe("polymurctl status", () => {
  it("exits 0 with the right credential, and without one (health only)", async () => {
    const ok = await status(ADMIN);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^control plane {2}http:\/\/127\.0\.0\.1:\d+ {2}SERVING\nstate/);
    const none = await status("");
    expect(none.code).toBe(0);
    expect(none.out).toContain("(set POLYMUR_ADMIN_TOKEN for the state and the nodes)");
  });

  it("a refused credential on a SERVING control plane: the health, the reason, exit 2 (not 1)", async () => {
    const r = await status("not-the-admin-token");
    expect(r.code).toBe(2);
    expect(r.out).toBe(`control plane  ${cp.url}  SERVING\n`);
    expect(r.err).toMatch(/^polymurctl status: .*\(polymurctl sends POLYMUR_ADMIN_TOKEN/);
    const j = await status("not-the-admin-token", "--json");
    expect(j.code).toBe(2);
    expect(JSON.parse(j.out)).toMatchObject({ error: { exit: 2, code: "unauthenticated" } });
  });

  it("datapoints in the nodes' disk queues: one more line, and diskQueues in --json; none without", async () => {
    const before = await status(ADMIN, "--json");
    expect(JSON.parse(before.out)).not.toHaveProperty("diskQueues");
    const report = (nodeId: string, disk: Array<[number, number, number]>) =>
      cp.store.putReport({
        nodeId,
        group: "",
        role: "relay",
        hostname: nodeId,
        appliedVersion: 0,
        counters: { received: 0, forwarded: 0, dropped: 0, rejected: 0, connections: 0 },
        destinations: disk.map(([diskDatapoints, diskBytes, oldestQueuedSeconds], i) => ({
          spec: `10.0.0.${i}:2003`,
          state: "backoff",
          forwarded: 0,
          dropped: 0,
          queued: diskDatapoints,
          queuedBytes: 0,
          resent: 0,
          diskDatapoints,
          diskBytes,
          oldestQueuedSeconds,
        })),
        lastSeenMs: Date.now(),
      });
    // Empty segments on disk are no datapoints waiting: nothing shown.
    await report("n0", [[0, 4096, 0]]);
    const empty = await status(ADMIN);
    expect(empty.out).not.toContain("disk queues");
    await report("n1", [
      [1000, 1_048_576, 30],
      [1, 4096, 95],
    ]);
    await report("n2", [[200, 65_536, 10]]);
    const r = await status(ADMIN);
    expect(r.code).toBe(0);
    expect(r.out.split("\n").slice(3)).toEqual([
      "disk queues    1201 datapoints (1.1 MiB) waiting on disk, at 3 destinations of 2 nodes; oldest 95s",
      "",
    ]);
    const j = await status(ADMIN, "--json");
    expect(JSON.parse(j.out)).toMatchObject({
      nodes: { connected: 0, current: 0, behind: 0, disconnected: 3 },
      diskQueues: {
        datapoints: 1201,
        bytes: 1_118_208,
        destinations: 3,
        nodes: 2,
        oldestQueuedSeconds: 95,
      },
    });
  });
});
