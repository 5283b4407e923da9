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
  runCtl,
} from "../fixtures/control-plane.ts";
import { LineSink } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";
import { waitFor } from "../fixtures/until.ts";

// A managed relay with --queue-dir (the queue directory is the node's own
// setting; destinations come from the control plane): its disk queue shows in
// the control plane's node records, through polymurctl nodes ls and status,
// and what it held reaches the destination once it is up.

const done: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (done.length > 0) await done.pop()!();
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "polymur-disk-fleet-"));
  done.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = await LineSink.start();
  const port = s.port;
  await s.close();
  return port;
}

describe("disk queues on a managed relay", () => {
  it("polymurctl nodes ls and status show the datapoints on disk; they arrive once the destination is up", async () => {
    const cp = await ControlPlaneProcess.start(["--state-dir", await tempDir()]);
    done.push(() => cp.stop());
    const admin = adminClient(cp.url);
    const port = await deadPort();
    const dest = `127.0.0.1:${port}`;
    await retrying(
      () =>
        admin.addDestination({
          destination: { spec: dest, scope: { target: { case: "all", value: true } } },
        }),
      10_000,
    );
    const relay = await PolymurProcess.relay(
      ["--control-plane", cp.url, "--group", "edge", "--queue-dir", await tempDir()],
      { POLYMUR_NODE_TOKEN: NODE_TOKEN },
    );
    done.push(() => relay.stop());
    await waitFor("the destination configured and failing", async () => {
      const d = (await relay.stats()).destinations.find((x) => x.spec === dest);
      return d !== undefined && d.failures > 0 ? d : undefined;
    });
    const n = 2_000;
    const lines = Array.from({ length: n }, (_, i) => `fleet.disk.m${i % 20} ${i} 1700000000`);
    const sender = net.connect(relay.port, "127.0.0.1");
    await new Promise((r) => sender.once("connect", r));
    await new Promise<void>((r) => sender.end(`${lines.join("\n")}\n`, () => r()));
    await waitFor("every datapoint on disk", async () => {
      const d = (await relay.stats()).destinations.find((x) => x.spec === dest);
      return d?.disk?.lines === n ? d : undefined;
    });

    // The node's next status report carries it (every 5 s).
    const listed = await waitFor(
      "polymurctl nodes ls --json shows the disk queue",
      async () => {
        const r = await runCtl(cp.url, ["nodes", "ls", "--json"]);
        if (r.code !== 0) return undefined;
        const { nodes } = JSON.parse(r.stdout) as {
          nodes: Array<{
            group: string;
            destinations: Array<{ spec: string; diskDatapoints: number }>;
          }>;
        };
        const d = nodes.find((x) => x.group === "edge")?.destinations.find((x) => x.spec === dest);
        return d !== undefined && Number(d.diskDatapoints) === n ? d : undefined;
      },
      20_000,
      200,
    );
    expect(Number(listed.diskDatapoints)).toBe(n);
    const table = await runCtl(cp.url, ["nodes", "ls"]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/DISK/);
    expect(table.stdout).toContain(dest);
    const status = await runCtl(cp.url, ["status"]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/disk queues/);

    const sink = await LineSink.start(port);
    done.push(() => sink.close());
    await waitFor(
      "every datapoint delivered",
      () => (sink.lines.length >= n ? true : undefined),
      20_000,
    );
    expect(new Set(sink.lines)).toEqual(new Set(lines));
    expect(sink.lines).toHaveLength(n);
  });
});
