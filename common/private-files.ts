import { chmodSync, mkdirSync } from "node:fs";

/**
 * The modes of every directory and file polymur creates for its state (the
 * proxy's spool, a managed node's saved configuration and key digests, the
 * control plane's store): readable by polymur's user only. What they hold
 * (datapoints in flight, key digests, node identities) is nobody else's.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/**
 * Creates `dir` (and its parents) private, and makes it private if it
 * existed with looser modes (an earlier version created them 755).
 */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  chmodSync(dir, PRIVATE_DIR_MODE);
}
