/**
 * Member choice per cluster type (cluster-select.ts), and the program's target
 * table: against carbon-c-relay 3.7.3's `-t` where it prints a choice (every
 * member up), by construction where it does not (members down).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseDestination } from "../../../../../dataplane/forward/destination-spec.ts";
import { createHashRouter } from "../../../../../dataplane/route/hash/hash-router.ts";
import {
  anyOfHash,
  buildTargets,
  HashKey,
  type MemberSink,
} from "../../../../../dataplane/route/rules/cluster-select.ts";
import type {
  Cluster,
  ClusterMember,
  ClusterType,
  RulesConfig,
} from "../../../../../dataplane/route/rules/rules-config.ts";
import { parseRules } from "../../../../../dataplane/route/rules/rules-parser.ts";
import { targetText } from "../../../../../dataplane/route/rules/rules-program.ts";
import { ccrTrace } from "../../../../fixtures/ccr-trace.ts";
import { metricNames } from "../../../../fixtures/names.ts";
import { ccrBinary } from "../../../../fixtures/references.ts";
import { skipUnlessAvailable } from "../../../../fixtures/requires.ts";

const at = { file: "relay.conf", line: 1, column: 1 };

function member(spec: string, proto: "tcp" | "udp" = "tcp"): ClusterMember {
  const d = parseDestination(spec);
  return { host: d.host, port: d.port, instance: d.instance, proto, spec, pos: at };
}

function cluster(
  name: string,
  type: ClusterType,
  specs: readonly string[],
  o: { replication?: number; dynamic?: boolean; fileIp?: boolean } = {},
): Cluster {
  return {
    name,
    type,
    useall: false,
    replication: o.replication ?? 1,
    dynamic: o.dynamic ?? false,
    fileIp: o.fileIp ?? false,
    members: type === "file" ? [] : specs.map((s) => member(s)),
    paths: type === "file" ? specs : [],
    pos: at,
  };
}

function config(clusters: readonly Cluster[]): RulesConfig {
  return { files: ["relay.conf"], clusters, rules: [], statistics: null, listen: [] };
}

/** The cluster as relay.conf text. */
function ccrText(c: Cluster): string {
  const type =
    c.type === "file"
      ? `file${c.fileIp ? " ip" : ""}`
      : c.type.endsWith("_ch")
        ? `${c.type} replication ${c.replication}${c.dynamic ? " dynamic" : ""}`
        : c.type;
  const members = c.type === "file" ? c.paths : c.members.map((m) => m.spec);
  return `cluster ${c.name} ${type}\n${members.map((m) => `    ${m}\n`).join("")}    ;\n`;
}

/** Records sends; members in `down` are down. */
class Recorder implements MemberSink {
  sends: { cluster: string; target: number; metric: string }[] = [];
  readonly down: ReadonlySet<number>;
  constructor(down: ReadonlySet<number> = new Set()) {
    this.down = down;
  }
  send(cluster: string, target: number, metric: string): void {
    this.sends.push({ cluster, target, metric });
  }
  up(target: number): boolean {
    return !this.down.has(target);
  }
}

/** A name as the rules engine holds it: one char per UTF-8 byte. */
function latin1(name: string): string {
  return Buffer.from(name, "utf8").toString("latin1");
}

const built = new WeakMap<Cluster, ReturnType<typeof buildTargets>>();

/** The members cluster `c` gives `name` (a JS string, UTF-8 on the wire). */
function pick(c: Cluster, name: string, down: readonly number[] = []): number[] {
  let b = built.get(c);
  if (b === undefined) {
    b = buildTargets(config([c]));
    built.set(c, b);
  }
  const { selectors } = b;
  const key = new HashKey();
  name = latin1(name);
  key.set(name);
  const r = new Recorder(new Set(down));
  selectors.get(c.name)!.select(name, key, r);
  return r.sends.map((s) => s.target);
}

const FOUR = ["10.0.0.1:2003", "10.0.0.2:2003", "10.0.0.3:2003", "10.0.0.4:2003"];

