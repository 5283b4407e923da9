import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { parseArgv, resolveOptions } from "../../../../common/options.ts";
import { GATEWAY_LINK_DEFAULTS } from "../../../../dataplane/link/proxy/gateway-link.ts";
import { LINE_BATCHER_DEFAULTS } from "../../../../dataplane/link/proxy/line-batcher.ts";
import { buildProxyOptions, PROXY_OPTIONS } from "../../../../dataplane/nodes/proxy-options.ts";

function options(argv: string[]) {
  const { flags } = parseArgv(PROXY_OPTIONS, argv);
  return buildProxyOptions(resolveOptions(PROXY_OPTIONS, flags, {}, new Map()));
}

describe("proxy options", () => {
  it("takes its defaults from the modules that own them", () => {
    const o = options(["--gateway", "https://gw.example:8443", "--api-key", "k"]);
    expect(o).toMatchObject({
      batchBytes: LINE_BATCHER_DEFAULTS.maxBytes,
      batchDelayMs: LINE_BATCHER_DEFAULTS.maxDelayMs,
      pingIntervalMs: GATEWAY_LINK_DEFAULTS.pingIntervalMs,
      pingTimeoutMs: GATEWAY_LINK_DEFAULTS.pingTimeoutMs,
      backoffMinMs: GATEWAY_LINK_DEFAULTS.backoffMinMs,
      backoffMaxMs: GATEWAY_LINK_DEFAULTS.backoffMaxMs,
    });
  });

  it("--workers: processes, one per available core by default or at 0, as the relay's", () => {
    const base = ["--gateway", "https://gw.example:8443", "--api-key", "k"];
    expect(options(base).workers).toBe(availableParallelism());
    expect(options([...base, "--workers", "0"]).workers).toBe(availableParallelism());
    expect(options([...base, "--workers", "3"]).workers).toBe(3);
    const { flags } = parseArgv(PROXY_OPTIONS, base);
    const env = buildProxyOptions(
      resolveOptions(PROXY_OPTIONS, flags, { POLYMUR_WORKERS: "5" }, new Map()),
    );
    expect(env.workers).toBe(5);
    const file = buildProxyOptions(
      resolveOptions(PROXY_OPTIONS, flags, {}, new Map([["workers", "4"]])),
    );
    expect(file.workers).toBe(4);
  });
});
