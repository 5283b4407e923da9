import { describe, expect, it } from "vitest";
import { ByteQueue } from "../../../../dataplane/forward/byte-queue.ts";
import { putBack, takeWrite } from "../../../../dataplane/forward/queued-writes.ts";

describe("queued writes", () => {
  it("takes chunks joined into one buffer, and puts writes back in order", () => {
    const q = new ByteQueue();
    q.push(Buffer.from("a 1 1\n"), 1);
    q.push(Buffer.from("b 2 2\nc 3 3\n"), 2);
    q.push(Buffer.from("d 4 4\n"), 1);
    const w = takeWrite(q, 18);
    expect(w.chunks.map(String)).toEqual(["a 1 1\nb 2 2\nc 3 3\n"]);
    expect(w).toMatchObject({ lines: [3], bytes: 18, count: 3 });
    putBack(q, [w]);
    const all = takeWrite(q, Number.POSITIVE_INFINITY);
    expect(String(all.chunks[0])).toBe("a 1 1\nb 2 2\nc 3 3\nd 4 4\n");
    expect(all.count).toBe(4);
  });
});
