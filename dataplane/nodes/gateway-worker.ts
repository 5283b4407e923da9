// Entry point of a gateway worker process (see gateway-pool.ts): one
// GatewayProcess, whose proxy-id claims and de-duplication go to the primary
// (DedupClient) and whose API keys come from it.
import { createLogger } from "../../common/logger.ts";
import type { ApiKey } from "../link/gateway/api-keys.ts";
import { TrustedProxies } from "../link/gateway/client-address.ts";
import { DedupClient } from "../link/gateway/dedup-client.ts";
import { DedupTable } from "../link/gateway/dedup-table.ts";
import type { FromGatewayWorker, ToGatewayWorker, WireKey } from "./gateway-messages.ts";
import { GatewayProcess } from "./gateway-process.ts";
import { HeapTrim } from "./heap-trim.ts";

const id = Number(process.env["POLYMUR_WORKER_ID"]);
let log = createLogger({ bindings: { role: "gateway", worker: id } });
let gateway: GatewayProcess | null = null;
let client: DedupClient | null = null;
let timer: NodeJS.Timeout | null = null;

const send = (m: FromGatewayWorker): void => {
  // A closed channel (the primary is gone) is no error here: "disconnect" ends this process.
  if (process.connected) process.send?.(m, undefined, undefined, noop);
};

// The primary handles signals for the group; a worker only obeys its messages.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => {});
process.on("SIGHUP", () => {});
process.on("disconnect", () => {
  client?.close(new Error("the primary process is gone"));
  process.exit(1);
});

process.on("message", (m: ToGatewayWorker) => {
  void handle(m).catch((err: unknown) => {
    send({ t: "error", message: (err as Error).message });
  });
});

function keys(wire: WireKey[]): ApiKey[] {
  return wire.map(([name, hex]) => ({ name, digest: Buffer.from(hex, "hex") }));
}

async function handle(m: ToGatewayWorker): Promise<void> {
  switch (m.t) {
    case "start": {
      const o = m.options;
      log = createLogger({ level: o.logLevel, bindings: { role: "gateway", worker: id } });
      const table = new DedupTable(o.dedupProxies);
      client = new DedupClient(table, send);
      gateway = new GatewayProcess(
        {
          ...o,
          listen: { ...o.listen, port: m.port },
          trustedProxies: new TrustedProxies(o.trustedProxiesSpec),
          controlPlane: null,
        },
        log,
        {
          process: m.process,
          trustedProxies: new TrustedProxies(o.trustedProxiesSpec),
          claims: client,
          dedup: table,
          remoteAggregates: (points) => send({ t: "aggregate", points }),
          onDestinationState: (report) => send({ t: "destination", report }),
        },
      );
      gateway.keys.replace(keys(m.keys));
      await gateway.listen();
      const g = gateway;
      timer = setInterval(() => {
        send({
          t: "stats",
          stats: g.stats(),
          rejects: g.rejects(),
          gateway: g.counters.snapshot(),
        });
      }, 1_000);
      // Idle, it gives its unused heap back (heap-trim.ts); the timer does not hold it open.
      new HeapTrim().start();
      send({ t: "ready" });
      return;
    }
    case "keys":
      // Streams whose key is gone are cut now (the link service listens to the ring).
      gateway?.keys.replace(keys(m.keys));
      return;
    case "apply":
      gateway?.apply(m.routing, m.maxLineLength);
      return;
    case "claimed":
    case "probe":
    case "release":
      client?.receive(m);
      return;
    case "shutdown": {
      if (timer !== null) clearInterval(timer);
      const g = gateway;
      const undelivered = g === null ? {} : await g.shutdown(m.deadlineMs);
      if (g !== null) {
        send({ t: "stats", stats: g.stats(), rejects: [], gateway: g.counters.snapshot() });
      }
      process.send?.({ t: "done", undelivered } satisfies FromGatewayWorker, () => process.exit(0));
    }
  }
}

function noop(): void {}
