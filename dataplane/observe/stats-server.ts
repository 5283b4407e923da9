import type http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../../common/logger.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import { pipelinePrometheus } from "./pipeline-prometheus.ts";
import { datapointTotals, type PipelineStats } from "./pipeline-stats.ts";

export interface StatsSource {
  stats(): PipelineStats;
  rejects(): RejectSample[];
  /** False while starting or shutting down. */
  ready(): boolean;
  /**
   * Role-specific counters (proxy link, gateway streams): Prometheus text
   * appended to /metrics, and fields merged into /stats.
   */
  extra?(): { prometheus: string; json: Record<string, unknown> };
}

/**
 * HTTP endpoints for operators and orchestrators:
 *   /metrics        Prometheus text format
 *   /stats          the same counters as JSON
 *   /debug/rejects  the most recent rejected lines, with reason and sender
 *   /healthz        200 while the process runs
 *   /readyz         200 while accepting traffic, 503 while starting or draining
 */
export async function startStatsServer(
  source: StatsSource,
  host: string,
  port: number,
): Promise<http.Server> {
  // Loaded here, not at start: a node without the endpoint never loads Node's
  // HTTP stack (7 MiB of memory per process, measured).
  const { createServer } = await import("node:http");
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (code: number, type: string, body: string): void => {
      res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(405, "text/plain", "method not allowed\n");
      return;
    }
    switch (path) {
      case "/metrics":
        send(
          200,
          "text/plain; version=0.0.4",
          pipelinePrometheus(source.stats()) + (source.extra?.().prometheus ?? ""),
        );
        return;
      case "/stats": {
        const stats = source.stats();
        send(
          200,
          "application/json",
          JSON.stringify(
            { datapoints: datapointTotals(stats), ...stats, ...source.extra?.().json },
            null,
            2,
          ),
        );
        return;
      }
      case "/debug/rejects":
        send(200, "application/json", JSON.stringify(source.rejects(), null, 2));
        return;
      case "/healthz":
        send(200, "text/plain", "ok\n");
        return;
      case "/readyz":
        if (source.ready()) send(200, "text/plain", "ready\n");
        else send(503, "text/plain", "not ready\n");
        return;
      default:
        send(
          404,
          "text/plain",
          "not found: try /metrics, /stats, /debug/rejects, /healthz, /readyz\n",
        );
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

/** Where the stats endpoints listen unless told otherwise (every role). */
export const DEFAULT_STAT_ADDR = { host: "127.0.0.1", port: 2020 } as const;

export function isDefaultAddress(
  a: { host: string; port: number },
  d: { host: string; port: number },
): boolean {
  return a.host === d.host && a.port === d.port;
}

/**
 * Starts an auxiliary listener (stats, line API). One that was asked for
 * explicitly must bind, or the node does not start. One on its default
 * address is optional: when that port is taken (another polymur on this
 * host), the node runs without it and says so, instead of refusing to relay.
 */
export async function startAuxiliary<T>(
  start: () => Promise<T>,
  onDefault: boolean,
  what: string,
  option: string,
  log: Logger,
): Promise<T | null> {
  try {
    return await start();
  } catch (err) {
    if (!onDefault || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    log.warn(
      { option },
      `${what} not started: its default address is in use (another polymur on this host?); set --${option} to run it elsewhere`,
    );
    return null;
  }
}

/**
 * The stats endpoint of any role on `--stat-addr` (null = off), started as an
 * auxiliary listener (see startAuxiliary). Resolves with the server and its
 * bound port, or null when it is off or its default port was taken.
 */
export async function startStatsEndpoint(
  source: StatsSource,
  addr: { host: string; port: number } | null,
  log: Logger,
): Promise<{ server: http.Server; port: number } | null> {
  if (addr === null) return null;
  const server = await startAuxiliary(
    () => startStatsServer(source, addr.host, addr.port),
    isDefaultAddress(addr, DEFAULT_STAT_ADDR),
    "stats endpoint",
    "stat-addr",
    log,
  );
  return server === null ? null : { server, port: (server.address() as AddressInfo).port };
}
