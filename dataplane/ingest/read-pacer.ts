import type net from "node:net";

/** The default of --read-wait: how long a slow sender's datapoints may wait, at most, before they are routed. */
export const DEFAULT_READ_WAIT_MS = 1_000;

/** What one read should take from a slow sender: enough that its fixed cost is small beside the lines. */
const TARGET_BYTES = 16 * 1024;

/** The pacer's clock step: parked connections are resumed on these ticks. */
const TICK_MS = 25;

/** A connection whose data would fill TARGET_BYTES in less than this is read at once. */
const MIN_PARK_MS = 2 * TICK_MS;

/** What a parked socket's stream calls to ask for data: nothing (see park()). */
function parkedRead(): void {}

/** Node's own parts of a net.Socket that parking reaches. */
interface SocketInternals {
  _handle: { reading: boolean; readStop(): number } | null;
  _readableState: { reading: boolean };
  _read?: () => void;
}

/**
 * Gives `socket` the one-byte read buffer pacing needs (net.createServer's
 * `highWaterMark: 1`): a socket sent from another process is made by Node
 * with the default one, which a paused stream keeps reading into, a read per
 * write. Node's stream state is reached for it: no option sets it there.
 */
export function oneByteBuffer(socket: net.Socket): void {
  const state = (socket as unknown as { _readableState?: { highWaterMark: number } })
    ._readableState;
  if (state !== undefined) state.highWaterMark = 1;
}

/** Per connection: the bytes read since `since` (ms, performance.now()). */
interface Pace {
  since: number;
  bytes: number;
}

/**
 * Reads slow senders in fewer, larger reads. Every read from a connection is
 * an event-loop turn with a fixed cost (the wake-up, the read itself, the
 * stream's and the framer's work) that at low rates is most of polymur's
 * CPU: 50 connections sending 300 lines a second each, one write every
 * 10 ms, cost a read per write. After a read, a connection whose data rate
 * would take more than MIN_PARK_MS to fill TARGET_BYTES is not read again
 * for about that long (at most `waitMs` less a tick): its writes gather in
 * the kernel's receive buffer and the next read takes them all. A
 * connection that sends faster, and every connection while ingest is
 * paused, is read as before; nothing is dropped or reordered, and TCP itself
 * holds what waits.
 *
 * A parked connection is not read at all until its tick (park()): the
 * first byte it sends after a read waits at most one parking period, and the
 * tick it is due on, so at most `waitMs`.
 */
export class ReadPacer {
  readonly #maxParkMs: number;
  readonly #paces = new WeakMap<net.Socket, Pace>();
  /** Parked connections by the tick they are due on. */
  readonly #due = new Map<number, net.Socket[]>();
  #timer: NodeJS.Timeout | null = null;
  #tick = 0;
  #holding = true;

  /** `waitMs`: the longest a datapoint waits (a parking period and a tick); at least 3 ticks. */
  constructor(waitMs: number) {
    this.#maxParkMs = Math.max(MIN_PARK_MS, waitMs - TICK_MS);
  }

  /** Starts pacing `socket` (it was just accepted). */
  track(socket: net.Socket): void {
    this.#paces.set(socket, { since: performance.now(), bytes: 0 });
  }

  /** Stops pacing `socket` (it moved to another process): a parked one is not resumed. */
  untrack(socket: net.Socket): void {
    this.#paces.delete(socket);
  }

  /** After a read of `bytes` from `socket`: parks it if it is slow (pauses it until its tick). */
  read(socket: net.Socket, bytes: number): void {
    const p = this.#paces.get(socket);
    if (p === undefined || !this.#holding) return;
    p.bytes += bytes;
    const now = performance.now();
    const elapsed = now - p.since;
    if (elapsed < TICK_MS) return; // too soon to tell its rate
    // How long it takes this connection to send TARGET_BYTES.
    const fill = p.bytes > 0 ? (TARGET_BYTES * elapsed) / p.bytes : Number.POSITIVE_INFINITY;
    p.since = now;
    p.bytes = 0;
    if (fill < MIN_PARK_MS) return;
    const ticks = Math.ceil(Math.min(fill, this.#maxParkMs) / TICK_MS);
    park(socket);
    const at = this.#tick + ticks;
    const list = this.#due.get(at);
    if (list === undefined) this.#due.set(at, [socket]);
    else list.push(socket);
    this.#timer ??= setInterval(() => this.#onTick(), TICK_MS);
  }

  #onTick(): void {
    this.#tick++;
    const list = this.#due.get(this.#tick);
    if (list !== undefined) {
      this.#due.delete(this.#tick);
      for (const s of list) {
        unpark(s);
        if (this.#holding && !s.destroyed && this.#paces.has(s)) s.resume();
      }
    }
    if (this.#due.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  /**
   * Stops (false) or restarts (true) parking. Stopping forgets who is
   * parked without resuming them: the caller resumes (or pauses) every
   * connection itself (ingest paused, resumed, or closing).
   */
  hold(on: boolean): void {
    this.#holding = on;
    if (on) return;
    for (const list of this.#due.values()) for (const s of list) unpark(s);
    this.#due.clear();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

/**
 * Stops reading from `socket` now: paused, its handle stopped, and its
 * stream unable to start it again until unpark() (a paused stream with an
 * empty buffer asks for one more read on the next tick, and a socket's
 * _read restarts its handle). So a parked connection costs no read at all
 * until its tick, and what it sends meanwhile waits in the kernel.
 */
function park(socket: net.Socket): void {
  socket.pause();
  const s = socket as unknown as SocketInternals;
  if (s._handle?.reading) {
    s._handle.reading = false;
    s._handle.readStop();
  }
  s._read = parkedRead;
}

/** Lets `socket`'s stream read again (resume() then starts its handle). */
function unpark(socket: net.Socket): void {
  const s = socket as unknown as SocketInternals;
  if (s._read !== parkedRead) return;
  delete s._read;
  s._readableState.reading = false;
}
