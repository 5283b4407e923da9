// A proxy started on a damaged spool, with a real gateway: every intact batch
// reaches the gateway's destination (those after a damaged record in the same
// segment included), and what cannot be read is counted under its reason in
// the proxy's /stats and /metrics, and logged with where it was.
import { closeSync, existsSync, mkdirSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../common/logger.ts";
import type { ProxyStats } from "../../dataplane/link/proxy/proxy-stats.ts";
import { SegmentSpool, type SpoolLocation } from "../../dataplane/spool/segment-spool.ts";
import { Compression } from "../../gen/polymur/ingest/v1/ingest_pb.ts";
import { LineSink } from "../fixtures/line-sink.ts";
import type { PolymurProcess } from "../fixtures/polymur.ts";
import { parseExposition } from "../fixtures/prometheus-exposition.ts";
import { startGateway, startProxy, TempDir, tally } from "../fixtures/proxy-gateway.ts";
import { waitFor } from "../fixtures/until.ts";

const KEY = "site-loss";
const SECRET = "s3cret-site-loss-0123456789";
/** Bytes of a spool record header (PMB2). */
const HEADER = 33;

const procs: PolymurProcess[] = [];
const cleanups: Array<() => unknown> = [];

afterEach(async () => {
  // The proxy first (it would wait for the gateway), then the gateway.
  for (const p of procs.splice(0)) await p.stop();
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Written {
  seq: number;
  loc: SpoolLocation;
  /** The datapoint numbers (values) the batch holds. */
  values: number[];
}

/** A spool as a proxy leaves it: `batches` batches of `per` datapoints, several segments. */
function writeSpool(dir: string, tag: string, batches: number, per: number): Written[] {
  const { spool } = SegmentSpool.open(dir, {
    log: createLogger({ level: "silent" }),
    segmentBytes: 4 * per * 30,
  });
  const written: Written[] = [];
  for (let seq = 1; seq <= batches; seq++) {
    const values = Array.from({ length: per }, (_, k) => (seq - 1) * per + k);
    const raw = Buffer.from(values.map((v) => `${tag}.m${v % 50} ${v} 1700000000\n`).join(""));
    const loc = spool.append(seq, Compression.NONE, per, raw.length, raw);
    written.push({ seq, loc, values });
  }
  spool.close();
  return written;
}

function segmentFile(dir: string, segment: number): string {
  return path.join(dir, `seg-${String(segment).padStart(16, "0")}.spool`);
}

async function proxyStats(p: PolymurProcess): Promise<ProxyStats> {
  const res = await fetch(`http://127.0.0.1:${p.statsPort}/stats`);
  return ((await res.json()) as { proxy: ProxyStats }).proxy;
}

describe("proxy on a damaged spool", () => {
  it("sends every intact batch, and counts the damaged and the unreadable under their reasons", async () => {
    const t = new TempDir();
    cleanups.push(() => t.close());
    const out = await LineSink.start(0);
    cleanups.push(() => out.close());
    const dir = t.path("spool");
    const tag = "loss";
    const per = 100;
    const written = writeSpool(dir, tag, 16, per);
    const bySegment = new Map<number, Written[]>();
    for (const w of written) {
      bySegment.set(w.loc.segment, [...(bySegment.get(w.loc.segment) ?? []), w]);
    }
    const segs = [...bySegment.keys()];
    expect(segs.length).toBeGreaterThanOrEqual(3);

    // In the first segment, a record in the middle gets a damaged payload.
    const first = bySegment.get(segs[0]!)!;
    expect(first.length).toBeGreaterThanOrEqual(3);
    const damaged = first[1]!;
    const fd = openSync(segmentFile(dir, segs[0]!), "r+");
    writeSync(fd, Buffer.from("#"), 0, 1, damaged.loc.offset + HEADER + 40);
    closeSync(fd);
    // The second segment cannot be read at all (here: a directory in its place).
    const unreadable = segmentFile(dir, segs[1]!);
    rmSync(unreadable);
    mkdirSync(unreadable);
    const gone = bySegment.get(segs[1]!)!;

    const gw = await startGateway([
      "--keys-file",
      t.file("keys", `${KEY} ${SECRET}\n`),
      "--destinations",
      out.address,
    ]);
    procs.push(gw);
    const px = await startProxy(`http://127.0.0.1:${gw.port}`, SECRET, ["--spool-dir", dir]);
    procs.unshift(px);

    const intact = written.filter((w) => w !== damaged && !gone.includes(w));
    const expected = new Set(intact.flatMap((w) => w.values));
    const all = written.length * per;
    await waitFor(
      "every intact datapoint delivered",
      () => {
        const r = tally(out, tag, all);
        return r.distinct >= expected.size ? r : undefined;
      },
      30_000,
    );
    const s = await waitFor("the proxy has nothing pending", async () => {
      const st = await proxyStats(px);
      return st.pendingBatches === 0 ? st : undefined;
    });

    // Exactly the intact datapoints, once each.
    const seen = new Map<number, number>();
    for (const line of out.lines) {
      if (!line.includes(`${tag}.m`)) continue;
      const v = Number(line.split(" ")[1]);
      seen.set(v, (seen.get(v) ?? 0) + 1);
    }
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual([...expected].sort((a, b) => a - b));
    expect([...seen.values()].every((c) => c === 1)).toBe(true);
    // Those after the damaged record in its segment among them.
    for (const w of first.slice(2)) expect(seen.has(w.values[0]!)).toBe(true);

    expect(s.lost).toEqual({
      spool_corrupt: per,
      spool_unreadable: 0,
      exit_without_spool: 0,
      exit_spool_append_failed: 0,
      worker_died: 0,
    });
    expect(s.lostUncounted).toEqual({
      spool_corrupt: 0,
      spool_unreadable: 1,
      exit_without_spool: 0,
      exit_spool_append_failed: 0,
      worker_died: 0,
    });
    expect(s.link.linesAcked).toBe(expected.size);

    const metrics = parseExposition(
      await (await fetch(`http://127.0.0.1:${px.statsPort}/metrics`)).text(),
    );
    const reasons = (name: string): Record<string, number> =>
      Object.fromEntries(
        (metrics.get(name)?.samples ?? []).map((x) => [x.labels["reason"], x.value]),
      );
    expect(reasons("polymur_proxy_lost_datapoints_total")).toMatchObject({ spool_corrupt: per });
    expect(reasons("polymur_proxy_lost_uncounted_total")).toMatchObject({ spool_unreadable: 1 });

    // Logged with where: the damaged record's file and offset, the unreadable segment set aside.
    expect(px.logs).toContainEqual(
      expect.objectContaining({
        reason: "spool_corrupt",
        file: segmentFile(dir, segs[0]!),
        offset: damaged.loc.offset,
        seq: damaged.seq,
        lines: per,
      }),
    );
    expect(px.logs).toContainEqual(
      expect.objectContaining({ reason: "spool_unreadable", file: unreadable, lines: null }),
    );
    expect(existsSync(`${unreadable}.unreadable`)).toBe(true);
    // Owner-only from then on.
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });
});
