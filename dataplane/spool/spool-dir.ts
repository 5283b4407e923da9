import { randomUUID } from "node:crypto";
import fs from "node:fs";
import { hostname } from "node:os";
import path from "node:path";
import { ErrorCode, PolymurError } from "../../common/errors.ts";
import type { Logger } from "../../common/logger.ts";
import { releasePidLock, takePidLock } from "../../common/pid-lock.ts";
import {
  PRIVATE_DIR_MODE,
  PRIVATE_FILE_MODE,
  writePrivateFile,
} from "../../common/private-files.ts";
import { errText } from "./err-text.ts";

/**
 * The spool's directory: what is in it, who may read it, who uses it, and
 * its small files (the proxy's id, the done mark). The segments' contents are
 * SegmentSpool's (and spool-record.ts's) business.
 *
 * Layout of the directory (PRIVATE_DIR_MODE, 0700; every file in it
 * PRIVATE_FILE_MODE, 0600, like the control plane's store: batches are other
 * people's metrics):
 *   proxy-id            this proxy's stable id (Hello.proxy_id), made once
 *   state.json          {"done": N}: every seq <= N is acknowledged or rejected
 *   seg-<firstSeq>.spool   append-only segments of records
 *   seg-<firstSeq>.spool.unreadable   a segment that could not be read, set aside
 *   lock                pid of the proxy using the directory
 */

const STATE_FILE = "state.json";
/** state.json's size: the done mark's JSON, padded with spaces (a u64 takes 20 digits). */
const STATE_BYTES = 48;
const ID_FILE = "proxy-id";
const LOCK_FILE = "lock";
const SEGMENT = /^seg-\d+\.spool$/;
/** Every file the spool makes, and the temp files of its atomic writes: the files whose modes it tightens. */
const SPOOL_FILE = /^(seg-\d+\.spool(\.unreadable)?|state\.json|proxy-id|lock)(\.tmp)?$/;

/** A segment file of the directory. */
export interface SegmentFile {
  file: string;
  /** The seq of its first record (from its name). */
  firstSeq: number;
}

export class SpoolDir {
  readonly path: string;
  /** state.json, open for overwriting in place (saveDone), once saved. */
  #stateFd: number | null = null;

  private constructor(dir: string) {
    this.path = dir;
  }

