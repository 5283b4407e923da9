import { type ChildProcess, fork } from "node:child_process";
import type net from "node:net";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import type { DestinationStateLog } from "../../common/destination-state-log.ts";
import type { Logger } from "../../common/logger.ts";
import type { DestinationStats } from "../forward/destination-stats.ts";
import { type Handoff, handoffMessage, receivedCarry } from "../ingest/connection-handoff.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { mergeStats, type PipelineStats } from "../observe/pipeline-stats.ts";
import type { KeyedPoints } from "../route/aggregation.ts";
import type { RelayConfig } from "./relay-config.ts";
import type { RelayProcess } from "./relay-process.ts";
import type { FromWorker, ToWorker } from "./worker-messages.ts";
import { CpuLoad, WorkerScaling, type WorkerScalingSettings } from "./worker-scaling.ts";
import { drainWorker } from "./worker-stop.ts";

// Same extension as this module: .ts when run from source (tests), .js when compiled.
const WORKER_ENTRY = fileURLToPath(
  new URL(`./relay-worker${extname(import.meta.url)}`, import.meta.url),
);

interface Worker {
  id: number;
  child: ChildProcess;
  /** Its counters as last reported (every second, and once more at shutdown). */
  stats: PipelineStats | null;
  rejects: RejectSample[];
  /**
   * Per destination id: datapoints it found on disk that the worker it
   * replaces had left there, taken off `recovered` in each of its reports
   * (see inheritDisk).
   */
  inherited: Map<string, number>;
  /** The share of a core it used over its last second, as it reported it (CpuLoad). */
  load: number;
  /** Its "ready" came: it takes connections, unless it retires. */
  ready: boolean;
  /**
   * Dealt mode: the load no longer needs it (#shrink). It handed its
   * connections back, is dealt nothing, and exits once what it holds is
   * delivered.
   */
  retiring: boolean;
  /** It reported its stop ("done"): its exit is no death. */
  done: boolean;
}

/**
 * A relay whose primary deals the connections (RelayNode): the primary's
 * pipeline, which keeps what it is dealt and takes back what retiring
 * workers hand back. Every process runs, and takes connections, from the
 * start; while the load is low, workers retire (exit) down to `min`
 * processes in all (the primary counts), and start again while the load
 * needs them (worker-scaling.ts).
 */
export interface DealtPool {
  primary: RelayProcess;
  min: number;
  scaling?: Partial<WorkerScalingSettings>;
}

/**
 * The last counters of a worker that is gone, with what it held queued in
 * memory moved to `reason`: dropped (worker_died: it died while running) or
 * undelivered (it did not report at shutdown). That queue is lost with it;
 * its counters stay in the node's totals, which therefore never go back.
 * Returns the datapoints so moved, per destination.
 *
 * What its disk queues (--queue-dir) held is not lost: it stays in the
 * worker's directories, for the next process to open them. Those
 * datapoints stay counted as queued (`queuedLines` = `disk.lines`), as a
 * drained destination's are (Destination.drain), until the worker that
 * takes the dead one's place recovers them (inheritDisk); at shutdown, the
 * next start does.
 */
export function retireStats(
  s: PipelineStats,
  reason: "worker_died" | "undelivered",
): Record<string, number> {
  const lost: Record<string, number> = {};
  s.connections = 0;
  s.paused = false;
  for (const d of s.destinations) {
    const onDisk = Math.min(d.queuedLines, d.disk?.lines ?? 0);
    const n = d.queuedLines - onDisk;
    if (n > 0) lost[d.spec] = n;
    if (reason === "worker_died") {
      d.droppedBy.worker_died += n;
      d.dropped += n;
    } else {
      d.undelivered += n;
    }
    d.queuedLines = onDisk;
    d.queuedBytes = 0;
    markGone(d);
  }
  return lost;
}

/**
 * The rows of a retired worker (retireStats) that still count datapoints
 * left on disk as queued, by destination id.
 */
export function leftOnDisk(retired: PipelineStats): Map<string, DestinationStats> {
  const left = new Map<string, DestinationStats>();
  for (const d of retired.destinations) if (d.queuedLines > 0) left.set(d.id, d);
  return left;
}

