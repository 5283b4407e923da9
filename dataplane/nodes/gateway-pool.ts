import { type ChildProcess, fork } from "node:child_process";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import type { DestinationStateLog } from "../../common/destination-state-log.ts";
import type { Logger } from "../../common/logger.ts";
import type { DestinationStats } from "../forward/destination-stats.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { ApiKey } from "../link/gateway/api-keys.ts";
import type { ClaimBoard, ClaimsToPrimary } from "../link/gateway/claim-board.ts";
import {
  type GatewayCountersSnapshot,
  retireGatewayCounters,
} from "../link/gateway/gateway-counters.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { KeyedPoints } from "../route/aggregation.ts";
import type { RouterConfig } from "../route/router.ts";
import type {
  FromGatewayWorker,
  ToGatewayWorker,
  WireKey,
  WorkerGatewayOptions,
} from "./gateway-messages.ts";
import type { GatewayOptions } from "./gateway-options.ts";
import { inheritDisk, leftOnDisk, retireStats } from "./worker-pool.ts";
import { drainWorker } from "./worker-stop.ts";

// Same extension as this module: .ts when run from source (tests), .js when compiled.
const EXT = extname(import.meta.url);
const WORKER_ENTRY = fileURLToPath(new URL(`./gateway-worker${EXT}`, import.meta.url));
// From source, the worker's modules (generated protobuf code) have enums: more than type stripping.
const EXEC_ARGV =
  EXT === ".ts" ? [...process.execArgv, "--experimental-transform-types"] : undefined;

interface Worker {
  /** Its process number (1…): its disk queue directories. */
  id: number;
  /** Its number on the ClaimBoard: new for every process, so a restarted one inherits no claim. */
  board: number;
  child: ChildProcess;
  /** Its counters as last reported (every second, and once more at shutdown). */
  stats: PipelineStats | null;
  gateway: GatewayCountersSnapshot | null;
  rejects: RejectSample[];
  /** See WorkerPool: datapoints found on disk that the worker it replaces left there. */
  inherited: Map<string, number>;
}

/** What the primary's GatewayNode gives its pool. */
export interface GatewayPoolOptions {
  /** Worker processes (the primary is process 0; these are 1…count). */
  count: number;
  options: GatewayOptions;
  log: Logger;
  /** The primary's claims and de-duplication: every worker claims its proxy ids here. */
  board: ClaimBoard;
  /** The keys in force (the primary's ring), sent to every worker that starts. */
  keys(): readonly ApiKey[];
  /** Where the points the workers' aggregate rules take go (the primary's router). */
  onAggregate(points: KeyedPoints): void;
  /** The gateway's destination state log, which the workers report to. */
  states: DestinationStateLog;
}

/** The key ring's content as it crosses to a worker: names and digests (hex), never a secret. */
export function wireKeys(keys: readonly ApiKey[]): WireKey[] {
  return keys.map((k) => [k.name, k.digest.toString("hex")]);
}

/**
 * A gateway's worker processes: each runs a GatewayProcess on the primary's
 * port (SO_REUSEPORT: the kernel spreads proxies' connections across the
 * processes), so one gateway uses every core it is given. The primary runs
 * one too, and the ClaimBoard: each worker's streams claim their proxy ids
 * and report their queued seqs there (claim-board.ts). It pushes the key
 * ring to every worker whenever it changes. Workers report their counters
 * every second; one that dies is restarted, its memory queues counted as
 * dropped (worker_died) as a relay's are, its proxies reconnecting to the
 * other processes.
 */
export class GatewayPool {
  readonly #o: GatewayPoolOptions;
  #workers: Worker[] = [];
  /** The last counters of workers that died. */
  #retired: Array<{ stats: PipelineStats; gateway: GatewayCountersSnapshot | null }> = [];
  /** By worker id: a dead worker's rows whose disk queues still hold datapoints (inheritDisk). */
  #leftOnDisk = new Map<number, Map<string, DestinationStats>>();
  #routing: RouterConfig;
  #maxLineLength: number;
  #port = 0;
  #stopping = false;
  /** ClaimBoard numbers: 0 is the primary. */
  #boardIds = 0;

  constructor(options: GatewayPoolOptions) {
    this.#o = options;
    this.#routing = options.options.routing;
    this.#maxLineLength = options.options.maxLineLength;
  }

