/**
 * `polymurctl hash moves` says what a real relay does: a polymur relay in hash-route
 * mode takes a sample of names, is reconfigured as an operator would (the line API's
 * deldest and putdest, then a config file and SIGHUP for the replication), and takes
 * the same names again; where each name lands in the destinations' sinks, before and
 * after each change, is compared with what `polymurctl hash moves` (the built program,
 * reading the very lines sent) said would move. Against carbon's and carbon-c-relay's
 * own routers: test/unit/cli/polymurctl/commands/hash-moves.test.ts.
 *
 * One process (--workers 1): a worker process applies a new configuration a moment
 * after the primary has answered the line API, so a line sent in that moment could
 * be routed either way; in one process the configuration in force is the answered one.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { parseDestination } from "../../dataplane/forward/destination-spec.ts";
import { DEFAULT_MAX_LINE_LENGTH } from "../../dataplane/ingest/line-framer.ts";
import { validateSlow } from "../../dataplane/ingest/line-validator.ts";
import { sendLines } from "../fixtures/line-sink.ts";
import { metricNames } from "../fixtures/names.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";

const CTL = fileURLToPath(new URL("../../bin/polymurctl.js", import.meta.url));

/**
 * A destination on its own loopback address (127.0.0.N: carbon's diverse replicas
 * tell hosts apart), keeping the sink index of every line by the line's phase and name.
 */
class Receiver {
  readonly lines: string[] = [];
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  readonly host: string;
  port = 0;

