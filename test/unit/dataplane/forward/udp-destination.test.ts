import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { Destination, type DestinationOptions } from "../../../../dataplane/forward/destination.ts";
import { parseDestination } from "../../../../dataplane/forward/destination-spec.ts";
import type { DestinationStats } from "../../../../dataplane/forward/destination-stats.ts";
import {
  datagramEnd,
  UDP_DATAGRAM_BYTES,
  udpTransport,
} from "../../../../dataplane/forward/udp-destination.ts";
import { DatagramSink, freeUdpPort } from "../../../fixtures/datagram-sink.ts";
import { fixedWidthLines as lines } from "../../../fixtures/destination-harness.ts";
import { until } from "../../../fixtures/until.ts";

const open: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function sink(port = 0): Promise<DatagramSink> {
  const s = await DatagramSink.start(port);
  open.push(s);
  return s;
}

/** A started UDP destination to 127.0.0.1:`port`, writing 16 KiB at a time (what a receiver's buffer holds). */
function udpDest(
  port: number,
  options: DestinationOptions = {},
  datagramBytes?: number,
): Destination {
  const d = new Destination(udpTransport(parseDestination(`127.0.0.1:${port}`), datagramBytes), {
    backoffMinMs: 20,
    backoffMaxMs: 100,
    writeBytes: 16 * 1024,
    ...options,
  });
  open.push(d);
  d.start();
  return d;
}

function balanced(s: DestinationStats): boolean {
  return s.routed === s.forwarded + s.queuedLines + s.dropped + s.undelivered + s.rerouted;
}

const text = (b: Buffer): string[] => String(b).trimEnd().split("\n");

