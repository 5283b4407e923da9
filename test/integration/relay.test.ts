import dgram from "node:dgram";
import { writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { datapoints, freePort, LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";

const cleanups: Array<() => Promise<unknown>> = [];
const relays: PolymurProcess[] = [];
afterEach(async () => {
  // Relays first: a relay whose destination vanished first would spend its
  // whole shutdown timeout trying to deliver to it.
  await Promise.all(relays.splice(0).map((p) => p.stop()));
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function sink(port = 0): Promise<LineSink> {
  const s = await LineSink.start(port);
  cleanups.push(() => s.close());
  return s;
}

async function relay(args: string[], env: NodeJS.ProcessEnv = {}): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args, env);
  relays.push(p);
  return p;
}

// More than loopback's socket buffers can hold (they autotune to several MB),
// so a destination that stops reading really backs up into polymur's queue.
const BIG = 600_000;

function isSubsequence(sub: readonly string[], all: readonly string[]): boolean {
  let j = 0;
  for (const x of sub) {
    while (j < all.length && all[j] !== x) j++;
    if (j === all.length) return false;
    j++;
  }
  return true;
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

describe("relay: broadcast", () => {
  it("delivers every line from many concurrent senders to every destination, byte for byte", async () => {
    const [a, b] = [await sink(), await sink()];
    const p = await relay(["--destinations", `${a.address},${b.address}`, "--workers", "2"]);
    const senders = 200;
    const per = 250;
    const all: string[] = [];
    const jobs: Promise<void>[] = [];
    for (let c = 0; c < senders; c++) {
      const lines = datapoints(`c${c}`, per).map((l, i) =>
        i % 3 === 0 ? l.replace(" ", "\t") : l,
      );
      all.push(...lines);
      jobs.push(sendLines(p.port, lines.join("\n") + "\n"));
    }
    await Promise.all(jobs);
    await a.waitForLines(all.length);
    await b.waitForLines(all.length);
    expect(sorted(a.lines)).toEqual(sorted(all));
    expect(sorted(b.lines)).toEqual(sorted(all));
    const s = await waitForStats(p, (x) => x.received === all.length);
    for (const d of s.destinations) {
      expect(d.forwarded).toBe(all.length);
      expect(d.dropped).toBe(0);
    }
  });

  it("holds 2,000 concurrent sender connections open at once and delivers all of them", async () => {
    const a = await sink();
    const p = await relay(["--destinations", a.address, "--workers", "2"]);
    const sockets = await Promise.all(
      Array.from({ length: 2000 }, async () => {
        const s = net.connect(p.port, "127.0.0.1");
        s.on("error", () => {});
        await new Promise((r) => s.once("connect", r));
        return s;
      }),
    );
    await waitForStats(p, (x) => x.connections === 2000, 30_000);
    sockets.forEach((s, i) => {
      s.write(`conc.c${i} ${i} 1700000000\n`);
    });
    await a.waitForLines(2000);
    expect(new Set(a.lines).size).toBe(2000);
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.end(() => r()))));
    await waitForStats(p, (x) => x.connections === 0);
  });

  it("--max-connections refuses connections over the limit and counts them", async () => {
    const a = await sink();
    // The limit is per process: one process, so that it is the whole relay's.
    const p = await relay([
      "--destinations",
      a.address,
      "--max-connections",
      "5",
      "--workers",
      "1",
    ]);
    const open = await Promise.all(
      Array.from({ length: 5 }, async () => {
        const s = net.connect(p.port, "127.0.0.1");
        await new Promise((r) => s.once("connect", r));
        return s;
      }),
    );
    await waitForStats(p, (x) => x.connections === 5);
    const extra = net.connect(p.port, "127.0.0.1");
    extra.on("error", () => {});
    await new Promise((r) => extra.once("close", r));
    const s = await p.stats();
    expect(s.connections).toBe(5);
    expect(s.connectionsRefused).toBe(1);
    for (const o of open) o.destroy();
  });

  it("rejects bad lines one by one, counts them by reason, and keeps the connection", async () => {
    const a = await sink();
    const p = await relay(["--destinations", a.address, "--max-line-length", "100"]);
    const socket = net.connect(p.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const input = [
      "good.one 1 1700000000",
      "no.timestamp 1",
      "bad.value x 1700000000",
      "nan.value nan 1700000000",
      `too.long ${"1".repeat(200)} 1700000000`,
      "bad.ts 1 inf",
      "",
      "good.two 2 1700000001",
    ].join("\n");
    socket.write(
      Buffer.concat([
        Buffer.from(input + "\n"),
        Buffer.from([0xc3, 0x28, 0x20, 0x31, 0x20, 0x32, 0x0a]),
      ]),
    );
    socket.write("good.three 3 1700000002\n");
    await a.waitForLines(3);
    expect(a.lines).toEqual([
      "good.one 1 1700000000",
      "good.two 2 1700000001",
      "good.three 3 1700000002",
    ]);
    expect(socket.destroyed).toBe(false);
    // Still the same connection: one more line goes through it.
    socket.write("good.four 4 1700000003\n");
    await a.waitForLines(4);
    socket.end();
    // A worker process reports its counters once a second.
    const s = await waitForStats(p, (x) => x.datapoints.rejected === 7);
    expect(s.datapoints.received).toBe(11);
    expect(s.rejected).toMatchObject({
      field_count: 1,
      bad_value: 1,
      nan_value: 1,
      line_too_long: 1,
      bad_timestamp: 1,
      empty_line: 1,
      bad_utf8: 1,
    });
    const recent = JSON.parse((await p.get("/debug/rejects")).body) as Array<{
      reason: string;
      line: string;
    }>;
    expect(recent.map((r) => r.reason)).toContain("nan_value");
    expect(recent.find((r) => r.reason === "field_count")?.line).toBe("no.timestamp 1");
    const metrics = (await p.get("/metrics")).body;
    expect(metrics).toContain('polymur_rejected_total{reason="bad_value"} 1');
  });

  it("accepts UDP datagrams when --udp-addr is set", async () => {
    const a = await sink();
    const p = await relay(["--destinations", a.address, "--udp-addr", "127.0.0.1:0"]);
    const u = dgram.createSocket("udp4");
    await new Promise<void>((r) =>
      u.send("u.a 1 1700000000\nu.b 2 1700000000\n", p.udpPort!, "127.0.0.1", () => r()),
    );
    u.close();
    await a.waitForLines(2);
    expect(sorted(a.lines)).toEqual(["u.a 1 1700000000", "u.b 2 1700000000"]);
  });
});

describe("relay: destinations that are down, slow, or restart", () => {
  it("buffers for a destination that is down and delivers everything once it comes up; the other is not delayed", async () => {
    const up = await sink();
    const downPort = await freePort();
    const p = await relay([
      "--destinations",
      `${up.address},127.0.0.1:${downPort}`,
      "--backoff-max",
      "0.5",
    ]);
    const lines = datapoints("down", 5000);
    await sendLines(p.port, lines.join("\n") + "\n");
    await up.waitForLines(lines.length);
    const s = await waitForStats(p, (x) =>
      x.destinations.some((d) => d.queuedLines === lines.length),
    );
    expect(s.destinations.find((d) => d.spec.endsWith(`:${downPort}`))?.state).not.toBe(
      "connected",
    );
    const late = await sink(downPort);
    await late.waitForLines(lines.length);
    expect(sorted(late.lines)).toEqual(sorted(lines));
  });

  it("a slow destination fills only its own queue; drop-newest counts exactly what it dropped", async () => {
    const fast = await sink();
    const slow = await sink();
    slow.pause();
    const p = await relay([
      "--destinations",
      `${fast.address},${slow.address}`,
      // The fast destination gets room for a burst; only the slow one is small.
      "--queue-size",
      `1GiB,${slow.address}@256KiB`,
      "--overflow",
      `drop-oldest,${slow.address}@drop-newest`,
    ]);
    const lines = datapoints("slow", BIG);
    await sendLines(p.port, lines.join("\n") + "\n");
    await fast.waitForLines(lines.length);
    expect(fast.lines.length).toBe(lines.length);
    const stuck = await waitForStats(p, (x) => x.received === lines.length);
    const sd = stuck.destinations.find((d) => d.spec === slow.address)!;
    expect(sd.dropped).toBeGreaterThan(0);
    slow.resume();
    const after = await waitForStats(
      p,
      (x) => x.destinations.find((d) => d.spec === slow.address)!.queuedLines === 0,
    );
    const d = after.destinations.find((x) => x.spec === slow.address)!;
    await slow.waitForLines(lines.length - d.dropped);
    await new Promise((r) => setTimeout(r, 200));
    expect(slow.lines.length).toBe(lines.length - d.dropped);
    expect(d.forwarded + d.dropped).toBe(lines.length);
    // What arrived is in order, with gaps only (no corruption, no reordering),
    // and starts with the oldest: drop-newest refuses new data, not old.
    expect(slow.lines[0]).toBe(lines[0]);
    expect(isSubsequence(slow.lines, lines)).toBe(true);
  });

  it("drop-oldest keeps the newest datapoints", async () => {
    const slow = await sink();
    slow.pause();
    const p = await relay([
      "--destinations",
      slow.address,
      "--queue-size",
      "256KiB",
      "--overflow",
      "drop-oldest",
    ]);
    const lines = datapoints("old", BIG);
    await sendLines(p.port, lines.join("\n") + "\n");
    await waitForStats(p, (x) => x.received === lines.length);
    slow.resume();
    const s = await waitForStats(p, (x) => x.destinations[0]!.queuedLines === 0);
    const d = s.destinations[0]!;
    expect(d.dropped).toBeGreaterThan(0);
    await slow.waitForLines(lines.length - d.dropped);
    expect(slow.lines.at(-1)).toBe(lines.at(-1));
    expect(isSubsequence(slow.lines, lines)).toBe(true);
    expect(d.forwarded + d.dropped).toBe(lines.length);
  });

  it("block policy pushes back on senders instead of dropping", async () => {
    const slow = await sink();
    slow.pause();
    const p = await relay([
      "--destinations",
      slow.address,
      "--queue-size",
      "128KiB",
      "--overflow",
      "block",
    ]);
    const lines = datapoints("block", BIG);
    const sending = sendLines(p.port, lines.join("\n") + "\n");
    await waitForStats(p, (x) => x.paused);
    slow.resume();
    await sending;
    await slow.waitForLines(lines.length);
    expect(slow.lines).toEqual(lines);
    const s = await p.stats();
    expect(s.destinations[0]!.dropped).toBe(0);
  });

  it("a destination that restarts mid-stream gets every datapoint (resend window, duplicates allowed)", async () => {
    const a = await sink();
    const p = await relay(["--destinations", a.address, "--backoff-max", "0.3"]);
    const socket = net.connect(p.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const lines = datapoints("restart", 30_000);
    const sent: string[] = [];
    let i = 0;
    const batch = 500;
    const tick = async (): Promise<void> => {
      const part = lines.slice(i, i + batch);
      i += batch;
      sent.push(...part);
      socket.write(part.join("\n") + "\n");
      await new Promise((r) => setTimeout(r, 10));
    };
    while (i < lines.length / 2) await tick();
    const port = a.port;
    await a.crash();
    const before = [...a.lines];
    while (i < (lines.length * 3) / 4) await tick();
    const b = await sink(port);
    while (i < lines.length) await tick();
    socket.end();
    const got = new Set([...before, ...b.lines]);
    const t0 = Date.now();
    while (lines.some((l) => !got.has(l)) && Date.now() - t0 < 20_000) {
      await new Promise((r) => setTimeout(r, 50));
      for (const l of b.lines) got.add(l);
    }
    const missing = lines.filter((l) => !got.has(l));
    expect(missing).toEqual([]);
    // Every datapoint counted once as forwarded (a worker reports once a second).
    await waitForStats(p, (x) => x.destinations[0]!.forwarded === lines.length);
  });
});

describe("relay: runtime changes", () => {
  it("line API: putdest, getdest, deldest (the Go polymur's, on localhost)", async () => {
    const a = await sink();
    const b = await sink();
    const p = await relay(["--destinations", a.address]);
    expect(await p.api(`putdest ${b.address}`)).toBe(`ok added ${b.address}\n`);
    expect(await p.api("getdest")).toBe(`${a.address}\n${b.address}\nok 2 destinations\n`);
    expect(await p.api(`putdest ${b.address}`)).toMatch(/^error: destination .* already exists/);
    expect(await p.api("putdest nonsense")).toMatch(/^error: invalid destination "nonsense"/);
    await sendLines(p.port, "api.x 1 1700000000\n");
    await b.waitForLines(1);
    expect(await p.api(`deldest ${a.address}`)).toBe(`ok removed ${a.address}\n`);
    expect(await p.api("getdest")).toBe(`${b.address}\nok 1 destinations\n`);
    expect(await p.api("frobnicate")).toMatch(/^error: unknown command/);
  });

  it("line API with a token refuses commands until `auth`", async () => {
    const a = await sink();
    const p = await relay(["--destinations", a.address, "--api-token", "s3cret"]);
    expect(await p.api("getdest")).toMatch(/^error: authenticate first/);
    expect(await p.api("auth wrong\ngetdest")).toMatch(
      /^error: bad token\nerror: authenticate first/,
    );
    expect(await p.api("auth s3cret\ngetdest")).toBe(
      `ok authenticated\n${a.address}\nok 1 destinations\n`,
    );
    expect(p.stdout).not.toContain("s3cret");
  });

  it("SIGHUP reloads the config file under load: a destination that stays loses nothing, a new one starts receiving", async () => {
    const a = await sink();
    const b = await sink();
    const dir = await mkdtemp(join(tmpdir(), "polymur-reload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const conf = join(dir, "relay.conf");
    writeFileSync(conf, `# test\ndestinations = ${a.address}\n`);
    const p = await relay(["--config", conf]);
    const socket = net.connect(p.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    const lines = datapoints("reload", 20_000);
    for (let i = 0; i < lines.length; i += 500) {
      socket.write(lines.slice(i, i + 500).join("\n") + "\n");
      if (i === 10_000) {
        writeFileSync(conf, `destinations = ${a.address},${b.address}\n`);
        p.kill("SIGHUP");
        await p.waitForLog((l) => l.msg === "SIGHUP: configuration reloaded");
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    socket.end();
    await a.waitForLines(lines.length);
    expect(a.lines).toEqual(lines);
    await b.waitForLines(lines.length - 10_500);
    // The new destination gets an unbroken tail of the stream.
    expect(b.lines).toEqual(lines.slice(lines.length - b.lines.length));
    expect(await p.api("getdest")).toBe(`${a.address}\n${b.address}\nok 2 destinations\n`);
  });

  it("a bad config on SIGHUP is refused and the running configuration stays", async () => {
    const a = await sink();
    const dir = await mkdtemp(join(tmpdir(), "polymur-reload-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const conf = join(dir, "relay.conf");
    writeFileSync(conf, `destinations = ${a.address}\n`);
    const p = await relay(["--config", conf]);
    writeFileSync(conf, "destinations = not-a-destination\n");
    p.kill("SIGHUP");
    const l = await p.waitForLog((x) => x.msg.startsWith("SIGHUP: reload failed"));
    expect(String(l["err"])).toContain('invalid destination "not-a-destination"');
    await sendLines(p.port, "still.works 1 1700000000\n");
    await a.waitForLines(1);
  });
});

describe("relay: graceful shutdown", () => {
  it("SIGTERM drains the queues before exiting", async () => {
    const a = await sink();
    a.pause();
    const p = await relay(["--destinations", a.address]);
    const lines = datapoints("drain", 50_000);
    await sendLines(p.port, lines.join("\n") + "\n");
    await waitForStats(p, (x) => x.received === lines.length);
    p.kill("SIGTERM");
    setTimeout(() => a.resume(), 500);
    expect(await p.exited()).toBe(0);
    await a.waitForLines(lines.length);
    expect(a.lines).toEqual(lines);
    expect(
      p.logs.some((l) => l.msg === "shutdown complete: every queued datapoint was written"),
    ).toBe(true);
  });

  it("SIGTERM with a dead destination logs exactly what was left undelivered", async () => {
    const deadPort = await freePort();
    const p = await relay(["--destinations", `127.0.0.1:${deadPort}`, "--shutdown-timeout", "1"]);
    await sendLines(p.port, datapoints("dead", 1234).join("\n") + "\n");
    await waitForStats(p, (x) => x.received === 1234);
    p.kill("SIGTERM");
    // Exit status 3: stopped, datapoints left undelivered (docs/errors.md "Exit codes").
    expect(await p.exited()).toBe(3);
    const l = p.logs.find((x) => x.msg.startsWith("shutdown complete"))!;
    expect(l.msg).toBe("shutdown complete: 1234 datapoints left undelivered");
    expect(l["undelivered"]).toEqual({ [`127.0.0.1:${deadPort}`]: 1234 });
  });
});

describe("relay: observability", () => {
  it("sends its own metrics through the relay every --metrics-flush", async () => {
    const a = await sink();
    const p = await relay([
      "--destinations",
      a.address,
      "--metrics-flush",
      "0.3",
      "--metrics-prefix",
      "test.relay",
    ]);
    await sendLines(p.port, datapoints("self", 10).join("\n") + "\nbroken\n");
    const t0 = Date.now();
    const seen = (re: RegExp) => a.lines.some((l) => re.test(l));
    while (!seen(/^test\.relay\.rejected\.field_count 1 \d+$/)) {
      if (Date.now() - t0 > 10_000)
        throw new Error(
          `self-metrics not seen: ${a.lines.filter((l) => l.startsWith("test.")).join("\n")}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
    const dest = a.address.replace(/[.:]/g, "_");
    expect(seen(new RegExp(`^test\\.relay\\.destinations\\.${dest}\\.up 1 \\d+$`))).toBe(true);
    // Self-metrics count as received, and as generated: received is every
    // line that entered the pipeline, so that the accounting balances.
    const s = await waitForStats(p, (x) => x.datapoints.received - x.datapoints.generated === 11);
    expect(s.datapoints.generated).toBeGreaterThan(0);
    const received = a.lines
      .filter((l) => l.startsWith("test.relay.received "))
      .reduce((n, l) => n + Number(l.split(" ")[1]), 0);
    expect(received).toBeGreaterThanOrEqual(11);
  });

  it("--console-out prints what it forwards", async () => {
    const p = await relay(["--console-out"]);
    await sendLines(p.port, "console.a 1 1700000000\nnot valid\n");
    const t0 = Date.now();
    while (!p.stdout.includes("console.a 1 1700000000\n")) {
      if (Date.now() - t0 > 10_000) throw new Error(p.stdout);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(p.stdout).not.toContain("not valid\n");
  });
});

describe("relay: command line", () => {
  it("accepts the Go polymur's single-dash flags", async () => {
    const a = await sink();
    const p = await relay([`-destinations=${a.address}`, "-distribution", "broadcast"]);
    await sendLines(p.port, "go.style 1 1700000000\n");
    await a.waitForLines(1);
  });

  it("runs without its stats and line API when their default ports are taken; an explicit taken address is fatal", async () => {
    // Hold the default ports (if something else on this host already holds
    // them, they are just as taken).
    const held: net.Server[] = [];
    for (const port of [2020, 2030]) {
      const s = net.createServer();
      await new Promise<void>((resolve) => {
        s.once("error", () => resolve());
        s.listen(port, "127.0.0.1", () => {
          held.push(s);
          resolve();
        });
      });
    }
    cleanups.push(async () => {
      for (const s of held) await new Promise((r) => s.close(r));
    });
    const a = await sink();
    const p = await PolymurProcess.role("relay", [
      "--listen-addr",
      "127.0.0.1:0",
      "--destinations",
      a.address,
      "--metrics-flush",
      "0",
    ]);
    relays.push(p);
    expect(
      p.logs.some((l) => l.msg.startsWith("line API not started: its default address is in use")),
    ).toBe(true);
    expect(
      p.logs.some((l) =>
        l.msg.startsWith("stats endpoint not started: its default address is in use"),
      ),
    ).toBe(true);
    await sendLines(p.port, "still.relays 1 1700000000\n");
    await a.waitForLines(1);
    // 2030 is held, and is not the stats endpoint's default: asked for, so fatal.
    await expect(
      PolymurProcess.role("relay", [
        "--listen-addr",
        "127.0.0.1:0",
        "--stat-addr",
        "127.0.0.1:2030",
      ]),
    ).rejects.toThrow(/EADDRINUSE/);
  });

  it("refuses an unknown flag with a one-line reason", async () => {
    await expect(relay(["--frobnicate", "1"])).rejects.toThrow(/unknown option --frobnicate/);
  });

  it("readyz is 200 while running", async () => {
    const p = await relay([]);
    expect((await p.get("/readyz")).status).toBe(200);
    expect((await p.get("/healthz")).body).toBe("ok\n");
    expect(p.logs.some((l) => l.msg.startsWith("no destinations"))).toBe(true);
  });
});