/**
 * Makes a report of the worker that took a dead one's place (same worker
 * id, so the same directories) count once the datapoints the dead one left
 * on disk. Those are counted by both rows: the dead worker's retired row
 * counts them as routed to it (or recovered by it) and still queued; the new
 * worker's, as recovered (its disk queue held them at start) and then
 * forwarded, queued or dropped. Summed, they would be counted twice on the
 * left of the balance (routed + recovered = forwarded + queued + dropped +
 * undelivered + rerouted) and the node's queue would never empty. So when
 * the new worker first reports a destination with its disk queue open
 * (`disk` set, its `recovered` counted):
 *
 * - the retired row lets go of them: its queued drops to 0. Those the new
 *   worker did not find (they left the disk in the dead worker's last
 *   moments, after its last report) are counted as its memory queue was:
 *   dropped, worker_died (its last known state);
 * - the new worker's `recovered` leaves out the ones it inherited, in this
 *   report and every later one (`inherited`): for the node they were
 *   routed once already, to the dead worker. `recovered` stays what the
 *   node's disk queues held when the node started.
 *
 * Each row alone no longer balances; the destination's rows summed over the
 * group (mergeStats, as /stats, /metrics and the control plane show them)
 * do, and no counter goes below 0 or back. `left` (from leftOnDisk) loses
 * the rows taken over.
 */
export function inheritDisk(
  left: Map<string, DestinationStats>,
  inherited: Map<string, number>,
  report: PipelineStats,
): void {
  for (const d of report.destinations) {
    const row = left.get(d.id);
    if (row !== undefined && d.disk !== undefined) {
      left.delete(d.id);
      const found = Math.min(row.queuedLines, d.recovered - (inherited.get(d.id) ?? 0));
      const gone = row.queuedLines - found;
      row.droppedBy.worker_died += gone;
      row.dropped += gone;
      row.queuedLines = 0;
      if (row.disk !== undefined) row.disk = { ...row.disk, lines: 0, bytes: 0, oldestAgeMs: 0 };
      inherited.set(d.id, (inherited.get(d.id) ?? 0) + found);
    }
    d.recovered -= inherited.get(d.id) ?? 0;
  }
}

function markGone(d: DestinationStats): void {
  d.removed = true;
  d.state = "closed";
}

function total(r: Record<string, number>): number {
  return Object.values(r).reduce((a, b) => a + b, 0);
}

/**
 * Worker processes that each run a RelayProcess (listener and router) on the same TCP port
 * (SO_REUSEPORT: the kernel spreads connections across them), so one polymur
 * uses every core it is given. The primary runs one too; workers report
 * their counters every second and are restarted if they die.
 */
export class WorkerPool {
  readonly #log: Logger;
  readonly #count: number;
  #workers: Worker[] = [];
  /** The last counters of workers that died, their memory queues counted as dropped (worker_died). */
  #retired: PipelineStats[] = [];
  /**
   * By worker id: the retired rows of a dead worker whose disk queues still
   * hold datapoints, until the worker that replaces it opens them (inheritDisk).
   */
  #leftOnDisk = new Map<number, Map<string, DestinationStats>>();
  #config: RelayConfig;
  #share: number;
  #port = 0;
  #picklePort: number | null = null;
  #stopping = false;
  /** Dealt mode (see DealtPool), or null: every worker listens on the port itself and all run from the start. */
  readonly #dealt: DealtPool | null;
  readonly #scaling: WorkerScaling | null;
  #tick: NodeJS.Timeout | null = null;
  #cpu = new CpuLoad();
  /** Whose turn it is in deal() (live.length: the primary's). */
  #turn = 0;
  /** A worker started for the load (#grow) is not ready yet. */
  #growing = false;
  /**
   * The counters of the workers that retired, summed (one row set however
   * often workers come and go): their datapoints stay in the node's totals.
   */
  #gone: PipelineStats | null = null;

  readonly #onAggregate: (points: KeyedPoints) => void;
  readonly #states: DestinationStateLog | null;

