/**
 * HashRouter against the references themselves: every expected route below is produced by
 * running graphite-carbon 1.1.7's routers (test/fixtures/carbon_routes.py) or
 * `carbon-c-relay -t` (3.7.3) on the same destinations and names.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../../../common/errors.ts";
import {
  type DestinationSpec,
  parseDestinationList,
} from "../../../../../dataplane/forward/destination-spec.ts";
import { buildCarbonRing, buildCcrRing } from "../../../../../dataplane/route/hash/hash-ring.ts";
import {
  createHashRouter,
  type HashRouter,
  type HashRouterOptions,
  withMember,
  withoutMember,
} from "../../../../../dataplane/route/hash/hash-router.ts";
import {
  metricNames,
  mmh3WrapProbes,
  prng,
  probePool,
  ringProbes,
  tagged,
} from "../../../../fixtures/names.ts";
import {
  type CarbonCase,
  type CarbonOutput,
  type CcrCluster,
  type CcrResult,
  carbonIndex,
  carbonPython,
  ccrBinary,
  ccrIndex,
  runCarbon,
  runCarbonParallel,
  runCcr,
  runCcrLive,
} from "../../../../fixtures/references.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";

// Skipped without the reference implementations; with CI=true, a missing one fails
// this file instead.
const withoutGraphiteCarbon = skipUnlessAvailable("graphite-carbon", carbonPython !== undefined);
const withoutCarbonCRelay = skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined);
const NAMES = metricNames(900, 3);
/**
 * The carbon matrix routes fewer random names per case (carbon's Python is the slow part:
 * a diverse walk over one host visits the whole ring); every ring still gets its probes.
 */
const MATRIX_NAMES = metricNames(350, 4);
const REPLICATIONS = [1, 2, 3];

/** The first name whose route differs, or undefined: keeps failures readable. */
function firstMismatch(
  router: HashRouter,
  names: readonly string[],
  expected: readonly (readonly number[])[],
): string | undefined {
  for (let i = 0; i < names.length; i++) {
    const got = router.routeName(names[i]!);
    const want = expected[i]!;
    if (got.length !== want.length || got.some((g, k) => g !== want[k])) {
      return `${JSON.stringify(names[i])}: expected [${want}] got [${got}]`;
    }
  }
  return undefined;
}

function expectHashConfigError(fn: () => unknown, pattern: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(PolymurError);
  expect((caught as PolymurError).code).toBe(ErrorCode.HashConfig);
  expect((caught as PolymurError).message).toMatch(pattern);
}

const range = (n: number, f: (i: number) => string) =>
  Array.from({ length: n }, (_, i) => f(i)).join(" ");

// ---------------------------------------------------------------------------------------
// graphite-carbon

const CARBON_SETS: Record<string, string> = {
  "1 IP": "10.0.0.1:2003",
  "2 IPs with instances": "10.0.0.1:2003:a 10.0.0.2:2003:b",
  "3 IPs, no instances": "10.0.0.1:2003 10.0.0.2:2003 10.0.0.3:2003",
  "2 hosts x 2 instances":
    "store-1.example.net:2104:a store-1.example.net:2204:b store-2.example.net:2104:a store-2.example.net:2204:b",
  "5 mixed, IPv6":
    "cache-a.example.com:2003 [2001:db8::1]:2003:x [::1]:2004 192.0.2.7:2104:7 cache-b.example.com:2003:1",
  "4 hosts x 2 numeric instances": range(
    8,
    (i) => `10.0.1.${1 + (i >> 1)}:${2103 + 100 * (i & 1)}:${1 + (i & 1)}`,
  ),
  "12 IPs": range(12, (i) => `10.1.0.${i + 1}:2003`),
  "12 instances on one host": range(12, (i) => `10.0.0.1:${2101 + i}:${i + 1}`),
  "odd strings (repr)": `10.0.0.1:2003:a'b 10.0.0.2:2003:q"uote 10.0.0.3:2003:back\\slash hôst.example:2003:ü 10.0.0.4:2003:zw\u200bsp 10.0.0.5:2003:\u00adsh`,
};

