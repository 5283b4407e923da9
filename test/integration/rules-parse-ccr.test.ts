import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RulesError } from "../../dataplane/route/rules/rules-config.ts";
import { loadRules } from "../../dataplane/route/rules/rules-files.ts";
import { ccrBinary } from "../fixtures/references.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";

/**
 * relay.conf files that carbon-c-relay 3.7.3 (`carbon-c-relay -t -f FILE <
 * /dev/null`) accepts or rejects, read by polymur's parser: both must
 * decide alike, except where polymur differs on purpose (a feature it
 * cannot run, or a carbon-c-relay bug; see docs/rules.md).
 *
 * CORPUS holds the cases: `=== name | expectation [| fragment of polymur's
 * error]`, the file's lines, then optionally `--- relative/path` and the
 * lines of another file in the case's directory. `@DIR@` stands for that
 * directory; lines starting with `;;` are notes. Cluster members are IP
 * addresses: carbon-c-relay resolves host names while it parses.
 */
type Expectation =
  | "accept"
  | "reject"
  /** carbon-c-relay runs it; polymur refuses it (a feature it cannot run). */
  | "polymur-refuses"
  /** carbon-c-relay refuses or crashes on it because of a bug; polymur reads it. */
  | "polymur-accepts";

interface Case {
  readonly name: string;
  readonly expect: Expectation;
  readonly conf: string;
  /** A fragment of polymur's error (`line:column: message`). */
  readonly error?: string;
  /** Other files in the directory (relative path → text). */
  readonly files?: Readonly<Record<string, string>>;
}

