import type { FrameHandler } from "./line-framer.ts";
import type { LineSink } from "./line-sink.ts";
import type { RejectReason } from "./line-validator.ts";
import { RejectLog, type RejectSample } from "./reject-log.ts";

/** What the ingest stage of one process has counted. */
export interface IngestStats {
  /** Valid datapoints received. */
  received: number;
  /** Rejected lines, per reason. */
  rejected: Record<RejectReason, number>;
  /** Sender connections open now. */
  connections: number;
  connectionsTotal: number;
  connectionsRefused: number;
  bytesIn: number;
  /** Datagrams' datapoints dropped because ingest was paused (a datagram cannot be pushed back). */
  droppedPaused: number;
  /** True while reading from senders is paused. */
  paused: boolean;
}

/**
 * The ingest stage's counters, shared by everything that frames lines: the
 * TCP and UDP listeners, and a gateway framing the lines of a proxy's batch.
 */
export class IngestCounters {
  received = 0;
  bytesIn = 0;
  connectionsTotal = 0;
  connectionsRefused = 0;
  droppedPaused = 0;
  readonly rejects = new RejectLog();

  /**
   * A framer's handler for lines from `source`: valid runs are counted and
   * written to `sink`, rejected lines are counted and sampled.
   */
  handler(sink: LineSink, source: string): FrameHandler {
    return {
      segment: (buf, start, end, lines) => {
        this.received += lines;
        sink.write(buf, start, end, lines);
      },
      reject: (reason, detail, line) => {
        this.rejects.add(reason, detail, line, source);
      },
    };
  }

  stats(connections: number, paused: boolean): IngestStats {
    return {
      received: this.received,
      rejected: { ...this.rejects.counts },
      connections,
      connectionsTotal: this.connectionsTotal,
      connectionsRefused: this.connectionsRefused,
      bytesIn: this.bytesIn,
      droppedPaused: this.droppedPaused,
      paused,
    };
  }

  recentRejects(): RejectSample[] {
    return this.rejects.recent();
  }
}
