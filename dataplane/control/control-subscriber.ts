import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { create, fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BACKOFF_DEFAULTS, backoffDelay, sleep } from "../../common/backoff.ts";
import { ThrottledWarning } from "../../common/log-throttle.ts";
import type { Logger } from "../../common/logger.ts";
import { privateDir, writePrivateFile } from "../../common/private-files.ts";
import {
  type DestinationStatus,
  DestinationStatusSchema,
  type NodeConfig,
  NodeConfigSchema,
  type NodeCounters,
  NodeCountersSchema,
  NodeService,
} from "../../gen/polymur/control/v1/control_pb.ts";
import { unusedWithRules } from "./unused-with-rules.ts";

export type NodeRole = "relay" | "gateway" | "proxy";

/** What a node reports about itself every few seconds. */
export interface NodeStatus {
  counters: Partial<Omit<NodeCounters, "$typeName">>;
  destinations: Array<Partial<Omit<DestinationStatus, "$typeName">>>;
}

/**
 * Every ControlSubscriberOptions default, in one place: the subscriber falls
 * back to these. The reconnect delay starts at 200 ms (not the data plane's
 * 100 ms) and is capped like every other reconnect (BACKOFF_DEFAULTS.maxMs).
 */
export const CONTROL_SUBSCRIBER_DEFAULTS = {
  reportIntervalMs: 5_000,
  logRepeatMs: 60_000,
  backoffMinMs: 200,
  backoffMaxMs: BACKOFF_DEFAULTS.maxMs,
} as const satisfies Partial<ControlSubscriberOptions>;

export interface ControlSubscriberOptions {
  /** Control plane URL, http:// (cleartext HTTP/2) or https://. */
  url: string;
  /** This node's group. */
  group: string;
  role: NodeRole;
  /** The node credential (POLYMUR_NODE_TOKEN). */
  nodeToken: string;
  /**
   * Where the last applied configuration (and this node's id) is kept, so a
   * node restarted while the control plane is unreachable forwards with it.
   * Default: none (an unreachable control plane at start means no config).
   */
  stateDir?: string;
  /** PEM CA certificate(s) to trust for an https control plane. Default: the system's. */
  ca?: string;
  log: Logger;
  /**
   * Applies a snapshot; throws to refuse it (it is then logged and the
   * previous configuration stays).
   */
  onConfig(config: NodeConfig): void;
  status(): NodeStatus;
  /** Interval of status reports. Default 5 s. */
  reportIntervalMs?: number;
  /**
   * While the control plane stays unreachable (or refuses the credential),
   * the failure is logged again at most this often, with how many attempts
   * failed since. Default 60 s.
   */
  logRepeatMs?: number;
  /** Reconnect delays. Default 200 ms doubling to 10 s, with jitter. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

export interface ControlSubscriber {
  readonly nodeId: string;
  /** Version of the configuration applied last (0 = none). */
  readonly appliedVersion: bigint;
  /** Applies the saved configuration, if any, and starts subscribing. */
  start(): void;
  stop(): Promise<void>;
}

const STATE_FILE = "control-config.json";
const ID_FILE = "node-id";

/**
 * The data-plane side of the control plane: one Subscribe stream (a full,
 * versioned snapshot at once and after every change), applied in order;
 * periodic status reports; reconnect with capped, jittered backoff; and the
 * last applied snapshot saved (atomically) so the node keeps forwarding on it
 * across its own restart while the control plane is gone.
 */