  async start(port: number): Promise<void> {
    this.#port = port;
    await Promise.all(Array.from({ length: this.#o.count }, (_, i) => this.#spawn(i + 1)));
  }

  #spawn(id: number): Promise<void> {
    const o = this.#o;
    const child = fork(WORKER_ENTRY, [], {
      env: { ...process.env, POLYMUR_WORKER_ID: String(id) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
      ...(EXEC_ARGV === undefined ? {} : { execArgv: EXEC_ARGV }),
    });
    const w: Worker = {
      id,
      board: ++this.#boardIds,
      child,
      stats: null,
      gateway: null,
      rejects: [],
      inherited: new Map(),
    };
    this.#workers.push(w);
    const claims = o.board.connect(w.board, (m) => send(child, m));
    return new Promise<void>((resolve, reject) => {
      child.on("message", (m: FromGatewayWorker) => {
        switch (m.t) {
          case "ready":
            o.log.info({ worker: id, pid: child.pid }, "gateway worker started");
            resolve();
            return;
          case "error":
            reject(new Error(`gateway worker ${id}: ${m.message}`));
            return;
          case "aggregate":
            o.onAggregate(m.points);
            return;
          case "destination":
            o.states.report(id, m.report);
            return;
          case "stats": {
            const left = this.#leftOnDisk.get(id);
            inheritDisk(left ?? new Map(), w.inherited, m.stats);
            if (left?.size === 0) this.#leftOnDisk.delete(id);
            w.stats = m.stats;
            w.rejects = m.rejects;
            w.gateway = m.gateway;
            return;
          }
          case "done":
            return;
          default:
            claims(m satisfies ClaimsToPrimary);
        }
      });
      child.once("exit", (code, signal) => {
        // Its streams hold no proxy id any more: their proxies may claim elsewhere.
        o.board.gone(w.board);
        // During a shutdown, shutdown() accounts for every worker.
        if (this.#stopping) return;
        this.#workers = this.#workers.filter((x) => x !== w);
        o.states.forget(id);
        const lost = w.stats === null ? {} : retireStats(w.stats, "worker_died");
        let kept = 0;
        if (w.stats !== null) {
          if (w.gateway !== null) retireGatewayCounters(w.gateway);
          this.#retired.push({ stats: w.stats, gateway: w.gateway });
          const left = leftOnDisk(w.stats);
          for (const d of left.values()) kept += d.queuedLines;
          if (left.size > 0) {
            const all = this.#leftOnDisk.get(id) ?? new Map<string, DestinationStats>();
            for (const [k, d] of left) all.set(k, d);
            this.#leftOnDisk.set(id, all);
          }
        }
        const n = Object.values(lost).reduce((a, b) => a + b, 0);
        const onDisk = kept === 0 ? "" : `; ${kept} on disk wait for the worker that replaces it`;
        o.log.error(
          {
            worker: id,
            code,
            signal,
            lost,
            reason: "worker_died",
            ...(kept === 0 ? {} : { onDisk: kept }),
          },
          `gateway worker ${id} exited (${signal ?? `code ${code}`}); ${n} datapoints it had queued${kept === 0 ? "" : " in memory"} are lost (counted as dropped, reason worker_died)${onDisk}; its proxies reconnect to the other processes and resend what it had not acknowledged; restarting it`,
        );
        reject(new Error(`gateway worker ${id} exited with ${code ?? signal}`));
        setTimeout(() => {
          // A worker respawned during shutdown would take data nobody drains.
          if (this.#stopping) return;
          void this.#spawn(id).catch((err) =>
            o.log.error({ err }, "gateway worker restart failed"),
          );
        }, 500).unref();
      });
      send(child, {
        t: "start",
        options: workerOptions(o.options, this.#routing, this.#maxLineLength),
        port: this.#port,
        process: { index: id, count: o.count + 1 },
        keys: wireKeys(o.keys()),
      });
    });
  }

  /** The key ring changed: every worker replaces its own (cutting the streams of keys gone). */
  keys(keys: readonly ApiKey[]): void {
    const msg: ToGatewayWorker = { t: "keys", keys: wireKeys(keys) };
    for (const w of this.#workers) send(w.child, msg);
  }

  apply(routing: RouterConfig, maxLineLength: number): void {
    this.#routing = routing;
    this.#maxLineLength = maxLineLength;
    for (const w of this.#workers) send(w.child, { t: "apply", routing, maxLineLength });
  }

  /** The pipeline counters of every worker, live, stopped or dead. */
  stats(): PipelineStats[] {
    return [
      ...this.#workers.flatMap((w) => (w.stats === null ? [] : [w.stats])),
      ...this.#retired.map((r) => r.stats),
    ];
  }

  /** The gateway counters of every worker, live, stopped or dead (dead ones with no stream open). */
  gatewayCounters(): GatewayCountersSnapshot[] {
    return [
      ...this.#workers.flatMap((w) => (w.gateway === null ? [] : [w.gateway])),
      ...this.#retired.flatMap((r) => (r.gateway === null ? [] : [r.gateway])),
    ];
  }

  rejects(): RejectSample[] {
    return this.#workers.flatMap((w) => w.rejects);
  }

  /** Worker processes running now, by process id (tests kill one). */
  pids(): number[] {
    return this.#workers.flatMap((w) => (w.child.pid === undefined ? [] : [w.child.pid]));
  }

  /**
   * Asks every worker to end its streams, drain and exit; resolves with
   * their undelivered counts. A worker that exits without its report is
   * accounted for by its last counters (its queue counted as undelivered).
   */
  async shutdown(deadlineMs: number): Promise<Array<Record<string, number>>> {
    this.#stopping = true;
    return Promise.all(this.#workers.map((w) => this.#stop(w, deadlineMs)));
  }

  #stop(w: Worker, deadlineMs: number): Promise<Record<string, number>> {
    return drainWorker(w.child, deadlineMs, () => {
      const lost = w.stats === null ? {} : retireStats(w.stats, "undelivered");
      if (w.gateway !== null) retireGatewayCounters(w.gateway);
      this.#o.log.error(
        { worker: w.id, undelivered: lost },
        `gateway worker ${w.id} exited without its shutdown report (killed, or hung past the deadline); its last known queue is counted as undelivered`,
      );
      return lost;
    });
  }
}

/** The options a worker gets: plain data, without the control plane (its credential stays here). */
function workerOptions(
  o: GatewayOptions,
  routing: RouterConfig,
  maxLineLength: number,
): WorkerGatewayOptions {
  const { trustedProxies: _t, controlPlane: _c, ...rest } = o;
  return { ...rest, routing, maxLineLength };
}

/** Sends to a worker; a closed channel (it is exiting) is no error: "exit" accounts for it. */
function send(child: ChildProcess, m: ToGatewayWorker): void {
  if (child.connected) child.send(m, noop);
}

function noop(): void {}