  /**
   * Creates the directory (and its parents) owner-only, or makes an existing
   * one owner-only (see tightenModes), and locks it for this process.
   * Throws a PolymurError (POLYMUR_ERR_SPOOL) when it cannot be created or
   * another live process holds it.
   */
  static open(dir: string, log: Logger, inUse = "each proxy needs its own --spool-dir"): SpoolDir {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    } catch (err) {
      throw new PolymurError(
        ErrorCode.Spool,
        `cannot create spool directory ${dir}: ${(err as Error).message}`,
      );
    }
    tightenModes(dir, log);
    lock(dir, inUse);
    return new SpoolDir(dir);
  }

  /**
   * This proxy's stable id: read from the directory, or made (by `make`;
   * default: the host name and a uuid) and saved.
   */
  proxyId(make: () => string = freshProxyId): string {
    const file = path.join(this.path, ID_FILE);
    try {
      const id = fs.readFileSync(file, "utf8").trim();
      if (id !== "") return id;
    } catch {}
    const id = make();
    writePrivateFile(file, id);
    return id;
  }

  /** Replaces the proxy id kept in the directory (a new id after an id conflict). */
  saveProxyId(id: string): void {
    writePrivateFile(path.join(this.path, ID_FILE), id);
  }

  /** The done mark saved last: every seq up to it is done. 0 when there is none, or it is unreadable. */
  readDone(): number {
    try {
      const state = JSON.parse(fs.readFileSync(path.join(this.path, STATE_FILE), "utf8")) as {
        done?: unknown;
      };
      if (typeof state.done === "number" && Number.isSafeInteger(state.done)) return state.done;
    } catch {}
    return 0;
  }

  /** Whether a done mark is saved at all. */
  hasDone(): boolean {
    return fs.existsSync(path.join(this.path, STATE_FILE));
  }

  /**
   * Saves the done mark. The first time, atomically (a new file renamed in
   * place); after that, by overwriting the file's first STATE_BYTES bytes in
   * place (one write within one disk sector, fsynced), which needs no free
   * space: a full disk must still be able to say what was delivered, or it
   * could never delete a delivered segment and free itself.
   */
  saveDone(done: number): void {
    const text = JSON.stringify({ done }).padEnd(STATE_BYTES - 1) + "\n";
    const file = path.join(this.path, STATE_FILE);
    if (this.#stateFd === null) {
      if (!fs.existsSync(file)) writePrivateFile(file, text);
      this.#stateFd = fs.openSync(file, "r+");
    }
    fs.writeSync(this.#stateFd, text, 0);
    fs.fsyncSync(this.#stateFd);
  }

  /** The segment files, oldest (lowest first seq) first. */
  segments(): SegmentFile[] {
    return fs
      .readdirSync(this.path)
      .filter((f) => SEGMENT.test(f))
      .sort()
      .map((name) => ({ file: path.join(this.path, name), firstSeq: Number(name.slice(4, -6)) }));
  }

  /** The file of the segment whose first record is `firstSeq`. */
  segmentFile(firstSeq: number): string {
    return path.join(this.path, `seg-${String(firstSeq).padStart(16, "0")}.spool`);
  }

  /** Lets another process use the directory. */
  unlock(): void {
    if (this.#stateFd !== null) {
      try {
        fs.closeSync(this.#stateFd);
      } catch {}
      this.#stateFd = null;
    }
    releasePidLock(path.join(this.path, LOCK_FILE));
  }
}

/**
 * Makes an existing spool directory and its files owner-only (0700, 0600):
 * spools made by earlier versions were world-readable. A directory with the
 * sticky bit (/tmp and the like) is shared: it is left alone, with a warning
 * (which is why this is not common/private-files.ts's privateDir()).
 * Symlinks and other non-regular entries are left alone. A failure to change
 * a mode (not the owner) is a warning, not a reason not to run.
 */
function tightenModes(dir: string, log: Logger): void {
  const change = (p: string, mode: number): void => {
    try {
      fs.chmodSync(p, mode);
    } catch (err) {
      log.warn({ path: p, err: errText(err) }, "spool: cannot make a spool file owner-only");
    }
  };
  try {
    const st = fs.statSync(dir);
    if ((st.mode & 0o077) !== 0) {
      if ((st.mode & 0o1000) !== 0) {
        log.warn(
          { spool: dir, mode: (st.mode & 0o7777).toString(8) },
          "spool: the spool directory is a shared one (sticky bit): give the proxy a directory of its own",
        );
      } else {
        change(dir, PRIVATE_DIR_MODE);
      }
    }
    for (const name of fs.readdirSync(dir)) {
      if (!SPOOL_FILE.test(name)) continue;
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      if (st.isFile() && (st.mode & 0o077) !== 0) change(p, PRIVATE_FILE_MODE);
    }
  } catch (err) {
    log.warn({ spool: dir, err: errText(err) }, "spool: cannot check the modes of the spool");
  }
}

function lock(dir: string, inUse: string): void {
  const refused = takePidLock(path.join(dir, LOCK_FILE));
  if (refused === null) return;
  throw new PolymurError(
    ErrorCode.Spool,
    refused.kind === "in-use"
      ? `spool directory ${dir} is in use by process ${refused.pid}; ${inUse}`
      : `cannot lock spool directory ${dir}: ${refused.err.message}`,
  );
}

/** A new proxy id: the host name and a uuid. */
export function freshProxyId(): string {
  return `${hostname().split(".")[0]}-${randomUUID()}`;
}

/** Whether the spool directory `dir` holds a segment (false when it cannot be read). */
export function holdsSegments(dir: string): boolean {
  try {
    return fs.readdirSync(dir).some((f) => SEGMENT.test(f));
  } catch {
    return false;
  }
}

/**
 * Removes the spool directory `dir` if it holds no segment and no live
 * process holds its lock. Returns whether it is gone.
 */
export function removeIdleSpoolDir(dir: string): boolean {
  if (holdsSegments(dir)) return false;
  const file = path.join(dir, LOCK_FILE);
  if (fs.existsSync(dir) && takePidLock(file) !== null) return false;
  releasePidLock(file);
  fs.rmSync(dir, { recursive: true, force: true });
  return true;
}
