import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseDestination } from "../../../../../dataplane/forward/destination-spec.ts";
import {
  numericAddress,
  splitHostPort,
} from "../../../../../dataplane/route/rules/rules-address.ts";
import {
  type AggregateRule,
  type MatchRule,
  type RulesConfig,
  RulesError,
} from "../../../../../dataplane/route/rules/rules-config.ts";
import {
  type IncludeReader,
  parseRules,
} from "../../../../../dataplane/route/rules/rules-parser.ts";

const parse = (text: string, include?: IncludeReader): RulesConfig =>
  parseRules(text, "relay.conf", include);

function error(text: string, include?: IncludeReader): string {
  try {
    parse(text, include);
  } catch (err) {
    if (err instanceof RulesError) return err.message;
    throw err;
  }
  throw new Error("parsed without an error");
}

const C = "cluster a forward 127.0.0.1:2003;\n";
const match = (text: string, i = 0): MatchRule => parse(text).rules[i] as MatchRule;

describe("parseRules: clusters", () => {
  it("reads every cluster type and option", () => {
    const cfg = parse(
      [
        "cluster f forward useall 10.0.0.1 10.0.0.2:2004=x proto udp type linemode transport plain;",
        "cluster h carbon_ch replication 2 dynamic 10.0.0.3=1 10.0.0.4=007;",
        "cluster j jump_fnv1a_ch 10.0.0.5;",
        "cluster o failover [::1]:2005 [::2] ::3:2006;",
        "cluster l file ip /var/log/a /var/log/b;",
      ].join("\n"),
    );
    expect(
      cfg.clusters.map((c) => [c.name, c.type, c.useall, c.replication, c.dynamic, c.fileIp]),
    ).toEqual([
      ["f", "forward", true, 1, false, false],
      ["h", "carbon_ch", false, 2, true, false],
      ["j", "jump_fnv1a_ch", false, 1, false, false],
      ["o", "failover", false, 1, false, false],
      ["l", "file", false, 1, false, true],
    ]);
    expect(
      cfg.clusters.flatMap((c) =>
        c.members.map((m) => [m.spec, m.host, m.port, m.instance, m.proto]),
      ),
    ).toEqual([
      ["10.0.0.1:2003", "10.0.0.1", 2003, undefined, "tcp"],
      ["10.0.0.2:2004=x", "10.0.0.2", 2004, "x", "udp"],
      ["10.0.0.3:2003=1", "10.0.0.3", 2003, "1", "tcp"],
      ["10.0.0.4:2003=7", "10.0.0.4", 2003, "7", "tcp"],
      ["10.0.0.5:2003", "10.0.0.5", 2003, undefined, "tcp"],
      ["[::1]:2005", "::1", 2005, undefined, "tcp"],
      ["[::2]:2003", "::2", 2003, undefined, "tcp"],
      ["[::3]:2006", "::3", 2006, undefined, "tcp"],
    ]);
    expect(cfg.clusters[4]!.paths).toEqual(["/var/log/a", "/var/log/b"]);
    expect(cfg.clusters[1]!.members[1]!.pos).toEqual({ file: "relay.conf", line: 2, column: 54 });
    expect(cfg.clusters[0]!.pos).toEqual({ file: "relay.conf", line: 1, column: 1 });
  });

  it("names a shared server as it was first written", () => {
    const cfg = parse("cluster a forward 127.1:2003=x;\ncluster b carbon_ch 127.0.0.1:2003=x;\n");
    expect(cfg.clusters[1]!.members[0]!.spec).toBe("127.1:2003=x");
  });

  it("applies carbon-c-relay's checks", () => {
    expect(error(`${C}cluster a forward 127.0.0.2;`)).toBe(
      'relay.conf:2:9: cluster "a" is already defined at relay.conf:1:1',
    );
    expect(error("cluster a forward 127.0.0.1=x;\ncluster b forward 127.0.0.1;")).toBe(
      'relay.conf:2:19: 127.0.0.1:2003 was defined with instance "x" at relay.conf:1:19: give it that instance here too',
    );
    expect(error("cluster a forward 127.0.0.1;\ncluster b forward 127.0.0.1=y;")).toBe(
      'relay.conf:2:19: cannot give 127.0.0.1:2003 the instance "y": it was defined without one at relay.conf:1:19',
    );
    expect(error("cluster a carbon_ch [::1]=x [0:0::1]=y;")).toContain(
      'cannot give [::1]:2003 the instance "y": it was defined with instance "x"',
    );
    expect(error(`${C}cluster b any_of 10.0.0.1 127.0.0.1;`)).toBe(
      'relay.conf:2:27: cannot share 127.0.0.1:2003 with any_of cluster "b": it is already a member at relay.conf:1:19',
    );
    expect(error("cluster a fnv1a_ch replication 2 127.0.0.1;")).toBe(
      'relay.conf:1:32: replication count 2 is larger than the number of members (1) of cluster "a"',
    );
    expect(error("cluster a fnv1a_ch replication 256 127.0.0.1;")).toBe(
      "relay.conf:1:32: replication count must be between 1 and 255, not 256",
    );
    expect(error("cluster a fnv1a_ch replication 99999999999 127.0.0.1;")).toBe(
      "relay.conf:1:32: number too large: 99999999999",
    );
    expect(error('cluster "blackhole" forward 127.0.0.1;')).toContain(
      'the cluster name "blackhole" is reserved',
    );
    expect(error("cluster a forward 127.0.0.1:65536;")).toBe(
      "relay.conf:1:19: invalid port number '65536' in member \"127.0.0.1:65536\"",
    );
  });

  it("allows what carbon-c-relay allows: one server in several clusters, an any_of first", () => {
    expect(() =>
      parse("cluster a any_of 127.0.0.1;\ncluster b forward 127.0.0.1 127.0.0.1 proto udp;"),
    ).not.toThrow();
  });

  it("says what it expected", () => {
    expect(error("cluster blackhole forward 127.0.0.1;")).toBe(
      'relay.conf:1:9: expected a cluster name after "cluster", found "blackhole" (blackhole is the built-in cluster that drops what it is sent)',
    );
    expect(error("cluster a 127.0.0.1;")).toBe(
      'relay.conf:1:11: expected the cluster type (forward, any_of, failover, carbon_ch, fnv1a_ch, jump_fnv1a_ch or file) after the cluster name "a", found "127.0.0.1"',
    );
    expect(error("cluster a carbon_ch;")).toBe(
      'relay.conf:1:20: expected "replication", "dynamic" or a member (host[:port]) in cluster "a", found ";"',
    );
    expect(error("cluster a forward 127.0.0.1 transport plain proto tcp;")).toBe(
      'relay.conf:1:45: expected another member or ";" after member "127.0.0.1" of cluster "a", found "proto" (a member\'s options come in the order =instance, proto, type, transport)',
    );
    expect(error("cluster a forward 127.0.0.1 proto sctp;")).toBe(
      'relay.conf:1:35: expected "udp" or "tcp" after "proto", found "sctp"',
    );
  });

  it("refuses what polymur cannot run, where it is written", () => {
    expect(error("cluster a forward 127.0.0.1 transport gzip;")).toBe(
      'relay.conf:1:39: "transport gzip" is not supported by polymur',
    );
    expect(error("cluster a forward 127.0.0.1 type syslog;")).toBe(
      'relay.conf:1:34: "type syslog" is not supported by polymur',
    );
    expect(error("cluster a forward ::1;")).toContain(
      '1:19: member "::1" cannot be a polymur destination',
    );
    expect(error("cluster a forward :2003;")).toBe('relay.conf:1:19: member ":2003" has no host');
  });

  it("makes specs that parseDestination reads back", () => {
    const host = fc.oneof(
      fc.ipV4(),
      fc.ipV6().map((h) => `[${h}]`),
      fc.domain(),
    );
    fc.assert(
      fc.property(
        host,
        fc.option(fc.integer({ min: 1, max: 65535 })),
        fc.option(fc.stringMatching(/^[a-z0-9_]{1,8}$/)),
        (h, port, inst) => {
          const text = `${h}${port === null ? "" : `:${port}`}${inst === null ? "" : `=${inst}`}`;
          const m = parse(`cluster a forward ${text};`).clusters[0]!.members[0]!;
          const d = parseDestination(m.spec);
          expect([d.host, d.port, d.instance]).toEqual([m.host, m.port, m.instance]);
          expect(m.port).toBe(port ?? 2003);
        },
      ),
      { seed: 7, numRuns: 200 },
    );
  });
});

