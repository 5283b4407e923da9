import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "../../../common/logger.ts";
import type { IngestService, StreamRequest } from "../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { type ApiKey, type ApiKeyRing, keyId } from "./api-keys.ts";
import type { BatchIntake, StreamResponseInit } from "./batch-intake.ts";
import { ClaimBoard, localClaims, type ProxyClaims } from "./claim-board.ts";
import type { DedupTable } from "./dedup-table.ts";
import type { GatewayCounters } from "./gateway-counters.ts";

/** Every LinkServiceOptions default, in one place. */
export const LINK_SERVICE_DEFAULTS = {
  /**
   * While another instance of its proxy id is refused, a connected stream
   * must answer an HTTP/2 PING this soon or it is cut (the proxy's own
   * --ping-timeout default).
   */
  probeTimeoutMs: 5_000,
} as const;

export interface LinkServiceOptions {
  intake: BatchIntake;
  keys: ApiKeyRing;
  /** The DedupTable the intake checks and records into (this process's). */
  dedup: DedupTable;
  /**
   * Who holds each proxy id, across the gateway's processes: a worker's
   * DedupClient, or the primary's ClaimBoard (localClaims). Default: this
   * process alone, a ClaimBoard over `dedup`.
   */
  claims?: ProxyClaims;
  counters: GatewayCounters;
  log: Logger;
  /** Aborted when the gateway shuts down: every stream ends with Unavailable. */
  shutdown: AbortSignal;
  /** The client's address (X-Forwarded-For from trusted proxies, else the peer). */
  clientOf(ctx: HandlerContext): string;
  /**
   * Whether the connection under a stream still answers: an HTTP/2 PING
   * answered within `timeoutMs`. Asked of a connected stream when another
   * instance of its proxy id is refused, so that a proxy that died without
   * closing its connection does not keep its restarted self out for good.
   * Default: no probe (always alive).
   */
  alive?(ctx: HandlerContext, timeoutMs: number): Promise<boolean>;
  /** How long a probed stream has to answer. Default 5 s. */
  probeTimeoutMs?: number;
}

/** Why the gateway ended a stream itself. */
type CutReason = "key_revoked" | "unresponsive" | "moved";

/** A stream in progress, so that revoking its key can cut it, and its proxy id be held. */
interface ActiveStream {
  /** Its number in this process (the claims' stream number). */
  id: number;
  key: ApiKey;
  cut: AbortController;
  cutReason: CutReason | null;
  ctx: HandlerContext;
  client: string;
  /** Whether its claim was taken: it holds its proxy id until it ends (ProxyClaims.end). */
  held: boolean;
  instance: string;
  since: string;
  probing: boolean;
}

const MAX_PROXY_ID = 256;
const MAX_INSTANCE_ID = 256;

/**
 * The link service: the gateway's side of a proxy link, the wire service
 * polymur.ingest.v1.IngestService (its name on the wire since the first
 * release; in code "ingest" is only the listener stage). Authenticates the
 * API key (`authorization: Bearer`) once per stream; answers Hello with
 * Welcome (what this proxy already has queued here); then answers every Batch
 * with Ack (once its lines are queued) or Reject. While the router is blocked
 * (a full queue under the block policy) it stops reading the stream, so HTTP/2
 * flow control holds the proxy back. A key that is deleted or rotated cuts
 * its streams at once (Unauthenticated); a gateway shutting down ends them
 * with Unavailable, and the proxies reconnect elsewhere.
 *
 * One proxy id, one process at a time. Hello.instance_id is random per proxy
 * process; a stream whose (key, proxy id) is held by a connected stream of
 * another instance is refused with AlreadyExists (counted, logged; its proxy
 * keeps its batches and retries), and the connected one is asked to answer a
 * PING (cut if it does not: a dead proxy must not hold its id). Batches are
 * de-duplicated per instance (DedupTable.claim), so two processes sharing an
 * id (a copied spool) never have one's batches acknowledged by the other's
 * seqs, whichever is ahead; when they take turns, that is logged and counted.
 *
 * With several gateway processes (--workers), these rules hold across them:
 * the primary decides (ClaimBoard, claim-board.ts) and every process claims
 * there at Hello. A proxy that reconnects to another process of the gateway
 * has its stream in the first process cut ("moved") before the new one is
 * welcomed, so one proxy's batches are queued by one process at a time, in
 * order, and none acknowledged by one is queued again by another.
 */
