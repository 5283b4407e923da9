import { describe, expect, it } from "vitest";
import { Destination } from "../../../../dataplane/forward/destination.ts";
import {
  type DestinationSpec,
  parseDestinationList,
} from "../../../../dataplane/forward/destination-spec.ts";
import { createHashRouter } from "../../../../dataplane/route/hash/hash-router.ts";
import {
  noRouteCounts,
  type RouteCounts,
  RouteTable,
} from "../../../../dataplane/route/route-table.ts";

// Real Destinations that are never started: one opens no socket and keeps
// what it is given in its queue, which takeQueued() hands back in order.
// So no fake is needed, and no test here touches the network.
const SPECS = parseDestinationList("127.0.0.1:2003:a,127.0.0.2:2003:b,127.0.0.3:2003:c");

function destinations(specs: readonly DestinationSpec[] = SPECS): Destination[] {
  return specs.map((s) => new Destination(s));
}

/** What a destination's queue holds, emptied: its chunks and their line counts. */
function take(d: Destination): { chunks: Buffer[]; text: string; lines: number } {
  const q = d.takeQueued();
  const chunks = q.map((x) => x.chunk);
  return {
    chunks,
    text: Buffer.concat(chunks).toString(),
    lines: q.reduce((n, x) => n + x.lines, 0),
  };
}

const counts = (): RouteCounts => noRouteCounts();

const text = (lines: readonly string[]): string => lines.map((l) => l + "\n").join("");
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("RouteTable, broadcast", () => {
  it("hands every destination the same run, at once and without copying it", () => {
    const dests = destinations();
    const c = counts();
    const t = new RouteTable(dests, null, c);
    expect(t.mode).toBe("broadcast");
    const buf = Buffer.from("skip 0 1\nx.a 1 1700000000\nx.b 2 1700000000\nskip 0 1\n");
    const start = buf.indexOf("x.a");
    const end = buf.indexOf("skip", start);
    t.route(buf, start, end, 2);
    for (const d of dests) {
      expect(d.stats().queuedLines).toBe(2);
      const q = take(d);
      expect(q.chunks).toHaveLength(1);
      expect(q.text).toBe("x.a 1 1700000000\nx.b 2 1700000000\n");
      expect(q.lines).toBe(2);
      // A view of the caller's buffer (the LineSink contract lets it keep one).
      expect(q.chunks[0]!.buffer).toBe(buf.buffer);
      expect(q.chunks[0]!.byteOffset).toBe(buf.byteOffset + start);
      // Each destination counts what it was given.
      expect(d.stats().routed).toBe(2);
    }
    // The table counts lines once, however many destinations get them.
    expect(c).toMatchObject({ routed: 2, noDestination: 0 });
  });

  it("without destinations counts the lines as having no destination, not as routed", () => {
    const c = counts();
    const t = new RouteTable([], null, c);
    const buf = Buffer.from("x 1 1\n");
    expect(() => t.route(buf, 0, buf.length, 1)).not.toThrow();
    t.route(buf, 0, buf.length, 1);
    expect(c).toMatchObject({ routed: 0, noDestination: 2 });
  });

  it("adds to the counts it is given (shared by a router's successive tables)", () => {
    const c = { ...noRouteCounts(), routed: 10, noDestination: 5 };
    const buf = Buffer.from("x 1 1\ny 1 1\n");
    new RouteTable(destinations(), null, c).route(buf, 0, buf.length, 2);
    new RouteTable([], null, c).route(buf, 0, buf.length, 2);
    new RouteTable(destinations(), createHashRouter(SPECS, {}), c).route(buf, 0, buf.length, 2);
    expect(c).toMatchObject({ routed: 14, noDestination: 7 });
  });
});

