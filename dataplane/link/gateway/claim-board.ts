import type { DedupTable, InstanceChange } from "./dedup-table.ts";

/** What a stream asks at Hello: to hold its (key, proxy id) for its instance. */
export interface StreamClaim {
  /** The stream's number, unique within its process. */
  stream: number;
  keyName: string;
  proxyId: string;
  /** Hello.instance_id: random per proxy process. */
  instance: string;
  /** The client's address, for the refusal message of a later claim. */
  client: string;
}

/** The connected stream holding a proxy id, as a refused claim names it. */
export interface ProxyHolder {
  instance: string;
  client: string;
  since: string;
}

/**
 * The answer to a claim: taken (with DedupTable.claim's change, and the
 * highest seq this instance already queued: the Welcome's acked_seq), or
 * refused because a connected stream of another instance holds the proxy id.
 */
export type ClaimAnswer =
  | { ok: true; change: InstanceChange; previous: string; acked: number }
  | { ok: false; holder: ProxyHolder };

/** What the claims ask of a process's link service, by stream number. */
export interface ClaimedStreams {
  /** Another instance waits: cut this stream if its connection does not answer a PING. */
  probe(stream: number): void;
  /** Its proxy reconnected to another process: end this stream now, before its next batch. */
  cut(stream: number): void;
}

/**
 * A process's side of the claims, as its link service uses them: claim at
 * Hello, end when the stream is over (after its last batch), and `attach`
 * once, so that probes and cuts reach the streams.
 */
export interface ProxyClaims {
  claim(c: StreamClaim): Promise<ClaimAnswer>;
  end(stream: number): void;
  attach(streams: ClaimedStreams): void;
}

/** How the board reaches one process. */
export interface BoardPeer {
  probe(stream: number): void;
  /**
   * Cuts these streams of the process; resolves once it has, and every seq
   * it reported before is recorded (or it is gone).
   */
  release(streams: number[]): Promise<void>;
  /** The process is gone: pending releases resolve. */
  closed?(): void;
}

/**
 * Messages from a process to the primary's board (over the worker's IPC
 * channel, which keeps their order):
 * - `claim`: a stream's Hello; answered by `claimed` with the same id;
 * - `record`: a batch seq queued (DedupTable.record), sent before the batch
 *   is acknowledged to the proxy;
 * - `end`: a stream is over (sent after its last `record`);
 * - `released`: the answer to `release`, sent once the streams are cut.
 */
export type ClaimsToPrimary =
  | { t: "claim"; id: number; claim: StreamClaim }
  | { t: "record"; keyName: string; proxyId: string; instance: string; seq: number }
  | { t: "end"; stream: number }
  | { t: "released"; id: number };

/**
 * Messages from the primary's board to a process:
 * - `claimed`: the answer to `claim`;
 * - `probe`: ask a stream's connection for a PING, cut the stream if none comes;
 * - `release`: cut these streams (their proxy reconnected to another process), answer `released`.
 */
export type ClaimsToProcess =
  | { t: "claimed"; id: number; answer: ClaimAnswer }
  | { t: "probe"; stream: number }
  | { t: "release"; id: number; streams: number[] };

interface Holder extends ProxyHolder {
  /** The process whose streams hold the proxy id: one at a time. */
  process: number;
  streams: Set<number>;
}

/**
 * Who streams each proxy id, for every process of a gateway: the primary
 * owns it, with the gateway's one DedupTable, and each process's link
 * service claims a proxy id at Hello (in process: localClaims; from a
 * worker: the messages above, see dedup-client.ts). The rules are the link
 * service's (link-service.ts), whatever process a stream is on:
 *
 * - a claim of a proxy id held by a connected stream of another instance is
 *   refused (the link service answers AlreadyExists), and the holding stream
 *   is probed (cut if its connection does not answer a PING);
 * - streams of one instance may hold it together in one process (a
 *   reconnect racing a half-dead stream: that process de-duplicates them
 *   without yielding, BatchIntake);
 * - a claim of the same instance from another process (the proxy reconnected
 *   and the kernel gave its connection to another process) first releases
 *   the holding process: it cuts those streams (checked before each batch,
 *   so none is queued after) and answers; as its channel keeps order, every
 *   seq it queued before is recorded by then. Only then is the claim
 *   answered, with the highest seq queued: a batch that one process
 *   acknowledged is never queued again by another, and one it queued but
 *   could not acknowledge (the connection was gone) is acknowledged as a
 *   duplicate.
 *
 * Claims of one proxy id are answered one at a time, in order. A process
 * that dies (`gone`) holds nothing any more; what it queued and reported
 * stays recorded (a batch it queued in its last moments without reporting
 * may be queued again: its memory queue died with it anyway).
 */
export class ClaimBoard {
  readonly table: DedupTable;
  readonly #holders = new Map<string, Holder>();
  /** `process:stream` → the proxy (`key name \0 proxy id`) it holds. */
  readonly #streams = new Map<string, string>();
  readonly #peers = new Map<number, BoardPeer>();
  /** Per proxy: the claim being answered, for the next one to wait on. */
  readonly #busy = new Map<string, Promise<unknown>>();

