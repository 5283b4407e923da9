import {
  chmodSync,
  closeSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname } from "node:path";

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

/**
 * Replaces `file` with `text`, owner-only, so that readers and a crash see
 * the old file or the new one, never half: a temp file beside it, written
 * and fsynced, renamed over it, then the directory fsynced (the rename itself
 * is durable only then).
 */
export function writePrivateFile(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w", PRIVATE_FILE_MODE);
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE); // a temp file left by a crash keeps its old mode otherwise
    writeFileSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true }); // a full disk: no half-written temp file left behind
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, file);
  const dir = openSync(dirname(file), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
