// Entry point of a proxy worker process (see proxy-pool.ts): one ProxyProcess.
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { createLogger, type Logger } from "../../common/logger.ts";
import { HeapTrim } from "./heap-trim.ts";
import { ProxyProcess } from "./proxy-process.ts";
import type { FromProxyWorker, ToProxyWorker } from "./proxy-worker-messages.ts";

const id = Number(process.env["POLYMUR_WORKER_ID"]);
/** How long a worker waits for its spool directory held by another process. */
const LOCK_WAIT_MS = 10_000;
let proxy: ProxyProcess | null = null;
let timer: NodeJS.Timeout | null = null;

const send = (m: FromProxyWorker): void => {
  process.send?.(m);
};

const report = (): void => {
  if (proxy !== null) {
    send({
      t: "stats",
      pipeline: proxy.pipelineStats(),
      proxy: proxy.stats(),
      rejects: proxy.rejects(),
    });
  }
};

// The primary handles signals for the group; a worker only obeys its messages.
process.on("SIGINT", () => {});
process.on("SIGTERM", () => {});
process.on("SIGHUP", () => {});
process.on("disconnect", () => process.exit(1));

process.on("message", (m: ToProxyWorker) => {
  void handle(m).catch((err: unknown) => {
    send({ t: "error", message: (err as Error).message });
  });
});

async function handle(m: ToProxyWorker): Promise<void> {
  switch (m.t) {
    case "start": {
      const o = m.options;
      const log: Logger = createLogger({
        level: o.logLevel,
        bindings: { role: "proxy", worker: id },
      });
      const l = o.listener;
      const pickle =
        l.pickle === null || l.pickle === undefined || m.picklePort === null
          ? null
          : { ...l.pickle, port: m.picklePort };
      const options = {
        ...o,
        listener: { ...l, listen: { ...l.listen, port: m.port }, pickle },
      };
      proxy = await openWhenFree(
        () =>
          new ProxyProcess(options, log, {
            index: m.index,
            count: m.count,
            baseId: m.baseId,
            reusePort: true,
            udp: false,
            primary: false,
          }),
        log,
      );
      proxy.onFatal((err, gateway) => {
        send({ t: "fatal", code: err.code, message: err.rawMessage, gateway });
      });
      await proxy.listen();
      proxy.startLink();
      log.info(
        { proxyId: proxy.proxyId, spool: proxy.spoolDir, port: m.port },
        `proxy worker ${id} started: streaming to the gateway as ${proxy.proxyId}`,
      );
      timer = setInterval(report, 1_000);
      report();
      // Idle, it gives its unused heap back (heap-trim.ts); the timer does not hold it open.
      new HeapTrim().start();
      send({ t: "ready" });
      return;
    }
    case "shutdown": {
      if (timer !== null) clearInterval(timer);
      timer = null;
      if (proxy === null) {
        process.send?.({ t: "done", exit: emptyExit() } satisfies FromProxyWorker, () =>
          process.exit(0),
        );
        return;
      }
      const exit = m.graceful ? await proxy.shutdown(m.deadline) : await proxy.close();
      report();
      process.send?.({ t: "done", exit } satisfies FromProxyWorker, () => process.exit(0));
    }
  }
}

/**
 * Makes the process, waiting up to LOCK_WAIT_MS while its spool directory is
 * held by another process: after the primary was killed (kill -9), its
 * workers exit when their IPC channel closes, which may be a moment after
 * the new primary starts.
 */
async function openWhenFree(make: () => ProxyProcess, log: Logger): Promise<ProxyProcess> {
  const until = Date.now() + LOCK_WAIT_MS;
  let warned = false;
  for (;;) {
    try {
      return make();
    } catch (err) {
      const busy =
        err instanceof PolymurError &&
        err.code === ErrorCode.Spool &&
        err.message.includes("in use by process");
      if (!busy || Date.now() > until) throw err;
      if (!warned) {
        warned = true;
        log.warn({ err: err.message }, "spool: directory still held; waiting for it to be free");
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function emptyExit(): import("../link/proxy/batch-buffer.ts").ExitReport {
  return {
    kept: { batches: 0, lines: 0 },
    lost: { batches: 0, lines: 0, reason: "exit_without_spool" },
  };
}
