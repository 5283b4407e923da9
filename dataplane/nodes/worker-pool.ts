import { type ChildProcess, fork } from "node:child_process";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import type { Logger } from "../../common/logger.ts";
import type { RejectSample } from "../ingest/reject-log.ts";
import type { PipelineStats } from "../observe/pipeline-stats.ts";
import type { RelayConfig } from "./relay-config.ts";
import type { FromWorker, ToWorker } from "./worker-messages.ts";

// Same extension as this module: .ts when run from source (tests), .js when compiled.
const WORKER_ENTRY = fileURLToPath(
  new URL(`./relay-worker${extname(import.meta.url)}`, import.meta.url),
);

interface Worker {
  id: number;
  child: ChildProcess;
  stats: PipelineStats | null;
  rejects: RejectSample[];
}

/**
 * Worker processes that each run a RelayProcess (listener and router) on the same TCP port
 * (SO_REUSEPORT: the kernel spreads connections across them), so one polymur
 * uses every core it is given. The primary runs one too; workers report
 * their counters every second and are restarted if they die.
 */
export class WorkerPool {
  readonly #log: Logger;
  readonly #count: number;
  #workers: Worker[] = [];
  #config: RelayConfig;
  #share: number;
  #port = 0;
  #stopping = false;

  constructor(count: number, config: RelayConfig, share: number, log: Logger) {
    this.#count = count;
    this.#config = config;
    this.#share = share;
    this.#log = log;
  }

  async start(port: number): Promise<void> {
    this.#port = port;
    await Promise.all(Array.from({ length: this.#count }, (_, i) => this.#spawn(i + 1)));
  }

  #spawn(id: number): Promise<void> {
    const child = fork(WORKER_ENTRY, [], {
      env: { ...process.env, POLYMUR_WORKER_ID: String(id) },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "advanced",
    });
    const w: Worker = { id, child, stats: null, rejects: [] };
    this.#workers.push(w);
    return new Promise<void>((resolve, reject) => {
      child.on("message", (m: FromWorker) => {
        if (m.t === "ready") resolve();
        else if (m.t === "error") reject(new Error(`worker ${id}: ${m.message}`));
        else if (m.t === "stats") {
          w.stats = m.stats;
          w.rejects = m.rejects;
        }
      });
      child.once("exit", (code, signal) => {
        // After a shutdown the last counters stay, for the final report.
        if (this.#stopping) return;
        this.#workers = this.#workers.filter((x) => x !== w);
        this.#log.error({ worker: id, code, signal }, "relay worker exited; restarting it");
        reject(new Error(`worker ${id} exited with ${code ?? signal}`));
        setTimeout(
          () =>
            void this.#spawn(id).catch((err) => this.#log.error({ err }, "worker restart failed")),
          500,
        ).unref();
      });
      const msg: ToWorker = {
        t: "start",
        config: this.#config,
        share: this.#share,
        port: this.#port,
      };
      child.send(msg);
    });
  }

  apply(config: RelayConfig): void {
    this.#config = config;
    for (const w of this.#workers) w.child.send({ t: "apply", config } satisfies ToWorker);
  }

  stats(): PipelineStats[] {
    return this.#workers.flatMap((w) => (w.stats === null ? [] : [w.stats]));
  }

  rejects(): RejectSample[] {
    return this.#workers.flatMap((w) => w.rejects);
  }

  /** Asks every worker to drain and exit; resolves with their undelivered counts. */
  async shutdown(deadlineMs: number): Promise<Array<Record<string, number>>> {
    this.#stopping = true;
    return Promise.all(
      this.#workers.map(
        (w) =>
          new Promise<Record<string, number>>((resolve) => {
            let result: Record<string, number> = {};
            w.child.on("message", (m: FromWorker) => {
              if (m.t === "done") result = m.undelivered;
            });
            w.child.once("exit", () => resolve(result));
            const kill = setTimeout(() => w.child.kill("SIGKILL"), deadlineMs + 5_000);
            kill.unref();
            w.child.send({ t: "shutdown", deadlineMs } satisfies ToWorker);
          }),
      ),
    );
  }
}