  private constructor(host: string) {
    this.host = host;
    this.#server = net.createServer((socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
      let partial = "";
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => {
        const parts = (partial + d).split("\n");
        partial = parts.pop() ?? "";
        this.lines.push(...parts);
      });
      socket.on("error", () => {});
      socket.on("end", () => socket.end());
    });
  }

  static async start(host: string): Promise<Receiver> {
    const r = new Receiver(host);
    await new Promise<void>((resolve, reject) => {
      r.#server.once("error", reject);
      r.#server.listen(0, host, () => resolve());
    });
    r.port = (r.#server.address() as net.AddressInfo).port;
    return r;
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}

/**
 * Distinct names a relay forwards unchanged as `name phase 1700000000`: metricNames'
 * UTF-8, tags and long names, less those the relay rejects (control characters, too
 * long) or takes apart (blanks).
 */
function sampleNames(): string[] {
  return [...new Set(metricNames(1200, 21))].filter((n) => {
    const line = `${n} 0 1700000000`;
    const r = validateSlow(Buffer.from(line), 1_700_000_000);
    return (
      r.ok &&
      r.line === line &&
      !/[\t ]/.test(n) &&
      Buffer.byteLength(line) < DEFAULT_MAX_LINE_LENGTH
    );
  });
}

/** `polymurctl hash moves ... --json`, the built program. */
function hashMoves(args: string[]): Promise<MovesJson> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CTL, "hash", "moves", "--json", ...args], {
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
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`polymurctl hash moves exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as MovesJson);
    });
  });
}

interface MovesJson {
  names: number;
  moved: number;
  leaving: number;
  destinations: {
    destination: string;
    change: string;
    before: number;
    after: number;
    lost: number;
    gained: number;
  }[];
  moves: { name: string; from: string[]; to: string[] }[];
}

const id = (d: string): string => parseDestination(d).id;
const sorted = (ids: Iterable<string>): string[] => [...ids].sort();

/**
 * Checks a hash moves report against where the relay put each name in two phases
 * (name → destination ids): the names that moved, their destinations before and after,
 * and every destination's counts.
 */
function expectSameAsRelay(
  report: MovesJson,
  names: readonly string[],
  before: Map<string, Set<string>>,
  after: Map<string, Set<string>>,
): void {
  const reported = new Map(report.moves.map((m) => [m.name, m]));
  const counts = new Map<string, { before: number; after: number; lost: number; gained: number }>();
  const count = (d: string) => {
    let c = counts.get(d);
    if (c === undefined) {
      c = { before: 0, after: 0, lost: 0, gained: 0 };
      counts.set(d, c);
    }
    return c;
  };
  let moved = 0;
  let leaving = 0;
  for (const name of names) {
    const b = before.get(name) ?? new Set<string>();
    const a = after.get(name) ?? new Set<string>();
    expect(b.size, `${name} landed before`).toBeGreaterThan(0);
    expect(a.size, `${name} landed after`).toBeGreaterThan(0);
    for (const d of b) count(d).before++;
    for (const d of a) count(d).after++;
    const lost = [...b].filter((d) => !a.has(d));
    const gained = [...a].filter((d) => !b.has(d));
    for (const d of lost) count(d).lost++;
    for (const d of gained) count(d).gained++;
    if (lost.length > 0) leaving++;
    const m = reported.get(name);
    if (lost.length + gained.length === 0) {
      expect(m, `${name} stayed on ${sorted(b)} in the relay`).toBeUndefined();
      continue;
    }
    moved++;
    expect(m, `${name} moved from ${sorted(b)} to ${sorted(a)} in the relay`).toBeDefined();
    expect({ from: sorted(m!.from.map(id)), to: sorted(m!.to.map(id)) }, name).toEqual({
      from: sorted(b),
      to: sorted(a),
    });
  }
  expect(report.names).toBe(names.length);
  expect(report.moved).toBe(moved);
  expect(report.moves).toHaveLength(moved);
  expect(report.leaving).toBe(leaving);
  for (const d of report.destinations) {
    const c = counts.get(id(d.destination)) ?? { before: 0, after: 0, lost: 0, gained: 0 };
    expect(
      { before: d.before, after: d.after, lost: d.lost, gained: d.gained },
      d.destination,
    ).toEqual(c);
  }
}

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe("polymurctl hash moves against a relay reconfigured while it runs", () => {
  const NAMES = sampleNames();

  it.each([
    ["carbon", "carbon_ch"],
    ["carbon-c-relay", "fnv1a_ch"],
    ["carbon-c-relay", "jump_fnv1a_ch"],
  ] as const)(
    "%s %s: deldest and putdest, then replication 1 -> 2 by SIGHUP",
    async (compat, hash) => {
      const dir = mkdtempSync(join(tmpdir(), "polymur-hash-moves-"));
      dirs.push(dir);
      const receivers = await Promise.all([2, 3, 4, 5].map((n) => Receiver.start(`127.0.0.${n}`)));
      cleanup.push(() => Promise.all(receivers.map((r) => r.close())));
      const inst = compat === "carbon" ? ":" : "=";
      // A and C with an instance, B and D without: both forms of member.
      const [A, B, C, D] = receivers.map((r, i) =>
        i % 2 === 0 ? `${r.host}:${r.port}${inst}${"abcd"[i]}` : `${r.host}:${r.port}`,
      ) as [string, string, string, string];
      const idOf = [A, B, C, D].map(id); // by receiver

      const ring = ["--compat", compat, "--hash", hash];
      const config = join(dir, "relay.conf");
      const writeConfig = (dests: string[], replication: number): void =>
        writeFileSync(
          config,
          [
            "distribution = hash-route",
            `compat = ${compat}`,
            `hash = ${hash}`,
            `replication = ${replication}`,
            `destinations = ${dests.join(",")}`,
            "",
          ].join("\n"),
        );
      writeConfig([A, B, C], 1);
      const relay = await PolymurProcess.relay(["--config", config, "--workers", "1"]);
      cleanup.push(() => relay.stop());

      /** Sends every name tagged with `phase`; resolves to name → destination ids once all arrived. */
      const phases: string[] = [];
      let routed = 0;
      const phase = async (tag: string): Promise<Map<string, Set<string>>> => {
        const n = phases.length;
        const file = join(dir, `${tag}.txt`);
        const lines = NAMES.map((name) => `${name} ${n} 1700000000\n`);
        writeFileSync(file, lines.join("")); // the very lines, for hash moves --names
        phases.push(file);
        // Over four connections, as senders do.
        const quarter = Math.ceil(NAMES.length / 4);
        await Promise.all(
          [0, 1, 2, 3].map((k) =>
            sendLines(relay.port, lines.slice(k * quarter, (k + 1) * quarter).join("")),
          ),
        );
        routed += NAMES.length;
        // Everything routed and written, and every written line read by its sink.
        await waitForStats(relay, (s) => {
          const d = s.datapoints;
          const got = receivers.reduce((n, r) => n + r.lines.length, 0);
          return d.routed === routed && d.queued === 0 && d.rejected === 0 && got === d.forwarded;
        });
        const landed = new Map<string, Set<string>>();
        receivers.forEach((r, i) => {
          for (const line of r.lines) {
            const [name, value] = line.split(" ");
            if (value !== String(n)) continue;
            let s = landed.get(name!);
            if (s === undefined) {
              s = new Set();
              landed.set(name!, s);
            }
            s.add(idOf[i]!);
          }
        });
        return landed;
      };

      const p0 = await phase("before");
      // The line API, as an operator's script: B out, D in (appended).
      expect(await relay.api(`deldest ${B}\nputdest ${D}\n`)).toMatch(/^ok removed .*\nok added /);
      const p1 = await phase("line-api");
      writeConfig([A, C, D], 2);
      relay.kill("SIGHUP");
      await relay.waitForLog((l) => l.msg === "SIGHUP: configuration reloaded");
      const p2 = await phase("sighup");

      const step1 = await hashMoves([
        ...ring,
        A,
        B,
        C,
        "--remove",
        B,
        "--add",
        D,
        "--names",
        phases[1]!,
      ]);
      expectSameAsRelay(step1, NAMES, p0, p1);
      const step2 = await hashMoves([
        ...ring,
        A,
        C,
        D,
        "--replication-to",
        "2",
        "--names",
        phases[2]!,
      ]);
      expectSameAsRelay(step2, NAMES, p1, p2);
      const both = await hashMoves([
        ...ring,
        "--from",
        [A, B, C].join(","),
        "--to",
        [A, C, D].join(","),
        "--replication-to",
        "2",
        "--names",
        phases[0]!,
      ]);
      expectSameAsRelay(both, NAMES, p0, p2);
      // The changes did move names (the comparison could fail), and replication 2 gave
      // every name a second destination.
      expect(step1.moved).toBeGreaterThan(NAMES.length / 10);
      expect(step1.leaving).toBe(step1.moved);
      expect(step2.moved).toBeGreaterThan(NAMES.length / 2);
      for (const s of p2.values()) expect(s.size).toBe(2);
    },
    60_000,
  );
});
