// carbon's pickle protocol into polymur (--pickle-addr): from a real
// carbon-relay (Debian's graphite-carbon, DESTINATION_PROTOCOL = pickle),
// every datapoint arrives; hostile messages are refused and counted, and the
// connection and the others go on.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type CarbonRelay, startCarbonRelay } from "../fixtures/carbon.ts";
import { LineSink, sendLines } from "../fixtures/line-sink.ts";
import { PolymurProcess, waitForStats } from "../fixtures/polymur.ts";
import { waitFor } from "../fixtures/until.ts";

const done: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (done.length > 0) await done.pop()!();
});

async function sink(): Promise<LineSink> {
  const s = await LineSink.start();
  done.push(() => s.close());
  return s;
}

async function relay(args: string[]): Promise<PolymurProcess> {
  const p = await PolymurProcess.relay(args);
  done.push(() => p.stop());
  return p;
}

function frame(payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(payload.length, 0);
  return Buffer.concat([h, payload]);
}

describe("pickle listener", () => {
  it("a real carbon-relay relaying plaintext to polymur's pickle port: every datapoint arrives", async () => {
    const out = await sink();
    const p = await relay(["--pickle-addr", "127.0.0.1:0", "--destinations", out.address]);
    expect(p.picklePort).not.toBeNull();
    const cr: CarbonRelay = await startCarbonRelay({
      destinations: [`127.0.0.1:${p.picklePort}:a`],
      destinationProtocol: "pickle",
    });
    done.push(() => cr.close());
    const n = 3_000;
    const lines = Array.from(
      { length: n },
      (_, i) => `pickle.in.m${i % 50} ${(i * 0.5).toString()} ${1700000000 + i}`,
    );
    await sendLines(cr.linePort, `${lines.join("\n")}\n`);
    await waitFor(
      "every datapoint through carbon-relay's pickle",
      () => (out.lines.length >= n ? true : undefined),
      30_000,
    );
    // carbon-relay sends values as floats and timestamps as numbers: the same text here.
    expect(new Set(out.lines)).toEqual(new Set(lines));
    expect(out.lines).toHaveLength(n);
    const s = await waitForStats(p, (x) => x.datapoints.forwarded === n);
    expect(s.datapoints.rejected).toBe(0);
  });

  it("refuses hostile messages with reasons, keeps the connection, and other connections are unharmed", async () => {
    const out = await sink();
    const p = await relay([
      "--pickle-addr",
      "127.0.0.1:0",
      "--destinations",
      out.address,
      "--workers",
      "1",
    ]);
    const evil = net.connect(p.picklePort!, "127.0.0.1");
    await new Promise((r) => evil.once("connect", r));
    // A GLOBAL (never executed): refused once, as bad_pickle.
    evil.write(frame(Buffer.from("cos\nsystem\n(S'true'\ntR.", "latin1")));
    await sendLines(p.port, "plain.ok 1 1700000000\n");
    const after = await waitForStats(p, (x) => (x.rejected["bad_pickle"] ?? 0) === 1);
    expect(after.rejected["bad_pickle"]).toBe(1);
    expect(evil.destroyed).toBe(false);
    // A declared 2 GiB message: refused at once, its bytes skipped as they come.
    const big = Buffer.alloc(4);
    big.writeUInt32BE(2 ** 31, 0);
    evil.write(big);
    await waitForStats(p, (x) => (x.rejected["pickle_too_large"] ?? 0) === 1);
    expect(evil.destroyed).toBe(false);
    evil.destroy();
    await waitFor("the plaintext line arrived", () =>
      out.lines.includes("plain.ok 1 1700000000") ? true : undefined,
    );
  });
});
