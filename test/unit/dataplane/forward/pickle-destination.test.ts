import { spawnSync } from "node:child_process";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Destination } from "../../../../dataplane/forward/destination.ts";
import { parseDestination } from "../../../../dataplane/forward/destination-spec.ts";
import { pickleTransport } from "../../../../dataplane/forward/pickle-destination.ts";
import { until } from "../../../fixtures/until.ts";

const open: Array<{ close(): Promise<void> | void }> = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

/** A TCP server on 127.0.0.1 keeping what each connection sent; `onData` may act on a connection. */
async function server(onData?: (socket: net.Socket, received: Buffer) => void) {
  const connections: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    const parts: Buffer[] = [];
    connections.push(parts);
    s.on("data", (b) => {
      parts.push(b);
      onData?.(s, Buffer.concat(parts));
    });
    s.on("error", () => {});
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  open.push({
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  });
  return { port, connections, bytes: (i: number) => Buffer.concat(connections[i] ?? []) };
}

/** Real Python: the frames' datapoints as `name value timestamp` lines (repr of the floats and ints). */
function unpickle(bytes: Buffer): string[] {
  const script = `
import pickle, struct, sys
data = sys.stdin.buffer.read()
i = 0
while i < len(data):
    (n,) = struct.unpack("!I", data[i:i + 4])
    for name, (ts, value) in pickle.loads(data[i + 4:i + 4 + n]):
        print("%s %r %r" % (name, value, ts))
    i += 4 + n
`;
  const r = spawnSync("python3", ["-c", script], { input: bytes, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return String(r.stdout).split("\n").filter(Boolean);
}

function dest(port: number): Destination {
  const d = new Destination(pickleTransport(parseDestination(`pickle://127.0.0.1:${port}:a`)), {
    backoffMinMs: 20,
    backoffMaxMs: 100,
  });
  open.push(d);
  d.start();
  return d;
}

const lines = (from: number, n: number): string =>
  Array.from(
    { length: n },
    (_, i) => `p.m${from + i} ${from + i}.5 ${1700000000 + from + i}\n`,
  ).join("");
const expected = (from: number, n: number): string[] =>
  Array.from({ length: n }, (_, i) => `p.m${from + i} ${from + i}.5 ${1700000000 + from + i}`);

describe("pickle destination", () => {
  it("sends the lines as pickle frames a Python unpickler reads, and counts them forwarded", async () => {
    const s = await server();
    const d = dest(s.port);
    expect(d.spec).toMatchObject({
      id: `pickle://127.0.0.1:${s.port}:a`,
      spec: `pickle://127.0.0.1:${s.port}:a`,
    });
    for (let i = 0; i < 12; i++) d.enqueue(Buffer.from(lines(i * 100, 100)), 100);
    await until(() => d.stats().forwarded === 1_200);
    await until(() => unpickle(s.bytes(0)).length === 1_200);
    expect(unpickle(s.bytes(0))).toEqual(expected(0, 1_200));
    expect(d.stats()).toMatchObject({ routed: 1_200, dropped: 0, queuedLines: 0 });
  });

  it("a line that cannot be encoded is dropped (send_failed); the rest of its write goes", async () => {
    const s = await server();
    const d = dest(s.port);
    d.enqueue(Buffer.from(`${lines(0, 2)}not a datapoint line\n${lines(2, 1)}`), 4);
    await until(() => d.stats().forwarded === 3);
    expect(d.stats().droppedBy.send_failed).toBe(1);
    await until(() => unpickle(s.bytes(0)).length === 3);
    expect(unpickle(s.bytes(0))).toEqual(expected(0, 3));
  });

  it("what a dropped connection had in flight is encoded again over the next one", async () => {
    // The first connection is cut as soon as anything arrives on it.
    const s = await server((socket) => {
      if (s.connections.length === 1) socket.destroy();
    });
    const d = dest(s.port);
    d.enqueue(Buffer.from(lines(0, 50)), 50);
    await until(() => s.connections.length >= 2 && unpickle(s.bytes(1)).length >= 50);
    const got = unpickle(s.bytes(1));
    // Everything arrives on the second connection, in order, as whole frames.
    expect(got.slice(-50)).toEqual(expected(0, 50));
    expect(d.stats().resent).toBeGreaterThan(0);
  });
});
