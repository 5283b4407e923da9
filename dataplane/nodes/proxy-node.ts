import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../../common/logger.ts";
import { LineListener } from "../ingest/line-listener.ts";
import { tlsMode } from "../ingest/listener-tls-settings.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { compressBatch, compressionCode } from "../link/batch-codec.ts";
import { BatchBuffer } from "../link/proxy/batch-buffer.ts";
import { GatewayLink } from "../link/proxy/gateway-link.ts";
import { LineBatcher } from "../link/proxy/line-batcher.ts";
import { type ProxyStats, proxyPrometheus } from "../link/proxy/proxy-stats.ts";
import { type PipelineStats, pipelineStats } from "../observe/pipeline-stats.ts";
import { SegmentSpool } from "../spool/segment-spool.ts";
import { NodeRuntime } from "./node-runtime.ts";
import type { ProxyOptions } from "./proxy-options.ts";

/**
 * A proxy: a relay's listener (same framing, validation and per-line
 * rejects), whose valid lines are cut into batches, compressed, kept in a bounded buffer (and optional spool)
 * and streamed to a gateway until acknowledged. When the buffer is full it
 * stops reading from its TCP senders (they see TCP backpressure) instead of
 * dropping anything.
 */
export class ProxyNode {
  readonly #o: ProxyOptions;
  readonly #log: Logger;
  readonly #listener: LineListener;
  readonly #runtime: NodeRuntime;
  readonly #batcher: LineBatcher;
  readonly #buffer: BatchBuffer;
  readonly #spool: SegmentSpool | null;
  readonly #link: GatewayLink;
  #proxyId: string;
  #batches = 0;
  #rawBytes = 0;
  #payloadBytes = 0;
  #fatal: ((err: ConnectError, gateway: string) => void) | null = null;
  ports = { tcp: 0, udp: null as number | null, stats: null as number | null };

