import { Code, ConnectError } from "@connectrpc/connect";
import { UsageError } from "../../../common/errors.ts";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../../gen/grpc/health/v1/health_pb.ts";
import { ControlService } from "../../../gen/polymur/control/v1/control_pb.ts";
import { describeFailure } from "../client/failure.ts";
import {
  COMMON_HELP,
  COMMON_OPTIONS,
  commandArgs,
  EXIT,
  fail,
  printJson,
  runWithConnection,
} from "../client/index.ts";
import type { Command, CommandIO } from "../command.ts";
import { ageText, diskQueueSummary, sizeText } from "./nodes.ts";

const usage = `usage: polymurctl status

The control plane's health (gRPC health checking, no credential needed) and, with the
admin credential, a summary of the fleet: state version, destinations, routing
policies, API keys, and how many nodes are connected and up to date; when nodes
hold datapoints in their destinations' disk queues (--queue-dir), how many, and
the age of the oldest (polymurctl nodes ls shows where).
Exits 0 when the control plane is SERVING, 1 when it is not, 2 when it is
SERVING but refuses the admin credential (the health is still shown).

${COMMON_HELP}`;

const NO_OPTIONS = {} as const;

export const statusCommand: Command = {
  usage,
  options: { ...COMMON_OPTIONS, ...NO_OPTIONS },
  async run(argv: readonly string[], io: CommandIO): Promise<number> {
    const parsed = commandArgs("status", usage, argv, NO_OPTIONS, io);
    if (typeof parsed === "number") return parsed;
    const { values, positionals } = parsed;
    return runWithConnection("status", values, io, async (conn) => {
      if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
      const { server, json, token } = conn.settings;
      const h = await conn.client(Health, { auth: false }).check({ service: "" });
      const health = ServingStatus[h.status] ?? String(h.status);
      const exit = h.status === ServingStatus.SERVING ? EXIT.ok : EXIT.refused;
      if (token === "") {
        if (json) printJson(io, { server, health });
        else {
          io.stdout.write(`control plane  ${server}  ${health}\n`);
          io.stdout.write("(set POLYMUR_ADMIN_TOKEN for the state and the nodes)\n");
        }
        return exit;
      }
      const c = conn.client(ControlService);
      const fleet = Promise.all([
        c.listDestinations({}),
        c.getRouting({}),
        c.listKeys({}),
        c.listNodes({}),
      ]);
      const got = await fleet.then(
        (answers) => ({ answers, err: null }),
        (err: unknown) => ({ answers: null, err }),
      );
      if (got.answers === null) {
        const err = got.err;
        const code = err instanceof ConnectError ? err.code : undefined;
        if (code !== Code.Unauthenticated && code !== Code.PermissionDenied) throw err;
        // The control plane answers (its health says so): the credential is
        // what is wrong, a configuration error (2), not "not serving" (1).
        if (!json) io.stdout.write(`control plane  ${server}  ${health}\n`);
        const f = describeFailure(err, server);
        return fail("status", io, { ...f, exit: exit === EXIT.ok ? EXIT.usage : exit }, json);
      }
      const [d, r, k, n] = got.answers;
      const version = d.version;
      const connected = n.nodes.filter((x) => x.connected);
      const current = connected.filter((x) => x.appliedVersion === version).length;
      // As the nodes last reported it; absent when no disk queue holds a datapoint.
      const disk = diskQueueSummary(n.nodes);
      const summary = {
        server,
        health,
        version,
        destinations: d.destinations.length,
        routingPolicies: r.routing.length,
        keys: k.keys.length,
        nodes: {
          connected: connected.length,
          current,
          behind: connected.length - current,
          disconnected: n.nodes.length - connected.length,
        },
        ...(disk === null ? {} : { diskQueues: disk }),
      };
      if (json) {
        printJson(io, summary);
        return exit;
      }
      const plural = (x: number, word: string) => `${x} ${word}${x === 1 ? "" : "s"}`;
      io.stdout.write(
        [
          `control plane  ${server}  ${health}`,
          `state          version ${version}: ${plural(summary.destinations, "destination")}, ${plural(summary.routingPolicies, "routing policy").replace("policys", "policies")}, ${plural(summary.keys, "API key")}`,
          `nodes          ${connected.length} connected (${current} at version ${version}, ${summary.nodes.behind} behind), ${summary.nodes.disconnected} disconnected`,
          ...(disk === null
            ? []
            : [
                `disk queues    ${plural(disk.datapoints, "datapoint")} (${sizeText(disk.bytes)}) waiting on disk, at ${plural(disk.destinations, "destination")} of ${plural(disk.nodes, "node")}; oldest ${ageText(disk.oldestQueuedSeconds)}`,
              ]),
          "",
        ].join("\n"),
      );
      return exit;
    });
  },
};
