// A gateway node in process: its keys file read at start, again when it
// changes and on SIGHUP (reloadKeys), and the outcome in /stats.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseArgv, resolveOptions } from "../../../../common/options.ts";
import { NO_KEYS_LINE } from "../../../../dataplane/link/gateway/api-keys.ts";
import { GatewayNode } from "../../../../dataplane/nodes/gateway-node.ts";
import {
  buildGatewayOptions,
  GATEWAY_OPTIONS,
} from "../../../../dataplane/nodes/gateway-options.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { LineSink } from "../../../fixtures/line-sink.ts";
import { until } from "../../../fixtures/until.ts";

const cleanup: Array<() => Promise<unknown> | undefined> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function gatewayNode(keys: string) {
  const dir = mkdtempSync(path.join(tmpdir(), "polymur-gwnode-"));
  cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "keys");
  writeFileSync(file, keys);
  const out = await LineSink.start();
  cleanup.push(() => out.close());
  const argv = [
    "--keys-file",
    file,
    "--listen-addr",
    "127.0.0.1:0",
    "--stat-addr",
    "127.0.0.1:0",
    "--metrics-flush",
    "0",
    "--shutdown-timeout",
    "1",
    "--destinations",
    out.address,
  ];
  const { flags } = parseArgv(GATEWAY_OPTIONS, argv);
  const o = buildGatewayOptions(resolveOptions(GATEWAY_OPTIONS, flags, {}, new Map()));
  const { log, lines } = captureLog();
  const node = new GatewayNode(o, log);
  await node.start();
  cleanup.push(() => node.shutdown());
  const stats = async (): Promise<{
    keysReloads: { applied: number; failed: Record<string, number> };
  }> => {
    const res = await fetch(`http://127.0.0.1:${node.ports.stats}/stats`);
    return ((await res.json()) as { gateway: never }).gateway;
  };
  return { node, file, lines, stats };
}

describe("GatewayNode keys file", () => {
  it("SIGHUP (reloadKeys) on an emptied file keeps the keys, says why, and /stats counts it", async () => {
    const g = await gatewayNode("tenant-a secret-a\ntenant-b secret-b\n");
    writeFileSync(g.file, "");
    await g.node.reloadKeys();
    expect(g.node.keys.names()).toEqual(["tenant-a", "tenant-b"]);
    expect(g.lines.find((l) => l.msg.startsWith("API keys file not applied"))).toMatchObject({
      level: 40,
      reason: "empty",
      file: g.file,
    });
    // (The poll may have seen the change too: each read is counted.)
    const s = await g.stats();
    expect(s.keysReloads.applied).toBe(0);
    expect(s.keysReloads.failed["empty"]).toBeGreaterThanOrEqual(1);
    writeFileSync(g.file, `${NO_KEYS_LINE}\n`);
    await g.node.reloadKeys();
    expect(g.node.keys.size).toBe(0);
    expect((await g.stats()).keysReloads.applied).toBeGreaterThanOrEqual(1);
  });

  it("a changed file is picked up without a signal; its added key is logged by name", async () => {
    const g = await gatewayNode("tenant-a secret-a\n");
    writeFileSync(g.file, "tenant-a secret-a\ntenant-c secret-c\n");
    await until("the reload", () => g.node.keys.size === 2, 15_000);
    expect(g.lines.find((l) => l.msg === "API keys reloaded")).toMatchObject({
      added: ["tenant-c"],
      removed: [],
      rotated: [],
    });
    expect(JSON.stringify(g.lines)).not.toContain("secret-c");
  });

  it("stops polling the file on shutdown", async () => {
    const g = await gatewayNode("tenant-a secret-a\n");
    await g.node.shutdown();
    cleanup.pop(); // already shut down
    writeFileSync(g.file, "tenant-a secret-a\ntenant-d secret-d\n");
    await g.node.reloadKeys(); // a SIGHUP racing the shutdown reads nothing new in
    expect(g.node.keys.names()).toEqual(["tenant-a"]);
  });
});
