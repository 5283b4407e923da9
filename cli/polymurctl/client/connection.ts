import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { UsageError } from "../../../common/errors.ts";
import type { CtlSettings } from "./settings.ts";

/** A connection to the control plane, closed (so the process can exit) by `close`. */
export interface CtlConnection {
  settings: CtlSettings;
  client<T extends DescService>(service: T, opts?: { auth?: boolean }): Client<T>;
  close(): void;
}

/**
 * Opens a connection: gRPC over HTTP/2 (cleartext or TLS with `settings.ca`), the admin
 * credential as a bearer token on every call that needs it (UsageError when there is none).
 */
export function connect(settings: CtlSettings): CtlConnection {
  // One HTTP/2 session for every call of the command; aborted at the end, else its
  // idle timer would keep the process alive.
  const nodeOptions = settings.ca === undefined ? {} : { ca: settings.ca };
  const sessionManager = new Http2SessionManager(settings.server, {}, nodeOptions);
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${settings.token}`);
    return next(req);
  };
  return {
    settings,
    client(service, opts) {
      const needsAuth = opts?.auth !== false;
      if (needsAuth && settings.token === "") {
        throw new UsageError(
          "no admin credential: set POLYMUR_ADMIN_TOKEN (the control plane's), or token = … in ~/.config/polymur/polymurctl.conf",
        );
      }
      return createClient(
        service,
        createGrpcTransport({
          baseUrl: settings.server,
          sessionManager,
          interceptors: needsAuth ? [auth] : [],
          defaultTimeoutMs: settings.timeoutMs,
        }),
      );
    },
    close() {
      sessionManager.abort();
    },
  };
}