  /**
   * `onAggregate`: where the points the workers' aggregate rules take go (the
   * primary's router). `states`: the group's destination state log, which
   * the workers report to (process id = worker id). Default: none (workers'
   * reports are dropped).
   */
  constructor(
    count: number,
    config: RelayConfig,
    share: number,
    log: Logger,
    onAggregate: (points: KeyedPoints) => void = () => {},
    states: DestinationStateLog | null = null,
    dealt: DealtPool | null = null,
  ) {
    this.#dealt = dealt;
    this.#scaling = dealt === null ? null : new WorkerScaling(dealt.min, count + 1, dealt.scaling);
    this.#onAggregate = onAggregate;
    this.#states = states;
    this.#count = count;
    this.#config = config;
    this.#share = share;
    this.#log = log;
  }

  /**
   * Starts every worker: each takes connections once ready, so a burst at
   * start finds every process running. In dealt mode the scaling then looks
   * at the load every tick.
   */
  async start(port: number, picklePort: number | null = null): Promise<void> {
    this.#port = port;
    this.#picklePort = picklePort;
    await Promise.all(Array.from({ length: this.#count }, (_, i) => this.#spawn(i + 1)));
    if (this.#dealt !== null) this.#reshare(this.#dealt.primary);
    if (this.#scaling !== null) {
      this.#cpu = new CpuLoad();
      this.#tick = setInterval(() => this.#scale(), this.#scaling.tickMs);
      this.#tick.unref();
    }
  }

  /** How many processes take connections now, the primary included. */
  get running(): number {
    return 1 + this.#taking().length;
  }

  /**
   * The workers that take connections: ready, not retiring, and reachable
   * (a worker that just died is until its exit is handled: a connection
   * sent to it would be closed unread).
   */
  #taking(): Worker[] {
    return this.#workers.filter((w) => w.ready && !w.retiring && w.child.connected);
  }

  /**
   * Dealt mode: where a new connection goes, in turn over the processes
   * taking connections (as Node's cluster deals them): false, the primary
   * keeps it; true, it was sent to a worker. Not by fewest connections: a
   * worker's count is known from its last report, up to a second old, so a
   * burst of short connections would all stay with the primary (measured:
   * 148,000 of 160,000 datapoints over 80 connections).
   */
  deal(socket: net.Socket, listener: string): boolean {
    if (this.#dealt === null) return false;
    const live = this.#taking();
    this.#turn = (this.#turn + 1) % (live.length + 1);
    const w = live[this.#turn];
    if (w === undefined) return false;
    this.#send(w, { socket, listener, carry: null, fresh: true });
    return true;
  }

  #send(w: Worker, h: Handoff): void {
    w.child.send(handoffMessage(h), h.socket, { keepOpen: false }, (err: Error | null) => {
      // The socket is closed here either way: its sender reconnects.
      if (err !== null)
        this.#log.error(
          { err, worker: w.id },
          "a sender connection could not be handed to a worker",
        );
    });
  }

  /**
   * Gives every running process its share of the queue bounds: 1 / the
   * processes running. A worker starts with it (its start message).
   */
  #reshare(primary: RelayProcess): void {
    this.#share = 1 / this.running;
    this.#primaryShare(primary);
    for (const w of this.#workers) {
      w.child.send({ t: "share", share: this.#share } satisfies ToWorker, noop);
    }
  }

  /**
   * The primary takes the group's share once its queues fit in it: a
   * smaller bound must not drop (or spill) what the primary already holds,
   * so while it holds more (a backlog when a worker started), it keeps its
   * larger share and the relay holds more than its bound until the primary's
   * queues drain to the new one (each tick looks again).
   */
  #primaryShare(primary: RelayProcess): void {
    const now = primary.router.share;
    if (now === this.#share) return;
    if (this.#share > now || primary.router.fullest <= this.#share / now)
      primary.setShare(this.#share);
  }

  /** One look at the load: start a worker, retire one, or neither. */
  #scale(): void {
    const scaling = this.#scaling;
    const primary = this.#dealt?.primary;
    if (scaling === null || primary === undefined || this.#stopping) return;
    const own = this.#cpu.sample();
    const live = this.#taking();
    const step = scaling.decide([own, ...live.map((w) => w.load)]);
    this.#primaryShare(primary);
    if (step > 0) this.#grow(primary);
    else if (step < 0) this.#shrink(live);
  }

  /**
   * Starts a worker under the lowest free id (one that retired), if there is
   * one and no other is starting. Once ready it takes its share of the
   * primary's connections (the fastest senders spread evenly) and, from then
   * on, its turn in deal(). Until then the primary goes on with them: a
   * worker starts in about a quarter of a second (bench/RESULTS.md).
   */
  #grow(primary: RelayProcess): void {
    if (this.#growing) return;
    let id = 1;
    while (this.#workers.some((w) => w.id === id)) id++;
    if (id > this.#count) return;
    this.#growing = true;
    const t0 = performance.now();
    this.#spawn(id).then(
      () => {
        this.#growing = false;
        const w = this.#workers.find((x) => x.id === id);
        if (this.#stopping || w === undefined || !w.ready) return;
        this.#reshare(primary);
        const moved = primary.listener.release(1 / this.running);
        for (const h of moved) this.#send(w, h);
        this.#scaling?.reset();
        const startMs = Math.round(performance.now() - t0);
        this.#log.info(
          {
            worker: id,
            workerPid: w.child.pid,
            processes: this.running,
            moved: moved.length,
            startMs,
          },
          `load: relay worker ${id} started in ${startMs} ms and takes sender connections, ${moved.length} moved to it`,
        );
      },
      (err: unknown) => {
        this.#growing = false;
        this.#log.error({ err, worker: id }, `relay worker ${id} did not start`);
      },
    );
  }

  /**
   * The newest worker retires, if it can without loss: it holds nothing
   * queued (its last report) and no TLS connection (a TLS session cannot
   * move). It hands its connections back to the primary, is dealt nothing
   * more, and exits once what it still holds is delivered; its counters
   * stay in the node's (#gone). A process that does not run costs no
   * memory: the idle relay is the primary alone (with the default
   * --workers-min).
   */
  #shrink(live: Worker[]): void {
    const primary = this.#dealt?.primary;
    const w = live.reduce<Worker | null>((a, b) => (a === null || b.id > a.id ? b : a), null);
    const s = w?.stats;
    if (primary === undefined || w === null || w === undefined || s === null || s === undefined)
      return;
    const queued = s.destinations.some((d) => d.queuedLines > 0);
    const tls = (s.listeners ?? []).some((l) => l.transport === "tls" && l.connections > 0);
    if (queued || tls) return;
    w.retiring = true;
    w.child.send({ t: "retire" } satisfies ToWorker, noop);
    this.#reshare(primary);
    this.#scaling?.reset();
    this.#log.info(
      { worker: w.id, workerPid: w.child.pid, processes: this.running },
      `load: relay worker ${w.id} hands its sender connections back to the primary and retires`,
    );
  }

  /** A retired worker exited after its report ("done"): its counters join #gone. */
  #onRetired(w: Worker): void {
    this.#workers = this.#workers.filter((x) => x !== w);
    this.#states?.forget(w.id);
    if (w.stats !== null) {
      // Nothing queued is left (it exited once it held nothing): this only marks its rows gone.
      retireStats(w.stats, "undelivered");
      this.#gone = this.#gone === null ? w.stats : mergeStats([this.#gone, w.stats]);
    }
    this.#log.info(
      { worker: w.id, processes: this.running },
      `relay worker ${w.id} retired: it delivered what it held and exited`,
    );
  }

  #spawn(id: number): Promise<void> {
    const child = fork(WORKER_ENTRY, [], {
      env: { ...process.env, POLYMUR_WORKER_ID: String(id) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
    });
    const w: Worker = {
      id,
      child,
      stats: null,
      rejects: [],
      inherited: new Map(),
      load: 0,
      ready: false,
      retiring: false,
      done: false,
    };
    this.#workers.push(w);
    return new Promise<void>((resolve, reject) => {
      child.on("message", (m: FromWorker, socket?: net.Socket) => {
        if (m.t === "conn") {
          // A sender of a retiring worker: the primary goes on with it.
          if (socket === undefined) return;
          const primary = this.#dealt?.primary;
          if (primary === undefined) socket.destroy();
          else primary.listener.adopt(socket, m.listener, receivedCarry(m), m.fresh);
        } else if (m.t === "ready") {
          w.ready = true;
          resolve();
        } else if (m.t === "done") w.done = true;
        else if (m.t === "error") reject(new Error(`worker ${id}: ${m.message}`));
        else if (m.t === "aggregate") this.#onAggregate(m.points);
        else if (m.t === "destination") this.#states?.report(id, m.report);
        else if (m.t === "stats") {
          const left = this.#leftOnDisk.get(id);
          inheritDisk(left ?? new Map(), w.inherited, m.stats);
          if (left?.size === 0) this.#leftOnDisk.delete(id);
          w.stats = m.stats;
          w.rejects = m.rejects;
          w.load = m.load;
        }
      });
      child.once("exit", (code, signal) => {
        // During a shutdown, shutdown() accounts for every worker.
        if (this.#stopping) return;
        if (w.retiring && w.done) {
          this.#onRetired(w);
          return;
        }
        this.#workers = this.#workers.filter((x) => x !== w);
        this.#states?.forget(id);
        const lost = w.stats === null ? {} : retireStats(w.stats, "worker_died");
        let kept = 0;
        if (w.stats !== null) {
          this.#retired.push(w.stats);
          const left = leftOnDisk(w.stats);
          for (const d of left.values()) kept += d.queuedLines;
          if (left.size > 0) {
            const all = this.#leftOnDisk.get(id) ?? new Map<string, DestinationStats>();
            for (const [k, d] of left) all.set(k, d);
            this.#leftOnDisk.set(id, all);
          }
        }
        const n = total(lost);
        const onDisk = kept === 0 ? "" : `; ${kept} on disk wait for the worker that replaces it`;
        this.#log.error(
          {
            worker: id,
            code,
            signal,
            lost,
            reason: "worker_died",
            ...(kept === 0 ? {} : { onDisk: kept }),
          },
          `relay worker ${id} exited (${signal ?? `code ${code}`}); ${n} datapoints it had queued${kept === 0 ? "" : " in memory"} are lost (counted as dropped, reason worker_died)${onDisk}; its senders reconnect to the other processes; restarting it`,
        );
        reject(new Error(`worker ${id} exited with ${code ?? signal}`));
        setTimeout(() => {
          // A worker respawned during shutdown would take data nobody drains.
          if (this.#stopping) return;
          void this.#spawn(id).catch((err) => this.#log.error({ err }, "worker restart failed"));
        }, 500).unref();
      });
      const msg: ToWorker = {
        t: "start",
        config: this.#config,
        share: this.#share,
        port: this.#port,
        picklePort: this.#picklePort,
        bind: this.#dealt === null,
      };
      child.send(msg);
    });
  }

  apply(config: RelayConfig): void {
    this.#config = config;
    for (const w of this.#workers) w.child.send({ t: "apply", config } satisfies ToWorker);
  }

  /** The counters of every worker, live, stopped, retired or dead. */
  stats(): PipelineStats[] {
    const live = this.#workers.flatMap((w) => (w.stats === null ? [] : [w.stats]));
    return [...live, ...this.#retired, ...(this.#gone === null ? [] : [this.#gone])];
  }

  rejects(): RejectSample[] {
    return this.#workers.flatMap((w) => w.rejects);
  }

  /**
   * Asks every worker to drain and exit; resolves with their undelivered
   * counts. A worker that exits without its report (killed, or hung and
   * killed after the deadline) is accounted for by its last counters: what
   * it had queued is counted as undelivered.
   */
  async shutdown(deadlineMs: number): Promise<Array<Record<string, number>>> {
    this.#stopping = true;
    if (this.#tick !== null) clearInterval(this.#tick);
    return Promise.all(this.#workers.map((w) => this.#stop(w, deadlineMs)));
  }

  #stop(w: Worker, deadlineMs: number): Promise<Record<string, number>> {
    return drainWorker(w.child, deadlineMs, () => {
      const lost = w.stats === null ? {} : retireStats(w.stats, "undelivered");
      this.#log.error(
        { worker: w.id, undelivered: lost },
        `relay worker ${w.id} exited without its shutdown report (killed, or hung past the deadline); its last known queue, ${total(lost)} datapoints, is counted as undelivered`,
      );
      return lost;
    });
  }
}

function noop(): void {}
