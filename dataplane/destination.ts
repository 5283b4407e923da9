import { EventEmitter } from "node:events";
import net from "node:net";
import { backoffDelay } from "../common/backoff.ts";
import { ByteQueue } from "./byte-queue.ts";
import type { DestinationSpec } from "./destination-spec.ts";

/** What to do with new datapoints when a destination's queue is full. */
export type OverflowPolicy = "drop-oldest" | "drop-newest" | "block";
export const OVERFLOW_POLICIES: readonly OverflowPolicy[] = ["drop-oldest", "drop-newest", "block"];

export type DestinationState = "connecting" | "connected" | "backoff" | "draining" | "closed";

export interface DestinationOptions {
  /** Queue bound in bytes. Default 128 MiB. */
  queueBytes?: number;
  /** Overflow policy. Default "drop-oldest" (see docs/queues.md for why). */
  overflow?: OverflowPolicy;
  /**
   * Bytes of the most recently written data kept after the write, and written
   * again when the connection fails, because a TCP peer that dies loses what
   * sat in the two socket buffers. 0 disables. Default 4 MiB. Resent lines are
   * duplicates, which Graphite stores idempotently (same name, timestamp, value).
   */
  resendBytes?: number;
  /** First reconnect delay. Default 100 ms. */
  backoffMinMs?: number;
  /** Reconnect delay cap. Default 10 s. */
  backoffMaxMs?: number;
  /** Connect attempt timeout. Default 5 s. */
  connectTimeoutMs?: number;
  /** Bytes handed to the socket per write batch. Default 256 KiB. */
  batchBytes?: number;
  /**
   * Longest wait for more data before writing less than a quarter batch.
   * Default 5 ms; 0 writes at the end of every event-loop turn.
   */
  flushDelayMs?: number;
}

export interface DestinationStats {
  id: string;
  spec: string;
  state: DestinationState;
  /** Datapoints written to the socket for the first time. */
  forwarded: number;
  /** Datapoints written again after a failed connection. */
  resent: number;
  /** Datapoints dropped because the queue was full. */
  dropped: number;
  queuedLines: number;
  queuedBytes: number;
  connects: number;
  failures: number;
  lastError: string | undefined;
  /** Taken out of the hash ring (--eject-after); set by the engine. */
  ejected?: boolean;
}

interface Batch {
  chunks: Buffer[];
  lines: number[];
  bytes: number;
  count: number;
}

/**
 * One downstream TCP destination: a bounded queue, a connection state
 * machine (connect → connected → backoff → connect …, DNS re-resolved on
 * every connect), batched writes that wait for 'drain', and a resend window.
 *
 * Events: "state" (state), "unblocked" (queue fell below half after being full
 * under the block policy), "error" is never emitted (failures are counted and
 * retried).
 */
export class Destination extends EventEmitter {
  readonly spec: DestinationSpec;
  #queue = new ByteQueue();
  #queueBytes: number;
  #overflow: OverflowPolicy;
  #resendBytes: number;
  #backoffMin: number;
  #backoffMax: number;
  #connectTimeout: number;
  #batchBytes: number;
  #flushDelay: number;
  #pumpTimer: NodeJS.Timeout | null = null;

  #state: DestinationState = "backoff";
  #socket: net.Socket | null = null;
  #waitingDrain = false;
  #pumpScheduled = false;
  #attempt = 0;
  /** Failed connection attempts since the last successful connect. */
  #failStreak = 0;
  #timer: NodeJS.Timeout | null = null;
  /** Handed to the socket, write callback pending. */
  #inflight: Batch[] = [];
  /** Written, kept for resending. */
  #sent: Batch[] = [];
  #sentBytes = 0;
  /** Lines of the queue front that are resends (so they are counted as such). */
  #resendPending = 0;
  #blocked = false;
  #closing = false;
  #drainWaiters: Array<() => void> = [];

