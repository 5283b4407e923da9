import { describe, expect, it } from "vitest";
import {
  autoMaxConnections,
  FILE_RESERVE,
  type FileLimit,
  fileLimitText,
  parseFileLimit,
  raiseFileLimit,
  readFileLimit,
} from "../../../../dataplane/nodes/file-limit.ts";

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
`;

describe("parseFileLimit", () => {
  it("reads the soft and hard limits of the open-files row", () => {
    expect(parseFileLimit(LIMITS)).toEqual({ soft: 1024, hard: 524288 });
  });

  it("takes unlimited as null, and a text without the row as unknown", () => {
    expect(
      parseFileLimit("Max open files            unlimited            unlimited            files"),
    ).toEqual({ soft: null, hard: null });
    expect(parseFileLimit("Max cpu time  unlimited  unlimited  seconds\n")).toBeNull();
  });

  it("reads this process's limits on Linux, and null from a file that is not there", () => {
    const own = readFileLimit();
    if (process.platform === "linux") {
      expect(own?.soft).toBeGreaterThan(0);
      expect(own?.hard).toBeGreaterThanOrEqual(own?.soft ?? 0);
    }
    expect(readFileLimit("/nonexistent/limits")).toBeNull();
  });
});

describe("autoMaxConnections", () => {
  it.each([
    // soft limit, cap: the reserve is an eighth, at least 256, at most half.
    [256, 128],
    [512, 256],
    [1024, 768],
    [2048, 1792],
    [4096, 3584],
    [65536, 57344],
    [1048576, 917504],
    [1, 1],
  ])("soft limit %i gives %i connections", (soft, cap) => {
    expect(autoMaxConnections({ soft, hard: soft })).toBe(cap);
  });

  it("always leaves a reserve below the limit, of at least min(256, half)", () => {
    for (let soft = 2; soft <= 1 << 20; soft = Math.ceil(soft * 1.37)) {
      const cap = autoMaxConnections({ soft, hard: null });
      expect(cap).toBeGreaterThan(0);
      expect(soft - cap).toBeGreaterThanOrEqual(Math.min(FILE_RESERVE.min, Math.floor(soft / 2)));
    }
  });

  it("does not cap when the limit is unknown or unlimited", () => {
    expect(autoMaxConnections(null)).toBe(0);
    expect(autoMaxConnections({ soft: null, hard: null })).toBe(0);
  });
});

describe("raiseFileLimit", () => {
  /** A process whose limits `run` (prlimit) changes as asked, or fails to. */
  function fake(start: FileLimit, prlimit: "works" | "fails" | "ignored") {
    let limit: FileLimit | null = { ...start };
    const calls: string[][] = [];
    return {
      calls,
      read: () => limit,
      run: (file: string, args: string[]) => {
        calls.push([file, ...args]);
        if (prlimit === "fails") throw new Error("spawnSync prlimit ENOENT");
        const m = /^--nofile=(\d+):(\d+)$/.exec(args.at(-1)!);
        if (prlimit === "works" && m !== null) limit = { soft: Number(m[1]), hard: Number(m[2]) };
      },
      unreadable() {
        limit = null;
      },
    };
  }

  it("raises the soft limit to the hard one with prlimit on this process", () => {
    const f = fake({ soft: 1024, hard: 4096 }, "works");
    expect(raiseFileLimit(f.read, f.run)).toEqual({
      limit: { soft: 4096, hard: 4096 },
      raisedFrom: 1024,
    });
    expect(f.calls).toEqual([["prlimit", "--pid", String(process.pid), "--nofile=4096:4096"]]);
  });

  it("does nothing when the soft limit is the hard one already (Node raises it at start)", () => {
    const f = fake({ soft: 4096, hard: 4096 }, "works");
    expect(raiseFileLimit(f.read, f.run)).toEqual({ limit: { soft: 4096, hard: 4096 } });
    expect(f.calls).toEqual([]);
  });

  it("reports a failure and the limit in effect, and does not throw", () => {
    const failing = fake({ soft: 1024, hard: 4096 }, "fails");
    expect(raiseFileLimit(failing.read, failing.run)).toEqual({
      limit: { soft: 1024, hard: 4096 },
      error: "prlimit failed: spawnSync prlimit ENOENT",
    });
    const ignored = fake({ soft: 1024, hard: 4096 }, "ignored");
    expect(raiseFileLimit(ignored.read, ignored.run)).toMatchObject({
      limit: { soft: 1024 },
      error: "prlimit did not change the soft limit",
    });
    const unknown = fake({ soft: 1, hard: 1 }, "works");
    unknown.unreadable();
    expect(raiseFileLimit(unknown.read, unknown.run)).toEqual({
      limit: null,
      error: "cannot read /proc/self/limits",
    });
  });

  it("on this machine: never throws, and leaves the soft limit at the hard one", () => {
    const r = raiseFileLimit();
    if (process.platform === "linux") {
      expect(r.limit?.soft).toBe(r.limit?.hard);
    }
  });
});

describe("fileLimitText", () => {
  it("says the limit, whether it was raised, and the cap", () => {
    expect(fileLimitText({ limit: { soft: 4096, hard: 4096 }, raisedFrom: 1024 }, 3584)).toBe(
      "open-file limit 4096 (hard 4096), raised from 1024; sender connections capped at 3584 per process",
    );
    expect(
      fileLimitText({ limit: { soft: 1024, hard: 4096 }, error: "prlimit failed: x" }, 768),
    ).toBe(
      "open-file limit 1024 (hard 4096), not raised: prlimit failed: x; sender connections capped at 768 per process",
    );
    expect(fileLimitText({ limit: null, error: "cannot read /proc/self/limits" }, 0)).toBe(
      "open-file limit unknown, not raised: cannot read /proc/self/limits; sender connections not capped",
    );
  });
});
