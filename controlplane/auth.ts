import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ErrorCode } from "../common/errors.ts";

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

/**
 * Requires a bearer credential of one kind on every call of the services it
 * is registered with. The comparison is constant-time (both sides hashed
 * first, so lengths do not leak either); the credential is never logged.
 * A missing or unknown credential is UNAUTHENTICATED; the other kind's
 * credential (a node's on ControlService, the admin's on NodeService) is
 * PERMISSION_DENIED.
 */
export function createAuthInterceptor(
  required: CredentialKind,
  credentials: Credentials,
  onDenied?: (d: AuthDenial) => void,
): Interceptor {
  const digests: Record<CredentialKind, Buffer | null> = {
    admin: credentials.admin === "" ? null : sha256(credentials.admin),
    node: credentials.node === "" ? null : sha256(credentials.node),
  };
  const other: CredentialKind = required === "admin" ? "node" : "admin";
  return (next) => async (req) => {
    const deny = (code: Code, reason: string): never => {
      onDenied?.({ service: req.service.typeName, method: req.method.name, code, reason });
      throw new ConnectError(reason, code, {
        "polymur-error-code":
          code === Code.PermissionDenied ? ErrorCode.PermissionDenied : ErrorCode.Unauthenticated,
      });
    };
    const header = req.header.get("authorization");
    const m = header === null ? null : /^\s*bearer\s+(\S+)\s*$/i.exec(header);
    if (digests[required] === null) {
      deny(
        Code.Unauthenticated,
        `${SERVICE[required]} is disabled: the control plane has no ${required} credential (start it with ${ENV[required]} set)`,
      );
    }
    if (m === null) {
      deny(
        Code.Unauthenticated,
        header === null
          ? `${SERVICE[required]} needs the ${required} credential: send "authorization: Bearer <token>" with the control plane's ${ENV[required]}`
          : `malformed authorization header: expected "Bearer <token>" (the control plane's ${ENV[required]})`,
      );
    }
    const presented = sha256(m![1]!);
    // Both comparisons always run: which one matched must not show in the timing.
    const isRequired = matches(digests[required], presented);
    const isOther = matches(digests[other], presented);
    if (!isRequired) {
      if (isOther) {
        deny(
          Code.PermissionDenied,
          `that is the ${other} credential; ${SERVICE[required]} needs the ${required} credential (${ENV[required]})`,
        );
      }
      deny(
        Code.Unauthenticated,
        `the credential is not valid for this control plane; ${SERVICE[required]} needs its ${ENV[required]}`,
      );
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