  #forwarded = 0;
  #resent = 0;
  #dropped = 0;
  #connects = 0;
  #failures = 0;
  #lastError: string | undefined;

  constructor(spec: DestinationSpec, options: DestinationOptions = {}) {
    super();
    this.spec = spec;
    this.#queueBytes = options.queueBytes ?? 128 * 1024 * 1024;
    this.#overflow = options.overflow ?? "drop-oldest";
    this.#resendBytes = options.resendBytes ?? 4 * 1024 * 1024;
    this.#backoffMin = options.backoffMinMs ?? 100;
    this.#backoffMax = options.backoffMaxMs ?? 10_000;
    this.#connectTimeout = options.connectTimeoutMs ?? 5_000;
    this.#batchBytes = options.batchBytes ?? 256 * 1024;
    this.#flushDelay = options.flushDelayMs ?? 5;
  }

  /** Starts connecting. */
  start(): void {
    this.#connect();
  }

  get state(): DestinationState {
    return this.#state;
  }

  /** True while the queue is over its bound under the block policy: ingest should pause. */
  get blocking(): boolean {
    return this.#blocked;
  }

  /** Changes queue bound and policy in place (a reload that keeps this destination). */
  reconfigure(options: DestinationOptions): void {
    if (options.queueBytes !== undefined) this.#queueBytes = options.queueBytes;
    if (options.overflow !== undefined) this.#overflow = options.overflow;
    if (options.resendBytes !== undefined) this.#resendBytes = options.resendBytes;
    if (options.backoffMinMs !== undefined) this.#backoffMin = options.backoffMinMs;
    if (options.backoffMaxMs !== undefined) this.#backoffMax = options.backoffMaxMs;
    if (options.batchBytes !== undefined) this.#batchBytes = options.batchBytes;
    if (options.flushDelayMs !== undefined) this.#flushDelay = options.flushDelayMs;
    this.#checkUnblocked();
    this.#enforceBound();
  }

  stats(): DestinationStats {
    const inflight = this.#inflightLines();
    return {
      id: this.spec.id,
      spec: this.spec.spec,
      state: this.#state,
      forwarded: this.#forwarded,
      resent: this.#resent,
      dropped: this.#dropped,
      queuedLines: this.#queue.lines + inflight,
      queuedBytes: this.#queue.bytes,
      connects: this.#connects,
      failures: this.#failures,
      lastError: this.#lastError,
    };
  }

  /**
   * Queues whole lines. `chunk` must not be modified afterwards (it may be
   * shared with other destinations).
   */
  enqueue(chunk: Buffer, lines: number): void {
    if (this.#state === "closed") {
      this.#dropped += lines;
      return;
    }
    if (this.#overflow === "drop-newest" && this.#queue.bytes + chunk.length > this.#queueBytes) {
      this.#dropped += lines;
      return;
    }
    this.#queue.push(chunk, lines);
    this.#enforceBound();
    this.#schedulePump();
  }