describe("parseRules: TLS and pickle members", () => {
  const members = (text: string) =>
    parse(text).clusters.flatMap((c) => c.members.map((m) => [m.spec, m.host, m.port, m.instance]));

  it("makes a member with transport plain ssl a tls:// destination", () => {
    const cfg = parse(
      "cluster a carbon_ch 10.0.0.1:2003=a transport plain ssl 10.0.0.2=b proto tcp type linemode transport plain ssl [::1]:2004 transport plain;",
    );
    expect(cfg.clusters[0]!.members.map((m) => m.spec)).toEqual([
      "tls://10.0.0.1:2003=a",
      "tls://10.0.0.2:2003=b",
      "[::1]:2004",
    ]);
    const d = parseDestination(cfg.clusters[0]!.members[0]!.spec);
    expect([d.id, d.protocol, d.tls, d.host, d.port, d.instance]).toEqual([
      "tls://10.0.0.1:2003:a",
      "plaintext",
      true,
      "10.0.0.1",
      2003,
      "a",
    ]);
  });

  it("reads a member written after a scheme, as --destinations takes it", () => {
    expect(
      members(
        'cluster a forward pickle://10.0.0.1:2004=a tls://[::1]:2003 PICKLE+TLS://h.example:2004 tls://h2 "pickle://10.0.0.3";',
      ),
    ).toEqual([
      ["pickle://10.0.0.1:2004=a", "10.0.0.1", 2004, "a"],
      ["tls://[::1]:2003", "::1", 2003, undefined],
      ["pickle+tls://h.example:2004", "h.example", 2004, undefined],
      ["tls://h2:2003", "h2", 2003, undefined],
      ["pickle://10.0.0.3:2003", "10.0.0.3", 2003, undefined],
    ]);
    const specs = parse("cluster a forward pickle://10.0.0.1:2004=a tls://10.0.0.2:2003;")
      .clusters[0]!.members.map((m) => parseDestination(m.spec))
      .map((d) => [d.id, d.protocol, d.tls]);
    expect(specs).toEqual([
      ["pickle://10.0.0.1:2004:a", "pickle", false],
      ["tls://10.0.0.2:2003", "plaintext", true],
    ]);
  });

  it("adds TLS to a scheme's protocol with ssl, and takes both ways of writing TLS as one", () => {
    expect(members("cluster a forward pickle://10.0.0.1:2004 transport plain ssl;")).toEqual([
      ["pickle+tls://10.0.0.1:2004", "10.0.0.1", 2004, undefined],
    ]);
    expect(
      members(
        "cluster a forward tls://10.0.0.1:2003 transport plain ssl;\ncluster b carbon_ch 10.0.0.1:2003 transport plain ssl;",
      ),
    ).toEqual([
      ["tls://10.0.0.1:2003", "10.0.0.1", 2003, undefined],
      ["tls://10.0.0.1:2003", "10.0.0.1", 2003, undefined],
    ]);
  });

  it("makes specs that parseDestination reads back, with the protocol and TLS written", () => {
    const scheme = fc.constantFrom("", "tls://", "pickle://", "pickle+tls://", "Pickle+TLS://");
    const host = fc.oneof(
      fc.ipV4(),
      fc.ipV6().map((h) => `[${h}]`),
      fc.domain(),
    );
    fc.assert(
      fc.property(
        scheme,
        host,
        fc.option(fc.integer({ min: 1, max: 65535 })),
        fc.option(fc.stringMatching(/^[a-z0-9_]{1,8}$/)),
        fc.boolean(),
        (sch, h, port, inst, ssl) => {
          const text = `${sch}${h}${port === null ? "" : `:${port}`}${inst === null ? "" : `=${inst}`}`;
          const m = parse(`cluster a forward ${text}${ssl ? " transport plain ssl" : ""};`)
            .clusters[0]!.members[0]!;
          const d = parseDestination(m.spec);
          expect([d.host, d.port, d.instance]).toEqual([m.host, m.port, m.instance]);
          expect(d.protocol).toBe(sch.toLowerCase().startsWith("pickle") ? "pickle" : "plaintext");
          expect(d.tls).toBe(ssl || sch.toLowerCase().includes("tls"));
        },
      ),
      { seed: 11, numRuns: 300 },
    );
  });

  it("refuses what a TLS or pickle member cannot be, where it is written", () => {
    expect(error("cluster a forward http://10.0.0.1:2004;")).toBe(
      'relay.conf:1:19: unknown scheme "http://" in member "http://10.0.0.1:2004" (polymur\'s members may be written after tls://, pickle:// or pickle+tls://, as --destinations)',
    );
    expect(error("cluster a forward tls://;")).toBe('relay.conf:1:19: member "tls://" has no host');
    expect(error("cluster a forward pickle://:2004;")).toBe(
      'relay.conf:1:19: member "pickle://:2004" has no host',
    );
    expect(error("cluster a forward tls://10.0.0.1:70000;")).toBe(
      "relay.conf:1:19: invalid port number '70000' in member \"tls://10.0.0.1:70000\"",
    );
    expect(error("cluster a forward pickle://10.0.0.1:2004 proto udp;")).toBe(
      'relay.conf:1:48: "proto udp" for member "pickle://10.0.0.1:2004": pickle:// runs over TCP only',
    );
    expect(error("cluster a forward 10.0.0.1:2004 proto udp transport plain ssl;")).toBe(
      'relay.conf:1:59: "ssl" on UDP member "10.0.0.1:2004": TLS runs over TCP only',
    );
    expect(error("cluster a forward 10.0.0.1 transport gzip ssl;")).toBe(
      'relay.conf:1:38: "transport gzip" is not supported by polymur',
    );
  });

  it("refuses carbon-c-relay 3.8's mtls, pointing to the destination TLS flags", () => {
    // carbon-c-relay 3.7.3 -t reads the same text as the members 10.0.0.1, mtls, /c.pem and /k.pem.
    expect(error("cluster a forward 10.0.0.1:2003 transport plain mtls /c.pem /k.pem;")).toBe(
      'relay.conf:1:49: "transport plain mtls CERT KEY" (carbon-c-relay 3.8: a client certificate per member) is not supported by polymur: ' +
        'write "transport plain ssl" and give the client certificate with --destination-tls-cert and --destination-tls-key, ' +
        "which every TLS destination presents (carbon-c-relay 3.7 reads mtls, CERT and KEY as three more members)",
    );
    // Quoted, it is a host, as in both versions of carbon-c-relay.
    expect(members('cluster a forward 10.0.0.1 transport plain "mtls";').map((m) => m[0])).toEqual([
      "10.0.0.1:2003",
      "mtls:2003",
    ]);
  });

  it("refuses one server written with two transports (carbon-c-relay silently keeps the first)", () => {
    expect(
      error(
        "cluster a forward 10.0.0.1:2003 transport plain ssl;\ncluster b forward 10.0.0.1:2003;",
      ),
    ).toBe(
      "relay.conf:2:19: cannot make 10.0.0.1:2003 a plaintext member: it was defined as a TLS one at relay.conf:1:19 (one server, one transport: write it the same way everywhere)",
    );
    expect(error("cluster a carbon_ch 10.0.0.1=x 10.0.0.2=y pickle://10.0.0.1=x;")).toBe(
      "relay.conf:1:43: cannot make 10.0.0.1:2003 a pickle member: it was defined as a plaintext one at relay.conf:1:21 (one server, one transport: write it the same way everywhere)",
    );
    expect(
      error("cluster a forward pickle://10.0.0.1:2004;\ncluster b forward tls://10.0.0.1:2004;"),
    ).toBe(
      "relay.conf:2:19: cannot make 10.0.0.1:2004 a TLS member: it was defined as a pickle one at relay.conf:1:19 (one server, one transport: write it the same way everywhere)",
    );
    expect(
      error(
        "cluster a forward pickle+tls://10.0.0.1:2004;\ncluster b forward pickle://10.0.0.1:2004;",
      ),
    ).toContain("a pickle member: it was defined as a pickle-over-TLS one");
    // UDP is another server, as in carbon-c-relay.
    expect(() =>
      parse("cluster a forward tls://10.0.0.1:2003;\ncluster b forward 10.0.0.1:2003 proto udp;"),
    ).not.toThrow();
  });
});

