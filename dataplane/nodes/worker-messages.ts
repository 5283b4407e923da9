import type { DestinationStateReport } from "../../common/destination-state-log.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { KeyedPoints } from "../route/aggregation.ts";
import type { RelayConfig } from "./relay-config.ts";

/** Messages between the primary process and its relay workers (JSON over the IPC channel). */
export type ToWorker =
  /** `picklePort`: the primary's pickle listener, which every worker shares too; null without one. */
  | { t: "start"; config: RelayConfig; share: number; port: number; picklePort: number | null }
  | { t: "apply"; config: RelayConfig }
  | { t: "shutdown"; deadlineMs: number };
export type FromWorker =
  | { t: "ready" }
  | { t: "error"; message: string }
  | { t: "stats"; stats: PipelineStats; rejects: RejectSample[] }
  /** Points the worker's aggregate rules took: the primary aggregates them. */
  | { t: "aggregate"; points: KeyedPoints }
  /** A destination changed state in the worker: the primary logs it once for the group. */
  | { t: "destination"; report: DestinationStateReport }
  | { t: "done"; undelivered: Record<string, number> };
