import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../../common/logger.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { PipelineStats } from "./pipeline-stats.ts";

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
  const server = http.createServer((req, res) => {
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
          prometheus(source.stats()) + (source.extra?.().prometheus ?? ""),
        );
        return;
      case "/stats":
        send(
          200,
          "application/json",
          JSON.stringify({ ...source.stats(), ...source.extra?.().json }, null, 2),
        );
        return;
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

function label(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

export function prometheus(s: PipelineStats): string {
  const out: string[] = [];
  const metric = (
    name: string,
    type: string,
    help: string,
    rows: Array<[string, number]>,
  ): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of rows) out.push(`${name}${labels} ${v}`);
  };
  metric("polymur_received_total", "counter", "Valid datapoints received.", [["", s.received]]);
  metric(
    "polymur_rejected_total",
    "counter",
    "Lines rejected, by reason.",
    Object.entries(s.rejected).map(([r, n]) => [`{reason="${r}"}`, n]),
  );
  metric("polymur_received_bytes_total", "counter", "Bytes read from senders.", [["", s.bytesIn]]);
  metric("polymur_connections", "gauge", "Open sender connections.", [["", s.connections]]);
  metric("polymur_connections_total", "counter", "Sender connections accepted.", [
    ["", s.connectionsTotal],
  ]);
  metric(
    "polymur_connections_refused_total",
    "counter",
    "Sender connections refused at the limit.",
    [["", s.connectionsRefused]],
  );
  metric(
    "polymur_ingest_paused",
    "gauge",
    "1 while ingest is paused by a full queue (block policy).",
    [["", s.paused ? 1 : 0]],
  );
  metric(
    "polymur_undelivered_total",
    "counter",
    "Datapoints given up at shutdown or destination removal.",
    [["", s.undelivered]],
  );
  const d = (f: (x: PipelineStats["destinations"][number]) => number): Array<[string, number]> =>
    s.destinations.map((x) => [`{destination="${label(x.spec)}"}`, f(x)]);
  metric(
    "polymur_destination_forwarded_total",
    "counter",
    "Datapoints written to the destination.",
    d((x) => x.forwarded),
  );
  metric(
    "polymur_destination_resent_total",
    "counter",
    "Datapoints written again after a connection failure.",
    d((x) => x.resent),
  );
  metric(
    "polymur_destination_dropped_total",
    "counter",
    "Datapoints dropped because the queue was full.",
    d((x) => x.dropped),
  );
  metric(
    "polymur_destination_queued_datapoints",
    "gauge",
    "Datapoints waiting in the queue.",
    d((x) => x.queuedLines),
  );
  metric(
    "polymur_destination_queued_bytes",
    "gauge",
    "Bytes waiting in the queue.",
    d((x) => x.queuedBytes),
  );
  metric(
    "polymur_destination_up",
    "gauge",
    "1 when connected.",
    d((x) => (x.state === "connected" ? 1 : 0)),
  );
  metric(
    "polymur_destination_connection_failures_total",
    "counter",
    "Connections lost or refused.",
    d((x) => x.failures),
  );
  return out.join("\n") + "\n";
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
