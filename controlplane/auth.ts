import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ErrorCode } from "../common/errors.ts";
import { ERROR_CODE_HEADER } from "./rpc-errors.ts";

export type CredentialKind = "admin" | "node";

export interface Credentials {
  /** POLYMUR_ADMIN_TOKEN: ControlService (polymurctl). Required. */
  readonly admin: string;
  /** POLYMUR_NODE_TOKEN: NodeService (data-plane nodes). Empty: NodeService refuses every call. */
  readonly node: string;
}

const ENV: Record<CredentialKind, string> = {
  admin: "POLYMUR_ADMIN_TOKEN",
  node: "POLYMUR_NODE_TOKEN",
};
const SERVICE: Record<CredentialKind, string> = { admin: "ControlService", node: "NodeService" };

export interface AuthDenial {
  readonly service: string;
  readonly method: string;
  readonly code: Code;
  readonly reason: string;
}

/** Why a call's credential is refused: the code it is answered with, and what to do. */
export interface Refusal {
  readonly code: Code.Unauthenticated | Code.PermissionDenied;
  readonly reason: string;
}

/**
 * Checks an `authorization` header against the control plane's credentials.
 * The comparison is constant-time (both sides hashed first, so lengths do not
 * leak either); the credential is never logged. A missing or unknown
 * credential is UNAUTHENTICATED; the other kind's credential (a node's on
 * ControlService, the admin's on NodeService) is PERMISSION_DENIED.
 */
export class CredentialCheck {
  readonly #digests: Record<CredentialKind, Buffer | null>;

  constructor(credentials: Credentials) {
    this.#digests = {
      admin: credentials.admin === "" ? null : sha256(credentials.admin),
      node: credentials.node === "" ? null : sha256(credentials.node),
    };
  }

  /** Null when `header` carries the `required` credential; otherwise why not. */
  refusal(required: CredentialKind, header: string | null): Refusal | null {
    const other: CredentialKind = required === "admin" ? "node" : "admin";
    const m = header === null ? null : /^\s*bearer\s+(\S+)\s*$/i.exec(header);
    if (this.#digests[required] === null) {
      return {
        code: Code.Unauthenticated,
        reason: `${SERVICE[required]} is disabled: the control plane has no ${required} credential (start it with ${ENV[required]} set)`,
      };
    }
    if (m === null) {
      return {
        code: Code.Unauthenticated,
        reason:
          header === null
            ? `${SERVICE[required]} needs the ${required} credential: send "authorization: Bearer <token>" with the control plane's ${ENV[required]}`
            : `malformed authorization header: expected "Bearer <token>" (the control plane's ${ENV[required]})`,
      };
    }
    const presented = sha256(m[1]!);
    // Both comparisons always run: which one matched must not show in the timing.
    const isRequired = matches(this.#digests[required], presented);
    const isOther = matches(this.#digests[other], presented);
    if (isRequired) return null;
    if (isOther) {
      return {
        code: Code.PermissionDenied,
        reason: `that is the ${other} credential; ${SERVICE[required]} needs the ${required} credential (${ENV[required]})`,
      };
    }
    return {
      code: Code.Unauthenticated,
      reason: `the credential is not valid for this control plane; ${SERVICE[required]} needs its ${ENV[required]}`,
    };
  }
}

/** The error a refused call is answered with, its POLYMUR_ERR_* code in a header. */
export function refusalError(r: Refusal): ConnectError {
  return new ConnectError(r.reason, r.code, {
    [ERROR_CODE_HEADER]:
      r.code === Code.PermissionDenied ? ErrorCode.PermissionDenied : ErrorCode.Unauthenticated,
  });
}

/**
 * Requires a bearer credential of one kind on every call of the services it
 * is registered with (see CredentialCheck). The control plane's server checks
 * the same credential before it reads a request's body (createControlHandler); this
 * interceptor is what a router used without that server relies on.
 */
export function createAuthInterceptor(
  required: CredentialKind,
  credentials: Credentials | CredentialCheck,
  onDenied?: (d: AuthDenial) => void,
): Interceptor {
  const check =
    credentials instanceof CredentialCheck ? credentials : new CredentialCheck(credentials);
  return (next) => async (req) => {
    const r = check.refusal(required, req.header.get("authorization"));
    if (r !== null) {
      onDenied?.({ service: req.service.typeName, method: req.method.name, ...r });
      throw refusalError(r);
    }
    return next(req);
  };
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

function matches(expected: Buffer | null, presented: Buffer): boolean {
  return expected !== null && timingSafeEqual(expected, presented);
}
