import type { RejectSample } from "../ingest/reject-log.ts";
import type { ExitReport } from "../link/proxy/batch-buffer.ts";
import type { ProxyStats } from "../link/proxy/proxy-stats.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { ProxyOptions } from "./proxy-options.ts";

/** Messages from the primary of a proxy to its worker processes (over the IPC channel). */
export type ToProxyWorker =
  /**
   * `index` of `count`: the worker's process number and the group's size;
   * `baseId`: process 0's proxy id, which the worker's own is derived from;
   * `port`, `picklePort`: the primary's listeners, which the workers share
   * (SO_REUSEPORT); picklePort null without one.
   */
  | {
      t: "start";
      options: ProxyOptions;
      index: number;
      count: number;
      baseId: string;
      port: number;
      picklePort: number | null;
    }
  /**
   * Stop: gracefully (drain until `deadline`, ms since the epoch, as
   * ProxyProcess.shutdown) or at once (`graceful` false, as ProxyProcess.close).
   */
  | { t: "shutdown"; graceful: boolean; deadline: number };

/** Messages from a proxy's worker process to its primary. */
export type FromProxyWorker =
  | { t: "ready" }
  | { t: "error"; message: string }
  /** Its counters, every second and once more at shutdown. */
  | { t: "stats"; pipeline: PipelineStats; proxy: ProxyStats; rejects: RejectSample[] }
  /** A gateway refused the API key (Connect code and message): the whole proxy stops. */
  | { t: "fatal"; code: number; message: string; gateway: string }
  /** It stopped: where its unacknowledged datapoints are. */
  | { t: "done"; exit: ExitReport };
