import { describe, expect, it } from "vitest";
import type { Destination } from "../../../../dataplane/forward/destination.ts";
import {
  type AccountWatch,
  accountWatcher,
  imbalance,
} from "../../../fixtures/destination-account.ts";
import {
  destinationHarness,
  fixedWidthLines as lines,
} from "../../../fixtures/destination-harness.ts";
import { freePort } from "../../../fixtures/line-sink.ts";
import { until } from "../../../fixtures/until.ts";

/**
 * A destination's account (dataplane/forward/destination-stats.ts): every
 * datapoint routed to it is in exactly one of forwarded, queued, dropped,
 * undelivered, rerouted, at every moment, whatever the peer does.
 */

const { dest, sink, closeAfter } = destinationHarness();
const watch = accountWatcher(closeAfter);

/**
 * Checks the account of `d` on every state change and every millisecond
 * until the test ends (accountWatcher); `check()` asserts it now and that it
 * never broke; `enqueueChecked(from, to)` enqueues lines from*100 to
 * to*100 - 1 to `d`, a hundred at a time, with a check() after each hundred.
 */
function watchAccount(d: Destination): AccountWatch & {
  enqueueChecked(from: number, to: number): void;
} {
  const account = watch(d);
  return {
    check: () => account.check(),
    enqueueChecked(from: number, to: number): void {
      for (let i = from; i < to; i++) {
        d.enqueue(lines(i * 100, 100), 100);
        account.check();
      }
    },
  };
}

