// A relay runs the processes its load needs (worker-scaling.ts): real
// relay processes, a real sender and a counting destination on 127.0.0.1.
// Sender connections move between processes while they send; not one line
// may be lost or doubled on the way.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { expectBalanced } from "../fixtures/accounting.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";
import { until } from "../fixtures/until.ts";

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanup.length > 0) await cleanup.pop()!();
});

/**
 * Counts, per sender connection k (lines `scale.c<k> <i> <ts>`), the lines
 * that arrive and the sum of their i: the relay delivered connection k's
 * lines 0..n-1 exactly once when count = n and sum = n(n-1)/2.
 */
class CountingSink {
  readonly count = new Map<number, number>();
  readonly sum = new Map<number, number>();
  bad = 0;
  readonly badLines: string[] = [];
  server = net.createServer((s) => {
    let carry = "";
    s.setEncoding("latin1");
    s.on("data", (d: string) => {
      const parts = (carry + d).split("\n");
      carry = parts.pop()!;
      for (const line of parts) {
        const m = /^scale\.c(\d+) (\d+) \d+$/.exec(line);
        if (m === null) {
          this.bad++;
          if (this.badLines.length < 5) this.badLines.push(line);
          continue;
        }
        const k = Number(m[1]);
        this.count.set(k, (this.count.get(k) ?? 0) + 1);
        this.sum.set(k, (this.sum.get(k) ?? 0) + Number(m[2]));
      }
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  total(): number {
    let n = 0;
    for (const v of this.count.values()) n += v;
    return n;
  }
}

/** A sender connection writing `scale.c<k> <i> <ts>` lines, numbered from 0, in chunks. */
class Sender {
  next = 0;
  readonly socket: net.Socket;
  readonly k: number;

  constructor(port: number, k: number) {
    this.k = k;
    this.socket = net.connect(port, "127.0.0.1");
  }

  /** Writes `n` more lines; resolves when the socket took them (backpressure). */
  async write(n: number): Promise<void> {
    let text = "";
    for (let j = 0; j < n; j++) text += `scale.c${this.k} ${this.next++} 1700000000\n`;
    if (!this.socket.write(text)) await new Promise((r) => this.socket.once("drain", r));
  }
}

/** Whether the process `pid` (a log field) runs. */
function alive(pid: unknown): boolean {
  try {
    process.kill(pid as number, 0);
    return true;
  } catch {
    return false;
  }
}

describe("worker processes follow the load", () => {
  it("idle, the relay is the primary alone; under load a worker starts and takes connections while they send; when the load falls it hands them back and exits; every line arrives once", async () => {
    const sink = new CountingSink();
    const dest = await sink.start();
    cleanup.push(() => new Promise((r) => sink.server.close(r)));
    // Two processes at most, whatever the machine: the subject is the move between them.
    const relay = await PolymurProcess.relay([
      "--destinations",
      dest,
      "--workers",
      "2",
      "--workers-idle",
      "2",
      // The sink shares the machine with the sender: under drop-oldest a
      // queue it cannot keep up with would drop (counted), which is not the
      // subject here; block holds the sender back instead.
      "--overflow",
      "block",
    ]);
    cleanup.push(() => relay.stop());
    const listening = await relay.waitForLog((l) => l.msg === "listening");
    // The default: the primary alone while idle.
    expect(listening["workersMin"]).toBe(1);
    // Both processes run from the start; idle, the worker retires.
    const first = await relay.waitForLog((l) => /^load: relay worker 1 hands/.test(l.msg), 30_000);
    await relay.waitForLog((l) => /^relay worker 1 retired/.test(l.msg), 30_000);
    await until("the retired worker's process is gone", () => !alive(first["workerPid"]), 10_000);
    const senders = Array.from({ length: 8 }, (_, k) => new Sender(relay.port, k));
    cleanup.push(async () => {
      for (const s of senders) s.socket.destroy();
    });
    await Promise.all(senders.map((s) => new Promise((r) => s.socket.once("connect", r))));

    // As fast as the relay takes them, until a worker takes some, and a while more.
    let started: Record<string, unknown> | null = null;
    void relay
      .waitForLog(
        (l) => /^load: relay worker 1 started in \d+ ms and takes sender connections/.test(l.msg),
        60_000,
      )
      .then((l) => {
        started = l;
      });
    const deadline = Date.now() + 60_000;
    let after = 0;
    while (after < 20 && Date.now() < deadline) {
      await Promise.all(senders.map((s) => s.write(2_000)));
      if (started !== null) after++;
    }
    expect(started).not.toBeNull();
    expect(started!["moved"]).toBeGreaterThan(0);
    const sentBefore = senders.reduce((a, s) => a + s.next, 0);
    await until("every line sent so far delivered", () => sink.total() >= sentBefore, 60_000);

    expect(alive(started!["workerPid"])).toBe(true);

    // Quiet: the worker hands its connections back and exits.
    const retired = await relay.waitForLog(
      (l) =>
        /^load: relay worker 1 hands its sender connections back/.test(l.msg) &&
        l["workerPid"] === started!["workerPid"],
      30_000,
    );
    expect(retired["processes"]).toBe(1);
    await until("the worker's process is gone", () => !alive(started!["workerPid"]), 30_000);
    // The same connections, now all in the primary.
    await Promise.all(senders.map((s) => s.write(1_000)));
    for (const s of senders) s.socket.end();
    const sent = senders.reduce((a, s) => a + s.next, 0);
    await until("every line delivered", () => sink.total() >= sent, 60_000);

    expect(sink.badLines).toEqual([]);
    expect(sink.bad).toBe(0);
    for (const s of senders) {
      const n = s.next;
      expect({ k: s.k, count: sink.count.get(s.k), sum: sink.sum.get(s.k) }).toEqual({
        k: s.k,
        count: n,
        sum: (n * (n - 1)) / 2,
      });
    }
    const stats = await waitForStats(relay, (x) => x.datapoints.forwarded === sent);
    expect(stats.datapoints.received).toBe(sent);
    expect(stats.datapoints.dropped).toBe(0);
    expectBalanced(stats.datapoints, stats.destinations);
    // Connections accepted once, however often they moved.
    expect(stats.connectionsTotal).toBe(senders.length);
  }, 180_000);
});
