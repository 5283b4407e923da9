// polymur: every role in one program (relay, gateway, proxy, control). `polymur`
// with no role, or `polymur relay`, runs a relay.
import { closestName } from "../../common/option-suggest.ts";
import { versionLine } from "../../common/version.ts";
import { runRelay } from "./relay-command.ts";
import { startupErrorText } from "./role-args.ts";

const ROLES: Record<string, (argv: string[]) => Promise<void>> = {
  relay: runRelay,
  control: async (argv) => (await import("./control-command.ts")).runControl(argv),
  proxy: async (argv) => (await import("./proxy-command.ts")).runProxy(argv),
  gateway: async (argv) => (await import("./gateway-command.ts")).runGateway(argv),
  demo: async (argv) => (await import("./demo-command.ts")).runDemo(argv),
};

const USAGE = `usage: polymur [relay] [options]     (polymur relay --help for the options; polymur --version)

Roles:
  relay    Graphite plaintext in over TCP/UDP, forwarded to destinations (default)
  control  the control plane: fleet state for polymurctl and managed nodes
  proxy    Graphite plaintext in, streamed to a gateway over HTTP/2 (batched, compressed, acknowledged)
  gateway  proxy streams in (API keys, TLS), forwarded to destinations like a relay
  demo     every role on this machine, with senders and carbon-caches (or line sinks); Ctrl-C stops it`;

/** The role being started, as messages name it. */
let command = "polymur relay";

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
    const role = Object.hasOwn(ROLES, first) ? ROLES[first] : undefined;
    if (role === undefined) {
      const close = closestName(first, Object.keys(ROLES));
      const hint = close === undefined ? "" : `; did you mean ${close}?`;
      console.error(`polymur: unknown role "${first}"${hint}\n${USAGE}`);
      process.exitCode = 2;
      return;
    }
    command = `polymur ${first}`;
    await role(argv.slice(1));
    return;
  }
  await runRelay(argv);
}

// A role that fails while starting may already hold listeners, connections or
// worker processes that would keep it alive without doing its job: exit.
// Usage and configuration errors (coded or not) exit 2, anything else 1.
main(process.argv.slice(2)).catch((err: unknown) => {
  const text = startupErrorText(command, err);
  if (text !== null) {
    console.error(text);
    process.exit(2);
  }
  console.error(err);
  process.exit(1);
});
