import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type Interceptor,
} from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HealthRegistry } from "../../../common/health-registry.ts";
import { controlRoutes } from "../../../controlplane/control-server.ts";
import { FileStore } from "../../../controlplane/file-store.ts";
import { RULES_MAX_BYTES } from "../../../controlplane/rules-validation.ts";
import {
  ControlService,
  type NodeConfig,
  NodeService,
} from "../../../gen/polymur/control/v1/control_pb.ts";
import { refusal } from "../../fixtures/refusal.ts";

const ADMIN = "admin-secret-token";
const NODE = "node-secret-token";
const all = { target: { case: "all" as const, value: true } };
const group = (g: string) => ({ target: { case: "group" as const, value: g } });
const rules = (text: string, fileName = "relay.conf") => ({
  content: Buffer.from(text, "latin1"),
  fileName,
});

const FLEET = `cluster sinks
    forward
        127.0.0.1:2103
        127.0.0.1:2104
    ;
match *
    send to sinks
    ;
`;
const WEB = `cluster web_sinks forward 127.0.0.1:2203;
match ^web\\. send to web_sinks stop;
match * send to blackhole;
`;

function bearer(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

let dir: string;
let store: FileStore;
let shutdown: AbortController;
let admin: Client<typeof ControlService>;
let node: Client<typeof NodeService>;

async function openStore(): Promise<void> {
  store = new FileStore(dir);
  await store.open();
  shutdown = new AbortController();
  const routes = controlRoutes({
    store,
    credentials: { admin: ADMIN, node: NODE },
    health: new HealthRegistry([ControlService.typeName, NodeService.typeName]),
    replica: "r1",
  });
  const transport = (token: string) =>
    createRouterTransport(routes, {
      transport: { interceptors: [bearer(token)] },
      router: { shutdownSignal: shutdown.signal },
    });
  admin = createClient(ControlService, transport(ADMIN));
  node = createClient(NodeService, transport(NODE));
}

async function closeStore(): Promise<void> {
  shutdown.abort(new ConnectError("test over", Code.Unavailable));
  await store.close();
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "polymur-rules-svc-"));
  await openStore();
});

afterEach(async () => {
  await closeStore();
  rmSync(dir, { recursive: true, force: true });
});

/** The first snapshot a node of `g` gets. */
async function snapshotFor(g: string): Promise<NodeConfig> {
  const abort = new AbortController();
  try {
    for await (const res of node.subscribe(
      { nodeId: `n-${g || "none"}`, group: g, role: "relay" },
      { signal: abort.signal },
    )) {
      return res.config!;
    }
  } finally {
    abort.abort();
  }
  throw new Error("no snapshot");
}

const textOf = (c: NodeConfig) =>
  c.rules === undefined ? null : Buffer.from(c.rules.content).toString("latin1");

/** A refused SetRules: its code, its POLYMUR_ERR_* code and its message; the state did not change. */
async function refusedRules(text: string, fileName = "relay.conf") {
  const before = store.current()!.state.version;
  const e = await refusal(admin.setRules({ scope: all, rules: rules(text, fileName) }));
  expect(store.current()!.state.version).toBe(before);
  return { code: e.code, polymur: e.metadata.get("polymur-error-code"), message: e.rawMessage };
}