interface CarbonMatrixCase {
  label: string;
  members: DestinationSpec[];
  options: HashRouterOptions;
  carbon: CarbonCase;
}

function carbonMatrix(): CarbonMatrixCase[] {
  const pools = { md5: probePool("md5", 200_000), fnv1a: probePool("fnv1a", 200_000) };
  const cases: CarbonMatrixCase[] = [];
  for (const [setName, list] of Object.entries(CARBON_SETS)) {
    const members = parseDestinationList(list);
    for (const algo of ["carbon_ch", "fnv1a_ch", "mmh3_ch"] as const) {
      for (const router of ["consistent-hashing", "fast-hashing"] as const) {
        let extraNames: string[] = [];
        if (router === "consistent-hashing") {
          const ring = buildCarbonRing(members, algo);
          extraNames =
            algo === "mmh3_ch"
              ? mmh3WrapProbes(ring)
              : ringProbes(ring, algo === "carbon_ch" ? pools.md5 : pools.fnv1a);
        }
        for (const replication of REPLICATIONS) {
          for (const diverse of [true, false]) {
            cases.push({
              label: `${setName}: ${router} ${algo} r=${replication} diverse=${diverse}`,
              members,
              options: { compat: "carbon", algo, router, replication, diverseReplicas: diverse },
              carbon: { members, router, hashType: algo, replication, diverse, extraNames },
            });
          }
        }
      }
    }
  }
  return cases;
}

/** carbon's route for each name as member indices; its single-node duplicate is sent once. */
function carbonExpected(
  members: readonly DestinationSpec[],
  routes: CarbonOutput["results"][number]["routes"],
) {
  return routes.map((r) => [...new Set(r.map((d) => carbonIndex(members, d)))]);
}

