import type { MessageInitShape } from "@bufbuild/protobuf";
import { UsageError } from "../../../common/errors.ts";
import {
  ControlService,
  Distribution,
  type Routing,
  type RoutingSchema,
} from "../../../gen/polymur/control/v1/control_pb.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  EXIT,
  expectedVersion,
  finishChange,
  normalizeWait,
  printJson,
  runWithConnection,
  scopeArg,
  scopeJson,
  scopeText,
  table,
  WAIT_HELP,
  WAIT_OPTION,
  waitTimeoutMs,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";
import { routeTest } from "./route-test.ts";

const usage = `usage: polymurctl route set (--all | --group NAME) broadcast [--wait [TIMEOUT]]
       polymurctl route set (--all | --group NAME) hash-route [--hash ALGO] [--compat C]
                 [--replication N] [--diverse-replicas true|false] [--router R]
                 [--hash-normalize N] [--wait [TIMEOUT]]
       polymurctl route set --group NAME inherit [--wait [TIMEOUT]]
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
  --hash-normalize none|sorted-tags|cleanse         default none (--normalize: its old name)
  --expected-version N                              change only if the state is at version N

set options:
${WAIT_HELP}

${COMMON_HELP}`;

const OPTIONS = {
  all: { type: "boolean" },
  group: { type: "string" },
  hash: { type: "string" },
  compat: { type: "string" },
  replication: { type: "string" },
  "diverse-replicas": { type: "string" },
  router: { type: "string" },
  "hash-normalize": { type: "string" },
  "expected-version": { type: "string" },
  rules: { type: "string" },
  ...WAIT_OPTION,
} as const;

const EXTRAS = {
  // route set said --normalize before the names were one vocabulary with polymur relay.
  aliases: { normalize: "hash-normalize" },
  choices: {
    hash: ["carbon_ch", "fnv1a_ch", "mmh3_ch", "jump_fnv1a_ch"],
    compat: ["carbon", "carbon-c-relay"],
    router: ["consistent-hashing", "fast-hashing"],
    "hash-normalize": ["none", "sorted-tags", "cleanse"],
    "diverse-replicas": ["true", "false"],
  },
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
  options: { ...COMMON_OPTIONS, ...OPTIONS },
  choices: EXTRAS.choices,
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("route", usage, normalizeWait(argv), OPTIONS, io, EXTRAS);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    const [sub, ...args] = positionals;
    if (sub === "test") return routeTest(args, values.rules, values.json === true, io);
    return runWithConnection(`route ${sub ?? ""}`.trim(), values, io, async (conn) => {
      const json = conn.settings.json;
      const waitMs = waitTimeoutMs(values.wait);
      if (waitMs !== undefined && sub !== "set") {
        throw new UsageError(`--wait is for changes (route set), not route ${sub ?? ""}`);
      }
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
          "hash-normalize",
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
            normalize: values["hash-normalize"] ?? "",
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
        if (!json) {
          io.stdout.write(
            mode === "inherit"
              ? `${where} now follows the fleet-wide routing (state version ${r.version})\n`
              : `${where}: ${mode} (state version ${r.version})\n`,
          );
        }
        return finishChange(
          "route set",
          io,
          conn,
          {
            version: r.version,
            group: scope.case === "group" ? scope.value : undefined,
            json: { version: r.version, scope: scopeJson({ target: scope }), routing: mode },
          },
          waitMs,
        );
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