  #enforceBound(): void {
    if (this.#queue.bytes <= this.#queueBytes) return;
    if (this.#overflow === "block") {
      if (!this.#blocked) {
        this.#blocked = true;
        this.emit("blocked");
      }
      return;
    }
    if (this.#overflow === "drop-oldest") {
      while (this.#queue.bytes > this.#queueBytes && this.#queue.length > 1) {
        const n = this.#queue.dropOldest();
        if (this.#resendPending > 0) {
          const r = Math.min(n, this.#resendPending);
          this.#resendPending -= r;
        }
        this.#dropped += n;
      }
    }
  }

  #checkUnblocked(): void {
    if (
      this.#blocked &&
      (this.#overflow !== "block" || this.#queue.bytes <= this.#queueBytes / 2)
    ) {
      this.#blocked = false;
      this.emit("unblocked");
    }
  }

  #schedulePump(): void {
    if (this.#socket === null || this.#waitingDrain) return;
    if (this.#state !== "connected" && this.#state !== "draining") return;
    // Deferred so that everything queued meanwhile goes out in one write. With
    // a quarter batch waiting, that is the end of this event-loop turn (as
    // ioredis autoPipelining does); with less, up to flushDelayMs later, so
    // that a trickle from many senders becomes a few writes rather than one per
    // read, at the cost of at most that much latency.
    const now = this.#queue.bytes >= this.#batchBytes / 4 || this.#closing || this.#flushDelay <= 0;
    if (this.#pumpTimer !== null) {
      if (!now) return;
      clearTimeout(this.#pumpTimer);
      this.#pumpTimer = null;
    } else if (this.#pumpScheduled) {
      return;
    }
    this.#pumpScheduled = true;
    if (now) setImmediate(pump, this);
    else this.#pumpTimer = setTimeout(pump, this.#flushDelay, this);
  }

  /** @internal called from setImmediate */
  _pump(): void {
    this.#pumpScheduled = false;
    if (this.#pumpTimer !== null) clearTimeout(this.#pumpTimer);
    this.#pumpTimer = null;
    const socket = this.#socket;
    if (socket === null || this.#waitingDrain) return;
    while (this.#queue.length > 0) {
      const batch: Batch = { chunks: [], lines: [], bytes: 0, count: 0 };
      batch.count = this.#queue.shiftInto(batch.chunks, batch.lines, this.#batchBytes);
      for (const c of batch.chunks) batch.bytes += c.length;
      if (batch.chunks.length > 1) {
        // One copy into one buffer beats a write per chunk: each socket.write
        // costs a trip through the stream machinery, and the chunks (views of
        // read buffers, often small) would pin their parents while queued.
        batch.chunks = [Buffer.concat(batch.chunks, batch.bytes)];
        batch.lines = [batch.count];
      }
      this.#inflight.push(batch);
      const ok = socket.write(batch.chunks[0]!, (err) => this.#written(batch, err));
      if (!ok) {
        this.#waitingDrain = true;
        break;
      }
    }
    this.#checkUnblocked();
  }

  #written(batch: Batch, err: Error | null | undefined): void {
    if (err) return; // the socket's 'close' handler requeues everything in flight
    const i = this.#inflight.indexOf(batch);
    if (i < 0) return;
    this.#inflight.splice(i, 1);
    const resent = Math.min(this.#resendPending, batch.count);
    this.#resendPending -= resent;
    this.#resent += resent;
    this.#forwarded += batch.count - resent;
    if (this.#resendBytes > 0) {
      this.#sent.push(batch);
      this.#sentBytes += batch.bytes;
      while (this.#sentBytes > this.#resendBytes && this.#sent.length > 1) {
        this.#sentBytes -= this.#sent.shift()!.bytes;
      }
    }
    if (this.#inflight.length === 0 && this.#queue.length === 0) this.#notifyDrained();
  }

  #connect(): void {
    if (this.#closing && this.#queue.length === 0 && this.#inflight.length === 0) {
      this.#setState("closed");
      return;
    }
    this.#setState(this.#closing ? "draining" : "connecting");
    const socket = net.connect({
      host: this.spec.host,
      port: this.spec.port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
    });
    this.#socket = socket;
    const timer = setTimeout(() => {
      socket.destroy(new Error(`connect timeout after ${this.#connectTimeout} ms`));
    }, this.#connectTimeout);
    socket.once("connect", () => {
      clearTimeout(timer);
      this.#attempt = 0;
      this.#failStreak = 0;
      this.#connects++;
      this.#lastError = undefined;
      this.#setState(this.#closing ? "draining" : "connected");
      this.#schedulePump();
    });
    socket.on("drain", () => {
      this.#waitingDrain = false;
      this.#schedulePump();
    });
    // Graphite receivers send nothing; read and discard so nothing accumulates.
    socket.on("data", noop);
    socket.on("error", (err) => {
      this.#lastError = err.message;
    });
    socket.once("close", () => {
      clearTimeout(timer);
      this.#onClose(socket);
    });
  }

  #onClose(socket: net.Socket): void {
    if (this.#socket !== socket) return;
    this.#socket = null;
    this.#waitingDrain = false;
    this.#pumpScheduled = false;
    if (this.#pumpTimer !== null) clearTimeout(this.#pumpTimer);
    this.#pumpTimer = null;
    if (this.#state === "closed") return;
    this.#failures++;
    this.#failStreak++;
    // Resend: what was written recently (the peer may not have read it) and what
    // was still in flight, in the original order, ahead of the queue.
    const sent = this.#sent;
    const back = [...sent, ...this.#inflight];
    this.#sent = [];
    this.#sentBytes = 0;
    this.#inflight = [];
    if (back.length > 0) {
      const chunks: Buffer[] = [];
      const lines: number[] = [];
      for (const b of back) {
        chunks.push(...b.chunks);
        lines.push(...b.lines);
      }
      this.#queue.unshiftAll(chunks, lines);
      // The queue now starts with the sent batches (counted as forwarded once
      // already, so their next write counts as a resend), then the in-flight
      // ones, then what was queued; #resendPending counted resend lines at the
      // front of (in flight, queue), which now follow the sent batches.
      for (const b of sent) this.#resendPending += b.count;
    }
    const delay = this.#nextDelay();
    this.#setState(this.#closing ? "draining" : "backoff");
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#connect();
    }, delay);
  }

  /** Failed connection attempts since the last successful connect. */
  get failStreak(): number {
    return this.#failStreak;
  }

  /**
   * Removes and returns everything queued (including what a failed connection
   * gave back), oldest first, for re-routing elsewhere. Only while there is no
   * connection, so nothing taken is also being written.
   */
  takeQueued(): Array<{ chunk: Buffer; lines: number }> {
    if (this.#socket !== null && this.#state === "connected") return [];
    const chunks: Buffer[] = [];
    const lines: number[] = [];
    this.#queue.shiftInto(chunks, lines, Number.POSITIVE_INFINITY);
    this.#resendPending = 0;
    this.#checkUnblocked();
    return chunks.map((chunk, i) => ({ chunk, lines: lines[i]! }));
  }

  #nextDelay(): number {
    const delay = backoffDelay(this.#attempt, this.#backoffMin, this.#backoffMax);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    return delay;
  }

  #inflightLines(): number {
    let n = 0;
    for (const b of this.#inflight) n += b.count;
    return n;
  }

  #setState(s: DestinationState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.emit("state", s);
  }

  #notifyDrained(): void {
    const w = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const f of w) f();
  }

  /**
   * Stops taking new data and delivers what is queued, for up to `deadlineMs`.
   * Resolves with the number of datapoints that could not be delivered (0 when
   * everything was written to the socket).
   */
  async drain(deadlineMs: number): Promise<number> {
    this.#closing = true;
    if (this.#state === "connected") this.#setState("draining");
    const done = new Promise<void>((resolve) => {
      if (this.#queue.length === 0 && this.#inflight.length === 0) resolve();
      else this.#drainWaiters.push(resolve);
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
    });
    await Promise.race([done, timeout]);
    clearTimeout(timer);
    const left = this.#queue.lines + this.#inflightLines();
    await this.close();
    return left;
  }

  /** Closes at once; queued data is discarded (counted as dropped by the caller's choice). */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#setState("closed");
    const socket = this.#socket;
    this.#socket = null;
    if (socket !== null) {
      await new Promise<void>((resolve) => {
        if (socket.destroyed) return resolve();
        socket.once("close", () => resolve());
        // end() sends what the kernel still has after our last write; destroy
        // if the peer does not close in time.
        socket.end();
        setTimeout(() => socket.destroy(), 2_000).unref();
      });
    }
    this.#queue.clear();
    this.#inflight = [];
    this.#sent = [];
    this.#notifyDrained();
  }
}

function pump(d: Destination): void {
  d._pump();
}

function noop(): void {}
