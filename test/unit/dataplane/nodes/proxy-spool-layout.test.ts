import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  adoptedSpools,
  processSpoolDir,
  workerProxyId,
} from "../../../../dataplane/nodes/proxy-spool-layout.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A --spool-dir whose p<j> directories hold a segment for each j in `full`, none for each in `empty`. */
function root(full: number[], empty: number[] = []): string {
  const d = mkdtempSync(path.join(tmpdir(), "polymur-proxy-layout-"));
  dirs.push(d);
  for (const j of full) {
    mkdirSync(path.join(d, `p${j}`));
    writeFileSync(path.join(d, `p${j}`, "seg-0000000000000001.spool"), "x");
  }
  for (const j of empty) mkdirSync(path.join(d, `p${j}`));
  // Not a process's directory: left alone.
  mkdirSync(path.join(d, "px"));
  return d;
}

describe("proxy spool layout", () => {
  it("process 0's spool is --spool-dir itself (a single-process proxy's), process k's p<k>", () => {
    expect(processSpoolDir("/s", 0)).toBe("/s");
    expect(processSpoolDir("/s", 3)).toBe(path.join("/s", "p3"));
  });

  it("derives process k's proxy id from process 0's", () => {
    expect(workerProxyId("host-1234", 0)).toBe("host-1234");
    expect(workerProxyId("host-1234", 2)).toBe("host-1234.w2");
  });

  it("process k of n takes over every p<j>, j ≥ n, with j mod n = k: none is left to nobody", () => {
    const d = root([1, 2, 3, 4, 5, 7]);
    const taken = (k: number, n: number): number[] => adoptedSpools(d, k, n).map((a) => a.index);
    expect(taken(0, 1)).toEqual([1, 2, 3, 4, 5, 7]);
    expect([taken(0, 3), taken(1, 3), taken(2, 3)]).toEqual([[3], [4, 7], [5]]);
    // Every directory beyond the count is someone's, exactly once.
    for (const n of [1, 2, 3, 4, 8]) {
      const all = Array.from({ length: n }, (_, k) => taken(k, n)).flat();
      expect(all.sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 7].filter((j) => j >= n));
    }
  });

  it("removes an empty directory of a number it would take over, and keeps the live ones' own", () => {
    const d = root([], [1, 2, 3]);
    expect(adoptedSpools(d, 0, 2)).toEqual([]);
    expect(existsSync(path.join(d, "p2"))).toBe(false);
    expect(existsSync(path.join(d, "p1"))).toBe(true); // process 1's own
    expect(existsSync(path.join(d, "p3"))).toBe(true); // process 1's to take over
    expect(existsSync(path.join(d, "px"))).toBe(true);
  });

  it("finds nothing in a directory that is not there", () => {
    expect(adoptedSpools(path.join(tmpdir(), "polymur-no-such-dir-x"), 0, 1)).toEqual([]);
  });
});
