import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  addressText,
  bytesText,
  getAddress,
  getBytes,
  parseArgv,
  parseConfigFile,
  resolveOptions,
} from "../../../../common/options.ts";
import { DEFAULT_API_ADDR } from "../../../../dataplane/control/line-api.ts";
import { DESTINATION_DEFAULTS } from "../../../../dataplane/forward/destination.ts";
import { DISK_QUEUE_DEFAULTS } from "../../../../dataplane/forward/destination-options.ts";
import {
  parseDestination,
  parseDestinationList,
} from "../../../../dataplane/forward/destination-spec.ts";
import { DEFAULT_MAX_LINE_LENGTH } from "../../../../dataplane/ingest/line-framer.ts";
import {
  buildNodeOptions,
  buildRelayConfig,
  RELAY_OPTIONS,
} from "../../../../dataplane/nodes/relay-options.ts";
import { DEFAULT_STAT_ADDR } from "../../../../dataplane/observe/stats-server.ts";

function config(argv: string[], env: NodeJS.ProcessEnv = {}, file = "") {
  const { flags } = parseArgv(RELAY_OPTIONS, argv);
  let fileOpts = new Map<string, string>();
  if (file !== "") {
    const path = join(mkdtempSync(join(tmpdir(), "polymur-opt-")), "relay.conf");
    writeFileSync(path, file);
    fileOpts = parseConfigFile(RELAY_OPTIONS, path);
  }
  const raw = resolveOptions(RELAY_OPTIONS, flags, env, fileOpts);
  return { relay: buildRelayConfig(raw), proc: buildNodeOptions(raw) };
}

describe("destination specs", () => {
  it.each([
    [
      "10.0.5.30:2003",
      { host: "10.0.5.30", port: 2003, instance: undefined, id: "10.0.5.30:2003" },
    ],
    ["10.0.5.30:2003:a", { host: "10.0.5.30", port: 2003, instance: "a", id: "10.0.5.30:2003:a" }],
    ["10.0.5.30:2003=a", { host: "10.0.5.30", port: 2003, instance: "a", id: "10.0.5.30:2003:a" }],
    ["[::1]:2003", { host: "::1", port: 2003, instance: undefined, id: "[::1]:2003" }],
    ["[::1]:2003=b", { host: "::1", port: 2003, instance: "b", id: "[::1]:2003:b" }],
    ["cache-1.example:2004:x:y", { host: "cache-1.example", port: 2004, instance: "x:y" }],
  ])("%s", (spec, expected) => {
    expect(parseDestination(spec)).toMatchObject({ ...expected, spec });
  });

  it.each([
    ["", "empty"],
    ["host", "missing :port"],
    ["host:", 'port "" is not a number'],
    ["host:99999", "out of range"],
    ["host:0", "out of range"],
    ["[::1:2003", "unclosed ["],
    ["[nothost]:2003", "not an IPv6 address"],
    ["host:2003:", "empty instance"],
  ])("rejects %j (%s)", (spec, why) => {
    expect(() => parseDestination(spec)).toThrow(why);
  });

  it("rejects the same destination written twice, whichever form", () => {
    expect(() => parseDestinationList("h:1:a, h:1=a")).toThrow('duplicate destination "h:1=a"');
  });
});

