import { countLines, type FrameHandler } from "./line-framer.ts";
import type { LineSink } from "./line-sink.ts";
import type { RejectReason } from "./line-validator.ts";
import type { ListenerCounters, ListenerStats } from "./listener-counters.ts";
import { RejectLog, type RejectSample } from "./reject-log.ts";

/** What the ingest stage of one process has counted. */
export interface IngestStats {
  /**
   * Every line read (valid or not), and polymur's own lines (`generated`):
   * received = accepted + rejected + droppedPaused.
   */
  received: number;
  /** Valid lines handed on (to the router, or a proxy's batcher), generated ones included. */
  accepted: number;
  /** Of accepted: lines polymur made itself (self-metrics). */
  generated: number;
  /** Rejected lines, per reason. */
  rejected: Record<RejectReason, number>;
  /** Sender connections open now. */
  connections: number;
  connectionsTotal: number;
  /** Sender connections closed at once: over the connection cap, or out of descriptors. */
  connectionsRefused: number;
  /** Sender connections closed because they sent nothing for the idle timeout. */
  connectionsIdleClosed: number;
  bytesIn: number;
  /** Lines of datagrams dropped because ingest was paused (a datagram cannot be pushed back). */
  droppedPaused: number;
  /** True while reading from senders is paused. */
  paused: boolean;
  /** Each listener's own counts (none for a gateway, whose lines come in batches). */
  listeners: ListenerStats[];
}

/**
 * The ingest stage's counters, shared by everything that frames lines: the
 * TCP and UDP listeners, and a gateway framing the lines of a proxy's batch.
 */
export class IngestCounters {
  /** Valid lines handed on. */
  accepted = 0;
  /** Of accepted: polymur's own lines. */
  generated = 0;
  bytesIn = 0;
  connectionsTotal = 0;
  connectionsRefused = 0;
  connectionsIdleClosed = 0;
  droppedPaused = 0;
  readonly rejects = new RejectLog();

  /**
   * A framer's handler for lines from `source`: valid runs are counted and
   * written to `sink`, rejected lines are counted and sampled; both are also
   * counted for the `listener` they came through, if given.
   */
  handler(sink: LineSink, source: string, listener?: ListenerCounters): FrameHandler {
    if (listener === undefined) {
      return {
        segment: (buf, start, end, lines) => {
          this.accepted += lines;
          sink.write(buf, start, end, lines);
        },
        reject: (reason, detail, line) => {
          this.rejects.add(reason, detail, line, source);
        },
      };
    }
    return {
      segment: (buf, start, end, lines) => {
        this.accepted += lines;
        listener.accepted += lines;
        sink.write(buf, start, end, lines);
      },
      reject: (reason, detail, line) => {
        listener.rejected++;
        this.rejects.add(reason, detail, line, source);
      },
    };
  }

  /**
   * Writes lines made by polymur itself (self-metrics) to `sink`, counted as
   * received, accepted and generated.
   */
  generate(sink: LineSink, text: string): void {
    const b = Buffer.from(text);
    if (b.length === 0) return;
    const lines = countLines(b);
    this.accepted += lines;
    this.generated += lines;
    sink.write(b, 0, b.length, lines);
  }

  /** Counts lines polymur made and routed itself (aggregates) as received, accepted and generated. */
  countGenerated(lines: number): void {
    this.accepted += lines;
    this.generated += lines;
  }

  stats(connections: number, paused: boolean, listeners: ListenerStats[] = []): IngestStats {
    return {
      received: this.accepted + this.rejects.total + this.droppedPaused,
      accepted: this.accepted,
      generated: this.generated,
      rejected: { ...this.rejects.counts },
      connections,
      connectionsTotal: this.connectionsTotal,
      connectionsRefused: this.connectionsRefused,
      connectionsIdleClosed: this.connectionsIdleClosed,
      bytesIn: this.bytesIn,
      droppedPaused: this.droppedPaused,
      paused,
      listeners,
    };
  }

  recentRejects(): RejectSample[] {
    return this.rejects.recent();
  }
}
