/**
 * `polymurctl hash moves`: its counts against two runs of `polymurctl hash` (before and
 * after), against graphite-carbon's own routers and `carbon-c-relay -t` on the same two
 * configurations, and its arguments. The test against a live relay reconfigured under
 * load is test/integration/hash-moves-relay.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hashCommand } from "../../../../../cli/polymurctl/commands/hash.ts";
import { hashMovesCommand } from "../../../../../cli/polymurctl/commands/hash-moves.ts";
import {
  type DestinationSpec,
  parseDestination,
} from "../../../../../dataplane/forward/destination-spec.ts";
import { metricNames } from "../../../../fixtures/names.ts";
import {
  carbonPython,
  ccrBinary,
  ccrIndex,
  runCarbon,
  runCcr,
} from "../../../../fixtures/references.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";
import { captureIO } from "../io.ts";

const withoutGraphiteCarbon = skipUnlessAvailable("graphite-carbon", carbonPython !== undefined);
const withoutCarbonCRelay = skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined);

/**
 * Distinct names that are their own first field (no blanks), so that every tool takes
 * them whole and each is counted once.
 */
const NAMES = [...new Set(metricNames(1500, 14))].filter((n) => !/[\t\n\v\f\r ]/.test(n));

interface MovesJson {
  names: number;
  lines: number;
  moved: number;
  share: number;
  leaving: number;
  from: { destinations: string[]; replication: number };
  to: { destinations: string[]; replication: number };
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

async function moves(argv: string[], input: string): Promise<MovesJson> {
  const c = captureIO(input);
  const code = await hashCommand.run(["moves", "--json", ...argv], c.io);
  expect(c.stderr()).toBe("");
  expect(code).toBe(0);
  return JSON.parse(c.stdout()) as MovesJson;
}

/** `polymurctl hash` of the names: name → destinations, primary first. */
async function hashRoutes(argv: string[], names: readonly string[]): Promise<string[][]> {
  const c = captureIO(`${names.join("\n")}\n`);
  expect(await hashCommand.run(argv, c.io)).toBe(0);
  const lines = c.stdout().split("\n").slice(0, -1);
  expect(lines).toHaveLength(names.length);
  return lines.map((l, i) => {
    expect(l.startsWith(`${names[i]} `)).toBe(true);
    return l.slice(names[i]!.length + 1).split(",");
  });
}

/**
 * What moves between two routings of the same names (each name → destinations as
 * written, any spelling of one destination mapped by `id`), as hash moves reports it.
 */
function expectedMoves(
  names: readonly string[],
  before: readonly (readonly string[])[],
  after: readonly (readonly string[])[],
  id: (d: string) => string = (d) => parseDestination(d).id,
) {
  const moved: { name: string; from: string[]; to: string[] }[] = [];
  const lost = new Map<string, number>();
  const gained = new Map<string, number>();
  const held = { before: new Map<string, number>(), after: new Map<string, number>() };
  let leaving = 0;
  names.forEach((name, i) => {
    const b = new Set(before[i]!.map(id));
    const a = new Set(after[i]!.map(id));
    for (const d of b) held.before.set(d, (held.before.get(d) ?? 0) + 1);
    for (const d of a) held.after.set(d, (held.after.get(d) ?? 0) + 1);
    const gone = [...b].filter((d) => !a.has(d));
    const come = [...a].filter((d) => !b.has(d));
    for (const d of gone) lost.set(d, (lost.get(d) ?? 0) + 1);
    for (const d of come) gained.set(d, (gained.get(d) ?? 0) + 1);
    if (gone.length > 0) leaving++;
    if (gone.length + come.length > 0) {
      moved.push({ name, from: [...before[i]!], to: [...after[i]!] });
    }
  });
  return { moved, lost, gained, held, leaving };
}

/** Checks a hash moves report against expectedMoves (destinations compared by id). */
function expectReport(
  got: MovesJson,
  want: ReturnType<typeof expectedMoves>,
  names: number,
  id: (d: string) => string = (d) => parseDestination(d).id,
): void {
  expect(got.names).toBe(names);
  expect(got.moved).toBe(want.moved.length);
  expect(got.leaving).toBe(want.leaving);
  expect(got.share).toBeCloseTo(want.moved.length / names, 12);
  const norm = (m: { name: string; from: string[]; to: string[] }) => ({
    name: m.name,
    from: m.from.map(id),
    to: m.to.map(id),
  });
  expect(got.moves.map(norm)).toEqual(want.moved.map(norm));
  for (const d of got.destinations) {
    const k = id(d.destination);
    expect(
      { before: d.before, after: d.after, lost: d.lost, gained: d.gained },
      d.destination,
    ).toEqual({
      before: want.held.before.get(k) ?? 0,
      after: want.held.after.get(k) ?? 0,
      lost: want.lost.get(k) ?? 0,
      gained: want.gained.get(k) ?? 0,
    });
  }
}

describe("polymurctl hash moves: the difference of two polymurctl hash runs", () => {
  const A = "10.0.5.30:2003:a";
  const B = "10.0.5.31:2003:b";
  const C = "10.0.5.32:2003:c";
  const D = "10.0.5.33:2003:d";
  const E = "10.0.5.34:2003:e";

  it.each([
    ["carbon", "carbon_ch", [] as string[]],
    ["carbon", "fnv1a_ch", ["--diverse-replicas", "false"]],
    ["carbon", "mmh3_ch", ["--router", "fast-hashing"]],
    ["carbon-c-relay", "carbon_ch", []],
    ["carbon-c-relay", "fnv1a_ch", []],
    ["carbon-c-relay", "jump_fnv1a_ch", []],
  ] as const)("%s %s: add, remove, replication", async (compat, algo, extra) => {
    const ring = ["--compat", compat, "--hash", algo, ...extra];
    const before = await hashRoutes([...ring, "--replication", "1", A, B, C, D], NAMES);
    // B removed, E added at the end, replication 2: one change of each kind at once.
    const after = await hashRoutes([...ring, "--replication", "2", A, C, D, E], NAMES);
    const want = expectedMoves(NAMES, before, after);
    const input = `${NAMES.join("\n")}\n`;
    const got = await moves(
      [...ring, A, B, C, D, "--remove", B, "--add", E, "--replication-to", "2"],
      input,
    );
    expectReport(got, want, NAMES.length);
    expect(got.from).toEqual({ destinations: [A, B, C, D], replication: 1 });
    expect(got.to).toEqual({ destinations: [A, C, D, E], replication: 2 });
    expect(got.destinations.map((d) => [d.destination, d.change])).toEqual([
      [A, "kept"],
      [B, "removed"],
      [C, "kept"],
      [D, "kept"],
      [E, "added"],
    ]);
    // The same change written as the two whole rings.
    const same = await moves(
      [
        ...ring,
        "--from",
        `${A},${B},${C},${D}`,
        "--to",
        `${A},${C},${D},${E}`,
        "--replication-to",
        "2",
      ],
      input,
    );
    expect(same).toEqual(got);
    // Something does move (the test can fail), and no name leaves a destination it kept.
    expect(got.moved).toBeGreaterThan(0);
    expect(got.destinations.find((d) => d.change === "added")!.lost).toBe(0);
    expect(got.destinations.find((d) => d.change === "removed")!.after).toBe(0);
  });

  it("a destination added to a carbon ring takes about its share, from every other one", async () => {
    const got = await moves([A, B, C, "--add", D], `${NAMES.join("\n")}\n`);
    const share = got.moved / got.names;
    expect(share).toBeGreaterThan(0.15);
    expect(share).toBeLessThan(0.35);
    expect(got.leaving).toBe(got.moved);
    for (const d of got.destinations.slice(0, 3)) expect(d.lost).toBeGreaterThan(0);
    expect(got.destinations[3]).toMatchObject({ change: "added", before: 0, gained: got.moved });
  });

  it("order matters as in the relay: --add appends, --to is taken as written", async () => {
    const input = `${NAMES.join("\n")}\n`;
    const appended = await moves([A, B, "--add", C], input);
    const asTo = await moves(["--from", `${A},${B}`, "--to", `${A},${B},${C}`], input);
    expect(appended).toEqual(asTo);
    // Re-ordering alone moves nothing under carbon-c-relay's carbon_ch (members sorted by
    // their key), and a reorder's report still lists every destination as kept.
    const reordered = await moves(
      ["--compat", "carbon-c-relay", "--from", `${A},${B},${C}`, "--to", `${C},${A},${B}`],
      input,
    );
    expect(reordered.moved).toBe(0);
    expect(reordered.destinations.map((d) => d.change)).toEqual(["kept", "kept", "kept"]);
  });

  it("takes the name of each line as a relay does, and counts each name once", async () => {
    const input = [
      "a.b.c 1 1700000000",
      "  a.b.c\t2\t1700000000", // leading blanks, tabs: the same name
      "x.y.z\r", // CRLF
      "",
      "   ",
      "x.y.z",
      "last.one", // no final newline
    ].join("\n");
    const got = await moves([A, B, "--add", C], input);
    expect(got.lines).toBe(7);
    expect(got.names).toBe(3);
    const plain = await moves([A, B, "--add", C], "a.b.c\nx.y.z\nlast.one\n");
    expect({ ...got, lines: 0 }).toEqual({ ...plain, lines: 0 });
  });

  it("prints a summary line and a table without --json", async () => {
    const c = captureIO(`${NAMES.join("\n")}\n`);
    expect(await hashCommand.run(["moves", A, B, C, "--remove", C], c.io)).toBe(0);
    const j = await moves([A, B, C, "--remove", C], `${NAMES.join("\n")}\n`);
    const pct = (n: number) => `${((n / j.names) * 100).toFixed(2)}%`;
    const lines = c.stdout().split("\n");
    expect(lines[0]).toBe(
      `${j.names} names: ${j.moved} move (${pct(j.moved)}), ${j.leaving} leave a destination (${pct(j.leaving)})`,
    );
    expect(lines[1]!.split(/\s+/)).toEqual([
      "DESTINATION",
      "CHANGE",
      "BEFORE",
      "AFTER",
      "LOST",
      "GAINED",
    ]);
    expect(lines.slice(2, 5).map((l) => l.split(/\s+/))).toEqual(
      j.destinations.map((d) => [
        d.destination,
        d.change,
        String(d.before),
        String(d.after),
        String(d.lost),
        String(d.gained),
      ]),
    );
    expect(lines[5]).toBe("");
  });

  it("reads the names from --names FILE", async () => {
    const dir = mkdtempSync(join(tmpdir(), "polymur-hash-moves-"));
    try {
      const file = join(dir, "names.txt");
      writeFileSync(file, `${NAMES.join("\n")}\n`);
      const fromFile = await moves([A, B, "--add", C, "--names", file], "");
      const fromStdin = await moves([A, B, "--add", C], `${NAMES.join("\n")}\n`);
      expect(fromFile).toEqual(fromStdin);
      const c = captureIO();
      const missing = join(dir, "missing.txt");
      expect(await hashCommand.run(["moves", A, "--add", B, "--names", missing], c.io)).toBe(2);
      expect(c.stderr()).toMatch(/^polymurctl hash moves: cannot read .*missing\.txt: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("bad usage exits 2, a ring the reference rejects 1, with a one-line reason", async () => {
    const cases: [string[], number, string][] = [
      [["a:1"], 2, "no change given: --to, --add, --remove or --replication-to"],
      [["--add", "b:1"], 2, "no destinations given (see --help)"],
      [
        ["a:1", "--from", "b:1", "--add", "c:1"],
        2,
        'the ring before is given twice: --from and "a:1" (see --help)',
      ],
      [
        ["a:1", "--to", "b:1", "--add", "c:1"],
        2,
        "--to gives the whole ring after: not with --add or --remove",
      ],
      [["a:1", "--remove", "b:1"], 2, "--remove b:1: not in the ring"],
      [["a:1", "--add", "a:1"], 2, "--add a:1: already in the ring"],
      [["a:1", "--remove", "a:1"], 2, "--remove takes every destination out"],
      [["a:1", "--replication-to", "two"], 2, '--replication-to must be a whole number; got "two"'],
      [["a:1", "--add", "nope"], 2, 'invalid destination "nope"'],
      [["a:1", "--add", "b:1", "--bogus"], 2, "unknown option --bogus"],
      [
        ["--compat", "carbon-c-relay", "a:1", "b:1", "--replication-to", "3"],
        1,
        "the ring after: replication count (3) is larger than the number of servers (2), which carbon-c-relay rejects",
      ],
      [
        ["--compat", "carbon-c-relay", "--hash", "mmh3_ch", "a:1", "--add", "b:1"],
        1,
        "the ring before: mmh3_ch exists only in carbon",
      ],
    ];
    for (const [argv, exit, message] of cases) {
      const c = captureIO();
      expect(await hashMovesCommand.run(argv, c.io), argv.join(" ")).toBe(exit);
      expect(c.stderr()).toContain(`polymurctl hash moves: ${message}`);
      expect(c.stderr().split("\n")).toHaveLength(2);
      expect(c.stdout()).toBe("");
    }
    // With --json, the reason is on stdout too.
    const c = captureIO();
    expect(await hashMovesCommand.run(["--json", "a:1", "--remove", "b:1"], c.io)).toBe(2);
    expect(JSON.parse(c.stdout())).toEqual({
      error: { message: "--remove b:1: not in the ring", exit: 2 },
    });
  });

  it("--help prints the usage; polymurctl hash names the subcommand", async () => {
    const c = captureIO();
    expect(await hashCommand.run(["moves", "--help"], c.io)).toBe(0);
    expect(c.stdout()).toMatch(/^usage: polymurctl hash moves /);
    const h = captureIO();
    expect(await hashCommand.run(["--help"], h.io)).toBe(0);
    expect(h.stdout()).toContain("polymurctl hash moves [options] --from DEST,... --to DEST,...");
  });
});

// ---------------------------------------------------------------------------------------
// The references' own routers, before and after the same change

/** `host:port:instance` of a carbon destination triple, as DestinationSpec ids are. */
function tripleId([host, port, instance]: [string, number, string | null]): string {
  const h = host.includes(":") ? `[${host}]` : host;
  return instance === null ? `${h}:${port}` : `${h}:${port}:${instance}`;
}

describe.skipIf(withoutGraphiteCarbon)("hash moves against graphite-carbon's routers", () => {
  const cases = [
    {
      label: "consistent-hashing carbon_ch, a host added, diverse replicas, replication 2 -> 3",
      before: ["10.0.0.1:2003:a", "10.0.0.2:2003:b", "10.0.0.3:2003:c"],
      after: ["10.0.0.1:2003:a", "10.0.0.2:2003:b", "10.0.0.3:2003:c", "10.0.0.4:2003:d"],
      r: [2, 3],
      hashType: "carbon_ch" as const,
      router: "consistent-hashing" as const,
      diverse: true,
    },
    {
      label: "consistent-hashing fnv1a_ch, 2 hosts x 2 instances, one removed",
      before: ["s1:2104:a", "s1:2204:b", "s2:2104:a", "s2:2204:b"],
      after: ["s1:2104:a", "s2:2104:a", "s2:2204:b"],
      r: [2, 2],
      hashType: "fnv1a_ch" as const,
      router: "consistent-hashing" as const,
      diverse: false,
    },
    {
      label: "fast-hashing mmh3_ch, one swapped for another",
      before: ["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003"],
      after: ["10.0.0.1:2003", "10.0.0.3:2003", "10.0.0.9:2003"],
      r: [1, 1],
      hashType: "mmh3_ch" as const,
      router: "fast-hashing" as const,
      diverse: true,
    },
  ];

  it.each(cases.map((c) => [c.label, c] as const))("%s", async (_label, c) => {
    const specs = (list: string[]): DestinationSpec[] => list.map((d) => parseDestination(d));
    const out = runCarbon({
      names: NAMES,
      cases: [
        {
          members: specs(c.before),
          router: c.router,
          hashType: c.hashType,
          replication: c.r[0]!,
          diverse: c.diverse,
        },
        {
          members: specs(c.after),
          router: c.router,
          hashType: c.hashType,
          replication: c.r[1]!,
          diverse: c.diverse,
        },
      ],
    });
    const [before, after] = out.results.map((r) => {
      expect(r.error).toBeNull();
      return r.routes.map((route) => route.map(tripleId));
    });
    const want = expectedMoves(NAMES, before!, after!, (d) => d);
    const got = await moves(
      [
        "--compat",
        "carbon",
        "--router",
        c.router,
        "--hash",
        c.hashType,
        "--diverse-replicas",
        String(c.diverse),
        "--replication",
        String(c.r[0]),
        "--from",
        c.before.join(","),
        "--to",
        c.after.join(","),
        "--replication-to",
        String(c.r[1]),
      ],
      `${NAMES.join("\n")}\n`,
    );
    expectReport(got, want, NAMES.length);
    expect(got.moved).toBeGreaterThan(0);
  });
});

describe.skipIf(withoutCarbonCRelay)("hash moves against carbon-c-relay -t", () => {
  it.each(["carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"] as const)(
    "%s: a member removed, two added, replication 1 -> 2",
    async (algo) => {
      const before = ["10.0.0.1:2003=a", "10.0.0.2:2003=b", "10.0.0.3:2003=c", "10.0.0.4:2003"];
      const after = [
        "10.0.0.1:2003=a",
        "10.0.0.3:2003=c",
        "10.0.0.4:2003",
        "10.0.0.5:2003=e",
        "10.0.0.6:2003",
      ];
      const routes = (list: string[], replication: number): string[][] => {
        const members = list.map((d) => parseDestination(d));
        const r = runCcr([{ members, algo, replication }], NAMES);
        expect(r.status).toBe(0);
        expect(r.routes).toHaveLength(NAMES.length);
        return r.routes.map(([route]) =>
          route!.dests.map((d) => members[ccrIndex(members, d)]!.id),
        );
      };
      const want = expectedMoves(NAMES, routes(before, 1), routes(after, 2), (d) => d);
      const got = await moves(
        [
          "--compat",
          "carbon-c-relay",
          "--hash",
          algo,
          ...before,
          "--remove",
          "10.0.0.2:2003=b",
          "--add",
          "10.0.0.5:2003=e,10.0.0.6:2003",
          "--replication-to",
          "2",
        ],
        `${NAMES.join("\n")}\n`,
      );
      expectReport(got, want, NAMES.length);
      expect(got.moved).toBeGreaterThan(0);
    },
  );
});
