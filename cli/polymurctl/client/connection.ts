import { hostname, userInfo } from "node:os";
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
 * The header in which polymurctl says who runs it; the control plane records
 * it in the history with each change (what the caller claims, not a
 * credential: every admin shares one).
 */
export const ACTOR_HEADER = "polymur-actor";

/** Who runs polymurctl: POLYMUR_ACTOR when set (a CI job's name), else user@host. */
export function actorName(env: NodeJS.ProcessEnv = process.env): string {
  const set = env["POLYMUR_ACTOR"]?.trim();
  if (set) return set;
  let user = env["USER"] ?? env["LOGNAME"] ?? "";
  try {
    user = userInfo().username;
  } catch {}
  return `${user || "unknown"}@${hostname()}`;
}

/**
 * Opens a connection: gRPC over HTTP/2 (cleartext or TLS with `settings.ca`), the admin
 * credential as a bearer token on every call that needs it (UsageError when there is none),
 * and who runs polymurctl (ACTOR_HEADER) on those calls.
 */
export function connect(settings: CtlSettings): CtlConnection {
  // One HTTP/2 session for every call of the command; aborted at the end, else its
  // idle timer would keep the process alive.
  const nodeOptions = settings.ca === undefined ? {} : { ca: settings.ca };
  const sessionManager = new Http2SessionManager(settings.server, {}, nodeOptions);
  // Header values are ASCII: anything else in a user or host name is left out.
  const actor = actorName().replace(/[^\x20-\x7e]/g, "");
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${settings.token}`);
    if (actor !== "") req.header.set(ACTOR_HEADER, actor);
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
