import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorCode, PolymurError } from "../common/errors.ts";

/** The response header that carries the POLYMUR_ERR_* code of a refused call. */
export const ERROR_CODE_HEADER = "polymur-error-code";

const CODES: Partial<Record<ErrorCode, Code>> = {
  [ErrorCode.Config]: Code.InvalidArgument,
  [ErrorCode.DestinationSpec]: Code.InvalidArgument,
  [ErrorCode.HashConfig]: Code.InvalidArgument,
  [ErrorCode.Rules]: Code.InvalidArgument,
  [ErrorCode.VersionConflict]: Code.FailedPrecondition,
  [ErrorCode.AlreadyExists]: Code.AlreadyExists,
  [ErrorCode.NotFound]: Code.NotFound,
  [ErrorCode.StoreUnavailable]: Code.Unavailable,
  [ErrorCode.StoreCorrupt]: Code.DataLoss,
  [ErrorCode.Unauthenticated]: Code.Unauthenticated,
  [ErrorCode.PermissionDenied]: Code.PermissionDenied,
};

/**
 * The RPC boundary: a PolymurError becomes a ConnectError with the matching
 * code, its message, and its POLYMUR_ERR_* code in a header for scripts.
 * Anything else is a bug: INTERNAL, without leaking its message.
 */
export function toConnectError(err: unknown, onInternal?: (err: unknown) => void): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof PolymurError) {
    return new ConnectError(err.message, CODES[err.code] ?? Code.Internal, {
      [ERROR_CODE_HEADER]: err.code,
    });
  }
  onInternal?.(err);
  return new ConnectError("internal error (see the control plane's log)", Code.Internal);
}

export function invalid(message: string): PolymurError {
  return new PolymurError(ErrorCode.Config, message);
}
