import { type ChildProcess, fork } from "node:child_process";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import { type Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../../common/logger.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { ExitReport } from "../link/proxy/batch-buffer.ts";
import type { ProxyStats } from "../link/proxy/proxy-stats.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { ProxyOptions } from "./proxy-options.ts";
import type { FromProxyWorker, ToProxyWorker } from "./proxy-worker-messages.ts";
import { stopWorker } from "./worker-stop.ts";

// Same extension as this module: .ts when run from source (tests), .js when compiled.
const WORKER_ENTRY = fileURLToPath(
  new URL(`./proxy-worker${extname(import.meta.url)}`, import.meta.url),
);

/** A proxy worker's counters as last reported. */
interface Report {
  pipeline: PipelineStats;
  proxy: ProxyStats;
}

interface Worker {
  id: number;
  child: ChildProcess;
  report: Report | null;
  rejects: RejectSample[];
}

/**
 * The last counters of a proxy process that died (`reason` worker_died) or
 * exited at shutdown without its report: what it held in memory only (every
 * pending datapoint without a spool; with one, those whose spool append had
 * failed) is lost with it, and counted as lost, worker_died. What it held in
 * its spool (and the spools it drained) is not lost: it stays on disk, still
 * counted as pending, until the process that takes its number reports (then
 * that one counts it, see settleRetired). Its other counters stay in the
 * proxy's sums, which therefore never go back. Returns the datapoints lost.
 */
export function retireProxyStats(r: Report, spooled: boolean): number {
  const p = r.proxy;
  const lost = spooled ? p.unspooledLines : p.pendingLines;
  p.lost.worker_died += lost;
  p.pendingLines -= lost;
  if (!spooled) p.pendingBatches = 0;
  p.unspooledLines = 0;
  p.memoryBytes = 0;
  p.held = false;
  p.linksOpen = 0;
  p.link = { ...p.link, state: "closed" };
  p.processes = p.processes.map((row) => ({
    ...row,
    alive: false,
    link: "closed",
    held: false,
    pendingLines: p.pendingLines,
    pendingBatches: p.pendingBatches,
    draining: [],
  }));
  r.pipeline.connections = 0;
  r.pipeline.paused = false;
  return lost;
}

/**
 * A retired process's spool has been opened again by the process that took
 * its number: what was still pending there is that one's to count now.
 */
export function settleRetired(p: ProxyStats): void {
  p.pendingLines = 0;
  p.pendingBatches = 0;
  p.spoolBytes = 0;
  for (const row of p.processes) {
    row.pendingLines = 0;
    row.pendingBatches = 0;
  }
}

/**
 * The worker processes of a proxy (numbers 1 to count; the primary is 0):
 * each runs a whole ProxyProcess (listeners sharing the primary's ports with
 * SO_REUSEPORT, its own buffer, spool and stream to the gateway under its
 * own proxy id), reports its counters every second, and is restarted under
 * the same number (so the same spool and proxy id) if it dies.
 */
export class ProxyPool {
  readonly #log: Logger;
  readonly #count: number;
  readonly #options: ProxyOptions;
  readonly #baseId: string;
  readonly #onFatal: (err: ConnectError, gateway: string) => void;
  #workers: Worker[] = [];
  /** The last counters of workers that died, by their number (see retireProxyStats). */
  #retired: Array<{ id: number; report: Report; settled: boolean }> = [];
  #port = 0;
  #picklePort: number | null = null;
  #stopping = false;

  /**
   * `count` workers (the proxy runs count + 1 processes); `baseId`: process
   * 0's proxy id; `onFatal`: a worker's gateway refused the API key.
   */
  constructor(
    count: number,
    options: ProxyOptions,
    baseId: string,
    log: Logger,
    onFatal: (err: ConnectError, gateway: string) => void,
  ) {
    this.#count = count;
    this.#options = options;
    this.#baseId = baseId;
    this.#log = log;
    this.#onFatal = onFatal;
  }

  async start(port: number, picklePort: number | null): Promise<void> {
    this.#port = port;
    this.#picklePort = picklePort;
    await Promise.all(Array.from({ length: this.#count }, (_, i) => this.#spawn(i + 1)));
  }

  #spawn(id: number): Promise<void> {
    const child = fork(WORKER_ENTRY, [], {
      env: { ...process.env, POLYMUR_WORKER_ID: String(id) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
    });
    const w: Worker = { id, child, report: null, rejects: [] };
    this.#workers.push(w);
    return new Promise<void>((resolve, reject) => {
      child.on("message", (m: FromProxyWorker) => {
        if (m.t === "ready") resolve();
        else if (m.t === "error") reject(new Error(`proxy worker ${id}: ${m.message}`));
        else if (m.t === "fatal") {
          this.#onFatal(new ConnectError(m.message, m.code as Code), m.gateway);
        } else if (m.t === "stats") {
          w.report = { pipeline: m.pipeline, proxy: m.proxy };
          w.rejects = m.rejects;
          // Its spool is open again: what the dead one left there is counted by this one.
          for (const r of this.#retired) {
            if (r.id === id && !r.settled) {
              settleRetired(r.report.proxy);
              r.settled = true;
            }
          }
        }
      });
      child.once("exit", (code, signal) => {
        // During a shutdown, shutdown() accounts for every worker.
        if (this.#stopping) return;
        this.#workers = this.#workers.filter((x) => x !== w);
        const spooled = this.#options.spoolDir !== null;
        let lost = 0;
        let kept = 0;
        if (w.report !== null) {
          lost = retireProxyStats(w.report, spooled);
          kept = w.report.proxy.pendingLines;
          this.#retired.push({ id, report: w.report, settled: false });
        }
        const onDisk =
          kept === 0 ? "" : `; ${kept} in its spool wait for the process that replaces it`;
        this.#log.error(
          { worker: id, code, signal, lost, reason: "worker_died", onDisk: kept },
          `proxy worker ${id} exited (${signal ?? `code ${code}`}); ${lost} datapoints it held in memory only are lost (counted as lost, reason worker_died)${onDisk}; its senders reconnect to the other processes; restarting it`,
        );
        reject(new Error(`proxy worker ${id} exited with ${code ?? signal}`));
        setTimeout(() => {
          // A worker respawned during shutdown would take data nobody drains.
          if (this.#stopping) return;
          void this.#spawn(id).catch((err) =>
            this.#log.error({ err: (err as Error).message }, "proxy worker restart failed"),
          );
        }, 500).unref();
      });
      const msg: ToProxyWorker = {
        t: "start",
        options: this.#options,
        index: id,
        count: this.#count + 1,
        baseId: this.#baseId,
        port: this.#port,
        picklePort: this.#picklePort,
      };
      child.send(msg);
    });
  }

  /** The counters of every worker, live or dead. */
  reports(): Report[] {
    return [
      ...this.#workers.flatMap((w) => (w.report === null ? [] : [w.report])),
      ...this.#retired.map((r) => r.report),
    ];
  }

  rejects(): RejectSample[] {
    return this.#workers.flatMap((w) => w.rejects);
  }

  /**
   * Asks every worker to stop (gracefully until `deadline`, or at once) and
   * resolves with where each one's unacknowledged datapoints are. A worker
   * that exits without its report (killed, or hung and killed 5 s after the
   * deadline) is accounted for by its last counters: what it held in memory
   * only is lost (worker_died), its spool kept.
   */
  shutdown(graceful: boolean, deadline: number): Promise<ExitReport[]> {
    this.#stopping = true;
    return Promise.all(this.#workers.map((w) => this.#stop(w, graceful, deadline)));
  }

  #stop(w: Worker, graceful: boolean, deadline: number): Promise<ExitReport> {
    return stopWorker(
      w.child,
      { t: "shutdown", graceful, deadline } satisfies ToProxyWorker,
      Math.max(0, deadline - Date.now()) + 5_000,
      (m) => {
        const p = m as FromProxyWorker;
        return p.t === "done" ? p.exit : null;
      },
      () => {
        const spooled = this.#options.spoolDir !== null;
        const lost = w.report === null ? 0 : retireProxyStats(w.report, spooled);
        const kept = w.report?.proxy.pendingLines ?? 0;
        this.#log.error(
          { worker: w.id, lost, reason: "worker_died", kept },
          `proxy worker ${w.id} exited without its shutdown report (killed, or hung past the deadline); ${lost} datapoints it last held in memory only are counted as lost (worker_died)`,
        );
        return {
          kept: { batches: w.report?.proxy.pendingBatches ?? 0, lines: kept },
          lost: { batches: 0, lines: lost, reason: "worker_died" },
        };
      },
    );
  }
}
