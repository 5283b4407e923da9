import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "../../../common/logger.ts";
import type { IngestService, StreamRequest } from "../../../gen/polymur/ingest/v1/ingest_pb.ts";
import { type ApiKey, type ApiKeyRing, keyId } from "./api-keys.ts";
import type { BatchIntake, StreamResponseInit } from "./batch-intake.ts";
import type { DedupTable } from "./dedup-table.ts";
import type { GatewayCounters } from "./gateway-counters.ts";

export interface LinkServiceOptions {
  intake: BatchIntake;
  keys: ApiKeyRing;
  dedup: DedupTable;
  counters: GatewayCounters;
  log: Logger;
  /** Aborted when the gateway shuts down: every stream ends with Unavailable. */
  shutdown: AbortSignal;
  /** The client's address (X-Forwarded-For from trusted proxies, else the peer). */
  clientOf(ctx: HandlerContext): string;
}

/** A stream in progress, so that revoking its key can cut it. */
interface ActiveStream {
  key: ApiKey;
  cut: AbortController;
}

const MAX_PROXY_ID = 256;

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
 */
export function createLinkService(o: LinkServiceOptions): ServiceImpl<typeof IngestService> {
  const active = new Set<ActiveStream>();
  o.keys.on("changed", (removed) => {
    for (const s of active) {
      if (!removed.has(keyId(s.key))) continue;
      o.counters.streamsCut.key_revoked++;
      s.cut.abort(new ConnectError("API key revoked", Code.Unauthenticated));
    }
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
      const s: ActiveStream = { key, cut: new AbortController() };
      active.add(s);
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
        const acked = o.dedup.highest(key.name, proxyId);
        o.log.info({ client, key: key.name, proxyId, ackedSeq: acked }, "proxy connected");
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
          yield o.intake.batch(key, proxyId, client, req.msg.value);
        }
        if (s.cut.signal.aborted) throw s.cut.signal.reason;
        if (o.shutdown.aborted) {
          o.counters.streamsCut.shutdown++;
          throw new ConnectError("gateway shutting down", Code.Unavailable);
        }
      } finally {
        active.delete(s);
        o.counters.streamClosed(key.name);
        if (s.cut.signal.aborted) {
          o.log.warn({ client, key: key.name, proxyId }, "proxy stream cut: API key revoked");
        } else if (proxyId !== "") {
          o.log.info({ client, key: key.name, proxyId }, "proxy disconnected");
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
