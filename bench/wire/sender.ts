/**
 * The `wire-in` scenario's load generator: sends a workload made by
 * workload.ts (plaintext lines or pickle frames, one slice per connection)
 * over C connections, in TCP or TLS, as fast as the relay takes it or at a
 * fixed total rate; the stand-in for relaybench's gen, which speaks
 * plaintext over TCP only. Prints one JSON line like gen's (lines, bytes,
 * start_mono/end_mono on CLOCK_MONOTONIC as sink.c's times, its own CPU
 * while sending) and exits.
 *
 *   node bench/wire/sender.ts --port P --data FILE --index FILE
 *        [--tls-ca CA.pem] [--rate R] [--tick-ms 10] [--write-bytes 65536]
 *
 * As fast as possible: every connection writes its slice in writes of
 * --write-bytes (gen's 64 KiB), the next when the socket drains. At a fixed
 * rate R: every tick, connection i may have sent R / C * elapsed datapoints
 * (plus one), as gen's rate loop; it writes the whole units (workload.ts:
 * a pickle frame, or a group of lines) that takes, in one write.
 * Connections are all open (TLS: handshakes done) before the clock starts.
 */
import fs from "node:fs";
import net from "node:net";
import tls from "node:tls";
import { parseArgs } from "node:util";
import type { WorkloadIndex } from "./workload.ts";

const { values: o } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    data: { type: "string" },
    index: { type: "string" },
    "tls-ca": { type: "string" },
    rate: { type: "string", default: "0" },
    "tick-ms": { type: "string", default: "10" },
    "write-bytes": { type: "string", default: String(64 * 1024) },
  },
});
if (!o.port || !o.data || !o.index) {
  console.error("usage: sender.ts --port P --data FILE --index FILE [--tls-ca CA] [--rate R]");
  process.exit(2);
}
const port = Number(o.port);
const rate = Number(o.rate);
const tickMs = Number(o["tick-ms"]);
const writeBytes = Number(o["write-bytes"]);
const index = JSON.parse(fs.readFileSync(o.index, "utf8")) as WorkloadIndex;
const data = fs.readFileSync(o.data);
const ca = o["tls-ca"] ? fs.readFileSync(o["tls-ca"]) : null;

/** CLOCK_MONOTONIC in seconds (libuv's hrtime), comparable with sink.c's *_mono. */
const mono = (): number => Number(process.hrtime.bigint()) / 1e9;

interface Conn {
  socket: net.Socket;
  bytes: Buffer;
  lines: number;
  unitEnds: number[];
  /** Bytes handed to the socket, units handed to it (rate mode). */
  at: number;
  units: number;
  done: boolean;
  failed: boolean;
}

let errors = 0;

function connect(slice: WorkloadIndex["conns"][number]): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket =
      ca === null ? net.connect({ host: o.host!, port }) : tls.connect({ host: o.host!, port, ca });
    const c: Conn = {
      socket,
      bytes: data.subarray(slice.offset, slice.offset + slice.length),
      lines: slice.lines,
      unitEnds: slice.unitEnds,
      at: 0,
      units: 0,
      done: false,
      failed: false,
    };
    socket.once(ca === null ? "connect" : "secureConnect", () => {
      socket.off("error", reject);
      socket.on("error", () => {
        if (!c.failed) errors++;
        c.failed = true;
      });
      // Whatever the relay sends (TLS session tickets, its close_notify) is
      // read and dropped: unread data at close() would make the kernel reset
      // the connection, and with it what was not yet delivered.
      socket.resume();
      resolve(c);
    });
    socket.once("error", reject);
  });
}

/** Writes the rest of c's slice as fast as the socket drains; resolves when the kernel has it all. */
function blast(c: Conn): Promise<void> {
  return new Promise((resolve) => {
    const pump = (): void => {
      while (c.at < c.bytes.length && !c.failed) {
        const end = Math.min(c.at + writeBytes, c.bytes.length);
        const more = c.socket.write(c.bytes.subarray(c.at, end));
        c.at = end;
        if (!more) {
          c.socket.once("drain", pump);
          return;
        }
      }
      finish(c, resolve);
    };
    pump();
  });
}

/**
 * Ends c once everything is written; `resolve` is called once, at its
 * `finish` (handed to the kernel) or its close, whichever comes first.
 */
function finish(c: Conn, resolve: () => void): void {
  if (c.done) return;
  c.done = true;
  if (c.failed) {
    resolve();
    return;
  }
  let called = false;
  const once = (): void => {
    if (called) return;
    called = true;
    resolve();
  };
  c.socket.once("finish", once);
  c.socket.once("close", once);
  c.socket.end();
}

/** Fixed total rate: every tick each connection writes the whole units its share allows. */
function paced(conns: Conn[], t0: number): Promise<void> {
  const perConn = rate / conns.length;
  const perUnit = index.spec.perUnit;
  let pending = conns.length;
  return new Promise((resolve) => {
    const done = (): void => {
      if (--pending === 0) resolve();
    };
    let next = performance.now();
    const tick = (): void => {
      const el = mono() - t0;
      for (const c of conns) {
        if (c.done) continue;
        const allowed = Math.floor(perConn * el) + 1;
        let u = c.units;
        while (u < c.unitEnds.length && u * perUnit < allowed) u++;
        if (u > c.units) {
          const end = c.unitEnds[u - 1]!;
          c.socket.write(c.bytes.subarray(c.at, end));
          c.at = end;
          c.units = u;
        }
        if (c.units === c.unitEnds.length || c.failed) finish(c, done);
      }
      if (pending === 0) return;
      next += tickMs;
      const now = performance.now();
      // far behind (machine overloaded): do not try to burst, as gen
      if (now - next > 1000) next = now;
      setTimeout(tick, Math.max(0, next - now));
    };
    tick();
  });
}

const t_conn0 = mono();
const conns = await Promise.all(index.conns.map(connect));
// now: a socket the relay has closed by the end no longer tells
const first = conns[0]!.socket;
const negotiated =
  first instanceof tls.TLSSocket
    ? { protocol: first.getProtocol(), cipher: first.getCipher().name }
    : null;
const start = mono();
const cpu0 = process.cpuUsage();
await (rate > 0 ? paced(conns, start) : Promise.all(conns.map(blast)));
const end = mono();
const cpu = process.cpuUsage(cpu0);
const lines = conns.reduce((n, c) => n + (c.failed ? 0 : c.lines), 0);
const bytes = conns.reduce((n, c) => n + c.at, 0);
process.stdout.write(
  `${JSON.stringify({
    lines,
    bytes,
    failed_lines: index.conns.reduce((n, s) => n + s.lines, 0) - lines,
    errors,
    conns: conns.length,
    rate,
    connect_s: start - t_conn0,
    elapsed_s: end - start,
    lines_per_s: lines / (end - start),
    start_mono: start,
    end_mono: end,
    cpu_user_s: cpu.user / 1e6,
    cpu_sys_s: cpu.system / 1e6,
    // loading the input and connecting too
    cpu_total_s: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
    tls: negotiated,
  })}\n`,
);
// The relay closes each connection once it has read it to the end; exit
// then (or after a while: the driver stops us anyway when its run is over).
const closed = conns.map((c) =>
  c.socket.destroyed ? Promise.resolve() : new Promise((r) => c.socket.once("close", r)),
);
await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, 120_000).unref())]);
for (const c of conns) c.socket.destroy();