const CORPUS = String.raw`
=== forward | accept
cluster a forward 127.0.0.1:2003 127.0.0.2;
match * send to a;
=== any_of useall | accept
cluster a any_of useall 127.0.0.1:2003 127.0.0.2:2003;
=== failover | accept
cluster a failover 127.0.0.1:2003 127.0.0.2:2004;
=== carbon_ch replication | accept
cluster a carbon_ch replication 2 127.0.0.1:2003=a 127.0.0.2:2003=b;
=== fnv1a_ch dynamic | accept
cluster a fnv1a_ch dynamic 127.0.0.1 127.0.0.2;
=== jump_fnv1a_ch replication dynamic | accept
cluster a jump_fnv1a_ch replication 3 dynamic 127.0.0.1 127.0.0.2 127.0.0.3;
=== replication = members | accept
cluster a carbon_ch replication 2 127.0.0.1 127.0.0.1:2004;
=== file | accept
cluster f file @DIR@/out.txt @DIR@/out2.txt;
match * send to f;
=== file ip | accept
cluster f file ip @DIR@/out.txt;
=== member options | accept
cluster a forward 127.0.0.1:2003=x proto udp type linemode transport plain 127.0.0.2 proto tcp;
=== numeric instance | accept
cluster a carbon_ch 127.0.0.1:2003=007 127.0.0.2:2003=1;
=== quoted instance | accept
cluster a carbon_ch 127.0.0.1:2003="a-1" 127.0.0.2:2003="b";
=== ipv6 | accept
cluster a forward [::1]:2003 [::1] ::1:2004 [fe80::1]:2005;
=== port with sign | accept
cluster a forward 127.0.0.1:+2004;
=== same server, same instance | accept
cluster a forward 127.0.0.1:2003=x;
cluster b carbon_ch 127.0.0.1:2003=x;
=== same address, other protocol | accept
cluster a forward 127.0.0.1:2003=x;
cluster b forward 127.0.0.1:2003 proto udp;
=== any_of first, then shared | accept
cluster a any_of 127.0.0.1:2003;
cluster b forward 127.0.0.1:2003;
=== forward repeats a member | accept
cluster a forward 127.0.0.1:2003 127.0.0.1:2003;
=== match several | accept
cluster a forward 127.0.0.1:2003;
match ^a\. ^b\. "^c\.d" send to a;
=== match validate only | accept
match * validate ^[a-z.]+$ else log;
=== match validate send stop | accept
cluster a forward 127.0.0.1:2003;
match ^x validate "^x\.[0-9]+ " else drop send to a stop;
=== validate then stop | accept
match ^x validate ^x\.y else drop stop;
=== route using | accept
cluster h carbon_ch 127.0.0.1 127.0.0.2;
match ^(x)\.(.*) route using \2 send to h;
=== route using stop | accept
cluster h carbon_ch 127.0.0.1 127.0.0.2;
match ^(x)\.(.*) route using \2 send to h stop;
=== blackhole | accept
match ^junk\. send to blackhole;
match ^junk2 send to blackhole stop;
=== several clusters | accept
cluster a forward 127.0.0.1:2003;
cluster b forward 127.0.0.2;
match * send to a b a stop;
=== quoted keyword expression | accept
cluster a forward 127.0.0.1:2003;
match "send" "validate" "*" send to a;
=== quoted star | accept
cluster a forward 127.0.0.1:2003;
match "*" send to a;
=== quoted blackhole target | accept
cluster a forward 127.0.0.1:2003;
match x send to "blackhole";
match y send to a "blackhole";
=== quoted keyword cluster name | accept
cluster "stop" forward 127.0.0.1;
match * send to "stop";
=== rewrite | accept
rewrite ^(.*)\.old\.(.*)$ into \1.new.\_2;
rewrite x into "\\1\\^2";
=== aggregate | accept
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds compute sum write to s.\1 compute count write to c.\1 compute max write to mx compute min write to mn compute average write to av compute median write to md compute percentile95 write to p95 compute variance write to v compute stddev write to sd;
=== aggregate aliases | accept
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds compute summary write to a compute cnt write to b compute maximum write to c compute minimum write to d compute avg write to e compute percentile1 write to f compute percentile99 write to g;
=== aggregate timestamps | accept
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds timestamp at start of bucket compute sum write to a;
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds timestamp at middle of bucket compute sum write to b;
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds timestamp at end of bucket compute sum write to c;
=== aggregate send to, stop | accept
cluster a forward 127.0.0.1:2003;
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds compute sum write to s send to a stop;
=== aggregate two expressions | accept
aggregate ^a ^b every 60 seconds expire after 75 seconds compute sum write to t;
=== glued number | accept
aggregate x every 10seconds expire after 11seconds compute sum write to y;
=== statistics | accept
cluster a forward 127.0.0.1:2003;
statistics submit every 30 seconds reset counters after interval prefix with carbon.relays.\.1 send to a stop;
=== statistics parts | accept
statistics submit every 10 seconds;
statistics reset counters after interval;
statistics prefix with "x.y";
=== send statistics | accept
cluster a forward 127.0.0.1:2003;
send statistics to a stop;
statistics submit every 5 seconds;
=== statistics to blackhole | accept
statistics send to blackhole;
=== listen | accept
listen type linemode 2103 proto tcp 127.0.0.1:2104 proto udp @DIR@/sock proto unix;
=== listen transport plain | accept
listen type linemode transport plain 127.0.0.1:2103 proto tcp;
=== listen same port other family | accept
listen type linemode 127.0.0.1:2103 proto tcp [::1]:2103 proto tcp 2103 proto udp;
=== member ssl | accept
cluster a forward 127.0.0.1 transport plain ssl 127.0.0.2:2004=x proto tcp type linemode transport plain ssl;
cluster b carbon_ch replication 2 127.0.0.3=a transport plain ssl 127.0.0.4=b transport plain ssl;
=== member after a scheme | accept
;; polymur's extension (the notation of --destinations); carbon-c-relay takes tls://127.0.0.1 for a host name.
cluster a forward tls://127.0.0.1:2003 pickle://127.0.0.2:2004=x pickle+tls://[::1]:2004;
=== listen ssl | accept
listen type linemode transport plain ssl @DIR@/x.pem 2103 proto tcp 127.0.0.1:2104 proto tcp;
=== listen ssl, quoted PEM file | accept
listen type linemode transport plain ssl "@DIR@/x.pem" 2103 proto tcp;
;; polymur's relay refuses these two when it opens the listeners (one unix socket, cleartext); the files parse.
=== listen ssl with a unix receptor | accept
listen type linemode transport plain ssl @DIR@/x.pem 2103 proto tcp @DIR@/s proto unix;
=== listen two unix receptors | accept
listen type linemode @DIR@/a proto unix @DIR@/b proto unix;
=== listen ssl with udp | reject | UDP receptor "2104" in a TLS listen block
listen type linemode transport plain ssl @DIR@/x.pem 2103 proto tcp 2104 proto udp;
=== listen ssl without a PEM file | reject | 1:41: expected the PEM file (certificate and key)
listen type linemode transport plain ssl;
=== listen ssl, a port for a PEM file | reject | 1:47: expected an address to listen on after "ssl 2103"
listen type linemode transport plain ssl 2103 proto tcp;
=== listen mtls (carbon-c-relay 3.8) | reject | 1:38: "transport plain mtls PEM"
listen type linemode transport plain mtls @DIR@/x.pem 2103 proto tcp;
=== listen protomin (carbon-c-relay 3.8) | reject | "protomin" (carbon-c-relay 3.8's TLS options
listen type linemode transport plain ssl @DIR@/x.pem protomin tls1.2 2103 proto tcp;
=== include | accept
include @DIR@/inc/one.conf;
match * send to b;
--- inc/one.conf
cluster b forward 127.0.0.2;
=== include glob | accept
include @DIR@/inc/*.conf;
match * send to c;
--- inc/a.conf
cluster b forward 127.0.0.2;
--- inc/b.conf
cluster c forward 127.0.0.3;
match x send to b;
=== nested include | accept
include "@DIR@/inc/[a].conf";
--- inc/a.conf
include @DIR@/inc/b.conf;
--- inc/b.conf
cluster a forward 127.0.0.1:2003;
=== keyword glued to a name | accept
clusterfoo forward 127.0.0.1;
match * send to foo;
=== escaped space | accept
cluster a forward 127.0.0.1:2003;
match foo\ bar send to a;
=== escapes in quotes | accept
cluster a forward 127.0.0.1:2003;
match "a\"b" "c\\d" send to a;
=== unknown cluster | reject | 1:17: unknown cluster "nope"
match * send to nope;
=== cluster used before defined | reject | 1:17: unknown cluster
match * send to a;
cluster a forward 127.0.0.1:2003;
=== duplicate cluster | reject | 2:9: cluster "a" is already defined at
cluster a forward 127.0.0.1:2003;
cluster a forward 127.0.0.2;
=== instance then none | reject | 2:19: 127.0.0.1:2003 was defined with instance "x"
cluster a forward 127.0.0.1:2003=x;
cluster b forward 127.0.0.1:2003;
=== none then instance | reject | 2:19: cannot give 127.0.0.1:2003 the instance
cluster a forward 127.0.0.1:2003;
cluster b forward 127.1:2003=x;
=== two instances | reject | 1:33: cannot give 127.0.0.1:2003 the instance "y"
cluster a carbon_ch 127.0.0.1=x 127.0.0.1=y;
=== any_of shares a member | reject | 2:18: cannot share 127.0.0.1:2003 with any_of
cluster a forward 127.0.0.1:2003;
cluster b any_of 127.0.0.1:2003;
=== failover repeats a member | reject | cannot share
cluster b failover 127.0.0.1 127.0.0.1;
=== replication > members | reject | 1:33: replication count 3 is larger
cluster a carbon_ch replication 3 127.0.0.1 127.0.0.2;
=== replication 0 | reject | 1:32: replication count must be between 1 and 255
cluster a fnv1a_ch replication 0 127.0.0.1;
=== replication 256 | reject | between 1 and 255
cluster a fnv1a_ch replication 256 127.0.0.1;
=== reserved name | reject | 1:9: expected a cluster name after "cluster", found "blackhole"
cluster blackhole forward 127.0.0.1;
=== quoted reserved name | reject | 1:9: the cluster name "blackhole" is reserved
cluster "blackhole" forward 127.0.0.1;
=== keyword as name | reject | quote it, "ip"
cluster ip forward 127.0.0.1;
=== number as member | reject | 1:19: expected
cluster a forward 2003;
=== no members | reject | 1:18: expected
cluster a forward;
=== missing type | reject | 1:11: expected the cluster type
cluster a 127.0.0.1;
=== bad port | reject | 1:19: invalid port number '70000'
cluster a forward 127.0.0.1:70000;
=== port 0 | reject | invalid port number '0'
cluster a forward 127.0.0.1:0;
=== unclosed bracket | reject | expected ']'
cluster a forward [::1:2003;
=== no host | reject | 1:19: member ":2003" has no host
cluster a forward :2003;
=== options out of order | reject | 1:45: expected
cluster a forward 127.0.0.1 transport plain proto udp;
=== member gzip | reject | 1:39: "transport gzip" is not supported by polymur
cluster a forward 127.0.0.1 transport gzip;
=== member lz4 | reject | not supported by polymur
cluster a forward 127.0.0.1 transport lz4;
=== member snappy | reject | not supported by polymur
cluster a forward 127.0.0.1 transport snappy;
=== listen gzip | reject | 1:32: "transport gzip"
listen type linemode transport gzip 2103 proto tcp;
=== percentile100 | reject | percentile must be between 1 and 99
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds compute percentile100 write to x;
=== percentile | reject | between 1 and 99
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds compute percentile write to x;
=== expire = every | reject | 1:43: expire (10 seconds) must be greater than the interval
aggregate x every 10 seconds expire after 10 seconds compute sum write to y;
=== expire < every | reject | must be greater
aggregate x every 10 seconds expire after 5 seconds compute sum write to y;
=== every 0 | reject | 1:19: the interval must be > 0
aggregate x every 0 seconds expire after 5 seconds compute sum write to y;
=== no compute | reject | 1:53: expected "timestamp" or "compute"
aggregate x every 10 seconds expire after 20 seconds;
=== no expire | reject | "expire after"
aggregate x every 10 seconds compute sum write to y;
=== bad timestamp | reject | 1:67: expected "start", "middle" or "end"
aggregate x every 10 seconds expire after 20 seconds timestamp at noon of bucket compute sum write to y;
=== unknown compute | reject | found "total"
aggregate x every 10 seconds expire after 20 seconds compute total write to y;
=== statistics interval 0 | reject | 1:25: the interval must be > 0
statistics submit every 0 seconds;
=== statistics stop alone | reject | 1:12: expected
statistics stop;
=== statistics sent twice | reject | 3:12: statistics are already sent
cluster a forward 127.0.0.1:2003;
statistics send to a;
statistics send to a;
=== send statistics and statistics send | reject | statistics are already sent
cluster a forward 127.0.0.1:2003;
send statistics to a;
statistics send to a;
=== match without destination | reject | 1:12: expected "send to" or "validate"
match a b c;
=== misspelt send | reject | read as expressions: "x" "sned" "to" "a"
cluster a forward 127.0.0.1:2003;
match x sned to a;
=== match stop without send | reject | expected "send to" or "validate"
match a stop;
=== blackhole and cluster | reject | takes no clusters
cluster a forward 127.0.0.1:2003;
match * send to blackhole a;
=== cluster and blackhole | reject | cannot be combined
cluster a forward 127.0.0.1:2003;
match * send to a blackhole;
=== star and expression | reject | 2:9: expected "validate", "route using", "send to" or ";" in the match, found "x"
cluster a forward 127.0.0.1:2003;
match * x send to a;
=== validate without else | reject | 1:20: expected "else"
match * validate x log;
=== rewrite without into | reject | 1:11: expected "into"
rewrite x y;
=== missing semicolon | reject | 2:1: expected ";" after the rewrite replacement, found "match"
rewrite a into b
match * send to blackhole;
=== double semicolon | reject | 2:1: expected a statement
cluster a forward 127.0.0.1:2003;
;
=== unknown statement | reject | 1:1: expected a statement (cluster, match, rewrite, aggregate, statistics, send statistics, listen or include), found "route"
route * to a;
=== empty string | reject | 1:7: empty string
match "" send to blackhole;
=== unterminated string | reject | 1:7: unterminated string
match "abc send to blackhole;
=== listen twice on a port | reject | 2:22: duplicate listener
listen type linemode 2103 proto tcp;
listen type linemode 0.0.0.0:2103 proto tcp;
=== listen port covers address | reject | duplicate listener
listen type linemode 2103 proto udp 127.0.0.1:2103 proto udp;
=== listen port covers ipv6 | reject | duplicate listener
listen type linemode 2103 proto tcp [::1]:2103 proto tcp;
=== listen unix twice | reject | duplicate listener
listen type linemode @DIR@/s proto unix @DIR@/s proto unix;
=== listen bad port | reject | invalid port number '70000'
listen type linemode 70000 proto tcp;
=== listen no receptor | reject | 1:21: expected "transport" or an address
listen type linemode;
=== listen no proto | reject | 1:26: expected "proto"
listen type linemode 2103;
=== include missing | reject | no such file
include @DIR@/none.conf;
=== include directory | reject | not a regular file
include @DIR@/inc;
--- inc/x
=== include glob matching nothing | reject | no file matches
include @DIR@/inc/*.conf;
--- inc/x
=== error in included file | reject | bad.conf:1:17: unknown cluster
include @DIR@/inc/bad.conf;
--- inc/bad.conf
match * send to zz;
=== include defines a cluster twice | reject | is already defined
cluster a forward 127.0.0.1:2003;
include @DIR@/inc/a.conf;
--- inc/a.conf
cluster a forward 127.0.0.1:2003;
;; polymur cannot run these: refused where they are written.
=== member mtls (carbon-c-relay 3.8) | polymur-refuses | 1:45: "transport plain mtls CERT KEY"
;; carbon-c-relay 3.7.3 reads mtls, CERT and KEY as three more members, and this one in plaintext.
cluster a forward 127.0.0.1 transport plain mtls @DIR@/c.pem @DIR@/k.pem;
=== member ssl over udp | polymur-refuses | 1:55: "ssl" on UDP member "127.0.0.1": TLS runs over TCP only
cluster a forward 127.0.0.1 proto udp transport plain ssl;
=== member after a scheme over udp | polymur-refuses | 1:49: "proto udp" for member "pickle://127.0.0.1:2004"
cluster a forward pickle://127.0.0.1:2004 proto udp;
=== member after an unknown scheme | polymur-refuses | 1:19: unknown scheme "http://"
cluster a forward http://127.0.0.1:2003;
=== one server, two transports | polymur-refuses | 2:19: cannot make 127.0.0.1:2003 a plaintext member: it was defined as a TLS one at
;; carbon-c-relay silently uses the first definition's transport for both.
cluster a forward 127.0.0.1:2003 transport plain ssl;
cluster b forward 127.0.0.1:2003;
=== syslog member | polymur-refuses | 1:34: "type syslog" is not supported by polymur
cluster a forward 127.0.0.1 type syslog;
=== instance with a comma | polymur-refuses | cannot be a polymur destination
cluster a carbon_ch 127.0.0.1=a,b;
;; carbon-c-relay bugs polymur does not copy (docs/rules.md).
=== aggregate stop without send to | polymur-accepts
aggregate ^x\.(.*) every 10 seconds expire after 20 seconds compute sum write to s stop;
=== # in a quoted string | polymur-accepts
match "#x" send to blackhole;
;; carbon-c-relay -t crashes printing an aggregate or rewrite "*" (router_quoteident(NULL)); the relay runs it.
=== aggregate quoted star | polymur-accepts
aggregate ^a "*" every 60 seconds expire after 75 seconds compute sum write to t;
=== rewrite quoted star | polymur-accepts
rewrite "*" into x;
;; carbon-c-relay probes socket and file paths by creating them while it parses; polymur when it opens them.
=== unix listener in a missing directory | polymur-accepts
listen type linemode @DIR@/none/s proto unix;
`;

