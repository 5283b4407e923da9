import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode, type PolymurError } from "../../../../common/errors.ts";
import {
  configFromSnapshot,
  rulesFromSnapshot,
} from "../../../../dataplane/control/control-config.ts";
import {
  type ControlSubscriber,
  createControlSubscriber,
} from "../../../../dataplane/control/control-subscriber.ts";
import { unusedWithRules } from "../../../../dataplane/control/unused-with-rules.ts";
import { parseDestinationList } from "../../../../dataplane/forward/destination-spec.ts";
import type { RelayConfig } from "../../../../dataplane/nodes/relay-config.ts";
import { RulesError } from "../../../../dataplane/route/rules/rules-config.ts";
import {
  Distribution,
  type NodeConfig,
  NodeConfigSchema,
} from "../../../../gen/polymur/control/v1/control_pb.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import {
  ALL_GROUPS,
  subscriberOptions,
  TestControlPlane,
} from "../../../fixtures/control-plane-server.ts";
import { until } from "../../../fixtures/until.ts";

const RULES = "cluster sinks forward 127.0.0.1:2103 127.0.0.1:2104;\nmatch * send to sinks;\n";

function base(rules: RelayConfig["rules"] = null): RelayConfig {
  return {
    listen: { host: "127.0.0.1", port: 12003 },
    udp: null,
    maxLineLength: 4096,
    maxConnections: 7,
    idleTimeoutMs: 9_000,
    destinations: parseDestinationList("192.0.2.1:2003"),
    distribution: "broadcast",
    hash: { algo: "carbon_ch", compat: "carbon", replication: 1 },
    ejectAfter: 0,
    queueBytes: 5 << 20,
    overflow: "block",
    queueBytesFor: {},
    overflowFor: {},
    resendBytes: 4096,
    backoffMinMs: 50,
    backoffMaxMs: 5_000,
    rules,
  };
}

function snapshot(
  text: string | Buffer | null,
  over: Omit<MessageInitShape<typeof NodeConfigSchema>, "$typeName"> = {},
): NodeConfig {
  return create(NodeConfigSchema, {
    version: 4n,
    group: "web",
    ...(text === null
      ? {}
      : {
          rules: {
            content: typeof text === "string" ? Buffer.from(text, "latin1") : text,
            fileName: "conf/web.conf",
          },
        }),
    ...over,
  });
}

describe("configFromSnapshot and rules", () => {
  it("parses the snapshot's rules, named as the control plane was given them", () => {
    const c = configFromSnapshot(base(), snapshot(RULES));
    expect(c.rules?.files).toEqual(["conf/web.conf"]);
    expect(c.rules?.clusters.map((cl) => cl.name)).toEqual(["sinks"]);
    expect(c.rules?.clusters[0]?.members.map((m) => m.spec)).toEqual([
      "127.0.0.1:2103",
      "127.0.0.1:2104",
    ]);
    expect(c.rules?.clusters[0]?.pos).toEqual({ file: "conf/web.conf", line: 1, column: 1 });
  });

  it("with rules, the snapshot's destinations are not opened (they are for nodes without rules)", () => {
    const s = snapshot(RULES, { destinations: ["10.0.0.1:2003"] });
    expect(configFromSnapshot(base(), s).destinations).toEqual([]);
    expect(
      configFromSnapshot(
        base(),
        snapshot(null, { destinations: ["10.0.0.1:2003"] }),
      ).destinations.map((d) => d.spec),
    ).toEqual(["10.0.0.1:2003"]);
  });

  it("no rules in the snapshot: none, whatever the node had", () => {
    const had = configFromSnapshot(base(), snapshot(RULES)).rules;
    expect(configFromSnapshot(base(had), snapshot(null)).rules).toBeNull();
  });

  it("reads the file's bytes one char per byte", () => {
    const bytes = Buffer.from([
      ...Buffer.from('cluster s forward 127.0.0.1:2103;\nmatch "^caf'),
      0xc3,
      0xa9,
      ...Buffer.from('" send to s;\n'),
    ]);
    const rule = configFromSnapshot(base(), snapshot(bytes)).rules?.rules[0];
    expect(rule?.kind === "match" ? rule.exprs?.[0]?.source : null).toBe("^caf\xc3\xa9");
  });

  it("rules that do not parse throw (the node keeps its configuration), with file:line:column", () => {
    const bad = snapshot("cluster sinks forward 127.0.0.1:2103;\nmatch * sned to sinks;\n");
    expect(() => configFromSnapshot(base(), bad)).toThrow(RulesError);
    expect(() => configFromSnapshot(base(), bad)).toThrow(/^conf\/web\.conf:2:9: /);
    try {
      configFromSnapshot(base(), bad);
    } catch (err) {
      expect((err as PolymurError).code).toBe(ErrorCode.Rules);
    }
  });

  it("listen blocks are refused: a managed node listens where its flags say", () => {
    const s = snapshot(`listen type linemode 2003 proto tcp;\n${RULES}`);
    expect(() => rulesFromSnapshot(s)).toThrow(
      /^conf\/web\.conf:1:1: listen blocks in the control plane's rules: a managed node listens where its --listen-addr/,
    );
  });
});

describe("unusedWithRules", () => {
  it("names destinations and a hash-route policy that rules make unused", () => {
    expect(unusedWithRules(snapshot(null, { destinations: ["10.0.0.1:2003"] }))).toBeNull();
    expect(unusedWithRules(snapshot(RULES))).toBeNull();
    expect(
      unusedWithRules(
        snapshot(RULES, {
          destinations: ["10.0.0.1:2003", "10.0.0.2:2003"],
          routing: { distribution: Distribution.HASH_ROUTE },
        }),
      ),
    ).toBe(
      "control plane: rules conf/web.conf decide where datapoints go; not used while they are in effect: destinations 10.0.0.1:2003, 10.0.0.2:2003 (polymurctl dest), the hash-route policy (polymurctl route)",
    );
  });
});

describe("a managed node with rules and destinations", () => {
  let control: TestControlPlane;
  let sub: ControlSubscriber | undefined;
  afterEach(async () => {
    await sub?.stop();
    await control.close();
  });

  it("warns once, and again only when what is unused changes", async () => {
    control = await TestControlPlane.open("polymur-rules-node-");
    await control.addDestination("10.0.0.1:2003");
    const cp = await control.up();
    const { log, lines } = captureLog();
    sub = createControlSubscriber({ ...subscriberOptions(cp.url, log), onConfig: () => {} });
    sub.start();
    await until("version 1", () => sub!.appliedVersion === 1n);
    const warnings = () => lines.filter((l) => l.level === 40 && l.msg.includes("not used"));
    expect(warnings()).toEqual([]);

    await control.admin.setRules({
      scope: ALL_GROUPS,
      rules: { content: Buffer.from(RULES), fileName: "fleet.conf" },
    });
    await until("version 2", () => sub!.appliedVersion === 2n);
    await control.admin.createKey({ name: "k1" });
    await until("version 3", () => sub!.appliedVersion === 3n);
    expect(warnings().map((l) => l.msg)).toEqual([
      "control plane: rules fleet.conf decide where datapoints go; not used while they are in effect: destinations 10.0.0.1:2003 (polymurctl dest)",
    ]);

    await control.addDestination("10.0.0.2:2003");
    await until("version 4", () => sub!.appliedVersion === 4n);
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]?.msg).toMatch(/destinations 10\.0\.0\.1:2003, 10\.0\.0\.2:2003/);
  });
});
