import fs from "node:fs";
import type { DestinationLink, DestinationName, DestinationTransport } from "./destination-link.ts";
import { type PendingWrite, SerialLink } from "./serial-link.ts";

const NL = 0x0a;

/**
 * What a `file ip` cluster writes before each line in place of the sender's
 * address, which polymur does not carry to the route stage. It is what
 * carbon-c-relay itself writes for a sender without an IP address (a unix
 * socket), so the files keep their shape: `<address> <name> <value> <timestamp>`.
 */
export const FILE_IP_UNKNOWN_SOURCE = "(unknown)";

/** The id and name of the destination that appends to `path` (`file ip`: `file-ip:PATH`). */
export function fileName(path: string, ip: boolean): DestinationName {
  const id = `${ip ? "file-ip" : "file"}:${path}`;
  return { id, spec: id };
}

/**
 * The transport of a relay.conf `file` or `file ip` cluster member: a
 * Destination over it (`new Destination(fileTransport(path, ip), options)`)
 * appends every line to `path`, with the queue, policies and accounting of
 * a TCP destination: forwarded once the write returned.
 *
 * The file is opened as carbon-c-relay opens it, O_WRONLY | O_APPEND |
 * O_CREAT, mode 0644 (less the umask). With O_APPEND each write lands at
 * the end of the file, whole, so several processes (the relay's workers,
 * each with its own destination) can append to one file.
 *
 * Logrotate: a reload that keeps the destination (SIGHUP, which applies the
 * configuration again: Destination.reconfigure) reopens the file after the
 * write under way, so that lines go to a new file at `path` once the old
 * one was moved away; a `postrotate` that sends SIGHUP is what logrotate
 * needs (or `copytruncate`, which needs nothing). carbon-c-relay reopens
 * only when the reload changed its configuration.
 *
 * A failed open or write (ENOENT for a missing directory, ENOSPC, EACCES)
 * fails the link as a failed connection: the write is kept and written
 * again after the backoff, the file opened again; meanwhile the queue holds
 * what comes. A write that failed midway may leave part of a line in the
 * file before the whole write is written again.
 */
export function fileTransport(path: string, ip: boolean): DestinationTransport {
  const prefix = ip ? Buffer.from(`${FILE_IP_UNKNOWN_SOURCE} `, "latin1") : null;
  let link: FileLink | null = null;
  return {
    name: fileName(path, ip),
    resends: false,
    open(): DestinationLink {
      link = new FileLink(path, prefix);
      return link;
    },
    reload(): void {
      link?.reopen();
    },
  };
}

/**
 * A file opened for appending, as a DestinationLink: "connect" once open;
 * one write at a time (SerialLink), each with its `prefix` before every
 * line; one file operation (open, write, close) at a time, so that a reopen
 * or a close never takes the descriptor from under a write.
 */
class FileLink extends SerialLink {
  readonly #path: string;
  readonly #prefix: Buffer | null;
  #fd: number | null = null;
  /** A file operation is under way. */
  #busy = true;
  #reopen = false;

  constructor(path: string, prefix: Buffer | null) {
    super();
    this.#path = path;
    this.#prefix = prefix;
    this.#open(() => this.emit("connect"));
  }

  /** Opens the path again after the write under way (the file may have been moved away). */
  reopen(): void {
    if (this.destroyed) return;
    this.#reopen = true;
    this.pump();
  }

  protected override idle(): boolean {
    return !this.#busy && this.#fd !== null;
  }

  /** A reopen asked for comes before the next write. */
  protected override pump(): void {
    if (!this.#reopen || this.destroyed || !this.idle()) {
      super.pump();
      return;
    }
    const fd = this.#fd!;
    this.#reopen = false;
    this.#busy = true;
    this.#fd = null;
    fs.close(fd, () => this.#open(noop));
  }

  protected override send(w: PendingWrite): void {
    this.#busy = true;
    const buf = this.#prefix === null ? w.chunk : prefixLines(w.chunk, this.#prefix);
    writeAll(this.#fd!, buf, 0, (err) => {
      this.#busy = false;
      if (err === null) this.completed(w);
      if (this.#closedMeanwhile()) return;
      this.proceed(err);
    });
  }

  /** A file operation under way keeps the descriptor until it returns. */
  protected override release(): void {
    if (!this.#busy) this.#closeFd();
  }

  #open(opened: () => void): void {
    this.#busy = true;
    fs.open(this.#path, "a", 0o644, (err, fd) => {
      this.#busy = false;
      if (err === null) this.#fd = fd;
      if (this.#closedMeanwhile()) return;
      if (err !== null) {
        this.close(err);
        return;
      }
      opened();
      this.pump();
    });
  }

  /** After a file operation: true when the link was closed while it ran (the descriptor is closed now). */
  #closedMeanwhile(): boolean {
    if (!this.destroyed) return false;
    this.#closeFd();
    return true;
  }

  /** Closes the descriptor, then "close". */
  #closeFd(): void {
    const fd = this.#fd;
    this.#fd = null;
    if (fd === null) process.nextTick(() => this.emit("close"));
    else fs.close(fd, () => this.emit("close"));
  }
}

/** Writes all of buf[offset..] (a write may take less than it was given). */
function writeAll(
  fd: number,
  buf: Buffer,
  offset: number,
  cb: (err: NodeJS.ErrnoException | null) => void,
): void {
  fs.write(fd, buf, offset, buf.length - offset, null, (err, n) => {
    if (err !== null) cb(err);
    else if (offset + n < buf.length) writeAll(fd, buf, offset + n, cb);
    else cb(null);
  });
}

/** `lines` (whole lines) with `prefix` before each. */
export function prefixLines(lines: Buffer, prefix: Buffer): Buffer {
  let n = 0;
  for (let i = lines.indexOf(NL); i >= 0; i = lines.indexOf(NL, i + 1)) n++;
  const out = Buffer.allocUnsafe(lines.length + n * prefix.length);
  let at = 0;
  for (let start = 0; start < lines.length; ) {
    const nl = lines.indexOf(NL, start);
    const end = nl < 0 ? lines.length : nl + 1;
    at += prefix.copy(out, at);
    at += lines.copy(out, at, start, end);
    start = end;
  }
  return out.subarray(0, at);
}

function noop(): void {}