describe("buildTargets", () => {
  it("numbers each server once across clusters, then files, in order of first appearance", () => {
    const { targets, selectors } = buildTargets(
      config([
        cluster("f", "file", ["/tmp/a.log"]),
        cluster("a", "forward", ["10.0.0.1:2003", "10.0.0.2:2003"]),
        cluster("b", "carbon_ch", ["10.0.0.2:2003", "[::1]:2003", "10.0.0.1:2004"]),
        cluster("g", "file", ["/tmp/a.log", "/tmp/b.log"], { fileIp: true }),
      ]),
    );
    expect(
      targets.map((t) => (t.kind === "file" ? `${t.path}${t.ip ? " ip" : ""}` : t.spec.id)),
    ).toEqual([
      "10.0.0.1:2003",
      "10.0.0.2:2003",
      "[::1]:2003",
      "10.0.0.1:2004",
      "/tmp/a.log",
      "/tmp/a.log ip",
      "/tmp/b.log ip",
    ]);
    expect(Array.from(selectors.get("b")!.targets)).toEqual([1, 2, 3]);
    expect(Array.from(selectors.get("f")!.targets)).toEqual([4]);
  });

  it("keeps tcp and udp members apart", () => {
    const c = cluster("a", "forward", []);
    const both = { ...c, members: [member("10.0.0.1:2003"), member("10.0.0.1:2003", "udp")] };
    const { targets } = buildTargets(config([both]));
    expect(targets.map((t) => t.kind)).toEqual(["tcp", "udp"]);
  });

  it("gives TLS and pickle members their spec, one server across clusters", () => {
    const { targets, selectors } = buildTargets(
      config([
        cluster("a", "forward", ["tls://10.0.0.1:2003", "pickle://10.0.0.2:2004=x"]),
        cluster("b", "carbon_ch", ["tls://10.0.0.1:2003", "pickle+tls://[::1]:2004"]),
      ]),
    );
    expect(
      targets.map((t) =>
        t.kind === "file" ? t.path : [t.kind, t.spec.id, t.spec.protocol, t.spec.tls],
      ),
    ).toEqual([
      ["tcp", "tls://10.0.0.1:2003", "plaintext", true],
      ["tcp", "pickle://10.0.0.2:2004:x", "pickle", false],
      ["tcp", "pickle+tls://[::1]:2004", "pickle", true],
    ]);
    expect(Array.from(selectors.get("b")!.targets)).toEqual([0, 2]);
  });

  it("refuses one server reached two ways (carbon-c-relay silently keeps the first)", () => {
    const a = cluster("a", "forward", ["tls://10.0.0.1:2003"]);
    const b = cluster("b", "forward", ["10.0.0.1:2003"]);
    const pos = { file: "relay.conf", line: 4, column: 5 };
    const moved = { ...b, members: [{ ...b.members[0]!, pos }] };
    expect(() => buildTargets(config([a, moved]))).toThrow(
      'relay.conf:4:5: cannot define server 10.0.0.1:2003 as "10.0.0.1:2003": server was previously defined as "tls://10.0.0.1:2003" (one server, one transport)',
    );
    expect(() =>
      buildTargets(
        config([
          cluster("a", "forward", ["pickle://10.0.0.1:2004"]),
          cluster("b", "forward", ["pickle+tls://10.0.0.1:2004"]),
        ]),
      ),
    ).toThrow(
      /as "pickle\+tls:\/\/10.0.0.1:2004": server was previously defined as "pickle:\/\/10.0.0.1:2004"/,
    );
  });

  it("rejects what carbon-c-relay rejects, with its reason", () => {
    const conflicts: [Cluster[], RegExp][] = [
      [
        [cluster("a", "forward", ["10.0.0.1:2003"]), cluster("b", "forward", ["10.0.0.1:2003=x"])],
        /cannot set instance 'x' for server 10.0.0.1:2003: server was previously defined without instance/,
      ],
      [
        [cluster("a", "forward", ["10.0.0.1:2003=x"]), cluster("b", "forward", ["10.0.0.1:2003"])],
        /cannot define server 10.0.0.1:2003 without instance/,
      ],
      [
        [
          cluster("a", "forward", ["10.0.0.1:2003=x"]),
          cluster("b", "forward", ["10.0.0.1:2003=y"]),
        ],
        /cannot set instance 'y'.*previously defined with instance 'x'/,
      ],
      [
        [cluster("a", "forward", ["10.0.0.1:2003"]), cluster("b", "any_of", ["10.0.0.1:2003"])],
        /cannot share server 10.0.0.1:2003 with any_of\/failover cluster 'b'/,
      ],
      [
        [cluster("a", "carbon_ch", ["10.0.0.1:2003"], { replication: 2 })],
        /replication count \(2\)/,
      ],
    ];
    for (const [clusters, message] of conflicts) {
      expect(() => buildTargets(config(clusters))).toThrow(message);
    }
  });
});

