// A proxy of several processes (--workers, default one per core), with a real
// gateway and a real destination: sender connections spread across the
// processes, each with its own stream and proxy id, every datapoint arrives
// once and in its connection's order; each process spools in its own
// directory, which a restart resumes, with fewer processes too (the others'
// spools are taken over); /stats sums the processes; a killed worker is
// restarted and what it held in memory is counted as lost (worker_died).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ProxyStats } from "../../dataplane/link/proxy/proxy-stats.ts";
import type { PipelineStats } from "../../dataplane/observe/pipeline-stats.ts";
import { freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";
import { parseExposition } from "../fixtures/prometheus-exposition.ts";
import { startGateway, TempDir, tally } from "../fixtures/proxy-gateway.ts";
import { waitFor } from "../fixtures/until.ts";

const KEY = "site-workers";
const SECRET = "s3cret-site-workers-0123456789";
/** The default worker count (one per core); where there is one core, 2 are asked for. */
const N = Math.max(2, availableParallelism());
const WORKERS = availableParallelism() >= 2 ? [] : ["--workers", "2"];
/** Sender connections: enough that SO_REUSEPORT puts some on every process. */
const CONNECTIONS = 24;
const PER = 500;
const TOTAL = CONNECTIONS * PER;

const procs: PolymurProcess[] = [];
const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * `polymur proxy` on 127.0.0.1 with the default worker count unless `args`
 * set one (started here rather than by the shared fixture, whose defaults
 * may pin a worker count).
 */
function startProxy(gateway: string, apiKey: string, args: string[]): Promise<PolymurProcess> {
  return PolymurProcess.role(
    "proxy",
    [
      "--listen-addr",
      "127.0.0.1:0",
      "--stat-addr",
      "127.0.0.1:0",
      "--gateway",
      gateway,
      "--backoff-max",
      "0.5",
      "--shutdown-timeout",
      "10",
      ...args,
    ],
    { POLYMUR_API_KEY: apiKey, POLYMUR_WORKERS: undefined },
  );
}

type Stats = PipelineStats & { proxy: ProxyStats };

async function stats(p: PolymurProcess): Promise<Stats> {
  const res = await fetch(`http://127.0.0.1:${p.statsPort}/stats`);
  return (await res.json()) as Stats;
}

function statsUntil(p: PolymurProcess, pred: (s: Stats) => boolean, ms = 30_000): Promise<Stats> {
  let last: Stats | undefined;
  return waitFor(
    "proxy stats condition",
    async () => {
      last = await stats(p);
      return pred(last) ? last : undefined;
    },
    ms,
    100,
  ).catch(() => {
    throw new Error(`proxy stats condition not met: ${JSON.stringify(last?.proxy)}`);
  });
}

/** Connection c sends datapoints c*PER … (c+1)*PER-1 of `tag`, in order, each on its own connection. */
async function sendAll(port: number, tag: string): Promise<void> {
  await Promise.all(
    Array.from({ length: CONNECTIONS }, (_, c) => {
      let text = "";
      for (let i = c * PER; i < (c + 1) * PER; i++) text += `${tag}.m${i % 50} ${i} 1700000000\n`;
      return sendLines(port, text);
    }),
  );
}

/** Every datapoint of `tag` arrived exactly once, and each connection's in the order it sent them. */
async function expectExactlyOnceInOrder(out: LineSink, tag: string): Promise<void> {
  const t = await waitFor(
    "every datapoint delivered",
    () => {
      const r = tally(out, tag, TOTAL);
      return r.distinct >= TOTAL ? r : undefined;
    },
    60_000,
    50,
  );
  // Duplicates would arrive with or after the last original: give them a moment.
  await new Promise((r) => setTimeout(r, 500));
  expect(tally(out, tag, TOTAL)).toEqual({ distinct: TOTAL, duplicates: 0, missing: [] });
  expect(t.duplicates).toBe(0);
  const last = new Map<number, number>();
  let outOfOrder = 0;
  for (const line of out.lines) {
    if (!line.startsWith(`${tag}.m`)) continue;
    const v = Number(line.split(" ")[1]);
    const c = Math.floor(v / PER);
    if ((last.get(c) ?? -1) > v) outOfOrder++;
    last.set(c, v);
  }
  expect(outOfOrder).toBe(0);
}

async function gateway(out: LineSink, t: TempDir, args: string[] = []): Promise<PolymurProcess> {
  const gw = await startGateway([
    "--keys-file",
    t.file("keys", `${KEY} ${SECRET}\n`),
    "--destinations",
    out.address,
    ...args,
  ]);
  procs.push(gw);
  return gw;
}

function segments(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => /^seg-\d+\.spool$/.test(f));
  } catch {
    return [];
  }
}

