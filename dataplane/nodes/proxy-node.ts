import type { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../../common/logger.ts";
import { tlsMode } from "../ingest/listener-tls-settings.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { ExitReport } from "../link/proxy/batch-buffer.ts";
import { mergeProxyStats, type ProxyStats, proxyPrometheus } from "../link/proxy/proxy-stats.ts";
import { mergeStats, type PipelineStats } from "../observe/pipeline-stats.ts";
import { NodeRuntime } from "./node-runtime.ts";
import type { ProxyOptions } from "./proxy-options.ts";
import { ProxyPool } from "./proxy-pool.ts";
import { ProxyProcess } from "./proxy-process.ts";

/**
 * A proxy: `--workers` processes, each a whole proxy pipeline
 * (ProxyProcess: listener → batcher → buffer and spool → its own stream to
 * a gateway under its own proxy id), sharing the listen ports
 * (SO_REUSEPORT: the kernel spreads sender connections across them, and a
 * connection stays on one process, so its lines stay in order). The primary
 * runs process 0 and the node runtime (stats endpoint summing every
 * process, heartbeat), and a ProxyPool of the others, restarted if they die.
 * Spools and proxy ids per process: proxy-spool-layout.ts.
 */
export class ProxyNode {
  readonly #o: ProxyOptions;
  readonly #log: Logger;
  readonly #runtime: NodeRuntime;
  readonly #primary: ProxyProcess;
  readonly #pool: ProxyPool | null;
  readonly #workers: number;
  #fatal: ((err: ConnectError, gateway: string) => void) | null = null;
  #exit: Promise<ProxyExit> | null = null;
  ports = { tcp: 0, udp: null as number | null, stats: null as number | null };

  constructor(options: ProxyOptions, log: Logger) {
    this.#o = options;
    this.#log = log;
    this.#workers = Math.max(1, options.workers);
    const fatal = (err: ConnectError, gateway: string): void => this.#fatal?.(err, gateway);
    this.#primary = new ProxyProcess(options, log, {
      index: 0,
      count: this.#workers,
      reusePort: this.#workers > 1,
      udp: true,
      primary: true,
    });
    this.#primary.onFatal(fatal);
    this.#pool =
      this.#workers > 1
        ? new ProxyPool(this.#workers - 1, options, this.#primary.proxyId, log, fatal)
        : null;
    this.#runtime = new NodeRuntime({
      log,
      statAddr: options.statAddr,
      stats: () => this.pipelineStats(),
      rejects: () => this.rejects(),
      extra: () => ({ prometheus: proxyPrometheus(this.stats()), json: { proxy: this.stats() } }),
      heartbeat: () => {
        const s = this.stats();
        return {
          pending: s.pendingBatches,
          link: s.link.state,
          ...(this.#pool === null ? {} : { linksOpen: s.linksOpen }),
        };
      },
    });
  }

  /** Called once if a gateway refuses the API key (that process's link has stopped). */
  onFatal(f: (err: ConnectError, gateway: string) => void): void {
    let called = false;
    this.#fatal = (err, gateway) => {
      if (called) return;
      called = true;
      f(err, gateway);
    };
  }

  /** Process 0's proxy id (process k streams as `<id>.w<k>`). */
  get proxyId(): string {
    return this.#primary.proxyId;
  }

  async start(): Promise<void> {
    const { port, udpPort, picklePort } = await this.#primary.listen();
    this.ports.tcp = port;
    this.ports.udp = udpPort;
    await this.#pool?.start(port, picklePort);
    await this.#runtime.start();
    this.ports.stats = this.#runtime.statsPort;
    this.#primary.startLink();
    this.#runtime.ready();
    this.#log.info(
      {
        listener: "tcp",
        address: this.#o.listener.listen.host,
        port,
        tls: tlsMode(this.#o.listener.tls ?? null),
        udpPort,
        picklePort,
        statsPort: this.ports.stats,
        gateways: this.#o.gateways,
        proxyId: this.#primary.proxyId,
        workers: this.#workers,
        compression: this.#o.compression,
        spool: this.#o.spoolDir,
      },
      "listening",
    );
  }

  /** The ingest counters of every process, summed, as a relay's /stats shows them. */
  pipelineStats(): PipelineStats {
    return mergeStats([
      this.#primary.pipelineStats(),
      ...(this.#pool?.reports().map((r) => r.pipeline) ?? []),
    ]);
  }

  rejects(): RejectSample[] {
    const all = [...this.#primary.rejects(), ...(this.#pool?.rejects() ?? [])];
    return all.sort((a, b) => b.at - a.at).slice(0, 64);
  }

  /** The proxy's counters: every process's summed, and each one's row. */
  stats(): ProxyStats {
    return mergeProxyStats([
      this.#primary.stats(),
      ...(this.#pool?.reports().map((r) => r.proxy) ?? []),
    ]);
  }

  /**
   * Graceful stop of every process: stop reading from senders (after a
   * grace period for what they are sending), send the last batch, wait up
   * to the shutdown timeout for every batch to be acknowledged, then close.
   * With a spool, whatever is still unacknowledged stays in it (each
   * process's in its own directory) for the next start.
   */
  shutdown(): Promise<ProxyExit> {
    this.#exit ??= (async () => {
      const deadlineMs = this.#o.shutdownTimeoutSec * 1000;
      const deadline = Date.now() + deadlineMs;
      this.#log.info({ deadlineMs }, "shutting down");
      this.#runtime.stop();
      const [own, others] = await Promise.all([
        this.#primary.shutdown(deadline),
        this.#pool?.shutdown(true, deadline) ?? Promise.resolve([]),
      ]);
      return this.#finish([own, ...others]);
    })();
    return this.#exit;
  }

  /**
   * Stops every process at once (also after a gateway refused the API key):
   * each stops reading from senders, hands what its batcher holds to its
   * buffer (and spool), closes its link and spool. The last log line says
   * where every unacknowledged datapoint is: kept in the spool, or lost (in
   * memory only) and counted under its reason.
   */
  close(): Promise<ProxyExit> {
    this.#exit ??= (async () => {
      this.#runtime.stop();
      const [own, others] = await Promise.all([
        this.#primary.close(),
        this.#pool?.shutdown(false, Date.now()) ?? Promise.resolve([]),
      ]);
      return this.#finish([own, ...others]);
    })();
    return this.#exit;
  }

  #finish(reports: ExitReport[]): ProxyExit {
    const kept = { batches: 0, lines: 0 };
    const lost = { batches: 0, lines: 0, reason: reports[0]!.lost.reason };
    for (const r of reports) {
      kept.batches += r.kept.batches;
      kept.lines += r.kept.lines;
      if (r.lost.lines > 0 && lost.lines === 0) lost.reason = r.lost.reason;
      lost.batches += r.lost.batches;
      lost.lines += r.lost.lines;
    }
    const exit: ProxyExit = {
      pendingBatches: kept.batches + lost.batches,
      pendingLines: kept.lines + lost.lines,
      keptLines: kept.lines,
      lostLines: lost.lines,
    };
    const spool = this.#o.spoolDir;
    if (exit.pendingLines === 0 && exit.pendingBatches === 0) {
      this.#log.info(
        { received: this.pipelineStats().received },
        "shutdown complete: the gateway acknowledged every datapoint",
      );
    } else if (lost.lines === 0 && lost.batches === 0) {
      this.#log.warn(
        { ...exit, spool },
        `shutdown complete: ${kept.lines} datapoints not yet acknowledged are kept in the spool for the next start`,
      );
    } else if (spool === null) {
      this.#log.error(
        { ...exit, reason: lost.reason, lostBatches: lost.batches },
        `shutdown complete: ${lost.lines} datapoints were not acknowledged by a gateway and are lost (no --spool-dir; counted as ${lost.reason})`,
      );
    } else {
      this.#log.error(
        { ...exit, reason: lost.reason, lostBatches: lost.batches, spool },
        `shutdown complete: ${lost.lines} datapoints in ${lost.batches} batches were held in memory only (their spool append failed) and are lost (counted as ${lost.reason}); ${kept.lines} datapoints not yet acknowledged are kept in the spool for the next start`,
      );
    }
    this.#runtime.close();
    return exit;
  }
}

/** Where a proxy's unacknowledged datapoints are when it exits (summed over its processes). */
export interface ProxyExit {
  pendingBatches: number;
  /** Datapoints not acknowledged: keptLines + lostLines. */
  pendingLines: number;
  /** In the spool, sent at the next start. */
  keptLines: number;
  /** In memory only, lost (counted under exit_without_spool, exit_spool_append_failed or worker_died). */
  lostLines: number;
}
