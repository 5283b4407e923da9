import type { DestinationStateReport } from "../../common/destination-state-log.ts";
import type { HandoffMessage } from "../ingest/connection-handoff.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { KeyedPoints } from "../route/aggregation.ts";
import type { RelayConfig } from "./relay-config.ts";

/**
 * Messages between the primary process and its relay workers (the IPC
 * channel, structured clone). A "conn" message carries a sender connection's
 * socket with it, either way (connection-handoff.ts).
 */
export type ToWorker =
  /**
   * `port`, `picklePort`: the primary's listeners. With `bind`, the worker
   * listens on them too (SO_REUSEPORT); without, the primary deals it its
   * connections.
   */
  | {
      t: "start";
      config: RelayConfig;
      share: number;
      port: number;
      picklePort: number | null;
      bind: boolean;
    }
  | { t: "apply"; config: RelayConfig }
  /** The relay runs more or fewer processes: this one's new share of the queue bounds. */
  | { t: "share"; share: number }
  | HandoffMessage
  /**
   * Retire: send every connection back to the primary, deliver what is
   * queued, then stop as at "shutdown" (stats, "done", exit).
   */
  | { t: "retire" }
  | { t: "shutdown"; deadlineMs: number };
export type FromWorker =
  | { t: "ready" }
  | { t: "error"; message: string }
  /** Every second; `load`: the share of a core it used over that second (CpuLoad). */
  | { t: "stats"; stats: PipelineStats; rejects: RejectSample[]; load: number }
  | HandoffMessage
  /** Points the worker's aggregate rules took: the primary aggregates them. */
  | { t: "aggregate"; points: KeyedPoints }
  /** A destination changed state in the worker: the primary logs it once for the group. */
  | { t: "destination"; report: DestinationStateReport }
  | { t: "done"; undelivered: Record<string, number> };
