import { ErrorCode, PolymurError } from "../../../common/errors.ts";

/**
 * A carbon-c-relay relay.conf as parsed (rules-parser.ts): plain data, so it
 * can be sent to worker processes and compared between reloads. Expressions
 * and replacement templates are kept as written (after relay.conf's own
 * quoting rules); rules-program.ts compiles them.
 */

/** Where something was written: 1-based line and column. */
export interface SourcePos {
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

/** An expression (POSIX ERE) as written, and where. */
export interface Expr {
  readonly source: string;
  readonly pos: SourcePos;
}

export type HashClusterType = "carbon_ch" | "fnv1a_ch" | "jump_fnv1a_ch";
export type ClusterType = "forward" | "any_of" | "failover" | HashClusterType | "file";

export interface ClusterMember {
  readonly host: string;
  readonly port: number;
  /** `=instance`, or undefined. */
  readonly instance: string | undefined;
  readonly proto: "tcp" | "udp";
  /**
   * The member as a polymur destination spec (`host:port` or
   * `host:port=instance`), after `tls://` (`transport plain ssl`, or written
   * so), `pickle://` or `pickle+tls://` when it is reached that way: the
   * notation of --destinations. Neither changes where a ring puts the
   * member: rings key members by host, port and instance.
   */
  readonly spec: string;
  readonly pos: SourcePos;
}

export interface Cluster {
  readonly name: string;
  readonly type: ClusterType;
  /** any_of useall (every member of a host name's addresses). */
  readonly useall: boolean;
  /** Hash clusters: replication (default 1). */
  readonly replication: number;
  /** Hash clusters: `dynamic`. */
  readonly dynamic: boolean;
  /** `file ip`: lines are written with the sender's address before them. */
  readonly fileIp: boolean;
  /** Network members (every type but file). */
  readonly members: readonly ClusterMember[];
  /** File members (type file). */
  readonly paths: readonly string[];
  readonly pos: SourcePos;
}

/** `send to` targets: cluster names, or the blackhole. */
export type Targets =
  | { readonly blackhole: true }
  | { readonly blackhole: false; readonly clusters: readonly string[] };

export interface MatchRule {
  readonly kind: "match";
  /** null for `match *`. */
  readonly exprs: readonly Expr[] | null;
  readonly validate: { readonly expr: Expr; readonly onFail: "log" | "drop" } | null;
  /** `route using EXPR`: the replacement whose result is the hash key. */
  readonly routeUsing: string | null;
  /** null when the match has no `send to`. */
  readonly sendTo: Targets | null;
  readonly stop: boolean;
  readonly pos: SourcePos;
}

export interface RewriteRule {
  readonly kind: "rewrite";
  readonly expr: Expr;
  /** The replacement template as written (`\1`, `\_1`, `\^1`, `\.1`, ...). */
  readonly into: string;
  readonly pos: SourcePos;
}

export type ComputeType =
  | "sum"
  | "count"
  | "max"
  | "min"
  | "average"
  | "median"
  | "percentile"
  | "variance"
  | "stddev";

export interface AggregateCompute {
  readonly type: ComputeType;
  /** For `percentileNN`: NN (0 < NN <= 100). */
  readonly percentile: number | null;
  /** The `write to` template. */
  readonly writeTo: string;
  readonly pos: SourcePos;
}

export interface AggregateRule {
  readonly kind: "aggregate";
  readonly exprs: readonly Expr[];
  /** Bucket width, seconds. */
  readonly every: number;
  /** Seconds after a bucket's end before it is written. */
  readonly expire: number;
  readonly timestamp: "start" | "middle" | "end";
  readonly computes: readonly AggregateCompute[];
  /** null: the produced metrics re-enter routing. */
  readonly sendTo: Targets | null;
  readonly stop: boolean;
  readonly pos: SourcePos;
}

export type Rule = MatchRule | RewriteRule | AggregateRule;

export interface StatisticsConfig {
  /** `submit every N seconds`, or null for the default. */
  readonly intervalSec: number | null;
  /** `reset counters after interval`. */
  readonly resetCounters: boolean;
  /** `prefix with STRING`, or null. */
  readonly prefix: string | null;
  /** `send to` / `send statistics to`, or null (routed like any metric). */
  readonly sendTo: Targets | null;
  readonly stop: boolean;
  readonly pos: SourcePos;
}

export interface Receptor {
  /** `[host]:port` for tcp/udp, a path for unix. */
  readonly address: string;
  readonly proto: "tcp" | "udp" | "unix";
  readonly pos: SourcePos;
}

/** `transport plain ssl PEM`: the block's receptors speak TLS. */
export interface ListenTls {
  /** One PEM file holding the certificate and its key, as carbon-c-relay takes it. */
  readonly pemFile: string;
  /** Where `ssl` was written. */
  readonly pos: SourcePos;
}

export interface ListenBlock {
  readonly receptors: readonly Receptor[];
  /** `transport plain ssl PEM`, or null for cleartext. */
  readonly tls: ListenTls | null;
  readonly pos: SourcePos;
}

export interface RulesConfig {
  /** The files read, the main one first, then includes in the order read. */
  readonly files: readonly string[];
  /** In the order written. */
  readonly clusters: readonly Cluster[];
  /** match, rewrite and aggregate rules in the order written. */
  readonly rules: readonly Rule[];
  readonly statistics: StatisticsConfig | null;
  readonly listen: readonly ListenBlock[];
}

/** A relay.conf that cannot be used: `file:line:column: message`. */
export class RulesError extends PolymurError {
  readonly pos: SourcePos;
  readonly detail: string;

  constructor(pos: SourcePos, detail: string) {
    const text = readable(detail);
    super(ErrorCode.Rules, `${pos.file}:${pos.line}:${pos.column}: ${text}`);
    this.name = "RulesError";
    this.pos = pos;
    this.detail = text;
  }
}

/**
 * A message that quotes the file: the rules are read one char per byte
 * (latin1), so quoted UTF-8 is shown as the text it is, where it decodes.
 */
function readable(detail: string): string {
  let high = false;
  for (let i = 0; i < detail.length; i++) {
    const c = detail.charCodeAt(i);
    if (c > 0xff) return detail;
    if (c >= 0x80) high = true;
  }
  if (!high) return detail;
  const utf8 = Buffer.from(detail, "latin1").toString("utf8");
  return utf8.includes("\ufffd") ? detail : utf8;
}