describe("UDP destination", () => {
  it("sends every line, in datagrams of whole lines within the size, and counts them forwarded", async () => {
    const s = await sink();
    const d = udpDest(s.port);
    expect(d.spec).toEqual({ id: `udp:127.0.0.1:${s.port}`, spec: `udp:127.0.0.1:${s.port}` });
    for (let i = 0; i < 20; i++) d.enqueue(lines(i * 100, 100), 100);
    await until("every line", () => s.lines.length === 2_000);
    expect(s.lines).toEqual(text(lines(0, 2_000)));
    for (const g of s.datagrams) {
      expect(g.length).toBeLessThanOrEqual(UDP_DATAGRAM_BYTES);
      expect(g.at(-1)).toBe(0x0a);
    }
    // Packed: a datagram carries as many 23-byte lines as fit, but for the
    // last of each write (46,000 bytes queued in one turn: 3 writes of 16 KiB or more).
    const notFull = s.datagrams.filter((g) => g.length + 23 <= UDP_DATAGRAM_BYTES);
    expect(notFull.length).toBeLessThanOrEqual(3);
    await until(() => d.stats().forwarded === 2_000);
    expect(d.stats()).toMatchObject({ routed: 2_000, dropped: 0, queuedLines: 0, resent: 0 });
    expect(d.state).toBe("connected");
  });

  it("a line longer than a datagram goes alone", async () => {
    const s = await sink();
    const d = udpDest(s.port, {}, 64);
    const long = `${"x".repeat(100)} 1 1700000000`;
    d.enqueue(Buffer.from(`a 1 1700000000\n${long}\nb 2 1700000000\n`), 3);
    await until(() => s.lines.length === 3);
    expect(s.datagrams.map(String)).toEqual(["a 1 1700000000\n", `${long}\n`, "b 2 1700000000\n"]);
  });

  it("a datagram the kernel will not send is dropped (send_failed), the failure seen, and sending goes on", async () => {
    const s = await sink();
    const d = udpDest(s.port, {}, 70_000);
    // More than UDP can carry in one datagram (65,507 bytes over IPv4): EMSGSIZE.
    const huge = `${"h".repeat(66_000)} 1 1700000000\n`;
    d.enqueue(Buffer.from(`${huge}${huge}`), 2);
    await until("the failure", () => d.stats().failures === 1);
    expect(d.stats()).toMatchObject({ routed: 2, forwarded: 0, dropped: 2 });
    expect(d.stats().droppedBy.send_failed).toBe(2);
    expect(d.stats().lastError).toMatch(/EMSGSIZE.*2 datapoints not sent.*send_failed/);
    d.enqueue(lines(0, 10), 10);
    await until("the lines after it", () => s.lines.length === 10);
    expect(s.lines).toEqual(text(lines(0, 10)));
    await until(() => d.stats().forwarded === 10);
    expect(balanced(d.stats())).toBe(true);
  });

  it("a peer that is not listening (port unreachable) sends it to backoff; the queue holds until it listens", async () => {
    const port = await freeUdpPort();
    const d = udpDest(port);
    await until(() => d.state === "connected");
    d.enqueue(lines(0, 5), 5);
    await until("the refusal", () => d.stats().failures >= 1);
    expect(d.stats().lastError).toMatch(/ECONNREFUSED/);
    // Counted as forwarded: the kernel sent them, and nothing says the peer lost them.
    expect(d.stats().forwarded).toBe(5);
    const s = await sink(port);
    d.enqueue(lines(5, 20), 20);
    await until("what came after", () => s.lines.length === 20);
    expect(s.lines).toEqual(text(lines(5, 20)));
    await until(() => d.stats().forwarded === 25);
    expect(balanced(d.stats())).toBe(true);
  });

  it("keeps no resend window, whatever the reload says", async () => {
    const s = await sink();
    const d = udpDest(s.port, { resendBytes: 1 << 20 });
    d.reconfigure({ resendBytes: 1 << 20 });
    d.enqueue(lines(0, 10), 10);
    await until(() => s.lines.length === 10);
    await until(() => d.stats().forwarded === 10);
    expect(d.stats()).toMatchObject({ resent: 0, unconfirmed: 0, queuedBytes: 0 });
  });

  it("drain sends what is queued, then closes; later lines are dropped as closed", async () => {
    const s = await sink();
    const d = udpDest(s.port);
    d.enqueue(lines(0, 50), 50);
    expect(await d.drain(5_000)).toBe(0);
    expect(d.state).toBe("closed");
    await until(() => s.lines.length === 50);
    d.enqueue(lines(50, 5), 5);
    expect(d.stats()).toMatchObject({ routed: 55, forwarded: 50, dropped: 5, queuedLines: 0 });
    expect(d.stats().droppedBy.closed).toBe(5);
  });

  it("drain to a name that does not resolve counts the queue undelivered", async () => {
    const d = new Destination(udpTransport(parseDestination("no-such-host.invalid:2003")), {
      backoffMinMs: 20,
      backoffMaxMs: 50,
    });
    open.push(d);
    d.start();
    d.enqueue(lines(0, 7), 7);
    await until(() => d.stats().failures >= 1);
    expect(await d.drain(100)).toBe(7);
    expect(d.stats()).toMatchObject({ routed: 7, undelivered: 7, forwarded: 0 });
  });
});

describe("datagramEnd", () => {
  it("cuts whole lines, within the size unless a line alone is longer", () => {
    const line = fc
      .string({ unit: fc.constantFrom("a", "b", " ", "1"), minLength: 0, maxLength: 40 })
      .map((s) => `${s}\n`);
    fc.assert(
      fc.property(
        fc.array(line, { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 60 }),
        (ls, max) => {
          const buf = Buffer.from(ls.join(""));
          const parts: string[] = [];
          for (let start = 0; start < buf.length; ) {
            const end = datagramEnd(buf, start, max);
            expect(end).toBeGreaterThan(start);
            parts.push(String(buf.subarray(start, end)));
            start = end;
          }
          expect(parts.join("")).toBe(ls.join(""));
          for (const [i, p] of parts.entries()) {
            expect(p.endsWith("\n")).toBe(true);
            const count = p.split("\n").length - 1;
            if (p.length > max) expect(count).toBe(1);
            // As many lines as fit: the next datagram's first line would not have.
            const next = parts[i + 1];
            if (next !== undefined) expect(p.length + next.indexOf("\n") + 1).toBeGreaterThan(max);
          }
        },
      ),
      { seed: 20261130, numRuns: 300 },
    );
  });
});