describe("parseRules: match and rewrite", () => {
  it("reads every part of a match", () => {
    const m = match(
      `${C}cluster b forward 127.0.0.2;\nmatch ^a\\. "b\\.c" validate ^x else drop route using \\1 send to a b stop;`,
    );
    expect(m).toEqual({
      kind: "match",
      exprs: [
        { source: "^a\\.", pos: { file: "relay.conf", line: 3, column: 7 } },
        { source: "b.c", pos: { file: "relay.conf", line: 3, column: 13 } },
      ],
      validate: {
        expr: { source: "^x", pos: { file: "relay.conf", line: 3, column: 28 } },
        onFail: "drop",
      },
      routeUsing: "\\1",
      sendTo: { blackhole: false, clusters: ["a", "b"] },
      stop: true,
      pos: { file: "relay.conf", line: 3, column: 1 },
    });
  });

  it('gives the stop carbon-c-relay applies, and reads * and "*" alike', () => {
    expect(match("match * validate x else log stop;")).toMatchObject({
      exprs: null,
      sendTo: null,
      stop: false,
    });
    expect(match('match "*" send to blackhole;')).toMatchObject({
      exprs: null,
      sendTo: { blackhole: true },
      stop: true,
    });
    expect(match(`${C}match x send to a;`, 0)).toMatchObject({ stop: false });
    expect(match(`${C}match x send to "blackhole" a;`)).toMatchObject({
      sendTo: { blackhole: false, clusters: ["a"] },
      stop: true,
    });
    expect(match(`${C}match x send to a "blackhole";`)).toMatchObject({ stop: false });
    expect(match(`${C}match "*" "*" send to a;`).exprs!.map((e) => e.source)).toEqual(["*", "*"]);
  });

  it("reads a rewrite", () => {
    expect(parse('rewrite ^(a)\\.(b) into "\\\\1.\\\\_2";').rules[0]).toEqual({
      kind: "rewrite",
      expr: { source: "^(a)\\.(b)", pos: { file: "relay.conf", line: 1, column: 9 } },
      into: "\\1.\\_2",
      pos: { file: "relay.conf", line: 1, column: 1 },
    });
  });

  it("says what it expected", () => {
    expect(error(`${C}match x sned to a;`)).toBe(
      'relay.conf:2:18: expected "send to" or "validate" in the match: without them it does nothing (the words after "match" were read as expressions: "x" "sned" "to" "a")',
    );
    expect(error(`${C}match * x send to a;`)).toBe(
      'relay.conf:2:9: expected "validate", "route using", "send to" or ";" in the match, found "x"',
    );
    expect(error(`${C}match x send to a =;`)).toBe(
      'relay.conf:2:19: expected another cluster, "stop" or ";" in the match, found "="',
    );
    expect(error(`${C}match x send a;`)).toBe(
      'relay.conf:2:14: expected "to" after "send", found "a"',
    );
    expect(error("match x send to nope;")).toBe(
      'relay.conf:1:17: unknown cluster "nope" (no cluster of that name is defined before this)',
    );
    expect(error(`${C}match x send to blackhole a;`)).toBe(
      'relay.conf:2:27: "send to blackhole" takes no clusters, found "a"',
    );
    expect(error(`${C}match x send to a blackhole;`)).toBe(
      'relay.conf:2:19: "blackhole" cannot be combined with clusters in one "send to"',
    );
    expect(error("match x validate y log;")).toBe(
      'relay.conf:1:20: expected "else" after the validate expression, found "log"',
    );
    expect(error("rewrite a into b\nmatch")).toBe(
      'relay.conf:2:1: expected ";" after the rewrite replacement, found "match"',
    );
  });
});

