import type http from "node:http";
import type { Logger } from "../../../common/logger.ts";
import type { ApiKeyRing } from "./api-keys.ts";
import type { BatchIntake } from "./batch-intake.ts";
import type { GatewayCounters } from "./gateway-counters.ts";

import type { ServerRequest as Req, ServerResponse as Res } from "./gateway-listener.ts";

export interface LegacyHandlerOptions {
  intake: BatchIntake;
  keys: ApiKeyRing;
  counters: GatewayCounters;
  log: Logger;
  maxBatchBytes: number;
  /** The client's address for logs and counters. */
  clientOf(req: Req): string;
  /** Aborted when the gateway shuts down. */
  shutdown: AbortSignal;
}

/**
 * The Go polymur-proxy's protocol (listener/http.go in jamiealquiza/polymur),
 * so existing proxies can point at a polymur gateway unchanged:
 *
 *   POST /ping     X-Polymur-Key: <key>  → 200 "key is valid\n" | 401 "invalid key"
 *   POST /ingest   X-Polymur-Key: <key>, body: gzip of newline-terminated lines
 *                  → 200 "Batch Received\n" | 400 "Batch Malformed\n" | 401 "invalid key"
 *                  | 413 "Batch Too Large\n" | 503 "Shutting Down\n"
 *
 * One difference on purpose: the Go gateway answered 200 as soon as it had
 * read the body, before queueing anything; this one answers 200 only once
 * every line is in the destination queues (and holds the request while a
 * queue under the block policy is full). The Go proxy never resends, so a
 * batch it sent before an error is lost either way; it keeps no seq, so there
 * is no de-duplication on this path.
 */
export function createLegacyHandler(o: LegacyHandlerOptions): (req: Req, res: Res) => void {
  return (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== "/ingest" && path !== "/ping") {
      reply(res, 404, "not found\n");
      return;
    }
    const client = o.clientOf(req);
    const keyHeader = req.headers["x-polymur-key"];
    const secret = Array.isArray(keyHeader) ? (keyHeader[0] ?? "") : (keyHeader ?? "");
    const key = o.keys.authenticate(secret);
    if (path === "/ping") {
      drain(req);
      if (key === null) {
        o.counters.authFailures.legacy++;
        o.log.warn({ client }, "polymur-proxy /ping: invalid key");
        reply(res, 401, "invalid key");
      } else {
        o.log.info({ client, key: key.name }, "polymur-proxy /ping: key is valid");
        reply(res, 200, "key is valid\n");
      }
      return;
    }
    if (req.method !== "POST") {
      drain(req);
      o.counters.legacy(405);
      reply(res, 405, "method not allowed\n");
      return;
    }
    if (key === null) {
      drain(req);
      o.counters.authFailures.legacy++;
      o.counters.legacy(401);
      o.log.warn({ client }, "polymur-proxy /ingest: invalid key");
      reply(res, 401, "invalid key");
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > o.maxBatchBytes) tooLarge = true;
      if (!tooLarge) chunks.push(c);
    });
    req.on("error", () => {});
    req.on("end", () => {
      if (tooLarge) {
        o.counters.legacy(413);
        reply(res, 413, "Batch Too Large\n");
        return;
      }
      void (async () => {
        if (!(await o.intake.ready(o.shutdown))) {
          o.counters.legacy(503);
          reply(res, 503, "Shutting Down\n");
          return;
        }
        const r = o.intake.legacy(key, client, Buffer.concat(chunks, size));
        o.counters.legacy(r.status);
        reply(res, r.status, r.text);
      })().catch((err: unknown) => {
        o.log.error({ err, client }, "polymur-proxy /ingest failed");
        reply(res, 500, "internal error\n");
      });
    });
  };
}

function drain(req: Req): void {
  req.on("error", () => {});
  req.resume();
}

function reply(res: Res, status: number, text: string): void {
  if (res.headersSent || res.writableEnded) return;
  (res as http.ServerResponse).writeHead(status, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}
