import { type DestinationProtocol, parseDestination } from "../../forward/destination-spec.ts";
import { numericAddress, splitHostPort } from "./rules-address.ts";
import type { Cluster, ClusterMember, ClusterType } from "./rules-config.ts";
import { describeToken as describe, isBareWord, KEYWORD_KINDS, type Token } from "./rules-lexer.ts";
import { at, oneOf, type ParseContext, q, type ServerEntry } from "./rules-parse-context.ts";

const NETWORK_TYPES = ["forward", "any_of", "failover", "carbon_ch", "fnv1a_ch", "jump_fnv1a_ch"];

/** A hint when a cluster name is a keyword where it stands (quoting it makes it a string). */
const reservedHint = (t: Token): string =>
  t.kind === "blackhole"
    ? " (blackhole is the built-in cluster that drops what it is sent)"
    : (KEYWORD_KINDS as readonly string[]).includes(t.kind)
      ? ` (a keyword here: quote it, "${t.raw}", to use it as a name)`
      : "";

/**
 * `cluster NAME TYPE MEMBERS ;` (after the `cluster` keyword `kw`), with
 * carbon-c-relay's checks (conffile.y `cluster`, router.c
 * `router_add_server` / `router_add_cluster`): a new name other than
 * `blackhole`; replication 1-255 and at most the number of members; and
 * per server (one per address, port and protocol across all clusters) one
 * instance or none, and no sharing with an any_of or failover cluster.
 */
export function parseCluster(ctx: ParseContext, kw: Token): void {
  const nameTok = ctx.tok;
  if (nameTok.kind !== "string") {
    ctx.unexpected("a cluster name", 'after "cluster"', reservedHint(nameTok));
  }
  ctx.take();
  const name = nameTok.text;
  if (name === "blackhole") {
    ctx.fail(
      nameTok.pos,
      'the cluster name "blackhole" is reserved: it is the built-in cluster that drops what it is sent',
    );
  }
  const dup = ctx.state.clusterByName.get(name);
  if (dup !== undefined) {
    ctx.fail(nameTok.pos, `cluster ${q(name)} is already defined at ${at(dup.pos)}`);
  }

  const typeTok = ctx.tok;
  let type: ClusterType;
  let useall = false;
  let replication = 1;
  let replTok: Token | null = null;
  let dynamic = false;
  let fileIp = false;
  switch (typeTok.kind) {
    case "forward":
    case "any_of":
    case "failover":
      type = typeTok.kind;
      ctx.take();
      useall = ctx.accept("useall") !== null;
      break;
    case "carbon_ch":
    case "fnv1a_ch":
    case "jump_fnv1a_ch":
      type = typeTok.kind;
      ctx.take();
      if (ctx.accept("replication") !== null) {
        replTok = ctx.expect("int", "a number", 'after "replication"');
        replication = ctx.int(replTok);
        if (replication < 1 || replication > 255) {
          ctx.fail(replTok.pos, `replication count must be between 1 and 255, not ${replTok.raw}`);
        }
      }
      dynamic = ctx.accept("dynamic") !== null;
      break;
    case "file":
      type = "file";
      ctx.take();
      fileIp = ctx.accept("ip") !== null;
      break;
    default:
      ctx.unexpected(
        `the cluster type (${oneOf([...NETWORK_TYPES, "file"])})`,
        `after the cluster name ${q(name)}`,
      );
  }

  const members: ClusterMember[] = [];
  const paths: string[] = [];
  if (type === "file") {
    const what = fileIp ? '"file ip"' : '"file"';
    paths.push(ctx.expect("string", "a file path", `after ${what}`).text);
    for (let t = ctx.accept("string"); t !== null; t = ctx.accept("string")) paths.push(t.text);
    ctx.expect(";", 'another file path or ";"', `in cluster ${q(name)}`);
  } else {
    if (ctx.tok.kind !== "string") {
      const opts: string[] = [];
      if (type === "forward" || type === "any_of" || type === "failover") {
        if (!useall) opts.push('"useall"');
      } else if (!dynamic) {
        if (replTok === null) opts.push('"replication"');
        opts.push('"dynamic"');
      }
      ctx.unexpected(oneOf([...opts, "a member (host[:port])"]), `in cluster ${q(name)}`);
    }
    while (ctx.tok.kind === "string") members.push(parseMember(ctx, name, type));
    ctx.expect(";", 'another member or ";"', `in cluster ${q(name)}`);
  }
  if (replTok !== null && members.length < replication) {
    ctx.fail(
      replTok.pos,
      `replication count ${replication} is larger than the number of members (${members.length}) of cluster ${q(name)}`,
    );
  }
  const cluster: Cluster = {
    name,
    type,
    useall,
    replication,
    dynamic,
    fileIp,
    members,
    paths,
    pos: kw.pos,
  };
  ctx.state.clusters.push(cluster);
  ctx.state.clusterByName.set(name, cluster);
}