describe.skipIf(withoutGraphiteCarbon)(
  "compat carbon: bit-exact with graphite-carbon 1.1.7",
  () => {
    const cases = carbonMatrix();
    let out: CarbonOutput;
    beforeAll(async () => {
      out = await runCarbonParallel({ names: MATRIX_NAMES, cases: cases.map((c) => c.carbon) });
    }, 300_000);

    it.each(cases.map((c, i) => [c.label, i] as const))("%s", (_label, i) => {
      const c = cases[i]!;
      const result = out.results[i]!;
      expect(result.error).toBeNull();
      const router = createHashRouter(c.members, c.options);
      const names = [...MATRIX_NAMES, ...(c.carbon.extraNames ?? [])];
      expect(
        firstMismatch(router, names, carbonExpected(c.members, result.routes)),
      ).toBeUndefined();
    });

    it("the single-node quirk: carbon yields [A, A], polymur sends once", () => {
      const members = parseDestinationList("10.0.0.1:2003");
      const r = runCarbon({ names: ["x"], cases: [{ members, replication: 2, diverse: false }] });
      expect(r.results[0]!.routes[0]).toEqual([
        ["10.0.0.1", 2003, null],
        ["10.0.0.1", 2003, null],
      ]);
      expect(
        createHashRouter(members, { replication: 2, diverseReplicas: false }).routeName("x"),
      ).toEqual([0]);
    });

    it("rejects what carbon rejects: the same host and instance twice, whatever the ports", () => {
      for (const list of ["10.0.0.1:2003:a 10.0.0.1:2004:a", "127.0.0.1:2103 127.0.0.1:2203"]) {
        const members = parseDestinationList(list);
        const r = runCarbon({ names: [], cases: [{ members, replication: 1, diverse: true }] });
        expect(r.results[0]!.error).toMatch(/already configured/);
        expectHashConfigError(() => createHashRouter(members), /already configured/);
      }
    });

    it("refuses jump_fnv1a_ch, which carbon would silently run as carbon_ch", () => {
      const members = parseDestinationList(CARBON_SETS["2 hosts x 2 instances"]!);
      const r = runCarbon({
        names: NAMES.slice(0, 200),
        cases: [
          { members, hashType: "jump_fnv1a_ch", replication: 2, diverse: true },
          { members, hashType: "carbon_ch", replication: 2, diverse: true },
        ],
      });
      expect(r.results[0]!.routes).toEqual(r.results[1]!.routes);
      expectHashConfigError(
        () => createHashRouter(members, { algo: "jump_fnv1a_ch" }),
        /carbon-c-relay/,
      );
    });

    it("DYNAMIC_ROUTER: withoutMember/withMember are carbon's removeDestination/addDestination", () => {
      const scenarios: {
        list: string;
        algo: "carbon_ch" | "fnv1a_ch" | "mmh3_ch";
        ops: ["remove" | "add", number][];
      }[] = [
        // fnv1a_ch without instances: every vnode of every node collides and gets bumped.
        { list: CARBON_SETS["3 IPs, no instances"]!, algo: "fnv1a_ch", ops: [["remove", 0]] },
        {
          list: CARBON_SETS["3 IPs, no instances"]!,
          algo: "fnv1a_ch",
          ops: [
            ["remove", 0],
            ["add", 0],
          ],
        },
        {
          list: CARBON_SETS["12 IPs"]!,
          algo: "fnv1a_ch",
          ops: [
            ["remove", 3],
            ["remove", 7],
            ["add", 7],
            ["add", 3],
          ],
        },
        {
          list: CARBON_SETS["12 IPs"]!,
          algo: "carbon_ch",
          ops: [
            ["remove", 0],
            ["remove", 11],
            ["add", 0],
          ],
        },
        {
          list: CARBON_SETS["2 hosts x 2 instances"]!,
          algo: "mmh3_ch",
          ops: [
            ["remove", 1],
            ["add", 1],
          ],
        },
        {
          list: CARBON_SETS["1 IP"]!,
          algo: "carbon_ch",
          ops: [
            ["remove", 0],
            ["add", 0],
          ],
        },
      ];
      const pool = probePool("fnv1a", 100_000);
      const cases: CarbonCase[] = [];
      const routers: HashRouter[] = [];
      for (const s of scenarios) {
        const original = parseDestinationList(s.list);
        let router = createHashRouter(original, { algo: s.algo, replication: 2 });
        const ops: ["remove" | "add", DestinationSpec][] = [];
        for (const [op, idx] of s.ops) {
          const m = original[idx]!;
          ops.push([op, m]);
          router = op === "remove" ? withoutMember(router, m) : withMember(router, m);
        }
        routers.push(router);
        const ring = buildCarbonRing(original, s.algo);
        const extraNames = s.algo === "mmh3_ch" ? [] : ringProbes(ring, pool);
        cases.push({
          members: original,
          hashType: s.algo,
          replication: 2,
          diverse: true,
          ops,
          extraNames,
        });
      }
      const r = runCarbon({ names: NAMES, cases });
      cases.forEach((c, i) => {
        const router = routers[i]!;
        const names = [...NAMES, ...(c.extraNames ?? [])];
        expect(
          firstMismatch(router, names, carbonExpected(router.members, r.results[i]!.routes)),
        ).toBeUndefined();
      });
      // Removing the last member leaves a router that routes nowhere, as carbon's empty ring.
      const lone = withoutMember(createHashRouter(parseDestinationList("10.0.0.1:2003")), 0);
      expect(lone.routeName("x")).toEqual([]);
    });

    it("normalize sorted-tags is TAG_RELAY_NORMALIZED", () => {
      const rand = prng(11);
      const names = [
        ...Array.from({ length: 400 }, (_, i) => tagged(rand, i)),
        ...NAMES.slice(0, 100),
      ];
      const members = parseDestinationList(CARBON_SETS["2 hosts x 2 instances"]!);
      const r = runCarbon({
        names,
        cases: [
          { members, hashType: "carbon_ch", replication: 2, diverse: false, tagNormalized: true },
        ],
      });
      for (const cacheSize of [0, 1024]) {
        const router = createHashRouter(members, {
          replication: 2,
          diverseReplicas: false,
          normalize: "sorted-tags",
          cacheSize,
        });
        expect(
          firstMismatch(router, names, carbonExpected(members, r.results[0]!.routes)),
        ).toBeUndefined();
      }
    });
  },
);

// ---------------------------------------------------------------------------------------
// carbon-c-relay

