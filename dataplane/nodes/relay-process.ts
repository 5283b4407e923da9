import type net from "node:net";
import type { DestinationStateReport } from "../../common/destination-state-log.ts";
import type { Logger } from "../../common/logger.ts";
import { LineListener } from "../ingest/line-listener.ts";
import type { LineSink } from "../ingest/line-sink.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { type PipelineStats, pipelineStats } from "../observe/pipeline-stats.ts";
import type { KeyedPoints } from "../route/aggregation.ts";
import { Router } from "../route/router.ts";
import type { RelayConfig } from "./relay-config.ts";

export interface RelayProcessOptions {
  /** This process's share of the queue bounds (1 / number of worker processes). Default 1. */
  share?: number;
  /** Which process of the group this is, and how many there are (disk queues belong to a number). Default 0 of 1. */
  process?: { index: number; count: number };
  /** Listen with SO_REUSEPORT, so that several worker processes share the port. Default false. */
  reusePort?: boolean;
  /** Whether this process opens the UDP listener (only one process does). Default true. */
  udp?: boolean;
  /** Whether this process opens the pickle and unix-socket listeners (only one process does). Default true. */
  primary?: boolean;
  /** The primary of a relay that deals connections to its workers: see LineListenerOptions.deal. */
  deal?: (socket: net.Socket, listener: string) => boolean;
  /** false: bind no TCP port (a worker dealt its connections). Default true. */
  bind?: boolean;
  /** --console-out: every line routed is also written here. Default none. */
  console?: NodeJS.WritableStream;
  /** A worker: the points its aggregate rules take go here (to the primary). Default: aggregated here. */
  remoteAggregates?: (points: KeyedPoints) => void;
  /** Where destination state changes go (the group's log). Default: this process logs them. */
  onDestinationState?: (report: DestinationStateReport) => void;
}

/**
 * The relay pipeline of one process (the primary, or one worker): a
 * listener that feeds a router. While a destination's queue is full under
 * the block policy, the listener stops reading from senders.
 */
export class RelayProcess {
  readonly listener: LineListener;
  readonly router: Router;
  /** Where lines go: the router, or the console and then the router. */
  readonly #sink: LineSink;
  /** Where polymur's own metrics go (a rules file's `statistics` may name clusters). */
  readonly #statistics: LineSink;

  constructor(config: RelayConfig, log: Logger, options: RelayProcessOptions = {}) {
    this.router = new Router(config, log, {
      share: options.share ?? 1,
      ...(options.process === undefined ? {} : { process: options.process }),
      ...(options.remoteAggregates === undefined
        ? {}
        : { remoteAggregates: options.remoteAggregates }),
      ...(options.onDestinationState === undefined
        ? {}
        : { onDestinationState: options.onDestinationState }),
      onProduced: (lines) => this.listener.counters.countGenerated(lines),
    });
    const out = options.console;
    this.#sink = out === undefined ? this.router : new ConsoleSink(out, this.router);
    const router = this.router;
    const statistics: LineSink = {
      write: (buf, start, end, lines) => router.writeStatistics(buf, start, end, lines),
    };
    this.#statistics = out === undefined ? statistics : new ConsoleSink(out, statistics);
    this.listener = new LineListener(config, this.#sink, log, {
      reusePort: options.reusePort ?? false,
      udp: options.udp ?? true,
      primary: options.primary ?? true,
      ...(options.deal === undefined ? {} : { deal: options.deal }),
      bind: options.bind ?? true,
    });
    this.router.on("blocked", () => this.listener.pause(true));
    this.router.on("unblocked", () => this.listener.pause(false));
  }

  listen(): Promise<{ port: number; udpPort: number | null; picklePort: number | null }> {
    return this.listener.listen();
  }

  /**
   * Applies a new configuration: its routing (throws, changing nothing, if
   * that is invalid), then its line limit and idle timeout for new connections.
   */
  apply(config: RelayConfig): void {
    this.router.apply(config);
    this.listener.reconfigure(config);
  }

  /** Routes polymur's own lines (self-metrics), counted as received and generated. */
  inject(text: string): void {
    this.listener.counters.generate(this.#statistics, text);
  }

  /** A new share of the queue bounds: the relay runs more or fewer processes (Router.setShare). */
  setShare(share: number): void {
    this.router.setShare(share);
  }

  stats(): PipelineStats {
    return pipelineStats(this.listener.stats(), this.router.stats());
  }

  recentRejects(): RejectSample[] {
    return this.listener.recentRejects();
  }

  /**
   * Graceful stop: no new connections; senders get `graceMs` (at most a
   * quarter of the deadline) to finish what they are sending, then their
   * connections close; queues drain until `deadlineMs` after the call.
   * Resolves with what could not be delivered, per destination.
   */
  async shutdown(deadlineMs: number, graceMs = 1_000): Promise<Record<string, number>> {
    const t0 = Date.now();
    await this.listener.close(Math.min(graceMs, deadlineMs / 4));
    return this.router.drain(Math.max(0, deadlineMs - (Date.now() - t0)));
  }
}

/** --console-out: each run of lines is written to the console, then routed. */
class ConsoleSink implements LineSink {
  readonly #out: NodeJS.WritableStream;
  readonly #next: LineSink;

  constructor(out: NodeJS.WritableStream, next: LineSink) {
    this.#out = out;
    this.#next = next;
  }

  write(buf: Buffer, start: number, end: number, lines: number): void {
    this.#out.write(buf.subarray(start, end));
    this.#next.write(buf, start, end, lines);
  }
}