describe("SetRules, GetRules, UnsetRules", () => {
  it("keeps the file byte for byte, versioned like the rest of the state", async () => {
    const text = `# caf\xc3\xa9 \xe9\n${FLEET}`;
    const r = await admin.setRules({ scope: all, rules: rules(text, "conf/fleet.conf") });
    expect(r.version).toBe(1n);
    const got = await admin.getRules({});
    expect(got.version).toBe(1n);
    expect(got.rules).toHaveLength(1);
    expect(got.rules[0]!.scope?.target).toEqual({ case: "all", value: true });
    expect(got.rules[0]!.rules?.fileName).toBe("conf/fleet.conf");
    expect(Buffer.from(got.rules[0]!.rules!.content).toString("latin1")).toBe(text);
  });

  it("snapshots carry the group's own rules, else the fleet's, else none", async () => {
    expect(textOf(await snapshotFor("web"))).toBeNull();
    await admin.setRules({ scope: all, rules: rules(FLEET, "fleet.conf") });
    await admin.setRules({ scope: group("web"), rules: rules(WEB, "web.conf") });
    const web = await snapshotFor("web");
    expect(textOf(web)).toBe(WEB);
    expect(web.rules?.fileName).toBe("web.conf");
    expect(textOf(await snapshotFor("db"))).toBe(FLEET);
    expect(textOf(await snapshotFor(""))).toBe(FLEET);
    await admin.unsetRules({ scope: group("web") });
    expect(textOf(await snapshotFor("web"))).toBe(FLEET);
    await admin.unsetRules({ scope: all });
    expect(textOf(await snapshotFor("web"))).toBeNull();
    expect((await admin.getRules({})).rules).toEqual([]);
  });

  it("a subscribed node gets the new rules when they change", async () => {
    const abort = new AbortController();
    const seen: Array<string | null> = [];
    const stream = (async () => {
      for await (const res of node.subscribe(
        { nodeId: "n1", group: "web", role: "relay" },
        { signal: abort.signal },
      )) {
        seen.push(textOf(res.config!));
        if (seen.length === 3) break;
      }
    })();
    await admin.setRules({ scope: all, rules: rules(FLEET) });
    await admin.setRules({ scope: group("web"), rules: rules(WEB) });
    await stream;
    abort.abort();
    // Snapshots are coalesced: a node may skip one in between, never the last.
    expect(seen[0]).toBeNull();
    expect(seen.at(-1)).toBe(WEB);
  });

  it("compare-and-set: --expected-version that is not current changes nothing", async () => {
    await admin.setRules({ scope: all, rules: rules(FLEET) });
    const e = await refusal(
      admin.setRules({ scope: group("web"), rules: rules(WEB), expectedVersion: 0n }),
    );
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.metadata.get("polymur-error-code")).toBe("POLYMUR_ERR_VERSION_CONFLICT");
    const u = await refusal(admin.unsetRules({ scope: all, expectedVersion: 5n }));
    expect(u.code).toBe(Code.FailedPrecondition);
    expect(
      (await admin.setRules({ scope: group("web"), rules: rules(WEB), expectedVersion: 1n }))
        .version,
    ).toBe(2n);
    expect((await admin.unsetRules({ scope: group("web"), expectedVersion: 2n })).version).toBe(3n);
  });

  it("unset of rules that are not there is NOT_FOUND", async () => {
    const e = await refusal(admin.unsetRules({ scope: group("web") }));
    expect(e.code).toBe(Code.NotFound);
    expect(e.rawMessage).toBe(
      "group web has no rules of its own (polymurctl rules show --group web)",
    );
    expect(store.current()!.state.version).toBe(0);
  });

  it("needs a scope", async () => {
    const e = await refusal(admin.setRules({ rules: rules(FLEET) }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(/scope\.all or scope\.group/);
  });

  it("persists: a control plane restarted on the same directory serves the same rules", async () => {
    await admin.setRules({ scope: group("web"), rules: rules(WEB, "web.conf") });
    await closeStore();
    await openStore();
    const got = await admin.getRules({});
    expect(got.version).toBe(1n);
    expect(got.rules[0]?.rules?.fileName).toBe("web.conf");
    expect(textOf(await snapshotFor("web"))).toBe(WEB);
  });
});

describe("refused files: INVALID_ARGUMENT, POLYMUR_ERR_RULES, file:line:column, nothing changes", () => {
  it("a file that does not parse", async () => {
    const r = await refusedRules(
      "cluster sinks\n    forward\n        127.0.0.1:2103\n;\nmatch * sned to sinks;\n",
      "my.conf",
    );
    expect(r.code).toBe(Code.InvalidArgument);
    expect(r.polymur).toBe("POLYMUR_ERR_RULES");
    expect(r.message).toMatch(/^my\.conf:5:\d+: /);
  });

  it("a file that parses but does not compile (an unknown cluster)", async () => {
    const r = await refusedRules(
      "cluster a forward 127.0.0.1:2103;\nmatch * send to b;\n",
      "x/y.conf",
    );
    expect(r.code).toBe(Code.InvalidArgument);
    expect(r.polymur).toBe("POLYMUR_ERR_RULES");
    expect(r.message).toMatch(/^x\/y\.conf:2:\d+: .*\bb\b/);
  });

  it("include: the control plane cannot read the files it names", async () => {
    const r = await refusedRules(`${FLEET}\ninclude /etc/carbon-c-relay/conf.d/*.conf;\n`);
    expect(r.polymur).toBe("POLYMUR_ERR_RULES");
    expect(r.message).toBe(
      'relay.conf:10:9: include "/etc/carbon-c-relay/conf.d/*.conf": the control plane holds one file and cannot read the files an include names; put their contents in place of the include (inline them) and set that file',
    );
    // The word in a comment or as a name is no include.
    await admin.setRules({
      scope: all,
      rules: rules(
        `# include x.conf\ncluster include forward 127.0.0.1:2103;\nmatch * send to include;\n`,
      ),
    });
  });

  it("listen: a node listens where its own flags say", async () => {
    const r = await refusedRules(
      `listen\n    type linemode\n        2003 proto tcp\n    ;\n${FLEET}`,
    );
    expect(r.polymur).toBe("POLYMUR_ERR_RULES");
    expect(r.message).toMatch(
      /^relay\.conf:1:1: listen blocks are per node: .*--listen-addr and --udp-addr/,
    );
  });

  it("file clusters: every node would write the path the control plane chose", async () => {
    const r = await refusedRules(`${FLEET}cluster disk file /var/log/metrics.log;\n`);
    expect(r.polymur).toBe("POLYMUR_ERR_RULES");
    expect(r.message).toMatch(
      /^relay\.conf:\d+:1: file cluster "disk": file clusters are per node/,
    );
  });

  it("a file over RULES_MAX_BYTES", async () => {
    const big = `${FLEET}${"#".repeat(RULES_MAX_BYTES)}\n`;
    const e = await refusal(admin.setRules({ scope: all, rules: rules(big) }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(/at most 262144/);
  });
});
