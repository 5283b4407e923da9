import { describe, expect, it } from "vitest";
import { parseArgv, resolveOptions } from "../../../../common/options.ts";
import { DEDUP_TABLE_DEFAULTS } from "../../../../dataplane/link/gateway/dedup-table.ts";
import {
  buildGatewayOptions,
  GATEWAY_OPTIONS,
} from "../../../../dataplane/nodes/gateway-options.ts";
import { DEFAULT_STAT_ADDR } from "../../../../dataplane/observe/stats-server.ts";

function options(argv: string[]) {
  const { flags } = parseArgv(GATEWAY_OPTIONS, argv);
  return buildGatewayOptions(resolveOptions(GATEWAY_OPTIONS, flags, {}, new Map()));
}

describe("gateway options", () => {
  it("takes its defaults from the modules that own them", () => {
    const o = options(["--keys-file", "/nonexistent/keys"]);
    expect(o.dedupProxies).toBe(DEDUP_TABLE_DEFAULTS.maxProxies);
    expect(o.statAddr).toEqual(DEFAULT_STAT_ADDR);
  });

  it("takes the relay's disk queue options (--queue-dir)", () => {
    const o = options(["--keys-file", "/nonexistent/keys", "--queue-dir", "/var/lib/polymur/q"]);
    expect(o.routing.disk?.dir).toBe("/var/lib/polymur/q");
  });
});