function readCorpus(text: string): Case[] {
  const cases: {
    name: string;
    expect: Expectation;
    error?: string;
    files: Record<string, string[]>;
  }[] = [];
  let lines: string[] = [];
  for (const line of text.split("\n")) {
    if (line.startsWith(";;") || (line === "" && cases.length === 0)) continue;
    const head = /^=== (.+?) \| (accept|reject|polymur-refuses|polymur-accepts)(?: \| (.+))?$/.exec(
      line,
    );
    if (head !== null) {
      lines = [];
      cases.push({
        name: head[1]!,
        expect: head[2] as Expectation,
        ...(head[3] === undefined ? {} : { error: head[3] }),
        files: { "": lines },
      });
    } else if (line.startsWith("--- ")) {
      lines = [];
      cases[cases.length - 1]!.files[line.slice(4)] = lines;
    } else {
      lines.push(line);
    }
  }
  const text_ = (ls: string[]): string => {
    while (ls.length > 0 && ls[ls.length - 1] === "") ls.pop();
    return ls.length === 0 ? "" : `${ls.join("\n")}\n`;
  };
  return cases.map(({ files, ...c }) => {
    const { "": main, ...others } = files;
    return {
      ...c,
      conf: text_(main!),
      files: Object.fromEntries(Object.entries(others).map(([k, v]) => [k, text_(v)])),
    };
  });
}

