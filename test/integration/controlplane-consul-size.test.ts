import { Writable } from "node:stream";
import { Code, createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import pino from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import { HealthRegistry } from "../../common/health-registry.ts";
import { CONSUL_TXN_MAX_BYTES, ConsulStore } from "../../controlplane/consul-store.ts";
import { controlRoutes } from "../../controlplane/control-server.ts";
import { type ControlState, EMPTY_STATE } from "../../controlplane/control-state.ts";
import { type StoredState, updateState } from "../../controlplane/control-store.ts";
import { ERROR_CODE_HEADER } from "../../controlplane/rpc-errors.ts";
import { RULES_MAX_BYTES } from "../../controlplane/rules-validation.ts";
import type { ChangeRecord } from "../../controlplane/state-history.ts";
import { ControlService, NodeService } from "../../gen/polymur/control/v1/control_pb.ts";
import { CONSUL_BIN, ConsulProcess, haveConsul, startConsulDev } from "../fixtures/consul.ts";
import { freePorts } from "../fixtures/free-ports.ts";
import { refusal } from "../fixtures/refusal.ts";
import { skipUnlessAvailable } from "../fixtures/requires.ts";
import { waitFor } from "../fixtures/until.ts";

// How large a state the Consul store can hold, against a real Consul: the state
// is written in one transaction, which Consul takes up to 512 KiB of request
// body, base64 included (txn_max_req_len). The store measures the transaction
// and refuses a larger state before writing anything (POLYMUR_ERR_CONFIG,
// naming the sizes and what to do) instead of passing on Consul's raw 413; a
// Consul set up to take less answers 413 itself, which becomes the same
// refusal, not "unreachable".

const withoutConsul = skipUnlessAvailable(`Consul (${CONSUL_BIN})`, haveConsul);

let prefixes = 0;
const freshPrefix = () => `polymur-size-${process.pid}-${++prefixes}`;

const rulesSet = (): ChangeRecord => ({
  kind: "rules set",
  scopes: [{ all: true }],
  subject: "big.conf",
  actor: "tester",
  replica: "r",
  atMs: 1_700_000_000_000,
});

/** The state with fleet-wide rules `text`, as updateState makes version `version` of it. */
function withRules(base: ControlState, text: string, version: number): ControlState {
  return {
    ...base,
    rules: [{ scope: { all: true }, rules: { text, fileName: "big.conf" } }],
    version,
  };
}

/**
 * The request body Consul gets for writing `state` over `base` at `stateKey`
 * (PUT /v1/txn, one `cas`): Consul's own measure of a transaction, written out
 * here from Consul's API, not taken from the store.
 */
function casBody(stateKey: string, state: ControlState, base: StoredState): string {
  const value = Buffer.from(JSON.stringify(state)).toString("base64");
  return JSON.stringify([
    { KV: { Verb: "cas", Key: stateKey, Value: value, Index: Number(base.revision) } },
  ]);
}

/**
 * Rules text of '#' (JSON keeps it as it is) that makes the write of version 1
 * over `base` a transaction of exactly `bytes`; `bytes` less the framing must
 * be a multiple of 4 (base64 makes 4 bytes of every 3).
 */
function textForBody(stateKey: string, base: StoredState, bytes: number): string {
  const framing = Buffer.byteLength(casBody(stateKey, withRules(base.state, "", 1), base));
  const emptyJson = Buffer.byteLength(JSON.stringify(withRules(base.state, "", 1)));
  // Base64 of exactly 3k bytes is 4k bytes, with no padding.
  const base64Now = Math.ceil(emptyJson / 3) * 4;
  const json = ((bytes - (framing - base64Now)) / 4) * 3;
  return "#".repeat(json - emptyJson);
}

describe.skipIf(withoutConsul)("the Consul store's largest state (dev agent)", () => {
  let consul: ConsulProcess;
  const stores: ConsulStore[] = [];
  /** What the stores logged at warn and above: nothing, unless a test says otherwise. */
  const warnings: string[] = [];
  const log = pino(
    { level: "warn" },
    new Writable({
      write(chunk, _enc, cb) {
        warnings.push(String(chunk));
        cb();
      },
    }),
  );
  const open = async (agent: ConsulProcess, prefix: string): Promise<ConsulStore> => {
    const s = new ConsulStore({
      addresses: [{ host: "127.0.0.1", port: agent.ports.http }],
      prefix,
      waitSec: 10,
      requestTimeoutMs: 5000,
      log,
    });
    await s.open();
    stores.push(s);
    return s;
  };
  /** A prefix whose state key makes (limit - framing) a multiple of 4 for a fresh write. */
  const alignedPrefix = (bytes: number): string => {
    // What a fresh prefix reads as (ConsulStore.read).
    const base: StoredState = { state: { ...EMPTY_STATE, version: 0 }, revision: 0n };
    for (let pad = "", i = 0; i < 4; i++, pad += "x") {
      const prefix = `${freshPrefix()}${pad}`;
      const text = textForBody(`${prefix}/state`, base, bytes);
      if (
        Buffer.byteLength(casBody(`${prefix}/state`, withRules(base.state, text, 1), base)) ===
        bytes
      )
        return prefix;
    }
    throw new Error("no prefix aligns");
  };
  const client = (store: ConsulStore) => {
    const routes = controlRoutes({
      store,
      credentials: { admin: "adm", node: "nod" },
      health: new HealthRegistry([ControlService.typeName, NodeService.typeName]),
      replica: "A",
    });
    const bearer: Interceptor = (next) => async (req) => {
      req.header.set("authorization", "Bearer adm");
      return next(req);
    };
    return createClient(
      ControlService,
      createRouterTransport(routes, { transport: { interceptors: [bearer] } }),
    );
  };

  beforeAll(async () => {
    consul = await startConsulDev();
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await consul?.stop();
  });
  afterEach(() => {
    expect(warnings.splice(0)).toEqual([]);
  });

  it("writes a state whose transaction is exactly 512 KiB; one of 4 bytes more is refused before writing, as Consul would", async () => {
    // Exactly the limit: Consul takes it (the store's measure is not stricter than Consul's).
    const fits = alignedPrefix(CONSUL_TXN_MAX_BYTES);
    const a = await open(consul, fits);
    const baseA = a.current()!;
    const textA = textForBody(`${fits}/state`, baseA, CONSUL_TXN_MAX_BYTES);
    expect(
      Buffer.byteLength(casBody(`${fits}/state`, withRules(baseA.state, textA, 1), baseA)),
    ).toBe(CONSUL_TXN_MAX_BYTES);
    const written = await updateState(a, (s) => withRules(s, textA, 0), rulesSet);
    expect(written.version).toBe(1);
    expect((await a.read()).state.rules[0]?.rules.text).toBe(textA);
    // Its history is kept too (its record and gzipped state follow in a second transaction).
    expect((await a.listHistory()).map((e) => e.version)).toEqual([1]);

    // One byte more of JSON, 4 more of base64: refused, and nothing written.
    const over = alignedPrefix(CONSUL_TXN_MAX_BYTES + 4);
    const b = await open(consul, over);
    const baseB = b.current()!;
    const textB = textForBody(`${over}/state`, baseB, CONSUL_TXN_MAX_BYTES + 4);
    let err: unknown;
    try {
      await updateState(b, (s) => withRules(s, textB, 0), rulesSet);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolymurError);
    expect((err as PolymurError).code).toBe(ErrorCode.Config);
    const json = Buffer.byteLength(JSON.stringify(withRules(baseB.state, textB, 1)));
    const rulesKiB = (Buffer.byteLength(JSON.stringify(textB)) / 1024).toFixed(1);
    expect((err as PolymurError).message).toBe(
      `the state would be too large for the state store ${b.description}: version 1 is ${json} bytes of JSON, and written to Consul it is one transaction of ${CONSUL_TXN_MAX_BYTES + 4} bytes (the state's JSON in base64), more than the 524288 bytes (512 KiB) Consul takes in one (txn_max_req_len, its default); nothing was changed. To make it smaller: its rules files make most of it (the fleet's big.conf, ${rulesKiB} KiB): set smaller ones (polymurctl rules set), or unset a group's own (polymurctl rules unset --group NAME) where the fleet's will do`,
    );
    const res = await fetch(`http://${consul.httpAddr}/v1/kv/${over}/?keys`);
    expect(res.status).toBe(404); // no state, no history: nothing at all under the prefix
    expect((await b.read()).state.version).toBe(0);
    // The same transaction sent to Consul by hand: its 413, which the store spared the caller.
    const raw = await fetch(`http://${consul.httpAddr}/v1/txn`, {
      method: "PUT",
      body: casBody(`${over}/state`, withRules(baseB.state, textB, 1), baseB),
    });
    expect(raw.status).toBe(413);
    expect(await raw.text()).toMatch(/too large, max size: 524288 bytes/);
  });

  it("through the API: a RULES_MAX_BYTES relay.conf fits; a group's second large file is refused with POLYMUR_ERR_CONFIG, and nothing changes", async () => {
    const prefix = freshPrefix();
    const s = await open(consul, prefix);
    const c = client(s);
    const all = { target: { case: "all" as const, value: true } };
    const web = { target: { case: "group" as const, value: "web" } };
    // A relay.conf of RULES_MAX_BYTES: a cluster, then match rules, one per line.
    const relayConf = (size: number, cluster: string): Buffer => {
      let text = `cluster ${cluster}\n    forward 10.0.7.1:2003 10.0.7.2:2003\n    ;\n`;
      for (let i = 0; text.length < size; i++) {
        text += `match ^servers\\.host${String(i).padStart(6, "0")}\\. send to ${cluster} stop;\n`;
      }
      // Cut at a line end, padded with a comment to exactly `size` bytes.
      text = text.slice(0, text.lastIndexOf("\n", size - 40) + 1);
      text += `#${"-".repeat(size - text.length - 2)}\n`;
      return Buffer.from(text, "latin1");
    };
    const fleet = relayConf(RULES_MAX_BYTES, "sinks");
    expect(fleet.byteLength).toBe(RULES_MAX_BYTES);
    const set = await c.setRules({ scope: all, rules: { content: fleet, fileName: "relay.conf" } });
    expect(set.version).toBe(1n);

    // A group's own file of 200 KiB besides it: the state would not fit in one transaction.
    const group = relayConf(200 * 1024, "websinks");
    const e = await refusal(
      c.setRules({ scope: web, rules: { content: group, fileName: "web.conf" } }),
    );
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.metadata.get(ERROR_CODE_HEADER)).toBe(ErrorCode.Config);
    expect(e.rawMessage).toMatch(
      new RegExp(
        `^the state would be too large for the state store consul://[^ ]+/${prefix}: version 2 is \\d+ bytes of JSON, and written to Consul it is one transaction of \\d+ bytes \\(the state's JSON in base64\\), more than the 524288 bytes \\(512 KiB\\) Consul takes in one \\(txn_max_req_len, its default\\); nothing was changed\\. To make it smaller: its rules files make most of it \\(the fleet's relay\\.conf, 2\\d\\d\\.\\d KiB; group web's web\\.conf, 2\\d\\d\\.\\d KiB\\): set smaller ones \\(polymurctl rules set\\), or unset a group's own \\(polymurctl rules unset --group NAME\\) where the fleet's will do$`,
      ),
    );
    const size = Number(/one transaction of (\d+) bytes/.exec(e.rawMessage)?.[1]);
    expect(size).toBeGreaterThan(CONSUL_TXN_MAX_BYTES);
    // Nothing changed: still version 1, the group follows the fleet, the history has one version.
    const rules = await c.getRules({});
    expect([rules.version, rules.rules.map((r) => r.rules?.fileName)]).toEqual([
      1n,
      ["relay.conf"],
    ]);
    expect((await c.listHistory({})).entries.map((x) => x.version)).toEqual([1n]);
    // A smaller file for the group fits.
    const smaller = relayConf(64 * 1024, "websinks");
    expect(
      (await c.setRules({ scope: web, rules: { content: smaller, fileName: "web.conf" } })).version,
    ).toBe(2n);
  });

  it("through the API: a file within RULES_MAX_BYTES of bytes JSON must escape is refused the same way", async () => {
    const s = await open(consul, freshPrefix());
    const c = client(s);
    // Comments of Latin-1 bytes: one byte each in the file, two in the state's JSON (UTF-8).
    const lines = ["cluster sinks\n    forward 10.0.7.1:2003\n    ;\nmatch * send to sinks;\n"];
    while (lines.join("").length < 250 * 1024) lines.push(`# ${"\u00e9".repeat(76)}\n`);
    const content = Buffer.from(lines.join(""), "latin1");
    expect(content.byteLength).toBeLessThanOrEqual(RULES_MAX_BYTES);
    const e = await refusal(
      c.setRules({
        scope: { target: { case: "all", value: true } },
        rules: { content, fileName: "accents.conf" },
      }),
    );
    expect([e.code, e.metadata.get(ERROR_CODE_HEADER)]).toEqual([
      Code.InvalidArgument,
      ErrorCode.Config,
    ]);
    expect(e.rawMessage).toMatch(/\(the fleet's accents\.conf, 49\d\.\d KiB\)/);
    expect((await c.getRules({})).version).toBe(0n);
  });
});

describe.skipIf(withoutConsul)(
  "a Consul set up to take smaller transactions (txn_max_req_len)",
  () => {
    let agent: ConsulProcess;
    let store: ConsulStore;

    beforeAll(async () => {
      const [http, serfLan, serfWan, server] = (await freePorts(4)) as [
        number,
        number,
        number,
        number,
      ];
      // As startConsulDev, with the limit lowered to 64 KiB.
      agent = new ConsulProcess("dev-small-txn", { http, serfLan, serfWan, server }, [
        "agent",
        "-dev",
        "-bind",
        "127.0.0.1",
        "-client",
        "127.0.0.1",
        "-http-port",
        String(http),
        "-dns-port",
        "-1",
        "-grpc-port",
        "-1",
        "-serf-lan-port",
        String(serfLan),
        "-serf-wan-port",
        String(serfWan),
        "-server-port",
        String(server),
        "-hcl",
        // Consul takes the larger of the two for a transaction.
        "limits { txn_max_req_len = 65536, kv_max_value_size = 65536 }",
        "-log-level",
        "warn",
      ]);
      await waitFor(
        "consul dev agent leader",
        async () => {
          if (!agent.running) throw new Error(`consul exited:\n${agent.output}`);
          return (await agent.leader()) !== "" ? true : undefined;
        },
        20_000,
      );
      store = new ConsulStore({
        addresses: [{ host: "127.0.0.1", port: http }],
        prefix: freshPrefix(),
        waitSec: 10,
      });
      await store.open();
    });
    afterAll(async () => {
      await store?.close();
      await agent?.stop();
    });

    it("its 413 becomes the same refusal (not 'unreachable'), with what Consul said", async () => {
      const text = "#".repeat(100 * 1024);
      let err: unknown;
      try {
        await updateState(store, (s) => withRules(s, text, 0), rulesSet);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PolymurError);
      expect((err as PolymurError).code).toBe(ErrorCode.Config);
      expect((err as PolymurError).message).toMatch(
        /^the state would be too large for the state store consul:\/\/[^ ]+: version 1 is \d+ bytes of JSON, and Consul refused its transaction of \d+ bytes \(Consul answered 413: Request body\(\d+ bytes\) too large, max size: 65536 bytes\. See [^)]+\); nothing was changed\. To make it smaller: its rules files make most of it \(the fleet's big\.conf, 100\.0 KiB\)/,
      );
      expect(store.reachable()).toBe(true);
      expect((await store.read()).state.version).toBe(0);
      // A state that fits is written as ever.
      expect((await updateState(store, (s) => withRules(s, "#", 0), rulesSet)).version).toBe(1);
    });
  },
);
