import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../../../common/logger.ts";
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from "../../../../common/private-files.ts";
import { SegmentSpool } from "../../../../dataplane/spool/segment-spool.ts";
import { SpoolDir } from "../../../../dataplane/spool/spool-dir.ts";
import { captureLog } from "../../../fixtures/capture-log.ts";
import { spoolPayload, spoolSegments, spoolTestDirs } from "../../../fixtures/spool-files.ts";

// The spool directory: its modes, its lock, its small files. The first tests
// go through SegmentSpool.open, as a proxy opens its spool.

const log = createLogger({ level: "silent" });
const dir = spoolTestDirs();
const mode = (p: string): number => statSync(p).mode & 0o777;

describe("SpoolDir", () => {
  it("the spool's modes are the shared private ones", () => {
    expect([PRIVATE_DIR_MODE, PRIVATE_FILE_MODE]).toEqual([0o700, 0o600]);
  });

  it("creates its directory 0700 and its files 0600, and tightens an existing spool's", () => {
    const d = path.join(dir(), "spool");
    const a = SegmentSpool.open(d, { log });
    a.spool.append(1, 1, 1, 1, spoolPayload(1, 10));
    a.spool.release(0);
    expect(mode(d)).toBe(0o700);
    for (const f of ["proxy-id", "lock", path.basename(spoolSegments(d)[0]!)]) {
      expect([f, mode(path.join(d, f))]).toEqual([f, 0o600]);
    }
    a.spool.close();
    expect(mode(path.join(d, "state.json"))).toBe(0o600);

    // A spool as earlier versions left it: world-readable.
    chmodSync(d, 0o755);
    for (const f of readdirSync(d)) chmodSync(path.join(d, f), 0o644);
    writeFileSync(path.join(d, "state.json.tmp"), "{}", { mode: 0o644 });
    writeFileSync(path.join(d, "notes.txt"), "not the spool's", { mode: 0o644 });
    const b = SegmentSpool.open(d, { log });
    expect(mode(d)).toBe(0o700);
    for (const f of readdirSync(d).filter((f) => f !== "notes.txt")) {
      expect([f, mode(path.join(d, f))]).toEqual([f, 0o600]);
    }
    expect(mode(path.join(d, "notes.txt"))).toBe(0o644); // not ours: left alone
    b.spool.saveProxyId("site-b-2");
    expect(mode(path.join(d, "proxy-id"))).toBe(0o600);
    expect(readFileSync(path.join(d, "proxy-id"), "utf8")).toBe("site-b-2");
    b.spool.close();
  });

  it("leaves a shared (sticky) directory's mode alone, with a warning", () => {
    const d = path.join(dir(), "shared");
    mkdirSync(d);
    chmodSync(d, 0o1777);
    const { log: captured, lines } = captureLog();
    const a = SegmentSpool.open(d, { log: captured });
    expect(statSync(d).mode & 0o7777).toBe(0o1777);
    expect(statSync(path.join(d, "proxy-id")).mode & 0o777).toBe(0o600);
    expect(lines.some((l) => l.level === 40 && l.msg.includes("sticky bit"))).toBe(true);
    a.spool.close();
  });

  it("refuses a directory another live proxy holds, takes over a dead one's", () => {
    const d = dir();
    const a = SegmentSpool.open(d, { log });
    writeFileSync(path.join(d, "lock"), "1"); // pid 1 is alive
    expect(() => SegmentSpool.open(d, { log })).toThrow(/in use by process 1/);
    writeFileSync(path.join(d, "lock"), "999999999"); // no such process
    const b = SegmentSpool.open(d, { log });
    b.spool.close();
    a.spool.close();
  });

  it("a directory that cannot be created is a POLYMUR_ERR_SPOOL", () => {
    const file = path.join(dir(), "a-file");
    writeFileSync(file, "");
    expect(() => SpoolDir.open(path.join(file, "spool"), log)).toThrow(
      expect.objectContaining({
        code: "POLYMUR_ERR_SPOOL",
        message: expect.stringContaining("cannot create spool directory"),
      }),
    );
  });

  it("keeps the proxy id, made once, and unlocks for the next process", () => {
    const d = dir();
    const a = SpoolDir.open(d, log);
    const id = a.proxyId();
    expect(id).toMatch(/^[^.]+-[0-9a-f-]{36}$/);
    expect(a.proxyId()).toBe(id);
    expect(readFileSync(path.join(d, "lock"), "utf8").trim()).toBe(String(process.pid));
    // Held by this process: a second open is refused. Another live pid's lock too.
    expect(() => SpoolDir.open(d, log)).toThrow(/in use by process/);
    writeFileSync(path.join(d, "lock"), "1");
    expect(() => SpoolDir.open(d, log)).toThrow(/in use by process 1/);
    a.unlock();
    expect(readdirSync(d)).not.toContain("lock");
    // Its own pid in a lock it does not hold is a lock left by an earlier
    // process with the same pid (a container's pid 1, say): taken over.
    writeFileSync(path.join(d, "lock"), String(process.pid));
    const b = SpoolDir.open(d, log);
    expect(b.proxyId()).toBe(id);
    b.saveProxyId("site-b-2");
    expect(b.proxyId()).toBe("site-b-2");
    b.unlock();
  });

  it("reads the done mark, 0 when it is missing or unreadable", () => {
    const d = SpoolDir.open(dir(), log);
    expect([d.readDone(), d.hasDone()]).toEqual([0, false]);
    d.saveDone(42);
    expect([d.readDone(), d.hasDone()]).toEqual([42, true]);
    expect(mode(path.join(d.path, "state.json"))).toBe(0o600);
    for (const text of ["{", "null", '{"done":"7"}', '{"done":1.5}', '{"done":1e300}']) {
      writeFileSync(path.join(d.path, "state.json"), text);
      expect([text, d.readDone()]).toEqual([text, 0]);
    }
    d.unlock();
  });

  it("lists its segments oldest first, and only them", () => {
    const d = SpoolDir.open(dir(), log);
    for (const seq of [12, 3, 100]) writeFileSync(d.segmentFile(seq), "");
    writeFileSync(`${d.segmentFile(1)}.unreadable`, "");
    writeFileSync(path.join(d.path, "seg-x.spool"), "");
    expect(path.basename(d.segmentFile(3))).toBe("seg-0000000000000003.spool");
    expect(d.segments()).toEqual(
      [3, 12, 100].map((s) => ({ file: d.segmentFile(s), firstSeq: s })),
    );
    d.unlock();
  });
});
