import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import { parseArgs } from "node:util";
import { ErrorCode, PolymurError, UsageError } from "../../../common/errors.ts";
import {
  type DestinationSpec,
  parseDestination,
} from "../../../dataplane/forward/destination-spec.ts";
import {
  createHashRouter,
  type HashRouter,
  type HashRouterOptions,
} from "../../../dataplane/route/hash/hash-router.ts";
import { checkArgv } from "../client/args.ts";
import { EXIT } from "../client/exit.ts";
import { fail, printJson, table } from "../client/output.ts";
import type { Command, CommandIO } from "../command.ts";
import {
  RING_ALIASES,
  RING_CHOICES,
  RING_OPTIONS,
  replicationArg,
  ringOptions,
} from "./hash-ring-options.ts";
import { RingMoves } from "./ring-moves.ts";

/**
 * `polymurctl hash moves`: what a hash ring change does to a sample of metric
 * names — how many move, and per destination how many it loses and gains —
 * computed with the rings the relays build before and after the same change.
 */

const usage = `usage: polymurctl hash moves [options] DEST... [--add DEST]... [--remove DEST]...
                 [--replication-to N]
       polymurctl hash moves [options] --from DEST,... --to DEST,... [--replication-to N]

For a sample of metric names, how many change destinations when a hash ring changes
(destinations added or removed, replication changed), and per destination how many it
loses and gains. The rings are built by the code a relay runs (the same as
\`polymurctl hash\`), each from its whole configuration, as a relay does when it applies a
new one (SIGHUP, the line API, the control plane) and as carbon-relay and carbon-c-relay
do when restarted with it: the answer the relays give after the change.

The ring before: DEST... as \`polymurctl hash\` takes them, or --from with a comma-separated
list as \`polymur relay --destinations\` takes it. The ring after: --to, or the ring before
with each --remove taken out and each --add appended at the end, in the order given (as
the line API's putdest and \`polymurctl dest add\` append; the order matters to carbon's
ring). --replication-to changes the replication; the other ring options apply to both.

Names come from --names FILE, or stdin: one metric name or one Graphite line per line,
the name being its first field (as a relay takes it: leading blanks skipped, cut at the
first space or tab); blank lines are skipped, a name seen twice is counted once.

A name moves when the set of destinations it goes to changes (replicas only re-ordered do
not move it); it leaves a destination when one it went to no longer gets it (a name that
only gains one, as with a higher replication, moves without leaving). Prints the names,
how many move and how many leave a destination, then per destination (kept, added or
removed) the names it holds before and after, and those it loses and gains. With --json,
one JSON object, which also lists every name that moves:
  {"names": N, "lines": L, "moved": M, "share": M/N, "leaving": K,
   "from": {"destinations": [...], "replication": R}, "to": {...},
   "destinations": [{"destination", "change", "before", "after", "lost", "gained"}],
   "moves": [{"name", "from": [DEST, ...], "to": [DEST, ...]}]}
destinations written as given, primary first.

options:
  --from DEST,...          the ring before (instead of DEST...)
  --to DEST,...            the ring after
  --add DEST               a destination added (repeatable; a comma-separated list too)
  --remove DEST            a destination removed (repeatable; a comma-separated list too)
  --replication-to N       the replication after (default: --replication's)
  --names FILE             the metric names ("-" or none: stdin)
  --json                   one JSON object on stdout
  --compat, --hash, --replication, --diverse-replicas, --router, --hash-normalize
                           the ring options of \`polymurctl hash\` (see its --help)
  -h, --help               this help

Exits 2 on bad usage and 1 when either ring is a configuration the chosen reference
rejects, with a one-line reason on stderr (and {"error": {...}} on stdout with --json).
Not modelled: --eject-after (carbon's DYNAMIC_ROUTER), which takes a dead destination
out of a running ring.`;

/** `polymurctl hash moves`'s own options (and the ring options of `polymurctl hash`). */
export const MOVES_OPTIONS = {
  from: { type: "string" },
  to: { type: "string" },
  add: { type: "string", multiple: true },
  remove: { type: "string", multiple: true },
  "replication-to": { type: "string" },
  names: { type: "string" },
  json: { type: "boolean" },
} as const;

const OPTIONS = {
  ...RING_OPTIONS,
  ...MOVES_OPTIONS,
  help: { type: "boolean", short: "h" },
} as const;