const C = "cluster a forward 127.0.0.1:2003;\n";

/** Cases a text corpus cannot hold: CR LF, a missing last newline, long lines. */
const BUILT: readonly Case[] = [
  {
    name: "comments and layout",
    expect: "accept",
    conf: "# header\r\ncluster\ta\r\n  forward # trailing\r\n\t127.0.0.1:2003\r\n;\r\n\r\nmatch * send to a ; # done\n",
  },
  { name: "empty file", expect: "accept", conf: "" },
  {
    name: "many rules",
    expect: "accept",
    conf: C + Array.from({ length: 60 }, (_, i) => `match ^m${i}\\. send to a;\n`).join(""),
  },
  {
    name: "string at the limit",
    expect: "accept",
    conf: `match "${"a".repeat(1023)}" send to blackhole;\n`,
  },
  {
    name: "string too large",
    expect: "reject",
    conf: `match "${"a".repeat(1024)}" send to blackhole;\n`,
    error: "string too large",
  },
  {
    name: "comment on the last line",
    expect: "polymur-accepts",
    conf: `${C}# no newline after this`,
  },
];

const CASES: readonly Case[] = [...readCorpus(CORPUS), ...BUILT];

const root = mkdtempSync(join(tmpdir(), "rules-ccr-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Writes a case's files into a fresh directory; returns the main file's path. */
function lay(c: Case, i: number): string {
  const dir = join(root, String(i));
  const fill = (s: string): string => s.replaceAll("@DIR@", dir);
  mkdirSync(dir, { recursive: true });
  for (const [rel, text] of Object.entries(c.files ?? {})) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), fill(text), "latin1");
  }
  const main = join(dir, "relay.conf");
  writeFileSync(main, fill(c.conf), "latin1");
  return main;
}