describe("Destination accounting: routed = forwarded + queued + dropped + undelivered + rerouted", () => {
  it("holds while delivering, and ends all forwarded", async () => {
    const s = await sink();
    const d = dest(s.port, { resendBytes: 1 << 20 });
    const account = watchAccount(d);
    for (let i = 0; i < 50; i++) {
      d.enqueue(lines(i * 20, 20), 20);
      if (i % 10 === 0) account.check();
      await new Promise((r) => setImmediate(r));
    }
    await s.waitForLines(1000);
    await until(() => d.stats().forwarded === 1000);
    expect(d.stats()).toMatchObject({ routed: 1000, forwarded: 1000, queuedLines: 0, dropped: 0 });
    account.check();
  });

  it("holds when the peer dies: what it gets again is resent, not forwarded twice", async () => {
    const s = await sink();
    const d = dest(s.port, { resendBytes: 1 << 20 });
    const account = watchAccount(d);
    d.enqueue(lines(0, 100), 100);
    await until(() => d.stats().forwarded === 100);
    const port = s.port;
    await s.crash();
    await until(() => d.stats().failures >= 1);
    // The window gave back what the peer had: owed as resends, not queued.
    expect(d.stats()).toMatchObject({ routed: 100, forwarded: 100, queuedLines: 0 });
    expect(d.stats().queuedBytes).toBeGreaterThan(0);
    account.check();
    d.enqueue(lines(100, 30), 30);
    expect(d.stats().queuedLines).toBe(30);
    account.check();
    const again = await sink(port);
    await again.waitForLines(130);
    await until(() => d.stats().resent === 100);
    expect(d.stats()).toMatchObject({
      routed: 130,
      forwarded: 130,
      resent: 100,
      queuedLines: 0,
      unconfirmed: 0,
    });
    account.check();
  });

  it("a failed connection counts what the window let go of (within the kernels' capacity) as unconfirmed", async () => {
    const s = await sink();
    // A window of 0 keeps nothing: every forwarded line is let go of at once.
    const d = dest(s.port, { resendBytes: 0 });
    const account = watchAccount(d);
    d.enqueue(lines(0, 100), 100);
    await until(() => d.stats().forwarded === 100);
    expect(d.stats().unconfirmed).toBe(0);
    await s.crash();
    await until(() => d.stats().failures >= 1);
    expect(d.stats()).toMatchObject({
      forwarded: 100,
      unconfirmed: 100,
      resent: 0,
      queuedBytes: 0,
    });
    account.check();
  });

  it("holds under drop-oldest: new lines dropped are dropped, owed resends dropped are unconfirmed", async () => {
    const one = lines(0, 100).length;
    const s = await sink();
    const d = dest(s.port, { resendBytes: 1 << 20, queueBytes: one * 3, overflow: "drop-oldest" });
    const account = watchAccount(d);
    // 300 lines forwarded, then the peer dies: 300 owed as resends fill the queue.
    for (let i = 0; i < 3; i++) d.enqueue(lines(i * 100, 100), 100);
    await until(() => d.stats().forwarded === 300);
    const port = s.port;
    await s.crash();
    await until(() => d.stats().failures >= 1);
    expect(d.stats()).toMatchObject({ queuedLines: 0, queuedBytes: one * 3 });
    // 500 new lines: the queue keeps the newest 300; the owed 300 go first (unconfirmed),
    // then the oldest 200 new ones (dropped, queue_full).
    account.enqueueChecked(3, 8);
    expect(d.stats()).toMatchObject({
      routed: 800,
      forwarded: 300,
      queuedLines: 300,
      queuedBytes: one * 3,
      dropped: 200,
      droppedBy: { queue_full: 200, closed: 0, worker_died: 0 },
      unconfirmed: 300,
    });
    const again = await sink(port);
    await again.waitForLines(300);
    await until(() => d.stats().forwarded === 600);
    expect(again.lines[0]).toBe("m.000500 1 1700000000");
    expect(d.stats()).toMatchObject({ resent: 0, queuedLines: 0, dropped: 200 });
    account.check();
  });

  it("holds under drop-oldest with a peer that never came up", async () => {
    const one = lines(0, 100).length;
    const d = dest(await freePort(), { queueBytes: one * 2, overflow: "drop-oldest" });
    const account = watchAccount(d);
    account.enqueueChecked(0, 7);
    expect(d.stats()).toMatchObject({
      routed: 700,
      queuedLines: 200,
      dropped: 500,
      unconfirmed: 0,
    });
  });

  it("drain with a dead peer: waiting lines are undelivered, owed resends unconfirmed", async () => {
    // The issue: SIGTERM with a dead destination counted resend-window lines
    // that had already arrived as undelivered.
    const s = await sink();
    const d = dest(s.port, { resendBytes: 1 << 20 });
    d.enqueue(lines(0, 100), 100);
    await s.waitForLines(100);
    await until(() => d.stats().forwarded === 100);
    await s.crash();
    await until(() => d.stats().failures >= 1);
    d.enqueue(lines(100, 25), 25);
    expect(imbalance(d.stats())).toBe("");
    // Only the 25 never-forwarded lines are left undelivered.
    expect(await d.drain(150)).toBe(25);
    expect(d.state).toBe("closed");
    expect(d.stats()).toMatchObject({
      routed: 125,
      forwarded: 100,
      resent: 0,
      queuedLines: 0,
      queuedBytes: 0,
      undelivered: 25,
      unconfirmed: 100,
      dropped: 0,
    });
    expect(imbalance(d.stats())).toBe("");
    // Routed after closing: dropped (closed), and the account still holds.
    d.enqueue(lines(125, 5), 5);
    expect(d.stats()).toMatchObject({ routed: 130, droppedBy: { closed: 5 } });
    expect(imbalance(d.stats())).toBe("");
  });

  it("drain with a peer that never came up: everything is undelivered, nothing unconfirmed", async () => {
    const d = dest(await freePort(), { resendBytes: 1 << 20 });
    d.enqueue(lines(0, 40), 40);
    expect(await d.drain(100)).toBe(40);
    expect(d.stats()).toMatchObject({
      routed: 40,
      undelivered: 40,
      unconfirmed: 0,
      queuedLines: 0,
    });
    expect(imbalance(d.stats())).toBe("");
  });

  it("drain that delivers everything: nothing undelivered or unconfirmed", async () => {
    const s = await sink();
    const d = dest(s.port, { resendBytes: 1 << 20 });
    d.enqueue(lines(0, 60), 60);
    expect(await d.drain(5_000)).toBe(0);
    await s.waitForLines(60);
    expect(d.stats()).toMatchObject({ routed: 60, forwarded: 60, undelivered: 0, unconfirmed: 0 });
    expect(imbalance(d.stats())).toBe("");
  });

  // The account must hold for whoever looks while a drain closes the
  // destination: a "state" listener (the Router logs the queue on "closed"),
  // and /stats while the socket is being ended.
  it("holds on the change to closed at the end of a drain", async () => {
    const d = dest(await freePort(), { resendBytes: 1 << 20 });
    const seen: string[] = [];
    d.on("state", (state) => {
      if (state === "closed") seen.push(imbalance(d.stats()));
    });
    d.enqueue(lines(0, 40), 40);
    await d.drain(50);
    expect(seen).toEqual([""]);
  });

  it("drain past the deadline, a peer that stops reading: holds while the socket closes, and after, when the peer reads again", async () => {
    const s = await sink();
    const d = dest(s.port, { resendBytes: 0 });
    await until(() => d.state === "connected");
    s.pause();
    // Far more than the two socket buffers hold: some is still ours at the deadline.
    const n = 400_000;
    for (let i = 0; i < n / 1000; i++) d.enqueue(lines(i * 1000, 1000), 1000);
    const drained = d.drain(200);
    await until(() => d.stats().undelivered > 0 || d.state === "closed");
    expect.soft(imbalance(d.stats()), "while the socket is being ended").toBe("");
    // The peer reads again while the socket is being ended.
    s.resume();
    const left = await drained;
    expect(left).toBeGreaterThan(0);
    const st = d.stats();
    expect(st.undelivered).toBe(left);
    expect(imbalance(st), "once closed").toBe("");
  });
});
