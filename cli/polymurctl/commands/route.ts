import type { MessageInitShape } from "@bufbuild/protobuf";
import { PolymurError, UsageError } from "../../../common/errors.ts";
import { FAST_OK, validateFast, validateSlow } from "../../../dataplane/ingest/line-validator.ts";
import { RulesError } from "../../../dataplane/route/rules/rules-config.ts";
import { loadRules } from "../../../dataplane/route/rules/rules-files.ts";
import {
  RulesProgram,
  type RulesVisitor,
  targetText,
} from "../../../dataplane/route/rules/rules-program.ts";
import {
  ControlService,
  Distribution,
  type Routing,
  type RoutingSchema,
} from "../../../gen/polymur/control/v1/control_pb.ts";
import {
  COMMON_HELP,
  commandArgs,
  EXIT,
  expectedVersion,
  fail,
  printJson,
  runWithConnection,
  scopeArg,
  scopeJson,
  scopeText,
  table,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";

const usage = `usage: polymurctl route set (--all | --group NAME) broadcast
       polymurctl route set (--all | --group NAME) hash-route [--hash ALGO] [--compat C]
                 [--replication N] [--diverse-replicas true|false] [--router R] [--normalize N]
       polymurctl route set --group NAME inherit
       polymurctl route show [--group NAME]
       polymurctl route test --rules relay.conf [--json]

How nodes spread datapoints over their destinations: broadcast (every destination gets
every datapoint) or hash-route (consistent hashing, bit-exact with carbon or
carbon-c-relay). A group's policy overrides the fleet's (--all); "inherit" drops the
group's own policy. Nodes of a group without either use broadcast.
"show --group NAME" prints the policy that group's nodes apply.

"test" needs no control plane: it reads Graphite lines on stdin and prints, per line and
in order, what the rules of a carbon-c-relay relay.conf do with it, as \`carbon-c-relay -t\`
with every member up: the cluster members it goes to and under which name, whether it
is blackholed, the metrics aggregates make of it, and whether it is dropped (by a
validate clause, or as an invalid line: the reason the relay would count). With --json,
one object per line: {"line", "sends": [{"cluster", "destination", "metric"}],
"blackholed", "aggregates": [{"cluster", "metric"}], "dropped"}. An error in the rules
file prints file:line:column and exits 2.

hash-route options (as \`polymur relay\` and \`polymurctl hash\`):
  --hash carbon_ch|fnv1a_ch|mmh3_ch|jump_fnv1a_ch   default carbon_ch (mmh3_ch for fast-hashing)
  --compat carbon|carbon-c-relay                    default carbon
  --replication N                                   default 1
  --diverse-replicas true|false                     default true with carbon, false otherwise
  --router consistent-hashing|fast-hashing          default consistent-hashing
  --normalize none|sorted-tags|cleanse              default none
  --expected-version N                              change only if the state is at version N

${COMMON_HELP}`;

const OPTIONS = {
  all: { type: "boolean" },
  group: { type: "string" },
  hash: { type: "string" },
  compat: { type: "string" },
  replication: { type: "string" },
  "diverse-replicas": { type: "string" },
  router: { type: "string" },
  normalize: { type: "string" },
  "expected-version": { type: "string" },
  rules: { type: "string" },
} as const;

function distributionName(d: Distribution | undefined): string {
  return d === Distribution.HASH_ROUTE
    ? "hash-route"
    : d === Distribution.BROADCAST
      ? "broadcast"
      : "unset";
}

function routingJson(r: Routing | undefined) {
  const hash = r?.distribution === Distribution.HASH_ROUTE;
  return {
    distribution: distributionName(r?.distribution),
    ...(hash
      ? {
          hash: r?.hash,
          compat: r?.compat,
          replication: r?.replication,
          diverseReplicas: r?.diverseReplicas,
          router: r?.router,
          normalize: r?.normalize,
        }
      : {}),
  };
}

const HEADER = [
  "SCOPE",
  "DISTRIBUTION",
  "HASH",
  "COMPAT",
  "REPLICATION",
  "DIVERSE",
  "ROUTER",
  "NORMALIZE",
];

function row(scope: string, r: Routing | undefined): string[] {
  if (r?.distribution !== Distribution.HASH_ROUTE) {
    return [scope, distributionName(r?.distribution), "-", "-", "-", "-", "-", "-"];
  }
  return [
    scope,
    "hash-route",
    r.hash,
    r.compat,
    String(r.replication),
    String(r.diverseReplicas),
    r.router,
    r.normalize,
  ];
}

export const routeCommand: Command = {
  usage,
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("route", usage, argv, OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const [sub, ...args] = positionals;
    if (sub === "test") return routeTest(args, values.rules, values.json === true, io);
    return runWithConnection(`route ${sub ?? ""}`.trim(), values, io, async (conn) => {
      const json = conn.settings.json;
      if (sub === "set") {
        const scope = scopeArg(values, true)!;
        const [mode, extra] = args;
        if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
        const hashFlags = [
          "hash",
          "compat",
          "replication",
          "diverse-replicas",
          "router",
          "normalize",
        ] as const;
        const given = hashFlags.filter((f) => values[f] !== undefined);
        let routing: MessageInitShape<typeof RoutingSchema>;
        if (mode === "broadcast" || mode === "inherit") {
          if (given.length > 0) throw new UsageError(`--${given[0]} applies to hash-route only`);
          if (mode === "inherit" && scope.case === "all") {
            throw new UsageError("only a group can inherit: route set --group NAME inherit");
          }
          routing = {
            distribution: mode === "broadcast" ? Distribution.BROADCAST : Distribution.UNSPECIFIED,
          };
        } else if (mode === "hash-route") {
          const compat = values.compat ?? "carbon";
          const rep = values.replication ?? "1";
          if (!/^\d+$/.test(rep))
            throw new UsageError(`--replication must be a whole number; got "${rep}"`);
          const diverse = values["diverse-replicas"] ?? (compat === "carbon" ? "true" : "false");
          if (diverse !== "true" && diverse !== "false") {
            throw new UsageError(`--diverse-replicas must be true or false; got "${diverse}"`);
          }
          routing = {
            distribution: Distribution.HASH_ROUTE,
            hash: values.hash ?? "",
            compat,
            replication: Number(rep),
            diverseReplicas: diverse === "true",
            router: values.router ?? "",
            normalize: values.normalize ?? "",
          };
        } else {
          throw new UsageError(
            mode === undefined
              ? "route set needs broadcast, hash-route or inherit"
              : `unknown distribution "${mode}" (broadcast, hash-route, inherit)`,
          );
        }
        const e = expectedVersion(values["expected-version"]);
        const r = await conn.client(ControlService).setRouting({
          scope: { target: scope },
          routing,
          ...(e === undefined ? {} : { expectedVersion: e }),
        });
        const where = scope.case === "all" ? "all nodes" : `group ${scope.value}`;
        if (json)
          printJson(io, { version: r.version, scope: scopeJson({ target: scope }), routing: mode });
        else {
          io.stdout.write(
            mode === "inherit"
              ? `${where} now follows the fleet-wide routing (state version ${r.version})\n`
              : `${where}: ${mode} (state version ${r.version})\n`,
          );
        }
        return EXIT.ok;
      }
      if (sub === "show" || sub === "ls") {
        if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
        if (values.all === true)
          throw new UsageError("route show shows every scope; --group NAME for one group");
        const r = await conn.client(ControlService).getRouting({});
        if (values.group !== undefined) {
          const g = values.group;
          const own = r.routing.find(
            (x) => x.scope?.target.case === "group" && x.scope.target.value === g,
          );
          const fleet = r.routing.find((x) => x.scope?.target.case === "all");
          const [from, routing] = own
            ? [`group ${g}`, own.routing]
            : fleet
              ? ["all (inherited)", fleet.routing]
              : ["default", { distribution: Distribution.BROADCAST } as Routing];
          if (json)
            printJson(io, { version: r.version, group: g, from, routing: routingJson(routing) });
          else
            io.stdout.write(table(HEADER, [row(from, routing)]) + `(state version ${r.version})\n`);
          return EXIT.ok;
        }
        if (json) {
          printJson(io, {
            version: r.version,
            routing: r.routing.map((x) => ({
              scope: scopeJson(x.scope),
              ...routingJson(x.routing),
            })),
          });
        } else if (r.routing.length === 0) {
          io.stdout.write(
            `no routing policy: every node broadcasts (state version ${r.version})\n`,
          );
        } else {
          io.stdout.write(
            table(
              HEADER,
              r.routing.map((x) => row(scopeText(x.scope), x.routing)),
            ),
          );
          io.stdout.write(`(state version ${r.version})\n`);
        }
        return EXIT.ok;
      }
      throw new UsageError(
        sub === undefined
          ? "route needs set, show or test (see --help)"
          : `unknown route command "${sub}" (set, show, test)`,
      );
    });
  },
};

// ---------------------------------------------------------------------------------------
// route test: a relay.conf's decisions for lines on stdin, without a control plane.

/** A latin1 (one char per byte) name as text (its bytes read as UTF-8). */
function utf8Text(latin1: string): string {
  for (let i = 0; i < latin1.length; i++) {
    if (latin1.charCodeAt(i) >= 0x80) return Buffer.from(latin1, "latin1").toString("utf8");
  }
  return latin1;
}

/** What the rules do with one line: the visitor that collects it, and its --json shape. */
class LineTrace implements RulesVisitor {
  readonly #program: RulesProgram;
  readonly #destinations: readonly string[];
  sends: { cluster: string; destination: string; metric: string }[] = [];
  blackholed = false;
  aggregates: { cluster: string | null; metric: string }[] = [];
  dropped: string | null = null;

  constructor(program: RulesProgram) {
    this.#program = program;
    this.#destinations = program.targets.map(targetText);
  }

  reset(): void {
    this.sends = [];
    this.blackholed = false;
    this.aggregates = [];
    this.dropped = null;
  }

  send(cluster: string, target: number, metric: string): void {
    this.sends.push({
      cluster,
      destination: this.#destinations[target]!,
      metric: utf8Text(metric),
    });
  }

  blackhole(): void {
    this.blackholed = true;
  }

  aggregate(aggregate: number, _compute: number, metric: string): void {
    const to = this.#program.aggregates[aggregate]!.sendTo;
    const name = utf8Text(metric);
    if (to === null) this.aggregates.push({ cluster: null, metric: name });
    else if (to.blackhole) this.aggregates.push({ cluster: "blackhole", metric: name });
    else for (const cluster of to.clusters) this.aggregates.push({ cluster, metric: name });
  }

  drop(reason: "validate"): void {
    this.dropped = reason;
  }

  up(): boolean {
    return true;
  }

  json(line: string): string {
    const { sends, blackholed, aggregates, dropped } = this;
    return `${JSON.stringify({ line, sends, blackholed, aggregates, dropped })}\n`;
  }

  text(line: string): string {
    let out = `${line}\n`;
    for (const s of this.sends) out += `    send ${s.cluster} ${s.destination} ${s.metric}\n`;
    for (const a of this.aggregates) {
      out += `    aggregate ${a.metric} -> ${a.cluster ?? "(routed by the rules)"}\n`;
    }
    if (this.blackholed) out += "    blackholed\n";
    if (this.dropped !== null) out += `    dropped: ${this.dropped}\n`;
    else if (this.sends.length === 0 && this.aggregates.length === 0 && !this.blackholed) {
      out += "    nothing matched\n";
    }
    return out;
  }
}

const SP = 0x20;
const TAB = 0x09;

/** Routes the line in buf[start, end) (no newline) into `trace`, as a relay would after ingest. */
function traceLine(
  program: RulesProgram,
  trace: LineTrace,
  buf: Buffer,
  start: number,
  end: number,
): void {
  trace.reset();
  let line = buf;
  if (validateFast(buf, start, end) !== FAST_OK) {
    const r = validateSlow(buf.subarray(start, end), Math.floor(Date.now() / 1000));
    if (!r.ok) {
      trace.dropped = r.reason;
      return;
    }
    line = Buffer.from(r.line, "utf8");
    start = 0;
    end = line.length;
  }
  let sep = start;
  while (sep < end && line[sep] !== SP && line[sep] !== TAB) sep++;
  program.route(line.toString("latin1", start, sep), line.toString("latin1", sep, end), trace);
}

/** Writes `text` to `out`; resolves when it may take more ('drain', or an error such as EPIPE). */
function write(out: CommandIO["stdout"], text: string): Promise<void> | undefined {
  if (text === "" || out.write(text)) return undefined;
  return new Promise<void>((resolve) => {
    const done = (): void => {
      for (const e of ["drain", "error", "close"]) out.off(e, done);
      resolve();
    };
    for (const e of ["drain", "error", "close"]) out.on(e, done);
  });
}

async function routeTest(
  args: readonly string[],
  rulesPath: string | undefined,
  json: boolean,
  io: CommandIO,
): Promise<number> {
  const name = "route test";
  if (rulesPath === undefined) {
    return fail(
      name,
      io,
      { exit: EXIT.usage, message: "route test needs --rules FILE (see --help)" },
      json,
    );
  }
  if (args.length > 0) {
    return fail(name, io, { exit: EXIT.usage, message: `unexpected argument "${args[0]}"` }, json);
  }
  let program: RulesProgram;
  try {
    program = RulesProgram.compile(await loadRules(rulesPath));
  } catch (err) {
    if (!(err instanceof Error)) throw err;
    const polymurCode = err instanceof PolymurError ? err.code : undefined;
    const message =
      err instanceof RulesError || polymurCode !== undefined
        ? err.message
        : `${rulesPath}: ${err.message}`;
    return fail(
      name,
      io,
      { exit: EXIT.usage, message, ...(polymurCode === undefined ? {} : { polymurCode }) },
      json,
    );
  }
  const trace = new LineTrace(program);
  let closed = false;
  io.stdout.on("error", () => {
    closed = true; // EPIPE (`| head`): stop quietly
  });
  let text = ""; // written in chunks of about 64 KiB
  const emit = (buf: Buffer, start: number, end: number): void => {
    if (end > start && buf[end - 1] === 0x0d) end--; // CRLF
    traceLine(program, trace, buf, start, end);
    const line = buf.toString("utf8", start, end);
    text += json ? trace.json(line) : trace.text(line);
  };
  let carry: Buffer | null = null;
  for await (const chunk of io.stdin as AsyncIterable<Buffer>) {
    if (closed) break;
    const buf: Buffer = carry === null ? chunk : Buffer.concat([carry, chunk]);
    carry = null;
    let start = 0;
    for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10, start)) {
      emit(buf, start, nl);
      start = nl + 1;
      if (text.length >= 65536) {
        await write(io.stdout, text);
        text = "";
      }
    }
    if (start < buf.length) carry = Buffer.from(buf.subarray(start)); // a copy: don't pin the chunk
  }
  if (carry !== null && !closed) emit(carry, 0, carry.length);
  if (!closed) await write(io.stdout, text);
  return EXIT.ok;
}
