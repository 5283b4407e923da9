// Entry point of a relay worker process (see worker-pool.ts): one RelayProcess.

import type net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "../../common/logger.ts";
import { handoffMessage, receivedCarry } from "../ingest/connection-handoff.ts";
import { HeapTrim } from "./heap-trim.ts";
import { RelayProcess } from "./relay-process.ts";
import type { FromWorker, ToWorker } from "./worker-messages.ts";
import { CpuLoad } from "./worker-scaling.ts";

const log = createLogger({
  bindings: { role: "relay", worker: Number(process.env["POLYMUR_WORKER_ID"]) },
});
let relay: RelayProcess | null = null;
let timer: NodeJS.Timeout | null = null;
/** It drains and exits (stop()): once. */
let stopping = false;

/** How often a retiring worker looks whether its queues are empty. */
const RETIRE_POLL_MS = 100;
/** Its stop holds nothing to drain: the deadline only bounds closing its connections. */
const RETIRE_DEADLINE_MS = 5_000;

const send = (m: FromWorker): void => {
  process.send?.(m);
};

// The primary handles signals for the group; a worker only obeys its messages.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => {});
process.on("SIGHUP", () => {});
process.on("disconnect", () => process.exit(1));

process.on("message", (m: ToWorker, socket?: net.Socket) => {
  if (m.t === "conn") {
    if (socket === undefined) return;
    if (relay === null) socket.destroy();
    else relay.listener.adopt(socket, m.listener, receivedCarry(m), m.fresh);
    return;
  }
  void handle(m).catch((err: unknown) => {
    send({ t: "error", message: (err as Error).message });
  });
});

async function handle(m: ToWorker): Promise<void> {
  switch (m.t) {
    case "start": {
      const pickle =
        m.config.pickle === null || m.config.pickle === undefined || m.picklePort === null
          ? null
          : { ...m.config.pickle, port: m.picklePort };
      const config = { ...m.config, listen: { ...m.config.listen, port: m.port }, pickle };
      relay = new RelayProcess(config, log, {
        share: m.share,
        process: {
          index: Number(process.env["POLYMUR_WORKER_ID"]),
          count: Math.round(1 / m.share),
        },
        reusePort: m.bind,
        bind: m.bind,
        udp: false,
        primary: false,
        remoteAggregates: (points) => send({ t: "aggregate", points }),
        onDestinationState: (report) => send({ t: "destination", report }),
      });
      await relay.listen();
      const cpu = new CpuLoad();
      timer = setInterval(() => {
        const load = cpu.sample();
        if (relay !== null)
          send({ t: "stats", stats: relay.stats(), rejects: relay.recentRejects(), load });
      }, 1_000);
      // Idle, it gives its unused heap back (heap-trim.ts); the timer does not hold it open.
      new HeapTrim().start();
      send({ t: "ready" });
      return;
    }
    case "apply":
      relay?.apply(m.config);
      return;
    case "share":
      relay?.setShare(m.share);
      return;
    case "retire": {
      // Its senders go on in the primary; it leaves once it holds nothing.
      for (const h of relay?.listener.release(1) ?? []) {
        process.send?.(handoffMessage(h), h.socket, { keepOpen: false }, (err: Error | null) => {
          if (err !== null) log.error({ err }, "a sender connection could not be handed back");
        });
      }
      while (relay !== null && !stopping && holds(relay)) await sleep(RETIRE_POLL_MS);
      if (!stopping) await stop(RETIRE_DEADLINE_MS);
      return;
    }
    case "shutdown":
      await stop(m.deadlineMs);
  }
}

/** Whether any destination still holds datapoints (memory or disk). */
function holds(r: RelayProcess): boolean {
  return r.stats().destinations.some((d) => d.queuedLines > 0);
}

/** Drains (up to `deadlineMs`), reports its last counters and "done", and exits. */
async function stop(deadlineMs: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  if (timer !== null) clearInterval(timer);
  const undelivered = relay === null ? {} : await relay.shutdown(deadlineMs);
  if (relay !== null) send({ t: "stats", stats: relay.stats(), rejects: [], load: 0 });
  process.send?.({ t: "done", undelivered } satisfies FromWorker, () => process.exit(0));
}
