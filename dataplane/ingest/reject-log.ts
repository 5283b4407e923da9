import { REJECT_REASONS, type RejectReason } from "./line-validator.ts";

export interface RejectSample {
  /** Unix milliseconds. */
  at: number;
  reason: RejectReason;
  detail: string;
  /** Sender address, "udp:" prefixed for datagrams. */
  source: string;
  /** The start of the line (at most 256 bytes), as text with invalid UTF-8 replaced. */
  line: string;
}

/**
 * Counts rejected lines per reason and keeps the most recent ones for
 * operators (`/debug/rejects` on the stats address). The sample is a fixed
 * ring, so a flood of bad input costs a bounded amount of memory and no logs.
 */
export class RejectLog {
  readonly counts: Record<RejectReason, number>;
  #ring: (RejectSample | undefined)[];
  #next = 0;

  constructor(sampleSize = 64) {
    this.counts = Object.fromEntries(REJECT_REASONS.map((r) => [r, 0])) as Record<
      RejectReason,
      number
    >;
    this.#ring = new Array(sampleSize);
  }

  get total(): number {
    let n = 0;
    for (const r of REJECT_REASONS) n += this.counts[r];
    return n;
  }

  add(reason: RejectReason, detail: string, line: Uint8Array, source: string): void {
    this.counts[reason]++;
    if (this.#ring.length === 0) return;
    this.#ring[this.#next] = {
      at: Date.now(),
      reason,
      detail,
      source,
      line: Buffer.from(line.buffer, line.byteOffset, line.byteLength).toString("utf8"),
    };
    this.#next = (this.#next + 1) % this.#ring.length;
  }

  /** Most recent first. */
  recent(): RejectSample[] {
    const out: RejectSample[] = [];
    const n = this.#ring.length;
    for (let k = 1; k <= n; k++) {
      const s = this.#ring[(this.#next - k + n) % n];
      if (s !== undefined) out.push(s);
    }
    return out;
  }
}
