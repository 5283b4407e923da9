// `polymur demo` for real: the whole topology comes up, datapoints from both
// senders reach both destinations (through the relay, and through proxy →
// gateway with the API key's prefix), a polymurctl command it printed works
// as printed, and SIGINT stops every process it started, removes its temp
// dir and exits 0.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { waitFor } from "../fixtures/until.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = path.join(ROOT, "bin/polymur.js");
const CARBON = existsSync("/usr/bin/carbon-cache") && existsSync("/usr/bin/python3");

interface Demo {
  child: ChildProcess;
  out: () => string;
  exit: Promise<number | null>;
}

function startDemo(args: string[]): Demo {
  const child = spawn(process.execPath, [BIN, "demo", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  const exit = new Promise<number | null>((resolve) =>
    child.once("close", (code) => resolve(code)),
  );
  return { child, out: () => out, exit };
}

/** True while process `pid`, or any process of the group it leads, exists. */
function alive(pid: number): boolean {
  for (const target of [pid, -pid]) {
    try {
      process.kill(target, 0);
      return true;
    } catch {
      // no such process (group)
    }
  }
  return false;
}

/** PIDs of processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "latin1").includes(text)) pids.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return pids;
}

function sh(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("sh", ["-c", command], { cwd: ROOT }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Lines of `text` that start with `prefix` (after the indent), as printed. */
function printed(text: string, prefix: string): string[] {
  return text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith(prefix));
}

const CASES = [
  { sink: "carbon", skip: !CARBON },
  { sink: "lines", skip: false },
] as const;

describe("polymur demo", () => {
  for (const c of CASES) {
    it.skipIf(c.skip)(`--sink ${c.sink}: data end to end, polymurctl, clean Ctrl-C`, async () => {
      const demo = startDemo(["--sink", c.sink]);
      try {
        await waitFor(
          "the ready text",
          () => (demo.out().includes("Every 10 s") ? true : undefined),
          60_000,
          50,
        );
      } catch (err) {
        demo.child.kill("SIGINT");
        throw new Error(`${(err as Error).message}; output:\n${demo.out()}`);
      }
      const text = demo.out();
      expect(text).toContain("polymur demo: ready");
      const dir = /starting in (\S+)/.exec(text)?.[1];
      expect(dir).toBeDefined();
      const pids = [...(/processes: (.*)$/m.exec(text)?.[1] ?? "").matchAll(/(\S+) (\d+)/g)].map(
        (m) => Number(m[2]),
      );
      expect(pids.length).toBe(4); // control, relay, gateway, proxy
      const started = new Set([...pids, ...processesMentioning(dir!)]);

      // Both senders' datapoints at both destinations: the remote ones under
      // the API key's name (the gateway's --key-prefix).
      if (c.sink === "carbon") {
        const whisper = printed(text, "carbon-").map((l) => l.split(/\s+/)[2]!);
        expect(whisper).toHaveLength(2);
        for (const w of whisper) {
          for (const f of ["demo/sender/seq.wsp", "site-remote/demo/remote/seq.wsp"]) {
            await waitFor(`${w}/${f}`, () => existsSync(path.join(w, f)) || undefined, 30_000, 100);
          }
        }
      } else {
        const files = printed(text, "sink-").map((l) => l.split(/\s+/)[2]!);
        expect(files).toHaveLength(2);
        for (const f of files) {
          const body = await waitFor(
            `${f} to hold both senders' lines`,
            async () => {
              const b = await readFile(f, "utf8");
              return /^demo\.sender\.seq \d+ \d+$/m.test(b) &&
                /^site-remote\.demo\.remote\.seq \d+ \d+$/m.test(b)
                ? b
                : undefined;
            },
            30_000,
            100,
          );
          // -1 was replaced by the time the relay received the line.
          expect(body).toMatch(/^demo\.sender\.random \d+ \d{10}$/m);
        }
      }

      // A polymurctl command exactly as printed, with the printed credential.
      const exportLine = printed(text, "export POLYMUR_SERVER=")[0]!;
      const nodesLs = printed(text, "npx polymurctl nodes ls")[0]!;
      const nodes = await sh(`${exportLine}; ${nodesLs}`);
      expect(nodes).toMatch(/site-central\s+relay/);
      expect(nodes).toMatch(/gateways\s+gateway/);

      demo.child.kill("SIGINT");
      expect(await demo.exit).toBe(0);
      expect(demo.out()).toContain(`stopped; removed ${dir}`);
      expect(existsSync(dir!)).toBe(false);
      expect(processesMentioning(dir!)).toEqual([]);
      for (const pid of started) expect(alive(pid), `process (group) ${pid}`).toBe(false);
    });
  }
});
