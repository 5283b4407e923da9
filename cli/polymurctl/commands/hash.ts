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
import type { Command, CommandIO } from "../command.ts";
import { hashMovesCommand, MOVES_OPTIONS } from "./hash-moves.ts";
import { RING_ALIASES, RING_CHOICES, RING_OPTIONS, ringOptions } from "./hash-ring-options.ts";

const usage = `usage: polymurctl hash [options] DEST...
       polymurctl hash moves [options] DEST... [--add DEST]... [--remove DEST]...
                 [--replication-to N]
       polymurctl hash moves [options] --from DEST,... --to DEST,... [--replication-to N]

Reads metric names on stdin, one per line (UTF-8; a line is cut at its first space, so
whole Graphite lines work too; blank lines are skipped), and prints one line per name:
  <metric> <dest1>[,<dest2>...]
primary first, each destination written as given on the command line.

DEST is host:port, host:port:instance (carbon) or host:port=instance (carbon-c-relay);
IPv6 as [addr]:port. Order matters: it is the DESTINATIONS / cluster member order.

options:
  --compat carbon|carbon-c-relay        reference to be bit-exact with (default carbon)
  --hash ALGO                           carbon_ch, fnv1a_ch, mmh3_ch (carbon) or
                                        jump_fnv1a_ch (carbon-c-relay); default carbon_ch,
                                        or mmh3_ch with --router fast-hashing
  --replication N                       destinations per metric (default 1)
  --diverse-replicas true|false         carbon DIVERSE_REPLICAS (default true under carbon,
                                        false under carbon-c-relay)
  --router consistent-hashing|fast-hashing
                                        carbon RELAY_METHOD (default consistent-hashing)
  --hash-normalize none|sorted-tags|cleanse
                                        rewrite the key before hashing: carbon's
                                        TAG_RELAY_NORMALIZED, or carbon-c-relay's live
                                        cleansing (default none)
  -h, --help                            this help

The options are named as \`polymur relay\` names them; --algo and --normalize, their
old names here, still work (with a note on stderr).

Exits 2 on bad usage and 1 on a configuration the chosen reference rejects, with a
one-line reason on stderr.

"moves" reads names (stdin, or --names FILE) and tells how many change destinations when
the ring changes (destinations added or removed, replication changed), per destination
the names lost and gained, and with --json which names move: see
\`polymurctl hash moves --help\`.`;

/** The options, as `polymur relay` and `polymurctl route set` name them. */
const OPTIONS = {
  ...RING_OPTIONS,
  help: { type: "boolean", short: "h" },
} as const;

