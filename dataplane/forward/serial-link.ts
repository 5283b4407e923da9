import { EventEmitter } from "node:events";
import type { DestinationLink, WriteDone } from "./destination-link.ts";

/** A write handed to a SerialLink, not yet completed. */
export interface PendingWrite {
  readonly chunk: Buffer;
  readonly done: WriteDone;
}

/**
 * A DestinationLink that carries out one write at a time (a file, a UDP
 * socket): write() queues and returns false, the writes go out oldest first
 * as the link is idle, "drain" follows once none is left. end() closes once
 * they are out; a failure closes at once ("error", then "close"), and the
 * writes not completed never will be.
 *
 * A subclass says when it can start a write (idle()), starts one (send()),
 * and when it returns, completes it (completed()) and carries on
 * (proceed()); release() lets go of what it holds once the link is closed,
 * "close" last.
 */
export abstract class SerialLink extends EventEmitter implements DestinationLink {
  /** Writes not completed, oldest first; the first is under way once sent. */
  #writes: PendingWrite[] = [];
  #ending = false;
  #destroyed = false;

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Writes not completed (the one under way included). */
  protected get pendingWrites(): number {
    return this.#writes.length;
  }

  write(chunk: Buffer, done: WriteDone): boolean {
    if (this.#destroyed) return false;
    this.#writes.push({ chunk, done });
    this.pump();
    return false;
  }

  end(): void {
    this.#ending = true;
    this.pump();
  }

  destroy(err?: Error): void {
    this.close(err);
  }

  /** The link can start a write: open or connected, and no operation under way. */
  protected abstract idle(): boolean;

  /** Starts `w`, the oldest write; completed() and proceed() follow once it returns. */
  protected abstract send(w: PendingWrite): void;

  /** The link is closed: lets go of the file or socket, then emits "close". */
  protected abstract release(): void;

  /** Starts the next write if the link is idle; closes once ending with none left. */
  protected pump(): void {
    if (this.#destroyed || !this.idle()) return;
    const w = this.#writes[0];
    if (w === undefined) {
      if (this.#ending) this.close();
      return;
    }
    this.send(w);
  }

  /** The write under way, `w`, is done: `unsent` of its lines were given up on. */
  protected completed(w: PendingWrite, unsent?: number): void {
    this.#writes.shift();
    w.done(null, unsent);
  }

  /** After an operation returned: closes on `err`, else "drain" when no write is left, and goes on. */
  protected proceed(err: Error | null): void {
    if (err !== null) {
      this.close(err);
      return;
    }
    if (this.#writes.length === 0) this.emit("drain");
    this.pump();
  }

  /** Done: "error" (when `err`), then release() ("close" once the file or socket is). */
  protected close(err?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#writes = [];
    if (err !== undefined) this.emit("error", err);
    this.release();
  }
}