describe("proxy with several processes", () => {
  it("spreads connections over its processes: every datapoint once, in order, /stats summed", async () => {
    const t = new TempDir();
    cleanups.push(() => t.close());
    const out = await LineSink.start();
    cleanups.push(() => out.close());
    const gw = await gateway(out, t);
    const px = await startProxy(`http://127.0.0.1:${gw.port}`, SECRET, [
      ...WORKERS,
      "--batch-delay",
      "0.05",
    ]);
    procs.unshift(px);
    expect(px.logs.find((l) => l.msg === "listening")).toMatchObject({ workers: N });

    await sendAll(px.port, "spread");
    await expectExactlyOnceInOrder(out, "spread");

    // Every process's report is in: /stats sums them.
    const s = await statsUntil(
      px,
      (x) =>
        x.proxy.link.linesAcked === TOTAL &&
        x.received === TOTAL &&
        x.proxy.processes.length === N &&
        x.proxy.processes.reduce((n, p) => n + p.linesAcked, 0) === TOTAL,
    );
    const rows = s.proxy.processes;
    expect(rows.map((p) => p.index)).toEqual(Array.from({ length: N }, (_, i) => i));
    // Each process carried some, under its own proxy id (process k: process 0's, .w<k>).
    for (const p of rows) expect(p.linesAcked, `process ${p.index}`).toBeGreaterThan(0);
    const id = s.proxy.proxyId;
    expect(rows.map((p) => p.proxyId)).toEqual(
      rows.map((p) => (p.index === 0 ? id : `${id}.w${p.index}`)),
    );
    expect(new Set(rows.map((p) => p.pid)).size).toBe(N);
    expect(s.proxy.linksOpen).toBe(N);
    expect(s.proxy.link.state).toBe("open");
    expect(s.proxy.pendingLines).toBe(0);
    expect(s.proxy.batches).toBe(rows.reduce((n, p) => n + p.batches, 0));
    expect(s.connectionsTotal).toBe(CONNECTIONS);

    // /metrics shows the same sums.
    const res = await fetch(`http://127.0.0.1:${px.statsPort}/metrics`);
    const m = parseExposition(await res.text());
    expect(m.get("polymur_proxy_lines_acked_total")?.samples[0]?.value).toBe(TOTAL);
    expect(m.get("polymur_proxy_links_open")?.samples[0]?.value).toBe(N);
    expect(m.get("polymur_proxy_processes")?.samples[0]?.value).toBe(N);
    expect(m.get("polymur_proxy_batches_total")?.samples[0]?.value).toBe(s.proxy.batches);

    // The unmodified gateway took each process as a proxy of its own.
    const gs = (await (await fetch(`http://127.0.0.1:${gw.statsPort}/stats`)).json()) as Record<
      string,
      unknown
    >;
    expect(JSON.stringify(gs)).not.toContain('"proxy_id_in_use":1');
  });

  for (const restartWith of [N, 1]) {
    it(`spools per process while the gateway is down, and a restart with ${restartWith === N ? "as many" : "one"} process${restartWith === 1 ? "" : "es"} sends everything once`, async () => {
      const t = new TempDir();
      cleanups.push(() => t.close());
      const out = await LineSink.start();
      cleanups.push(() => out.close());
      const spool = t.path("spool");
      const gwPort = await freePort(); // nothing listens there yet
      const url = `http://127.0.0.1:${gwPort}`;
      const px = await startProxy(url, SECRET, [
        ...WORKERS,
        "--spool-dir",
        spool,
        "--batch-delay",
        "0.05",
      ]);
      procs.unshift(px);
      await sendAll(px.port, "spooled");
      const s = await statsUntil(
        px,
        (x) => x.proxy.processes.length === N && x.proxy.pendingLines === TOTAL,
      );
      // Each process holds some, in its own directory: process 0 in --spool-dir itself, k in p<k>.
      for (const p of s.proxy.processes)
        expect(p.pendingLines, `process ${p.index}`).toBeGreaterThan(0);
      expect(segments(spool).length).toBeGreaterThan(0);
      for (let k = 1; k < N; k++) {
        const dir = path.join(spool, `p${k}`);
        expect(segments(dir).length, dir).toBeGreaterThan(0);
        expect(readFileSync(path.join(dir, "proxy-id"), "utf8").trim()).toBe(
          `${s.proxy.proxyId}.w${k}`,
        );
      }
      const ids = s.proxy.processes.map((p) => p.proxyId);

      // Stopped: everything stays in the spools.
      procs.shift();
      await px.stop();
      const stopped = px.logs.at(-1)!;
      expect(stopped).toMatchObject({ keptLines: TOTAL, lostLines: 0 });

      // The gateway comes back; the proxy restarts.
      await gateway(out, t, ["--listen-addr", `127.0.0.1:${gwPort}`]);
      const again = await startProxy(url, SECRET, [
        ...(restartWith === N ? WORKERS : ["--workers", "1"]),
        "--spool-dir",
        spool,
      ]);
      procs.unshift(again);
      await expectExactlyOnceInOrder(out, "spooled");
      const after = await statsUntil(
        again,
        (x) => x.proxy.pendingLines === 0 && x.proxy.link.linesAcked === TOTAL,
      );
      expect(after.proxy.processes.length).toBe(restartWith);
      if (restartWith === N) {
        // Each process resumed its own spool, under the same proxy id.
        expect(after.proxy.processes.map((p) => p.proxyId)).toEqual(ids);
        for (const p of after.proxy.processes) expect(p.linesAcked).toBeGreaterThan(0);
      } else {
        // Process 0 sent its own spool and took over the others', each under its own id.
        expect(after.proxy.proxyId).toBe(ids[0]);
        for (let k = 1; k < N; k++) {
          expect(
            again.logs.some(
              (l) => l.msg.startsWith("spool: taking over") && l["proxyId"] === `${ids[0]}.w${k}`,
            ),
          ).toBe(true);
          await waitFor(
            "taken-over spool removed",
            () => (existsSync(path.join(spool, `p${k}`)) ? undefined : true),
            10_000,
            50,
          );
        }
      }
      expect(Object.values(after.proxy.lost).every((n) => n === 0)).toBe(true);
    });
  }

  it("restarts a worker that dies, counting what it held in memory as lost (worker_died)", async () => {
    const t = new TempDir();
    cleanups.push(() => t.close());
    const gwPort = await freePort(); // no gateway: everything stays pending
    const px = await startProxy(`http://127.0.0.1:${gwPort}`, SECRET, [
      ...WORKERS,
      "--batch-delay",
      "0.05",
    ]);
    procs.unshift(px);
    await sendAll(px.port, "died");
    const s = await statsUntil(
      px,
      (x) => x.proxy.processes.length === N && x.proxy.pendingLines === TOTAL,
    );
    const victim = s.proxy.processes.find((p) => p.index === 1)!;
    expect(victim.pendingLines).toBeGreaterThan(0);
    process.kill(victim.pid, "SIGKILL");
    const after = await statsUntil(
      px,
      (x) =>
        x.proxy.processes.some((p) => p.index === 1 && p.alive && p.pid !== victim.pid) &&
        x.proxy.lost.worker_died > 0,
    );
    expect(after.proxy.lost.worker_died).toBe(victim.pendingLines);
    expect(after.proxy.pendingLines).toBe(TOTAL - victim.pendingLines);
    // The dead process's row stays (its counters stay in the sums), marked gone.
    expect(after.proxy.processes.filter((p) => p.index === 1 && !p.alive)).toHaveLength(1);
    expect(
      px.logs.some(
        (l) => l.level === "error" && l["reason"] === "worker_died" && l["worker"] === 1,
      ),
    ).toBe(true);
  });
});
