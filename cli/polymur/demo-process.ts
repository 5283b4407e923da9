// The processes `polymur demo` starts: real polymur roles and carbon-caches,
// each in its own process group with its output in a log file, stopped in
// order by the demo itself (Ctrl-C reaches only the demo, not its children).
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { signalGroup, trackGroup, untrackGroup } from "./process-groups.ts";

/** One JSON log line of a polymur process (pino). */
export type DemoLogLine = Record<string, unknown>;

/** What to run and where its output goes. */
export interface DemoProcessOptions {
  /** Name shown to the user ("relay", "carbon-a"). */
  name: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** stdout and stderr are appended here. */
  logFile: string;
}

/**
 * A child of the demo in its own process group (`detached`), so that a
 * terminal's Ctrl-C reaches the demo alone and the demo stops its children in
 * order (senders, proxy, gateway, relay, control plane, caches).
 */
export class DemoProcess {
  readonly name: string;
  readonly logFile: string;
  readonly #child: ChildProcess;
  readonly #log: WriteStream;
  readonly #exit: Promise<number | null>;
  readonly #lines: DemoLogLine[] = [];
  readonly #waiters = new Set<() => void>();
  #exited = false;
  #stopping = false;

  constructor(o: DemoProcessOptions) {
    this.name = o.name;
    this.logFile = o.logFile;
    this.#log = createWriteStream(o.logFile, { flags: "a" });
    this.#child = spawn(o.command, o.args, {
      env: o.env,
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const pid = this.#child.pid;
    if (pid !== undefined) trackGroup(pid);
    this.#child.stderr?.pipe(this.#log, { end: false });
    const rl = createInterface({ input: this.#child.stdout! });
    rl.on("line", (line) => {
      this.#log.write(`${line}\n`);
      if (!line.startsWith("{")) return;
      try {
        this.#lines.push(JSON.parse(line) as DemoLogLine);
      } catch {
        return;
      }
      for (const w of this.#waiters) w();
    });
    this.#exit = new Promise((resolve) => {
      this.#child.once("error", (err) => {
        this.#log.write(`cannot run ${o.command}: ${err.message}\n`);
      });
      this.#child.once("close", (code, signal) => {
        if (pid !== undefined) untrackGroup(pid);
        this.#exited = true;
        for (const w of this.#waiters) w();
        this.#log.end();
        resolve(code ?? (signal === null ? null : 128));
      });
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  get exited(): boolean {
    return this.#exited;
  }

  /** Whether stop() was called (an exit after it is expected). */
  get stopping(): boolean {
    return this.#stopping;
  }

  /** Resolves with the exit code once the process has exited. */
  get exit(): Promise<number | null> {
    return this.#exit;
  }

  /** Waits for a log line that `match` accepts; rejects if the process exits first. */
  waitForLog(match: (l: DemoLogLine) => boolean, timeoutMs: number): Promise<DemoLogLine> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = this.#lines.find(match);
        if (found !== undefined) {
          done(() => resolve(found));
        } else if (this.#exited) {
          done(() => reject(new Error(`${this.name} exited while starting; see ${this.logFile}`)));
        }
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`${this.name} not ready after ${timeoutMs} ms; see ${this.logFile}`)),
          ),
        timeoutMs,
      );
      const done = (f: () => void): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        f();
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** SIGTERM to the whole group, SIGKILL after `killAfterMs`; resolves once it has exited. */
  async stop(killAfterMs = 15_000): Promise<void> {
    this.#stopping = true;
    const pid = this.#child.pid;
    if (this.#exited || pid === undefined) return;
    signalGroup(pid, "SIGTERM");
    const timer = setTimeout(() => signalGroup(pid, "SIGKILL"), killAfterMs);
    await this.#exit;
    clearTimeout(timer);
  }
}

/** Paths of the polymur and polymurctl launchers beside the one running now. */
export function demoBins(): { polymur: string; polymurctl: string } {
  const polymur = process.argv[1] ?? "";
  return { polymur, polymurctl: path.join(path.dirname(polymur), "polymurctl.js") };
}

/** Runs `polymurctl ARGS` to completion; resolves with its stdout or rejects with its stderr. */
export function runPolymurctl(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [demoBins().polymurctl, ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    child.once("error", reject);
    child.once("close", (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`polymurctl ${args.join(" ")} exited ${code}: ${err.trim()}`));
    });
  });
}