describe("parseRules: aggregate, statistics, listen", () => {
  const AGG = "aggregate ^x\\.(.*) y every 10 seconds expire after 35 seconds";

  it("reads an aggregate", () => {
    const a = parse(
      `${C}${AGG} timestamp at middle of bucket compute sum write to s.\\1 compute percentile95 write to p send to a stop;`,
    ).rules[0] as AggregateRule;
    expect(a).toMatchObject({
      kind: "aggregate",
      every: 10,
      expire: 35,
      timestamp: "middle",
      sendTo: { blackhole: false, clusters: ["a"] },
      stop: true,
    });
    expect(a.exprs.map((e) => e.source)).toEqual(["^x\\.(.*)", "y"]);
    expect(a.computes.map((c) => [c.type, c.percentile, c.writeTo])).toEqual([
      ["sum", null, "s.\\1"],
      ["percentile", 95, "p"],
    ]);
    const b = parse(`${AGG} compute median write to m stop;`).rules[0] as AggregateRule;
    expect(b).toMatchObject({ timestamp: "end", sendTo: null, stop: true });
  });

  it("checks intervals and percentiles", () => {
    expect(
      error("aggregate x every 0 seconds expire after 5 seconds compute sum write to y;"),
    ).toBe("relay.conf:1:19: the interval must be > 0, not 0");
    expect(
      error("aggregate x every 10 seconds expire after 10 seconds compute sum write to y;"),
    ).toBe("relay.conf:1:43: expire (10 seconds) must be greater than the interval (10 seconds)");
    expect(error(`${AGG} compute percentile100 write to y;`)).toContain(
      "percentile100: the percentile must be between 1 and 99",
    );
    expect(error(`${AGG} compute total write to y;`)).toContain('after "compute", found "total"');
    expect(error(`${AGG};`)).toBe(
      'relay.conf:1:62: expected "timestamp" or "compute" after "expire after 35 seconds", found ";"',
    );
  });

  it("merges statistics statements as carbon-c-relay does", () => {
    const st = parse(
      `${C}statistics submit every 30 seconds prefix with p.\\.1;\nstatistics reset counters after interval;\nsend statistics to a stop;\nstatistics submit every 10 seconds;`,
    ).statistics;
    expect(st).toEqual({
      intervalSec: 10,
      resetCounters: false,
      prefix: "p.\\.1",
      sendTo: { blackhole: false, clusters: ["a"] },
      stop: true,
      pos: { file: "relay.conf", line: 2, column: 1 },
    });
    expect(parse("").statistics).toBeNull();
    expect(error(`${C}statistics send to a;\nsend statistics to a;`)).toBe(
      'relay.conf:3:1: statistics are already sent to clusters (at relay.conf:2:12): name all of them in that one "send to"',
    );
    expect(error("statistics submit every 0 seconds;")).toBe(
      "relay.conf:1:25: the interval must be > 0, not 0",
    );
    expect(error("statistics prefix with x submit every 5 seconds;")).toBe(
      'relay.conf:1:26: expected "send to" or ";" in the statistics statement, found "submit"',
    );
  });

  it("reads listen blocks, normalizing addresses", () => {
    const cfg = parse(
      "listen type linemode 2003 proto tcp 127.0.0.1:2004 proto udp [::1]:2005 proto tcp h.example proto tcp /s proto unix;",
    );
    expect(cfg.listen[0]!.receptors.map((r) => [r.address, r.proto])).toEqual([
      [":2003", "tcp"],
      ["127.0.0.1:2004", "udp"],
      ["[::1]:2005", "tcp"],
      ["h.example:2003", "tcp"],
      ["/s", "unix"],
    ]);
  });

  it("refuses a listener twice, other transports and bad addresses", () => {
    expect(
      error("listen type linemode 2003 proto tcp;\nlisten type linemode [::1]:2003 proto tcp;"),
    ).toBe(
      'relay.conf:2:22: duplicate listener: tcp port 2003 on "[::1]:2003" is already listened on (at relay.conf:1:22)',
    );
    expect(
      error("listen type linemode 127.0.0.1:2003 proto udp 127.0.0.1:2003 proto udp;"),
    ).toContain("duplicate listener");
    expect(() =>
      parse(
        "listen type linemode 127.0.0.1:2003 proto tcp 127.0.0.2:2003 proto tcp 0.0.0.0:2003 proto udp;",
      ),
    ).not.toThrow();
    expect(error("listen type linemode /s proto unix /s proto unix;")).toContain(
      'duplicate listener: "/s"',
    );
    expect(error("listen type linemode transport lz4 2003 proto tcp;")).toBe(
      'relay.conf:1:32: "transport lz4" (polymur listens for plain lines only) is not supported by polymur',
    );
    expect(error("listen type linemode a(b:2003 proto tcp;")).toContain(
      "is neither an IP address nor a host name",
    );
  });
});