const CCR_SETS: Record<string, string> = {
  "1 IP": "10.0.0.1:2003",
  "2 IPs with instances": "10.0.0.1:2003=a 10.0.0.2:2003=b",
  "3 IPs, no instances": "10.0.0.1:2003 10.0.0.2:2003 10.0.0.3:2003",
  "localhost on 4 ports": "localhost:2003 localhost:2004 localhost:2005 localhost:2006",
  "mixed, IPv6": "localhost:2103=a localhost:2104=b [::1]:2005=c 127.0.0.2:2006 [2001:db8::5]:2003",
  "8 shuffled numeric instances": [5, 3, 8, 1, 7, 2, 6, 4]
    .map((n, i) => `10.0.2.${i + 1}:2003=${n}`)
    .join(" "),
  "12 instances 12..1": range(12, (i) => `10.1.0.${i + 1}:2003=${12 - i}`),
  "shared fnv1a instances":
    "10.0.3.1:2003=a 10.0.3.2:2003=a 10.0.3.3:2003=b 10.0.3.4:2003=b 10.0.3.5:2003=c 10.0.3.6:2003=c",
  "odd instances": `10.0.4.1:2003=ü 10.0.4.2:2003=${"x".repeat(300)} 10.0.4.3:2003=1a 10.0.4.4:2003=9 10.0.4.5:2003=10 10.0.4.6:2003`,
  "12 IPs": range(12, (i) => `192.0.2.${i + 1}:2003`),
};

const CCR_ALGOS = ["carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"] as const;

interface CcrSetRun {
  setName: string;
  members: DestinationSpec[];
  clusters: CcrCluster[];
  routers: HashRouter[];
  /** Configurations polymur refused (carbon-c-relay would hang on them). */
  refused: { cluster: CcrCluster; error: unknown }[];
  names: string[];
}

function ccrRuns(): CcrSetRun[] {
  const pools = { md5: probePool("md5", 200_000), fnv: probePool("fnv1a-signed", 200_000) };
  return Object.entries(CCR_SETS).map(([setName, list]) => {
    const members = parseDestinationList(list);
    const run: CcrSetRun = {
      setName,
      members,
      clusters: [],
      routers: [],
      refused: [],
      names: [...NAMES],
    };
    for (const algo of CCR_ALGOS) {
      if (algo !== "jump_fnv1a_ch")
        run.names.push(
          ...ringProbes(
            buildCcrRing(members, algo),
            algo === "carbon_ch" ? pools.md5 : pools.fnv,
            60,
          ),
        );
      for (const replication of REPLICATIONS) {
        if (replication > members.length) continue;
        const cluster = { members, algo, replication };
        try {
          run.routers.push(
            createHashRouter(members, { compat: "carbon-c-relay", algo, replication }),
          );
          run.clusters.push(cluster);
        } catch (error) {
          run.refused.push({ cluster, error });
        }
      }
    }
    return run;
  });
}