const NAME = "hash moves";

/** The two rings' configurations, as the command line gives them. */
interface RingChange {
  before: DestinationSpec[];
  after: DestinationSpec[];
  options: HashRouterOptions;
  afterOptions: HashRouterOptions;
  names: string | undefined;
  json: boolean;
}

/** A list of destinations (`a:1,b:2`, or whitespace-separated); duplicates are left to the ring. */
function destinationList(text: string): DestinationSpec[] {
  return text
    .split(/[\s,]+/)
    .filter((p) => p !== "")
    .map((p) => parseDestination(p));
}

function parseChange(argv: readonly string[], notes: string[]): RingChange | "help" {
  const checked = checkArgv("polymurctl hash moves", argv, OPTIONS, {
    aliases: RING_ALIASES,
    choices: RING_CHOICES,
  });
  notes.push(...checked.notes);
  const { values, positionals } = parseArgs({
    args: checked.argv,
    allowPositionals: true,
    strict: true,
    options: OPTIONS,
  });
  if (values.help === true) return "help";
  const options = ringOptions(values);
  if (values.from !== undefined && positionals.length > 0) {
    throw new UsageError(
      `the ring before is given twice: --from and "${positionals[0]}" (see --help)`,
    );
  }
  const before =
    values.from !== undefined
      ? destinationList(values.from)
      : positionals.map((d) => parseDestination(d));
  if (before.length === 0) throw new UsageError("no destinations given (see --help)");
  const adds = (values.add ?? []).flatMap(destinationList);
  const removes = (values.remove ?? []).flatMap(destinationList);
  const replicationTo = values["replication-to"];
  if (values.to !== undefined && (adds.length > 0 || removes.length > 0)) {
    throw new UsageError("--to gives the whole ring after: not with --add or --remove");
  }
  if (values.to === undefined && adds.length === 0 && removes.length === 0) {
    if (replicationTo === undefined) {
      throw new UsageError("no change given: --to, --add, --remove or --replication-to");
    }
  }
  let after: DestinationSpec[];
  if (values.to !== undefined) {
    after = destinationList(values.to);
    if (after.length === 0) throw new UsageError("--to lists no destinations");
  } else {
    after = [...before];
    for (const r of removes) {
      const i = after.findIndex((d) => d.id === r.id);
      if (i < 0) throw new UsageError(`--remove ${r.spec}: not in the ring`);
      after.splice(i, 1);
    }
    for (const a of adds) {
      if (after.some((d) => d.id === a.id)) {
        throw new UsageError(`--add ${a.spec}: already in the ring`);
      }
      after.push(a);
    }
    if (after.length === 0) throw new UsageError("--remove takes every destination out");
  }
  const afterOptions = { ...options };
  if (replicationTo !== undefined) {
    afterOptions.replication = replicationArg("--replication-to", replicationTo);
  }
  return { before, after, options, afterOptions, names: values.names, json: values.json === true };
}

/** The two rings; a PolymurError (HashConfig) says which one the reference rejects. */
function buildRings(c: RingChange): { before: HashRouter; after: HashRouter } {
  const build = (
    which: string,
    members: DestinationSpec[],
    options: HashRouterOptions,
  ): HashRouter => {
    try {
      return createHashRouter(members, options);
    } catch (err) {
      if (err instanceof PolymurError && err.code === ErrorCode.HashConfig) {
        throw new PolymurError(err.code, `the ring ${which}: ${err.message}`);
      }
      throw err;
    }
  };
  return {
    before: build("before", c.before, c.options),
    after: build("after", c.after, c.afterOptions),
  };
}

const SP = 0x20;
const TAB = 0x09;

/** A name's bytes in buf[start, end) (a line without its newline), or null for a blank line. */
function nameBounds(buf: Uint8Array, start: number, end: number): [number, number] | null {
  let s = start;
  while (s < end && (buf[s] === SP || (buf[s]! >= 0x09 && buf[s]! <= 0x0d))) s++;
  if (s === end) return null;
  let e = s;
  while (e < end && buf[e] !== SP && buf[e] !== TAB && buf[e] !== 0x0d) e++;
  return [s, e];
}

/** A latin1 string (one char per byte) of UTF-8 bytes, as text. */
function utf8Text(latin1: string): string {
  for (let i = 0; i < latin1.length; i++) {
    if (latin1.charCodeAt(i) >= 0x80) return Buffer.from(latin1, "latin1").toString("utf8");
  }
  return latin1;
}