describe("parseRules: TLS listen blocks", () => {
  it("reads transport plain ssl PEM: the block's receptors speak TLS", () => {
    const cfg = parse(
      'listen type linemode transport plain ssl /etc/relay/both.pem 2003 proto tcp /s proto unix;\nlisten type linemode transport plain ssl "/a b.pem" 127.0.0.1:2004 proto tcp;\nlisten type linemode 2005 proto udp;',
    );
    expect(
      cfg.listen.map((b) => [b.tls, b.receptors.map((r) => `${r.address} ${r.proto}`)]),
    ).toEqual([
      [
        { pemFile: "/etc/relay/both.pem", pos: { file: "relay.conf", line: 1, column: 38 } },
        [":2003 tcp", "/s unix"],
      ],
      [
        { pemFile: "/a b.pem", pos: { file: "relay.conf", line: 2, column: 38 } },
        ["127.0.0.1:2004 tcp"],
      ],
      [null, [":2005 udp"]],
    ]);
  });

  it("refuses a UDP receptor in a TLS block, as carbon-c-relay does, and a missing PEM file", () => {
    expect(
      error("listen type linemode transport plain ssl x.pem 2003 proto tcp 2003 proto udp;"),
    ).toBe(
      'relay.conf:1:63: UDP receptor "2003" in a TLS listen block ("ssl" at relay.conf:1:38): TLS runs over TCP only (carbon-c-relay: cannot use UDP transport for compressed/encrypted stream)',
    );
    expect(error("listen type linemode transport plain ssl;")).toBe(
      'relay.conf:1:41: expected the PEM file (certificate and key) after "transport plain ssl", found ";"',
    );
    expect(error("listen type linemode transport plain ssl 2003 proto tcp;")).toBe(
      'relay.conf:1:47: expected an address to listen on after "ssl 2003", found "proto"',
    );
    expect(error("listen type linemode transport plain;")).toBe(
      'relay.conf:1:37: expected an address to listen on after "transport plain", found ";"',
    );
  });

  it("refuses carbon-c-relay 3.8's mtls and TLS options, pointing to the flags", () => {
    expect(error("listen type linemode transport plain mtls x.pem 2003 proto tcp;")).toBe(
      'relay.conf:1:38: "transport plain mtls PEM" (carbon-c-relay 3.8: senders must present a certificate) is not supported by polymur: ' +
        'write "transport plain ssl PEM" and give the CA that signs the senders\' certificates with --tls-client-ca',
    );
    expect(
      error("listen type linemode transport plain ssl x.pem protomin tls1.2 2003 proto tcp;"),
    ).toBe(
      'relay.conf:1:48: "protomin" (carbon-c-relay 3.8\'s TLS options for a listener) is not supported by polymur',
    );
    expect(
      error("listen type linemode transport plain ssl x.pem ciphers HIGH 2003 proto tcp;"),
    ).toContain('1:48: "ciphers" (carbon-c-relay 3.8\'s TLS options');
  });
});