export function createLinkService(o: LinkServiceOptions): ServiceImpl<typeof IngestService> {
  const active = new Map<number, ActiveStream>();
  let streams = 0;
  const claims = o.claims ?? localClaims(new ClaimBoard(o.dedup));
  const cut = (s: ActiveStream, reason: CutReason, err: ConnectError): void => {
    if (s.cut.signal.aborted) return;
    s.cutReason = reason;
    o.counters.streamsCut[reason]++;
    s.cut.abort(err);
  };
  o.keys.on("changed", (removed) => {
    for (const s of active.values()) {
      if (!removed.has(keyId(s.key))) continue;
      cut(s, "key_revoked", new ConnectError("API key revoked", Code.Unauthenticated));
    }
  });
  /** Asks a connected stream's connection for a PING; cuts the stream if none comes back. */
  const probe = (s: ActiveStream): void => {
    if (o.alive === undefined || s.probing || s.cut.signal.aborted) return;
    s.probing = true;
    const timeoutMs = o.probeTimeoutMs ?? LINK_SERVICE_DEFAULTS.probeTimeoutMs;
    o.alive(s.ctx, timeoutMs).then(
      (alive) => {
        s.probing = false;
        if (alive || !active.has(s.id)) return;
        cut(
          s,
          "unresponsive",
          new ConnectError(
            `the connection did not answer a PING within ${timeoutMs} ms while another instance of the proxy id waited`,
            Code.Unavailable,
          ),
        );
      },
      () => {
        s.probing = false;
      },
    );
  };
  claims.attach({
    probe: (id) => {
      const s = active.get(id);
      // Over already (its end may still be on its way): say so again.
      if (s === undefined) claims.end(id);
      else probe(s);
    },
    cut: (id) => {
      const s = active.get(id);
      if (s === undefined) return;
      cut(
        s,
        "moved",
        new ConnectError(
          "the proxy reconnected to another process of this gateway",
          Code.Unavailable,
        ),
      );
    },
  });

  return {
    async *stream(requests: AsyncIterable<StreamRequest>, ctx: HandlerContext) {
      const client = o.clientOf(ctx);
      const key = o.keys.authenticate(bearer(ctx.requestHeader.get("authorization")));
      if (key === null) {
        o.counters.authFailures.stream++;
        o.log.warn({ client }, "proxy stream refused: missing or unknown API key");
        throw new ConnectError("unknown API key", Code.Unauthenticated);
      }
      const s: ActiveStream = {
        id: ++streams,
        key,
        cut: new AbortController(),
        cutReason: null,
        ctx,
        client,
        held: false,
        instance: "",
        since: "",
        probing: false,
      };
      active.set(s.id, s);
      o.counters.streamOpened(key.name);
      const signal = AbortSignal.any([ctx.signal, s.cut.signal, o.shutdown]);
      const it = requests[Symbol.asyncIterator]();
      let proxyId = "";
      try {
        const hello = await next(it, signal);
        if (hello === null) return;
        if (hello.msg.case !== "hello") {
          throw new ConnectError("the first message must be Hello", Code.InvalidArgument);
        }
        proxyId = hello.msg.value.proxyId;
        if (proxyId === "" || proxyId.length > MAX_PROXY_ID) {
          throw new ConnectError(
            `Hello.proxy_id must be 1 to ${MAX_PROXY_ID} characters`,
            Code.InvalidArgument,
          );
        }
        const instance = hello.msg.value.instanceId;
        if (instance.length > MAX_INSTANCE_ID) {
          throw new ConnectError(
            `Hello.instance_id must be at most ${MAX_INSTANCE_ID} characters`,
            Code.InvalidArgument,
          );
        }
        s.instance = instance;
        const answer = await claims
          .claim({ stream: s.id, keyName: key.name, proxyId, instance, client })
          .catch(() => {
            throw new ConnectError("gateway process ending", Code.Unavailable);
          });
        if (answer.ok) s.held = true;
        // Cut (a key revoked, its proxy already elsewhere) or gone while it waited.
        if (s.cut.signal.aborted) throw s.cut.signal.reason;
        if (signal.aborted) return;
        if (!answer.ok) {
          const other = answer.holder;
          o.counters.streamsRefused.proxy_id_in_use++;
          o.log.warn(
            {
              client,
              key: key.name,
              proxyId,
              instance,
              connected: { instance: other.instance, client: other.client, since: other.since },
            },
            "proxy stream refused: its proxy id is in use by another connected proxy instance (two proxies with one proxy id: a copied spool directory?); it keeps its batches and retries",
          );
          throw new ConnectError(
            `proxy id "${proxyId}" is in use by another connected proxy (instance ${other.instance || "(none)"} from ${other.client}, since ${other.since}): two proxies share one proxy id (a copied --spool-dir?); refused while the other is connected, keep the batches and retry`,
            Code.AlreadyExists,
          );
        }
        s.since = new Date().toISOString();
        const { change, previous, acked } = answer;
        if (change === "new") {
          o.counters.proxyInstances.new++;
          o.log.info(
            { client, key: key.name, proxyId, instance, previous },
            "proxy id taken over by a new instance (the proxy restarted, or another proxy uses the same id): its batches are de-duplicated apart from the previous instance's",
          );
        } else if (change === "returning") {
          o.counters.proxyInstances.returning++;
          o.log.warn(
            { client, key: key.name, proxyId, instance, previous },
            "two live proxy instances take turns with one proxy id (a copied spool directory?): each one's batches are de-duplicated apart, none is acknowledged for the other; give each proxy its own spool",
          );
        }
        o.log.info(
          { client, key: key.name, proxyId, instance, ackedSeq: acked },
          "proxy connected",
        );
        yield {
          msg: { case: "welcome", value: { keyName: key.name, ackedSeq: BigInt(acked) } },
        } satisfies StreamResponseInit;
        for (;;) {
          if (!(await o.intake.ready(signal))) break;
          const req = await next(it, signal);
          if (req === null) break;
          if (req.msg.case !== "batch") {
            throw new ConnectError("expected a Batch after Hello", Code.InvalidArgument);
          }
          // Cut meanwhile (its proxy moved to another process): not one more batch.
          if (s.cut.signal.aborted) break;
          yield o.intake.batch(key, proxyId, client, req.msg.value);
        }
        if (s.cut.signal.aborted) throw s.cut.signal.reason;
        if (o.shutdown.aborted) {
          o.counters.streamsCut.shutdown++;
          throw new ConnectError("gateway shutting down", Code.Unavailable);
        }
      } finally {
        active.delete(s.id);
        // After its last batch: with a worker's claims, after its last record.
        if (s.held) claims.end(s.id);
        o.counters.streamClosed(key.name);
        const instance = s.instance;
        if (s.cutReason === "key_revoked") {
          o.log.warn({ client, key: key.name, proxyId }, "proxy stream cut: API key revoked");
        } else if (s.cutReason === "unresponsive") {
          o.log.warn(
            { client, key: key.name, proxyId, instance },
            "proxy stream cut: its connection did not answer a PING while another instance of its proxy id waited",
          );
        } else if (s.cutReason === "moved") {
          o.log.info(
            { client, key: key.name, proxyId, instance },
            "proxy stream ended: the proxy reconnected to another process of this gateway",
          );
        } else if (s.held) {
          o.log.info({ client, key: key.name, proxyId, instance }, "proxy disconnected");
        }
      }
    },
  };
}

/** `Bearer <secret>` → secret ("" if absent or another scheme). */
function bearer(header: string | null): string {
  if (header === null) return "";
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m === null ? "" : m[1]!;
}

/**
 * The next request, or null when the stream ended or `signal` aborted first.
 * A pull left pending by an abort is settled later by connect; its result is
 * ignored.
 */
async function next(
  it: AsyncIterator<StreamRequest>,
  signal: AbortSignal,
): Promise<StreamRequest | null> {
  if (signal.aborted) return null;
  const pull = it.next();
  pull.catch(() => {});
  let onAbort = (): void => {};
  const aborted = new Promise<null>((resolve) => {
    onAbort = () => resolve(null);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const r = await Promise.race([pull, aborted]);
    if (r === null || r.done === true) return null;
    return r.value;
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
