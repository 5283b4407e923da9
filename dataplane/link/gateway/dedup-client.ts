import type {
  ClaimAnswer,
  ClaimedStreams,
  ClaimsToPrimary,
  ClaimsToProcess,
  ProxyClaims,
  StreamClaim,
} from "./claim-board.ts";
import type { DedupTable } from "./dedup-table.ts";

/**
 * A gateway worker process's side of the primary's ClaimBoard, over its IPC
 * channel (the messages of claim-board.ts, in order):
 *
 * - a stream's Hello sends `claim` and waits for `claimed`; when taken, this
 *   process's own DedupTable (the one its BatchIntake checks and records
 *   into) claims the instance with the primary's highest seq, before the
 *   stream reads its first batch;
 * - every seq this table records (a batch queued) is sent as `record` at
 *   once, before the batch is acknowledged: it is on the channel ahead of
 *   any later `end`, `released` or `claim`;
 * - `probe` and `release` reach the streams (ClaimedStreams); `released` is
 *   sent once the streams are cut, so none queues a batch after it.
 *
 * While this process holds a proxy id no other process queues its batches,
 * so this table's memory of it is exact; when the proxy comes back after
 * streaming elsewhere, the claim brings what was queued there.
 */
export class DedupClient implements ProxyClaims {
  readonly table: DedupTable;
  readonly #send: (m: ClaimsToPrimary) => void;
  readonly #pending = new Map<
    number,
    { claim: StreamClaim; resolve: (a: ClaimAnswer) => void; reject: (e: Error) => void }
  >();
  #next = 0;
  #streams: ClaimedStreams | null = null;
  #closed: Error | null = null;

  constructor(table: DedupTable, send: (m: ClaimsToPrimary) => void) {
    this.table = table;
    this.#send = send;
    table.onRecord = (keyName, proxyId, instance, seq) =>
      send({ t: "record", keyName, proxyId, instance, seq });
  }

  claim(claim: StreamClaim): Promise<ClaimAnswer> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      const id = ++this.#next;
      this.#pending.set(id, { claim, resolve, reject });
      this.#send({ t: "claim", id, claim });
    });
  }

  end(stream: number): void {
    if (this.#closed === null) this.#send({ t: "end", stream });
  }

  attach(streams: ClaimedStreams): void {
    this.#streams = streams;
  }

  /** A message from the primary. */
  receive(m: ClaimsToProcess): void {
    switch (m.t) {
      case "claimed": {
        const p = this.#pending.get(m.id);
        if (p === undefined) return;
        this.#pending.delete(m.id);
        const a = m.answer;
        if (a.ok) this.table.claim(p.claim.keyName, p.claim.proxyId, p.claim.instance, a.acked);
        p.resolve(a);
        return;
      }
      case "probe":
        this.#streams?.probe(m.stream);
        return;
      case "release":
        for (const s of m.streams) this.#streams?.cut(s);
        this.#send({ t: "released", id: m.id });
    }
  }

  /** The primary is gone: claims waiting, and later ones, fail with `err`. */
  close(err: Error): void {
    this.#closed = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}