  constructor(table: DedupTable) {
    this.table = table;
  }

  /** Proxy ids held by a connected stream. */
  get held(): number {
    return this.#holders.size;
  }

  /** A process joins (`process`: a number never reused, even for a restarted worker). */
  attach(process: number, peer: BoardPeer): void {
    this.#peers.set(process, peer);
  }

  /** A process is gone: its streams hold nothing, its pending releases resolve. */
  gone(process: number): void {
    const peer = this.#peers.get(process);
    this.#peers.delete(process);
    peer?.closed?.();
    for (const [proxy, h] of this.#holders) if (h.process === process) this.#drop(proxy, h);
  }

  claim(process: number, c: StreamClaim): Promise<ClaimAnswer> {
    const proxy = `${c.keyName}\0${c.proxyId}`;
    const before = this.#busy.get(proxy) ?? Promise.resolve();
    const answer = before.then(() => this.#claim(process, proxy, c));
    const done = answer.then(noop, noop);
    this.#busy.set(proxy, done);
    void done.then(() => {
      if (this.#busy.get(proxy) === done) this.#busy.delete(proxy);
    });
    return answer;
  }

  async #claim(process: number, proxy: string, c: StreamClaim): Promise<ClaimAnswer> {
    let h = this.#holders.get(proxy);
    if (h !== undefined && h.instance !== c.instance) {
      const first = h.streams.values().next().value;
      if (first !== undefined) this.#peers.get(h.process)?.probe(first);
      return { ok: false, holder: { instance: h.instance, client: h.client, since: h.since } };
    }
    if (h !== undefined && h.process !== process) {
      await this.#peers.get(h.process)?.release([...h.streams]);
      this.#drop(proxy, h);
      h = undefined;
    }
    if (!this.#peers.has(process)) {
      // Its process died while the claim waited: nobody hears the answer.
      return { ok: false, holder: { instance: "", client: "", since: "" } };
    }
    h ??= this.#holders.get(proxy);
    if (h === undefined) {
      h = {
        instance: c.instance,
        client: c.client,
        since: new Date().toISOString(),
        process,
        streams: new Set(),
      };
      this.#holders.set(proxy, h);
    }
    h.streams.add(c.stream);
    this.#streams.set(`${process}:${c.stream}`, proxy);
    const { change, previous } = this.table.claim(c.keyName, c.proxyId, c.instance);
    return { ok: true, change, previous, acked: this.table.highest(c.keyName, c.proxyId) };
  }

  /** A seq queued by a process for `instance` of this proxy (DedupTable.record). */
  record(keyName: string, proxyId: string, instance: string, seq: number): void {
    this.table.record(keyName, proxyId, seq, instance);
  }

  /** A stream is over: it holds its proxy id no more. */
  end(process: number, stream: number): void {
    const id = `${process}:${stream}`;
    const proxy = this.#streams.get(id);
    if (proxy === undefined) return;
    this.#streams.delete(id);
    const h = this.#holders.get(proxy);
    if (h === undefined || h.process !== process) return;
    h.streams.delete(stream);
    if (h.streams.size === 0) this.#holders.delete(proxy);
  }

  /**
   * Serves a process reached by messages (a worker's IPC channel): attaches
   * it, and returns what to do with each message it sends. Call
   * `gone(process)` when it exits.
   */
  connect(process: number, send: (m: ClaimsToProcess) => void): (m: ClaimsToPrimary) => void {
    const releases = new Map<number, () => void>();
    let next = 0;
    this.attach(process, {
      probe: (stream) => send({ t: "probe", stream }),
      release: (streams) =>
        new Promise<void>((resolve) => {
          const id = ++next;
          releases.set(id, resolve);
          send({ t: "release", id, streams });
        }),
      closed: () => {
        for (const resolve of releases.values()) resolve();
        releases.clear();
      },
    });
    return (m) => {
      switch (m.t) {
        case "claim":
          void this.claim(process, m.claim).then((answer) =>
            send({ t: "claimed", id: m.id, answer }),
          );
          return;
        case "record":
          this.record(m.keyName, m.proxyId, m.instance, m.seq);
          return;
        case "end":
          this.end(process, m.stream);
          return;
        case "released":
          releases.get(m.id)?.();
          releases.delete(m.id);
      }
    };
  }

  #drop(proxy: string, h: Holder): void {
    for (const s of h.streams) this.#streams.delete(`${h.process}:${s}`);
    if (this.#holders.get(proxy) === h) this.#holders.delete(proxy);
  }
}

/**
 * The claims of the process that runs the board (the primary, or a gateway
 * of one process): answered in process, its BatchIntake recording straight
 * into `board.table`.
 */
export function localClaims(board: ClaimBoard, process = 0): ProxyClaims {
  return {
    claim: (c) => board.claim(process, c),
    end: (stream) => board.end(process, stream),
    attach: (streams) =>
      board.attach(process, {
        probe: (stream) => streams.probe(stream),
        release: (list) => {
          for (const s of list) streams.cut(s);
          return Promise.resolve();
        },
      }),
  };
}

function noop(): void {}
