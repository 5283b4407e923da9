// polymur: every role in one program (relay, gateway, proxy, control). `polymur`
// with no role, or `polymur relay`, runs a relay.
import { PolymurError } from "../../common/errors.ts";
import { versionLine } from "../../common/version.ts";
import { runRelay } from "./relay-command.ts";

const ROLES: Record<string, (argv: string[]) => Promise<void>> = {
  relay: runRelay,
  control: async (argv) => (await import("./control-command.ts")).runControl(argv),
  proxy: async (argv) => (await import("./proxy-command.ts")).runProxy(argv),
  gateway: async (argv) => (await import("./gateway-command.ts")).runGateway(argv),
};

const USAGE = `usage: polymur [relay] [options]     (polymur relay --help for the options; polymur --version)

Roles:
  relay    Graphite plaintext in over TCP/UDP, forwarded to destinations (default)
  control  the control plane: fleet state for polymurctl and managed nodes
  proxy    Graphite plaintext in, streamed to a gateway over HTTP/2 (batched, compressed, acknowledged)
  gateway  proxy streams in (API keys, TLS), forwarded to destinations like a relay`;

async function main(argv: string[]): Promise<void> {
  const first = argv[0];
  if (first === "--help" || first === "-h" || first === "help") {
    console.log(USAGE);
    return;
  }
  if (first === "--version" || first === "-V" || first === "version") {
    console.log(versionLine("polymur"));
    return;
  }
  if (first !== undefined && !first.startsWith("-")) {
    const role = ROLES[first];
    if (role === undefined) {
      console.error(`polymur: unknown role "${first}"\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    await role(argv.slice(1));
    return;
  }
  await runRelay(argv);
}

// A role that fails while starting may already hold listeners, connections or
// worker processes that would keep it alive without doing its job: exit.
main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof PolymurError) {
    console.error(`polymur: ${err.message}`);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