describe("selectors", () => {
  it("forward and file send to every member", () => {
    expect(pick(cluster("a", "forward", FOUR), "x")).toEqual([0, 1, 2, 3]);
    expect(pick(cluster("f", "file", ["/a", "/b"]), "x")).toEqual([0, 1]);
  });

  it("failover takes the first member that is up, or the first when all are down", () => {
    const c = cluster("a", "failover", FOUR);
    expect(pick(c, "x")).toEqual([0]);
    expect(pick(c, "x", [0, 1])).toEqual([2]);
    expect(pick(c, "x", [0, 1, 2, 3])).toEqual([0]);
  });

  it("any_of hashes with carbon-c-relay's fnv1a_32 over sign-extended bytes", () => {
    expect(anyOfHash("")).toBe(0x811c9dc5);
    expect(anyOfHash("a")).toBe(0xe40c292c);
    // 0xe9 as a signed char: 0xffffffe9 is XORed in.
    expect(anyOfHash("\u00e9")).toBe(Math.imul(0x811c9dc5 ^ 0xffffffe9, 0x01000193) >>> 0);
    const c = cluster("a", "any_of", FOUR);
    for (const name of ["a", "b.c", "servers.web01.cpu"]) {
      expect(pick(c, name)).toEqual([anyOfHash(name) % 4]);
    }
  });

  it("any_of spreads a down member's names over the up ones, each name sticking to one", () => {
    const c = cluster("a", "any_of", FOUR);
    const names = metricNames(400, 7);
    const moved = new Map<number, number>();
    for (const name of names) {
      const first = pick(c, name)[0]!;
      const now = pick(c, name, [1]);
      expect(now).toHaveLength(1);
      expect(now[0]).not.toBe(1);
      if (first !== 1) expect(now[0]).toBe(first);
      else moved.set(now[0]!, (moved.get(now[0]!) ?? 0) + 1);
      expect(pick(c, name, [1])).toEqual(now);
    }
    expect([...moved.keys()].sort()).toEqual([0, 2, 3]);
    expect(pick(c, names[0]!, [0, 1, 2, 3])).toEqual(pick(c, names[0]!));
  });

  it("hash clusters are the hash router's choice, whichever members are down", () => {
    for (const algo of ["carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"] as const) {
      const c = cluster("h", algo, FOUR, { replication: 2 });
      const router = createHashRouter(
        FOUR.map((s) => parseDestination(s)),
        {
          algo,
          compat: "carbon-c-relay",
          replication: 2,
        },
      );
      for (const name of metricNames(50, 3)) {
        expect(pick(c, name)).toEqual(router.routeName(name));
        expect(pick(c, name, [0, 1, 2])).toEqual(router.routeName(name));
      }
    }
  });

  it("rings over tls:// and pickle:// members hash exactly as over the same members in plaintext", () => {
    const plain = ["10.0.0.1:2003=a", "10.0.0.2:2003=b", "10.0.0.3:2004=c", "[::1]:2003=d"];
    const written = (scheme: string) => plain.map((s) => `${scheme}${s}`);
    for (const algo of ["carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"] as const) {
      const base = cluster("h", algo, plain, { replication: 2 });
      const others = ["tls://", "pickle://", "pickle+tls://"].map((scheme) =>
        cluster("h", algo, written(scheme), { replication: 2 }),
      );
      // No-instance members too (fnv1a_ch then hashes host:port).
      const bare = cluster("h", algo, FOUR, { replication: 2 });
      const bareTls = cluster(
        "h",
        algo,
        FOUR.map((s) => `tls://${s}`),
        { replication: 2 },
      );
      for (const name of metricNames(300, 5)) {
        const want = pick(base, name);
        for (const c of others) expect(pick(c, name)).toEqual(want);
        expect(pick(bareTls, name)).toEqual(pick(bare, name));
      }
    }
  });

  it("dynamic hash clusters move a down member's names to the next up member in ring order", () => {
    for (const algo of ["carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"] as const) {
      const c = cluster("h", algo, FOUR, { replication: 2, dynamic: true });
      const order = createHashRouter(
        FOUR.map((s) => parseDestination(s)),
        {
          algo,
          compat: "carbon-c-relay",
          replication: 4,
        },
      );
      for (const name of metricNames(50, 4)) {
        const full = order.routeName(name);
        expect(pick(c, name)).toEqual(full.slice(0, 2));
        const down = full[0]!;
        expect(pick(c, name, [down])).toEqual(full.filter((t) => t !== down).slice(0, 2));
        // All but one down: that one, then the first down member the ring names.
        const up = full[3]!;
        expect(pick(c, name, full.slice(0, 3))).toEqual([up, full[0]]);
      }
    }
  });

  it("hashes the key it is given (route using), and sends the metric", () => {
    const c = cluster("h", "fnv1a_ch", FOUR);
    const { selectors } = buildTargets(config([c]));
    const key = new HashKey();
    key.set("the.key");
    const r = new Recorder();
    selectors.get("h")!.select("the.name", key, r);
    const router = createHashRouter(
      FOUR.map((s) => parseDestination(s)),
      {
        algo: "fnv1a_ch",
        compat: "carbon-c-relay",
      },
    );
    expect(r.sends).toEqual([
      { cluster: "h", target: router.routeName("the.key")[0], metric: "the.name" },
    ]);
  });
});