describe.skipIf(withoutCarbonCRelay)(
  "compat carbon-c-relay: bit-exact with carbon-c-relay 3.7.3",
  () => {
    const runs = ccrRuns();
    const results = new Map<string, CcrResult>();
    beforeAll(() => {
      for (const run of runs) results.set(run.setName, runCcr(run.clusters, run.names));
    }, 300_000);

    for (const run of runs) {
      it.each(
        run.clusters.map((c, i) => [`${run.setName}: ${c.algo} r=${c.replication}`, i] as const),
      )("%s", (_l, i) => {
        const r = results.get(run.setName)!;
        expect(r.status, r.stderr).toBe(0);
        expect(r.routes).toHaveLength(run.names.length);
        const expected = r.routes.map((line) =>
          line[i]!.dests.map((d) => ccrIndex(run.members, d)),
        );
        r.routes.forEach((line, n) => {
          expect(line[i]!.key).toBe(run.names[n]);
        });
        expect(firstMismatch(run.routers[i]!, run.names, expected)).toBeUndefined();
      });
    }

    it("refuses, with a reason, the configurations on which carbon-c-relay hangs", () => {
      const refused = runs.flatMap((r) => r.refused);
      // carbon_ch members on one host without instances share all their vnode keys.
      expect(refused.map((r) => `${r.cluster.algo} r=${r.cluster.replication}`)).toEqual([
        "carbon_ch r=2",
        "carbon_ch r=3",
      ]);
      for (const { cluster, error } of refused) {
        expect(error).toBeInstanceOf(PolymurError);
        expect((error as Error).message).toMatch(/would hang/);
        const r = runCcr([cluster], ["some.metric"], { timeoutMs: 1000 });
        expect(r.timedOut).toBe(true);
      }
      const sameInstance = parseDestinationList("10.0.5.1:2003=a 10.0.5.2:2003=a 10.0.5.3:2003=a");
      expectHashConfigError(
        () =>
          createHashRouter(sameInstance, {
            compat: "carbon-c-relay",
            algo: "fnv1a_ch",
            replication: 2,
          }),
        /would hang/,
      );
      expect(
        runCcr([{ members: sameInstance, algo: "fnv1a_ch", replication: 2 }], ["m"], {
          timeoutMs: 1000,
        }).timedOut,
      ).toBe(true);
    });

    it("rejects what carbon-c-relay rejects, with its reason", () => {
      const bad: {
        list: string;
        algo: CcrCluster["algo"];
        replication: number;
        ccr: RegExp;
        polymur: RegExp;
      }[] = [
        {
          list: "10.0.0.1:2003 10.0.0.2:2003",
          algo: "carbon_ch",
          replication: 3,
          ccr: /larger than the number of servers/,
          polymur: /larger than the number of servers/,
        },
        {
          list: "10.0.0.1:2003=a 10.0.0.1:2003=b",
          algo: "carbon_ch",
          replication: 1,
          ccr: /cannot set instance 'b'/,
          polymur: /cannot set instance 'b'/,
        },
        {
          list: "10.0.0.1:2003 10.0.0.1:2003=b",
          algo: "fnv1a_ch",
          replication: 1,
          ccr: /previously defined without instance/,
          polymur: /previously defined without instance/,
        },
        {
          list: "10.0.0.1:2003=a 10.0.0.1:2003",
          algo: "fnv1a_ch",
          replication: 1,
          ccr: /without instance/,
          polymur: /without instance/,
        },
        {
          list: "[::1]:2003=a [0:0::1]:2003=b",
          algo: "jump_fnv1a_ch",
          replication: 1,
          ccr: /cannot set instance/,
          polymur: /cannot set instance/,
        },
        {
          list: range(65, (i) => `10.7.0.${i + 1}:2003`),
          algo: "carbon_ch",
          replication: 1,
          ccr: /CONN_DESTS_SIZE/,
          polymur: /at most 64/,
        },
      ];
      for (const b of bad) {
        const members = parseDestinationList(b.list);
        const r = runCcr([{ members, algo: b.algo, replication: b.replication }], ["m"]);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toMatch(b.ccr);
        expectHashConfigError(
          () =>
            createHashRouter(members, {
              compat: "carbon-c-relay",
              algo: b.algo,
              replication: b.replication,
            }),
          b.polymur,
        );
      }
    });

    it("normalize cleanse routes as carbon-c-relay's live relay does (cleansed path, tags cut off)", async () => {
      // Left out: all dots, the one documented difference (carbon-c-relay then takes the value
      // as the name), and a trailing ';' (it then glues the value to the name, so the line
      // cannot be told apart here; its key is still the path before the ';').
      const names = NAMES.filter(
        (n) => !/^[.\t]*$/.test(n) && !n.endsWith(";") && Buffer.byteLength(n) < 2000,
      );
      for (const algo of CCR_ALGOS) {
        const instances = ["a", "b", "c", "d"];
        const live = await runCcrLive({ algo, replication: 2, instances }, names);
        const members = parseDestinationList(
          live.ports.map((p, i) => `127.0.0.1:${p}=${instances[i]}`).join(" "),
        );
        const router = createHashRouter(members, {
          compat: "carbon-c-relay",
          algo,
          replication: 2,
          normalize: "cleanse",
        });
        // Which sink got a line first depends on timing, so compare the sets.
        const sorted = (a: number[]) => [...a].sort((x, y) => x - y);
        const got = names.map((n) => sorted(router.routeName(n)));
        expect(got).toEqual(live.received.map(sorted));
      }
    }, 60_000);

    it("refuses what carbon-c-relay lacks: mmh3_ch, fast-hashing, diverse replicas", () => {
      const members = parseDestinationList(CCR_SETS["3 IPs, no instances"]!);
      expectHashConfigError(
        () => createHashRouter(members, { compat: "carbon-c-relay", algo: "mmh3_ch" }),
        /only in carbon/,
      );
      expectHashConfigError(
        () =>
          createHashRouter(members, {
            compat: "carbon-c-relay",
            router: "fast-hashing",
            algo: "carbon_ch",
          }),
        /fast-hashing/,
      );
      expectHashConfigError(
        () => createHashRouter(members, { compat: "carbon-c-relay", diverseReplicas: true }),
        /diverse/,
      );
    });
  },
);

