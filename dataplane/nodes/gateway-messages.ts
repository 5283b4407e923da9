import type { DestinationStateReport } from "../../common/destination-state-log.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { ClaimsToPrimary, ClaimsToProcess } from "../link/gateway/claim-board.ts";
import type { GatewayCountersSnapshot } from "../link/gateway/gateway-counters.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { KeyedPoints } from "../route/aggregation.ts";
import type { RouterConfig } from "../route/router.ts";
import type { GatewayOptions } from "./gateway-options.ts";

/**
 * The gateway's options as a worker gets them: plain data (no
 * TrustedProxies object: the worker builds its own from the spec), and no
 * control plane (the primary alone talks to it).
 */
export type WorkerGatewayOptions = Omit<GatewayOptions, "trustedProxies" | "controlPlane">;

/**
 * An API key as it crosses to a worker: the name and the digest (hex), what
 * the primary's ring holds; never a secret.
 */
export type WireKey = [name: string, digestHex: string];

/**
 * Messages from the primary to its gateway workers (IPC, advanced
 * serialization), besides the claims' (ClaimsToProcess, claim-board.ts):
 * - `start`: options, the port to share, this worker's process number and
 *   the group's size, and the keys in force;
 * - `keys`: the whole key ring after a change (keys file, control plane):
 *   the worker replaces its ring, cutting the streams of keys now gone;
 * - `apply`: a new routing configuration and line limit;
 * - `shutdown`: drain and exit, answering `done`.
 */
export type ToGatewayWorker =
  | {
      t: "start";
      options: WorkerGatewayOptions;
      port: number;
      process: { index: number; count: number };
      keys: WireKey[];
    }
  | { t: "keys"; keys: WireKey[] }
  | { t: "apply"; routing: RouterConfig; maxLineLength: number }
  | { t: "shutdown"; deadlineMs: number }
  | ClaimsToProcess;

/**
 * Messages from a gateway worker to the primary, besides the claims'
 * (ClaimsToPrimary):
 * - `stats` every second (and once more at shutdown): its pipeline counters,
 *   recent rejects, and its gateway counters;
 * - `aggregate`, `destination`: as a relay worker's;
 * - `done`: its shutdown report.
 */
export type FromGatewayWorker =
  | { t: "ready" }
  | { t: "error"; message: string }
  | {
      t: "stats";
      stats: PipelineStats;
      rejects: RejectSample[];
      gateway: GatewayCountersSnapshot;
    }
  | { t: "aggregate"; points: KeyedPoints }
  | { t: "destination"; report: DestinationStateReport }
  | { t: "done"; undelivered: Record<string, number> }
  | ClaimsToPrimary;
