import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PolymurError } from "../../../../../common/errors.ts";
import { ApiKeyRing, NO_KEYS_LINE } from "../../../../../dataplane/link/gateway/api-keys.ts";
import { GatewayCounters } from "../../../../../dataplane/link/gateway/gateway-counters.ts";
import {
  KeysFileReloader,
  type KeysFileReloaderOptions,
} from "../../../../../dataplane/link/gateway/keys-file-reloader.ts";
import { type CapturedLine, captureLog } from "../../../../fixtures/capture-log.ts";
import { until } from "../../../../fixtures/until.ts";

const hex = (s: string): string => createHash("sha256").update(s).digest("hex");

/** A reloader over a temp keys file, with its log and counters kept. */
function reloader(
  text: string,
  over: Partial<KeysFileReloaderOptions> = {},
): {
  r: KeysFileReloader;
  ring: ApiKeyRing;
  file: string;
  lines: CapturedLine[];
  counters: GatewayCounters;
  /** Names of keys removed, by each replace that removed any, in order. */
  removals: string[][];
} {
  const dir = mkdtempSync(path.join(tmpdir(), "polymur-keys-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, "keys");
  writeFileSync(file, text);
  const ring = new ApiKeyRing();
  const { log, lines } = captureLog();
  const counters = new GatewayCounters();
  const r = new KeysFileReloader({
    file,
    ring,
    log,
    counters,
    stepMs: 10,
    settleMs: 30,
    confirmMs: 100,
    maxWaitMs: 500,
    ...over,
  });
  cleanups.push(() => r.stop());
  const removals: string[][] = [];
  ring.on("changed", (removed) => {
    if (removed.size > 0) removals.push([...removed].map((id) => id.split("\0")[0]!));
  });
  return { r, ring, file, lines, counters, removals };
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  vi.useRealTimers();
  while (cleanups.length > 0) cleanups.pop()!();
});

const warnings = (lines: CapturedLine[]): CapturedLine[] => lines.filter((l) => l.level === 40);

describe("KeysFileReloader", () => {
  it("start-up: applies the file; a last line without a newline is taken, with a warning", () => {
    const k = reloader("a s-a\nb s-b");
    k.r.load();
    expect(k.ring.names()).toEqual(["a", "b"]);
    expect(warnings(k.lines).map((l) => l.msg)).toEqual([
      "the keys file's last line has no newline: taken at start-up, but a re-read file is applied only if it ends with a newline",
    ]);
  });

  it("start-up: a file that cannot be read or does not parse is an error (POLYMUR_ERR_CONFIG)", () => {
    const k = reloader("a s-a\nbad/name s\n");
    expect(() => k.r.load()).toThrow(/keys:2: key name "bad\/name"/);
    rmSync(k.file);
    expect(() => k.r.load()).toThrow(PolymurError);
    expect(() => k.r.load()).toThrow(/cannot read keys file .*ENOENT/);
  });

  it("a good reload: applied, counted, logged with the names added, removed and rotated, never a secret", async () => {
    const k = reloader("a s-a\nb s-b\nc s-c\n");
    k.r.load();
    writeFileSync(k.file, `b s-b\nc sha256:${hex("rotated-c")}\nd s-d\n`);
    await k.r.reload();
    expect(k.ring.names()).toEqual(["b", "c", "d"]);
    expect(k.ring.authenticate("rotated-c")?.name).toBe("c");
    expect(k.counters.keysReloads.applied).toBe(1);
    const line = k.lines.find((l) => l.msg === "API keys reloaded")!;
    expect(line).toMatchObject({
      keys: ["b", "c", "d"],
      added: ["d"],
      removed: ["a"],
      rotated: ["c"],
    });
    const all = JSON.stringify(k.lines);
    for (const secret of ["s-a", "s-b", "s-d", "rotated-c", hex("rotated-c"), hex("s-a")]) {
      expect(all).not.toContain(secret);
    }
    // The same file again: applied, nothing changes.
    await k.r.reload();
    expect(k.lines.at(-1)?.msg).toBe("API keys file read again: no change");
  });

  it("`: > keys` keeps every key and says why; the no-keys line revokes them on purpose", async () => {
    const k = reloader("a s-a\nb s-b\n");
    k.r.load();
    writeFileSync(k.file, "");
    await k.r.reload();
    expect(k.ring.names()).toEqual(["a", "b"]);
    expect(k.removals).toEqual([]);
    expect(k.counters.keysReloads.failed.empty).toBe(1);
    const w = warnings(k.lines).at(-1)!;
    expect(w).toMatchObject({ reason: "empty", file: k.file, keys: ["a", "b"] });
    expect(w.msg).toContain(`write the line "${NO_KEYS_LINE}"`);
    expect(w.msg).toContain("keeping the 2 keys in force");
    // Comments alone are no keys either.
    writeFileSync(k.file, "# all gone\n");
    await k.r.reload();
    expect(k.ring.size).toBe(2);
    expect(k.counters.keysReloads.failed.empty).toBe(2);
    writeFileSync(k.file, `# every tenant moved away\n${NO_KEYS_LINE}\n`);
    await k.r.reload();
    expect(k.ring.size).toBe(0);
    expect(k.removals).toEqual([["a", "b"]]);
    expect(warnings(k.lines).at(-1)).toMatchObject({ removed: ["a", "b"], keys: [] });
  });

  it("a file cut off mid-line is not applied (its last line would parse as another secret)", async () => {
    const k = reloader("a s-a\nb s-b\n");
    k.r.load();
    writeFileSync(k.file, "a s-a\nb s-");
    await k.r.reload();
    expect(k.ring.authenticate("s-b")?.name).toBe("b");
    expect(k.removals).toEqual([]);
    expect(k.counters.keysReloads.failed.incomplete).toBe(1);
    expect(warnings(k.lines).at(-1)).toMatchObject({ reason: "incomplete", line: 2 });
    expect(String(warnings(k.lines).at(-1)?.msg)).toMatch(
      /^API keys file not applied: .*keys:2: the last line has no newline at the end/,
    );
  });

  it("a bad line or a vanished file keeps the keys, with file, line and reason", async () => {
    const k = reloader("a s-a\n");
    k.r.load();
    writeFileSync(k.file, "a s-a\nb s-b extra\n");
    await k.r.reload();
    expect(warnings(k.lines).at(-1)).toMatchObject({ reason: "invalid", line: 2, file: k.file });
    expect(String(warnings(k.lines).at(-1)?.detail)).toMatch(/keys:2: expected "name secret"/);
    rmSync(k.file);
    await k.r.reload();
    expect(warnings(k.lines).at(-1)).toMatchObject({ reason: "unreadable" });
    expect(k.ring.names()).toEqual(["a"]);
    expect(k.counters.keysReloads.failed).toMatchObject({ invalid: 1, unreadable: 1 });
    expect(k.counters.keysReloads.applied).toBe(0);
  });

  it("waits for a file being written to settle: a state seen mid-write is never applied", async () => {
    vi.useFakeTimers();
    const k = reloader("a s-a\nb s-b\nc s-c\n");
    k.r.load();
    // Rewritten in pieces: the first read sees two whole lines (c not yet
    // written), which would revoke c.
    writeFileSync(k.file, "a s-a\nb s-b\n");
    const done = k.r.reload();
    await vi.advanceTimersByTimeAsync(10);
    writeFileSync(k.file, "a s-a\nb s-b\nc s-c\nd s-d\n");
    await vi.advanceTimersByTimeAsync(1_000);
    await done;
    expect(k.ring.names()).toEqual(["a", "b", "c", "d"]);
    expect(k.removals).toEqual([]);
  });

  it("a reload that removes keys waits longer (confirmMs) than one that only adds", async () => {
    vi.useFakeTimers();
    const k = reloader("a s-a\nb s-b\n");
    k.r.load();
    writeFileSync(k.file, "a s-a\nb s-b\nc s-c\n");
    let done = k.r.reload();
    await vi.advanceTimersByTimeAsync(40);
    await done;
    expect(k.ring.names()).toEqual(["a", "b", "c"]);
    writeFileSync(k.file, "a s-a\n");
    done = k.r.reload();
    await vi.advanceTimersByTimeAsync(60);
    expect(k.ring.names()).toEqual(["a", "b", "c"]); // settled, but not confirmed yet
    await vi.advanceTimersByTimeAsync(60);
    await done;
    expect(k.ring.names()).toEqual(["a"]);
  });

  it("a file that keeps changing is given up ('unsettled'), and read again when asked", async () => {
    vi.useFakeTimers();
    const k = reloader("a s-a\n");
    k.r.load();
    let n = 0;
    const writer = setInterval(() => writeFileSync(k.file, `a s-a\nb s-${n++}\n`), 5);
    const done = k.r.reload();
    await vi.advanceTimersByTimeAsync(600);
    await done;
    clearInterval(writer);
    expect(k.counters.keysReloads.failed.unsettled).toBe(1);
    expect(warnings(k.lines).at(-1)).toMatchObject({ reason: "unsettled" });
    expect(k.ring.names()).toEqual(["a"]);
    const again = k.r.reload();
    await vi.advanceTimersByTimeAsync(100);
    await again;
    expect(k.ring.names()).toEqual(["a", "b"]);
  });

  it("a reload asked for while one runs makes it read once more", async () => {
    vi.useFakeTimers();
    const k = reloader("a s-a\n");
    k.r.load();
    writeFileSync(k.file, "a s-a\nb s-b\n");
    const first = k.r.reload();
    await vi.advanceTimersByTimeAsync(10);
    const second = k.r.reload();
    expect(second).toBe(first);
    writeFileSync(k.file, "a s-a\nb s-b\nc s-c\n");
    await vi.advanceTimersByTimeAsync(500);
    await first;
    expect(k.ring.names()).toEqual(["a", "b", "c"]);
  });

  it("watch(): a changed file is picked up by the poll", async () => {
    const k = reloader("a s-a\n", { pollMs: 20 });
    k.r.load();
    k.r.watch();
    writeFileSync(k.file, "a s-a\nb s-b\n");
    await until("the new key", () => k.ring.size === 2);
    expect(k.counters.keysReloads.applied).toBe(1);
  });
});