describe("parseRules: statements and include", () => {
  it("refuses what is not a statement", () => {
    expect(error(";")).toBe(
      'relay.conf:1:1: expected a statement (cluster, match, rewrite, aggregate, statistics, send statistics, listen or include), found ";"',
    );
    expect(error("send to a;")).toContain('1:6: expected "statistics" after "send"');
    expect(error("include x;")).toBe(
      "relay.conf:1:9: include is not available here (the rules were not read from a file)",
    );
  });

  function reader(files: Record<string, string>): IncludeReader {
    return {
      expand: (p) => {
        const names = Object.keys(files)
          .filter((f) => (p.endsWith("*") ? f.startsWith(p.slice(0, -1)) : f === p))
          .sort();
        if (names.length === 0) throw new Error(`no file matches "${p}"`);
        return names;
      },
      key: (p) => p,
      read: (p) => files[p]!,
    };
  }

  it("reads included files in place, sharing what is defined", () => {
    const r = reader({
      "inc/1": "cluster b forward 10.0.0.2;\n",
      "inc/2": "match x send to a b;\n",
    });
    const cfg = parse(`${C}include inc/*;\nmatch * send to b;`, r);
    expect(cfg.files).toEqual(["relay.conf", "inc/1", "inc/2"]);
    expect(cfg.clusters.map((c) => c.name)).toEqual(["a", "b"]);
    expect(cfg.rules.map((x) => [x.kind, x.pos.file])).toEqual([
      ["match", "inc/2"],
      ["match", "relay.conf"],
    ]);
  });

  it("refuses cycles and reports errors in included files with where they were included", () => {
    const r = reader({
      a: "include b;",
      b: "include a;",
      bad: "match x send to nope;",
      "relay.conf": "include relay.conf;",
    });
    expect(error("include a;", r)).toBe(
      'b:1:9: include cycle: "a" is already being read (in a file included at a:1:9) (in a file included at relay.conf:1:9)',
    );
    expect(error("include relay.conf;", r)).toBe(
      'relay.conf:1:9: include cycle: "relay.conf" is already being read',
    );
    expect(error("include bad;", r)).toBe(
      'bad:1:17: unknown cluster "nope" (no cluster of that name is defined before this) (in a file included at relay.conf:1:9)',
    );
    expect(error("include none*;", r)).toBe('relay.conf:1:9: no file matches "none*"');
  });
});

