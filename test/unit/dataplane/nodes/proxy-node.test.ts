import fs, { mkdtempSync, rmSync } from "node:fs";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it, vi } from "vitest";
import { parseArgv, resolveOptions } from "../../../../common/options.ts";
import { type ProxyExit, ProxyNode } from "../../../../dataplane/nodes/proxy-node.ts";
import { buildProxyOptions, PROXY_OPTIONS } from "../../../../dataplane/nodes/proxy-options.ts";
import { SegmentSpool } from "../../../../dataplane/spool/segment-spool.ts";
import { IngestService } from "../../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { type CapturedLine, captureLog } from "../../../fixtures/capture-log.ts";
import { freePort, sendLines } from "../../../fixtures/line-sink.ts";
import { closeServer, listenLocal } from "../../../fixtures/local-server.ts";
import { until } from "../../../fixtures/until.ts";

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tmp(): string {
  const d = mkdtempSync(path.join(tmpdir(), "polymur-proxy-node-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A gateway that refuses every stream as an unknown API key, as the real one does. */
async function refusingGateway(port: number): Promise<void> {
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer(
    connectNodeAdapter({
      routes: (router) => {
        router.service(IngestService, {
          stream: () => {
            throw new ConnectError("unknown API key", Code.Unauthenticated);
          },
        });
      },
    }),
  );
  server.on("session", (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on("error", () => {});
    s.once("close", () => sessions.delete(s));
  });
  await listenLocal(server, port);
  cleanups.push(async () => {
    const closed = closeServer(server);
    for (const s of sessions) s.destroy();
    await closed;
  });
}

function proxy(gateway: string, args: string[]): { node: ProxyNode; logs: CapturedLine[] } {
  const argv = [
    "--gateway",
    gateway,
    "--api-key",
    "not-a-known-key",
    "--listen-addr",
    "127.0.0.1:0",
    "--stat-addr",
    "",
    "--compression",
    "none",
    "--backoff-min",
    "0.01",
    "--backoff-max",
    "0.05",
    // One process: these tests read the pipeline's counters as they change.
    "--workers",
    "1",
    ...args,
  ];
  const { flags } = parseArgv(PROXY_OPTIONS, argv);
  const options = buildProxyOptions(resolveOptions(PROXY_OPTIONS, flags, {}, new Map()));
  const { log, lines } = captureLog();
  const node = new ProxyNode(options, log);
  cleanups.push(() => node.close());
  return { node, logs: lines };
}

function numbered(tag: string, from: number, n: number): string {
  let s = "";
  for (let i = from; i < from + n; i++) s += `${tag}.m${i % 10} ${i} 1700000000\n`;
  return s;
}

/** Every line kept in a spool directory, in seq order (the proxy must be closed). */
async function spooledLines(dir: string): Promise<string> {
  const { spool, recovered, losses } = SegmentSpool.open(dir, { log: captureLog().log });
  try {
    expect(losses).toEqual([]);
    let text = "";
    for (const r of recovered) text += (await spool.read(r.loc, r.seq, r.size)).toString();
    return text;
  } finally {
    spool.close();
  }
}

/**
 * Lines wait in the batcher (a long --batch-delay) while the gateway is
 * down; it then comes up and refuses the key. The proxy closes, as `polymur
 * proxy` does on that refusal, from its onFatal callback.
 */
async function refusedWithLinesInTheBatcher(
  args: string[],
  n: number,
): Promise<{ node: ProxyNode; logs: CapturedLine[]; exit: ProxyExit; text: string }> {
  const port = await freePort();
  const { node, logs } = proxy(`http://127.0.0.1:${port}`, ["--batch-delay", "60", ...args]);
  const exited = new Promise<ProxyExit>((resolve, reject) => {
    node.onFatal(() => {
      node.close().then(resolve, reject);
    });
  });
  await node.start();
  const text = numbered("refused", 0, n);
  await sendLines(node.ports.tcp, text);
  await until("lines read", () => node.pipelineStats().received === n);
  expect(node.stats().pendingLines).toBe(0); // all in the batcher, none in a batch yet
  await refusingGateway(port);
  return { node, logs, exit: await exited, text };
}

describe("ProxyNode", () => {
  it("refused by its gateway: flushes its batcher into the spool before it exits", async () => {
    const dir = tmp();
    const n = 300;
    const { node, logs, exit, text } = await refusedWithLinesInTheBatcher(["--spool-dir", dir], n);
    expect(exit).toEqual({ pendingBatches: 1, pendingLines: n, keptLines: n, lostLines: 0 });
    expect(node.stats().lost).toEqual({
      spool_corrupt: 0,
      spool_unreadable: 0,
      exit_without_spool: 0,
      exit_spool_append_failed: 0,
      worker_died: 0,
    });
    const last = logs.at(-1)!;
    expect(last.msg).toBe(
      `shutdown complete: ${n} datapoints not yet acknowledged are kept in the spool for the next start`,
    );
    expect(await spooledLines(dir)).toBe(text);
  });

  it("refused without a spool: what its batcher held is counted lost, and the log says so", async () => {
    const n = 250;
    const { node, logs, exit } = await refusedWithLinesInTheBatcher([], n);
    expect(exit).toEqual({ pendingBatches: 1, pendingLines: n, keptLines: 0, lostLines: n });
    expect(node.stats().lost.exit_without_spool).toBe(n);
    const last = logs.at(-1)!;
    expect(last).toMatchObject({ level: 50, reason: "exit_without_spool", lostLines: n });
    expect(last.msg).toContain(`${n} datapoints were not acknowledged by a gateway and are lost`);
  });

  it("a spool append failure: the exit log tells kept from lost, and counts the lost", async () => {
    const dir = tmp();
    const port = await freePort(); // no gateway: nothing is acknowledged
    const { node, logs } = proxy(`http://127.0.0.1:${port}`, [
      "--spool-dir",
      dir,
      "--batch-delay",
      "0.02",
    ]);
    await node.start();
    const first = numbered("kept", 0, 100);
    await sendLines(node.ports.tcp, first);
    await until("first batch made", () => node.stats().pendingLines === 100);

    vi.spyOn(fs, "writevSync").mockImplementation(() => {
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    });
    await sendLines(node.ports.tcp, numbered("lost", 0, 40));
    await until("second batch made", () => node.stats().pendingLines === 140);
    expect(node.stats()).toMatchObject({ spoolAppendFailures: 1, unspooledLines: 40 });
    expect(logs.some((l) => l.level === 50 && l.msg.startsWith("spool: append failed"))).toBe(true);

    const exit = await node.close();
    expect(exit).toEqual({ pendingBatches: 2, pendingLines: 140, keptLines: 100, lostLines: 40 });
    expect(node.stats().lost).toMatchObject({
      exit_spool_append_failed: 40,
      exit_without_spool: 0,
    });
    const last = logs.at(-1)!;
    expect(last).toMatchObject({
      level: 50,
      reason: "exit_spool_append_failed",
      keptLines: 100,
      lostLines: 40,
    });
    expect(last.msg).toContain("40 datapoints in 1 batches were held in memory only");
    expect(last.msg).toContain("100 datapoints not yet acknowledged are kept in the spool");
    vi.restoreAllMocks();
    expect(await spooledLines(dir)).toBe(first);
  });
});
