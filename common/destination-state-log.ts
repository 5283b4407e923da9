import { ThrottledWarning } from "./log-throttle.ts";
import type { Logger } from "./logger.ts";

/** One process's destination changed state (sent by a relay worker to its primary). */
export interface DestinationStateReport {
  /** The destination as configured (DestinationSpec.spec, or a rules target's name). */
  destination: string;
  /** Its new state in that process: connecting, connected, backoff, draining or closed. */
  state: string;
  /** The last connection error in that process, if any. */
  error?: string | undefined;
  /** Datapoints queued for it in that process. */
  queued: number;
}

/** How often a destination that stays down is said to be still down. Default 60 s. */
export const STILL_DOWN_LOG_MS = 60_000;

interface Group {
  /** Each process's state of it; a process that removed it has no entry. */
  states: Map<number, string>;
  /** Each process's queue for it when it reconnected, during the current outage. */
  queuedAtReconnect: Map<number, number>;
  /** "new": never connected yet; "up": connected in every process; "down": lost by one. */
  status: "new" | "up" | "down";
  downSince: number;
  retries: ThrottledWarning | null;
}

/**
 * Destination connection states for a whole process group (a relay's
 * primary and its workers), logged once per destination rather than once
 * per process: down when the first process loses it (with its error), still
 * down at most once per `repeatMs` (with how many failed attempts since),
 * and up again once every process that has it is connected, with how long
 * it was down and how many datapoints waited for it meanwhile.
 */
export class DestinationStateLog {
  readonly #log: Logger;
  readonly #repeatMs: number;
  readonly #now: () => number;
  readonly #groups = new Map<string, Group>();

  constructor(log: Logger, repeatMs = STILL_DOWN_LOG_MS, now: () => number = Date.now) {
    this.#log = log;
    this.#repeatMs = repeatMs;
    this.#now = now;
  }

  /** A destination changed state in process `proc` (0: the primary, or the only process). */
  report(proc: number, r: DestinationStateReport): void {
    let g = this.#groups.get(r.destination);
    if (g === undefined) {
      g = {
        states: new Map(),
        queuedAtReconnect: new Map(),
        status: "new",
        downSince: 0,
        retries: null,
      };
      this.#groups.set(r.destination, g);
    }
    if (r.state === "draining" || r.state === "closed") {
      g.states.delete(proc);
      g.queuedAtReconnect.delete(proc);
      if (g.states.size === 0) this.#groups.delete(r.destination);
      else this.#checkUp(r.destination, g);
      return;
    }
    g.states.set(proc, r.state);
    if (r.state === "backoff") this.#failed(r, g);
    else if (r.state === "connected") {
      if (g.status === "down") g.queuedAtReconnect.set(proc, r.queued);
      this.#checkUp(r.destination, g);
    }
  }

  /** Process `proc` is gone (a worker that died): its states no longer count. */
  forget(proc: number): void {
    for (const [name, g] of this.#groups) {
      g.states.delete(proc);
      g.queuedAtReconnect.delete(proc);
      if (g.states.size === 0) this.#groups.delete(name);
      else this.#checkUp(name, g);
    }
  }

  #failed(r: DestinationStateReport, g: Group): void {
    const d = r.destination;
    const why = r.error === undefined ? "" : `: ${r.error}`;
    if (g.status === "down" && g.retries !== null) {
      g.retries.note({ destination: d, error: r.error });
      return;
    }
    const first = g.status === "new";
    g.status = "down";
    g.downSince = this.#now();
    g.queuedAtReconnect.clear();
    g.retries = new ThrottledWarning(
      this.#log,
      this.#repeatMs,
      `destination ${d} still unreachable; retrying (count: failed attempts since the last line)`,
      this.#now,
    );
    g.retries.hold();
    this.#log.warn(
      { destination: d, state: "down", error: r.error, queued: r.queued },
      first
        ? `destination ${d} unreachable${why}; datapoints queue for it while polymur retries`
        : `destination ${d} down${why}; datapoints queue for it while polymur retries`,
    );
  }

  #checkUp(d: string, g: Group): void {
    if (g.status === "up") return;
    for (const s of g.states.values()) if (s !== "connected") return;
    if (g.status === "new") {
      g.status = "up";
      this.#log.info({ destination: d, state: "connected" }, `destination ${d} connected`);
      return;
    }
    const downMs = this.#now() - g.downSince;
    let queued = 0;
    for (const n of g.queuedAtReconnect.values()) queued += n;
    g.status = "up";
    g.retries = null;
    g.queuedAtReconnect.clear();
    this.#log.info(
      { destination: d, state: "connected", downMs, queued },
      `destination ${d} connected again after ${Math.round(downMs / 1000)} s, ${queued} datapoints queued meanwhile`,
    );
  }
}