// ---------------------------------------------------------------------------------------
// route() itself

describe("route()", () => {
  const members = parseDestinationList("10.0.0.1:2003:a 10.0.0.2:2003:b 10.0.0.3:2003:c");
  const utf8 = new TextEncoder();

  it("routes a name inside a larger buffer, and the memo never changes a route", () => {
    const names = metricNames(2000, 5);
    for (const options of [
      { algo: "carbon_ch", replication: 2 },
      { algo: "mmh3_ch", replication: 3, router: "fast-hashing" },
      { compat: "carbon-c-relay", algo: "jump_fnv1a_ch", replication: 2 },
      { compat: "carbon-c-relay", algo: "fnv1a_ch", replication: 1, normalize: "cleanse" },
    ] as HashRouterOptions[]) {
      const ms =
        options.compat === "carbon-c-relay"
          ? parseDestinationList("10.0.0.1:2003=a 10.0.0.2:2003=b 10.0.0.3:2003=c")
          : members;
      const plain = createHashRouter(ms, { ...options, cacheSize: 0 });
      const memo = createHashRouter(ms, { ...options, cacheSize: 64 }); // tiny: constant eviction
      const out = new Uint8Array(plain.maxRoutes);
      for (let pass = 0; pass < 3; pass++) {
        for (const name of names) {
          const b = utf8.encode(`xx ${name} 1 2\n`);
          const n = memo.route(b, 3, 3 + utf8.encode(name).length, out);
          expect(Array.from(out.subarray(0, n))).toEqual(plain.routeName(name));
        }
      }
    }
  });

  it("validates its options", () => {
    expectHashConfigError(() => createHashRouter([]), /no destinations/);
    expectHashConfigError(() => createHashRouter(members, { replication: 0 }), /replication/);
    expectHashConfigError(() => createHashRouter(members, { replication: 1.5 }), /replication/);
    expectHashConfigError(() => createHashRouter([...members, members[0]!]), /listed twice/);
    expectHashConfigError(
      () => createHashRouter(members, { algo: "md5" as never }),
      /unknown hash algorithm/,
    );
    expect(createHashRouter(members, { replication: 5 }).maxRoutes).toBe(3);
    expect(createHashRouter(members, { router: "fast-hashing" }).algo).toBe("mmh3_ch");
  });
});

// ---------------------------------------------------------------------------------------
// polymurctl hash, end to end

const BIN = join(new URL(".", import.meta.url).pathname, "../../../../../bin/polymurctl.js");

function polymurctl(
  args: string[],
  stdin: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code) => {
      resolve({
        code,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
    child.stdin.on("error", () => {}); // it may exit before reading everything
    child.stdin.end(stdin);
  });
}

