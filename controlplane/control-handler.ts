import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ConnectRouterOptions,
  createConnectRouter,
} from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  type connectNodeAdapter,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { drainWhenAnswered } from "../common/drain-when-answered.ts";
import type { Logger } from "../common/logger.ts";
import {
  type AuthDenial,
  type CredentialCheck,
  type CredentialKind,
  refusalError,
} from "./auth.ts";

type NodeHandlerFn = ReturnType<typeof connectNodeAdapter>;

export interface ControlHandlerOptions extends ConnectRouterOptions {
  routes: (router: ConnectRouter) => void;
  /** The credential each service needs, by type name; a service not named is open (health). */
  required: ReadonlyMap<string, CredentialKind>;
  check: CredentialCheck;
  onDenied?: (d: AuthDenial) => void;
  /** Where a handler's unexpected failure is reported (connectNodeAdapter prints it). */
  log?: Logger;
}

/**
 * connect-node's `connectNodeAdapter`, with the caller's credential checked
 * before a byte of the request's body is read. Connect runs interceptors
 * only once the request message is parsed, so the credential interceptor
 * alone let any caller, with no credential at all, make the control plane
 * read a message of up to the read limit (4 GiB by default: a 400 MB call
 * ran it out of heap) and answer INTERNAL for a body that did not parse.
 * A refused call is handed to its Connect handler with a body that fails with
 * the refusal, so that each protocol (gRPC, gRPC-Web, Connect) answers it in
 * its own way, with the same code, message and POLYMUR_ERR_* header as the
 * interceptor's; the body itself is never read.
 */
export function createControlHandler(o: ControlHandlerOptions): NodeHandlerFn {
  const { routes, required, check, onDenied, log, ...routerOptions } = o;
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    ...routerOptions,
  });
  routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) paths.set(h.requestPath, h);
  return (req, res) => {
    const handler = paths.get((req.url ?? "").split("?", 2)[0] ?? "");
    if (handler === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    let ureq: UniversalServerRequest;
    try {
      ureq = universalRequestFromNodeRequest(req, res, undefined, undefined);
    } catch {
      // No authority (neither :authority nor Host): not a request Connect can serve.
      res.writeHead(400);
      res.end();
      return;
    }
    const kind = required.get(handler.service.typeName);
    const refusal = kind === undefined ? null : check.refusal(kind, authorization(req.headers));
    if (refusal !== null) {
      onDenied?.({
        service: handler.service.typeName,
        method: handler.method.name,
        ...refusal,
      });
      ureq = refused(ureq, refusalError(refusal));
    }
    drainWhenAnswered(req);
    handler(ureq)
      .then((ures) => universalResponseToNodeResponse(ures, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        log?.error(
          { service: handler.service.typeName, method: handler.method.name, err: reason },
          "handler failed",
        );
      });
  };
}

function authorization(headers: Record<string, string | string[] | undefined>): string | null {
  const v = headers["authorization"];
  if (v === undefined) return null;
  return Array.isArray(v) ? v.join(", ") : v; // as Headers.get() joins a repeated header
}

/**
 * The request with a body that fails with `err` on the first read. Without
 * its Content-Length too: the Connect protocol checks a declared length
 * against the read limit before reading, and would answer RESOURCE_EXHAUSTED
 * to a caller that has no credential.
 */
function refused(req: UniversalServerRequest, err: ConnectError): UniversalServerRequest {
  const header = new Headers(req.header);
  header.delete("content-length");
  const body: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(err) }),
  };
  return { ...req, header, body };
}