export function createControlSubscriber(options: ControlSubscriberOptions): ControlSubscriber {
  const log = options.log;
  const nodeId = loadNodeId(options.stateDir);
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${options.nodeToken}`);
    return next(req);
  };
  const transport = createGrpcTransport({
    baseUrl: options.url,
    interceptors: [auth],
    pingIntervalMs: 10_000,
    pingTimeoutMs: 5_000,
    ...(options.ca === undefined ? {} : { nodeOptions: { ca: options.ca } }),
  });
  const client = createClient(NodeService, transport);
  const stop = new AbortController();
  let applied = 0n;
  let appliedAny = false;
  /** The last unusedWithRules warning: logged once, again only when it changes. */
  let unusedWarned: string | null = null;
  let running: Promise<void> | null = null;
  let reportTimer: NodeJS.Timeout | null = null;
  const min = options.backoffMinMs ?? CONTROL_SUBSCRIBER_DEFAULTS.backoffMinMs;
  const max = options.backoffMaxMs ?? CONTROL_SUBSCRIBER_DEFAULTS.backoffMaxMs;
  const repeatMs = options.logRepeatMs ?? CONTROL_SUBSCRIBER_DEFAULTS.logRepeatMs;
  /**
   * The current outage: since when, its failed attempts, and its repeats
   * (one line per repeatMs); null while subscribed (or before the first try).
   */
  let outage: { since: number; failures: number; repeats: ThrottledWarning } | null = null;

  /** A failed attempt: said once in full, then at most once per repeatMs with a count. */
  const failed = (ce: ConnectError): void => {
    const refused = ce.code === Code.Unauthenticated || ce.code === Code.PermissionDenied;
    const fields = { code: Code[ce.code], url: options.url, applied: String(applied) };
    if (outage !== null) {
      outage.failures++;
      outage.repeats.note({ ...fields, err: ce.rawMessage });
      return;
    }
    const repeats = new ThrottledWarning(
      log,
      repeatMs,
      `control plane still unreachable or refusing; retrying, forwarding on configuration version ${applied} (count: failed attempts since the last line)`,
    );
    repeats.hold();
    outage = { since: Date.now(), failures: 1, repeats };
    if (refused) {
      log.error(
        fields,
        `control plane refused the node credential: ${ce.rawMessage}; check POLYMUR_NODE_TOKEN (retrying)`,
      );
    } else {
      log.warn(
        fields,
        `control plane unreachable (${ce.rawMessage}); forwarding on configuration version ${applied}`,
      );
    }
  };

  /** A stream delivered a snapshot: if it was unreachable, say once that it is back. */
  const reached = (): void => {
    if (outage === null) return;
    const downMs = Date.now() - outage.since;
    log.info(
      { url: options.url, downMs, failures: outage.failures },
      `control plane reachable again after ${Math.round(downMs / 1000)} s (${outage.failures} failed attempts)`,
    );
    outage = null;
  };

  const apply = (config: NodeConfig, source: string): boolean => {
    try {
      options.onConfig(config);
    } catch (err) {
      log.error(
        { version: String(config.version), err: (err as Error).message, source },
        "control plane: configuration refused; keeping the previous one",
      );
      return false;
    }
    applied = config.version;
    appliedAny = true;
    log.info(
      {
        version: String(config.version),
        destinations: config.destinations,
        ...(config.rules === undefined ? {} : { rules: config.rules.fileName }),
        source,
      },
      `control plane: configuration version ${config.version} applied`,
    );
    const unused = unusedWithRules(config);
    if (unused !== null && unused !== unusedWarned)
      log.warn({ version: String(config.version) }, unused);
    unusedWarned = unused;
    return true;
  };

  const save = (config: NodeConfig): void => {
    if (options.stateDir === undefined) return;
    try {
      writePrivateFile(join(options.stateDir, STATE_FILE), toJsonString(NodeConfigSchema, config));
    } catch (err) {
      log.warn({ err: (err as Error).message }, "control plane: could not save the configuration");
    }
  };

  async function loop(): Promise<void> {
    let attempt = 0;
    while (!stop.signal.aborted) {
      try {
        const stream = client.subscribe(
          {
            nodeId,
            group: options.group,
            role: options.role,
            hostname: hostname(),
            appliedVersion: applied,
          },
          { signal: stop.signal },
        );
        for await (const res of stream) {
          attempt = 0;
          reached();
          const config = res.config;
          // Version 0 is a real state too (a control plane nobody has changed yet).
          if (config === undefined || (appliedAny && config.version === applied)) continue;
          if (apply(config, "control plane")) save(config);
          void report();
        }
        if (!stop.signal.aborted) log.warn("control plane: subscription ended; reconnecting");
      } catch (err) {
        if (stop.signal.aborted) break;
        failed(ConnectError.from(err));
      }
      await sleep(backoffDelay(attempt, min, max), stop.signal);
      attempt = Math.min(attempt + 1, 30);
    }
  }

  async function report(): Promise<void> {
    if (stop.signal.aborted) return;
    const s = options.status();
    try {
      await client.reportStatus(
        {
          nodeId,
          group: options.group,
          role: options.role,
          hostname: hostname(),
          appliedVersion: applied,
          counters: create(NodeCountersSchema, s.counters),
          destinations: s.destinations.map((d) => create(DestinationStatusSchema, d)),
        },
        { signal: stop.signal, timeoutMs: 5_000 },
      );
    } catch (err) {
      log.debug({ err: ConnectError.from(err).rawMessage }, "control plane: status report failed");
    }
  }

  return {
    nodeId,
    get appliedVersion() {
      return applied;
    },
    start() {
      const saved = loadSaved(options.stateDir, log);
      if (saved !== null) apply(saved, `saved in ${options.stateDir}`);
      running = loop();
      reportTimer = setInterval(
        () => void report(),
        options.reportIntervalMs ?? CONTROL_SUBSCRIBER_DEFAULTS.reportIntervalMs,
      );
    },
    async stop() {
      stop.abort();
      if (reportTimer !== null) clearInterval(reportTimer);
      await running;
    },
  };
}

function loadSaved(dir: string | undefined, log: Logger): NodeConfig | null {
  if (dir === undefined) return null;
  let text: string;
  try {
    text = readFileSync(join(dir, STATE_FILE), "utf8");
  } catch {
    return null;
  }
  try {
    return fromJsonString(NodeConfigSchema, text);
  } catch (err) {
    log.error(
      { err: (err as Error).message },
      "control plane: saved configuration unreadable; ignoring it",
    );
    return null;
  }
}

function loadNodeId(dir: string | undefined): string {
  const fresh = `${hostname()}-${randomBytes(6).toString("hex")}`;
  if (dir === undefined) return fresh;
  privateDir(dir);
  const path = join(dir, ID_FILE);
  try {
    const id = readFileSync(path, "utf8").trim();
    if (id !== "") return id;
  } catch {}
  writePrivateFile(path, fresh);
  return fresh;
}