describe("relay options", () => {
  it("has carbon-compatible defaults", () => {
    const { relay, proc } = config([]);
    expect(relay).toMatchObject({
      listen: { host: "0.0.0.0", port: 2003 },
      udp: null,
      destinations: [],
      distribution: "broadcast",
      maxLineLength: 16384,
      overflow: "drop-oldest",
      queueBytes: 128 * 1024 * 1024,
    });
    expect(proc.apiAddr).toEqual({ host: "127.0.0.1", port: 2030 });
    expect(proc.metricsFlushSec).toBe(60);
  });

  it("takes its defaults from the modules that own them", () => {
    const { relay, proc } = config([]);
    expect(relay).toMatchObject({
      queueBytes: DESTINATION_DEFAULTS.queueBytes,
      overflow: DESTINATION_DEFAULTS.overflow,
      resendBytes: DESTINATION_DEFAULTS.resendBytes,
      backoffMinMs: DESTINATION_DEFAULTS.backoffMinMs,
      backoffMaxMs: DESTINATION_DEFAULTS.backoffMaxMs,
      maxLineLength: DEFAULT_MAX_LINE_LENGTH,
    });
    expect(proc.apiAddr).toEqual(DEFAULT_API_ADDR);
    expect(proc.statAddr).toEqual(DEFAULT_STAT_ADDR);
  });

  it("writes defaults as getBytes and getAddress read them back", () => {
    for (const [bytes, text] of [
      [128 * 1024 * 1024, "128MiB"],
      [1024 ** 3, "1GiB"],
      [256 * 1024, "256KiB"],
      [1536, "1536"],
      [0, "0"],
    ] as const) {
      expect(bytesText(bytes)).toBe(text);
      expect(getBytes(new Map([["x", text]]), "x")).toBe(bytes);
    }
    for (const a of [DEFAULT_STAT_ADDR, { host: "::1", port: 2020 }]) {
      expect(getAddress(new Map([["x", addressText(a)]]), "x")).toEqual(a);
    }
    expect(addressText({ host: "::1", port: 2020 })).toBe("[::1]:2020");
  });

  it("leaves diverse-replicas to the chosen reference unless it is given", () => {
    const ccr = config(["--distribution", "hash-route", "--compat", "carbon-c-relay"]).relay.hash;
    expect(ccr.diverseReplicas).toBeUndefined();
    expect(config(["--diverse-replicas", "false"]).relay.hash.diverseReplicas).toBe(false);
    expect(config(["--no-diverse-replicas"]).relay.hash.diverseReplicas).toBe(false);
  });

  it("takes the Go polymur's single-dash forms", () => {
    const { relay } = config([
      "-listen-addr=127.0.0.1:2103",
      "-destinations",
      "a:1,b:2",
      "-distribution=hash-route",
    ]);
    expect(relay.listen).toEqual({ host: "127.0.0.1", port: 2103 });
    expect(relay.destinations.map((d) => d.spec)).toEqual(["a:1", "b:2"]);
    expect(relay.distribution).toBe("hash-route");
  });

  it("flag > environment > file > default", () => {
    const file = "queue-size = 1MiB\nmax-line-length = 100 # comment\n";
    const env = { POLYMUR_QUEUE_SIZE: "2MiB" };
    expect(config([], {}, file).relay.queueBytes).toBe(1 << 20);
    expect(config([], env, file).relay.queueBytes).toBe(2 << 20);
    expect(config(["--queue-size", "3MiB"], env, file).relay.queueBytes).toBe(3 << 20);
    expect(config([], env, file).relay.maxLineLength).toBe(100);
  });

  it("per-destination overflow policy and queue size", () => {
    const { relay } = config([
      "--destinations",
      "a:1,b:2=x",
      "--overflow",
      "drop-newest,b:2=x@block",
      "--queue-size",
      "1GiB,a:1@64KiB",
    ]);
    expect(relay.overflow).toBe("drop-newest");
    expect(relay.overflowFor).toEqual({ "b:2:x": "block" });
    expect(relay.queueBytes).toBe(1 << 30);
    expect(relay.queueBytesFor).toEqual({ "a:1": 64 * 1024 });
  });

  it.each([
    [["--frobnicate"], "unknown option --frobnicate"],
    [["--distribution", "random"], "--distribution must be one of broadcast, hash-route"],
    [["--overflow", "sometimes"], "--overflow must be one of drop-oldest, drop-newest, block"],
    [["--queue-size", "lots"], "--queue-size must be a size"],
    [["--listen-addr", "2003"], "--listen-addr must be host:port"],
    [["--replication", "0"], "--replication must be at least 1"],
    [["--api-addr", "0.0.0.0:2030"], "set --api-token"],
    [["--destinations", "a:1,a:1"], 'duplicate destination "a:1"'],
    [["--listen-addr"], "option --listen-addr needs a value"],
  ])("refuses %j with a clear reason", (argv, why) => {
    expect(() => config(argv)).toThrow(why);
  });

  it("a config file with an unknown key names the line", () => {
    expect(() => config([], {}, "listen-addr = 127.0.0.1:1\nfrobnicate = 1\n")).toThrow(
      /relay.conf:2: unknown option "frobnicate"/,
    );
  });
});

describe("disk queues (--queue-dir)", () => {
  it("are off by default", () => {
    expect(config([]).relay.disk).toBeNull();
  });

  it("take --queue-dir and their bounds, fsync policy and interval", () => {
    const { relay } = config([
      "--queue-dir",
      "/var/lib/polymur/queues",
      "--queue-disk-size",
      "2GiB",
      "--queue-disk-total",
      "8GiB",
      "--queue-fsync",
      "write",
      "--queue-fsync-interval",
      "250ms",
    ]);
    expect(relay.disk).toEqual({
      dir: "/var/lib/polymur/queues",
      maxBytes: 2 * 1024 ** 3,
      totalBytes: 8 * 1024 ** 3,
      fsync: "write",
      fsyncIntervalMs: 250,
    });
  });

  it("default to DISK_QUEUE_DEFAULTS, also from the environment", () => {
    const { relay } = config([], { POLYMUR_QUEUE_DIR: "/q" });
    expect(relay.disk).toEqual({ ...DISK_QUEUE_DEFAULTS, dir: "/q" });
  });

  it("refuse an unknown fsync policy and empty bounds", () => {
    expect(() => config(["--queue-dir", "/q", "--queue-fsync", "sometimes"])).toThrow(
      /queue-fsync/,
    );
    expect(() => config(["--queue-dir", "/q", "--queue-disk-size", "0"])).toThrow(
      /--queue-disk-size must be more than 0/,
    );
  });
});