/**
 * carbon-c-relay resolves host names while it reads a file: where the machine allows, it
 * runs without a network (unshare -n), so that a name in a case can never become a query.
 */
const isolate = spawnSync("unshare", ["-n", "true"], { stdio: "ignore" }).status === 0;

/** carbon-c-relay's verdict: accepted when it exits 0 (crashes count as rejections). */
function ccrAccepts(path: string): { ok: boolean; output: string } {
  const argv = [ccrBinary!, "-t", "-f", path];
  const r = spawnSync(isolate ? "unshare" : argv[0]!, isolate ? ["-n", ...argv] : argv.slice(1), {
    cwd: dirname(path),
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "latin1",
    timeout: 20_000,
  });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.slice(-600) };
}

function polymurVerdict(path: string): { ok: boolean; error: string } {
  try {
    loadRules(path);
    return { ok: true, error: "" };
  } catch (err) {
    if (!(err instanceof RulesError)) throw err;
    return { ok: false, error: err.message };
  }
}

describe.skipIf(skipUnlessAvailable("carbon-c-relay", ccrBinary !== undefined))(
  "relay.conf: polymur's parser decides as carbon-c-relay 3.7.3 does",
  () => {
    it("has a corpus covering every statement and error class", () => {
      const count = (e: Expectation): number => CASES.filter((c) => c.expect === e).length;
      expect(count("accept")).toBeGreaterThanOrEqual(40);
      expect(count("reject")).toBeGreaterThanOrEqual(40);
      expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
    });

    it.each(CASES.map((c, i) => [c.name, c, i] as const))("%s", (_name, c, i) => {
      const path = lay(c, i);
      const ccr = ccrAccepts(path);
      const ours = polymurVerdict(path);
      const ccrShould = c.expect === "accept" || c.expect === "polymur-refuses";
      const oursShould = c.expect === "accept" || c.expect === "polymur-accepts";
      expect({ ccr: ccr.ok, output: ccr.ok === ccrShould ? "" : ccr.output }).toEqual({
        ccr: ccrShould,
        output: "",
      });
      expect({ polymur: ours.ok, error: ours.ok === oursShould ? "" : ours.error }).toEqual({
        polymur: oursShould,
        error: "",
      });
      if (c.error !== undefined) expect(ours.error).toContain(c.error);
    });
  },
);