function parseOptions(
  argv: readonly string[],
  notes: string[],
): { options: HashRouterOptions; dests: string[] } | "help" {
  const checked = checkArgv("polymurctl hash", argv, OPTIONS, {
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
  // checkArgv has checked each value against its choices.
  const options = ringOptions(values);
  if (positionals.length === 0) throw new UsageError("no destinations given (see --help)");
  return { options, dests: positionals };
}

/** Writes through a 64 KiB buffer, one `write` per full buffer, waiting for 'drain'. */
class OutputBuffer {
  readonly #out: CommandIO["stdout"];
  #buf = Buffer.allocUnsafe(65536);
  #len = 0;
  #closed = false;

  constructor(out: CommandIO["stdout"]) {
    this.#out = out;
    out.on("error", () => {
      this.#closed = true; // EPIPE (`| head`): stop quietly
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  hasRoom(n: number): boolean {
    return this.#len + n <= this.#buf.length;
  }

  put(src: Uint8Array, start: number, end: number): void {
    const buf = this.#buf;
    let at = this.#len;
    for (let i = start; i < end; i++) buf[at++] = src[i]!;
    this.#len = at;
  }

  /** Writes what is buffered; the next buffer has room for at least `need` bytes. */
  async flush(need: number): Promise<void> {
    const size = Math.max(65536, need);
    if (this.#len === 0 || this.#closed) {
      this.#len = 0;
      if (this.#buf.length < size) this.#buf = Buffer.allocUnsafe(size);
      return;
    }
    const chunk = this.#buf.subarray(0, this.#len);
    // The stream keeps `chunk` until it is written: hand it over, start a fresh buffer.
    this.#buf = Buffer.allocUnsafe(size);
    this.#len = 0;
    if (!this.#out.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.#out.off("drain", done);
          this.#out.off("error", done);
          this.#out.off("close", done);
          resolve();
        };
        this.#out.on("drain", done);
        this.#out.on("error", done);
        this.#out.on("close", done);
      });
    }
  }
}

/** The ` <dest1>,<dest2>\n` bytes for each route, built once per distinct route. */
class RouteText {
  readonly #specs: readonly string[];
  readonly #byNumber = new Map<number, Buffer>();
  readonly #byString = new Map<string, Buffer>();

  constructor(specs: readonly string[]) {
    this.#specs = specs;
  }

  get(route: Uint8Array, n: number): Buffer {
    if (n <= 5) {
      // Up to five 8-bit member indices and the count pack exactly into one double.
      let key = n;
      for (let i = 0; i < n; i++) key = key * 256 + route[i]!;
      let text = this.#byNumber.get(key);
      if (text === undefined) {
        text = this.#build(route, n);
        this.#byNumber.set(key, text);
      }
      return text;
    }
    const key = route.subarray(0, n).join(",");
    let text = this.#byString.get(key);
    if (text === undefined) {
      text = this.#build(route, n);
      this.#byString.set(key, text);
    }
    return text;
  }

  #build(route: Uint8Array, n: number): Buffer {
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(this.#specs[route[i]!]!);
    return Buffer.from(` ${parts.join(",")}\n`);
  }
}

/** Key bounds of one input line: [start, keyEnd), or keyEnd = -1 for a line to skip. */
function keyEndOf(buf: Uint8Array, start: number, end: number): number {
  let keyEnd = -1;
  let blank = true;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    if (c === 0x20) {
      if (keyEnd < 0) keyEnd = i;
    } else if (c < 0x09 || c > 0x0d) {
      blank = false;
    }
    if (!blank && keyEnd >= 0) break;
  }
  if (blank) return -1; // empty or whitespace only: carbon-c-relay -t skips these too
  return keyEnd < 0 ? end : keyEnd;
}

async function hashStream(
  router: HashRouter,
  specs: readonly string[],
  io: CommandIO,
): Promise<void> {
  const out = new OutputBuffer(io.stdout);
  const text = new RouteText(specs);
  const routes = new Uint8Array(Math.max(1, router.maxRoutes));
  let carry: Buffer | null = null;

  for await (const chunk of io.stdin as AsyncIterable<Buffer>) {
    if (out.closed) break;
    let buf: Buffer = chunk;
    if (carry !== null) {
      buf = Buffer.concat([carry, chunk]);
      carry = null;
    }
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(10, start);
      if (nl < 0) break;
      const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl; // CRLF
      const keyEnd = keyEndOf(buf, start, end);
      if (keyEnd >= 0) {
        const n = router.route(buf, start, keyEnd, routes);
        const dests = text.get(routes, n);
        const need = keyEnd - start + dests.length;
        if (!out.hasRoom(need)) await out.flush(need);
        out.put(buf, start, keyEnd);
        out.put(dests, 0, dests.length);
      }
      start = nl + 1;
    }
    if (start < buf.length) carry = Buffer.from(buf.subarray(start)); // a copy: don't pin the chunk
  }
  if (carry !== null && !out.closed) {
    const end = carry[carry.length - 1] === 0x0d ? carry.length - 1 : carry.length;
    const keyEnd = keyEndOf(carry, 0, end);
    if (keyEnd >= 0) {
      const n = router.route(carry, 0, keyEnd, routes);
      const dests = text.get(routes, n);
      if (!out.hasRoom(keyEnd + dests.length)) await out.flush(keyEnd + dests.length);
      out.put(carry, 0, keyEnd);
      out.put(dests, 0, dests.length);
    }
  }
  await out.flush(0);
}

export const hashCommand: Command = {
  usage,
  // What run takes, its subcommand's options included (completion offers them).
  options: { ...OPTIONS, ...MOVES_OPTIONS },
  choices: RING_CHOICES,
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    // "moves" cannot be a destination (it has no port).
    if (argv[0] === "moves") return hashMovesCommand.run(argv.slice(1), io);
    let router: HashRouter;
    let dests: string[];
    try {
      const notes: string[] = [];
      const parsed = parseOptions(argv, notes);
      for (const note of notes) io.stderr.write(`polymurctl hash: ${note}\n`);
      if (parsed === "help") {
        io.stdout.write(`${usage}\n`);
        return 0;
      }
      dests = parsed.dests;
      const members: DestinationSpec[] = dests.map((d) => parseDestination(d));
      router = createHashRouter(members, parsed.options);
    } catch (err) {
      const message = (err instanceof Error ? err.message : String(err)).replaceAll("\n", " ");
      io.stderr.write(`polymurctl hash: ${message}\n`);
      // A configuration the reference rejects: 1. Bad flags or destination syntax: 2.
      return err instanceof PolymurError && err.code === ErrorCode.HashConfig ? 1 : 2;
    }
    await hashStream(router, dests, io);
    return 0;
  },
};