  constructor(options: ProxyOptions, log: Logger) {
    this.#o = options;
    this.#log = log;
    this.#batcher = new LineBatcher((raw, lines) => this.#onBatch(raw, lines), {
      maxBytes: options.batchBytes,
      maxDelayMs: options.batchDelayMs,
    });
    this.#listener = new LineListener(options.listener, this.#batcher, log);
    this.#runtime = new NodeRuntime({
      log,
      statAddr: options.statAddr,
      stats: () => this.pipelineStats(),
      rejects: () => this.rejects(),
      extra: () => ({ prometheus: proxyPrometheus(this.stats()), json: { proxy: this.stats() } }),
      heartbeat: () => ({ pending: this.#buffer.size, link: this.#link.state }),
    });
    if (options.spoolDir !== null) {
      const opened = SegmentSpool.open(options.spoolDir, {
        log,
        segmentBytes: Math.max(1 << 20, Math.min(8 << 20, Math.floor(options.spoolBytes / 16))),
      });
      this.#spool = opened.spool;
      this.#proxyId = opened.proxyId;
      this.#buffer = new BatchBuffer({
        memoryBytes: options.bufferBytes,
        spool: opened.spool,
        spoolBytes: options.spoolBytes,
        nextSeq: opened.nextSeq,
        recovered: opened.recovered,
        spoolLosses: opened.losses,
        log,
      });
      if (opened.recovered.length > 0) {
        log.info(
          {
            spool: options.spoolDir,
            batches: opened.recovered.length,
            lines: this.#buffer.pendingLines,
            firstSeq: opened.recovered[0]!.seq,
          },
          "spool: unacknowledged batches from the previous run will be sent first",
        );
      }
    } else {
      this.#spool = null;
      this.#proxyId = freshId();
      this.#buffer = new BatchBuffer({
        memoryBytes: options.bufferBytes,
        spool: null,
        spoolBytes: 0,
        log,
      });
    }
    this.#buffer.on("full", () => this.#updateHold());
    this.#buffer.on("space", () => this.#updateHold());
    this.#link = new GatewayLink({
      gateways: options.gateways,
      apiKey: options.apiKey,
      proxyId: () => this.#proxyId,
      buffer: this.#buffer,
      log,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      pingIntervalMs: options.pingIntervalMs,
      pingTimeoutMs: options.pingTimeoutMs,
      backoffMinMs: options.backoffMinMs,
      backoffMaxMs: options.backoffMaxMs,
      onAuthFailure: (err, gateway) => this.#fatal?.(err, gateway),
      onIdConflict: () => {
        this.#proxyId = freshId();
        this.#spool?.saveProxyId(this.#proxyId);
      },
    });
  }

  /** Called once if a gateway refuses the API key (the link has stopped). */
  onFatal(f: (err: ConnectError, gateway: string) => void): void {
    this.#fatal = f;
  }

  get proxyId(): string {
    return this.#proxyId;
  }

  async start(): Promise<void> {
    const { port, udpPort, picklePort } = await this.#listener.listen();
    this.ports.tcp = port;
    this.ports.udp = udpPort;
    await this.#runtime.start();
    this.ports.stats = this.#runtime.statsPort;
    this.#link.start();
    this.#runtime.ready();
    if (this.#spool !== null) {
      const spool = this.#spool;
      this.#runtime.every(1_000, () => spool.saveState());
    }
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
        proxyId: this.#proxyId,
        compression: this.#o.compression,
        spool: this.#o.spoolDir,
      },
      "listening",
    );
  }

  #onBatch(raw: Buffer, lines: number): void {
    const code = compressionCode(this.#o.compression);
    let payload: Buffer;
    try {
      payload = compressBatch(raw, this.#o.compression);
    } catch (err) {
      this.#log.error({ err: (err as Error).message }, "compression failed; sending uncompressed");
      payload = raw;
    }
    this.#batches++;
    this.#rawBytes += raw.length;
    this.#payloadBytes += payload.length;
    // An uncompressed payload is the batch itself: its own compression code.
    this.#buffer.add(payload === raw ? compressionCode("none") : code, payload, lines, raw.length);
  }

  #updateHold(): void {
    const hold = this.#buffer.full;
    if (hold === this.#listener.paused) return;
    this.#listener.pause(hold);
    const s = this.#buffer.stats();
    if (hold) {
      this.#log.warn(
        { pendingBatches: s.batches, memoryBytes: s.memoryBytes, spoolBytes: s.spoolBytes },
        "buffer towards the gateway is full: not reading from senders until it drains",
      );
    } else {
      this.#log.warn({ paused: false }, "ingest resumed");
    }
  }

  /** The ingest counters, as a relay's /stats shows them (no destinations: a proxy forwards to a gateway). */
  pipelineStats(): PipelineStats {
    return pipelineStats(this.#listener.stats(), null);
  }

  rejects(): RejectSample[] {
    return this.#listener.recentRejects();
  }

  stats(): ProxyStats {
    const b = this.#buffer.stats();
    return {
      link: this.#link.stats(),
      batches: this.#batches,
      rawBytes: this.#rawBytes,
      payloadBytes: this.#payloadBytes,
      pendingBatches: b.batches,
      pendingLines: b.lines,
      memoryBytes: b.memoryBytes,
      spoolBytes: b.spoolBytes,
      held: this.#listener.paused,
      proxyId: this.#proxyId,
      lost: b.lost,
      lostUncounted: b.lostUncounted,
      spoolAppendFailures: b.spoolErrors,
      unspooledLines: b.unspooledLines,
    };
  }

  /**
   * Graceful stop: stop reading from senders (after a grace period for what
   * they are sending), send the last batch, wait up to the shutdown timeout
   * for every batch to be acknowledged, then close. With a spool, whatever is
   * still unacknowledged stays in it for the next start.
   */
  async shutdown(): Promise<ProxyExit> {
    const deadlineMs = this.#o.shutdownTimeoutSec * 1000;
    const deadline = Date.now() + deadlineMs;
    this.#log.info({ deadlineMs }, "shutting down");
    this.#runtime.stop();
    await this.#listener.close(Math.min(1_000, deadlineMs / 4));
    this.#batcher.flush();
    // Batches in memory only (no spool, or their spool append failed) die
    // with the process: keep trying until the deadline. Those in the spool
    // are safe on disk: wait for them only while the link is up and draining.
    while (
      this.#buffer.size > 0 &&
      Date.now() < deadline &&
      this.#link.state !== "failed" &&
      (this.#spool === null ||
        this.#link.state === "open" ||
        this.#buffer.stats().unspooledBatches > 0)
    ) {
      await sleep(20);
    }
    return this.close();
  }

  /**
   * Stops at once (also after a gateway refused the API key): stops reading
   * from senders, hands what the batcher holds to the buffer (and spool),
   * closes the link, the stats server and the spool, and says in its last
   * log line where every unacknowledged datapoint is: kept in the spool, or
   * lost (in memory only) and counted under its reason.
   */
  async close(): Promise<ProxyExit> {
    this.#runtime.stop();
    await this.#listener.close(0);
    // After the listener: no line can reach the batcher any more.
    this.#batcher.close();
    await this.#link.stop();
    const report = this.#buffer.abandon();
    this.#spool?.close();
    const exit: ProxyExit = {
      pendingBatches: report.kept.batches + report.lost.batches,
      pendingLines: report.kept.lines + report.lost.lines,
      keptLines: report.kept.lines,
      lostLines: report.lost.lines,
    };
    const { kept, lost } = report;
    if (exit.pendingBatches === 0) {
      this.#log.info(
        { received: this.#listener.stats().received },
        "shutdown complete: the gateway acknowledged every datapoint",
      );
    } else if (lost.batches === 0) {
      this.#log.warn(
        { ...exit, spool: this.#spool?.dir },
        `shutdown complete: ${kept.lines} datapoints not yet acknowledged are kept in the spool for the next start`,
      );
    } else if (this.#spool === null) {
      this.#log.error(
        { ...exit, reason: lost.reason, lostBatches: lost.batches },
        `shutdown complete: ${lost.lines} datapoints were not acknowledged by a gateway and are lost (no --spool-dir; counted as ${lost.reason})`,
      );
    } else {
      this.#log.error(
        { ...exit, reason: lost.reason, lostBatches: lost.batches, spool: this.#spool.dir },
        `shutdown complete: ${lost.lines} datapoints in ${lost.batches} batches were held in memory only (their spool append failed) and are lost (counted as ${lost.reason}); ${kept.lines} datapoints not yet acknowledged are kept in the spool for the next start`,
      );
    }
    this.#runtime.close();
    return exit;
  }
}

/** Where a proxy's unacknowledged datapoints are when it exits. */
export interface ProxyExit {
  pendingBatches: number;
  /** Datapoints not acknowledged: keptLines + lostLines. */
  pendingLines: number;
  /** In the spool, sent at the next start. */
  keptLines: number;
  /** In memory only, lost (counted under exit_without_spool or exit_spool_append_failed). */
  lostLines: number;
}

function freshId(): string {
  return `${hostname().split(".")[0]}-${randomUUID()}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
