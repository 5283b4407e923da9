import { afterEach, describe, expect, it, vi } from "vitest";
import { type SegmentSpool, SpoolReadError } from "../../../../dataplane/spool/segment-spool.ts";
import { spoolReadBack } from "../../../../dataplane/spool/spool-read-back.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";

afterEach(() => {
  vi.useRealTimers();
});

const loc = { segment: 1, offset: 660 };
const eio = (): SpoolReadError =>
  new SpoolReadError("spool_unreadable", "/spool/seg-1", 660, "EIO: i/o error, read", true);

/** A spool whose reads give, in turn, what `results` says (an Error rejects). */
function fakeSpool(results: Array<Buffer | Error>): {
  spool: SegmentSpool;
  reads: () => number;
  close: () => void;
} {
  let n = 0;
  let closed = false;
  const spool = {
    dir: "/spool",
    get closed() {
      return closed;
    },
    read: () => {
      const r = results[Math.min(n++, results.length - 1)]!;
      return r instanceof Error ? Promise.reject(r) : Promise.resolve(r);
    },
  } as unknown as SegmentSpool;
  return { spool, reads: () => n, close: () => (closed = true) };
}

describe("spoolReadBack", () => {
  it("retries I/O errors, waiting retryMs and then twice as long each time, and returns the payload", async () => {
    vi.useFakeTimers();
    const { spool, reads } = fakeSpool([eio(), eio(), Buffer.from("ok")]);
    const { log, lines } = captureLog();
    const read = spoolReadBack(
      spool,
      loc,
      { seq: 3, size: 2, done: false },
      { attempts: 5, retryMs: 100, log },
    );
    await vi.advanceTimersByTimeAsync(99);
    expect(reads()).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(reads()).toBe(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(reads()).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(await read).toEqual(Buffer.from("ok"));
    expect(reads()).toBe(3);
    expect(lines.filter((l) => l.msg.includes("trying again"))).toMatchObject([
      { level: 40, seq: 3, file: "/spool/seg-1", offset: 660, attempt: 1 },
      { level: 40, attempt: 2 },
    ]);
  });

  it("gives up after `attempts` reads, returning the error: the caller counts the batch lost", async () => {
    const { spool, reads } = fakeSpool([eio()]);
    const { log } = captureLog();
    const r = await spoolReadBack(
      spool,
      loc,
      { seq: 3, size: 2, done: false },
      { attempts: 3, retryMs: 1, log },
    );
    expect(r).toBeInstanceOf(SpoolReadError);
    expect(r).toMatchObject({ reason: "spool_unreadable", transient: true });
    expect(reads()).toBe(3);
  });

  it("does not retry a damaged record", async () => {
    const damaged = new SpoolReadError(
      "spool_corrupt",
      "/spool/seg-1",
      660,
      "payload crc mismatch",
      false,
    );
    const { spool, reads } = fakeSpool([damaged]);
    const { log, lines } = captureLog();
    const r = await spoolReadBack(
      spool,
      loc,
      { seq: 3, size: 2, done: false },
      { attempts: 5, retryMs: 1, log },
    );
    expect([r, reads(), lines.length]).toEqual([damaged, 1, 0]);
  });

  it("takes any other failure for an I/O error, at the batch's location", async () => {
    const { spool } = fakeSpool([new Error("EBADF: bad file descriptor, read")]);
    const { log } = captureLog();
    const r = await spoolReadBack(
      spool,
      loc,
      { seq: 3, size: 2, done: false },
      { attempts: 1, retryMs: 1, log },
    );
    expect(r).toMatchObject({
      reason: "spool_unreadable",
      transient: true,
      file: "/spool",
      offset: 660,
      message: expect.stringContaining("EBADF"),
    });
  });

  it("a batch done meanwhile, or a spool closed under the read, needs no payload: null, nothing lost", async () => {
    const { log } = captureLog();
    // Done while it was read: the payload is not handed out.
    const batch = { seq: 3, size: 2, done: false };
    const a = fakeSpool([Buffer.from("ok")]);
    const read = spoolReadBack(a.spool, loc, batch, { attempts: 5, retryMs: 1, log });
    batch.done = true;
    expect(await read).toBeNull();
    // Done while waiting to retry: no more reads.
    vi.useFakeTimers();
    const waiting = { seq: 4, size: 2, done: false };
    const b = fakeSpool([eio()]);
    const retry = spoolReadBack(b.spool, loc, waiting, { attempts: 5, retryMs: 100, log });
    await vi.advanceTimersByTimeAsync(50);
    waiting.done = true;
    await vi.advanceTimersByTimeAsync(50);
    expect([await retry, b.reads()]).toEqual([null, 1]);
    // The spool closed: the read's failure means nothing.
    const c = fakeSpool([eio()]);
    c.close();
    expect(
      await spoolReadBack(
        c.spool,
        loc,
        { seq: 5, size: 2, done: false },
        { attempts: 5, retryMs: 100, log },
      ),
    ).toBeNull();
    expect(c.reads()).toBe(1);
  });
});