/** One name that moves, for --json. */
interface Move {
  name: string;
  from: string[];
  to: string[];
}

/** Reads the names and counts them into `moves`; resolves to the number of lines read. */
async function countNames(input: Readable, moves: RingMoves, keep: Move[] | null): Promise<number> {
  const seen = new Set<string>();
  let lines = 0;
  const take = (buf: Buffer, start: number, end: number): void => {
    lines++;
    const b = nameBounds(buf, start, end);
    if (b === null) return;
    const key = buf.toString("latin1", b[0], b[1]);
    if (seen.has(key)) return;
    seen.add(key);
    if (moves.add(buf, b[0], b[1]) && keep !== null) {
      keep.push({ name: utf8Text(key), from: moves.from(), to: moves.to() });
    }
  };
  let carry: Buffer | null = null;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    const buf: Buffer = carry === null ? chunk : Buffer.concat([carry, chunk]);
    carry = null;
    let start = 0;
    for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10, start)) {
      take(buf, start, nl);
      start = nl + 1;
    }
    if (start < buf.length) carry = Buffer.from(buf.subarray(start)); // a copy: don't pin the chunk
  }
  if (carry !== null) take(carry, 0, carry.length);
  return lines;
}

function percent(share: number): string {
  return `${(share * 100).toFixed(2)}%`;
}

/** Prints the counts (a summary line and a table, or one JSON object). */
function report(
  rings: { before: HashRouter; after: HashRouter },
  moves: RingMoves,
  lines: number,
  keep: Move[] | null,
  io: CommandIO,
): void {
  const ring = (r: HashRouter) => ({
    destinations: r.members.map((d) => d.spec),
    replication: r.replication,
  });
  if (keep !== null) {
    printJson(io, {
      names: moves.names,
      lines,
      moved: moves.moved,
      share: moves.share,
      leaving: moves.leaving,
      from: ring(rings.before),
      to: ring(rings.after),
      destinations: moves.members,
      moves: keep,
    });
    return;
  }
  const counted = lines === moves.names ? "" : ` (of ${lines} lines)`;
  const leaving = moves.names === 0 ? 0 : moves.leaving / moves.names;
  io.stdout.write(
    `${moves.names} names${counted}: ${moves.moved} move (${percent(moves.share)}), ` +
      `${moves.leaving} leave a destination (${percent(leaving)})\n`,
  );
  io.stdout.write(
    table(
      ["DESTINATION", "CHANGE", "BEFORE", "AFTER", "LOST", "GAINED"],
      moves.members.map((m) => [
        m.destination,
        m.change,
        String(m.before),
        String(m.after),
        String(m.lost),
        String(m.gained),
      ]),
    ),
  );
}

export const hashMovesCommand: Command = {
  usage,
  options: OPTIONS,
  choices: RING_CHOICES,
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    let change: RingChange;
    let rings: { before: HashRouter; after: HashRouter };
    let json = argv.includes("--json");
    try {
      const notes: string[] = [];
      const parsed = parseChange(argv, notes);
      for (const note of notes) io.stderr.write(`polymurctl ${NAME}: ${note}\n`);
      if (parsed === "help") {
        io.stdout.write(`${usage}\n`);
        return EXIT.ok;
      }
      change = parsed;
      json = change.json;
      rings = buildRings(change);
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // A configuration the reference rejects: 1. Bad flags or destination syntax: 2.
      const config = err instanceof PolymurError && err.code === ErrorCode.HashConfig;
      const polymurCode = err instanceof PolymurError ? err.code : undefined;
      return fail(
        NAME,
        io,
        { exit: config ? 1 : EXIT.usage, message, ...(polymurCode ? { polymurCode } : {}) },
        json,
      );
    }
    let input: Readable = io.stdin;
    if (change.names !== undefined && change.names !== "-") {
      input = createReadStream(change.names);
    }
    const moves = new RingMoves(rings.before, rings.after);
    const keep = change.json ? [] : null;
    let lines: number;
    try {
      lines = await countNames(input, moves, keep);
    } catch (err) {
      const message = `cannot read ${change.names}: ${(err as Error).message}`;
      return fail(NAME, io, { exit: EXIT.usage, message }, change.json);
    }
    report(rings, moves, lines, keep, io);
    return EXIT.ok;
  },
};