describe.skipIf(withoutCarbonCRelay)("polymurctl hash", () => {
  const names = metricNames(3000, 9);
  const configs: { algo: CcrCluster["algo"]; replication: number; dests: string[] }[] = [
    {
      algo: "carbon_ch",
      replication: 2,
      dests: ["10.0.0.1:2003=a", "10.0.0.2:2003=b", "[::1]:2003=c", "localhost:2004"],
    },
    { algo: "fnv1a_ch", replication: 3, dests: CCR_SETS["12 IPs"]!.split(" ") },
    { algo: "jump_fnv1a_ch", replication: 2, dests: CCR_SETS["12 instances 12..1"]!.split(" ") },
  ];

  it.each(configs.map((c) => [c.algo, c] as const))(
    "prints carbon-c-relay -t's routes (%s)",
    async (_a, c) => {
      const members = parseDestinationList(c.dests.join(" "));
      const ref = runCcr([{ members, algo: c.algo, replication: c.replication }], names);
      const want = ref.routes.map(
        ([r]) => `${r!.key} ${r!.dests.map((d) => c.dests[ccrIndex(members, d)]).join(",")}`,
      );
      const res = await polymurctl(
        [
          "hash",
          "--compat",
          "carbon-c-relay",
          "--hash",
          c.algo,
          "--replication",
          String(c.replication),
          ...c.dests,
        ],
        // Whole Graphite lines, CRLF and blank lines too: the key ends at the first space.
        names
          .map((n, i) => (i % 3 === 0 ? `${n} 1 1700000000` : i % 3 === 1 ? `${n}\r` : n))
          .join("\n") + "\n\n   \n",
      );
      expect(res.stderr).toBe("");
      expect(res.code).toBe(0);
      expect(res.stdout.split("\n").slice(0, -1)).toEqual(want);
    },
  );

  it.skipIf(withoutGraphiteCarbon)(
    "prints graphite-carbon's routes under --compat carbon",
    async () => {
      const dests = CARBON_SETS["2 hosts x 2 instances"]!.split(" ");
      const members = parseDestinationList(dests.join(" "));
      const r = runCarbon({
        names,
        cases: [{ members, hashType: "fnv1a_ch", replication: 2, diverse: false }],
      });
      const expected = carbonExpected(members, r.results[0]!.routes);
      const want = names.map((n, i) => `${n} ${expected[i]!.map((k) => dests[k]).join(",")}`);
      const res = await polymurctl(
        [
          "hash",
          "--compat",
          "carbon",
          "--hash",
          "fnv1a_ch",
          "--replication",
          "2",
          "--diverse-replicas",
          "false",
          ...dests,
        ],
        names.join("\n"), // no final newline
      );
      expect(res.code).toBe(0);
      expect(res.stdout.split("\n").slice(0, -1)).toEqual(want);
    },
  );

  it("exits non-zero with a one-line reason on a bad configuration", async () => {
    const bad = await polymurctl(
      [
        "hash",
        "--compat",
        "carbon-c-relay",
        "--replication",
        "3",
        "10.0.0.1:2003",
        "10.0.0.2:2003",
      ],
      "m\n",
    );
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(
      /^polymurctl hash: replication count \(3\) is larger than the number of servers \(2\)[^\n]*\n$/,
    );
    const usage = await polymurctl(["hash", "--hash", "nope", "10.0.0.1:2003"], "");
    expect(usage.code).toBe(2);
    expect(usage.stderr.split("\n")).toHaveLength(2);
    const help = await polymurctl(["--help"], "");
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/hash/);
  });

  it("streams a large input", async () => {
    const many = Array.from({ length: 300_000 }, (_, i) => `servers.host${i % 997}.cpu${i}.user`);
    const t0 = Date.now();
    const res = await polymurctl(
      ["hash", "--replication", "2", "10.0.0.1:2003:a", "10.0.0.2:2003:b", "10.0.0.3:2003:c"],
      many.join("\n"),
    );
    expect(res.code).toBe(0);
    const lines = res.stdout.split("\n");
    expect(lines).toHaveLength(many.length + 1);
    expect(lines[123]).toBe(
      `${many[123]} ${createHashRouter(
        parseDestinationList("10.0.0.1:2003:a 10.0.0.2:2003:b 10.0.0.3:2003:c"),
        { replication: 2 },
      )
        .routeName(many[123]!)
        .map((k) => ["10.0.0.1:2003:a", "10.0.0.2:2003:b", "10.0.0.3:2003:c"][k])
        .join(",")}`,
    );
    expect(Date.now() - t0).toBeLessThan(20_000);
  }, 30_000);
});
