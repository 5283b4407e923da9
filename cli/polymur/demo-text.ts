// What `polymur demo` prints once everything is up: where each piece
// listens, the polymurctl commands to try, where the data lands, how to stop.
import type { DemoProcess } from "./demo-process.ts";
import type { DemoSink } from "./demo-sinks.ts";

/** Ports of one data-plane node. */
export interface DemoNodePorts {
  port: number;
  statsPort: number;
}

/** Everything the ready text names. */
export interface DemoReadyInfo {
  dir: string;
  /** The control plane's URL. */
  server: string;
  adminToken: string;
  carbon: boolean;
  sinks: DemoSink[];
  processes: DemoProcess[];
  relay: DemoNodePorts;
  gateway: DemoNodePorts;
  proxy: DemoNodePorts;
}

/**
 * The text printed when the demo is ready. Its first line is
 * `polymur demo: ready`; the line after "polymurctl (…):" is a shell line
 * that sets the control plane's address and admin credential, and the lines
 * after it are polymurctl commands to run in this checkout.
 */
export function readyText(i: DemoReadyInfo): string {
  const url = (p: number, what: string): string => `http://127.0.0.1:${p}${what}`;
  const pids = i.processes.map((p) => `${p.name} ${p.pid ?? "?"}`).join(", ");
  const data = i.carbon
    ? [
        "Data (carbon-cache, one whisper file per metric; demo.sender.seq -> demo/sender/seq.wsp):",
        ...i.sinks.map((s) => `  ${s.name.padEnd(8)} ${s.destination.padEnd(22)} ${s.where}`),
        `  find ${i.sinks[0]?.where ?? ""} -name '*.wsp'`,
        `  whisper-fetch --from=$(( $(date +%s) - 300 )) ${i.sinks[0]?.where ?? ""}/demo/sender/seq.wsp | grep -v None`,
      ]
    : [
        "Data (line sinks: every line polymur forwarded, appended to a file):",
        ...i.sinks.map((s) => `  ${s.name.padEnd(8)} ${s.destination.padEnd(22)} ${s.where}`),
        `  tail -f ${i.sinks[0]?.where ?? ""}`,
      ];
  return [
    "polymur demo: ready",
    "",
    "  sender ──▶ relay (group site-central) ──┬──▶ " + (i.sinks[0]?.name ?? ""),
    "                                          └──▶ " + (i.sinks[1]?.name ?? ""),
    "  remote-sender ──▶ proxy ══HTTP/2══▶ gateway (group gateways, --key-prefix) ──▶ both",
    "  control plane: destinations, routing and the API key for the relay and the gateway",
    "",
    "Listening (127.0.0.1):",
    `  control plane  ${i.server}`,
    `  relay          ${i.relay.port}   stats ${url(i.relay.statsPort, "/stats")}`,
    `  gateway        ${i.gateway.port}   stats ${url(i.gateway.statsPort, "/stats")}`,
    `  proxy          ${i.proxy.port}   stats ${url(i.proxy.statsPort, "/metrics")}`,
    `  rejected lines ${url(i.relay.statsPort, "/debug/rejects")}`,
    "",
    "polymurctl (in this checkout; the admin credential is this run's, made up at start):",
    `  export POLYMUR_SERVER=${i.server} POLYMUR_ADMIN_TOKEN=${i.adminToken}`,
    "  npx polymurctl status",
    "  npx polymurctl nodes ls",
    "  npx polymurctl dest ls --all",
    "  npx polymurctl key ls",
    "",
    "Send your own datapoints (-1: polymur stamps the time it received the line):",
    `  echo "my.test.metric 42 -1" | nc -q1 127.0.0.1 ${i.relay.port}    # into the relay`,
    `  echo "my.remote.metric 1 -1" | nc -q1 127.0.0.1 ${i.proxy.port}   # into the proxy: stored as site-remote.my.remote.metric`,
    "",
    ...data,
    "",
    `Logs: ${i.dir}/logs/ (one JSON-lines file per process); processes: ${pids}`,
    "Ctrl-C stops everything (senders, proxy, gateway, relay, control plane, caches) and removes",
    `${i.dir}. Every 10 s a line says what has arrived.`,
  ].join("\n");
}
