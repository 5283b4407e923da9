import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, onTestFinished } from "vitest";
import { expectBalanced } from "../fixtures/accounting.ts";
import { ccrTrace } from "../fixtures/ccr-trace.ts";
import { DatagramSink } from "../fixtures/datagram-sink.ts";
import { LineSink } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";
import { startGateway, startProxy } from "../fixtures/proxy-gateway.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { until } from "../fixtures/until.ts";

/**
 * A relay run from a relay.conf (`polymur relay --rules`), with the default
 * worker count, senders on several connections (spread over the worker
 * processes): every sink gets exactly what carbon-c-relay's own `-t`
 * decides for the same file and lines, aggregates are computed once over
 * every process's points, and the accounting balances.
 */

const procs: PolymurProcess[] = [];
const sinks: LineSink[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop();
  for (const s of sinks.splice(0)) await s.close();
});

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  sinks.push(s);
  return s;
}

async function relay(args: string[]): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args);
  procs.push(p);
  return p;
}

/** Sends `lines` over `conns` connections, round robin, and closes them. */
async function send(port: number, lines: readonly string[], conns = 8): Promise<void> {
  const parts: string[][] = Array.from({ length: conns }, () => []);
  for (const [i, l] of lines.entries()) parts[i % conns]!.push(l);
  await Promise.all(
    parts.map(
      (part) =>
        new Promise<void>((resolve, reject) => {
          const s = net.connect(port, "127.0.0.1", () => {
            s.end(part.map((l) => `${l}\n`).join(""));
          });
          s.on("error", reject);
          s.on("close", () => resolve());
        }),
    ),
  );
}

const BIN = fileURLToPath(new URL("../../bin/polymur.js", import.meta.url));
const tempDir = (): string => mkdtempSync(join(tmpdir(), "polymur-rules-"));

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

function rulesFile(dir: string, text: string): string {
  const path = `${dir}/relay.conf`;
  writeFileSync(path, text);
  return path;
}

describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
  "polymur relay --rules",
  () => {
    it("delivers to each member exactly what carbon-c-relay -t decides, rewrites included", async () => {
      const [a, b, c, d, e, f] = await Promise.all([
        sink(),
        sink(),
        sink(),
        sink(),
        sink(),
        sink(),
      ]);
      const dir = tempDir();
      const conf = rulesFile(
        dir,
        `# clusters of every kind the data path forwards to
cluster main carbon_ch replication 1 ${a.address}=a ${b.address}=b;
cluster spread any_of ${c.address} ${d.address};
cluster backup failover ${e.address} ${f.address};
rewrite ^servers\\.(web[0-9]+)\\.(.*) into hosts.\\_1.\\2;
match ^junk\\. send to blackhole stop;
match ^hosts\\. validate "^[0-9]+ [0-9]+$" else drop send to main stop;
match ^apps\\.(checkout|search)\\. send to spread;
match ^apps\\. send to backup stop;
match * send to main;
`,
      );
      const lines: string[] = [];
      const ts = 1_700_000_000;
      for (let i = 0; i < 2_000; i++) {
        const k = i % 7;
        const name = [
          `servers.WEB${i % 13}.cpu.user`,
          `junk.n${i}`,
          `apps.checkout.n${i % 50}.count`,
          `apps.billing.n${i % 50}.count`,
          `apps.search.q${i % 31}`,
          `db.n${i % 97}.size`,
          `servers.web${i % 5}.mem`,
        ][k]!;
        const value = i % 11 === 0 ? "-x" : i % 3 === 0 ? `${i}.5` : `${i}`;
        lines.push(`${name} ${value} ${ts + i}`);
      }
      const valid = lines.filter((l) => !l.includes(" -x "));
      const expected = new Map<string, string[]>();
      for (const [i, decision] of ccrTrace(conf, valid).entries()) {
        const rest = valid[i]!.slice(valid[i]!.indexOf(" "));
        for (const s of decision.sends) {
          const list = expected.get(s.destination) ?? [];
          list.push(`${s.metric}${rest}`);
          expected.set(s.destination, list);
        }
      }
      const p = await relay(["--rules", conf]);
      await send(p.port, lines);
      const total = [...expected.values()].reduce((n, l) => n + l.length, 0);
      await until(
        "every line at its sinks",
        () => [a, b, c, d, e, f].reduce((n, s) => n + s.lines.length, 0) >= total,
        15_000,
      );
      for (const s of [a, b, c, d, e, f]) {
        expect(sorted(s.lines)).toEqual(sorted(expected.get(s.address) ?? []));
      }
      const stats = await waitForStats(p, (s) => s.datapoints.received === lines.length);
      expectBalanced(stats.datapoints, stats.destinations, false);
      const t = stats.datapoints;
      expect(t.rejectedBy.bad_value).toBe(lines.length - valid.length);
      expect(t.unroutedBy.blackhole).toBeGreaterThan(0);
      expect(t.unroutedBy.validate).toBeGreaterThan(0);
      expect(t.unroutedBy.no_match).toBe(0);
    });

    it("aggregates every process's points of a series in one bucket, written once", async () => {
      const out = await sink();
      const rest = await sink();
      const dir = tempDir();
      const conf = rulesFile(
        dir,
        `cluster agg forward ${out.address};
cluster rest forward ${rest.address};
aggregate ^apps\\.([^.]+)\\.requests$ every 1 seconds expire after 2 seconds
  compute sum write to agg.\\1.sum
  compute count write to agg.\\1.count
  compute max write to agg.\\1.max
  send to agg stop;
match * send to rest;
`,
      );
      const p = await relay(["--rules", conf]);
      const now = Math.floor(Date.now() / 1000);
      const lines: string[] = [];
      for (let i = 0; i < 400; i++) lines.push(`apps.web.requests ${i} ${now}`);
      lines.push(`other.metric 1 ${now}`);
      await send(p.port, lines, 16);
      await until("the aggregates", () => out.lines.length >= 3, 15_000);
      const bucket = now - (now % 1);
      expect(sorted(out.lines)).toEqual(
        sorted([
          `agg.web.sum ${(399 * 400) / 2}.000000 ${bucket + 1}`,
          `agg.web.count 400 ${bucket + 1}`,
          `agg.web.max 399.000000 ${bucket + 1}`,
        ]),
      );
      expect(rest.lines).toEqual([`other.metric 1 ${now}`]);
      const stats = await waitForStats(
        p,
        (s) => s.datapoints.received === lines.length + 3 && s.aggregation !== null,
      );
      expectBalanced(stats.datapoints, stats.destinations, false);
      expect(stats.aggregation).toMatchObject({ points: 1_200, produced: 3, openSeries: 0 });
      expect(stats.datapoints.generated).toBe(3);
    });

    it("statistics: polymur's own metrics at the interval and prefix the file asks, to its clusters only", async () => {
      const [stats, rest] = await Promise.all([sink(), sink()]);
      const dir = tempDir();
      const conf = rulesFile(
        dir,
        `cluster stats forward ${stats.address};
cluster rest forward ${rest.address};
statistics submit every 1 seconds prefix with relays.test send to stats stop;
match * send to rest;
`,
      );
      const p = await relay(["--rules", conf]);
      await send(p.port, ["a 1 1700000000", "b 2 1700000000"], 1);
      await until(
        "two flushes of self-metrics",
        () => stats.lines.filter((l) => l.startsWith("relays.test.received ")).length >= 2,
      );
      expect(stats.lines.every((l) => l.startsWith("relays.test."))).toBe(true);
      expect(sorted(rest.lines)).toEqual(["a 1 1700000000", "b 2 1700000000"]);
      // Without "reset counters after interval": totals since start, as carbon-c-relay.
      const received = stats.lines
        .filter((l) => l.startsWith("relays.test.received "))
        .map((l) => Number(l.split(" ")[1]));
      expect(received[1]!).toBeGreaterThanOrEqual(received[0]!);
      expect(received[0]!).toBeGreaterThanOrEqual(2);
    });

    it("SIGHUP applies an edited file; a broken one is refused with file:line:column and changes nothing", async () => {
      const [a, b] = await Promise.all([sink(), sink()]);
      const dir = tempDir();
      const conf = rulesFile(dir, `cluster x forward ${a.address};\nmatch * send to x;\n`);
      const p = await relay(["--rules", conf]);
      await send(p.port, ["one 1 1700000000"], 1);
      await until("first line", () => a.lines.length === 1, 10_000);

      rulesFile(dir, `cluster y forward ${b.address};\nmatch * send to y;\n`);
      p.kill("SIGHUP");
      await p.waitForLog((l) => /SIGHUP: configuration reloaded/.test(String(l.msg)), 10_000);
      await send(p.port, ["two 2 1700000000"], 1);
      await until("second line at the new cluster", () => b.lines.length === 1, 10_000);

      rulesFile(dir, `cluster z forward ${a.address};\nmatch * sned to z;\n`);
      p.kill("SIGHUP");
      const failed = await p.waitForLog((l) => /reload failed/.test(String(l.msg)), 10_000);
      expect(String(failed["err"])).toContain(`${conf}:2:9:`);
      await send(p.port, ["three 3 1700000000"], 1);
      await until("third line still at y", () => b.lines.length === 2, 10_000);
      expect(a.lines).toEqual(["one 1 1700000000"]);
    });

    it("a gateway runs the rules on what proxies send, after the key's prefix", async () => {
      const [a, b] = await Promise.all([sink(), sink()]);
      const dir = tempDir();
      const conf = rulesFile(
        dir,
        `cluster apps forward ${a.address};
cluster rest forward ${b.address};
rewrite ^site-a\\.servers\\.([^.]+)\\.(.*) into site-a.hosts.\\^1.\\2;
match ^site-a\\.apps\\. send to apps stop;
match * send to rest;
`,
      );
      const keys = `${dir}/keys`;
      writeFileSync(keys, "site-a s3cret-site-a-0123456789\n");
      const gw = await startGateway(["--keys-file", keys, "--key-prefix", "--rules", conf]);
      procs.push(gw);
      const proxy = await startProxy(`http://127.0.0.1:${gw.port}`, "s3cret-site-a-0123456789");
      procs.push(proxy);
      await send(proxy.port, ["apps.x 1 1700000000", "servers.web1.cpu 2 1700000000"], 1);
      await until("both lines", () => a.lines.length + b.lines.length === 2, 15_000);
      expect(a.lines).toEqual(["site-a.apps.x 1 1700000000"]);
      expect(b.lines).toEqual(["site-a.hosts.WEB1.cpu 2 1700000000"]);
    });

    it("forwards to UDP members and file clusters: every line arrives, the accounting balances", async () => {
      const udp = await DatagramSink.start();
      onTestFinished(() => udp.close());
      const dir = tempDir();
      const out = `${dir}/out.log`;
      const ipOut = `${dir}/ip.log`;
      const conf = rulesFile(
        dir,
        `cluster u forward 127.0.0.1:${udp.port} proto udp;
cluster f file ${out};
cluster fi file ip ${ipOut};
match ^udp\\. send to u stop;
match * send to f fi;
`,
      );
      const lines: string[] = [];
      for (let i = 0; i < 600; i++) {
        lines.push(`${i % 2 === 0 ? "udp" : "disk"}.n${i} ${i} ${1_700_000_000 + i}`);
      }
      const toUdp = lines.filter((l) => l.startsWith("udp."));
      const toFiles = lines.filter((l) => l.startsWith("disk."));
      const p = await relay(["--rules", conf]);
      // Little enough for the sink's receive buffer: UDP has no flow control.
      await send(p.port, lines);
      const fileLines = (path: string): string[] =>
        existsSync(path)
          ? readFileSync(path, "latin1")
              .split("\n")
              .filter((l) => l !== "")
          : [];
      await until(
        "every line at the UDP sink and in both files",
        () =>
          udp.lines.length >= toUdp.length &&
          fileLines(out).length >= toFiles.length &&
          fileLines(ipOut).length >= toFiles.length,
        15_000,
      );
      expect(sorted(udp.lines)).toEqual(sorted(toUdp));
      expect(sorted(fileLines(out))).toEqual(sorted(toFiles));
      expect(sorted(fileLines(ipOut))).toEqual(sorted(toFiles.map((l) => `(unknown) ${l}`)));
      const stats = await waitForStats(
        p,
        (s) =>
          s.datapoints.received === lines.length && s.datapoints.forwarded === lines.length * 1.5,
      );
      expectBalanced(stats.datapoints, stats.destinations, false);
      const row = (spec: string) => stats.destinations.find((d) => d.spec === spec);
      expect(row(`udp:127.0.0.1:${udp.port}`)).toMatchObject({ routed: 300, forwarded: 300 });
      expect(row(`file:${out}`)).toMatchObject({ routed: 300, forwarded: 300 });
      expect(row(`file-ip:${ipOut}`)).toMatchObject({ routed: 300, forwarded: 300 });
      expect(stats.datapoints).toMatchObject({ routed: 600, dropped: 0, queued: 0 });
    });

    it("refuses to start with a file that does not parse, saying where", async () => {
      const dir = tempDir();
      const conf = rulesFile(dir, "cluster x forward 127.0.0.1:2003;\nmatch ^a( send to x;\n");
      const r = spawnSync(
        process.execPath,
        [BIN, "relay", "--rules", conf, "--listen-addr", "127.0.0.1:0", "--stat-addr", ""],
        { encoding: "utf8", timeout: 30_000 },
      );
      expect(r.status).not.toBe(0);
      expect(r.stderr + r.stdout).toContain(`${conf}:2:`);
    });
  },
);