/** How a member is reached: what it is sent, and whether over TLS. */
interface Reach {
  readonly protocol: DestinationProtocol;
  readonly tls: boolean;
}

/**
 * The schemes a member's host may be written after, as in --destinations
 * (destination-spec.ts): polymur's extension. carbon-c-relay reads
 * `tls://10.0.0.1:2003` as the host name `tls://10.0.0.1`, which never
 * resolves.
 */
const SCHEMES: Readonly<Record<string, Reach>> = {
  "tls://": { protocol: "plaintext", tls: true },
  "pickle://": { protocol: "pickle", tls: false },
  "pickle+tls://": { protocol: "pickle", tls: true },
};

/** The scheme a member's spec is written after (`""`: plaintext over TCP). */
function schemeOf(r: Reach): string {
  if (r.protocol === "pickle") return r.tls ? "pickle+tls://" : "pickle://";
  return r.tls ? "tls://" : "";
}

/** For messages: `a plaintext`, `a TLS`, `a pickle`, `a pickle-over-TLS`. */
function reachText(r: Reach): string {
  if (r.protocol === "pickle") return r.tls ? "a pickle-over-TLS" : "a pickle";
  return r.tls ? "a TLS" : "a plaintext";
}

/** The scheme each server was first written with (servers are ServerEntry objects this file makes). */
const serverReach = new WeakMap<ServerEntry, Reach>();

/**
 * `[SCHEME://]HOST[:PORT] [=INSTANCE] [proto udp|tcp] [type linemode]
 * [transport plain [ssl]]`. `ssl` (a TLS connection) adds TLS to what the
 * scheme says. carbon-c-relay 3.8's `mtls CERT KEY` is refused: 3.7 reads it
 * as three more members, and polymur's client certificate is one for every
 * TLS destination (--destination-tls-cert, --destination-tls-key).
 */
function parseMember(ctx: ParseContext, cluster: string, type: ClusterType): ClusterMember {
  const hostTok = ctx.take();
  const text = hostTok.text;
  const written = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(text)?.[0] ?? "";
  let reach: Reach = { protocol: "plaintext", tls: false };
  if (written !== "") {
    const known = SCHEMES[written.toLowerCase()];
    if (known === undefined) {
      ctx.fail(
        hostTok.pos,
        `unknown scheme "${written}" in member ${q(text)} (polymur's members may be written after ${oneOf(Object.keys(SCHEMES))}, as --destinations)`,
      );
    }
    reach = known;
    if (text.length === written.length) ctx.fail(hostTok.pos, `member ${q(text)} has no host`);
  }
  const hp = splitHostPort(text.slice(written.length));
  if (typeof hp === "string") ctx.fail(hostTok.pos, `${hp} in member ${q(text)}`);
  if (hp.host === null) ctx.fail(hostTok.pos, `member ${q(text)} has no host`);
  let instance: string | undefined;
  const done: string[] = [];
  if (ctx.accept("=") !== null) {
    const t = ctx.tok;
    if (t.kind === "int") instance = String(ctx.int(ctx.take()));
    else instance = ctx.expect("string", "an instance name", `after "${text}="`).text;
    done.push("=");
  }
  let proto: "tcp" | "udp" = "tcp";
  if (ctx.accept("proto") !== null) {
    const t = ctx.take();
    if (t.kind !== "udp" && t.kind !== "tcp") {
      ctx.fail(t.pos, `expected "udp" or "tcp" after "proto", found ${describe(t)}`);
    }
    proto = t.kind;
    if (proto === "udp" && written !== "") {
      ctx.fail(
        t.pos,
        `"proto udp" for member ${q(text)}: ${written.toLowerCase()} runs over TCP only`,
      );
    }
    done.push("=", "proto");
  }
  if (ctx.accept("type") !== null) {
    const t = ctx.take();
    if (t.kind === "syslog") ctx.unsupported(t, '"type syslog"');
    if (t.kind !== "linemode")
      ctx.fail(t.pos, `expected "linemode" after "type", found ${describe(t)}`);
    done.push("=", "proto", "type");
  }
  if (ctx.accept("transport") !== null) {
    const t = ctx.take();
    if (t.kind === "gzip" || t.kind === "lz4" || t.kind === "snappy") {
      ctx.unsupported(t, `"transport ${t.raw}"`);
    }
    if (t.kind !== "plain") {
      ctx.fail(
        t.pos,
        `expected "plain", "gzip", "lz4" or "snappy" after "transport", found ${describe(t)}`,
      );
    }
    const ssl = ctx.accept("ssl");
    if (ssl !== null) {
      if (proto === "udp") {
        ctx.fail(ssl.pos, `"ssl" on UDP member ${q(text)}: TLS runs over TCP only`);
      }
      reach = { protocol: reach.protocol, tls: true };
    } else if (isBareWord(ctx.tok, "mtls")) {
      ctx.fail(
        ctx.tok.pos,
        '"transport plain mtls CERT KEY" (carbon-c-relay 3.8: a client certificate per member) is not supported by polymur: ' +
          'write "transport plain ssl" and give the client certificate with --destination-tls-cert and --destination-tls-key, ' +
          "which every TLS destination presents (carbon-c-relay 3.7 reads mtls, CERT and KEY as three more members)",
      );
    }
    done.push("=", "proto", "type", "transport");
  }
  const next = ctx.tok.kind;
  if (next !== "string" && next !== ";") {
    const left = ["=", "proto", "type", "transport"].filter((o) => !done.includes(o));
    ctx.unexpected(
      oneOf([...left.map((o) => `"${o}"`), "another member", '";"']),
      `after member ${q(text)} of cluster ${q(cluster)}`,
      left.length < 4
        ? " (a member's options come in the order =instance, proto, type, transport)"
        : "",
    );
  }
  return member(ctx, hostTok, hp.host, hp.port, instance, proto, reach, cluster, type);
}