describe("HashKey", () => {
  it("encodes a latin1 string one byte per char, reusing its buffer", () => {
    const k = new HashKey();
    k.set("ab\u00e9");
    expect(Array.from(k.bytes().subarray(0, k.length))).toEqual([0x61, 0x62, 0xe9]);
    const long = "x".repeat(5000);
    k.set(long);
    expect(k.length).toBe(5000);
    expect(
      k
        .bytes()
        .subarray(0, 5000)
        .every((b) => b === 0x78),
    ).toBe(true);
  });
});

describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
  "selectors against carbon-c-relay -t",
  () => {
    it("chooses the members carbon-c-relay prints, for every cluster type", () => {
      const clusters = [
        cluster("fw", "forward", ["10.0.0.1:2003", "[::1]:2003"]),
        cluster("any", "any_of", [
          "10.0.1.1:2003",
          "10.0.1.2:2003",
          "10.0.1.3:2003",
          "10.0.1.4:2003",
          "10.0.1.5:2003",
        ]),
        cluster("fo", "failover", ["10.0.2.1:2003", "10.0.2.2:2003"]),
        cluster("md5", "carbon_ch", FOUR, { replication: 2 }),
        cluster("fnv", "fnv1a_ch", ["10.0.3.1:2003=a", "10.0.3.2:2003=b", "10.0.3.5:2003=c"]),
        cluster(
          "jump",
          "jump_fnv1a_ch",
          ["10.0.0.6:2003=1", "10.0.0.7:2003=2", "10.0.0.8:2003=3"],
          {
            replication: 2,
          },
        ),
        cluster("files", "file", ["/tmp/polymur-ccr-a.log"]),
      ];
      // Bytes >= 0x80 in names (UTF-8 é), where the relay's signed chars matter.
      const names = [...metricNames(300, 11), "caf\u00e9.load", "\u00e9\u00e9.x.\u00ff"].filter(
        (n) => /^\S+$/.test(n),
      );
      const dir = mkdtempSync(join(tmpdir(), "polymur-select-"));
      try {
        const conf = join(dir, "relay.conf");
        const rules = clusters.map((c) => `match * send to ${c.name};\n`).join("");
        writeFileSync(conf, clusters.map(ccrText).join("") + rules);
        const want = ccrTrace(
          conf,
          names.map((n) => `${n} 1 2`),
        );
        const { targets, selectors } = buildTargets(config(clusters));
        const text = (i: number): string => {
          const t = targets[i]!;
          if (t.kind === "file") return t.path;
          return t.spec.host.includes(":")
            ? `[${t.spec.host}]:${t.spec.port}`
            : `${t.spec.host}:${t.spec.port}`;
        };
        const key = new HashKey();
        names.forEach((name, i) => {
          key.set(latin1(name));
          const r = new Recorder();
          for (const c of clusters) selectors.get(c.name)!.select(latin1(name), key, r);
          const got = r.sends.map((s) => ({ cluster: s.cluster, destination: text(s.target) }));
          expect(got).toEqual(
            want[i]!.sends.map((s) => ({ cluster: s.cluster, destination: s.destination })),
          );
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it("chooses what carbon-c-relay prints for members with transport plain ssl, and for the same written tls://", () => {
      // One relay.conf for both: carbon-c-relay reads `transport plain ssl`; polymur reads it,
      // and the same clusters with each member written after tls:// (which carbon-c-relay
      // would take for a host name).
      const members: Record<string, string[]> = {
        "fw forward": ["10.0.0.1:2003", "[::1]:2003"],
        "any any_of": ["10.0.1.1:2003", "10.0.1.2:2003", "10.0.1.3:2003", "10.0.1.4:2003"],
        "fo failover": ["10.0.2.1:2003", "10.0.2.2:2003"],
        "md5 carbon_ch replication 2": FOUR,
        "fnv fnv1a_ch replication 2": ["10.0.3.1:2003=a", "10.0.3.2:2003=b", "10.0.3.5:2003=c"],
        "fnvp fnv1a_ch": ["10.0.4.1:2003", "10.0.4.2:2004", "10.0.4.3:2005"],
        "jump jump_fnv1a_ch replication 2": [
          "10.0.0.6:2003=1",
          "10.0.0.7:2003=2",
          "10.0.0.8:2003=3",
        ],
      };
      const text = (member: (m: string) => string): string =>
        Object.entries(members)
          .map(
            ([head, ms]) =>
              `cluster ${head}\n${ms.map((m) => `    ${member(m)}\n`).join("")}    ;\n`,
          )
          .join("") +
        Object.keys(members)
          .map((head) => `match * send to ${head.split(" ")[0]};\n`)
          .join("");
      const ssl = text((m) => `${m} transport plain ssl`);
      const names = metricNames(300, 13).filter((n) => /^\S+$/.test(n));
      const dir = mkdtempSync(join(tmpdir(), "polymur-select-ssl-"));
      try {
        const conf = join(dir, "relay.conf");
        writeFileSync(conf, ssl);
        const want = ccrTrace(
          conf,
          names.map((n) => `${n} 1 2`),
        );
        expect(want.some((d) => d.sends.length > 0)).toBe(true);
        for (const written of [ssl, text((m) => `tls://${m}`)]) {
          const rules = parseRules(written, "relay.conf");
          const { targets, selectors } = buildTargets(rules);
          expect(targets.every((t) => t.kind === "tcp" && t.spec.tls)).toBe(true);
          const key = new HashKey();
          names.forEach((name, i) => {
            key.set(latin1(name));
            const r = new Recorder();
            for (const c of rules.clusters) selectors.get(c.name)!.select(latin1(name), key, r);
            expect(
              r.sends.map((s) => ({
                cluster: s.cluster,
                destination: targetText(targets[s.target]!),
              })),
            ).toEqual(
              want[i]!.sends.map((s) => ({ cluster: s.cluster, destination: s.destination })),
            );
          });
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