describe("RouteTable, hash", () => {
  const names = Array.from({ length: 300 }, (_, i) => `h.m${i} ${i} 1700000000`);
  const nameOf = (l: string): string => l.split(" ")[0]!;

  it("sends each line to the member the ring names, in order, once the turn ends", async () => {
    const dests = destinations();
    const ring = createHashRouter(SPECS, {});
    const c = counts();
    const t = new RouteTable(dests, ring, c);
    expect(t.mode).toBe("hash");
    const buf = Buffer.from(text(names));
    const half = buf.indexOf("h.m150 ");
    t.route(buf, 0, half, 150);
    t.route(buf, half, buf.length, 150);
    expect(c.routed).toBe(300);
    // Accumulated, not queued yet.
    for (const d of dests) expect(d.stats().queuedLines).toBe(0);
    await nextTurn();
    let total = 0;
    dests.forEach((d, i) => {
      const want = names.filter((l) => ring.routeName(nameOf(l))[0] === i);
      expect(want.length).toBeGreaterThan(0);
      const q = take(d);
      // One chunk per destination for the whole turn (both runs).
      expect(q.chunks).toHaveLength(1);
      expect(q.text).toBe(text(want));
      expect(q.lines).toBe(want.length);
      total += q.lines;
    });
    expect(total).toBe(names.length);
    // Counted when routed, not when handed to the queues.
    expect(c).toMatchObject({ routed: names.length, noDestination: 0 });
  });

  it("hands what accumulated to the queues on flush(), without waiting for the turn", () => {
    const dests = destinations();
    const ring = createHashRouter(SPECS, {});
    const c = counts();
    const t = new RouteTable(dests, ring, c);
    const buf = Buffer.from(text(names));
    t.route(buf, 0, buf.length, names.length);
    t.flush();
    const queued = dests.map((d) => d.stats().queuedLines);
    expect(queued.reduce((a, b) => a + b, 0)).toBe(names.length);
    dests.forEach((d, i) => {
      expect(take(d).text).toBe(text(names.filter((l) => ring.routeName(nameOf(l))[0] === i)));
    });
  });

  it("with replication, sends a line to every member the ring names", () => {
    const dests = destinations();
    const ring = createHashRouter(SPECS, { replication: 2 });
    const c = counts();
    const t = new RouteTable(dests, ring, c);
    const buf = Buffer.from(text(names));
    t.route(buf, 0, buf.length, names.length);
    t.flush();
    let total = 0;
    dests.forEach((d, i) => {
      const q = take(d);
      expect(q.text).toBe(text(names.filter((l) => ring.routeName(nameOf(l)).includes(i))));
      total += q.lines;
    });
    expect(total).toBe(2 * names.length);
    // A line is routed once, whatever its replicas.
    expect(c).toMatchObject({ routed: names.length, noDestination: 0 });
    expect(dests.reduce((n, d) => n + d.stats().routed, 0)).toBe(2 * names.length);
  });

  it("hashes the name only, up to the first space or tab", () => {
    const dests = destinations();
    const ring = createHashRouter(SPECS, {});
    const c = counts();
    const t = new RouteTable(dests, ring, c);
    const lines = names.map((l, i) => (i % 2 === 0 ? l : l.replace(" ", "\t")));
    const buf = Buffer.from(text(lines));
    t.route(buf, 0, buf.length, lines.length);
    t.flush();
    dests.forEach((d, i) => {
      expect(take(d).text).toBe(
        text(lines.filter((l) => ring.routeName(l.split(/[ \t]/)[0]!)[0] === i)),
      );
    });
  });

  it("still sends a line longer than the accumulator, in order with the lines around it", () => {
    const [d] = destinations(SPECS.slice(0, 1));
    const c = counts();
    const t = new RouteTable([d!], createHashRouter(SPECS.slice(0, 1), {}), c);
    const long = `long.${"x".repeat(70_000)} 1 1700000000`;
    const lines = ["before 1 1700000000", long, "after 1 1700000000"];
    const buf = Buffer.from(text(lines));
    t.route(buf, 0, buf.length, lines.length);
    t.flush();
    const q = take(d!);
    expect(q.text).toBe(text(lines));
    expect(q.lines).toBe(3);
    expect(q.chunks.map((c) => c.length)).toEqual([
      lines[0]!.length + 1,
      long.length + 1,
      lines[2]!.length + 1,
    ]);
  });

  it("fills the accumulator, hands it over and starts another; a chunk handed over is never overwritten", () => {
    const [d] = destinations(SPECS.slice(0, 1));
    const c = counts();
    const t = new RouteTable([d!], createHashRouter(SPECS.slice(0, 1), {}), c);
    const batch = (p: string): string[] =>
      Array.from({ length: 2_000 }, (_, i) => `${p}.padding.m${i} ${i} 1700000000`);
    const first = batch("first"); // about 75 KiB: more than one 64 KiB accumulator
    const buf1 = Buffer.from(text(first));
    t.route(buf1, 0, buf1.length, first.length);
    t.flush();
    const q1 = take(d!);
    expect(q1.chunks.length).toBe(2);
    expect(q1.lines).toBe(first.length);
    const second = batch("second");
    const buf2 = Buffer.from(text(second));
    t.route(buf2, 0, buf2.length, second.length);
    t.flush();
    expect(take(d!).text).toBe(text(second));
    expect(Buffer.concat(q1.chunks).toString()).toBe(text(first));
  });
});
