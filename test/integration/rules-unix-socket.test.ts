// A relay.conf's unix socket receptor (`listen type linemode PATH proto unix`)
// run by `polymur relay --rules`: lines sent on the socket are routed by the
// rules like those on the block's TCP receptor; the socket file goes at stop;
// a second unix receptor is refused at its position before anything listens.
import fs from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { freePorts } from "../fixtures/free-ports.ts";
import { LineSink } from "../fixtures/line-sink.ts";
import { PolymurProcess } from "../fixtures/polymur.ts";

const done: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (done.length > 0) await done.pop()!();
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(tmpdir(), "polymur-rules-unix-"));
  done.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function send(connect: () => net.Socket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect();
    s.once("connect", () => s.end(text, () => resolve()));
    s.once("error", reject);
  });
}

describe("relay.conf unix socket receptor", () => {
  it("routes lines sent on the listen block's unix socket by the rules", async () => {
    const [kept, dropped] = await Promise.all([LineSink.start(), LineSink.start()]);
    done.push(
      () => kept.close(),
      () => dropped.close(),
    );
    const dir = tempDir();
    const sock = path.join(dir, "carbon.sock");
    const [port] = await freePorts(1);
    const conf = path.join(dir, "relay.conf");
    fs.writeFileSync(
      conf,
      `cluster kept forward ${kept.address};
cluster other forward ${dropped.address};
match ^junk\\. send to blackhole stop;
match ^unix\\. send to kept stop;
match * send to other;
listen type linemode 127.0.0.1:${port} proto tcp ${sock} proto unix;
`,
    );
    const p = await PolymurProcess.relay(["--rules", conf]);
    done.push(() => p.stop());
    expect(p.port).toBe(port);
    expect(fs.lstatSync(sock).isSocket()).toBe(true);
    const lines = Array.from({ length: 300 }, (_, i) => `unix.m${i % 10} ${i} 1700000000`);
    await send(
      () => net.connect(sock),
      `${lines.join("\n")}\njunk.x 1 1700000000\ntcp.y 2 1700000000\n`,
    );
    await kept.waitForLines(lines.length);
    await dropped.waitForLines(1);
    expect(kept.lines).toEqual(lines);
    // The block's TCP receptor is the relay's TCP listener.
    await send(() => net.connect(port!, "127.0.0.1"), "unix.tcp 3 1700000000\n");
    await kept.waitForLines(lines.length + 1);
    expect(kept.lines.slice(lines.length)).toEqual(["unix.tcp 3 1700000000"]);
    expect(dropped.lines).toEqual(["tcp.y 2 1700000000"]);
    await p.stop();
    expect(fs.existsSync(sock)).toBe(false);
  });

  it("refuses a second unix socket receptor where it is written", async () => {
    const dir = tempDir();
    const conf = path.join(dir, "relay.conf");
    const [port] = await freePorts(1);
    fs.writeFileSync(
      conf,
      `cluster c forward 127.0.0.1:1;
match * send to c;
listen type linemode 127.0.0.1:${port} proto tcp ${dir}/a.sock proto unix;
listen type linemode ${dir}/b.sock proto unix;
`,
    );
    await expect(PolymurProcess.relay(["--rules", conf])).rejects.toThrow(
      `${conf}:4:22: a second unix socket receptor "${dir}/b.sock": polymur listens on one unix socket (the first: "${dir}/a.sock")`,
    );
    expect(fs.existsSync(`${dir}/a.sock`)).toBe(false);
  });
});
