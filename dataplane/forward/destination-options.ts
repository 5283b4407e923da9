import { BACKOFF_DEFAULTS } from "../../common/backoff.ts";
import type { DestinationTlsSettings } from "./destination-tls.ts";
import type { DiskQueue, DiskRecoveryLoss, FsyncPolicy } from "./disk-queue.ts";
import { kernelResendBytes } from "./kernel-buffers.ts";

/**
 * Opens a destination's disk queue (--queue-dir); `refuse` gets the lines of
 * a record the disk failed to write. What recovery found lost comes with it.
 */
export type DiskQueueOpener = (refuse: (chunks: Buffer[], lines: number[]) => void) => {
  queue: DiskQueue;
  lost: DiskRecoveryLoss;
};

/** What to do with new datapoints when a destination's queue is full. */
export type OverflowPolicy = "drop-oldest" | "drop-newest" | "block";
export const OVERFLOW_POLICIES: readonly OverflowPolicy[] = ["drop-oldest", "drop-newest", "block"];

export interface DestinationOptions {
  /** Queue bound in bytes. Default 128 MiB. */
  queueBytes?: number;
  /** Overflow policy. Default "drop-oldest" (see docs/queues.md for why). */
  overflow?: OverflowPolicy;
  /**
   * Bytes of the most recently written data kept after the write, and written
   * again when the connection fails, because a TCP peer that dies loses what
   * sat in the two socket buffers. 0 disables. Default "auto": what those two
   * buffers can hold (kernel-buffers.ts). Resent lines are duplicates, which
   * Graphite stores idempotently (same name, timestamp, value). Ignored by a
   * transport that does not resend (UDP, files: DestinationTransport.resends).
   */
  resendBytes?: number | "auto";
  /** First reconnect delay. Default 100 ms (BACKOFF_DEFAULTS.minMs). */
  backoffMinMs?: number;
  /** Reconnect delay cap. Default 10 s (BACKOFF_DEFAULTS.maxMs). */
  backoffMaxMs?: number;
  /** Connect attempt timeout. Default 5 s. */
  connectTimeoutMs?: number;
  /** Most bytes handed to the socket in one write. Default 256 KiB. */
  writeBytes?: number;
  /**
   * Longest wait for more data before writing less than a quarter of
   * `writeBytes`. Default 5 ms; 0 writes at the end of every event-loop turn.
   */
  flushDelayMs?: number;
  /**
   * The destination's disk queue (--queue-dir): memory stays the fast path,
   * and what it cannot hold, or what comes while the destination is down,
   * goes to disk. Only for a transport that resends (TCP). Default none.
   */
  disk?: DiskQueueOpener;
  /**
   * How a `tls://` or `pickle+tls://` destination made from its spec is
   * reached (CA, client certificate, server name: destination-tls.ts).
   * Default null: Node's default trust store, no client certificate, the
   * destination's host. Not changed by reconfigure().
   */
  tls?: DestinationTlsSettings | null;
}

/**
 * Every DestinationOptions default, in one place: the constructor falls back
 * to these, and the relay's flag defaults (`--queue-size`, `--resend-window`,
 * `--overflow`, `--backoff-min`, `--backoff-max`) are built from them.
 */
export const DESTINATION_DEFAULTS = {
  queueBytes: 128 * 1024 * 1024,
  overflow: "drop-oldest",
  resendBytes: "auto",
  backoffMinMs: BACKOFF_DEFAULTS.minMs,
  backoffMaxMs: BACKOFF_DEFAULTS.maxMs,
  connectTimeoutMs: 5_000,
  writeBytes: 256 * 1024,
  flushDelayMs: 5,
} as const satisfies Required<Omit<DestinationOptions, "disk" | "tls">>;

/** A resend window size in bytes: "auto" is what the two kernels' socket buffers can hold. */
export function resendWindowBytes(v: number | "auto"): number {
  return v === "auto" ? kernelResendBytes() : v;
}

/** Disk queues (--queue-dir and the options after it); plain data, sent to worker processes. */
export interface DiskQueueSettings {
  /** --queue-dir: where the disk queues live (queue-dir.ts). */
  dir: string;
  /** --queue-disk-size: bytes on disk per destination, for the whole process group. */
  maxBytes: number;
  /** --queue-disk-total: bytes on disk over every destination, for the whole process group. */
  totalBytes: number;
  /** --queue-fsync. */
  fsync: FsyncPolicy;
  /** --queue-fsync-interval, ms. */
  fsyncIntervalMs: number;
}

/** Every default of the disk queues, in one place (the flags' defaults are built from these). */
export const DISK_QUEUE_DEFAULTS = {
  maxBytes: 10 * 1024 * 1024 * 1024,
  totalBytes: 40 * 1024 * 1024 * 1024,
  fsync: "interval",
  fsyncIntervalMs: 1_000,
} as const satisfies Omit<DiskQueueSettings, "dir">;
