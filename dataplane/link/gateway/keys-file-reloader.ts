import { readFileSync, statSync } from "node:fs";
import { sleep } from "../../../common/backoff.ts";
import { ErrorCode, PolymurError } from "../../../common/errors.ts";
import type { Logger } from "../../../common/logger.ts";
import {
  type ApiKeyRing,
  type KeysFileContents,
  KeysFileError,
  NO_KEYS_LINE,
  readKeysText,
} from "./api-keys.ts";
import type { KeysReloadFailure } from "./gateway-counters.ts";

/** Every KeysFileReloader default, in one place. */
export const KEYS_FILE_RELOADER_DEFAULTS = {
  /** How often the file's inode, size and mtime are looked at. */
  pollMs: 1_000,
  /** While a changed file settles, it is read again this often. */
  stepMs: 100,
  /** A changed file must read the same for this long before it is applied… */
  settleMs: 300,
  /**
   * …and for this long if it removes keys or changes their secrets, which
   * cuts streams and stops their proxies: a writer pausing between lines
   * must not revoke the keys it has not written yet.
   */
  confirmMs: 1_000,
  /** A file still changing after this long is not applied (until it changes again). */
  maxWaitMs: 10_000,
} as const;

export interface KeysFileReloaderOptions {
  file: string;
  ring: ApiKeyRing;
  log: Logger;
  /** Counts re-reads applied, and those not applied by reason. */
  counters: { keysReloaded(): void; keysReloadFailed(reason: KeysReloadFailure): void };
  pollMs?: number;
  stepMs?: number;
  settleMs?: number;
  confirmMs?: number;
  maxWaitMs?: number;
}

/**
 * Keeps an ApiKeyRing in step with a keys file (--keys-file): read at
 * start-up, read again when it changes (polled) and on SIGHUP. A file read
 * again is applied only if it is whole and means what it says:
 *
 * - it reads the same for settleMs (confirmMs if it would remove keys or
 *   change their secrets), read every stepMs: a file caught while being
 *   written changes under the reader. One still changing after maxWaitMs is
 *   left until it changes again;
 * - its last line ends with a newline: a line cut off in the middle still
 *   parses, as another secret, and would revoke the real one;
 * - every line parses;
 * - a file without keys says so (NO_KEYS_LINE): `: > keys` before a write
 *   must not revoke every key and stop every proxy.
 *
 * Otherwise the keys in force stay, and a warning says why (file, line, what
 * is wrong), counted by reason. A reload applied logs the names of the keys
 * added, removed and rotated (never a secret or a digest).
 */
export class KeysFileReloader {
  readonly #o: KeysFileReloaderOptions;
  readonly #stop = new AbortController();
  #running: Promise<void> | null = null;
  #again = false;
  #timer: NodeJS.Timeout | null = null;
  /** The file's inode, size and mtime when last looked at. */
  #seen = "";

  constructor(options: KeysFileReloaderOptions) {
    this.#o = options;
  }

