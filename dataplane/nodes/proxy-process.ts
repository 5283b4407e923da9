import type { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../../common/logger.ts";
import { LineListener } from "../ingest/line-listener.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { compressBatch, compressionCode } from "../link/batch-codec.ts";
import { BatchBuffer, type ExitReport } from "../link/proxy/batch-buffer.ts";
import { GatewayLink, type LinkStats } from "../link/proxy/gateway-link.ts";
import { LineBatcher } from "../link/proxy/line-batcher.ts";
import { LOSS_REASONS } from "../link/proxy/loss-counts.ts";
import type { ProxyStats } from "../link/proxy/proxy-stats.ts";
import { type PipelineStats, pipelineStats } from "../observe/pipeline-stats.ts";
import { SegmentSpool } from "../spool/segment-spool.ts";
import { freshProxyId } from "../spool/spool-dir.ts";
import type { ProxyOptions } from "./proxy-options.ts";
import { adoptedSpools, processSpoolDir, workerProxyId } from "./proxy-spool-layout.ts";
import { SpoolDrain } from "./spool-drain.ts";

/** Which process of a proxy's group this is, and how it shares the listeners. */
export interface ProxyProcessOptions {
  /** Its number: 0 for the primary, 1… for the worker processes. */
  index: number;
  /** How many processes the proxy runs (--workers): bounds are split between them. */
  count: number;
  /** Process 0's proxy id, which process k ≥ 1 derives its own from (required for k ≥ 1). */
  baseId?: string;
  /** Listen with SO_REUSEPORT (several processes share the ports). */
  reusePort: boolean;
  /** Whether this process opens the UDP listener (only one process does). */
  udp: boolean;
  /** Whether this process opens the unix-socket listener (only one process does). */
  primary: boolean;
}

/** Every this many seconds, spool directories to take over are looked for again. */
const ADOPT_EVERY_TICKS = 5;

/** Bytes a process's share of --buffer-size or --spool-size is never below. */
export const MIN_PROCESS_SHARE_BYTES = 1024 * 1024;

/**
 * The proxy pipeline of one process (the primary, or one worker): a
 * listener (same framing, validation and per-line rejects as a relay's),
 * whose valid lines are cut into batches, compressed, kept in a bounded
 * buffer (and the process's own spool, see proxy-spool-layout.ts) and
 * streamed to a gateway under the process's own proxy id until
 * acknowledged. When the buffer is full it stops reading from its TCP
 * senders (they see TCP backpressure) instead of dropping anything. It
 * also drains the spools it took over from process numbers the proxy no
 * longer runs (SpoolDrain).
 */
export class ProxyProcess {
  readonly #o: ProxyOptions;
  readonly #p: ProxyProcessOptions;
  readonly #log: Logger;
  readonly #listener: LineListener;
  readonly #batcher: LineBatcher;
  readonly #buffer: BatchBuffer;
  readonly #spool: SegmentSpool | null;
  readonly #link: GatewayLink;
  /** The drains of spools taken over, finished ones included (their counters stay in the sums). */
  #drains: SpoolDrain[] = [];
  #proxyId: string;
  #batches = 0;
  #rawBytes = 0;
  #payloadBytes = 0;
  #timer: NodeJS.Timeout | null = null;
  #fatal: ((err: ConnectError, gateway: string) => void) | null = null;

  constructor(options: ProxyOptions, log: Logger, proc: ProxyProcessOptions) {
    this.#o = options;
    this.#p = proc;
    this.#log = log;
    const share = (bytes: number): number =>
      Math.max(MIN_PROCESS_SHARE_BYTES, Math.floor(bytes / Math.max(1, proc.count)));
    const derived = (): string => {
      if (proc.index === 0) return freshProxyId();
      if (proc.baseId === undefined) throw new Error("a worker process needs process 0's id");
      return workerProxyId(proc.baseId, proc.index);
    };
    this.#batcher = new LineBatcher((raw, lines) => this.#onBatch(raw, lines), {
      maxBytes: options.batchBytes,
      maxDelayMs: options.batchDelayMs,
    });
    this.#listener = new LineListener(options.listener, this.#batcher, log, {
      reusePort: proc.reusePort,
      udp: proc.udp,
      primary: proc.primary,
    });
    const bufferBytes = share(options.bufferBytes);
    if (options.spoolDir !== null) {
      const dir = processSpoolDir(options.spoolDir, proc.index);
      const spoolBytes = share(options.spoolBytes);
      const opened = SegmentSpool.open(dir, {
        log,
        segmentBytes: Math.max(1 << 20, Math.min(8 << 20, Math.floor(spoolBytes / 16))),
        newProxyId: derived,
      });
      this.#spool = opened.spool;
      this.#proxyId = opened.proxyId;
      this.#buffer = new BatchBuffer({
        memoryBytes: bufferBytes,
        spool: opened.spool,
        spoolBytes,
        nextSeq: opened.nextSeq,
        recovered: opened.recovered,
        spoolLosses: opened.losses,
        log,
      });
      if (opened.recovered.length > 0) {
        log.info(
          {
            spool: dir,
            batches: opened.recovered.length,
            lines: this.#buffer.pendingLines,
            firstSeq: opened.recovered[0]!.seq,
          },
          "spool: unacknowledged batches from the previous run will be sent first",
        );
      }
    } else {
      this.#spool = null;
      this.#proxyId = derived();
      this.#buffer = new BatchBuffer({ memoryBytes: bufferBytes, spool: null, spoolBytes: 0, log });
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
        this.#proxyId = freshProxyId();
        this.#spool?.saveProxyId(this.#proxyId);
      },
    });
  }

  /** Called if a gateway refuses the API key (the link has stopped). */
  onFatal(f: (err: ConnectError, gateway: string) => void): void {
    this.#fatal = f;
  }

  get proxyId(): string {
    return this.#proxyId;
  }

  /** The link's state (heartbeat). */
  get linkState(): string {
    return this.#link.state;
  }

  /** Batches not yet done (heartbeat). */
  get pendingBatches(): number {
    return this.#buffer.size;
  }

  /** Opens the listeners (senders' lines are batched from now on). */
  listen(): Promise<{ port: number; udpPort: number | null; picklePort: number | null }> {
    return this.#listener.listen();
  }

  /**
   * Starts the link, and the drains of the spools this process takes over.
   * One that cannot be opened (held by a live process: the worker of a
   * primary that was killed, still exiting) is tried again every few
   * seconds, with one warning.
   */
  startLink(): void {
    this.#link.start();
    this.#adopt();
    let ticks = 0;
    this.#timer = setInterval(() => {
      this.#spool?.saveState();
      if (++ticks % ADOPT_EVERY_TICKS === 0) this.#adopt();
    }, 1_000);
  }

  /** Spool directories that could not be taken over yet (warned about once). */
  readonly #refused = new Set<string>();

  #adopt(): void {
    const root = this.#o.spoolDir;
    if (root === null) return;
    const open = new Set(this.#drains.filter((d) => !d.finished).map((d) => d.dir));
    for (const a of adoptedSpools(root, this.#p.index, this.#p.count)) {
      if (open.has(a.dir)) continue;
      let drain: SpoolDrain;
      try {
        drain = new SpoolDrain({
          dir: a.dir,
          proxyId: workerProxyId(this.#p.baseId ?? this.#proxyId, a.index),
          gateways: this.#o.gateways,
          apiKey: this.#o.apiKey,
          ca: this.#o.ca,
          pingIntervalMs: this.#o.pingIntervalMs,
          pingTimeoutMs: this.#o.pingTimeoutMs,
          backoffMinMs: this.#o.backoffMinMs,
          backoffMaxMs: this.#o.backoffMaxMs,
          log: this.#log,
          onAuthFailure: (err, gateway) => this.#fatal?.(err, gateway),
        });
      } catch (err) {
        if (!this.#refused.has(a.dir)) {
          this.#refused.add(a.dir);
          this.#log.warn(
            { spool: a.dir, err: (err as Error).message },
            "spool: cannot take over the spool of a process number this proxy no longer runs yet; trying again every few seconds",
          );
        }
        continue;
      }
      this.#refused.delete(a.dir);
      drain.start();
      this.#drains.push(drain);
    }
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

  /** This process's counters, its drains' included. */
  stats(): ProxyStats {
    const b = this.#buffer.stats();
    const link: LinkStats = { ...this.#link.stats() };
    const lost = { ...b.lost };
    const lostUncounted = { ...b.lostUncounted };
    let pendingBatches = b.batches;
    let pendingLines = b.lines;
    let spoolBytes = b.spoolBytes;
    const add = (l: LinkStats, d: { lost: typeof lost; lostUncounted: typeof lost }): void => {
      link.connects += l.connects;
      link.failures += l.failures;
      link.batchesSent += l.batchesSent;
      link.batchesResent += l.batchesResent;
      link.batchesAcked += l.batchesAcked;
      link.linesAcked += l.linesAcked;
      link.batchesRejected += l.batchesRejected;
      link.linesRejected += l.linesRejected;
      for (const r of LOSS_REASONS) {
        lost[r] += d.lost[r];
        lostUncounted[r] += d.lostUncounted[r];
      }
    };
    for (const d of this.#drains) {
      const ds = d.bufferStats();
      add(d.linkStats(), ds);
      pendingBatches += ds.batches;
      pendingLines += ds.lines;
      spoolBytes += ds.spoolBytes;
    }
    const held = this.#listener.paused;
    return {
      link,
      linksOpen: this.#link.state === "open" ? 1 : 0,
      batches: this.#batches,
      rawBytes: this.#rawBytes,
      payloadBytes: this.#payloadBytes,
      pendingBatches,
      pendingLines,
      memoryBytes: b.memoryBytes,
      spoolBytes,
      held,
      proxyId: this.#proxyId,
      lost,
      lostUncounted,
      spoolAppendFailures: b.spoolErrors,
      unspooledLines: b.unspooledLines,
      processes: [
        {
          index: this.#p.index,
          pid: process.pid,
          proxyId: this.#proxyId,
          link: this.#link.state,
          pendingBatches,
          pendingLines,
          batches: this.#batches,
          linesAcked: link.linesAcked,
          held,
          draining: this.#drains.filter((d) => !d.finished).map((d) => d.proxyId),
          alive: true,
        },
      ],
    };
  }

  /**
   * Graceful stop: stop reading from senders (after a grace period for what
   * they are sending), send the last batch, wait until `deadline` (ms since
   * the epoch) for every batch to be acknowledged, then close. With a spool,
   * whatever is still unacknowledged stays in it for the next start.
   */
  async shutdown(deadline: number): Promise<ExitReport> {
    this.#stopTimer();
    await this.#listener.close(Math.min(1_000, Math.max(0, deadline - Date.now()) / 4));
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
   * closes the link, the drains and the spool. Returns where every
   * unacknowledged datapoint is: kept in a spool, or lost (in memory only)
   * and counted under its reason.
   */
  async close(): Promise<ExitReport> {
    this.#stopTimer();
    await this.#listener.close(0);
    // After the listener: no line can reach the batcher any more.
    this.#batcher.close();
    await Promise.all([this.#link.stop(), ...this.#drains.map((d) => d.stop())]);
    const report = this.#buffer.abandon();
    this.#spool?.close();
    // What the drains still hold is on disk, in their directories.
    for (const d of this.#drains) {
      const s = d.bufferStats();
      report.kept.batches += s.batches;
      report.kept.lines += s.lines;
    }
    return report;
  }

  #stopTimer(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Where this process's spool is (null without --spool-dir). */
  get spoolDir(): string | null {
    return this.#spool?.dir ?? null;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
