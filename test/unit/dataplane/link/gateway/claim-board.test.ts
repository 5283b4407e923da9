// The claims protocol between a gateway's processes (claim-board.ts,
// dedup-client.ts): the primary's ClaimBoard and workers' DedupClients,
// joined by real MessageChannels (ordered, asynchronous, structured clone:
// what a worker's IPC channel is). The link service's side (ClaimedStreams)
// is a recorder here; the integration test gateway-workers.test.ts runs the
// whole thing across processes.
import { MessageChannel, type MessagePort } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import {
  ClaimBoard,
  type ClaimsToPrimary,
  type ClaimsToProcess,
  localClaims,
  type StreamClaim,
} from "../../../../../dataplane/link/gateway/claim-board.ts";
import { DedupClient } from "../../../../../dataplane/link/gateway/dedup-client.ts";
import { DedupTable } from "../../../../../dataplane/link/gateway/dedup-table.ts";

const ports: MessagePort[] = [];
afterEach(() => {
  for (const p of ports.splice(0)) p.close();
});

interface Worker {
  client: DedupClient;
  table: DedupTable;
  probed: number[];
  cut: number[];
}

/** A worker process's claims, joined to `board` as process `process` by a MessageChannel. */
function worker(board: ClaimBoard, process: number): Worker {
  const { port1, port2 } = new MessageChannel();
  ports.push(port1, port2);
  const table = new DedupTable();
  const client = new DedupClient(table, (m) => port2.postMessage(m));
  const w: Worker = { client, table, probed: [], cut: [] };
  client.attach({ probe: (s) => w.probed.push(s), cut: (s) => w.cut.push(s) });
  const onMessage = board.connect(process, (m) => port1.postMessage(m));
  port1.on("message", (m: ClaimsToPrimary) => onMessage(m));
  port2.on("message", (m: ClaimsToProcess) => client.receive(m));
  return w;
}

function claim(stream: number, instance: string, proxyId = "p1"): StreamClaim {
  return { stream, keyName: "k", proxyId, instance, client: `10.0.0.${stream}` };
}

describe("ClaimBoard and DedupClient", () => {
  it("a proxy that moves to another process: the first is cut and answers before the claim, so its last records count", async () => {
    const board = new ClaimBoard(new DedupTable());
    const a = worker(board, 1);
    const b = worker(board, 2);
    expect(await a.client.claim(claim(1, "i1"))).toMatchObject({
      ok: true,
      change: "first",
      acked: 0,
    });
    // Worker A queues seqs 1..5 (as BatchIntake records them) and, with the
    // last records still on their way, the proxy's reconnect lands on B.
    for (let seq = 1; seq <= 5; seq++) a.table.record("k", "p1", seq);
    const answer = await b.client.claim(claim(7, "i1"));
    expect(answer).toEqual({ ok: true, change: "same", previous: "i1", acked: 5 });
    // A was told to cut its stream; B's own table now acknowledges seq 5 as a duplicate.
    expect(a.cut).toEqual([1]);
    expect(b.table.highest("k", "p1")).toBe(5);
    // B's records reach the board; when the proxy comes back to A, A learns them.
    b.table.record("k", "p1", 6);
    a.client.end(1);
    expect(await a.client.claim(claim(2, "i1"))).toMatchObject({ ok: true, acked: 6 });
    expect(b.cut).toEqual([7]);
    expect(a.table.highest("k", "p1")).toBe(6);
  });

  it("another instance is refused while one is connected, anywhere; the holder is probed", async () => {
    const board = new ClaimBoard(new DedupTable());
    const a = worker(board, 1);
    const b = worker(board, 2);
    await a.client.claim(claim(3, "i1"));
    const refused = await b.client.claim(claim(4, "i2"));
    expect(refused).toMatchObject({ ok: false, holder: { instance: "i1", client: "10.0.0.3" } });
    await until(() => a.probed.length > 0);
    expect(a.probed).toEqual([3]);
    expect(a.cut).toEqual([]);
    // Once the holder's stream is over, the other instance gets in, from nothing.
    a.table.record("k", "p1", 9);
    a.client.end(3);
    expect(await b.client.claim(claim(4, "i2"))).toEqual({
      ok: true,
      change: "new",
      previous: "i1",
      acked: 0,
    });
    expect(board.held).toBe(1);
  });

  it("streams of one instance may share a proxy id within one process (a reconnect racing a half-dead stream)", async () => {
    const board = new ClaimBoard(new DedupTable());
    const a = worker(board, 1);
    await a.client.claim(claim(1, "i1"));
    expect(await a.client.claim(claim(2, "i1"))).toMatchObject({ ok: true, change: "same" });
    expect(a.cut).toEqual([]);
    a.client.end(1);
    a.client.end(2);
    await until(() => board.held === 0);
  });

  it("a dead process holds nothing; a release it never answers does not hold up the claim", async () => {
    const board = new ClaimBoard(new DedupTable());
    const a = worker(board, 1);
    const b = worker(board, 2);
    await a.client.claim(claim(1, "i1"));
    // A stops answering (hung, then dies): B's claim waits for the release…
    ports[1]!.close();
    let answered = false;
    const pending = b.client.claim(claim(5, "i1")).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(answered).toBe(false);
    // …until the pool reports A gone.
    board.gone(1);
    expect(await pending).toMatchObject({ ok: true });
    // And another instance is refused for B's stream now, not A's.
    expect(await localClaims(board, 0).claim(claim(9, "i2"))).toMatchObject({
      ok: false,
      holder: { client: "10.0.0.5" },
    });
  });

  it("claims of one proxy id are answered in order", async () => {
    const board = new ClaimBoard(new DedupTable());
    const a = worker(board, 1);
    const b = worker(board, 2);
    await a.client.claim(claim(1, "i1"));
    const order: string[] = [];
    const first = b.client.claim(claim(2, "i1")).then((r) => order.push(`b:${r.ok}`));
    const second = a.client.claim(claim(3, "i1")).then((r) => order.push(`a:${r.ok}`));
    await Promise.all([first, second]);
    expect(order).toEqual(["b:true", "a:true"]);
    // The proxy is A's again: B's stream was cut for it.
    expect(b.cut).toEqual([2]);
  });

  it("a worker's claims fail once the primary is gone", async () => {
    const board = new ClaimBoard(new DedupTable());
    const a = worker(board, 1);
    a.client.close(new Error("the primary process is gone"));
    await expect(a.client.claim(claim(1, "i1"))).rejects.toThrow(/primary/);
  });
});

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
}