describe("rules-address", () => {
  it("splits host and port as router_validate_address does", () => {
    expect(splitHostPort("1.2.3.4")).toEqual({ host: "1.2.3.4", port: 2003 });
    expect(splitHostPort("[::1]")).toEqual({ host: "::1", port: 2003 });
    expect(splitHostPort("::1:2004")).toEqual({ host: "::1", port: 2004 });
    expect(splitHostPort("::1")).toEqual({ host: ":", port: 1 });
    expect(splitHostPort(":2003")).toEqual({ host: null, port: 2003 });
    expect(splitHostPort("h: +7")).toEqual({ host: "h", port: 7 });
    expect(splitHostPort("h:7x")).toBe("invalid port number '7x'");
    expect(splitHostPort("[::1:2003")).toBe("expected ']'");
  });

  it("reads numeric addresses as getaddrinfo does", () => {
    expect(numericAddress("127.1")).toBe(numericAddress("127.0.0.1"));
    expect(numericAddress("0x7f.0.0.1")).toBe("4:7f000001");
    expect(numericAddress("0177.0.0.1")).toBe("4:7f000001");
    expect(numericAddress("256.0.0.1")).toBeNull();
    expect(numericAddress("08.0.0.1")).toBeNull();
    expect(numericAddress("::ffff:1.2.3.4")).toBe(`6:${"0".repeat(20)}ffff01020304`);
    expect(numericAddress("0:0::1")).toBe(numericAddress("::1"));
    expect(numericAddress("fe80::1%eth0")).toBe(numericAddress("fe80::1"));
    expect(numericAddress("1.2.3.4::")).toBeNull();
    expect(numericAddress("example.org")).toBeNull();
  });
});

describe("errors quoting the file", () => {
  it("show UTF-8 text as text (the file is read one char per byte)", () => {
    const latin1 = Buffer.from(
      "cluster f forward 127.0.0.1:2003;\nmatch ^é.x sned to f;\n",
    ).toString("latin1");
    expect(() => parseRules(latin1, "t.conf")).toThrow(/^t\.conf:2:\d+: .*é/);
  });
});