  /**
   * Start-up: reads and applies the file at once. Throws (PolymurError) if it
   * cannot be read or a line does not parse. A last line without a newline
   * is taken here (nothing is being replaced), with a warning that a re-read
   * file needs one.
   */
  load(): void {
    const { file, ring, log } = this.#o;
    // Before reading: a change in between is then seen by the next poll.
    this.#seen = this.#signature();
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw new PolymurError(
        ErrorCode.Config,
        `cannot read keys file ${file}: ${(err as Error).message}`,
      );
    }
    const c = readKeysText(text, file);
    if (c.unterminated) {
      log.warn(
        { file, line: c.lines },
        "the keys file's last line has no newline: taken at start-up, but a re-read file is applied only if it ends with a newline",
      );
    }
    ring.replace(c.keys);
    if (c.keys.length === 0) {
      log.warn({ file }, "no API keys: every proxy stream is refused until the keys file has some");
    }
  }

  /**
   * Reloads whenever the file's inode, size or mtime differs from the last
   * look (the first look is load()'s, so a change made between load() and
   * watch() is not missed, as it would be by fs.watchFile's own first stat).
   */
  watch(): void {
    if (this.#timer !== null || this.#stop.signal.aborted) return;
    this.#timer = setInterval(() => {
      const now = this.#signature();
      if (now === this.#seen) return;
      this.#seen = now;
      void this.reload();
    }, this.#o.pollMs ?? KEYS_FILE_RELOADER_DEFAULTS.pollMs);
    this.#timer.unref();
  }

  #signature(): string {
    try {
      const st = statSync(this.#o.file);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (err) {
      return `unreadable:${(err as NodeJS.ErrnoException).code ?? ""}`;
    }
  }

  /**
   * Reads the file again and applies it if it is whole (see the class);
   * resolves when done, never rejects. A call while one runs makes that one
   * read again when it is done.
   */
  reload(): Promise<void> {
    if (this.#running !== null) {
      this.#again = true;
      return this.#running;
    }
    const run = async (): Promise<void> => {
      do {
        this.#again = false;
        try {
          await this.#reloadOnce();
        } catch (err) {
          this.#o.log.error(
            { err: (err as Error).message, file: this.#o.file },
            "API keys reload failed",
          );
        }
      } while (this.#again && !this.#stop.signal.aborted);
    };
    this.#running = run().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  /** Stops watching; a reload in progress gives up without applying anything. */
  stop(): void {
    this.#stop.abort();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  async #reloadOnce(): Promise<void> {
    const o = this.#o;
    const d = KEYS_FILE_RELOADER_DEFAULTS;
    const t0 = Date.now();
    let text: string | null = null;
    let since = t0;
    let parsed: KeysFileContents | KeysFileError | null = null;
    for (;;) {
      let now: string;
      try {
        now = readFileSync(o.file, "utf8");
      } catch (err) {
        this.#fail("unreadable", 0, `cannot read ${o.file}: ${(err as Error).message}`);
        return;
      }
      if (now !== text) {
        text = now;
        since = Date.now();
        parsed = this.#parse(now);
      }
      const waited = Date.now() - since;
      if (waited >= this.#settleFor(parsed!)) break;
      if (Date.now() - t0 >= (o.maxWaitMs ?? d.maxWaitMs)) {
        this.#fail(
          "unsettled",
          0,
          `${o.file} kept changing for ${Date.now() - t0} ms (still being written?); it is read again when it changes`,
        );
        return;
      }
      await sleep(o.stepMs ?? d.stepMs, this.#stop.signal);
      if (this.#stop.signal.aborted) return;
    }
    this.#apply(parsed!);
  }

  #parse(text: string): KeysFileContents | KeysFileError {
    try {
      return readKeysText(text, this.#o.file);
    } catch (err) {
      if (err instanceof KeysFileError) return err;
      throw err;
    }
  }

  /** How long this content must stay unchanged before it is applied (or refused). */
  #settleFor(c: KeysFileContents | KeysFileError): number {
    const o = this.#o;
    const settle = o.settleMs ?? KEYS_FILE_RELOADER_DEFAULTS.settleMs;
    if (c instanceof KeysFileError || c.unterminated) return settle;
    const ch = o.ring.changes(c.keys);
    return ch.removed.length > 0 || ch.rotated.length > 0
      ? Math.max(settle, o.confirmMs ?? KEYS_FILE_RELOADER_DEFAULTS.confirmMs)
      : settle;
  }

  #apply(c: KeysFileContents | KeysFileError): void {
    const { file, ring, log, counters } = this.#o;
    if (c instanceof KeysFileError) {
      this.#fail(c.problem, c.line, c.message);
      return;
    }
    if (c.unterminated) {
      this.#fail(
        "incomplete",
        c.lines,
        `${file}:${c.lines}: the last line has no newline at the end: the file may be half-written (a complete keys file ends with a newline)`,
      );
      return;
    }
    if (c.keys.length === 0 && !c.noKeys && ring.size > 0) {
      this.#fail(
        "empty",
        0,
        `${file} has no keys, which is taken for a file caught half-written; to revoke every key on purpose, write the line "${NO_KEYS_LINE}" into it`,
      );
      return;
    }
    const ch = ring.changes(c.keys);
    ring.replace(c.keys);
    counters.keysReloaded();
    const keys = ring.names();
    if (ch.added.length + ch.removed.length + ch.rotated.length === 0) {
      log.info({ file, keys }, "API keys file read again: no change");
    } else if (keys.length === 0) {
      log.warn(
        { file, keys, ...ch },
        `API keys reloaded: no keys left (the file says "${NO_KEYS_LINE}"): every proxy stream is refused`,
      );
    } else {
      log.info({ file, keys, ...ch }, "API keys reloaded");
    }
  }

  #fail(reason: KeysReloadFailure, line: number, detail: string): void {
    const { file, ring, log, counters } = this.#o;
    counters.keysReloadFailed(reason);
    log.warn(
      { file, reason, ...(line > 0 ? { line } : {}), detail, keys: ring.names() },
      `API keys file not applied: ${detail}; keeping the ${ring.size} keys in force`,
    );
  }
}
