import { createHash, randomBytes } from "node:crypto";

/** Every secret starts with this, so it is recognisable (and greppable by secret scanners). */
export const SECRET_PREFIX = "pmk_";

/** 32 random bytes, base64url: 256 bits, safe in headers, URLs and config files. */
export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString("base64url");
}

/**
 * What the control plane stores and nodes compare against: `sha256:` and the
 * hex SHA-256 of the whole secret string (prefix included) as UTF-8.
 */
export function secretDigest(secret: string): string {
  return `sha256:${createHash("sha256").update(secret, "utf8").digest("hex")}`;
}
