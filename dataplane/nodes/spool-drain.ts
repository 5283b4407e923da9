import type { ConnectError } from "@connectrpc/connect";
import type { Logger } from "../../common/logger.ts";
import { BatchBuffer, type BatchBufferStats } from "../link/proxy/batch-buffer.ts";
import { GatewayLink, type LinkStats } from "../link/proxy/gateway-link.ts";
import { SegmentSpool } from "../spool/segment-spool.ts";
import { freshProxyId, removeIdleSpoolDir } from "../spool/spool-dir.ts";

/** What a SpoolDrain needs of the proxy: its gateways, key and link settings. */
export interface SpoolDrainOptions {
  dir: string;
  /** The id to stream with if the directory has none (it normally has). */
  proxyId: string;
  gateways: string[];
  apiKey: string;
  ca: string | undefined;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  log: Logger;
  /** A gateway refused the API key (the drain's link has stopped). */
  onAuthFailure(err: ConnectError, gateway: string): void;
}

/**
 * A spool directory taken over from a process number the proxy no longer
 * runs (proxy-spool-layout.ts): its batches are sent over a link of their
 * own, under the proxy id and seqs kept in the directory (a gateway
 * de-duplicates them as that proxy's, which one instance streams at a
 * time), nothing new is added; once every batch is done the link closes and
 * the directory is removed. Stopped before that (shutdown), what is left
 * stays in the directory for the next start.
 */
export class SpoolDrain {
  readonly dir: string;
  readonly proxyId: string;
  readonly #spool: SegmentSpool;
  readonly #buffer: BatchBuffer;
  readonly #link: GatewayLink;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | null = null;
  #done: Promise<void> | null = null;
  #finished = false;

  /** Opens and recovers the directory (throws as SegmentSpool.open does: locked, unreadable). */
  constructor(o: SpoolDrainOptions) {
    this.dir = o.dir;
    this.#log = o.log.child({ spool: o.dir });
    const opened = SegmentSpool.open(o.dir, { log: this.#log, newProxyId: () => o.proxyId });
    this.#spool = opened.spool;
    let proxyId = opened.proxyId;
    this.proxyId = proxyId;
    this.#buffer = new BatchBuffer({
      memoryBytes: 1 << 20,
      spool: opened.spool,
      // Nothing is added: the bound only has to be out of reach.
      spoolBytes: Number.MAX_SAFE_INTEGER,
      nextSeq: opened.nextSeq,
      recovered: opened.recovered,
      spoolLosses: opened.losses,
      log: this.#log,
    });
    this.#link = new GatewayLink({
      gateways: o.gateways,
      apiKey: o.apiKey,
      proxyId: () => proxyId,
      buffer: this.#buffer,
      log: this.#log,
      ...(o.ca === undefined ? {} : { ca: o.ca }),
      pingIntervalMs: o.pingIntervalMs,
      pingTimeoutMs: o.pingTimeoutMs,
      backoffMinMs: o.backoffMinMs,
      backoffMaxMs: o.backoffMaxMs,
      onAuthFailure: (err, gateway) => o.onAuthFailure(err, gateway),
      onIdConflict: () => {
        proxyId = freshProxyId();
        this.#spool.saveProxyId(proxyId);
      },
    });
  }

  /** Datapoints it still holds. */
  get pendingLines(): number {
    return this.#buffer.pendingLines;
  }

  /** Starts sending; the directory is removed once everything in it is done. */
  start(): void {
    this.#log.info(
      { proxyId: this.proxyId, batches: this.#buffer.size, lines: this.#buffer.pendingLines },
      "spool: taking over the spool of a process number this proxy no longer runs; sending its batches under its own proxy id",
    );
    this.#link.start();
    this.#timer = setInterval(() => {
      if (this.#buffer.size === 0) void this.#finish();
      else this.#spool.saveState();
    }, 200);
    this.#timer.unref();
  }

  /** Whether every batch of the directory is done (and the directory removed). */
  get finished(): boolean {
    return this.#finished;
  }

  #finish(): Promise<void> {
    this.#done ??= (async () => {
      if (this.#timer !== null) clearInterval(this.#timer);
      await this.#link.stop();
      const empty = this.#buffer.size === 0;
      this.#spool.close();
      if (empty) {
        this.#finished = true;
        removeIdleSpoolDir(this.dir);
        this.#log.info(
          { proxyId: this.proxyId },
          "spool: every batch of the spool taken over is done; its directory is removed",
        );
      }
    })();
    return this.#done;
  }

  /** Stops sending (what is left stays in the directory) and closes it. */
  stop(): Promise<void> {
    return this.#finish();
  }

  /** Its buffer's counters (pending, spool bytes, losses). */
  bufferStats(): BatchBufferStats {
    return this.#buffer.stats();
  }

  linkStats(): LinkStats {
    return this.#link.stats();
  }
}
