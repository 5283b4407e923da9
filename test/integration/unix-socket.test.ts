// Graphite plaintext over a unix stream socket (--unix-socket), as
// carbon-c-relay's `listen linemode unix`: lines arrive like TCP ones; a stale
// socket file is replaced at start, a live one refused; the file goes at stop.
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LineSink } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";
import { waitFor } from "../fixtures/until.ts";

const done: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (done.length > 0) await done.pop()!();
});

function socketPath(): string {
  const dir = fs.mkdtempSync(path.join(tmpdir(), "polymur-unix-"));
  done.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  return path.join(dir, "carbon.sock");
}

function send(file: string, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect(file, () => s.end(text, () => resolve()));
    s.once("error", reject);
  });
}

describe("unix socket listener", () => {
  it("takes plaintext on the socket, replaces a stale socket file, and removes the file at stop", async () => {
    const out = await LineSink.start();
    done.push(() => out.close());
    const file = socketPath();
    // A socket file left by a process that is gone: one killed while it listened.
    const gone = spawn(
      process.execPath,
      [
        "-e",
        "require('net').createServer().listen(process.argv[1], () => console.log('up'))",
        file,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    await new Promise((r) => gone.stdout!.once("data", r));
    gone.kill("SIGKILL");
    await new Promise((r) => gone.once("exit", r));
    expect(fs.lstatSync(file).isSocket()).toBe(true);
    const p = await PolymurProcess.relay(["--unix-socket", file, "--destinations", out.address]);
    done.push(() => p.stop());
    const lines = Array.from({ length: 500 }, (_, i) => `unix.m${i % 10} ${i} 1700000000`);
    await send(file, `${lines.join("\n")}\nnotaline\n`);
    await waitFor("every line through the unix socket", () =>
      out.lines.length >= lines.length ? true : undefined,
    );
    expect(out.lines).toEqual(lines);
    const s = await waitForStats(p, (x) => x.datapoints.rejected === 1);
    expect(s.rejected["field_count"]).toBe(1);
    await p.stop();
    expect(fs.existsSync(file)).toBe(false);
  });

  it("refuses a socket file another process answers on", async () => {
    const file = socketPath();
    const other = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => other.listen(file, () => r()));
    done.push(() => new Promise((r) => other.close(() => r(undefined))));
    await expect(
      PolymurProcess.relay(["--unix-socket", file, "--destinations", "127.0.0.1:1"]),
    ).rejects.toThrow(/is in use by another process/);
  });
});
