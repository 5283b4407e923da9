import { describe, expect, it } from "vitest";
import { UsageError } from "../../../../common/errors.ts";
import { parseArgv, resolveOptions } from "../../../../common/options.ts";
import { parseDestinationList } from "../../../../dataplane/forward/destination-spec.ts";
import {
  buildGatewayOptions,
  GATEWAY_GO_FLAGS,
  GATEWAY_OPTIONS,
} from "../../../../dataplane/nodes/gateway-options.ts";
import { PROXY_GO_FLAGS, PROXY_OPTIONS } from "../../../../dataplane/nodes/proxy-options.ts";
import {
  buildRelayConfig,
  RELAY_GO_FLAGS,
  RELAY_OPTIONS,
} from "../../../../dataplane/nodes/relay-options.ts";
import { createHashRouter } from "../../../../dataplane/route/hash/hash-router.ts";

function relay(argv: string[], env: NodeJS.ProcessEnv = {}) {
  const { flags, notes } = parseArgv(RELAY_OPTIONS, argv, {
    command: "polymur relay",
    legacy: RELAY_GO_FLAGS,
  });
  return { config: buildRelayConfig(resolveOptions(RELAY_OPTIONS, flags, env, new Map())), notes };
}

const DESTS = "10.0.0.1:2003:a,10.0.0.2:2003:b,10.0.0.3:2003:c";

describe("relay hash options", () => {
  it("an unset --hash is the router's default: mmh3_ch for fast-hashing, carbon_ch otherwise", () => {
    const base = ["--distribution", "hash-route", "--destinations", DESTS];
    expect(relay([...base, "--router", "fast-hashing"]).config.hash.algo).toBe("mmh3_ch");
    expect(relay([...base]).config.hash.algo).toBe("carbon_ch");
    expect(relay([...base, "--router", "consistent-hashing"]).config.hash.algo).toBe("carbon_ch");
    expect(relay(base, { POLYMUR_ROUTER: "fast-hashing" }).config.hash.algo).toBe("mmh3_ch");
    // Given, it is kept, whichever the router.
    const given = relay([...base, "--router", "fast-hashing", "--hash", "carbon_ch"]);
    expect(given.config.hash.algo).toBe("carbon_ch");
  });

  it("routes as carbon's FastHashingRouter does by default (mmh3), not as carbon_ch", () => {
    const { config } = relay([
      "--distribution",
      "hash-route",
      "--destinations",
      DESTS,
      "--router",
      "fast-hashing",
    ]);
    const members = parseDestinationList(DESTS);
    const ours = createHashRouter(members, config.hash);
    const mmh3 = createHashRouter(members, { router: "fast-hashing", algo: "mmh3_ch" });
    const md5 = createHashRouter(members, { router: "fast-hashing", algo: "carbon_ch" });
    const names = Array.from({ length: 200 }, (_, i) => `servers.web${i}.cpu.user`);
    const route = (r: typeof ours) => names.map((n) => r.routeName(n).join(","));
    expect(route(ours)).toEqual(route(mmh3));
    expect(route(ours)).not.toEqual(route(md5));
  });

  it("a bad value from the environment names the variable", () => {
    expect(() => relay([], { POLYMUR_DISTRIBUTION: "foo" })).toThrow(
      'POLYMUR_DISTRIBUTION must be one of broadcast, hash-route; got "foo"',
    );
    expect(() => relay([], { POLYMUR_REPLICATION: "0" })).toThrow(
      "POLYMUR_REPLICATION must be at least 1",
    );
    expect(() => relay([], { POLYMUR_OVERFLOW: "sometimes" })).toThrow(
      'POLYMUR_OVERFLOW must be one of drop-oldest, drop-newest, block; got "sometimes"',
    );
  });
});

describe("the Go polymur's flags", () => {
  it("a Go polymur relay command line parses, with notes for what polymur does differently", () => {
    const { config, notes } = relay([
      "-listen-addr=0.0.0.0:2005",
      "-destinations=10.0.5.30:2003,10.0.5.31:2003",
      "-distribution=hash-route",
      "-outgoing-queue-cap=4096",
      "-incoming-queue-cap",
      "32768",
      "-metrics-flush=30",
      "-console-out",
    ]);
    expect(config.listen).toEqual({ host: "0.0.0.0", port: 2005 });
    expect(config.destinations.map((d) => d.spec)).toEqual(["10.0.5.30:2003", "10.0.5.31:2003"]);
    expect(config.distribution).toBe("hash-route");
    expect(notes).toHaveLength(2);
    expect(notes[0]).toMatch(
      /^-outgoing-queue-cap \(a Go polymur option\) is ignored: .*--queue-size/,
    );
    expect(notes[1]).toMatch(/^-incoming-queue-cap \(a Go polymur option\) is ignored: /);
    expect(() => relay(["-listen-port", "2005"])).toThrow(UsageError);
    expect(() => relay(["-listen-port", "2005"])).toThrow(/--listen-addr host:port/);
  });

  it("the gateway's -cert/-key are --tls-cert/--tls-key; its -dev-mode is refused", () => {
    const parse = (argv: string[]) =>
      parseArgv(GATEWAY_OPTIONS, argv, { command: "polymur gateway", legacy: GATEWAY_GO_FLAGS });
    const { flags, notes } = parse(["-cert=/c.pem", "-key", "/k.pem", "-api-addr=localhost:2030"]);
    expect(flags.get("tls-cert")).toBe("/c.pem");
    expect(flags.get("tls-key")).toBe("/k.pem");
    expect(notes).toEqual([
      "-cert is deprecated: use --tls-cert",
      "-key is deprecated: use --tls-key",
      "-api-addr (a Go polymur option) is ignored: a gateway has no line API: its destinations come from --destinations, --rules or the control plane",
    ]);
    expect(() => parse(["-dev-mode"])).toThrow(/--keys-file/);
    expect(() => parse(["-listen-https-port=443"])).toThrow(/--listen-addr/);
    // The overridden relay options keep naming where a value came from.
    const raw = resolveOptions(
      GATEWAY_OPTIONS,
      new Map([["keys-file", "/k"]]),
      { POLYMUR_REPLICATION: "0" },
      new Map(),
    );
    expect(() => buildGatewayOptions(raw)).toThrow("POLYMUR_REPLICATION must be at least 1");
  });

  it("the proxy's -cert is --ca, -workers is --workers (a stream each); -queue-cap is ignored with a note", () => {
    const { flags, notes } = parseArgv(
      PROXY_OPTIONS,
      ["-cert", "/ca.pem", "-queue-cap=32768", "-workers=3", "-gateway=https://gw:443"],
      { command: "polymur proxy", legacy: PROXY_GO_FLAGS },
    );
    expect(Object.fromEntries(flags)).toEqual({
      ca: "/ca.pem",
      gateway: "https://gw:443",
      workers: "3",
    });
    expect(notes.map((n) => n.split(" ")[0])).toEqual(["-cert", "-queue-cap"]);
  });
});
