import { describe, expect, it } from "vitest";
import { DestinationStateLog } from "../../../common/destination-state-log.ts";
import { captureLog } from "../../fixtures/capture-log.ts";

/** A log and a clock the test moves by hand. */
function setup(repeatMs = 60_000) {
  const { log, lines } = captureLog();
  let t = 1_000_000;
  const states = new DestinationStateLog(log, repeatMs, () => t);
  return {
    states,
    lines,
    advance: (ms: number) => {
      t += ms;
    },
    about: (d: string) => lines.filter((l) => l["destination"] === d),
  };
}

describe("DestinationStateLog", () => {
  it("says connected once when every process has connected", () => {
    const { states, about } = setup();
    for (const p of [0, 1, 2])
      states.report(p, { destination: "a:1", state: "connecting", queued: 0 });
    states.report(0, { destination: "a:1", state: "connected", queued: 0 });
    states.report(1, { destination: "a:1", state: "connected", queued: 0 });
    expect(about("a:1")).toEqual([]);
    states.report(2, { destination: "a:1", state: "connected", queued: 0 });
    expect(about("a:1").map((l) => l.msg)).toEqual(["destination a:1 connected"]);
  });

  it("logs one down line for the group, counts retries, and one recovery line", () => {
    const { states, about, advance } = setup();
    const procs = [0, 1, 2, 3];
    for (const p of procs) states.report(p, { destination: "a:1", state: "connected", queued: 0 });
    // Every process loses it and retries a few times.
    for (let retry = 0; retry < 5; retry++) {
      for (const p of procs) {
        states.report(p, {
          destination: "a:1",
          state: "backoff",
          error: "connect ECONNREFUSED",
          queued: retry * 10,
        });
        states.report(p, { destination: "a:1", state: "connecting", queued: retry * 10 });
      }
      advance(5_000);
    }
    const down = about("a:1").slice(1);
    expect(down).toHaveLength(1);
    expect(down[0]).toMatchObject({
      level: 40,
      state: "down",
      error: "connect ECONNREFUSED",
      msg: "destination a:1 down: connect ECONNREFUSED; datapoints queue for it while polymur retries",
    });
    // Three of four processes reconnect: still down.
    for (const p of [0, 1, 2])
      states.report(p, { destination: "a:1", state: "connected", queued: 100 + p });
    expect(about("a:1")).toHaveLength(2);
    advance(6_000);
    states.report(3, { destination: "a:1", state: "connected", queued: 7 });
    const up = about("a:1").slice(2);
    expect(up).toEqual([
      expect.objectContaining({
        level: 30,
        downMs: 31_000,
        queued: 100 + 101 + 102 + 7,
        msg: "destination a:1 connected again after 31 s, 310 datapoints queued meanwhile",
      }),
    ]);
  });

  it("says a long outage again at most once per interval, with the count of failed attempts", () => {
    const { states, about, advance } = setup(60_000);
    states.report(0, { destination: "b:2", state: "backoff", error: "refused", queued: 0 });
    expect(about("b:2").map((l) => l.msg)).toEqual([
      "destination b:2 unreachable: refused; datapoints queue for it while polymur retries",
    ]);
    for (let i = 0; i < 30; i++) {
      advance(4_000);
      states.report(0, { destination: "b:2", state: "connecting", queued: 0 });
      states.report(0, { destination: "b:2", state: "backoff", error: "refused", queued: 0 });
    }
    // 120 s of retries every 4 s: a line at 60 s (15 attempts) and one at 120 s (15 more).
    const repeats = about("b:2").slice(1);
    expect(repeats.map((l) => [l["count"], l["total"]])).toEqual([
      [15, 15],
      [15, 30],
    ]);
    expect(repeats[0]!.msg).toMatch(/^destination b:2 still unreachable; retrying/);
  });

  it("forgets a process that is gone: the rest decide whether the destination is up", () => {
    const { states, about, advance } = setup();
    for (const p of [0, 1]) states.report(p, { destination: "c:3", state: "connected", queued: 0 });
    states.report(1, { destination: "c:3", state: "backoff", error: "reset", queued: 4 });
    advance(2_000);
    states.forget(1);
    expect(about("c:3").at(-1)!.msg).toBe(
      "destination c:3 connected again after 2 s, 0 datapoints queued meanwhile",
    );
  });

  it("a destination removed from every process leaves no state behind", () => {
    const { states, about } = setup();
    states.report(0, { destination: "d:4", state: "backoff", error: "x", queued: 0 });
    states.report(0, { destination: "d:4", state: "draining", queued: 0 });
    states.report(0, { destination: "d:4", state: "closed", queued: 0 });
    // Added again later: a new destination (unreachable, not "down").
    states.report(0, { destination: "d:4", state: "backoff", error: "x", queued: 0 });
    expect(about("d:4").map((l) => l.msg)).toEqual([
      "destination d:4 unreachable: x; datapoints queue for it while polymur retries",
      "destination d:4 unreachable: x; datapoints queue for it while polymur retries",
    ]);
  });
});
