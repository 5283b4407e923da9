import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../../../../../common/logger.ts";
import { SpoolAppender } from "../../../../../dataplane/link/proxy/spool-appender.ts";
import { SegmentSpool } from "../../../../../dataplane/spool/segment-spool.ts";
import { captureLog } from "../../../../fixtures/capture-log.ts";
import { tempDirs } from "../../../../fixtures/spool-files.ts";

const temp = tempDirs();
afterEach(() => {
  vi.restoreAllMocks();
  temp.cleanup();
});

describe("SpoolAppender", () => {
  it("a failed append is null and counted; a streak of failures is logged when it starts and when it ends", async () => {
    const { spool } = SegmentSpool.open(temp.make(), { log: createLogger({ level: "silent" }) });
    const { log, lines } = captureLog();
    const appender = new SpoolAppender(spool, log);
    expect(appender.append(1, 1, 5, 10, Buffer.from("one"))).toEqual({ segment: 1, offset: 0 });
    const append = vi.spyOn(spool, "append").mockImplementation(() => {
      throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    });
    expect(appender.append(2, 1, 5, 10, Buffer.from("two"))).toBeNull();
    expect(appender.append(3, 1, 5, 10, Buffer.from("three"))).toBeNull();
    expect(appender.failures).toBe(2);
    expect(lines).toMatchObject([
      {
        level: 50,
        seq: 2,
        spool: spool.dir,
        err: expect.stringContaining("ENOSPC"),
        msg: expect.stringContaining("append failed"),
      },
    ]);
    append.mockRestore();
    const loc = appender.append(4, 1, 5, 10, Buffer.from("four"));
    expect(await spool.read(loc!, 4, 4)).toEqual(Buffer.from("four"));
    expect(lines[1]).toMatchObject({ level: 40, failedAppends: 2, seq: 4 });
    expect(lines[1]!.msg).toContain("appending works again after 2 failed appends");
    // A new streak is logged again; the count goes on.
    vi.spyOn(spool, "append").mockImplementation(() => {
      throw new Error("EACCES");
    });
    expect(appender.append(5, 1, 5, 10, Buffer.from("five"))).toBeNull();
    expect([appender.failures, lines.filter((l) => l.level === 50).length]).toEqual([3, 2]);
    spool.close();
  });
});