/** Registers the member's server (router_add_server's checks) and makes the ClusterMember. */
function member(
  ctx: ParseContext,
  tok: Token,
  writtenHost: string,
  port: number,
  instance: string | undefined,
  proto: "tcp" | "udp",
  reach: Reach,
  cluster: string,
  type: ClusterType,
): ClusterMember {
  const key = `${proto}/${numericAddress(writtenHost) ?? `n:${writtenHost}`}/${port}`;
  const servers = ctx.state.servers;
  const known = servers.get(key);
  const host = known?.host ?? writtenHost;
  const display = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (known !== undefined) {
    const first = at(known.pos);
    if (known.instance === undefined && instance !== undefined) {
      ctx.fail(
        tok.pos,
        `cannot give ${display} the instance ${q(instance)}: it was defined without one at ${first}`,
      );
    }
    if (known.instance !== undefined && instance === undefined) {
      ctx.fail(
        tok.pos,
        `${display} was defined with instance ${q(known.instance)} at ${first}: give it that instance here too`,
      );
    }
    if (known.instance !== undefined && known.instance !== instance) {
      ctx.fail(
        tok.pos,
        `cannot give ${display} the instance ${q(instance!)}: it was defined with instance ${q(known.instance)} at ${first}`,
      );
    }
    // carbon-c-relay keeps the first definition's transport for every cluster naming the
    // server, silently; polymur asks for one.
    const was = serverReach.get(known);
    if (was !== undefined && schemeOf(was) !== schemeOf(reach)) {
      ctx.fail(
        tok.pos,
        `cannot make ${display} ${reachText(reach)} member: it was defined as ${reachText(was)} one at ${first} (one server, one transport: write it the same way everywhere)`,
      );
    }
    if (type === "any_of" || type === "failover") {
      ctx.fail(
        tok.pos,
        `cannot share ${display} with ${type} cluster ${q(cluster)}: it is already a member at ${first}`,
      );
    }
  } else {
    const entry: ServerEntry = { host, instance, pos: tok.pos };
    servers.set(key, entry);
    serverReach.set(entry, reach);
  }
  const address = instance === undefined ? display : `${display}=${instance}`;
  const spec = `${schemeOf(reach)}${address}`;
  try {
    parseDestination(spec);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    ctx.fail(tok.pos, `member ${q(tok.text)} cannot be a polymur destination: ${why}`);
  }
  return { host, port, instance, proto, spec, pos: tok.pos };
}
